"""gRPC servicers of the v1 API: open the envelope, convert, run the core command, convert back.

Every mutating RPC takes a SignedRequest: open_envelope() checks the signature over the exact
bytes received, that it names this marketplace, the message type, the nonce and the timestamp
(ReplayGuard on the server's clock) before anything is parsed; the signer's address is who acts.
Ownership is the core's rule (PermissionDenied). Reads that are not public are signed too
(read_as(): its nonce is not stored, a read changes nothing); what the signer may see is
core/visibility.py's rule. Core errors become gRPC statuses in one place (api/status.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from marketplace.api import attestations as audit_wire
from marketplace.api import convert
from marketplace.api.envelope import open_envelope
from marketplace.api.status import ERROR_KEY, details_of, error_name, status_of
from marketplace.api.telemetry import gpu_telemetry_from_proto, price_history_to_proto
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import ledger, limits, price_advice, visibility
from marketplace.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    MarketError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from marketplace.core.events import DeploymentEventKind
from marketplace.core.gang import Rendezvous, rendezvous
from marketplace.core.manifest import Manifest, ManifestError, parse_manifest
from marketplace.core.manifest.support import refuse_unmatchable
from marketplace.core.manifest.update import plan_update
from marketplace.core.market import MarketService
from marketplace.core.provider_audit import Finding, verify_provider
from marketplace.core.resources import GroupSpec
from marketplace.core.state import (
    Account,
    Bid,
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Lease,
    LeaseState,
    Order,
    OrderExplanation,
    ProviderRecord,
    acct_key,
)
from marketplace.core.updates import DeploymentUpdate
from marketplace.core.visibility import Viewer
from marketplace.server.app import MarketApp, Submitted, WatcherOverflow
from marketplace.server.channel import ProviderChannel, provider_feed
from marketplace.server.offloop import created, deployment_number, first_of_listing, off_loop
from marketplace.server.once import Command, Once
from marketplace.server.paging import page, page_end
from marketplace.server.provider_status import ProviderStatusBook
from marketplace.server.relay import ProviderSilent

log = logging.getLogger("gpumarket.market")

M = TypeVar("M", bound=Message)
T = TypeVar("T")
R = TypeVar("R")
Servicer = TypeVar("Servicer", bound="_Base")
Request = TypeVar("Request", bound=Message)
Reply = TypeVar("Reply", bound=Message)
Context: TypeAlias = grpc.aio.ServicerContext[Message, Message]

MAX_MANIFEST_BYTES = limits.MAX_MANIFEST_BYTES
# Manifests are parsed here, off the event loop, so that heartbeats and health checks never wait
# behind one (parsing is bounded, but a big SDL takes tens of ms). One thread: many hostile
# manifests at once queue up rather than multiply the memory they take, and the loop shares
# the GIL with one parser only (health checks p99 ~35 ms under attack, ~60 ms with two).
_PARSERS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="manifest")
# ... and at most this many wait for it, or are parsed, at once (each up to 1 MiB; ~3 s of
# parsing at the largest): a command goes on once its nonce is accepted, whether or not its
# caller waits for the answer (server/once.py), so hanging up does not shorten the queue
MAX_MANIFESTS_PARSING = 32
_PARSE_SLOTS = threading.BoundedSemaphore(MAX_MANIFESTS_PARSING)  # the servers of a process


async def _abort(context: Context, exc: Exception) -> NoReturn:
    if not isinstance(exc, MarketError | WatcherOverflow):
        log.error("internal error", exc_info=exc)
    # context.abort() leaves a reference cycle (gRPC's call state ↔ its AbortError ↔ frames)
    # that only the collector frees, and it counts objects, not bytes: whatever the frames of
    # the error's tracebacks hold (a 1 MiB request, a parsed manifest) stayed, and hostile
    # requests grew the server by ~1 MiB each. Dropped here, it is freed at once.
    _drop_tracebacks(exc)
    if isinstance(exc, Unavailable):  # a deposed leader: the client tries another address
        await context.abort(grpc.StatusCode.UNAVAILABLE, details_of(exc))
    if isinstance(exc, MarketError):
        context.set_trailing_metadata(((ERROR_KEY, error_name(exc)),))
        await context.abort(status_of(exc), details_of(exc))
    if isinstance(exc, WatcherOverflow):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, details_of(exc))
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def _drop_tracebacks(exc: BaseException | None) -> None:
    seen = 0
    while exc is not None and seen < 16:
        exc.__traceback__ = None
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


def unary(
    method: Callable[[Servicer, Request, Context], Awaitable[Reply]],
) -> Callable[[Servicer, Request, Context], Awaitable[Reply]]:
    """Map MarketError (and anything unexpected) onto a gRPC status."""

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: Context) -> Reply:
        try:
            return await method(self, request, context)
        except Exception as exc:
            del request  # see _abort: the abort's cycle must not hold the request
            await _abort(context, exc)

    return wrapper


def stream(
    method: Callable[[Servicer, Request, Context], AsyncIterator[Reply]],
) -> Callable[[Servicer, Request, Context], AsyncIterator[Reply]]:
    """unary() for server-streaming methods (async generators)."""

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: Context) -> AsyncIterator[Reply]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:
            del request  # see _abort
            await _abort(context, exc)

    return wrapper


class _Base:
    def __init__(self, app: MarketApp, once: Once) -> None:
        self.app = app
        self.once = once  # every command runs once; a resend is answered (server/once.py)

    @property
    def market(self) -> MarketService:
        return self.app.market

    def open(self, request: pb.SignedRequest, message_class: type[M]) -> tuple[str, M]:
        return open_envelope(request, message_class, self.app.guard, market=self.app.market_id)

    def read_as(self, request: pb.SignedRequest, message_class: type[M]) -> tuple[Viewer, M]:
        """Open a signed read: who reads (with the roles the market knows it by), and what."""
        signer, msg = open_envelope(
            request, message_class, self.app.guard, market=self.app.market_id, durable=False
        )
        viewer = Viewer(
            signer,
            admin=signer == self.app.market_id,
            provider=signer in self.market.state.providers,
        )
        return viewer, msg

    # --- what a viewer may read; someone else's record answers as a missing one --------------
    def readable_deployment(self, viewer: Viewer, deployment_id: str) -> Deployment:
        dep = self.market.get_deployment(deployment_id)
        if not visibility.can_read_deployment(viewer, dep):
            raise NotFound(f"deployment {deployment_id} not found")
        return dep

    def readable_order(self, viewer: Viewer, order_id: str) -> Order:
        order = self.market.get_order(order_id)
        if not self.can_read_order(viewer, order):
            raise NotFound(f"order {order_id} not found")
        return order

    def can_read_order(self, viewer: Viewer, order: Order) -> bool:
        bid_on = self.market.bid_of(order.id, viewer.address) is not None
        return visibility.can_read_order(viewer, order, bid_on)

    def readable_lease(self, viewer: Viewer, lease_id: str) -> Lease:
        lease = self.market.get_lease(lease_id)
        if not visibility.can_read_lease(viewer, lease):
            raise NotFound(f"lease {lease_id} not found")
        return lease

    def lease_now(self, signer: str, request: pb.SignedRequest, result: str | None) -> pb.Lease:
        """A resend's answer: the lease its request names (CloseLease's field 1, and
        LeaseStatusReport's), as it is now."""
        lease_id = result or pb.CloseLease.FromString(request.payload).lease_id
        return convert.lease_to_proto(self.readable_lease(Viewer(signer), lease_id))

    async def submitted(self, command: Callable[[], T], reply: Callable[[T], R]) -> Submitted[R]:
        """MarketApp.submit() once the market takes commands: the last step of a command
        whose first steps are awaited (Once.unary's `run`)."""
        await self.app.ready()
        return self.app.submit(command, reply)

    async def fetched(self, held: bool, read: Callable[[], T]) -> T:
        """`read()` at once when what it reads is in memory (`held`), else on the reader
        thread: a record that left memory is read from the store (offloop.py)."""
        return read() if held else await off_loop(read)


def _size(request: pb.ListRequest) -> int:
    return request.page_size or request.limit


async def _parse_off_loop(sdl: bytes) -> Manifest:
    if not _PARSE_SLOTS.acquire(blocking=False):
        raise ResourceExhausted(
            f"the marketplace is parsing {MAX_MANIFESTS_PARSING} manifests already: "
            "send yours again, newly signed, in a moment"
        )
    parsed = asyncio.get_running_loop().run_in_executor(_PARSERS, parse_manifest, sdl, "manifest")
    parsed.add_done_callback(lambda _: _PARSE_SLOTS.release())
    try:
        return await parsed
    except ManifestError as exc:
        raise InvalidArgument("; ".join(e.location_message for e in exc.errors)) from None


class TenantServicer(_Base, pb_grpc.TenantServicer):
    def __init__(self, app: MarketApp, once: Once) -> None:
        super().__init__(app, once)
        self.fund = Command(pb.FundAccount, self._fund, self._funded)
        self.create = Command(pb.CreateDeployment, None, self._created, lambda d: d.id)
        self.close_deployment = Command(
            pb.CloseDeployment, self._close_deployment, self._deployment_now
        )
        self.deposit = Command(pb.DepositEscrow, self._deposit, self._deployment_now)
        self.accept_bid = Command(pb.AcceptBid, self._accept_bid, self.lease_now, lambda x: x.id)
        self.close_lease = Command(pb.CloseLease, self._close_lease, self.lease_now)
        self.update = Command(pb.UpdateDeployment, None, self._updated, _changes_kept)

    def _account(self, account: Account) -> pb.Account:
        return convert.account_to_proto(
            account, self.market.escrowed(account.address), self.app.config.denom
        )

    def _deployment(self, dep: Deployment) -> pb.Deployment:
        return convert.deployment_to_proto(dep, *self.market.funding(dep))

    @unary
    async def GetAccount(self, request: pb.SignedRequest, context: Context) -> pb.Account:
        viewer, msg = self.read_as(request, pb.GetAccountRequest)
        address = msg.address or viewer.address
        if not visibility.can_read_account(viewer, address):
            raise PermissionDenied("you may read your own account only")
        return self._account(self.market.get_account(address))

    @unary
    async def Fund(self, request: pb.SignedRequest, context: Context) -> pb.Account:
        return await self.once.unary(self.fund, request)

    def _fund(self, request: pb.SignedRequest) -> Submitted[pb.Account]:
        signer, msg = self.open(request, pb.FundAccount)
        limits.check_address("fund: address", msg.address)
        return self.app.submit(
            lambda: self.market.fund(signer, msg.address, msg.amount), self._account
        )

    def _funded(self, signer: str, request: pb.SignedRequest, result: str | None) -> pb.Account:
        return self._account(
            self.market.get_account(pb.FundAccount.FromString(request.payload).address)
        )

    def _deployment_now(
        self, signer: str, request: pb.SignedRequest, result: str | None
    ) -> pb.Deployment:
        """A resend's answer: the deployment it names (field 1 of CloseDeployment and
        DepositEscrow; the one it made, for CreateDeployment), as it is now."""
        dep_id = result or pb.CloseDeployment.FromString(request.payload).deployment_id
        return self._deployment(self.readable_deployment(Viewer(signer), dep_id))

    def _created(self, signer: str, request: pb.SignedRequest, result: str | None) -> pb.Deployment:
        if not result:
            raise FailedPrecondition(
                "this request was accepted, but no deployment is recorded for it: it is still "
                "being handled, or the market stopped before it ran; list your deployments, "
                "or send it again newly signed"
            )
        return self._deployment_now(signer, request, result)

    @unary
    async def CreateDeployment(self, request: pb.SignedRequest, context: Context) -> pb.Deployment:
        return await self.once.unary(self.create, request, self._create)

    async def _create(self, request: pb.SignedRequest) -> Submitted[pb.Deployment]:
        signer, msg = self.open(request, pb.CreateDeployment)
        if len(msg.sdl) > MAX_MANIFEST_BYTES:
            raise InvalidArgument(
                f"manifest is {len(msg.sdl):,} bytes; the limit is {MAX_MANIFEST_BYTES:,} (1 MiB)"
            )
        manifest = await _parse_off_loop(bytes(msg.sdl))
        if not msg.force:  # an order no provider can fill would hold its escrow for nothing
            refuse_unmatchable(manifest, "set force")
        signed = request.SerializeToString()
        return await self.submitted(
            lambda: self.market.create_deployment(
                signer,
                manifest.groups,
                manifest.job,
                bytes(msg.sdl),
                manifest.sdl_sha256,
                signed,
                msg.deposit,
                msg.auto_top_up,
                msg.auto_top_up_max,
            ),
            self._deployment,
        )

    @unary
    async def GetDeployment(self, request: pb.SignedRequest, context: Context) -> pb.Deployment:
        viewer, msg = self.read_as(request, pb.GetRequest)
        held = msg.id in self.market.state.deployments
        return self._deployment(
            await self.fetched(held, lambda: self.readable_deployment(viewer, msg.id))
        )

    @unary
    async def ListDeployments(
        self, request: pb.SignedRequest, context: Context
    ) -> pb.DeploymentList:
        viewer, msg = self.read_as(request, pb.ListRequest)
        end = page_end(_size(msg), msg.page_token)
        mine = msg.owner in ("", viewer.address)
        held = self.market.held_deployments(viewer.address) if mine else []
        if msg.open_only or not mine:
            deps = [d for d in held if d.state == DeploymentState.ACTIVE]
        else:  # and the first closed ones the store holds, off the loop (offloop.py)
            archive, me = self.market.archive, viewer.address
            deps = await off_loop(
                lambda: first_of_listing(
                    held,
                    lambda n: archive.first_closed_deployments(me, n),
                    lambda d: True,
                    deployment_number,
                    end,
                )
            )
        found, token = page(deps, _size(msg), msg.page_token)
        return pb.DeploymentList(
            deployments=[self._deployment(d) for d in found], next_page_token=token
        )

    @unary
    async def CloseDeployment(self, request: pb.SignedRequest, context: Context) -> pb.Deployment:
        return await self.once.unary(self.close_deployment, request)

    def _close_deployment(self, request: pb.SignedRequest) -> Submitted[pb.Deployment]:
        signer, msg = self.open(request, pb.CloseDeployment)
        return self.app.submit(
            lambda: self.market.close_deployment(signer, msg.deployment_id), self._deployment
        )

    @unary
    async def Deposit(self, request: pb.SignedRequest, context: Context) -> pb.Deployment:
        return await self.once.unary(self.deposit, request)

    def _deposit(self, request: pb.SignedRequest) -> Submitted[pb.Deployment]:
        signer, msg = self.open(request, pb.DepositEscrow)
        return self.app.submit(
            lambda: self.market.deposit(signer, msg.deployment_id, msg.amount), self._deployment
        )

    @unary
    async def GetOrder(self, request: pb.SignedRequest, context: Context) -> pb.Order:
        viewer, msg = self.read_as(request, pb.GetRequest)
        held = msg.id in self.market.state.orders
        return convert.order_to_proto(
            await self.fetched(held, lambda: self.readable_order(viewer, msg.id))
        )

    @unary
    async def ListOrders(self, request: pb.SignedRequest, context: Context) -> pb.OrderList:
        viewer, msg = self.read_as(request, pb.ListRequest)
        end = page_end(_size(msg), msg.page_token)
        bids = self.market.state.bids  # an order in memory has its bids in memory too

        def wanted(o: Order, bid_on: Callable[[Order], bool]) -> bool:
            return (not msg.owner or o.owner == msg.owner) and visibility.can_read_order(
                viewer, o, bid_on(o)
            )

        def held_bid(o: Order) -> bool:
            return f"{o.id}/{viewer.address}" in bids

        if msg.open_only:
            orders = [o for o in self.market.list_orders(open_only=True) if wanted(o, held_bid)]
        else:  # the first closed ones the signer may read are the store's: off the loop
            held = [o for o in self.market.state.orders.values() if wanted(o, held_bid)]
            archive, me = self.market.archive, viewer.address

            def stored_bid(o: Order) -> bool:
                return archive.bid(f"{o.id}/{me}") is not None

            orders = await off_loop(
                lambda: first_of_listing(
                    held,
                    lambda n: archive.first_closed_orders_of(me, n),
                    lambda o: wanted(o, stored_bid),
                    created,
                    end,
                )
            )
        found, token = page(orders, _size(msg), msg.page_token)
        return pb.OrderList(
            orders=[convert.order_to_proto(o) for o in found], next_page_token=token
        )

    @unary
    async def ListBids(self, request: pb.SignedRequest, context: Context) -> pb.BidList:
        viewer, msg = self.read_as(request, pb.ListBidsRequest)
        now = self.app.clock.now_ms()

        def readable() -> list[Bid]:
            order = self.readable_order(viewer, msg.order_id)
            return [
                b
                for b in self.market.list_bids(order.id)
                if visibility.can_read_bid(viewer, b, order, now)
            ]

        bids = await self.fetched(msg.order_id in self.market.state.orders, readable)
        found, token = page(bids, msg.page_size, msg.page_token)
        return pb.BidList(bids=[convert.bid_to_proto(b) for b in found], next_page_token=token)

    @unary
    async def ExplainOrder(
        self, request: pb.SignedRequest, context: Context
    ) -> pb.OrderExplanation:
        viewer, msg = self.read_as(request, pb.GetRequest)

        def explained() -> OrderExplanation:
            order = self.market.get_order(msg.id)
            if viewer.address != order.owner:
                raise NotFound(f"order {msg.id} not found")
            return self.market.explain_order(order.id)

        why = await self.fetched(msg.id in self.market.state.orders, explained)
        return convert.explanation_to_proto(
            visibility.explanation_for(viewer, why, self.app.clock.now_ms())
        )

    @unary
    async def AcceptBid(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        return await self.once.unary(self.accept_bid, request)

    def _accept_bid(self, request: pb.SignedRequest) -> Submitted[pb.Lease]:
        signer, msg = self.open(request, pb.AcceptBid)
        return self.app.submit(
            lambda: self.market.accept_bid(signer, msg.bid_id), convert.lease_to_proto
        )

    @unary
    async def GetLease(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        viewer, msg = self.read_as(request, pb.GetRequest)
        held = msg.id in self.market.state.leases
        return convert.lease_to_proto(
            await self.fetched(held, lambda: self.readable_lease(viewer, msg.id))
        )

    @unary
    async def ListLeases(self, request: pb.SignedRequest, context: Context) -> pb.LeaseList:
        """The signer's leases, as tenant or provider (owner: only those with that party)."""
        viewer, msg = self.read_as(request, pb.ListRequest)
        end = page_end(_size(msg), msg.page_token)
        me = viewer.address

        def wanted(x: Lease) -> bool:
            return me in (x.tenant, x.provider) and msg.owner in ("", x.tenant, x.provider)

        held = [x for x in self.market.state.leases.values() if wanted(x)]
        if msg.open_only:
            leases = [x for x in held if x.state != LeaseState.CLOSED]
        else:  # the signer's first closed leases (as tenant or provider), off the loop
            archive = self.market.archive
            leases = await off_loop(
                lambda: first_of_listing(
                    held, lambda n: archive.first_closed_leases_of(me, n), wanted, created, end
                )
            )
        found, token = page(leases, _size(msg), msg.page_token)
        return pb.LeaseList(
            leases=[convert.lease_to_proto(x) for x in found], next_page_token=token
        )

    @unary
    async def CloseLease(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        return await self.once.unary(self.close_lease, request)

    def _close_lease(self, request: pb.SignedRequest) -> Submitted[pb.Lease]:
        signer, msg = self.open(request, pb.CloseLease)
        return self.app.submit(
            lambda: self.market.close_lease(signer, msg.lease_id, msg.message),
            convert.lease_to_proto,
        )

    @stream
    async def WatchDeployment(
        self, request: pb.SignedRequest, context: Context
    ) -> AsyncIterator[pb.DeploymentEvent]:
        viewer, msg = self.read_as(request, pb.WatchDeploymentRequest)
        app, dep_id = self.app, msg.deployment_id
        held = dep_id in self.market.state.deployments
        await self.fetched(held, lambda: self.readable_deployment(viewer, dep_id))
        watcher = app.subscribe(app.deployment_watchers, dep_id)
        try:
            last = msg.after_seq
            upto = app.committed_seq
            # once out of memory, a deployment is in the store for good: read there, off the loop
            held = dep_id in self.market.state.deployments
            history = await self.fetched(
                held, lambda: self.market.deployment_events_after(dep_id, msg.after_seq)
            )
            for event in history:
                if event.seq > upto:
                    break
                last = event.seq
                yield self._tenant_event(event)
                if event.kind == DeploymentEventKind.DEPLOYMENT_CLOSED:
                    return  # nothing follows a close
            if msg.history_only:
                return
            while True:
                live = await watcher.get()
                if live is None or live.seq <= last:
                    continue
                last = live.seq
                yield self._tenant_event(live)
                if live.kind == DeploymentEventKind.DEPLOYMENT_CLOSED:
                    return
        finally:
            app.unsubscribe(app.deployment_watchers, dep_id, watcher)

    def _tenant_event(self, event: DeploymentEvent) -> pb.DeploymentEvent:
        now = self.app.clock.now_ms()
        return convert.deployment_event_to_proto(visibility.event_for_tenant(event, now))

    @stream
    async def StreamLogs(
        self, request: pb.SignedRequest, context: Context
    ) -> AsyncIterator[pb.LogLine]:
        viewer, msg = self.read_as(request, pb.StreamLogsRequest)
        app, lease_id = self.app, msg.lease_id
        held = lease_id in self.market.state.leases
        await self.fetched(held, lambda: self.readable_lease(viewer, lease_id))
        watcher = app.subscribe(app.log_watchers, lease_id)
        try:
            last = msg.after_seq
            stored = await off_loop(lambda: app.store.logs(lease_id, msg.after_seq, msg.tail))
            for line in stored:
                last = line.seq
                yield convert.log_line_to_proto(line)
            while msg.follow and not app.lease_closed(lease_id):
                item = await watcher.get()
                if item == "closed":
                    break
                if item is not None and item.seq > last:
                    last = item.seq
                    yield convert.log_line_to_proto(item)
            # lines written together with the close (or just before it)
            after = last
            for line in (
                await off_loop(lambda: app.store.logs(lease_id, after)) if msg.follow else ()
            ):
                yield convert.log_line_to_proto(line)
        finally:
            app.unsubscribe(app.log_watchers, lease_id, watcher)

    @unary
    async def UpdateDeployment(
        self, request: pb.SignedRequest, context: Context
    ) -> pb.UpdateResult:
        """Update in place: the new SDL is judged against the running one (manifest/update.py;
        a refused change is FAILED_PRECONDITION naming the service and field) and becomes the
        deployment's next version."""
        return await self.once.unary(self.update, request, self._update)

    def _updated(
        self, signer: str, request: pb.SignedRequest, result: str | None
    ) -> pb.UpdateResult:
        dep_id = pb.UpdateDeployment.FromString(request.payload).deployment_id
        return pb.UpdateResult(
            deployment=self._deployment_now(signer, request, dep_id),
            changes=result.split("\n") if result else [],
        )

    async def _update(self, request: pb.SignedRequest) -> Submitted[pb.UpdateResult]:
        signer, msg = self.open(request, pb.UpdateDeployment)
        if len(msg.sdl) > MAX_MANIFEST_BYTES:
            raise InvalidArgument(
                f"manifest is {len(msg.sdl):,} bytes; the limit is {MAX_MANIFEST_BYTES:,} (1 MiB)"
            )
        dep = self.market.get_deployment(limits.check_text("id", msg.deployment_id))
        if dep.owner != signer:  # before anything is parsed: an outsider learns nothing
            raise PermissionDenied(f"deployment {msg.deployment_id} is not yours")
        if dep.state != DeploymentState.ACTIVE:
            raise FailedPrecondition(f"deployment {dep.id} is closed")
        if msg.version != dep.version + 1:  # signed: a market cannot replay an older update
            raise FailedPrecondition(
                f"deployment {dep.id} is at version {dep.version}: an update makes version "
                f"{dep.version + 1}, not {msg.version}"
            )
        base, running_sdl = dep.version, dep.sdl or self.market.archive.manifest(dep.id)[0]
        new = await _parse_off_loop(bytes(msg.sdl))
        plan = plan_update(await _parse_off_loop(running_sdl), new)
        if not plan.allowed:
            raise FailedPrecondition(f"update refused: {plan.reason}")
        update = DeploymentUpdate(
            new.groups,
            new.job,
            bytes(msg.sdl),
            new.sdl_sha256,
            request.SerializeToString(),
            plan.changes,
        )
        return await self.submitted(
            lambda: self.market.update_deployment(signer, dep.id, base, update),
            lambda d: pb.UpdateResult(deployment=self._deployment(d), changes=plan.changes),
        )

    async def Shell(self, request_iterator: object, context: Context) -> None:
        """A shell or file copy in a lease's container, relayed to its provider (relay.py)."""
        await _relayed(context, self.app.relay.tenant_session(context))


def _changes_kept(result: pb.UpdateResult) -> str:
    """An update's list of changes, as its nonce's outcome (bounded: the first 4 KiB)."""
    kept = "\n".join(result.changes)
    return kept if len(kept) <= 4096 else kept[:4096].rpartition("\n")[0]


async def _relayed(context: Context, session: Awaitable[None]) -> None:
    """Run one side of a relayed session; its errors become statuses (a provider that does not
    answer: UNAVAILABLE)."""
    try:
        await session
    except ProviderSilent as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, details_of(exc))
    except Exception as exc:
        await _abort(context, exc)


class ProviderServicer(_Base, pb_grpc.ProviderServicer):
    """Each command is one function that the unary rpc and the Channel stream share: it opens
    the envelope and runs the core command at once; its reply is had once durable
    (MarketApp.submit). `commands` names them for the channel (server/channel.py)."""

    def __init__(self, app: MarketApp, once: Once) -> None:
        super().__init__(app, once)
        self.commands: dict[str, Command[Any]] = {
            "Register": Command(pb.RegisterProvider, self.register, self._registered),
            "Heartbeat": Command(pb.Heartbeat, self.heartbeat, self._heartbeat_seen),
            "PlaceBid": Command(pb.PlaceBid, self.place_bid, self._bid_placed),
            "WithdrawBid": Command(pb.WithdrawBid, self.withdraw_bid, self._bid_withdrawn),
            "DeclineOrder": Command(pb.DeclineOrder, self.decline_order, _acked),
            "GetManifest": Command(pb.GetManifest, self.get_manifest, self._manifest_again),
            "ReportLeaseStatus": Command(pb.LeaseStatusReport, self.report_status, self.lease_now),
            "ReportLogs": Command(pb.LogBatch, self.report_logs, _acked),
            "CloseLease": Command(pb.CloseLease, self.close_lease, self.lease_now),
            "ReportTelemetry": Command(pb.TelemetryReport, self.report_telemetry, _acked),
        }
        self.status = ProviderStatusBook(app)  # telemetry and declines by kind (its own read)

    async def _answer(self, name: str, request: pb.SignedRequest) -> Any:
        return await self.once.unary(self.commands[name], request)

    # --- the commands ---------------------------------------------------------------------------
    def register(self, request: pb.SignedRequest) -> Submitted[pb.RegisterResponse]:
        signer, msg = self.open(request, pb.RegisterProvider)
        capacity = convert.capacity_from_proto(msg.inventory)

        def reply(prov: ProviderRecord) -> pb.RegisterResponse:
            self._note_inventory(signer, msg.inventory)
            return self._registration(signer, prov)

        return self.app.submit(
            lambda: self.market.register_provider(
                signer,
                msg.host_uri,
                convert.attributes_from_proto(msg.attributes),
                capacity,
                msg.region,
                msg.version,
            ),
            reply,
        )

    def _registration(self, signer: str, prov: ProviderRecord) -> pb.RegisterResponse:
        config = self.app.config
        return pb.RegisterResponse(
            provider=self._info(prov),
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            heartbeat_timeout_ms=config.heartbeat_timeout_ms,
            audited=self._audited(signer),
        )

    def _note_inventory(self, provider: str, inventory: pb.Inventory) -> None:
        """Keep what the provider reported when it differs from before (`auditor verify`)."""
        now = self.app.clock.now_ms()
        self.app.inventory.note(audit_wire.inventory_report_from_proto(provider, now, inventory))

    def _audited(self, provider: str) -> pb.AuditedAttributes:
        """The auditors' signatures of `provider` that count now, for its own bid decisions."""
        now = self.app.clock.now_ms()
        return audit_wire.audited_to_proto(self.market.attestations.signed_for(provider, now))

    def _info(self, prov: ProviderRecord) -> pb.ProviderInfo:
        return convert.provider_to_proto(
            prov, self.market.reliability(prov.address), self.market.open_lease_count(prov.address)
        )

    def heartbeat(self, request: pb.SignedRequest) -> Submitted[pb.HeartbeatResponse]:
        signer, msg = self.open(request, pb.Heartbeat)
        capacity = convert.capacity_from_proto(msg.inventory) if msg.HasField("inventory") else None

        def reply(unknown: list[str]) -> pb.HeartbeatResponse:
            if capacity is not None:
                self._note_inventory(signer, msg.inventory)
            return pb.HeartbeatResponse(
                server_time_ms=self.app.clock.now_ms(),
                unknown_lease_ids=list(unknown),
                audited=self._audited(signer),
            )

        return self.app.submit(
            lambda: self.market.heartbeat(
                signer, list(msg.running_lease_ids), capacity, msg.draining
            ),
            reply,
        )

    def place_bid(self, request: pb.SignedRequest) -> Submitted[pb.Bid]:
        signer, msg = self.open(request, pb.PlaceBid)
        offer = convert.offer_from_proto(msg.offer)
        return self.app.submit(
            lambda: self.market.place_bid(signer, msg.order_id, msg.price_per_hour, offer),
            convert.bid_to_proto,
        )

    def withdraw_bid(self, request: pb.SignedRequest) -> Submitted[pb.Bid]:
        signer, msg = self.open(request, pb.WithdrawBid)
        return self.app.submit(
            lambda: self.market.withdraw_bid(signer, msg.bid_id), convert.bid_to_proto
        )

    def decline_order(self, request: pb.SignedRequest) -> Submitted[pb.Ack]:
        signer, msg = self.open(request, pb.DeclineOrder)
        return self.app.submit(
            lambda: self.market.decline_order(signer, msg.order_id, msg.reason),
            lambda _: pb.Ack(ok=True),
        )

    def get_manifest(self, request: pb.SignedRequest) -> Submitted[pb.Manifest]:
        signer, msg = self.open(request, pb.GetManifest)
        self.readable_lease(Viewer(signer), msg.lease_id)  # another's lease: as if missing
        return self.app.submit(
            lambda: self._manifest_found(signer, msg.lease_id),
            lambda found: self._manifest(msg.lease_id, found),
        )

    def _manifest_found(
        self, signer: str, lease_id: str
    ) -> tuple[Deployment, GroupSpec, Rendezvous | None]:
        dep, group = self.market.manifest_for(signer, lease_id)
        return dep, group, rendezvous(self.market, self.market.get_lease(lease_id))

    @staticmethod
    def _manifest(
        lease_id: str, found: tuple[Deployment, GroupSpec, Rendezvous | None]
    ) -> pb.Manifest:
        dep, group, meeting = found
        tenant_request = pb.SignedRequest()
        tenant_request.ParseFromString(dep.tenant_request)
        return pb.Manifest(
            lease_id=lease_id,
            group_name=group.name,
            sdl=dep.sdl,
            tenant_request=tenant_request,
            version=dep.version,
            gang=None if meeting is None else convert.rendezvous_to_proto(meeting),
        )

    def _manifest_again(
        self, signer: str, request: pb.SignedRequest, result: str | None
    ) -> pb.Manifest:
        lease_id = pb.GetManifest.FromString(request.payload).lease_id
        self.readable_lease(Viewer(signer), lease_id)
        return self._manifest(lease_id, self._manifest_found(signer, lease_id))

    def report_status(self, request: pb.SignedRequest) -> Submitted[pb.Lease]:
        signer, msg = self.open(request, pb.LeaseStatusReport)
        if msg.state not in convert.LEASE_STATE_FROM_PROTO and msg.state:
            raise InvalidArgument(
                f"state {msg.state} is not a lease state this marketplace knows "
                "(LEASE_RUNNING, or LEASE_CLOSED with exited)"
            )
        endpoints = [convert.endpoint_from_proto(e) for e in msg.endpoints]
        running = msg.state == pb.LEASE_RUNNING
        return self.app.submit(
            lambda: self.market.report_status(
                signer,
                msg.lease_id,
                running=running,
                exited=msg.exited,
                exit_code=msg.exit_code,
                oom_killed=msg.oom_killed,
                endpoints=endpoints,
                message=msg.message,
                version=msg.version,
                update_failed=msg.update_failed,
            ),
            convert.lease_to_proto,
        )

    def report_logs(self, request: pb.SignedRequest) -> Submitted[pb.Ack]:
        signer, msg = self.open(request, pb.LogBatch)
        stored = self.app.submit_logs(signer, msg)
        return Submitted(pb.Ack(ok=True, message=f"{stored.outcome} lines"), stored.waiter)

    def close_lease(self, request: pb.SignedRequest) -> Submitted[pb.Lease]:
        signer, msg = self.open(request, pb.CloseLease)
        return self.app.submit(
            lambda: self.market.close_lease(signer, msg.lease_id, msg.message),
            convert.lease_to_proto,
        )

    def report_telemetry(self, request: pb.SignedRequest) -> Submitted[pb.Ack]:
        signer, msg = self.open(request, pb.TelemetryReport)
        gpus = tuple(gpu_telemetry_from_proto(g) for g in msg.gpus)
        return self.app.submit(
            lambda: self.status.record(signer, gpus, msg.read_at_ms),
            lambda _: pb.Ack(ok=True),
        )

    # --- answers to resends whose first answer is forgotten (server/channel.py) -----------------
    def _registered(
        self, signer: str, request: pb.SignedRequest, result: str | None
    ) -> pb.RegisterResponse:
        return self._registration(signer, self.market.get_provider(signer))

    def _heartbeat_seen(
        self, signer: str, request: pb.SignedRequest, result: str | None
    ) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(
            server_time_ms=self.app.clock.now_ms(), audited=self._audited(signer)
        )

    def _bid_placed(self, signer: str, request: pb.SignedRequest, result: str | None) -> pb.Bid:
        msg = pb.PlaceBid.FromString(request.payload)
        bid = self.market.bid_of(msg.order_id, signer)
        if bid is None:
            raise FailedPrecondition(f"this bid on {msg.order_id} was refused before")
        return convert.bid_to_proto(bid)

    def _bid_withdrawn(self, signer: str, request: pb.SignedRequest, result: str | None) -> pb.Bid:
        msg = pb.WithdrawBid.FromString(request.payload)
        bid = self.market.get_bid(msg.bid_id)
        if bid.provider != signer:
            raise NotFound(f"bid {msg.bid_id} not found")
        return convert.bid_to_proto(bid)

    # --- the rpcs -------------------------------------------------------------------------------
    @unary
    async def Register(self, request: pb.SignedRequest, context: Context) -> pb.RegisterResponse:
        return await self._answer("Register", request)

    @unary
    async def Heartbeat(self, request: pb.SignedRequest, context: Context) -> pb.HeartbeatResponse:
        return await self._answer("Heartbeat", request)

    @stream
    async def WatchOrders(
        self, request: pb.SignedRequest, context: Context
    ) -> AsyncIterator[pb.ProviderEvent]:
        signer, msg = open_envelope(  # a read: its nonce need not outlive a restart
            request, pb.WatchOrders, self.app.guard, market=self.app.market_id, durable=False
        )
        self.market.get_provider(signer)  # the feed is for registered providers (NotFound)
        async for event in provider_feed(self.app, signer, msg.resume_token, msg.with_leases):
            yield event

    @unary
    async def PlaceBid(self, request: pb.SignedRequest, context: Context) -> pb.Bid:
        return await self._answer("PlaceBid", request)

    @unary
    async def WithdrawBid(self, request: pb.SignedRequest, context: Context) -> pb.Bid:
        return await self._answer("WithdrawBid", request)

    @unary
    async def DeclineOrder(self, request: pb.SignedRequest, context: Context) -> pb.Ack:
        return await self._answer("DeclineOrder", request)

    @unary
    async def GetManifest(self, request: pb.SignedRequest, context: Context) -> pb.Manifest:
        return await self._answer("GetManifest", request)

    @unary
    async def ReportLeaseStatus(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        return await self._answer("ReportLeaseStatus", request)

    @unary
    async def ReportLogs(self, request: pb.SignedRequest, context: Context) -> pb.Ack:
        return await self._answer("ReportLogs", request)

    @unary
    async def CloseLease(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        return await self._answer("CloseLease", request)

    @stream
    async def Sessions(
        self, request: pb.SignedRequest, context: Context
    ) -> AsyncIterator[pb.SessionRequest]:
        """The tenants' session requests for the signer's leases (relay.py)."""
        async for session in self.app.relay.sessions(request):
            yield session

    async def SessionIO(self, request_iterator: object, context: Context) -> None:
        """One relayed session's stream, opened by the lease's provider when asked."""
        await _relayed(context, self.app.relay.provider_session(context))

    async def Channel(
        self, request_iterator: AsyncIterator[pb.ProviderMessage], context: Context
    ) -> AsyncIterator[pb.MarketMessage]:
        """The provider's one stream: these commands and the order feed (server/channel.py)."""
        channel = ProviderChannel(self.app, self.commands, self.once)
        try:
            await context.send_initial_metadata(())  # the stream is open: the provider knows
            async for message in channel.serve(request_iterator):
                yield message
        except Exception as exc:
            await _abort(context, exc)

    @unary
    async def ReportTelemetry(self, request: pb.SignedRequest, context: Context) -> pb.Ack:
        return await self._answer("ReportTelemetry", request)

    @unary
    async def GetProviderStatus(
        self, request: pb.SignedRequest, context: Context
    ) -> pb.ProviderStatus:
        """The signer's own GPUs' telemetry and declines by kind (provider_status.py)."""
        viewer, msg = self.read_as(request, pb.ProviderStatusRequest)
        return self.status.read(viewer.address, msg.provider)


def _acked(signer: str, request: pb.SignedRequest, result: str | None) -> pb.Ack:
    return pb.Ack(ok=True, message="already applied")


class MarketServicer(_Base, pb_grpc.MarketServicer):
    @unary
    async def Info(self, request: pb.MarketInfoRequest, context: Context) -> pb.MarketInfo:
        return pb.MarketInfo(
            market_id=self.app.market_id,
            server_time_ms=self.app.clock.now_ms(),
            max_skew_ms=self.app.guard.max_skew_ms,
            denom=self.app.config.denom,
        )

    @unary
    async def ListProviders(self, request: pb.ListRequest, context: Context) -> pb.ProviderList:
        provs = self.market.list_providers()
        if request.open_only:
            provs = [p for p in provs if p.online]
        found, token = page(provs, _size(request), request.page_token)
        return pb.ProviderList(
            providers=[
                convert.provider_to_proto(
                    p, self.market.reliability(p.address), self.market.open_lease_count(p.address)
                )
                for p in found
            ],
            next_page_token=token,
        )

    @unary
    async def Stats(self, request: pb.MarketStatsRequest, context: Context) -> pb.MarketStats:
        market = self.market
        # up to limits.PRICE_POINTS_KEPT prices sorted per model: off the loop (the list is
        # only appended to, and cut once it doubles; a read sees it before or after)
        stats = await off_loop(lambda: market.price_stats(request.since_ms))
        return pb.MarketStats(
            gpu_prices=[convert.price_stat_to_proto(s) for s in stats],
            providers_online=sum(1 for p in market.list_providers() if p.online),
            open_orders=len(market.list_orders(open_only=True)),
            running_leases=sum(
                1 for x in market.state.leases.values() if x.state == LeaseState.RUNNING
            ),
        )

    @unary
    async def GetPriceHistory(
        self, request: pb.PriceHistoryRequest, context: Context
    ) -> pb.PriceHistory:
        market = self.market
        size, buckets = await off_loop(
            lambda: market.price_history(request.since_ms, request.bucket_ms)
        )
        return price_history_to_proto(size, buckets)

    @unary
    async def Audit(self, request: pb.SignedRequest, context: Context) -> pb.AuditReport:
        viewer, _ = self.read_as(request, pb.AuditRequest)
        if not viewer.admin:
            raise PermissionDenied("only the marketplace's admin key may run the audit")
        market = self.market
        if not (market.config.keep_ledger and market.config.retain_closed):
            return convert.audit_to_proto(market.audit())
        # the stored entries' replay (the whole ledger's history) runs off the loop; entries
        # stored meanwhile (they left memory) are added, so it meets memory where it is now
        before = market.first_kept_entry()
        stored = await off_loop(lambda: market.archive.ledger_replay(before))
        while (now := market.first_kept_entry()) != before:
            gap = await off_loop(functools.partial(market.archive.ledger, "", now, now - before))
            stored.add(e for e in gap if e.id >= before)
            before = now
        return convert.audit_to_proto(ledger.audit(market.state, replay=True, stored=stored))

    @unary
    async def ListLedger(self, request: pb.SignedRequest, context: Context) -> pb.LedgerPage:
        """Entries touching your account; the whole ledger (or anyone's) for the admin key."""
        viewer, msg = self.read_as(request, pb.ListRequest)
        account = msg.owner if viewer.admin else (msg.owner or viewer.address)
        if not visibility.can_read_ledger(viewer, account):
            raise PermissionDenied("you may read your own account's entries only")
        key = acct_key(account) if account else ""
        end = page_end(_size(msg), msg.page_token)
        market = self.market
        held = [e for e in market.state.ledger if not key or key in (e.debit, e.credit)]
        before = market.first_kept_entry()  # every older entry is stored, and comes first
        stored = await off_loop(lambda: market.archive.first_ledger(key, before, end + 1))
        found, token = page(stored + held[: end + 1], _size(msg), msg.page_token)
        return pb.LedgerPage(
            entries=[convert.ledger_entry_to_proto(e) for e in found], next_page_token=token
        )

    @unary
    async def PriceAdvice(
        self, request: pb.SignedRequest, context: Context
    ) -> pb.PriceAdviceReport:
        """A provider's auctions replayed at one price (price_advice.py): its own, or any for
        the admin key; totals only, so no other party's order or bid leaves the market."""
        viewer, msg = self.read_as(request, pb.PriceAdviceRequest)
        provider = msg.provider or viewer.address
        if provider != viewer.address and not viewer.admin:
            raise PermissionDenied("you may read your own price advice only")
        now = self.app.clock.now_ms()
        price_advice.check_window(msg.since_ms, now)
        self.market.get_provider(provider)  # NotFound before the queue
        market = self.market

        def advised() -> list[price_advice.ModelAdvice]:
            # closed auctions (from the store) and their leases, which no longer change; the
            # open records are reached by single look-ups and copies the GIL makes whole
            return price_advice.advise(
                price_advice.take_record(market, provider, msg.since_ms, now)
            )

        advice = await off_loop(advised)
        return convert.price_advice_to_proto(provider, msg.since_ms, now, advice)


# An auditor's request is kept as its proof, once per attribute it signs: bounded.
MAX_ATTESTATION_BYTES = 64 * 1024


class AuditorServicer(_Base, pb_grpc.AuditorServicer):
    """Auditors sign and revoke providers' attributes (attestations.py has the rules); anyone
    may read what is signed and run the checks an auditor runs before signing."""

    def __init__(self, app: MarketApp, once: Once) -> None:
        super().__init__(app, once)
        self.sign = Command(pb.SignProviderAttributes, self._sign, self._signed)
        self.revoke = Command(pb.RevokeProviderAttributes, self._revoke, self._revoked)

    def _signed(
        self, signer: str, request: pb.SignedRequest, result: str | None
    ) -> pb.AttestationList:
        """A resend's answer: the provider's attestations now."""
        return self._list(pb.SignProviderAttributes.FromString(request.payload).provider)

    def _revoked(
        self, signer: str, request: pb.SignedRequest, result: str | None
    ) -> pb.AttestationList:
        return self._list(pb.RevokeProviderAttributes.FromString(request.payload).provider)

    def _signed_by(self, request: pb.SignedRequest, message_class: type[M]) -> tuple[str, M]:
        if len(request.payload) > MAX_ATTESTATION_BYTES:
            raise InvalidArgument(
                f"request is {len(request.payload):,} bytes; the limit is {MAX_ATTESTATION_BYTES:,}"
            )
        return self.open(request, message_class)

    def _list(self, provider: str) -> pb.AttestationList:
        book = self.market.attestations
        now = self.app.clock.now_ms()
        return audit_wire.attestation_list(book.of_provider(provider), book, now)

    @staticmethod
    def _bound(signer: str, auditor: str) -> None:
        """The auditor named inside the signed payload is the key that signed it."""
        if auditor != signer:
            raise Unauthenticated(f"signed by {signer}, not by the auditor {auditor or '(none)'}")

    @unary
    async def SignProviderAttributes(
        self, request: pb.SignedRequest, context: Context
    ) -> pb.AttestationList:
        return await self.once.unary(self.sign, request)

    def _sign(self, request: pb.SignedRequest) -> Submitted[pb.AttestationList]:
        signer, msg = self._signed_by(request, pb.SignProviderAttributes)
        self._bound(signer, msg.auditor)
        attributes = convert.attributes_from_proto(msg.attributes)  # a key twice: refused
        proof = request.SerializeToString()
        return self.app.submit(
            lambda: self.market.sign_attributes(
                signer, msg.provider, attributes, msg.expires_at_ms, proof
            ),
            lambda _: self._list(msg.provider),
        )

    @unary
    async def RevokeProviderAttributes(
        self, request: pb.SignedRequest, context: Context
    ) -> pb.AttestationList:
        return await self.once.unary(self.revoke, request)

    def _revoke(self, request: pb.SignedRequest) -> Submitted[pb.AttestationList]:
        signer, msg = self._signed_by(request, pb.RevokeProviderAttributes)
        self._bound(signer, msg.auditor)
        return self.app.submit(
            lambda: self.market.revoke_attributes(signer, msg.provider, list(msg.keys)),
            lambda _: self._list(msg.provider),
        )

    @unary
    async def ListAttestations(
        self, request: pb.ListAttestationsRequest, context: Context
    ) -> pb.AttestationList:
        self.market.get_provider(request.provider)
        return self._list(request.provider)

    @unary
    async def VerifyProvider(
        self, request: pb.VerifyProviderRequest, context: Context
    ) -> pb.ProviderFindings:
        prov = self.market.get_provider(request.provider)
        to_sign = convert.attributes_from_proto(request.attributes)
        limits.check_attributes(to_sign)
        latest = self.app.inventory.latest(prov.address)
        others = [p for p in self.market.state.providers.values() if p.address != prov.address]
        store = self.app.store

        def verified() -> list[Finding]:  # the stored reports, every provider's GPUs
            reports = store.inventory_reports(prov.address)
            if latest is not None and (not reports or reports[-1].time_ms < latest.time_ms):
                reports.append(latest)  # reported, not yet on disk
            claimed_by = {d.uuid: other.address for other in others for d in other.capacity.gpus}
            return verify_provider(prov, reports, to_sign, claimed_by)

        findings = await off_loop(verified)
        return audit_wire.findings_to_proto(prov.address, findings)


def add_servicers(server: grpc.aio.Server, app: MarketApp) -> list[str]:
    """Register the v1 services; returns their full names (for reflection and health)."""
    once = Once(app)  # one book of answers: a resend may come by any service
    pb_grpc.add_TenantServicer_to_server(TenantServicer(app, once), server)
    pb_grpc.add_ProviderServicer_to_server(ProviderServicer(app, once), server)
    pb_grpc.add_MarketServicer_to_server(MarketServicer(app, once), server)
    pb_grpc.add_AuditorServicer_to_server(AuditorServicer(app, once), server)
    services = pb.DESCRIPTOR.services_by_name
    return [services[name].full_name for name in ("Tenant", "Provider", "Market", "Auditor")]
