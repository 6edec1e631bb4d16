"""gRPC servicers of the v1 API: open the envelope, convert, run the core command, convert back.

Every mutating RPC takes a SignedRequest: open_envelope() checks the signature over the exact
bytes received, the message type, the nonce and the timestamp (ReplayGuard on the server's
clock) before anything is parsed; the signer's address is who acts. Ownership is the core's
rule (PermissionDenied). Core errors become gRPC statuses in one place (api/status.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from marketplace.api import convert
from marketplace.api.envelope import open_envelope
from marketplace.api.status import ERROR_KEY, error_name, status_of
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import limits
from marketplace.core.errors import InvalidArgument, MarketError
from marketplace.core.events import DeploymentEventKind
from marketplace.core.manifest import Manifest, ManifestError, parse_manifest
from marketplace.core.market import MarketService
from marketplace.core.resources import GroupSpec
from marketplace.core.state import (
    Account,
    Deployment,
    DeploymentState,
    LeaseState,
    ProviderRecord,
    acct_key,
)
from marketplace.server.app import MarketApp, WatcherOverflow

log = logging.getLogger("gpumarket.market")

M = TypeVar("M", bound=Message)
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
MAX_LIST = 10_000


async def _abort(context: Context, exc: Exception) -> NoReturn:
    if not isinstance(exc, MarketError | WatcherOverflow):
        log.error("internal error", exc_info=exc)
    # context.abort() leaves a reference cycle (gRPC's call state ↔ its AbortError ↔ frames)
    # that only the collector frees, and it counts objects, not bytes: whatever the frames of
    # the error's tracebacks hold (a 1 MiB request, a parsed manifest) stayed, and hostile
    # requests grew the server by ~1 MiB each. Dropped here, it is freed at once.
    _drop_tracebacks(exc)
    if isinstance(exc, MarketError):
        context.set_trailing_metadata(((ERROR_KEY, error_name(exc)),))
        await context.abort(status_of(exc), str(exc))
    if isinstance(exc, WatcherOverflow):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
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
    def __init__(self, app: MarketApp) -> None:
        self.app = app

    @property
    def market(self) -> MarketService:
        return self.app.market

    def open(self, request: pb.SignedRequest, message_class: type[M]) -> tuple[str, M]:
        return open_envelope(request, message_class, self.app.guard)


async def _parse_off_loop(sdl: bytes) -> Manifest:
    try:
        return await asyncio.get_running_loop().run_in_executor(
            _PARSERS, parse_manifest, sdl, "manifest"
        )
    except ManifestError as exc:
        raise InvalidArgument("; ".join(e.location_message for e in exc.errors)) from None


def _limit(request: pb.ListRequest) -> int:
    return min(request.limit, MAX_LIST) if request.limit > 0 else MAX_LIST


class TenantServicer(_Base, pb_grpc.TenantServicer):
    def _account(self, account: Account) -> pb.Account:
        return convert.account_to_proto(
            account, self.market.escrowed(account.address), self.app.config.denom
        )

    def _deployment(self, dep: Deployment) -> pb.Deployment:
        available = (
            self.market.escrow_available(dep.id) if dep.state == DeploymentState.ACTIVE else 0
        )
        return convert.deployment_to_proto(dep, available)

    @unary
    async def GetAccount(self, request: pb.GetAccountRequest, context: Context) -> pb.Account:
        return self._account(self.market.get_account(request.address))

    @unary
    async def Fund(self, request: pb.SignedRequest, context: Context) -> pb.Account:
        signer, msg = self.open(request, pb.FundAccount)
        limits.check_address("fund: address", msg.address)
        return await self.app.run(
            lambda: self.market.fund(signer, msg.address, msg.amount), self._account
        )

    @unary
    async def CreateDeployment(self, request: pb.SignedRequest, context: Context) -> pb.Deployment:
        signer, msg = self.open(request, pb.CreateDeployment)
        if len(msg.sdl) > MAX_MANIFEST_BYTES:
            raise InvalidArgument(
                f"manifest is {len(msg.sdl):,} bytes; the limit is {MAX_MANIFEST_BYTES:,} (1 MiB)"
            )
        manifest = await _parse_off_loop(bytes(msg.sdl))
        signed = request.SerializeToString()
        return await self.app.run(
            lambda: self.market.create_deployment(
                signer,
                manifest.groups,
                manifest.job,
                bytes(msg.sdl),
                manifest.sdl_sha256,
                signed,
                msg.deposit,
            ),
            self._deployment,
        )

    @unary
    async def GetDeployment(self, request: pb.GetRequest, context: Context) -> pb.Deployment:
        return self._deployment(self.market.get_deployment(request.id))

    @unary
    async def ListDeployments(self, request: pb.ListRequest, context: Context) -> pb.DeploymentList:
        deps = self.market.list_deployments(request.owner or None, request.open_only)
        return pb.DeploymentList(
            deployments=[self._deployment(d) for d in deps[-_limit(request) :]]
        )

    @unary
    async def CloseDeployment(self, request: pb.SignedRequest, context: Context) -> pb.Deployment:
        signer, msg = self.open(request, pb.CloseDeployment)
        return await self.app.run(
            lambda: self.market.close_deployment(signer, msg.deployment_id), self._deployment
        )

    @unary
    async def Deposit(self, request: pb.SignedRequest, context: Context) -> pb.Deployment:
        signer, msg = self.open(request, pb.DepositEscrow)
        return await self.app.run(
            lambda: self.market.deposit(signer, msg.deployment_id, msg.amount), self._deployment
        )

    @unary
    async def GetOrder(self, request: pb.GetRequest, context: Context) -> pb.Order:
        return convert.order_to_proto(self.market.get_order(request.id))

    @unary
    async def ListOrders(self, request: pb.ListRequest, context: Context) -> pb.OrderList:
        orders = self.market.list_orders(open_only=request.open_only)
        if request.owner:
            orders = [o for o in orders if o.owner == request.owner]
        return pb.OrderList(orders=[convert.order_to_proto(o) for o in orders[-_limit(request) :]])

    @unary
    async def ListBids(self, request: pb.GetRequest, context: Context) -> pb.BidList:
        return pb.BidList(bids=[convert.bid_to_proto(b) for b in self.market.list_bids(request.id)])

    @unary
    async def ExplainOrder(self, request: pb.GetRequest, context: Context) -> pb.OrderExplanation:
        return convert.explanation_to_proto(self.market.explain_order(request.id))

    @unary
    async def AcceptBid(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        signer, msg = self.open(request, pb.AcceptBid)
        return await self.app.run(
            lambda: self.market.accept_bid(signer, msg.bid_id), convert.lease_to_proto
        )

    @unary
    async def GetLease(self, request: pb.GetRequest, context: Context) -> pb.Lease:
        return convert.lease_to_proto(self.market.get_lease(request.id))

    @unary
    async def ListLeases(self, request: pb.ListRequest, context: Context) -> pb.LeaseList:
        found = self.market.list_leases(owner=request.owner or None, open_only=request.open_only)
        return pb.LeaseList(leases=[convert.lease_to_proto(x) for x in found[-_limit(request) :]])

    @unary
    async def CloseLease(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        signer, msg = self.open(request, pb.CloseLease)
        return await self.app.run(
            lambda: self.market.close_lease(signer, msg.lease_id, msg.message),
            convert.lease_to_proto,
        )

    @stream
    async def WatchDeployment(
        self, request: pb.WatchDeploymentRequest, context: Context
    ) -> AsyncIterator[pb.DeploymentEvent]:
        app, dep_id = self.app, request.deployment_id
        self.market.get_deployment(dep_id)
        watcher = app.subscribe(app.deployment_watchers, dep_id)
        try:
            last = request.after_seq
            upto = app.committed_seq
            for event in self.market.deployment_events_after(dep_id, last):
                if event.seq > upto:
                    break
                last = event.seq
                yield convert.deployment_event_to_proto(event)
                if event.kind == DeploymentEventKind.DEPLOYMENT_CLOSED:
                    return  # nothing follows a close
            while True:
                live = await watcher.get()
                if live is None or live.seq <= last:
                    continue
                last = live.seq
                yield convert.deployment_event_to_proto(live)
                if live.kind == DeploymentEventKind.DEPLOYMENT_CLOSED:
                    return
        finally:
            app.unsubscribe(app.deployment_watchers, dep_id, watcher)

    @stream
    async def StreamLogs(
        self, request: pb.StreamLogsRequest, context: Context
    ) -> AsyncIterator[pb.LogLine]:
        app, lease_id = self.app, request.lease_id
        self.market.get_lease(lease_id)
        watcher = app.subscribe(app.log_watchers, lease_id)
        try:
            last = request.after_seq
            for line in app.store.logs(lease_id, request.after_seq, request.tail):
                last = line.seq
                yield convert.log_line_to_proto(line)
            while request.follow and not app.lease_closed(lease_id):
                item = await watcher.get()
                if item == "closed":
                    break
                if item is not None and item.seq > last:
                    last = item.seq
                    yield convert.log_line_to_proto(item)
            # lines written together with the close (or just before it)
            for line in app.store.logs(lease_id, last) if request.follow else ():
                yield convert.log_line_to_proto(line)
        finally:
            app.unsubscribe(app.log_watchers, lease_id, watcher)


class ProviderServicer(_Base, pb_grpc.ProviderServicer):
    @unary
    async def Register(self, request: pb.SignedRequest, context: Context) -> pb.RegisterResponse:
        signer, msg = self.open(request, pb.RegisterProvider)
        capacity = convert.capacity_from_proto(msg.inventory)
        config = self.app.config

        def reply(prov: ProviderRecord) -> pb.RegisterResponse:
            return pb.RegisterResponse(
                provider=self._info(prov),
                heartbeat_interval_ms=config.heartbeat_interval_ms,
                heartbeat_timeout_ms=config.heartbeat_timeout_ms,
            )

        return await self.app.run(
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

    def _info(self, prov: ProviderRecord) -> pb.ProviderInfo:
        return convert.provider_to_proto(
            prov, self.market.reliability(prov.address), self.market.open_lease_count(prov.address)
        )

    @unary
    async def Heartbeat(self, request: pb.SignedRequest, context: Context) -> pb.HeartbeatResponse:
        signer, msg = self.open(request, pb.Heartbeat)
        capacity = convert.capacity_from_proto(msg.inventory) if msg.HasField("inventory") else None
        unknown: list[str] = await self.app.run(
            lambda: self.market.heartbeat(
                signer, list(msg.running_lease_ids), capacity, msg.draining
            ),
            list,
        )
        return pb.HeartbeatResponse(
            server_time_ms=self.app.clock.now_ms(), unknown_lease_ids=unknown
        )

    @stream
    async def WatchOrders(
        self, request: pb.SignedRequest, context: Context
    ) -> AsyncIterator[pb.ProviderEvent]:
        signer, msg = self.open(request, pb.WatchOrders)
        app = self.app
        watcher = app.subscribe(app.provider_watchers, signer)
        try:
            upto = app.committed_seq
            last = msg.resume_token
            if last <= 0 or last > upto:  # fresh start, or a token from another marketplace
                snapshot = app.provider_snapshot(signer)
                for i, event in enumerate(snapshot):
                    if i == len(snapshot) - 1:
                        event.seq = upto  # resuming from here misses nothing
                    yield event
                last = upto
            else:
                for event in app.provider_backlog(signer, last, upto):
                    yield event
                last = upto
            while True:
                live = await watcher.get()
                if live is not None and live.seq > last:
                    last = live.seq
                    yield live
        finally:
            app.unsubscribe(app.provider_watchers, signer, watcher)

    @unary
    async def PlaceBid(self, request: pb.SignedRequest, context: Context) -> pb.Bid:
        signer, msg = self.open(request, pb.PlaceBid)
        offer = convert.offer_from_proto(msg.offer)
        return await self.app.run(
            lambda: self.market.place_bid(signer, msg.order_id, msg.price_per_hour, offer),
            convert.bid_to_proto,
        )

    @unary
    async def WithdrawBid(self, request: pb.SignedRequest, context: Context) -> pb.Bid:
        signer, msg = self.open(request, pb.WithdrawBid)
        return await self.app.run(
            lambda: self.market.withdraw_bid(signer, msg.bid_id), convert.bid_to_proto
        )

    @unary
    async def DeclineOrder(self, request: pb.SignedRequest, context: Context) -> pb.Ack:
        signer, msg = self.open(request, pb.DeclineOrder)
        return await self.app.run(
            lambda: self.market.decline_order(signer, msg.order_id, msg.reason),
            lambda _: pb.Ack(ok=True),
        )

    @unary
    async def GetManifest(self, request: pb.SignedRequest, context: Context) -> pb.Manifest:
        signer, msg = self.open(request, pb.GetManifest)

        def reply(found: tuple[Deployment, GroupSpec]) -> pb.Manifest:
            dep, group = found
            tenant_request = pb.SignedRequest()
            tenant_request.ParseFromString(dep.tenant_request)
            return pb.Manifest(
                lease_id=msg.lease_id,
                group_name=group.name,
                sdl=dep.sdl,
                tenant_request=tenant_request,
            )

        return await self.app.run(lambda: self.market.manifest_for(signer, msg.lease_id), reply)

    @unary
    async def ReportLeaseStatus(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        signer, msg = self.open(request, pb.LeaseStatusReport)
        endpoints = [convert.endpoint_from_proto(e) for e in msg.endpoints]
        running = msg.state == pb.LEASE_RUNNING
        return await self.app.run(
            lambda: self.market.report_status(
                signer,
                msg.lease_id,
                running=running,
                exited=msg.exited,
                exit_code=msg.exit_code,
                oom_killed=msg.oom_killed,
                endpoints=endpoints,
                message=msg.message,
            ),
            convert.lease_to_proto,
        )

    @unary
    async def ReportLogs(self, request: pb.SignedRequest, context: Context) -> pb.Ack:
        signer, msg = self.open(request, pb.LogBatch)
        kept = await self.app.append_logs(signer, msg)
        return pb.Ack(ok=True, message=f"{kept} lines")

    @unary
    async def CloseLease(self, request: pb.SignedRequest, context: Context) -> pb.Lease:
        signer, msg = self.open(request, pb.CloseLease)
        return await self.app.run(
            lambda: self.market.close_lease(signer, msg.lease_id, msg.message),
            convert.lease_to_proto,
        )


class MarketServicer(_Base, pb_grpc.MarketServicer):
    @unary
    async def ListProviders(self, request: pb.ListRequest, context: Context) -> pb.ProviderList:
        provs = self.market.list_providers()
        if request.open_only:
            provs = [p for p in provs if p.online]
        return pb.ProviderList(
            providers=[
                convert.provider_to_proto(
                    p, self.market.reliability(p.address), self.market.open_lease_count(p.address)
                )
                for p in provs[: _limit(request)]
            ]
        )

    @unary
    async def Stats(self, request: pb.MarketStatsRequest, context: Context) -> pb.MarketStats:
        market = self.market
        return pb.MarketStats(
            gpu_prices=[
                convert.price_stat_to_proto(s) for s in market.price_stats(request.since_ms)
            ],
            providers_online=sum(1 for p in market.list_providers() if p.online),
            open_orders=len(market.list_orders(open_only=True)),
            running_leases=sum(
                1 for x in market.state.leases.values() if x.state == LeaseState.RUNNING
            ),
        )

    @unary
    async def Audit(self, request: pb.AuditRequest, context: Context) -> pb.AuditReport:
        return convert.audit_to_proto(self.market.audit())

    @stream
    async def ListLedger(
        self, request: pb.ListRequest, context: Context
    ) -> AsyncIterator[pb.LedgerEntry]:
        key = acct_key(request.owner) if request.owner else ""
        entries = [e for e in self.market.state.ledger if not key or key in (e.debit, e.credit)]
        for entry in entries[-_limit(request) :]:
            yield convert.ledger_entry_to_proto(entry)


def add_servicers(server: grpc.aio.Server, app: MarketApp) -> list[str]:
    """Register the three v1 services; returns their full names (for reflection and health)."""
    pb_grpc.add_TenantServicer_to_server(TenantServicer(app), server)
    pb_grpc.add_ProviderServicer_to_server(ProviderServicer(app), server)
    pb_grpc.add_MarketServicer_to_server(MarketServicer(app), server)
    services = pb.DESCRIPTOR.services_by_name
    return [services[name].full_name for name in ("Tenant", "Provider", "Market")]
