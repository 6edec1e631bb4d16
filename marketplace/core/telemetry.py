"""Providers' GPU telemetry: the latest reading of each GPU, kept in memory (issue 15).

An agent reads its GPUs through NVML (provider_agent/nvml.py: temperature, power, utilization,
memory used, XIDs, health) and sends them with its heartbeats over the provider stream. The
market keeps only the newest reading per GPU of each registered provider: a new report
replaces the provider's previous one whole, so memory is bounded by providers × MAX_GPUS and
never grows with time. Only the provider's own key reads its telemetry back (DESIGN.md,
decision 10); it is not market state and is not stored: after a restart it is empty until each
agent's next report.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.core.errors import InvalidArgument
from marketplace.core.limits import (
    MAX_GPUS,
    MAX_TELEMETRY_AGE_MS,
    TELEMETRY_RANGES,
    check_text,
    check_time,
)


@dataclass(frozen=True, slots=True)
class GpuTelemetry:
    """One GPU as its agent read it; None: NVML did not say."""

    index: int
    uuid: str
    model: str
    healthy: bool
    health_reason: str = ""
    temperature_c: int | None = None
    power_w: int | None = None
    utilization_pct: int | None = None
    memory_used_mib: int | None = None
    memory_mib: int = 0
    xid_count: int = 0
    last_xid: int | None = None


@dataclass(frozen=True, slots=True)
class TelemetryReading:
    """A provider's GPUs at one moment: when the agent read them, when the market got them."""

    gpus: tuple[GpuTelemetry, ...]
    read_at_ms: int
    received_at_ms: int


def check_gpu(gpu: GpuTelemetry) -> GpuTelemetry:
    """The reading if every field is within its bound (limits.TELEMETRY_RANGES), else
    InvalidArgument naming the GPU and the field."""
    for name, (low, high) in TELEMETRY_RANGES.items():
        value = getattr(gpu, name)
        if value is not None and not low <= value <= high:
            raise InvalidArgument(
                f"GPU {gpu.index if name != 'index' else '?'}: {name} {value} is outside "
                f"{low}..{high}"
            )
    check_text("gpu uuid", gpu.uuid)
    check_text("gpu model", gpu.model)
    check_text("gpu health reason", gpu.health_reason)
    return gpu


def check_report(gpus: tuple[GpuTelemetry, ...], read_at_ms: int) -> None:
    if len(gpus) > MAX_GPUS:
        raise InvalidArgument(
            f"{len(gpus):,} GPUs in one telemetry report; the limit is {MAX_GPUS}"
        )
    seen: set[int] = set()
    for gpu in gpus:
        check_gpu(gpu)
        if gpu.index in seen:
            raise InvalidArgument(f"GPU {gpu.index} is in the report twice")
        seen.add(gpu.index)


class TelemetryBook:
    """The latest reading of each provider (see the module docstring)."""

    def __init__(self) -> None:
        self._latest: dict[str, TelemetryReading] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def record(
        self, provider: str, gpus: tuple[GpuTelemetry, ...], read_at_ms: int, now_ms: int
    ) -> TelemetryReading:
        """Keep `gpus` as the provider's latest reading (checked first; a refused report
        changes nothing). An older reading than the one kept (a resend, a reordered report)
        is kept out."""
        check_report(gpus, read_at_ms)
        # ahead, it would hide every real reading after; long before now, describe nothing
        if read_at_ms:  # 0: not said
            oldest = now_ms - MAX_TELEMETRY_AGE_MS
            check_time("read_at_ms", read_at_ms, now_ms, oldest, "a day ago")
        kept = self._latest.get(provider)
        if kept is not None and kept.read_at_ms > read_at_ms:
            return kept
        reading = TelemetryReading(tuple(sorted(gpus, key=lambda g: g.index)), read_at_ms, now_ms)
        self._latest[provider] = reading
        return reading

    def latest(self, provider: str) -> TelemetryReading | None:
        return self._latest.get(provider)

    def forget(self, provider: str) -> None:
        self._latest.pop(provider, None)
