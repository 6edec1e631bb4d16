"""The spot tier's rules: pure, so the market, the provider agent and the simulator share them.

A deployment with `gpumarket: tier: spot` buys interruptible capacity. Its leases may be
pre-empted by an on-demand order that their provider could not serve otherwise:

- only spot leases are pre-empted, only for an on-demand order, and only by their own provider;
- only when it creates the room: the order does not fit the provider's free capacity, and does
  with the pre-empted leases' resources back; the fewest such leases, newest first (the least
  work lost), none that is not needed (`plan`, `check_named`);
- the provider's bid names the leases (Offer.preempts); when it wins, the market closes them
  `preempted`, billed to that moment (the grace period the provider gives the container is not
  billed), and re-orders their groups per restart policy;
- a provider never bids on a spot order below its floor (`spot_price`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from marketplace.core.matching import Allocation, Capacity, GpuDevice, allocate
from marketplace.core.resources import GroupSpec, Tier

# At most this many spot leases are weighed for one pre-emption (each try is an allocate()).
MAX_VICTIMS = 64
PERCENT = 100  # spot_percent is a whole percentage of the on-demand price


@dataclass(frozen=True)
class SpotHolding:
    """What one spot lease holds on its provider."""

    lease_id: str
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    gpu_uuids: tuple[str, ...]
    since_ms: int = 0  # when it was created: the newest is pre-empted first

    @classmethod
    def of(cls, lease_id: str, allocation: Allocation, since_ms: int = 0) -> SpotHolding:
        return cls(
            lease_id,
            allocation.cpu_millis,
            allocation.memory_bytes,
            allocation.storage_bytes,
            allocation.gpu_uuids,
            since_ms,
        )


@dataclass(frozen=True)
class Preemption:
    """Which spot leases to pre-empt, and what the order then takes."""

    lease_ids: tuple[str, ...]
    allocation: Allocation


def may_preempt(order_tier: Tier, victim_tier: Tier) -> str | None:
    """Why a lease of `victim_tier` may not make room for an order of `order_tier`, or None."""
    if order_tier != Tier.ON_DEMAND:
        return "only an on-demand order pre-empts; this order is spot"
    if victim_tier != Tier.SPOT:
        return "only spot leases can be pre-empted"
    return None


def freed(free: Capacity, devices: Sequence[GpuDevice], victims: Sequence[SpotHolding]) -> Capacity:
    """`free` plus what `victims` hold; their GPUs are looked up in `devices` (the provider's,
    restricted to the ones a bid offers when it names them)."""
    uuids = {u for v in victims for u in v.gpu_uuids}
    present = {d.uuid for d in free.gpus}
    back = tuple(d for d in devices if d.uuid in uuids and d.uuid not in present)
    return Capacity(
        cpu_millis=free.cpu_millis + sum(v.cpu_millis for v in victims),
        memory_bytes=free.memory_bytes + sum(v.memory_bytes for v in victims),
        storage_bytes=free.storage_bytes + sum(v.storage_bytes for v in victims),
        gpus=free.gpus + back,
    )


def plan(
    group: GroupSpec,
    free: Capacity,
    devices: Sequence[GpuDevice],
    spot: Sequence[SpotHolding],
) -> Preemption | None:
    """The fewest of `spot` to pre-empt so that `group` fits, newest first; None when it fits
    without pre-empting anything, or does not fit even with all of them gone."""
    if not spot or isinstance(allocate(group, free), Allocation):
        return None
    candidates = sorted(spot, key=lambda h: (-h.since_ms, h.lease_id))[:MAX_VICTIMS]
    chosen: list[SpotHolding] = []
    for holding in candidates:
        chosen.append(holding)
        if isinstance(allocate(group, freed(free, devices, chosen)), Allocation):
            break
    else:
        return None
    # spare any the room does not need once a later (older) one is taken, the oldest first
    for holding in reversed(chosen[:-1]):
        rest = [h for h in chosen if h is not holding]
        if isinstance(allocate(group, freed(free, devices, rest)), Allocation):
            chosen = rest
    allocation = allocate(group, freed(free, devices, chosen))
    assert isinstance(allocation, Allocation)  # chosen fits: checked above
    return Preemption(tuple(h.lease_id for h in chosen), allocation)


def check_named(
    group: GroupSpec,
    free: Capacity,
    devices: Sequence[GpuDevice],
    named: Sequence[SpotHolding],
) -> Allocation | str:
    """A bid that names `named` to pre-empt: the allocation it would take, or why the market
    refuses it (it fits anyway, it does not fit even so, or it names a lease not needed)."""
    if isinstance(allocate(group, free), Allocation):
        return "the order fits without pre-empting anything: bid without naming spot leases"
    if len(named) > MAX_VICTIMS:
        return f"a bid may name at most {MAX_VICTIMS} spot leases to pre-empt"
    found = plan(group, free, devices, named)
    if found is None:
        return f"the order does not fit even after pre-empting {len(named)} spot lease(s)"
    spared = sorted({h.lease_id for h in named} - set(found.lease_ids))
    if spared:
        return f"pre-empting {', '.join(spared)} is not needed to make room"
    return found.allocation


def spot_price(price: int, percent: int, floor_per_gpu_hour: int, gpus: int) -> int:
    """A provider's price for a spot order: `percent` of its on-demand `price`, never below its
    floor (per GPU-hour, times the order's GPUs). Integers: money never meets a float."""
    return max(price * percent // PERCENT, floor_per_gpu_hour * gpus)
