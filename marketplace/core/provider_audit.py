"""What an auditor can check before it signs a provider's attributes (`gpumarket auditor verify`).

The market keeps every distinct inventory a provider reported (at registration and whenever a
heartbeat's differs: InventoryHistory), so a check can look across restarts. Each check gives
a Finding; the provider passes when all hold:

- gpu-model: each GPU's NVML name reads as a known model (gpus.from_nvml), the same model and
  interface the provider reports for it, with VRAM that fits the model;
- gpu-uuid: UUIDs present and unique, in this inventory and across providers (one physical GPU
  offered by two providers is two claims on one device);
- gpu-stable: the GPUs (by UUID) are the ones of every earlier report: a UUID that comes and
  goes across re-registrations is not a device the provider holds;
- declared: every GPU capability the provider declares (capabilities/gpu/...=true) is backed by
  a healthy GPU it reports, and its declared CPU, memory and storage are what it reports;
- to-sign: each attribute the auditor means to sign is one the provider declares with that
  value (a signature of another value would satisfy no placement), and a GPU capability is
  backed by its inventory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from marketplace.core import gpus
from marketplace.core.state import ProviderRecord

KEEP_REPORTS = 32  # distinct inventories kept per provider


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One device as the provider's agent read it from NVML."""

    uuid: str
    name: str  # NVML name, e.g. "NVIDIA H100 80GB HBM3"
    model: str  # the canonical model the agent reports
    memory_mib: int
    interface: str
    serial: str = ""
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class InventoryReport:
    """What a provider reported at one time."""

    provider: str
    time_ms: int
    gpus: tuple[GpuReading, ...]
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int

    def same_hardware(self, other: InventoryReport) -> bool:
        """Equal but for the time and the GPUs' health (health changes are not hardware)."""

        def hardware(r: InventoryReport) -> tuple[object, ...]:
            devices = tuple(
                (g.uuid, g.name, g.model, g.memory_mib, g.interface, g.serial) for g in r.gpus
            )
            return (devices, r.cpu_millis, r.memory_bytes, r.storage_bytes)

        return hardware(self) == hardware(other)


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    message: str


class InventoryHistory:
    """The latest report per provider; a new one is kept only when the hardware differs."""

    def __init__(self) -> None:
        self._latest: dict[str, InventoryReport] = {}
        self._changed: list[InventoryReport] = []

    def restore(self, latest: Iterable[InventoryReport]) -> None:
        for report in latest:
            self._latest[report.provider] = report

    def latest(self, provider: str) -> InventoryReport | None:
        return self._latest.get(provider)

    def note(self, report: InventoryReport) -> bool:
        """Keep `report` if it differs from the provider's latest; True when kept."""
        latest = self._latest.get(report.provider)
        if latest is not None and latest.same_hardware(report):
            return False
        self._latest[report.provider] = report
        self._changed.append(report)
        return True

    def has_changes(self) -> bool:
        return bool(self._changed)

    def take_changed(self) -> list[InventoryReport]:
        changed, self._changed = self._changed, []
        return changed


def verify_provider(
    prov: ProviderRecord,
    reports: Sequence[InventoryReport],
    to_sign: Mapping[str, str],
    claimed_by: Mapping[str, str],
) -> list[Finding]:
    """The findings for `prov` from its reports (oldest first); `claimed_by`: GPU UUID → the
    other provider that registered it."""
    if not reports:
        return [
            Finding(
                "inventory",
                False,
                "no inventory report on record: restart the provider's agent so it registers again",
            )
        ]
    latest = reports[-1]
    return [
        *_gpu_models(latest),
        *_gpu_uuids(latest, prov.address, claimed_by),
        *_gpu_stable(latest, reports[:-1]),
        *_declared(prov, latest),
        *_to_sign(prov, latest, to_sign),
    ]


def _gpu_models(report: InventoryReport) -> list[Finding]:
    found = []
    for g in report.gpus:
        variant = gpus.from_nvml(g.name, g.memory_mib or None)
        named = gpus.from_nvml(g.name)
        where = f"{g.uuid or '(no uuid)'} {g.name!r}"
        if named is None or not gpus.is_known(named.model):
            found.append(
                Finding("gpu-model", False, f"{where}: not a GPU model the registry knows")
            )
        elif variant is None:
            found.append(
                Finding(
                    "gpu-model",
                    False,
                    f"{where}: {g.memory_mib} MiB of VRAM does not fit the model",
                )
            )
        elif g.model != variant.model or gpus.normalize_interface(g.interface) not in (
            "",
            variant.interface,
        ):
            found.append(
                Finding(
                    "gpu-model",
                    False,
                    f"{where}: reported as {g.model} {g.interface}, NVML says {variant.label}",
                )
            )
        else:
            found.append(
                Finding("gpu-model", True, f"{where}: {variant.label}, {g.memory_mib} MiB")
            )
    return found


def _gpu_uuids(
    report: InventoryReport, address: str, claimed_by: Mapping[str, str]
) -> list[Finding]:
    found = []
    seen: set[str] = set()
    for g in report.gpus:
        if not g.uuid:
            found.append(Finding("gpu-uuid", False, f"a {g.name!r} reports no UUID"))
        elif g.uuid in seen:
            found.append(Finding("gpu-uuid", False, f"{g.uuid} is reported twice"))
        elif (other := claimed_by.get(g.uuid)) is not None and other != address:
            found.append(Finding("gpu-uuid", False, f"{g.uuid} is registered by {other} too"))
        seen.add(g.uuid)
    if report.gpus and not found:
        found.append(Finding("gpu-uuid", True, f"{len(seen)} UUIDs, unique on this market"))
    return found


def _gpu_stable(latest: InventoryReport, earlier: Sequence[InventoryReport]) -> list[Finding]:
    now = {g.uuid for g in latest.gpus}
    found = []
    for report in earlier:
        before = {g.uuid for g in report.gpus}
        gone, new = sorted(before - now), sorted(now - before)
        if gone or new:
            changes = [*(f"{u} gone" for u in gone), *(f"{u} new" for u in new)]
            found.append(
                Finding(
                    "gpu-stable",
                    False,
                    f"since the report at {report.time_ms} ms: {', '.join(changes)}",
                )
            )
    if not found:
        times = len(earlier) + 1
        found.append(Finding("gpu-stable", True, f"the same GPUs in all {times} reports on record"))
    return found


def _backed(key: str, report: InventoryReport) -> bool:
    """Whether a healthy reported GPU satisfies the capability `key`."""
    for g in report.gpus:
        variant = gpus.from_nvml(g.name, g.memory_mib or None)
        if g.healthy and variant is not None and key in variant.attribute_keys:
            return True
    return False


def _declared(prov: ProviderRecord, report: InventoryReport) -> list[Finding]:
    found = []
    for key, value in sorted(prov.attributes.items()):
        if key.startswith(gpus.CAPABILITY_PREFIX) and value == "true":
            ok = _backed(key, report)
            why = "backed by a healthy GPU" if ok else "no healthy GPU it reports has it"
            found.append(Finding("declared", ok, f"{key}: {why}"))
    cap = prov.capacity
    for name, declared, reported in (
        ("CPU millicores", cap.cpu_millis, report.cpu_millis),
        ("memory bytes", cap.memory_bytes, report.memory_bytes),
        ("storage bytes", cap.storage_bytes, report.storage_bytes),
    ):
        ok = declared == reported and reported > 0
        found.append(
            Finding("declared", ok, f"{name}: declared {declared:,}, reported {reported:,}")
        )
    return found


def _to_sign(
    prov: ProviderRecord, report: InventoryReport, to_sign: Mapping[str, str]
) -> list[Finding]:
    found = []
    for key, value in sorted(to_sign.items()):
        has = prov.attributes.get(key)
        if has != value:
            declared = f"declares {key}={has}" if has is not None else f"declares no {key}"
            found.append(
                Finding(
                    "to-sign",
                    False,
                    f"{key}={value}: the provider {declared}, so it would satisfy no placement",
                )
            )
        elif key.startswith(gpus.CAPABILITY_PREFIX) and not _backed(key, report):
            found.append(Finding("to-sign", False, f"{key}: no healthy GPU it reports has it"))
        else:
            found.append(Finding("to-sign", True, f"{key}={value}: declared by the provider"))
    return found
