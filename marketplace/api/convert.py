"""Wire (protobuf v1) ↔ core conversions: the one place they live.

Pairs of pure functions, `x_to_proto` and `x_from_proto`. Wire types are always written `pb.X`,
core types by their own names, so the two never mix. Conventions:
- a ResourceUnit's services travel comma-joined in the wire's single `service` field (an SDL
  v2.1 unit may hold several services);
- GPU options travel as Akash's flattened keys (vendor/nvidia/model/h100/ram/80Gi/interface/sxm);
- a provider's capacity travels as an Inventory; only GPUs it marks healthy are offered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import gpus, limits, matching, price_advice
from marketplace.core.errors import InvalidArgument
from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.gang import Rendezvous, node_rendezvous
from marketplace.core.manifest import parse_manifest
from marketplace.core.provider_feed import (
    BidLost,
    FeedEvent,
    LeaseClosed,
    LeaseManifest,
    LeaseUpdated,
    LeaseWon,
    OrderClosed,
    OrderOpened,
)
from marketplace.core.resources import (
    AuctionSettings,
    GangSettings,
    GpuOption,
    GpuRequest,
    GroupSpec,
    JobKind,
    Payment,
    PlacementRequirements,
    ResourceUnit,
    Tier,
    Volume,
)
from marketplace.core.state import (
    Account,
    AuditReport,
    Bid,
    BidState,
    CloseReason,
    Decline,
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Endpoint,
    Lease,
    LeaseState,
    LedgerEntry,
    Offer,
    Order,
    OrderExplanation,
    OrderState,
    PriceStat,
    ProviderEvent,
    ProviderRecord,
)

K = TypeVar("K")
V = TypeVar("V")
E = TypeVar("E", bound=StrEnum)


def known(kind: type[E], value: str, field: str) -> E:
    """A string enum off the wire; one this version does not know (a newer peer's, or garbage)
    is InvalidArgument naming the field and what is known, never a bare ValueError."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(k.value for k in kind)
        raise InvalidArgument(
            f"{field} {limits.shown(value)} is not one this version of gpumarket knows "
            f"({names}): is the other side newer?"
        ) from None


# --- enums ------------------------------------------------------------------------------------

PAYMENT_TO_PROTO = {
    Payment.FIRST_PRICE: pb.AuctionSettings.FIRST_PRICE,
    Payment.SECOND_PRICE: pb.AuctionSettings.SECOND_PRICE,
}
PAYMENT_FROM_PROTO = {v: k for k, v in PAYMENT_TO_PROTO.items()}
DEPLOYMENT_STATE_TO_PROTO = {
    DeploymentState.ACTIVE: pb.DEPLOYMENT_ACTIVE,
    DeploymentState.CLOSED: pb.DEPLOYMENT_CLOSED,
}
ORDER_STATE_TO_PROTO = {
    OrderState.OPEN: pb.ORDER_OPEN,
    OrderState.ACTIVE: pb.ORDER_ACTIVE,
    OrderState.CLOSED: pb.ORDER_CLOSED,
}
BID_STATE_TO_PROTO = {
    BidState.OPEN: pb.BID_OPEN,
    BidState.WON: pb.BID_WON,
    BidState.LOST: pb.BID_LOST,
    BidState.WITHDRAWN: pb.BID_WITHDRAWN,
    BidState.CLOSED: pb.BID_CLOSED,
}
LEASE_STATE_TO_PROTO = {
    LeaseState.PENDING: pb.LEASE_PENDING,
    LeaseState.RUNNING: pb.LEASE_RUNNING,
    LeaseState.CLOSED: pb.LEASE_CLOSED,
}
CLOSE_REASON_TO_PROTO = {
    CloseReason.NONE: pb.LEASE_CLOSE_REASON_UNSPECIFIED,
    CloseReason.TENANT: pb.CLOSED_BY_TENANT,
    CloseReason.PROVIDER: pb.CLOSED_BY_PROVIDER,
    CloseReason.COMPLETED: pb.COMPLETED,
    CloseReason.FAILED: pb.FAILED,
    CloseReason.INSUFFICIENT_FUNDS: pb.INSUFFICIENT_FUNDS,
    CloseReason.PROVIDER_LOST: pb.PROVIDER_LOST,
    CloseReason.MANIFEST_TIMEOUT: pb.MANIFEST_TIMEOUT,
    CloseReason.DEPLOYMENT_CLOSED: pb.CLOSED_WITH_DEPLOYMENT,
    CloseReason.GANG_STOPPED: pb.GANG_STOPPED,
    CloseReason.PREEMPTED: pb.PREEMPTED,
}


def _inverse(mapping: Mapping[K, V]) -> dict[V, K]:
    return {v: k for k, v in mapping.items()}


DEPLOYMENT_STATE_FROM_PROTO = _inverse(DEPLOYMENT_STATE_TO_PROTO)
ORDER_STATE_FROM_PROTO = _inverse(ORDER_STATE_TO_PROTO)
BID_STATE_FROM_PROTO = _inverse(BID_STATE_TO_PROTO)
LEASE_STATE_FROM_PROTO = _inverse(LEASE_STATE_TO_PROTO)
CLOSE_REASON_FROM_PROTO = _inverse(CLOSE_REASON_TO_PROTO)


def lease_state_name(value: pb.LeaseState) -> str:
    """pb.LEASE_RUNNING → 'running' (for people)."""
    return str(LEASE_STATE_FROM_PROTO.get(value, "unknown"))


def close_reason_name(value: pb.LeaseCloseReason) -> str:
    return str(CLOSE_REASON_FROM_PROTO.get(value, ""))


def order_state_name(value: pb.OrderState) -> str:
    return str(ORDER_STATE_FROM_PROTO.get(value, "unknown"))


def bid_state_name(value: pb.BidState) -> str:
    return str(BID_STATE_FROM_PROTO.get(value, "unknown"))


def deployment_state_name(value: pb.DeploymentState) -> str:
    return str(DEPLOYMENT_STATE_FROM_PROTO.get(value, "unknown"))


# --- resources ---------------------------------------------------------------------------------


def gpu_option_from_key(key: str) -> GpuOption:
    """'vendor/nvidia/model/h100/ram/80Gi/interface/sxm' → GpuOption('h100', 80, 'sxm')."""
    parts = key.split("/")
    fields = dict(zip(parts[0::2], parts[1::2], strict=False))
    return GpuOption(
        model=fields.get("model", "*"),
        ram_gib=limits.whole_number(fields.get("ram", "").removesuffix("Gi"), 9),
        interface=fields.get("interface"),
    )


def auction_to_proto(a: AuctionSettings) -> pb.AuctionSettings:
    return pb.AuctionSettings(
        bid_window_ms=a.bid_window_ms,
        payment=PAYMENT_TO_PROTO[a.payment],
        manual=a.manual,
        min_reliability=a.min_reliability,
    )


def auction_from_proto(a: pb.AuctionSettings) -> AuctionSettings:
    return AuctionSettings(
        bid_window_ms=a.bid_window_ms,
        payment=PAYMENT_FROM_PROTO.get(a.payment, Payment.FIRST_PRICE),
        manual=a.manual,
        min_reliability=a.min_reliability,
    )


def unit_to_proto(u: ResourceUnit) -> pb.ResourceUnit:
    return pb.ResourceUnit(
        service=",".join(u.services),
        count=u.count,
        cpu_millis=u.cpu_millis,
        memory_bytes=u.memory_bytes,
        storage=[
            pb.StorageSpec(
                name=v.name,
                bytes=v.size_bytes,
                persistent=v.persistent,
                storage_class=v.storage_class or "",
            )
            for v in u.storage
        ],
        gpu=pb.GpuSpec(units=u.gpu.units, attributes=[o.attribute_key for o in u.gpu.options]),
        max_price_per_hour=u.max_price_per_hour,
        ports=list(u.ports),
    )


def unit_from_proto(u: pb.ResourceUnit) -> ResourceUnit:
    return ResourceUnit(
        services=tuple(s for s in u.service.split(",") if s),
        count=u.count,
        cpu_millis=u.cpu_millis,
        memory_bytes=u.memory_bytes,
        storage=tuple(
            Volume(s.name, s.bytes, s.persistent, s.storage_class or None) for s in u.storage
        ),
        gpu=GpuRequest(u.gpu.units, tuple(gpu_option_from_key(k) for k in u.gpu.attributes)),
        max_price_per_hour=u.max_price_per_hour,
        ports=tuple(u.ports),
    )


def group_to_proto(g: GroupSpec) -> pb.GroupSpec:
    return pb.GroupSpec(
        name=g.name,
        requirements=pb.PlacementRequirements(
            attributes=[pb.Attribute(key=k, value=v) for k, v in g.requirements.attributes],
            signed_by_all_of=list(g.requirements.signed_by_all_of),
            signed_by_any_of=list(g.requirements.signed_by_any_of),
        ),
        resources=[unit_to_proto(u) for u in g.resources],
        denom=g.denom,
        max_price_per_hour=g.max_price_per_hour,
        needs=list(g.needs),
    )


def group_from_proto(g: pb.GroupSpec) -> GroupSpec:
    req = g.requirements
    return GroupSpec(
        name=g.name,
        requirements=PlacementRequirements(
            attributes=tuple((a.key, a.value) for a in req.attributes),
            signed_by_all_of=tuple(req.signed_by_all_of),
            signed_by_any_of=tuple(req.signed_by_any_of),
        ),
        resources=tuple(unit_from_proto(u) for u in g.resources),
        denom=g.denom or "uact",
        needs=tuple(g.needs),
    )


def attributes_from_proto(attrs: Iterable[pb.Attribute]) -> dict[str, str]:
    """Attributes by key. A key given twice is refused: a dict would keep the last one
    silently (and 10,000 copies of one key would pass the count limit as one)."""
    found: dict[str, str] = {}
    for a in attrs:
        if a.key in found:
            raise InvalidArgument(f"attribute key {limits.shown(a.key)} is given twice")
        found[a.key] = a.value
    return found


def attributes_to_proto(attrs: dict[str, str]) -> list[pb.Attribute]:
    return [pb.Attribute(key=k, value=v) for k, v in sorted(attrs.items())]


# --- providers -------------------------------------------------------------------------------


def gpu_variant_from_proto(d: pb.GpuDevice) -> gpus.GpuVariant | None:
    """The device's canonical variant: from its NVML name and memory, else from the model and
    interface the agent reported (VRAM rounded to whole GiB)."""
    variant = gpus.from_nvml(d.name, d.memory_mib or None) if d.name else None
    if variant is None and d.model:
        ram = (d.memory_mib + 512) // 1024 if d.memory_mib else 0  # ints: exact at int64's edge
        variant = gpus.GpuVariant(d.model, ram, gpus.normalize_interface(d.interface) or "pcie")
    return variant


def capacity_from_proto(inv: pb.Inventory) -> matching.Capacity:
    devices = []
    for d in inv.gpus:
        variant = gpu_variant_from_proto(d)
        if d.healthy and variant is not None and d.uuid:
            devices.append(matching.GpuDevice(d.uuid, variant))
    return matching.Capacity(inv.cpu_millis, inv.memory_bytes, inv.storage_bytes, tuple(devices))


def capacity_to_proto(cap: matching.Capacity) -> pb.Inventory:
    return pb.Inventory(
        gpus=[
            pb.GpuDevice(
                index=i,
                uuid=d.uuid,
                model=d.variant.model,
                memory_mib=d.variant.ram_gib * 1024,
                interface=d.variant.interface,
                healthy=True,
            )
            for i, d in enumerate(cap.gpus)
        ],
        cpu_millis=cap.cpu_millis,
        memory_bytes=cap.memory_bytes,
        storage_bytes=cap.storage_bytes,
    )


def provider_to_proto(
    p: ProviderRecord, reliability: float, leases_running: int
) -> pb.ProviderInfo:
    return pb.ProviderInfo(
        address=p.address,
        host_uri=p.host_uri,
        attributes=attributes_to_proto(p.attributes),
        inventory=capacity_to_proto(p.capacity),
        region=p.region,
        reliability=reliability,
        online=p.online,
        last_heartbeat_ms=p.last_heartbeat_ms,
        leases_running=leases_running,
        version=p.version,
    )


# --- deployments, orders, bids, leases ---------------------------------------------------------


def account_to_proto(a: Account, escrowed: int, denom: str) -> pb.Account:
    return pb.Account(address=a.address, balance=a.balance, escrowed=escrowed, denom=denom)


def deployment_to_proto(
    d: Deployment, escrow_balance: int, rate_per_hour: int = 0, time_left_ms: int = 0
) -> pb.Deployment:
    """`rate_per_hour` and `time_left_ms`: what its running leases pay, and how long the escrow
    lasts at that rate (MarketService.funding)."""
    return pb.Deployment(
        id=d.id,
        owner=d.owner,
        state=DEPLOYMENT_STATE_TO_PROTO[d.state],
        groups=[group_to_proto(g) for g in d.groups],
        sdl_sha256=d.sdl_sha256,
        escrow_balance=escrow_balance,
        deposited=d.deposited,
        created_at_ms=d.created_at_ms,
        closed_at_ms=d.closed_at_ms,
        auction=auction_to_proto(d.job.auction),
        job_kind=d.job.kind.value,
        max_runtime_ms=d.job.max_runtime_ms or 0,
        restart_policy=d.job.restart_policy.value,
        order_ids=list(d.order_ids),
        lease_ids=list(d.lease_ids),
        rate_per_hour=rate_per_hour,
        escrow_time_left_ms=time_left_ms,
        escrow_low=d.escrow_low,
        auto_top_up=d.auto_top_up,
        auto_top_up_max=d.auto_top_up_max,
        auto_topped_up=d.auto_topped_up,
        version=d.version,
        tier=d.job.tier.value,
    )


def order_to_proto(o: Order) -> pb.Order:
    return pb.Order(
        id=o.id,
        deployment_id=o.deployment_id,
        owner=o.owner,
        state=ORDER_STATE_TO_PROTO[o.state],
        spec=group_to_proto(o.group),
        auction=auction_to_proto(o.auction),
        created_at_ms=o.created_at_ms,
        closes_at_ms=o.closes_at_ms,
        job_kind=o.job_kind.value,
        tier=o.tier.value,
        gang=gang_to_proto(o) if o.gang is not None else None,
    )


def gang_to_proto(o: Order) -> pb.OrderGang:
    assert o.gang is not None
    g = o.gang
    return pb.OrderGang(
        id=o.deployment_id,
        node=o.gseq - 1,
        nodes=g.nodes,
        min_bandwidth_mbps=g.min_bandwidth_mbps,
        port=g.port,
        gradient_bytes=g.gradient_bytes,
        sync_interval_ms=g.sync_interval_ms,
    )


def gang_from_proto(o: pb.Order, gseq: int) -> GangSettings | None:
    """The order's gang, checked against the order it rides on (its id and node are the
    order's deployment and group); None when the order is no gang's node. Raises
    InvalidArgument naming the field that is out of bounds or disagrees."""
    if not o.HasField("gang"):
        return None
    g = o.gang
    if not 2 <= g.nodes <= limits.MAX_GANG_NODES:
        raise InvalidArgument(f"order.gang.nodes: {g.nodes} is not 2..{limits.MAX_GANG_NODES}")
    if g.id != o.deployment_id:
        raise InvalidArgument(f"order.gang.id: {limits.shown(g.id)} is not the order's deployment")
    if g.node != gseq - 1 or not 0 <= g.node < g.nodes:
        raise InvalidArgument(f"order.gang.node: {g.node} is not node {gseq - 1} of {g.nodes}")
    mbps = g.min_bandwidth_mbps
    if not 0 <= mbps <= limits.MAX_BANDWIDTH_MBPS:  # (NaN fails both)
        raise InvalidArgument(f"order.gang.min_bandwidth_mbps: {mbps!r} is out of range")
    if not 0 <= g.port <= 65535 or g.gradient_bytes < 0 or g.sync_interval_ms < 0:
        raise InvalidArgument("order.gang: port, gradient_bytes or sync_interval_ms out of range")
    return GangSettings(g.nodes, mbps, g.port, g.gradient_bytes, g.sync_interval_ms)


def order_from_proto(o: pb.Order) -> Order:
    """An Order as the wire describes it (gseq/oseq read from its id). Raises InvalidArgument
    for a job kind this version does not know or an id that is not `D<n>/<gseq>/<oseq>`."""
    gseq, oseq = _order_sequences(o.id)
    return Order(
        id=o.id,
        deployment_id=o.deployment_id,
        owner=o.owner,
        gseq=gseq,
        oseq=oseq,
        group=group_from_proto(o.spec),
        auction=auction_from_proto(o.auction),
        state=ORDER_STATE_FROM_PROTO.get(o.state, OrderState.OPEN),
        created_at_ms=o.created_at_ms,
        closes_at_ms=o.closes_at_ms,
        job_kind=known(JobKind, o.job_kind, f"order {limits.clipped(o.id)}: job_kind")
        if o.job_kind
        else JobKind.SERVICE,
        tier=tier_from_proto(o.tier),
        gang=gang_from_proto(o, gseq),
    )


def _order_sequences(order_id: str) -> tuple[int, int]:
    parts = order_id.split("/")
    numbers = [limits.whole_number(p) for p in parts[1:]]
    if len(parts) != 3 or None in numbers:
        raise InvalidArgument(f"order id {limits.shown(order_id)} is not D<n>/<group>/<order>")
    return numbers[0] or 0, numbers[1] or 0


def offer_to_proto(o: Offer) -> pb.BidOffer:
    return pb.BidOffer(
        gpu_models=list(o.gpu_models),
        gpu_uuids=list(o.gpu_uuids),
        driver_version=o.driver_version,
        cuda_version=o.cuda_version,
        price_per_gpu_hour=o.price_per_gpu_hour,
        region=o.region,
        preempts=list(o.preempts),
    )


def offer_from_proto(o: pb.BidOffer) -> Offer:
    return Offer(
        gpu_models=tuple(o.gpu_models),
        gpu_uuids=tuple(o.gpu_uuids),
        driver_version=o.driver_version,
        cuda_version=o.cuda_version,
        price_per_gpu_hour=o.price_per_gpu_hour,
        region=o.region,
        preempts=tuple(o.preempts),
    )


def bid_to_proto(b: Bid) -> pb.Bid:
    return pb.Bid(
        id=b.id,
        order_id=b.order_id,
        provider=b.provider,
        price_per_hour=b.price_per_hour,
        state=BID_STATE_TO_PROTO[b.state],
        created_at_ms=b.created_at_ms,
        reliability=b.reliability,
        # the spot leases a bid would pre-empt are other tenants' ids: not shown with the bid
        offer=offer_to_proto(
            dataclasses.replace(b.offer, preempts=()) if b.offer.preempts else b.offer
        ),
    )


def bid_from_proto(b: pb.Bid) -> Bid:
    return Bid(
        id=b.id,
        order_id=b.order_id,
        provider=b.provider,
        price_per_hour=b.price_per_hour,
        state=BID_STATE_FROM_PROTO.get(b.state, BidState.OPEN),
        created_at_ms=b.created_at_ms,
        reliability=b.reliability,
        offer=offer_from_proto(b.offer),
    )


def endpoint_to_proto(e: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        service=e.service,
        port=e.port,
        host=e.host,
        external_port=e.external_port,
        proto=e.proto,
        uri=e.uri,
    )


def endpoint_from_proto(e: pb.Endpoint) -> Endpoint:
    return Endpoint(e.service, e.port, e.host, e.external_port, e.proto or "tcp", e.uri)


def lease_to_proto(x: Lease) -> pb.Lease:
    return pb.Lease(
        id=x.id,
        order_id=x.order_id,
        deployment_id=x.deployment_id,
        tenant=x.tenant,
        provider=x.provider,
        price_per_hour=x.price_per_hour,
        state=LEASE_STATE_TO_PROTO[x.state],
        close_reason=CLOSE_REASON_TO_PROTO[x.close_reason],
        created_at_ms=x.created_at_ms,
        running_at_ms=x.running_at_ms,
        closed_at_ms=x.closed_at_ms,
        billed_until_ms=x.billed_until_ms,
        paid=x.paid,
        exit_code=x.exit_code,
        message=x.message,
        endpoints=[endpoint_to_proto(e) for e in x.endpoints],
        version=x.version,
        failed_version=x.failed_version,
        tier=x.tier.value,
        gpu_uuids=list(x.gpu_uuids),
        gpu_models=list(x.gpu_models),
        cpu_millis=x.cpu_millis,
        memory_bytes=x.memory_bytes,
        storage_bytes=x.storage_bytes,
    )


def lease_from_proto(x: pb.Lease) -> Lease:
    """The wire's view of a lease, with what it holds of its provider (an older market sends
    none: zeros, no GPUs)."""
    return Lease(
        id=x.id,
        order_id=x.order_id,
        deployment_id=x.deployment_id,
        tenant=x.tenant,
        provider=x.provider,
        price_per_hour=x.price_per_hour,
        state=LEASE_STATE_FROM_PROTO.get(x.state, LeaseState.PENDING),
        created_at_ms=x.created_at_ms,
        close_reason=CLOSE_REASON_FROM_PROTO.get(x.close_reason, CloseReason.NONE),
        running_at_ms=x.running_at_ms,
        closed_at_ms=x.closed_at_ms,
        billed_until_ms=x.billed_until_ms,
        paid=x.paid,
        exit_code=x.exit_code,
        message=x.message,
        endpoints=tuple(endpoint_from_proto(e) for e in x.endpoints),
        started=x.running_at_ms > 0,
        version=x.version,
        failed_version=x.failed_version,
        tier=tier_from_proto(x.tier),
        **_lease_holdings(x),
    )


def _lease_holdings(x: pb.Lease) -> dict[str, Any]:
    """What the lease holds of its provider, bounded: at most MAX_GPUS devices, no negative
    amounts. Raises InvalidArgument naming the field."""
    for name in ("gpu_uuids", "gpu_models"):
        if len(getattr(x, name)) > limits.MAX_GPUS:
            raise InvalidArgument(f"lease.{name}: more than {limits.MAX_GPUS}")
    for name in ("cpu_millis", "memory_bytes", "storage_bytes"):
        if getattr(x, name) < 0:
            raise InvalidArgument(f"lease.{name}: {getattr(x, name)} is negative")
    return {
        "gpu_uuids": tuple(x.gpu_uuids),
        "gpu_models": tuple(x.gpu_models),
        "cpu_millis": x.cpu_millis,
        "memory_bytes": x.memory_bytes,
        "storage_bytes": x.storage_bytes,
    }


def tier_from_proto(tier: str) -> Tier:
    """A tier off the wire: empty (an older market) or one this version does not know is
    on-demand, which is never pre-empted (the safe reading for a provider)."""
    try:
        return Tier(tier) if tier else Tier.ON_DEMAND
    except ValueError:
        return Tier.ON_DEMAND


def decline_to_proto(d: Decline) -> pb.Decline:
    return pb.Decline(
        order_id=d.order_id,
        provider=d.provider,
        reason=d.reason,
        time_ms=d.time_ms,
        by_marketplace=d.by_marketplace,
    )


def explanation_to_proto(e: OrderExplanation) -> pb.OrderExplanation:
    return pb.OrderExplanation(
        order=order_to_proto(e.order),
        bids=[bid_to_proto(b) for b in e.bids],
        declines=[decline_to_proto(d) for d in e.declines],
        summary=e.summary,
    )


# --- events, money, market data ------------------------------------------------------------


def deployment_event_to_proto(e: DeploymentEvent) -> pb.DeploymentEvent:
    """The kind travels as its string value; the bid and lease it names, when it carries them."""
    return pb.DeploymentEvent(
        seq=e.seq,
        time_ms=e.time_ms,
        deployment_id=e.deployment_id,
        kind=e.kind.value,
        order_id=e.order_id,
        bid_id=e.bid_id,
        lease_id=e.lease_id,
        message=e.message,
        bid=None if e.bid is None else bid_to_proto(e.bid),
        lease=None if e.lease is None else lease_to_proto(e.lease),
    )


def deployment_event_from_proto(e: pb.DeploymentEvent) -> DeploymentEvent | None:
    """The event, or None for a kind this side does not know (a newer marketplace's)."""
    try:
        kind = DeploymentEventKind(e.kind)
    except ValueError:
        return None
    return DeploymentEvent(
        seq=e.seq,
        time_ms=e.time_ms,
        deployment_id=e.deployment_id,
        kind=kind,
        order_id=e.order_id,
        bid_id=e.bid_id,
        lease_id=e.lease_id,
        message=e.message,
        bid=bid_from_proto(e.bid) if e.HasField("bid") else None,
        lease=lease_from_proto(e.lease) if e.HasField("lease") else None,
    )


def provider_event_to_proto(e: ProviderEvent) -> pb.ProviderEvent:
    """The kind picks the oneof member, which holds the record the event carries (an
    order_closed holds only the order id). An event missing its record leaves it unset."""
    out = pb.ProviderEvent(seq=e.seq, time_ms=e.time_ms)
    if e.kind == ProviderEventKind.ORDER_OPENED and e.order is not None:
        out.order_opened.CopyFrom(order_to_proto(e.order))
    elif e.kind == ProviderEventKind.ORDER_CLOSED:
        out.order_closed = e.order_id
    elif e.kind == ProviderEventKind.LEASE_WON and e.lease is not None:
        out.lease_won.CopyFrom(lease_to_proto(e.lease))
    elif e.kind == ProviderEventKind.BID_LOST and e.bid is not None:
        out.bid_lost.CopyFrom(bid_to_proto(e.bid))
    elif e.kind == ProviderEventKind.LEASE_CLOSED and e.lease is not None:
        out.lease_closed.CopyFrom(lease_to_proto(e.lease))
    elif e.kind == ProviderEventKind.LEASE_UPDATED and e.lease is not None:
        out.lease_updated.CopyFrom(lease_to_proto(e.lease))
    return out


def ledger_entry_to_proto(e: LedgerEntry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        id=e.id,
        time_ms=e.time_ms,
        debit=e.debit,
        credit=e.credit,
        amount=e.amount,
        memo=e.memo,
        lease_id=e.lease_id,
    )


def audit_to_proto(a: AuditReport) -> pb.AuditReport:
    return pb.AuditReport(
        balanced=a.balanced,
        entries=a.entries,
        total_minted=a.total_minted,
        problems=list(a.problems),
    )


def price_stat_to_proto(s: PriceStat) -> pb.GpuPriceStats:
    return pb.GpuPriceStats(
        model=s.gpu_model, samples=s.samples, p10=s.p10, median=s.median, p90=s.p90
    )


class LogLineRecord(Protocol):
    """A log line as the server stores it (server.store.StoredLogLine)."""

    @property
    def lease_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def time_ms(self) -> int: ...
    @property
    def stream(self) -> str: ...
    @property
    def line(self) -> str: ...


def log_line_to_proto(line: LogLineRecord) -> pb.LogLine:
    """A stored log line on the wire."""
    return pb.LogLine(
        lease_id=line.lease_id,
        seq=line.seq,
        time_ms=line.time_ms,
        stream=line.stream,
        line=line.line,
    )


# --- the provider's order feed ----------------------------------------------------------------


def provider_event_from_proto(e: pb.ProviderEvent) -> FeedEvent | None:
    """One order-feed event (the inverse of provider_event_to_proto), or None for a kind this
    version does not know (skip it)."""
    try:
        kind = ProviderEventKind(e.WhichOneof("event"))
    except ValueError:
        return None
    match kind:
        case ProviderEventKind.ORDER_OPENED:
            return OrderOpened(e.seq, e.time_ms, order_from_proto(e.order_opened))
        case ProviderEventKind.ORDER_CLOSED:
            return OrderClosed(e.seq, e.time_ms, e.order_closed)
        case ProviderEventKind.LEASE_WON:
            return LeaseWon(e.seq, e.time_ms, lease_from_proto(e.lease_won))
        case ProviderEventKind.BID_LOST:
            return BidLost(e.seq, e.time_ms, bid_from_proto(e.bid_lost))
        case ProviderEventKind.LEASE_CLOSED:
            return LeaseClosed(e.seq, e.time_ms, lease_from_proto(e.lease_closed))
        case ProviderEventKind.LEASE_UPDATED:
            return LeaseUpdated(e.seq, e.time_ms, lease_from_proto(e.lease_updated))


def lease_manifest_from_proto(m: pb.Manifest) -> LeaseManifest:
    """The manifest parsed, with its lease's group. Raises InvalidArgument for a bad SDL and
    NotFound when it has no such group. (The tenant's signature is the caller's to check.)"""
    manifest = parse_manifest(m.sdl, f"lease {m.lease_id}")
    meeting = None
    if manifest.job.gang is not None:  # rank, size, port: the signed SDL's; rank 0's host: ours
        try:
            meeting = node_rendezvous(m.lease_id, manifest.job.gang, m.gang.master_addr)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
    group = manifest.group(m.group_name)
    return LeaseManifest(m.lease_id, manifest, group, m.version, meeting)


def rendezvous_to_proto(r: Rendezvous) -> pb.GangRendezvous:
    return pb.GangRendezvous(
        gang_id=r.gang_id,
        rank=r.rank,
        world_size=r.world_size,
        master_addr=r.master_addr,
        master_port=r.master_port,
    )


def price_advice_to_proto(
    provider: str, since_ms: int, until_ms: int, advice: list[price_advice.ModelAdvice]
) -> pb.PriceAdviceReport:
    return pb.PriceAdviceReport(
        provider=provider,
        since_ms=since_ms,
        until_ms=until_ms,
        models=[
            pb.ModelPriceAdvice(
                model=a.model,
                auctions=a.auctions,
                unleased=a.unleased,
                current_price_per_gpu_hour=a.current_price,
                earned=a.earned,
                leases_won=a.leases_won,
                best_price_per_gpu_hour=a.best_price,
                best_revenue=a.best_revenue,
                best_leases_won=a.best_leases,
            )
            for a in advice
        ],
    )
