"""The agent's link to the marketplace: the only agent module that imports grpc.

Speaks the v1 Provider service (proto/marketplace/api/v1/market.proto) over grpc.aio. Every
request is a SignedRequest sealed with the provider's Ed25519 key. Unary calls carry a deadline;
the order stream carries none (a deadline would end it mid-flow), waits for the server to be
ready and resumes from a token. gRPC failures become LinkError, so the rest of the agent never
sees grpc types. Orders are decoded by marketplace/api/convert.py (shared with the server); the
agent's own outgoing messages (inventory, offer) are built here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
import grpc.aio

from marketplace.api.convert import endpoint_to_proto, group_from_proto
from marketplace.api.envelope import open_envelope, seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core.bidding import BidDecision
from marketplace.core.errors import MarketError
from marketplace.identity import Key
from provider_agent.inventory import Inventory
from provider_agent.runtime import LogLine
from provider_agent.supervisor import StatusReport

CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 10_000),
)
VERSION = "gpumarket-provider/0.1"


class LinkError(Exception):
    """A marketplace call failed. `code` is the gRPC status name (UNAVAILABLE, ...)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details

    @property
    def transient(self) -> bool:
        return self.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED")


def _error(exc: grpc.aio.AioRpcError) -> LinkError:
    return LinkError(exc.code().name, exc.details() or "")


class MarketLink:
    def __init__(self, address: str, key: Key, timeout_s: float = 5.0) -> None:
        self.address = address
        self.key = key
        self.timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.ProviderStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def _call(self, method: str, message: object, timeout: float | None = None) -> object:
        rpc = getattr(self._stub, method)
        try:
            return await rpc(seal(self.key, message), timeout=timeout or self.timeout_s)  # type: ignore[arg-type]
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None

    # --- calls ----------------------------------------------------------------------------------
    async def register(self, inv: Inventory, host_uri: str, region: str) -> pb.RegisterResponse:
        msg = pb.RegisterProvider(
            host_uri=host_uri,
            attributes=[pb.Attribute(key=k, value=v) for k, v in inv.attributes],
            inventory=inventory_pb(inv),
            region=region,
            version=VERSION,
        )
        return await self._call("Register", msg)  # type: ignore[return-value]

    async def heartbeat(
        self, inv: Inventory | None, running: Sequence[str], draining: bool = False
    ) -> pb.HeartbeatResponse:
        msg = pb.Heartbeat(running_lease_ids=list(running), draining=draining)
        if inv is not None:
            msg.inventory.CopyFrom(inventory_pb(inv))
        return await self._call("Heartbeat", msg)  # type: ignore[return-value]

    async def watch(self, resume_token: int) -> AsyncIterator[pb.ProviderEvent]:
        """Order events from `resume_token` on; ends (or raises LinkError) when the stream does."""
        call = self._stub.WatchOrders(
            seal(self.key, pb.WatchOrders(resume_token=resume_token)), wait_for_ready=True
        )
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()

    async def place_bid(self, order_id: str, decision: BidDecision, inv: Inventory) -> pb.Bid:
        msg = pb.PlaceBid(
            order_id=order_id,
            price_per_hour=decision.price_per_hour,
            offer=offer_pb(decision, inv),
        )
        return await self._call("PlaceBid", msg)  # type: ignore[return-value]

    async def withdraw_bid(self, bid_id: str) -> pb.Bid:
        return await self._call("WithdrawBid", pb.WithdrawBid(bid_id=bid_id))  # type: ignore[return-value]

    async def decline(self, order_id: str, reason: str) -> None:
        await self._call("DeclineOrder", pb.DeclineOrder(order_id=order_id, reason=reason))

    async def get_manifest(self, lease_id: str) -> pb.Manifest:
        return await self._call("GetManifest", pb.GetManifest(lease_id=lease_id))  # type: ignore[return-value]

    async def report_status(self, report: StatusReport) -> pb.Lease:
        msg = pb.LeaseStatusReport(
            lease_id=report.lease_id,
            state=pb.LEASE_RUNNING if report.running else pb.LEASE_CLOSED,
            endpoints=[endpoint_to_proto(e) for e in report.endpoints],
            exited=report.exited,
            exit_code=report.exit_code,
            oom_killed=report.oom_killed,
            message=report.message,
        )
        return await self._call("ReportLeaseStatus", msg)  # type: ignore[return-value]

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
        await self._call("ReportLogs", msg)

    async def close_lease(self, lease_id: str, message: str) -> pb.Lease:
        msg = pb.CloseLease(lease_id=lease_id, message=message)
        return await self._call("CloseLease", msg)  # type: ignore[return-value]


def manifest_problem(manifest: pb.Manifest, tenant: str) -> str | None:
    """Why a manifest must not run, or None: it must be exactly the bytes the lease's tenant
    signed in its CreateDeployment (a marketplace cannot alter or substitute a job)."""
    if not manifest.HasField("tenant_request"):
        return "the manifest carries no tenant signature"
    try:
        signer, request = open_envelope(manifest.tenant_request, pb.CreateDeployment)
    except MarketError as exc:
        return f"the tenant's signature does not verify: {exc}"
    if signer != tenant:
        return f"signed by {signer}, not by the lease's tenant {tenant}"
    if request.sdl != manifest.sdl:
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


def offer_pb(decision: BidDecision, inv: Inventory) -> pb.BidOffer:
    a = decision.allocation
    uuids = list(a.gpu_uuids) if a else []
    variants = [v for v in (a.unit_variants if a else ()) if v is not None]
    by_uuid = {g.reading.info.uuid: g.variant for g in inv.gpus}
    models = [f"{v.model}-{v.ram_gib}gb-{v.interface}" for u in uuids if (v := by_uuid.get(u))]
    if not models:
        models = [f"{v.model}-{v.ram_gib}gb-{v.interface}" for v in variants]
    return pb.BidOffer(
        gpu_models=models,
        gpu_uuids=uuids,
        driver_version=inv.host.driver_version or "",
        cuda_version=inv.host.cuda_version or "",
        price_per_gpu_hour=decision.price_per_hour // len(uuids) if uuids else 0,
        region=dict(inv.attributes).get("region", ""),
    )


__all__ = [
    "LinkError",
    "MarketLink",
    "group_from_proto",
    "inventory_pb",
    "manifest_problem",
    "offer_pb",
]
