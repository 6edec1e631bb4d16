"""What this box offers: GPUs from the NVML snapshot, CPU/memory/storage from the host, less what
leases and pending bids hold. Provider attributes for GPUs are derived here from the inventory,
in Akash's form (capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi/interface/sxm = "true"),
never typed by hand.
"""

from __future__ import annotations

import os
import platform
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from marketplace.core import gpus as gpu_registry
from marketplace.core.gang import DOWN_MBPS, UP_MBPS
from marketplace.core.gpus import GpuVariant
from marketplace.core.matching import Allocation, Capacity, GpuDevice
from marketplace.core.resources import GroupSpec, Need, cpu_arch
from provider_agent.config import AgentConfig
from provider_agent.nvml import GpuReading, HostGpus


@dataclass(frozen=True)
class OfferedGpu:
    reading: GpuReading
    variant: GpuVariant | None  # None: a device name the registry cannot read (not offered)
    offered: bool
    why_not: str = ""


@dataclass(frozen=True)
class Inventory:
    host: HostGpus
    gpus: tuple[OfferedGpu, ...]
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    attributes: tuple[tuple[str, str], ...]

    @property
    def total(self) -> Capacity:
        """Everything offered (healthy GPUs only), before any reservation."""
        devices = tuple(
            GpuDevice(g.reading.info.uuid, g.variant)
            for g in self.gpus
            if g.offered and g.variant is not None
        )
        return Capacity(self.cpu_millis, self.memory_bytes, self.storage_bytes, devices)

    @property
    def summary(self) -> str:
        """One plain line: what this box offers."""
        offered = [g for g in self.gpus if g.offered and g.variant is not None]
        cpu = f"{self.cpu_millis / 1000:g} CPU, {self.memory_bytes >> 30} GiB memory"
        if not offered:
            return f"no GPUs offered ({self.host.message}); offering CPU-only capacity: {cpu}"
        kinds: dict[str, int] = {}
        for g in offered:
            assert g.variant is not None
            kinds[g.variant.label] = kinds.get(g.variant.label, 0) + 1
        text = ", ".join(f"{n}× {label}" for label, n in kinds.items())
        held = len(self.gpus) - len(offered)
        return f"offering {text}" + (f" ({held} not offered)" if held else "") + f"; {cpu}"


def host_resources(cfg: AgentConfig, state_dir: Path) -> tuple[int, int, int]:
    """(cpu millis, memory bytes, storage bytes) this host offers, after the operator's reserve."""
    r = cfg.resources
    cpu = r.cpu_millis
    if cpu is None:
        cpu = max((os.cpu_count() or 1) * 1000 - r.reserve_cpu_millis, 0)
    memory = r.memory_bytes
    if memory is None:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = max(total - r.reserve_memory_bytes, 0)
    storage = r.storage_bytes
    if storage is None:
        probe = state_dir if state_dir.exists() else Path.home()
        storage = shutil.disk_usage(probe).free
    return cpu, memory, storage


def build_inventory(host: HostGpus, cfg: AgentConfig, state_dir: Path) -> Inventory:
    allowed = set(cfg.gpu.allow_uuids)
    offered = []
    for reading in host.gpus:
        info = reading.info
        variant = gpu_registry.from_nvml(info.name, info.memory_mib)
        why = ""
        if variant is None:
            why = f"unknown GPU model {info.name!r}"
        elif allowed and info.uuid not in allowed:
            why = "not in gpu.allow_uuids"
        elif not reading.healthy:
            why = "unhealthy: " + "; ".join(reading.health.reasons)
        elif info.mig_enabled:
            why = "MIG mode is on (MIG slices are not offered yet)"
        offered.append(OfferedGpu(reading, variant, offered=not why, why_not=why))
    cpu, memory, storage = host_resources(cfg, state_dir)
    return Inventory(
        host=host,
        gpus=tuple(offered),
        cpu_millis=cpu,
        memory_bytes=memory,
        storage_bytes=storage,
        attributes=provider_attributes(cfg, [g.variant for g in offered if g.variant is not None]),
    )


def provider_attributes(
    cfg: AgentConfig, variants: list[GpuVariant]
) -> tuple[tuple[str, str], ...]:
    """The operator's attributes plus GPU capability keys derived from the inventory."""
    attrs = dict(cfg.provider.attributes)
    if cfg.provider.region:
        attrs.setdefault("region", cfg.provider.region)
    for variant in variants:
        for key in variant.attribute_keys:
            attrs[key] = "true"
    attrs.update(storage_attributes(cfg.resources.storage_classes))
    if cfg.network.up_mbps and cfg.network.down_mbps:  # a gang's bidders are ranked by it
        attrs[UP_MBPS] = f"{cfg.network.up_mbps:g}"
        attrs[DOWN_MBPS] = f"{cfg.network.down_mbps:g}"
    return tuple(sorted(attrs.items()))


STORAGE_PREFIX = "capabilities/storage/"


def storage_attributes(classes: tuple[str, ...]) -> dict[str, str]:
    """Akash's form: capabilities/storage/<n>/class = beta2, capabilities/storage/<n>/persistent
    = true (ram is the one class that is not persistent)."""
    attrs = {}
    for n, name in enumerate(classes, start=1):
        attrs[f"{STORAGE_PREFIX}{n}/class"] = name
        attrs[f"{STORAGE_PREFIX}{n}/persistent"] = "false" if name == "ram" else "true"
    return attrs


def offered_storage(attributes: dict[str, str]) -> dict[str, bool]:
    """Storage class -> persistent, read back from a provider's capability attributes."""
    groups: dict[str, dict[str, str]] = {}
    for key, value in attributes.items():
        if key.startswith(STORAGE_PREFIX):
            n, _, field_ = key.removeprefix(STORAGE_PREFIX).partition("/")
            groups.setdefault(n, {})[field_] = value
    return {g["class"]: g.get("persistent") == "true" for g in groups.values() if "class" in g}


def storage_refusal(group: GroupSpec, attributes: dict[str, str]) -> str | None:
    """Why this provider cannot give `group` its volumes, or None. Akash's rule: every volume's
    attributes (class, persistent) equal one capabilities/storage/<n> group. Ephemeral disk
    volumes ask for nothing (they are scratch space); class `default` (persistent without a
    class) is whichever persistent class the provider offers."""
    offered = offered_storage(attributes)
    persistent = [name for name, is_persistent in offered.items() if is_persistent]
    for unit in group.resources:
        for volume in unit.storage:
            wanted = volume.storage_class
            if wanted is None and not volume.persistent:
                continue
            if wanted in (None, "default"):
                if persistent:
                    continue
                return "persistent storage not offered here" + _offers(offered)
            if offered.get(wanted) != volume.persistent:
                return f"storage class {wanted} not offered here" + _offers(offered)
    return None


def host_arch() -> str:
    """This host's CPU architecture in Akash's names (amd64, arm64)."""
    return cpu_arch(platform.machine())


def provider_features(cfg: AgentConfig, arch: str | None = None) -> frozenset[str]:
    """The GroupSpec.needs this provider meets: its CPU architecture, and the HTTP ingress when
    [ingress] listen is set. It offers no leased IPs, no lease log access inside a container
    and no reclamation window, so it declines groups needing them (support.TABLE)."""
    features = {f"{Need.CPU_ARCH}{arch or host_arch()}"}
    if cfg.ingress.enabled:
        features.add(Need.HTTP_INGRESS.value)
    return frozenset(features)


NOT_OFFERED = {
    Need.LEASED_IP: "leased IP endpoints are not offered by this provider",
    Need.HTTP_INGRESS: "accept hostnames need an HTTP ingress ([ingress] listen), "
    "which this provider does not run",
    Need.LOG_ACCESS: "params.permissions (the lease's logs inside its containers) is not offered "
    "by this provider",
    Need.RECLAMATION: "a reclamation window (reclamation.min_window) is not offered by this "
    "provider",
}


def needs_refusal(group: GroupSpec, features: frozenset[str]) -> str | None:
    """Why this provider lacks a feature `group` needs (GroupSpec.needs), or None."""
    for need in group.needs:
        if need in features:
            continue
        if need.startswith(Need.CPU_ARCH):
            mine = sorted(
                f.removeprefix(Need.CPU_ARCH) for f in features if f.startswith(Need.CPU_ARCH)
            )
            return (
                f"CPU architecture {need.removeprefix(Need.CPU_ARCH)} is needed; this provider "
                f"is {', '.join(mine) or 'of another architecture'}"
            )
        known = next((text for n, text in NOT_OFFERED.items() if need == n.value), None)
        return known or f"the order needs {need!r}, which this provider does not know"
    return None


def _offers(offered: dict[str, bool]) -> str:
    return f" (offers {', '.join(offered)})" if offered else " (offers no storage classes)"


class Reservations:
    """Resources held by pending bids (by order id) and running leases (by lease id).

    Free capacity = the inventory's healthy total minus everything held, so a provider never
    offers the same GPU to two orders at once (Akash's reservation rule)."""

    def __init__(self) -> None:
        self._held: dict[str, Allocation] = {}
        self._lock = threading.Lock()

    def hold(self, key: str, allocation: Allocation) -> None:
        with self._lock:
            self._held[key] = allocation

    def move(self, old: str, new: str) -> None:
        """A won bid's reservation becomes the lease's."""
        with self._lock:
            if old in self._held:
                self._held[new] = self._held.pop(old)

    def release(self, key: str) -> bool:
        with self._lock:
            return self._held.pop(key, None) is not None

    def held(self, key: str) -> Allocation | None:
        with self._lock:
            return self._held.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def free(self, total: Capacity, ignoring: str = "") -> Capacity:
        """What is not held; with `ignoring`, as if that key held nothing (what its holder may
        take again: a gang's one reservation, shared by the bids on its nodes)."""
        with self._lock:
            held = [a for k, a in self._held.items() if k != ignoring]
        taken = {u for a in held for u in a.gpu_uuids}
        return Capacity(
            cpu_millis=max(total.cpu_millis - sum(a.cpu_millis for a in held), 0),
            memory_bytes=max(total.memory_bytes - sum(a.memory_bytes for a in held), 0),
            storage_bytes=max(total.storage_bytes - sum(a.storage_bytes for a in held), 0),
            gpus=tuple(d for d in total.gpus if d.uuid not in taken),
        )
