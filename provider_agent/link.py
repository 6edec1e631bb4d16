"""The agent's link to the marketplace: the only agent module that imports grpc.

Speaks the v1 Provider service (proto/marketplace/api/v1/market.proto) over grpc.aio, on ONE
long-lived two-way stream (Provider.Channel; marketplace/server/channel.py has its rules): every
request is a SignedRequest sealed with the provider's Ed25519 key for the marketplace at the
other end (its id asked once, from Market.Info), sent on the stream with a sequence number and
answered in order; the order feed comes down the same stream and resumes from a token. A
tenant's manifest must be signed for that same marketplace. The stream is opened again with
backoff when it drops, and what was unanswered is resent unchanged (never applied twice).

The rest of the agent never sees grpc or protobuf: what comes in is decoded by
marketplace/api/convert.py into core types (orders, bids, leases, order-feed events, manifests),
and a failed call raises the core error that marketplace/api/status.py maps its status to
(`Unavailable` when trying again may help). The agent's own outgoing messages (inventory, status,
logs) are built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.message import Message

from marketplace.api.addresses import AddressRing, different_market
from marketplace.api.attestations import audited_from_proto
from marketplace.api.channel import WATCH_ORDERS, reply_of
from marketplace.api.client import tls_credentials
from marketplace.api.convert import (
    bid_from_proto,
    endpoint_to_proto,
    lease_from_proto,
    lease_manifest_from_proto,
    offer_to_proto,
    provider_event_from_proto,
)
from marketplace.api.envelope import open_envelope, seal
from marketplace.api.status import error_from_rpc
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core.errors import (
    InvalidArgument,
    MarketError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from marketplace.core.limits import MAX_GPUS, TELEMETRY_RANGES, display_safe
from marketplace.core.provider_feed import FeedEvent, LeaseManifest
from marketplace.core.state import Bid, Lease, Offer
from marketplace.identity import Key
from provider_agent.backoff import Backoff
from provider_agent.container import LogLine
from provider_agent.inventory import Inventory
from provider_agent.supervisor import StatusReport

CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)
# the longest wait between attempts to open the stream again (the agent's reconnect_max_s, when
# shorter). gRPC's own reconnect backoff is capped alike: a channel that failed for a while
# otherwise fails calls at once ("connection refused") for seconds after the marketplace is back
RECONNECT_MAX_S = 5.0
VERSION = "gpumarket-provider/0.1"
Reply = TypeVar("Reply", bound=Message)

log = logging.getLogger(__name__)


def _error(exc: grpc.aio.AioRpcError) -> MarketError:
    # grpc-stubs types metadata items as objects with .key/.value; grpc.aio yields (key, value)
    pairs = cast(Iterable[tuple[str, str | bytes]], exc.trailing_metadata() or ())
    return error_from_rpc(exc.code(), exc.details() or "", pairs)


@dataclass(frozen=True)
class TlsSettings:
    """TLS to the marketplace: trust `ca` (None: the system's roots); show `client_cert`
    (certificate, key) to a market serving mutual TLS."""

    ca: Path | None = None
    client_cert: tuple[Path, Path] | None = None


def _channel(address: str, tls: TlsSettings | None, reconnect_max_s: float) -> grpc.aio.Channel:
    backoff_ms = int(reconnect_max_s * 1000)
    options = (
        *CHANNEL_OPTIONS,
        ("grpc.initial_reconnect_backoff_ms", min(500, backoff_ms)),
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
    )
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    creds = tls_credentials(tls.ca, tls.client_cert)
    return grpc.aio.secure_channel(address, creds, options=options)


@dataclass
class _Outgoing:
    """A sent message awaiting its answer; resent as it is when the stream is opened again."""

    message: pb.ProviderMessage
    answer: asyncio.Future[pb.ChannelAnswer]
    resend: bool = True  # False: the stream's own (WatchOrders), failed when it drops


@dataclass
class LinkCounters:
    """What the stream went through (for tests and the agent's metrics)."""

    streams_opened: int = 0
    resent: int = 0  # messages sent again on a new stream, their envelopes unchanged
    already_applied: int = 0  # answers saying a resend had been applied before


class MarketLink:
    """One Provider.Channel stream to the marketplace, opened on first use and opened again
    (with backoff) whenever it drops: every call is a signed message on it, answered in order;
    watch() starts the order feed on it. Messages unanswered when a stream drops are resent on
    the next with the same signed envelopes, so the marketplace applies each exactly once
    (server/channel.py); a call not answered within `timeout_s` raises Unavailable and is not
    resent after. While the link waits to reconnect, calls fail at once (Unavailable); it waits
    at most `reconnect_max_s` (RECONNECT_MAX_S, if that is shorter) between attempts."""

    def __init__(
        self,
        address: str,
        key: Key,
        timeout_s: float = 5.0,
        tls: TlsSettings | None = None,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        # several addresses of one marketplace: a call answered UNAVAILABLE moves the link to
        # the next (the agent's reconnect loop then retries there); see api/addresses.py
        self.ring = AddressRing.parse(address)
        self.address = self.ring.current
        self.key = key
        self.timeout_s = timeout_s
        self._tls = tls
        self.reconnect_max_s = min(reconnect_max_s, RECONNECT_MAX_S)
        self._open(self.address)
        self._market_id: str | None = None
        self._id_from = self.address  # where _market_id was learned; checked at every move
        self._id_checked = True
        # the auditors' signatures of this provider that count now (for signedBy), by every
        # name a placement may use; refreshed at each registration and heartbeat
        self.audited: dict[str, dict[str, str]] = {}
        self.counters = LinkCounters()
        self._seq = 0
        self._unanswered: dict[int, _Outgoing] = {}  # by seq, in the order sent
        self._send: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._away: str | None = None  # why the stream is down while waiting to reconnect
        self._feed: asyncio.Queue[pb.ProviderEvent | MarketError] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._call: grpc.aio.StreamStreamCall[pb.ProviderMessage, pb.MarketMessage] | None = None

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self._channel.close(grace=None)

    def _open(self, address: str) -> None:
        self._channel = _channel(address, self._tls, self.reconnect_max_s)
        self._stub = pb_grpc.ProviderStub(self._channel)
        self._market_stub = pb_grpc.MarketStub(self._channel)

    async def _failed(self, channel: grpc.aio.Channel, error: MarketError) -> MarketError:
        """`error`, after moving on to the next address when it says the one `channel` goes
        to is away (and no other call moved already). Calls still on the old channel end."""
        if isinstance(error, Unavailable) and self.ring.several and channel is self._channel:
            self.address = self.ring.advance()
            self._open(self.address)
            self._id_checked = self._market_id is None
            await channel.close(grace=None)
        return error

    async def market_id(self) -> str:
        """The marketplace's id (asked once, and checked at each new address): what every
        signature names. An address that answers as another marketplace is left."""
        if self._market_id is None or not self._id_checked:
            channel = self._channel
            try:
                info = await self._market_stub.Info(
                    pb.MarketInfoRequest(),
                    timeout=self.timeout_s,
                    wait_for_ready=not self.ring.several,  # several: a dead one fails fast
                )
            except grpc.aio.AioRpcError as exc:
                raise await self._failed(channel, _error(exc)) from None
            if self._market_id is not None and info.market_id != self._market_id:
                mixed = different_market(
                    self._id_from, self._market_id, self.address, info.market_id
                )
                raise await self._failed(channel, Unavailable(str(mixed)))
            self._market_id, self._id_checked = info.market_id, True
        return self._market_id

    async def _seal(self, message: Message) -> pb.SignedRequest:
        return seal(self.key, message, market=await self.market_id())

    # --- the stream -----------------------------------------------------------------------------
    def _start(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._keep_open(), name="market-channel")

    async def _keep_open(self) -> None:
        """Open the stream, and again whenever it drops, with backoff."""
        backoff = Backoff(initial=min(0.2, self.reconnect_max_s), maximum=self.reconnect_max_s)
        while True:
            reason = "the stream ended"
            try:
                await self._run_stream(backoff)
            except grpc.aio.AioRpcError as exc:
                # UNAVAILABLE moves the link to the next address (several: api/addresses.py)
                reason = str(await self._failed(self._channel, _error(exc)))
            finally:
                self._connected.clear()
                self._call = None
                for seq, out in list(self._unanswered.items()):
                    if not out.resend and not out.answer.done():
                        del self._unanswered[seq]
                        out.answer.set_exception(Unavailable(f"stream dropped: {reason}"))
                if self._feed is not None:  # the feed ends with the stream: watch() again
                    self._feed.put_nowait(Unavailable(f"order stream dropped: {reason}"))
                    self._feed = None
            self._away = reason
            await asyncio.sleep(backoff.next())
            self._away = None

    async def _run_stream(self, backoff: Backoff) -> None:
        # a new queue for what is sent from now on; everything unanswered goes first
        self._send = asyncio.Queue()
        resend = list(self._unanswered.values())
        # written by a task of ours, not from a request iterator: grpc's own task for an
        # iterator outlives a dropped stream and its generator dies "already running"
        call = self._stub.Channel()
        self._call = call
        writer = asyncio.create_task(self._write(call, resend, self._send), name="channel-writer")
        try:
            await call.wait_for_connection()
            self.counters.streams_opened += 1
            self._connected.set()
            async for message in call:
                backoff.reset()
                if message.HasField("answer"):
                    self._answered(message.answer)
                elif self._feed is not None:
                    self._feed.put_nowait(message.event)
        finally:
            writer.cancel()
            # it ends with the call: cancelled, or a write refused because the call ended
            ended = (asyncio.CancelledError, asyncio.InvalidStateError, grpc.aio.AioRpcError)
            with contextlib.suppress(*ended):
                await writer

    async def _write(
        self,
        call: grpc.aio.StreamStreamCall,
        resend: list[_Outgoing],
        queue: asyncio.Queue[_Outgoing],
    ) -> None:
        for out in resend:
            if out.message.seq in self._unanswered:
                self.counters.resent += 1
                await call.write(out.message)
        while True:
            out = await queue.get()
            if out.message.seq in self._unanswered:  # not abandoned meanwhile
                await call.write(out.message)

    def _answered(self, answer: pb.ChannelAnswer) -> None:
        out = self._unanswered.pop(answer.seq, None)
        if answer.already_applied:
            self.counters.already_applied += 1
        if out is not None and not out.answer.done():
            out.answer.set_result(answer)

    async def _ask(
        self, method: str, message: Message, reply: type[Reply], resend: bool = True
    ) -> Reply:
        """Send one signed message on the stream and wait for its answer."""
        self._start()
        if self._away is not None:
            raise Unavailable(f"marketplace unreachable: {self._away}")
        request = await self._seal(message)
        self._seq += 1
        out = _Outgoing(
            pb.ProviderMessage(seq=self._seq, method=method, request=request),
            asyncio.get_running_loop().create_future(),
            resend,
        )
        self._unanswered[self._seq] = out
        self._send.put_nowait(out)
        try:
            answer = await asyncio.wait_for(out.answer, self.timeout_s)
        except TimeoutError:
            raise Unavailable(f"{method}: no answer within {self.timeout_s:g} s") from None
        finally:
            self._unanswered.pop(out.message.seq, None)  # abandoned: not resent after
        try:
            answered = reply_of(answer, reply)
        except Unauthenticated as exc:
            if "another marketplace" in str(exc):
                self._market_id = None  # another marketplace answers here now: ask it again
            raise
        assert isinstance(answered, reply)
        return answered

    # --- calls ----------------------------------------------------------------------------------
    async def register(self, inv: Inventory, host_uri: str, region: str) -> int:
        """Register (again); the heartbeat interval the marketplace asks for, in ms (0: none)."""
        msg = pb.RegisterProvider(
            host_uri=host_uri,
            attributes=[pb.Attribute(key=k, value=v) for k, v in inv.attributes],
            inventory=inventory_pb(inv),
            region=region,
            version=VERSION,
        )
        resp = await self._ask("Register", msg, pb.RegisterResponse)
        self.audited = audited_from_proto(resp.audited)
        return resp.heartbeat_interval_ms

    async def heartbeat(
        self, inv: Inventory | None, running: Sequence[str], draining: bool = False
    ) -> tuple[str, ...]:
        """Heartbeat; the ids of running leases the marketplace considers closed."""
        msg = pb.Heartbeat(running_lease_ids=list(running), draining=draining)
        if inv is not None:
            msg.inventory.CopyFrom(inventory_pb(inv))
        resp = await self._ask("Heartbeat", msg, pb.HeartbeatResponse)
        self.audited = audited_from_proto(resp.audited)
        return tuple(resp.unknown_lease_ids)

    async def report_telemetry(self, inv: Inventory, read_at_ms: int) -> None:
        """The GPUs' latest NVML readings (the market keeps only the newest per GPU)."""
        msg = pb.TelemetryReport(gpus=telemetry_pb(inv), read_at_ms=read_at_ms)
        await self._ask("ReportTelemetry", msg, pb.Ack)

    async def watch(self, resume_token: int) -> AsyncIterator[FeedEvent]:
        """Order-feed events after `resume_token`, after this provider's open leases (LeaseWon,
        and LeaseUpdated for a version not yet run; seq 0) whatever the token: what the agent
        reconciles with at each (re)connect. Raises a MarketError (Unavailable when the
        stream dropped) when the feed ends. Kinds this version does not know are skipped, and so
        is an event it cannot read (an order of a job kind a newer market added): raised, it
        would end the feed, and the watch resumed at the same event would end it again."""
        feed: asyncio.Queue[pb.ProviderEvent | MarketError] = asyncio.Queue()
        self._start()
        if not self._connected.is_set():  # the feed is the stream's: wait until it is open
            try:
                await asyncio.wait_for(self._connected.wait(), self.timeout_s)
            except TimeoutError:
                raise Unavailable(self._away or "the order stream did not open") from None
        previous, self._feed = self._feed, feed
        if previous is not None:
            previous.put_nowait(Unavailable("another watch took over the order feed"))
        try:
            await self._ask(
                WATCH_ORDERS,
                pb.WatchOrders(resume_token=resume_token, with_leases=True),
                pb.Ack,
                resend=False,
            )
            while True:
                item = await feed.get()
                if isinstance(item, MarketError):
                    raise item
                try:
                    event = provider_event_from_proto(item)
                except InvalidArgument as exc:
                    log.warning("order feed: event %d skipped: %s", item.seq, exc)
                    continue
                if event is not None:
                    yield event
        finally:
            if self._feed is feed:
                self._feed = None

    async def place_bid(self, order_id: str, price_per_hour: int, offer: Offer) -> Bid:
        msg = pb.PlaceBid(
            order_id=order_id, price_per_hour=price_per_hour, offer=offer_to_proto(offer)
        )
        return bid_from_proto(await self._ask("PlaceBid", msg, pb.Bid))

    async def withdraw_bid(self, bid_id: str) -> Bid:
        return bid_from_proto(await self._ask("WithdrawBid", pb.WithdrawBid(bid_id=bid_id), pb.Bid))

    async def decline(self, order_id: str, reason: str) -> None:
        await self._ask(
            "DeclineOrder",
            pb.DeclineOrder(order_id=order_id, reason=display_safe(reason, "decline reason")),
            pb.Ack,
        )

    async def get_manifest(self, lease_id: str, tenant: str) -> LeaseManifest:
        """The lease's manifest, once its bytes are shown to be what `tenant` signed. Raises
        PermissionDenied when they are not, InvalidArgument/NotFound when it does not parse."""
        m = await self._ask("GetManifest", pb.GetManifest(lease_id=lease_id), pb.Manifest)
        if problem := manifest_problem(m, tenant, await self.market_id()):
            raise PermissionDenied(f"refused: {problem}")
        return lease_manifest_from_proto(m)

    async def report_status(self, report: StatusReport) -> Lease:
        msg = pb.LeaseStatusReport(
            lease_id=report.lease_id,
            state=pb.LEASE_RUNNING if report.running else pb.LEASE_CLOSED,
            endpoints=[endpoint_to_proto(e) for e in report.endpoints],
            exited=report.exited,
            exit_code=report.exit_code,
            oom_killed=report.oom_killed,
            message=display_safe(report.message, "lease message"),  # fits what the market takes
            version=report.version,
            update_failed=report.update_failed,
        )
        return lease_from_proto(await self._ask("ReportLeaseStatus", msg, pb.Lease))

    async def report_logs(self, lease_id: str, lines: Sequence[LogLine]) -> None:
        msg = pb.LogBatch(
            lease_id=lease_id,
            lines=[
                pb.LogLine(
                    lease_id=lease_id,
                    time_ms=int(line.time * 1000),
                    stream=line.stream,
                    line=line.text,
                )
                for line in lines
            ],
        )
        await self._ask("ReportLogs", msg, pb.Ack)

    async def close_lease(self, lease_id: str, message: str) -> Lease:
        msg = pb.CloseLease(lease_id=lease_id, message=display_safe(message, "close message"))
        return lease_from_proto(await self._ask("CloseLease", msg, pb.Lease))

    # --- relayed sessions (provider_agent/shell.py, marketplace/server/relay.py) ---------------
    async def sessions(
        self, shell_enabled: bool, max_copy_bytes: int
    ) -> AsyncIterator[pb.SessionRequest]:
        """The tenants' session requests, until the stream ends (raises a MarketError)."""
        opening = pb.SessionsOpen(shell_enabled=shell_enabled, max_copy_bytes=max_copy_bytes)
        call = self._stub.Sessions(await self._seal(opening), wait_for_ready=True)
        try:
            async for request in call:
                yield request
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()

    async def session_io(self, accept: pb.SessionAccept) -> SessionStream:
        """Open one session's stream, its first frame the signed answer `accept`."""
        call = self._stub.SessionIO()
        stream = SessionStream(call)
        await stream.write(pb.ShellFrame(open=await self._seal(accept)))
        return stream


class SessionStream:
    """One relayed session's two-way stream, its failures as MarketErrors."""

    def __init__(self, call: grpc.aio.StreamStreamCall[pb.ShellFrame, pb.ShellFrame]) -> None:
        self._call = call

    async def read(self) -> pb.ShellFrame | None:
        """The tenant's next frame; None once the market ended the stream."""
        try:
            frame = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return None
            raise _error(exc) from None
        return frame if isinstance(frame, pb.ShellFrame) else None  # else grpc.aio.EOF

    async def write(self, frame: pb.ShellFrame) -> None:
        try:
            await self._call.write(frame)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        except asyncio.InvalidStateError:  # the call is over: the market or tenant went
            raise Unavailable("the session's stream is closed") from None

    async def close(self, linger_s: float = 2.0) -> None:
        """Half-close our side, then wait (up to `linger_s`) for the market to end the stream,
        so that what we wrote last is delivered; cut it after that."""
        if self._call.done():
            return
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self._call.done_writing()
        with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
            await asyncio.wait_for(self._call.code(), linger_s)
        self._call.cancel()

    def cancel(self) -> None:
        self._call.cancel()


def manifest_problem(manifest: pb.Manifest, tenant: str, market: str) -> str | None:
    """Why a manifest must not run, or None: it must be exactly the bytes the lease's tenant
    signed in its CreateDeployment for this marketplace (`market`), so a marketplace can neither
    alter or substitute a job nor pass on one deployed elsewhere."""
    if not manifest.HasField("tenant_request"):
        return "the manifest carries no tenant signature"
    try:
        signer, request = open_envelope(manifest.tenant_request, pb.CreateDeployment, market=market)
        signed_sdl = request.sdl
    except MarketError as exc:
        try:  # after an update in place: the tenant's signed UpdateDeployment (same bytes rule)
            signer, update = open_envelope(
                manifest.tenant_request, pb.UpdateDeployment, market=market
            )
            signed_sdl = update.sdl
            if (update.deployment_id, update.version) != (
                manifest.lease_id.split("/")[0],
                manifest.version,
            ):
                return "the tenant signed that update for another deployment or version"
        except MarketError:
            return f"the tenant's signature does not verify: {exc}"
    if signer != tenant:
        return f"signed by {signer}, not by the lease's tenant {tenant}"
    if signed_sdl != manifest.sdl:
        return "the manifest's bytes differ from what the tenant signed"
    return None


# --- conversions ----------------------------------------------------------------------------


def inventory_pb(inv: Inventory) -> pb.Inventory:
    return pb.Inventory(
        gpus=[
            pb.GpuDevice(
                index=g.reading.info.index,
                uuid=g.reading.info.uuid,
                serial=g.reading.info.serial or "",
                model=g.variant.model if g.variant else "",
                name=g.reading.info.name,
                memory_mib=g.reading.info.memory_mib or 0,
                interface=(g.variant.interface if g.variant else g.reading.info.interface) or "",
                compute_capability=g.reading.info.compute_capability or "",
                healthy=g.offered,
                health_reason=g.why_not,
            )
            for g in inv.gpus
        ],
        cpu_millis=inv.cpu_millis,
        memory_bytes=inv.memory_bytes,
        storage_bytes=inv.storage_bytes,
        driver_version=inv.host.driver_version or "",
        cuda_version=inv.host.cuda_version or "",
    )


def telemetry_pb(inv: Inventory) -> list[pb.GpuTelemetry]:
    """Each GPU's health as NVML last read it, clamped to the market's bounds (a sensor's odd
    value must not cost the whole report)."""
    out = []
    for g in inv.gpus[:MAX_GPUS]:
        info, h = g.reading.info, g.reading.health
        msg = pb.GpuTelemetry(
            index=info.index,
            uuid=info.uuid,
            model=g.variant.model if g.variant else "",
            healthy=g.offered,
            health_reason=g.why_not[:512],
            memory_mib=_bounded("memory_mib", info.memory_mib or 0),
            xid_count=_bounded("xid_count", h.xid_count),
        )
        if h.temperature_c is not None:
            msg.temperature_c = _bounded("temperature_c", h.temperature_c)
        if h.power_w is not None:
            msg.power_w = _bounded("power_w", round(h.power_w))
        if h.utilization_gpu is not None:
            msg.utilization_pct = _bounded("utilization_pct", h.utilization_gpu)
        if h.memory_used_mib is not None:
            msg.memory_used_mib = _bounded("memory_used_mib", h.memory_used_mib)
        if h.last_xid is not None:
            msg.last_xid = _bounded("last_xid", h.last_xid)
        out.append(msg)
    return out


def _bounded(name: str, value: int) -> int:
    low, high = TELEMETRY_RANGES[name]
    return min(max(value, low), high)


__all__ = ["MarketLink", "SessionStream", "inventory_pb", "manifest_problem", "telemetry_pb"]
