"""Typed clients of the v1 API: TenantClient, ProviderClient, MarketClient (sync, for the CLI,
scripts, tests and benchmarks). The provider agent's daemon has its own grpc.aio link
(provider_agent/link.py), built on the same wire conversions (convert.py).

Mutating calls, and reads of what is not public, are sealed with the caller's Key (a
SignedRequest) for the marketplace the client talks to: its id is asked once per client
(Market.Info) and named in every signature. Listings follow their pages (a `limit` stops
early). Every unary call has a
deadline; streams have none (a deadline would cut a watch mid-flow). A failed call raises a
MarketError subclass, never grpc.RpcError: the market's own errors come back as the same class
the server raised (status.py), and transport failures as MarketUnavailable with a message that
says what to do. Answers are the wire messages (marketplace.api.v1.market_pb2), fully typed.

`address` may list several addresses of one marketplace ("a:7420,b:7420": a leader and its
standbys). A call answered UNAVAILABLE (nothing listening, or a standby's "not the leader") is
sent again, the same sealed bytes, to the next address, for up to `failover_s` in all; the
client then sticks to the address that answered. Each address's market id is checked before
anything is sent there, so two different marketplaces are never mixed (addresses.py). A
command with no answer before its deadline is sent again too, the same bytes, within the same
budget: the market may have run it, and answers a resend with what it came to (ANSWERED_ONCE).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

import grpc
from google.protobuf.message import Message

from marketplace.api.addresses import DEFAULT_FAILOVER_S, AddressRing, Failover, different_market
from marketplace.api.envelope import seal
from marketplace.api.status import error_from_status
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import InvalidArgument, MarketError
from marketplace.identity import Key

T = TypeVar("T")
Item = TypeVar("Item")
Reply = TypeVar("Reply", bound=Message)

DEFAULT_MARKET = "127.0.0.1:7420"
DEFAULT_TIMEOUT_S = 10.0
# The rpcs whose sealed bytes the market answers once and only once (server/once.py): one
# with no answer in time may have run all the same, so it is sent again, the same bytes, and
# gets what it came to (a read is not: its nonce is spent, and it is simply asked anew).
ANSWERED_ONCE = frozenset(
    {
        "Fund", "CreateDeployment", "CloseDeployment", "Deposit", "AcceptBid", "CloseLease",
        "UpdateDeployment", "Register", "Heartbeat", "PlaceBid", "WithdrawBid", "DeclineOrder",
        "GetManifest", "ReportLeaseStatus", "ReportLogs", "ReportTelemetry",
        "SignProviderAttributes", "RevokeProviderAttributes",
    }
)  # fmt: skip
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 2 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


class MarketUnavailable(MarketError):
    """The marketplace could not be reached, or did not answer in time."""


def translate(exc: grpc.RpcError, address: str) -> MarketError:
    """One gRPC failure as the MarketError a person can act on."""
    # a failed call's error is also its grpc.Call, which holds the status
    call = exc if isinstance(exc, grpc.Call) else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    details = (call.details() if call is not None else "") or ""
    metadata = (call.trailing_metadata() if call is not None else None) or ()
    error = error_from_status(code, details, metadata)
    if error is not None:
        return error
    if code == grpc.StatusCode.UNAVAILABLE:
        if "handshake" in details.lower() or "ssl" in details.lower():
            return MarketUnavailable(
                f"TLS handshake with the marketplace at {address} failed ({details}): "
                "check --tls-ca and the server's certificate"
            )
        return MarketUnavailable(
            f"cannot reach the marketplace at {address}: is `gpumarket market serve` running? "
            "(set --market or GPUMARKET_MARKET)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return MarketUnavailable(f"the marketplace at {address} did not answer in time")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return InvalidArgument(f"the marketplace refused the request: {details}")
    return MarketError(f"{code.name.lower()}: {details}")


def channel(
    address: str,
    tls_ca: Path | None = None,
    tls: bool = False,
    client_cert: tuple[Path, Path] | None = None,
) -> grpc.Channel:
    """A channel to the marketplace: TLS when a CA file is given or tls=True (system roots).
    client_cert = (certificate, private key), PEM: shown to a market that asks for mutual TLS."""
    if tls_ca is not None or tls or client_cert is not None:
        creds = tls_credentials(tls_ca, client_cert)
        return grpc.secure_channel(address, creds, options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def tls_credentials(
    tls_ca: Path | None, client_cert: tuple[Path, Path] | None
) -> grpc.ChannelCredentials:
    """TLS trusting `tls_ca` (None: the system's roots), showing `client_cert` (certificate,
    key) when given. The same credentials serve sync channels and grpc.aio ones (the agent)."""
    roots = tls_ca.read_bytes() if tls_ca is not None else None
    cert, key = (p.read_bytes() for p in client_cert) if client_cert else (None, None)
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=cert
    )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


PageReply = TypeVar("PageReply", bound=Message)


class ServiceClient:
    SERVICE: ClassVar[str]  # the v1 service this client calls

    def __init__(
        self,
        address: str = DEFAULT_MARKET,
        key: Key | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        tls_ca: Path | None = None,
        tls: bool = False,
        grpc_channel: grpc.Channel | None = None,
        client_cert: tuple[Path, Path] | None = None,
        failover_s: float = DEFAULT_FAILOVER_S,
    ) -> None:
        self.ring = AddressRing.parse(address)
        self.address = self.ring.current
        self.key = key
        self.timeout_s = timeout_s
        self.failover_s = failover_s
        self._own_channel = grpc_channel is None
        self._connect = functools.partial(channel, tls_ca=tls_ca, tls=tls, client_cert=client_cert)
        self.channel = grpc_channel or self._connect(self.address)
        self._market_id: str | None = None
        self._id_learned_at = self.address  # the address that told us _market_id
        self._id_checked = True  # whether the current address's market id is known to match
        self.page_size = 0  # items per page asked of listings (0: the server's default)

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    # --- failover ---------------------------------------------------------------------------------
    def _failing_over(self, attempt: Callable[[], T], budget: Failover | None = None) -> T:
        """attempt(), moved to the next address while the current one answers UNAVAILABLE
        (several addresses, own channel, within `budget`: failover_s from now); raises what
        the last one said."""
        budget = budget or Failover(self.failover_s)
        while True:
            try:
                if not self._id_checked:
                    self._check_market_id()
                answer = attempt()
            except grpc.RpcError as exc:
                if not self._may_move(exc, budget):
                    where = str(self.ring) if self.ring.several else self.address
                    raise translate(exc, where) from None
                self._move()
                if self.ring.round_done:
                    time.sleep(budget.next_pause_s())
                continue
            self.ring.succeeded()
            return answer

    def _may_move(self, exc: grpc.RpcError, budget: Failover) -> bool:
        unavailable = isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.UNAVAILABLE
        return unavailable and self._own_channel and self.ring.several and budget.left_s > 0

    def _move(self) -> None:
        """Calls go to the next address from now on (a fresh channel: no reconnect backoff
        carried over), once its market id is checked."""
        self.channel.close()
        self.address = self.ring.advance()
        self.channel = self._connect(self.address)
        self._id_checked = self._market_id is None  # nothing sealed yet: whatever it says goes

    def _check_market_id(self) -> None:
        """The current address must be the marketplace the client has been signing for."""
        info = self._info()
        if self._market_id is not None and info.market_id != self._market_id:
            first = self._id_learned_at
            raise different_market(first, self._market_id, self.address, info.market_id)
        self._id_checked = True

    def _info(self) -> pb.MarketInfo:
        call = self.channel.unary_unary(
            "/marketplace.api.v1.Market/Info",
            request_serializer=_serialize,
            response_deserializer=pb.MarketInfo.FromString,
        )
        info = call(pb.MarketInfoRequest(), timeout=self.timeout_s)
        if not isinstance(info, pb.MarketInfo):  # cannot happen: FromString made it
            raise TypeError(f"Info answered {type(info).__name__}")
        return info

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def market_id(self) -> str:
        """The id of the marketplace at the other end (asked once): what signatures name."""
        if self._market_id is None:
            info = self._failing_over(self._info)
            self._market_id, self._id_learned_at = info.market_id, self.address
            self._id_checked = True
        return self._market_id

    def _seal(self, message: Message) -> pb.SignedRequest:
        if self.key is None:
            raise InvalidArgument("this call must be signed: the client has no key")
        return seal(self.key, message, market=self.market_id)

    def _size(self, limit: int) -> int:
        """The page size to ask for: no more than `limit` (when > 0) needs."""
        if limit > 0 and self.page_size > 0:
            return min(limit, self.page_size)
        return limit or self.page_size

    def _pages(
        self,
        method: str,
        request: Callable[[str], Message],
        reply: type[PageReply],
        items: Callable[[PageReply], tuple[Sequence[Item], str]],
        limit: int = 0,
    ) -> list[Item]:
        """Every item of a signed listing, page after page (at most `limit` when > 0);
        `items` gives a reply's items and its next_page_token."""
        found: list[Item] = []
        token = ""
        while True:
            page, token = items(self._unary(method, self._seal(request(token)), reply))
            found.extend(page)
            if not token or (limit > 0 and len(found) >= limit):
                return found[:limit] if limit > 0 else found

    def _path(self, method: str) -> str:
        """'/marketplace.api.v1.Tenant/GetAccount': checked against the proto's service."""
        service = pb.DESCRIPTOR.services_by_name[self.SERVICE]
        return f"/{service.full_name}/{service.methods_by_name[method].name}"

    def _unary(self, method: str, request: Message, reply: type[Reply]) -> Reply:
        budget = Failover(self.failover_s)  # for moving on, and for sending again

        def attempt() -> Message:
            call = self.channel.unary_unary(
                self._path(method),
                request_serializer=_serialize,
                response_deserializer=reply.FromString,
            )
            while True:
                try:
                    answer: Message = call(request, timeout=self.timeout_s)
                    return answer
                except grpc.RpcError as exc:
                    late = (
                        isinstance(exc, grpc.Call)
                        and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                    )
                    if not (late and method in ANSWERED_ONCE and budget.left_s > 0):
                        raise

        answer = self._failing_over(attempt, budget)
        if not isinstance(answer, reply):  # cannot happen: reply.FromString made it
            raise TypeError(f"{method} answered {type(answer).__name__}, not {reply.__name__}")
        return answer

    def _stream(
        self, method: str, request: Message, reply: type[Reply], timeout_s: float | None = None
    ) -> Iterator[Reply]:
        """The answers, until the server ends the stream (watches pass no timeout). One that
        fails before its first answer fails over like a unary call; one cut later raises (the
        caller resumes from what it saw), and the next call goes to the next address."""

        def opened() -> tuple[grpc.Call, Iterator[Reply], Reply | None]:
            call = self.channel.unary_stream(
                self._path(method),
                request_serializer=_serialize,
                response_deserializer=reply.FromString,
            )(request, timeout=timeout_s)
            answers: Iterator[Reply] = iter(call)
            return call, answers, next(answers, None)

        call, answers, first = self._failing_over(opened)
        # grpc-stubs leaves Call.cancel unannotated; this names what it is
        cancel: Callable[[], object] = call.cancel
        try:
            if first is None:
                return
            for answer in itertools.chain((first,), answers):
                if not isinstance(answer, reply):  # cannot happen: reply.FromString made it
                    raise TypeError(f"{method} sent {type(answer).__name__}, not {reply.__name__}")
                yield answer
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            error = translate(exc, self.address)
            if self._may_move(exc, Failover(self.failover_s)):
                self._move()
            raise error from None
        finally:
            cancel()


class TenantClient(ServiceClient):
    """What a tenant does: fund (admin), deploy, watch, accept, read logs, close."""

    SERVICE = "Tenant"

    def get_account(self, address: str | None = None) -> pb.Account:
        """Your account (another's needs the admin key)."""
        msg = pb.GetAccountRequest(address=address or "")
        return self._unary("GetAccount", self._seal(msg), pb.Account)

    def fund(self, address: str, amount: int) -> pb.Account:
        """Dev faucet: only the marketplace's admin key may sign it."""
        msg = pb.FundAccount(address=address, amount=amount)
        return self._unary("Fund", self._seal(msg), pb.Account)

    def create_deployment(
        self,
        sdl: bytes,
        deposit: int,
        force: bool = False,
        auto_top_up: int = 0,
        auto_top_up_max: int = 0,
    ) -> pb.Deployment:
        """Deploy with `deposit` in escrow; `auto_top_up` (capped at `auto_top_up_max` in all):
        what the market moves from your account each time the escrow runs low."""
        msg = pb.CreateDeployment(
            sdl=sdl,
            deposit=deposit,
            force=force,
            auto_top_up=auto_top_up,
            auto_top_up_max=auto_top_up_max,
        )
        return self._unary("CreateDeployment", self._seal(msg), pb.Deployment)

    def update_deployment(self, deployment_id: str, sdl: bytes, version: int) -> pb.UpdateResult:
        """Update in place to `version` (the current one + 1): image, command, args, env
        (anything else is refused)."""
        msg = pb.UpdateDeployment(deployment_id=deployment_id, sdl=sdl, version=version)
        return self._unary("UpdateDeployment", self._seal(msg), pb.UpdateResult)

    def get_deployment(self, deployment_id: str) -> pb.Deployment:
        req = self._seal(pb.GetRequest(id=deployment_id))
        return self._unary("GetDeployment", req, pb.Deployment)

    def list_deployments(
        self, owner: str | None = None, open_only: bool = False, limit: int = 0
    ) -> list[pb.Deployment]:
        """Your deployments, oldest first (all pages, or the first `limit`)."""
        return self._pages(
            "ListDeployments",
            lambda token: _list_request(owner, open_only, self._size(limit), token),
            pb.DeploymentList,
            lambda r: (r.deployments, r.next_page_token),
            limit,
        )

    def close_deployment(self, deployment_id: str) -> pb.Deployment:
        msg = pb.CloseDeployment(deployment_id=deployment_id)
        return self._unary("CloseDeployment", self._seal(msg), pb.Deployment)

    def deposit(self, deployment_id: str, amount: int) -> pb.Deployment:
        msg = pb.DepositEscrow(deployment_id=deployment_id, amount=amount)
        return self._unary("Deposit", self._seal(msg), pb.Deployment)

    def get_order(self, order_id: str) -> pb.Order:
        return self._unary("GetOrder", self._seal(pb.GetRequest(id=order_id)), pb.Order)

    def list_orders(
        self, owner: str | None = None, open_only: bool = False, limit: int = 0
    ) -> list[pb.Order]:
        """The orders you may read: yours, and the open ones when you are a provider."""
        return self._pages(
            "ListOrders",
            lambda token: _list_request(owner, open_only, self._size(limit), token),
            pb.OrderList,
            lambda r: (r.orders, r.next_page_token),
            limit,
        )

    def list_bids(self, order_id: str, limit: int = 0) -> list[pb.Bid]:
        """The order's bids you may see (sealed until its bid window closes), best first."""
        return self._pages(
            "ListBids",
            lambda token: pb.ListBidsRequest(
                order_id=order_id, page_size=self._size(limit), page_token=token
            ),
            pb.BidList,
            lambda r: (r.bids, r.next_page_token),
            limit,
        )

    def explain_order(self, order_id: str) -> pb.OrderExplanation:
        req = self._seal(pb.GetRequest(id=order_id))
        return self._unary("ExplainOrder", req, pb.OrderExplanation)

    def accept_bid(self, bid_id: str) -> pb.Lease:
        return self._unary("AcceptBid", self._seal(pb.AcceptBid(bid_id=bid_id)), pb.Lease)

    def get_lease(self, lease_id: str) -> pb.Lease:
        return self._unary("GetLease", self._seal(pb.GetRequest(id=lease_id)), pb.Lease)

    def list_leases(
        self, owner: str | None = None, open_only: bool = False, limit: int = 0
    ) -> list[pb.Lease]:
        """Your leases, as tenant or provider (owner: only those with that party)."""
        return self._pages(
            "ListLeases",
            lambda token: _list_request(owner, open_only, self._size(limit), token),
            pb.LeaseList,
            lambda r: (r.leases, r.next_page_token),
            limit,
        )

    def close_lease(self, lease_id: str, message: str = "") -> pb.Lease:
        msg = pb.CloseLease(lease_id=lease_id, message=message)
        return self._unary("CloseLease", self._seal(msg), pb.Lease)

    def watch_deployment(
        self,
        deployment_id: str,
        after_seq: int = 0,
        history_only: bool = False,
        timeout_s: float | None = None,
    ) -> Iterator[pb.DeploymentEvent]:
        """Events after `after_seq`, then live ones; ends after the deployment closes (or with
        `history_only`, after the stored ones). `timeout_s` bounds the whole watch."""
        req = pb.WatchDeploymentRequest(
            deployment_id=deployment_id, after_seq=after_seq, history_only=history_only
        )
        return self._stream("WatchDeployment", self._seal(req), pb.DeploymentEvent, timeout_s)

    def stream_logs(
        self, lease_id: str, follow: bool = False, tail: int = 0, after_seq: int = 0
    ) -> Iterator[pb.LogLine]:
        req = pb.StreamLogsRequest(lease_id=lease_id, follow=follow, tail=tail, after_seq=after_seq)
        return self._stream("StreamLogs", self._seal(req), pb.LogLine)

    def shell(self, opening: pb.ShellOpen, frames: Iterable[pb.ShellFrame]) -> ShellCall:
        """A shell or file copy in a lease's container, relayed by the marketplace: `opening`
        signed as the stream's first frame, then `frames` (stdin, resizes; consumed on gRPC's
        thread as they come). The answers: output, then the exit (or error) frame."""
        first = pb.ShellFrame(open=self._seal(opening))
        call = self.channel.stream_stream(
            self._path("Shell"),
            request_serializer=_serialize,
            response_deserializer=pb.ShellFrame.FromString,
        )(itertools.chain((first,), frames))
        return ShellCall(call, self.address)


class ShellCall:
    """The answers of one Tenant.Shell stream; cancel() ends it from any thread."""

    def __init__(self, call: Iterable[pb.ShellFrame], address: str) -> None:
        self._call = call
        self._address = address

    def __iter__(self) -> Iterator[pb.ShellFrame]:
        try:
            yield from self._call
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise translate_session(exc, self._address) from None

    def cancel(self) -> None:
        cancel: Callable[[], object] = getattr(self._call, "cancel", lambda: None)
        cancel()


def translate_session(exc: grpc.RpcError, address: str) -> MarketError:
    """translate(), except that UNAVAILABLE from a live marketplace is about the provider and
    says so in the server's own words."""
    if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.UNAVAILABLE:
        details = exc.details() or ""
        if details.startswith("provider "):
            return MarketUnavailable(details)
    return translate(exc, address)


class ProviderClient(ServiceClient):
    """A provider's calls (sync). The agent daemon has its own (provider_agent/link.py)."""

    SERVICE = "Provider"

    def register(self, msg: pb.RegisterProvider) -> pb.RegisterResponse:
        return self._unary("Register", self._seal(msg), pb.RegisterResponse)

    def heartbeat(
        self,
        running_lease_ids: Iterable[str] = (),
        inventory: pb.Inventory | None = None,
        draining: bool = False,
    ) -> pb.HeartbeatResponse:
        msg = pb.Heartbeat(running_lease_ids=list(running_lease_ids), draining=draining)
        if inventory is not None:
            msg.inventory.CopyFrom(inventory)
        return self._unary("Heartbeat", self._seal(msg), pb.HeartbeatResponse)

    def watch_orders(
        self, resume_token: int = 0, with_leases: bool = False
    ) -> Iterator[pb.ProviderEvent]:
        """The order feed after `resume_token` (0: what is open first); `with_leases`: a
        resumed feed starts with this provider's open leases (lease_won), whatever the token."""
        msg = pb.WatchOrders(resume_token=resume_token, with_leases=with_leases)
        return self._stream("WatchOrders", self._seal(msg), pb.ProviderEvent)

    def place_bid(
        self, order_id: str, price_per_hour: int, offer: pb.BidOffer | None = None
    ) -> pb.Bid:
        msg = pb.PlaceBid(order_id=order_id, price_per_hour=price_per_hour, offer=offer)
        return self._unary("PlaceBid", self._seal(msg), pb.Bid)

    def withdraw_bid(self, bid_id: str) -> pb.Bid:
        return self._unary("WithdrawBid", self._seal(pb.WithdrawBid(bid_id=bid_id)), pb.Bid)

    def decline_order(self, order_id: str, reason: str) -> pb.Ack:
        msg = pb.DeclineOrder(order_id=order_id, reason=reason)
        return self._unary("DeclineOrder", self._seal(msg), pb.Ack)

    def get_manifest(self, lease_id: str) -> pb.Manifest:
        return self._unary(
            "GetManifest", self._seal(pb.GetManifest(lease_id=lease_id)), pb.Manifest
        )

    def report_status(self, report: pb.LeaseStatusReport) -> pb.Lease:
        return self._unary("ReportLeaseStatus", self._seal(report), pb.Lease)

    def report_logs(self, lease_id: str, lines: Iterable[pb.LogLine]) -> pb.Ack:
        msg = pb.LogBatch(lease_id=lease_id, lines=list(lines))
        return self._unary("ReportLogs", self._seal(msg), pb.Ack)

    def close_lease(self, lease_id: str, message: str = "") -> pb.Lease:
        msg = pb.CloseLease(lease_id=lease_id, message=message)
        return self._unary("CloseLease", self._seal(msg), pb.Lease)

    def report_telemetry(self, report: pb.TelemetryReport) -> pb.Ack:
        return self._unary("ReportTelemetry", self._seal(report), pb.Ack)

    def status(self, provider: str = "") -> pb.ProviderStatus:
        """Your own GPUs' latest telemetry and your declines by kind (only yours: another
        provider's is PERMISSION_DENIED)."""
        msg = pb.ProviderStatusRequest(provider=provider)
        return self._unary("GetProviderStatus", self._seal(msg), pb.ProviderStatus)


class MarketClient(ServiceClient):
    """Market data: providers and price statistics (public); the audit and the whole ledger
    (the admin key), your own ledger entries (your key)."""

    SERVICE = "Market"

    def info(self) -> pb.MarketInfo:
        return self._unary("Info", pb.MarketInfoRequest(), pb.MarketInfo)

    def list_providers(self, online_only: bool = False, limit: int = 0) -> list[pb.ProviderInfo]:
        found: list[pb.ProviderInfo] = []
        token = ""
        while True:
            req = pb.ListRequest(
                open_only=online_only, page_size=self._size(limit), page_token=token
            )
            answer = self._unary("ListProviders", req, pb.ProviderList)
            found.extend(answer.providers)
            token = answer.next_page_token
            if not token or (limit > 0 and len(found) >= limit):
                return found[:limit] if limit > 0 else found

    def stats(self, since_ms: int = 0) -> pb.MarketStats:
        return self._unary("Stats", pb.MarketStatsRequest(since_ms=since_ms), pb.MarketStats)

    def price_history(self, since_ms: int = 0, bucket_ms: int = 0) -> pb.PriceHistory:
        """Clearing prices per GPU model in buckets of time (0: five minutes), public."""
        msg = pb.PriceHistoryRequest(since_ms=since_ms, bucket_ms=bucket_ms)
        return self._unary("GetPriceHistory", msg, pb.PriceHistory)

    def audit(self) -> pb.AuditReport:
        """Admin key only."""
        return self._unary("Audit", self._seal(pb.AuditRequest()), pb.AuditReport)

    def ledger(self, address: str | None = None, limit: int = 0) -> list[pb.LedgerEntry]:
        """Entries touching `address` (your own by default); every entry for the admin key."""
        return self._pages(
            "ListLedger",
            lambda token: _list_request(address, False, self._size(limit), token),
            pb.LedgerPage,
            lambda r: (r.entries, r.next_page_token),
            limit,
        )

    def price_advice(self, since_ms: int, provider: str = "") -> pb.PriceAdviceReport:
        """Your auctions since `since_ms` replayed at one price per GPU-hour (you, a provider;
        the admin key may name any provider)."""
        msg = pb.PriceAdviceRequest(provider=provider, since_ms=since_ms)
        return self._unary("PriceAdvice", self._seal(msg), pb.PriceAdviceReport)


def _list_request(owner: str | None, open_only: bool, size: int, token: str) -> pb.ListRequest:
    return pb.ListRequest(owner=owner or "", open_only=open_only, page_size=size, page_token=token)


class AuditorClient(ServiceClient):
    """An auditor signs and revokes providers' attributes (its key); anyone lists what is
    signed and runs the checks an auditor runs before signing."""

    SERVICE = "Auditor"

    def sign(
        self, provider: str, attributes: dict[str, str], expires_at_ms: int
    ) -> pb.AttestationList:
        """Sign `attributes` of `provider` until `expires_at_ms` (the marketplace's clock)."""
        if self.key is None:
            raise InvalidArgument("signing needs the auditor's key")
        msg = pb.SignProviderAttributes(
            provider=provider,
            auditor=self.key.address,
            attributes=[pb.Attribute(key=k, value=v) for k, v in sorted(attributes.items())],
            expires_at_ms=expires_at_ms,
        )
        return self._unary("SignProviderAttributes", self._seal(msg), pb.AttestationList)

    def revoke(self, provider: str, keys: Sequence[str] = ()) -> pb.AttestationList:
        """Withdraw this auditor's signatures of `keys` (all of them when none)."""
        if self.key is None:
            raise InvalidArgument("revoking needs the auditor's key")
        msg = pb.RevokeProviderAttributes(
            provider=provider, auditor=self.key.address, keys=list(keys)
        )
        return self._unary("RevokeProviderAttributes", self._seal(msg), pb.AttestationList)

    def list(self, provider: str) -> pb.AttestationList:
        req = pb.ListAttestationsRequest(provider=provider)
        return self._unary("ListAttestations", req, pb.AttestationList)

    def verify(
        self, provider: str, attributes: dict[str, str] | None = None
    ) -> pb.ProviderFindings:
        req = pb.VerifyProviderRequest(
            provider=provider,
            attributes=[
                pb.Attribute(key=k, value=v) for k, v in sorted((attributes or {}).items())
            ],
        )
        return self._unary("VerifyProvider", req, pb.ProviderFindings)
