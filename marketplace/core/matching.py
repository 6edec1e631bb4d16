"""Can this provider host this group? Pure functions shared by the marketplace's bid
eligibility, the provider agent's bid decision and the simulator, so they are kept small and fast.

- `placement_mismatches`: Akash's placement rules (akash-network/chain-sdk
  go/node/types/attributes/v1/attribute.go, deployment/v1beta4/groupspec.go): each required
  attribute's key is a glob (Go filepath.Match: `*` does not cross `/`) that some provider
  attribute must match with exactly the required value; signedBy.allOf needs every listed auditor,
  signedBy.anyOf at least one, to have signed all the required attributes for this provider.
- `allocate`: Akash's reservation rules (provider cluster/.../inventory.go): CPU, memory (ram-class
  volumes count as memory) and storage summed over units × count, and concrete GPUs picked so that
  every replica of a unit gets the same variant, one that matches any of the unit's options.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from marketplace.core import units
from marketplace.core.gpus import GpuVariant
from marketplace.core.resources import GpuOption, GroupSpec, PlacementRequirements, ResourceUnit


@dataclass(frozen=True)
class GpuDevice:
    uuid: str
    variant: GpuVariant


@dataclass(frozen=True)
class Capacity:
    """A provider's free resources right now."""

    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    gpus: tuple[GpuDevice, ...] = ()


@dataclass(frozen=True)
class Allocation:
    """What hosting a group takes. gpu_uuids and gpu_models are aligned, in unit order."""

    gpu_uuids: tuple[str, ...]
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    gpu_models: tuple[str, ...]
    unit_gpus: tuple[tuple[str, ...], ...] = ()  # per ResourceUnit: its replicas' GPUs in order
    unit_variants: tuple[GpuVariant | None, ...] = ()  # per ResourceUnit: the variant given


# --- placement ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match on '/'-separated keys: * and ? never cross '/'; [..] is a class."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            negate = body.startswith(("^", "!"))
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            # an empty class is a bad pattern to Go's filepath.Match: here it matches nothing
            out.append(f"[{'^' if negate else ''}{body}]" if body else "(?!)")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def key_matches(pattern: str, key: str) -> bool:
    return _glob(pattern).match(key) is not None


@lru_cache(maxsize=1024)
def _is_literal(pattern: str) -> bool:
    """A pattern without glob characters matches its own text only."""
    return not any(char in pattern for char in "*?[")


def _missing(
    required: tuple[tuple[str, str], ...], attributes: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Required (glob, value) pairs that no attribute satisfies."""
    return [
        (pattern, value)
        for pattern, value in required
        if not (
            attributes.get(pattern) == value  # a plain key (the common case: checked per bid)
            if _is_literal(pattern)
            else any(v == value and key_matches(pattern, k) for k, v in attributes.items())
        )
    ]


def placement_mismatches(
    req: PlacementRequirements,
    provider_attributes: Mapping[str, str],
    auditors: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Why this provider does not satisfy the placement; [] when it does."""
    if not (req.attributes or req.signed_by_all_of or req.signed_by_any_of):
        return []  # no placement rules (the common case; checked on every bid)
    reasons = []
    for pattern, value in _missing(req.attributes, provider_attributes):
        has = [f"{k}={v}" for k, v in provider_attributes.items() if key_matches(pattern, k)]
        found = f"provider has {', '.join(sorted(has))}" if has else f"provider has no {pattern}"
        reasons.append(f"placement needs {pattern}={value}; {found}")
    auditors = auditors or {}
    for auditor in req.signed_by_all_of:
        signed = auditors.get(auditor)
        if signed is None:
            reasons.append(f"placement needs a signature from auditor {auditor}; provider has none")
        elif missing := _missing(req.attributes, signed):
            text = ", ".join(f"{k}={v}" for k, v in missing)
            reasons.append(f"auditor {auditor} has not signed {text} for this provider")
    if req.signed_by_any_of and not any(
        auditor in auditors and not _missing(req.attributes, auditors[auditor])
        for auditor in req.signed_by_any_of
    ):
        names = ", ".join(req.signed_by_any_of)
        reasons.append(
            f"placement needs a signature from any of auditors {names}; provider has none"
        )
    return reasons


# --- resources ----------------------------------------------------------------------------------


def unit_totals(unit: ResourceUnit) -> tuple[int, int, int]:
    """(cpu millis, memory bytes, storage bytes) for all replicas; ram volumes count as memory."""
    ram = disk = 0
    for volume in unit.storage:  # a loop, not two generator sums: this runs on every check
        if volume.storage_class == "ram":
            ram += volume.size_bytes
        else:
            disk += volume.size_bytes
    return (
        unit.cpu_millis * unit.count,
        (unit.memory_bytes + ram) * unit.count,
        disk * unit.count,
    )


def option_label(option: GpuOption) -> str:
    """'h100 80Gi', 'a100', 'any GPU'."""
    text = "any GPU" if option.model == "*" else option.model
    if option.ram_gib is not None:
        text += f" {option.ram_gib}Gi"
    if option.interface is not None:
        text += f" {option.interface}"
    return text


def _counts(devices: list[GpuDevice]) -> str:
    tally: dict[GpuVariant, int] = {}
    for device in devices:
        tally[device.variant] = tally.get(device.variant, 0) + 1
    return ", ".join(f"{n}× {v.model} {v.ram_gib}Gi" for v, n in tally.items())


def _pick_gpus(
    unit: ResourceUnit, free: list[GpuDevice]
) -> tuple[GpuVariant, list[GpuDevice]] | str:
    """`units × count` devices of one variant matching one of the unit's options, or a reason.

    Deterministic: the first option (in the tenant's order) that some free variant can fill,
    and within it the variant seen first and its first free devices.
    """
    needed = unit.total_gpus
    options = unit.gpu.options or (GpuOption("*"),)
    # (variant, its free devices) in order of first appearance. A list, not a dict: a provider
    # has one or two variants, and hashing a GpuVariant (a dataclass) per device costs more than
    # comparing against the few seen (identity first: a provider's devices share one object).
    by_variant: list[tuple[GpuVariant, list[GpuDevice]]] = []
    for device in free:
        variant = device.variant
        for seen, devices in by_variant:
            if seen is variant or seen == variant:
                devices.append(device)
                break
        else:
            by_variant.append((variant, [device]))
    for option in options:
        for variant, devices in by_variant:
            if len(devices) >= needed and variant.matches(option):
                return variant, devices[:needed]
    wanted = " or ".join(option_label(o) for o in options)
    matching = [d for d in free if any(d.variant.matches(o) for o in options)]
    if matching:
        has = f"provider has {_counts(matching)} free"
    elif free:
        has = f"provider has no matching GPU free (it has {_counts(free)})"
    else:
        has = "provider has no GPU free"
    return f"needs {needed}× {wanted} (one model for all replicas), {has}"


def _most_constrained_first(
    resources: tuple[ResourceUnit, ...], free: list[GpuDevice]
) -> list[int]:
    """GPU units in the order to fill them: fewest matching devices first, so a wildcard unit
    does not take the only devices a specific unit could use. Ties keep the manifest's order."""
    wanting = [i for i, unit in enumerate(resources) if unit.total_gpus]
    if len(wanting) < 2:
        return wanting

    def choices(i: int) -> int:
        options = resources[i].gpu.options or (GpuOption("*"),)
        return sum(1 for d in free if any(d.variant.matches(o) for o in options))

    return sorted(wanting, key=lambda i: (choices(i), i))


def allocate(group: GroupSpec, free: Capacity) -> Allocation | str:
    """What hosting the whole group would take from `free`, or a one-line reason it cannot."""
    cpu = memory = storage = 0
    for unit in group.resources:
        unit_cpu, unit_memory, unit_storage = unit_totals(unit)
        cpu, memory, storage = cpu + unit_cpu, memory + unit_memory, storage + unit_storage
    if cpu > free.cpu_millis:
        return f"needs {units.format_cpu(cpu)} CPU, {units.format_cpu(free.cpu_millis)} free"
    if memory > free.memory_bytes:
        need, have = units.format_size(memory), units.format_size(free.memory_bytes)
        return f"needs {need} memory, {have} free"
    if storage > free.storage_bytes:
        need, have = units.format_size(storage), units.format_size(free.storage_bytes)
        return f"needs {need} storage, {have} free"
    remaining = list(free.gpus)
    per_unit: list[tuple[str, ...]] = [()] * len(group.resources)
    per_unit_variant: list[GpuVariant | None] = [None] * len(group.resources)
    order = _most_constrained_first(group.resources, remaining)
    for n, index in enumerate(order, start=1):
        picked = _pick_gpus(group.resources[index], remaining)
        if isinstance(picked, str):
            return picked
        variant, devices = picked
        per_unit[index] = tuple(d.uuid for d in devices)
        per_unit_variant[index] = variant
        if n < len(order):  # what the next units choose from
            taken = set(per_unit[index])
            remaining = [d for d in remaining if d.uuid not in taken]
    # a unit's devices are all of its one variant, and no device serves two units
    return Allocation(
        gpu_uuids=tuple(uuid for unit_uuids in per_unit for uuid in unit_uuids),
        cpu_millis=cpu,
        memory_bytes=memory,
        storage_bytes=storage,
        gpu_models=tuple(
            variant.model
            for unit_uuids, variant in zip(per_unit, per_unit_variant, strict=True)
            if variant is not None
            for _ in unit_uuids
        ),
        unit_gpus=tuple(per_unit),
        unit_variants=tuple(per_unit_variant),
    )
