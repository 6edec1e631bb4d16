"""Wire forms of GPU telemetry, a provider's status (core/telemetry.py, core/declines.py) and
the price history (core/price_history.py)."""

from __future__ import annotations

from collections.abc import Iterable

from marketplace.api.convert import price_stat_to_proto
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.declines import KindCount
from marketplace.core.price_history import PriceBucket
from marketplace.core.telemetry import GpuTelemetry, TelemetryReading


def gpu_telemetry_to_proto(g: GpuTelemetry) -> pb.GpuTelemetry:
    msg = pb.GpuTelemetry(
        index=g.index,
        uuid=g.uuid,
        model=g.model,
        healthy=g.healthy,
        health_reason=g.health_reason,
        memory_mib=g.memory_mib,
        xid_count=g.xid_count,
    )
    if g.temperature_c is not None:
        msg.temperature_c = g.temperature_c
    if g.power_w is not None:
        msg.power_w = g.power_w
    if g.utilization_pct is not None:
        msg.utilization_pct = g.utilization_pct
    if g.memory_used_mib is not None:
        msg.memory_used_mib = g.memory_used_mib
    if g.last_xid is not None:
        msg.last_xid = g.last_xid
    return msg


def gpu_telemetry_from_proto(m: pb.GpuTelemetry) -> GpuTelemetry:
    return GpuTelemetry(
        index=m.index,
        uuid=m.uuid,
        model=m.model,
        healthy=m.healthy,
        health_reason=m.health_reason,
        temperature_c=m.temperature_c if m.HasField("temperature_c") else None,
        power_w=m.power_w if m.HasField("power_w") else None,
        utilization_pct=m.utilization_pct if m.HasField("utilization_pct") else None,
        memory_used_mib=m.memory_used_mib if m.HasField("memory_used_mib") else None,
        memory_mib=m.memory_mib,
        xid_count=m.xid_count,
        last_xid=m.last_xid if m.HasField("last_xid") else None,
    )


def provider_status_to_proto(
    provider: str,
    reading: TelemetryReading | None,
    declines: Iterable[KindCount],
    declines_since_ms: int,
) -> pb.ProviderStatus:
    status = pb.ProviderStatus(
        provider=provider,
        declines=[
            pb.DeclineKindCount(
                kind=k.kind,
                by_provider=k.by_provider,
                by_marketplace=k.by_marketplace,
                last_reason=k.last_reason,
                last_ms=k.last_ms,
            )
            for k in declines
        ],
        declines_since_ms=declines_since_ms,
    )
    if reading is not None:
        status.gpus.extend(gpu_telemetry_to_proto(g) for g in reading.gpus)
        status.read_at_ms = reading.read_at_ms
        status.received_at_ms = reading.received_at_ms
    return status


def price_history_to_proto(bucket_ms: int, buckets: Iterable[PriceBucket]) -> pb.PriceHistory:
    return pb.PriceHistory(
        bucket_ms=bucket_ms,
        buckets=[
            pb.PriceBucket(
                start_ms=b.start_ms, gpu_prices=[price_stat_to_proto(s) for s in b.prices]
            )
            for b in buckets
        ],
    )
