"""The live market's twin: a snapshot of a running marketplace (its providers, their GPUs,
regions and reliability, and its recent clearing prices) turned into a scenario a user can edit
and re-run, and an estimate of what a manifest would pay and wait, by the market's own matching.

Pure: the snapshot is read over gRPC by marketplace/cli/twin.py; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from marketplace.core import money, units
from marketplace.core.manifest import Manifest
from marketplace.core.matching import Allocation, Capacity, allocate, placement_mismatches
from marketplace.core.resources import GroupSpec

MICRO = money.MICRO


@dataclass(frozen=True)
class ProviderSnapshot:
    address: str
    region: str
    reliability: float
    attributes: dict[str, str]
    capacity: Capacity  # what it registered (the market does not publish what is free)
    leases_running: int = 0


@dataclass(frozen=True)
class PriceBand:
    """Clearing prices of one GPU model over the snapshot's window, micro-units per GPU-hour."""

    samples: int
    p10: int
    median: int
    p90: int


@dataclass(frozen=True)
class MarketSnapshot:
    market_id: str
    taken_at_ms: int
    providers: tuple[ProviderSnapshot, ...]
    prices: dict[str, PriceBand] = field(default_factory=dict)
    open_orders: int = 0
    running_leases: int = 0


# --- snapshot → scenario ------------------------------------------------------------------------


def _machine(p: ProviderSnapshot) -> tuple[str, int, str, int] | None:
    """(model, VRAM GiB, interface, GPUs) of a provider's most common GPU; None without GPUs."""
    if not p.capacity.gpus:
        return None
    variants = Counter(d.variant for d in p.capacity.gpus)
    variant, _ = max(variants.items(), key=lambda item: (item[1], item[0].model))
    return (variant.model, variant.ram_gib, variant.interface, len(p.capacity.gpus))


def scenario_document(snapshot: MarketSnapshot, days: float = 7.0) -> dict[str, object]:
    """A scenario (simulator/scenario.py keys) with the live market's providers and prices.
    Tenant demand keeps the scenario defaults: the market does not publish who wants what, and
    that is the part a user explores by editing the file."""
    machines = Counter(m for m in map(_machine, snapshot.providers) if m is not None)
    regions = Counter(p.region or "unknown" for p in snapshot.providers if _machine(p))
    providers: dict[str, object] = {"count": max(sum(machines.values()), 1)}
    if machines:
        providers["mix"] = [
            {"model": m, "ram_gib": ram, "interface": iface, "gpus_per_node": n, "weight": k}
            for (m, ram, iface, n), k in sorted(machines.items())
        ]
        providers["regions"] = dict(sorted(regions.items()))
    if snapshot.prices:
        # the clearing median stands in for cost: providers in the twin then price near it
        providers["cost_per_gpu_hour"] = {
            model: round(band.median / MICRO, 6) for model, band in sorted(snapshot.prices.items())
        }
    return {
        "name": f"twin-{snapshot.market_id[:12] or 'market'}",
        "duration_days": days,
        "providers": providers,
    }


# --- estimate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupEstimate:
    group: str
    eligible: int  # online providers whose registered capacity and attributes fit the group
    busy: int  # of those, how many run leases already (their room may be taken)
    max_per_hour: int  # the tenant's reserve, micro-units per hour
    price_per_hour: tuple[int, int, int] | None  # P10, median, P90 at recent clearing prices
    gpu_model: str | None  # the model those prices are for (the cheapest that fits)
    wait_ms: int | None  # bid window when someone can bid; None when nobody can
    notes: tuple[str, ...] = ()


def _fits(group: GroupSpec, p: ProviderSnapshot) -> Allocation | None:
    if placement_mismatches(group.requirements, p.attributes):
        return None
    found = allocate(group, p.capacity)
    return found if isinstance(found, Allocation) else None


def estimate_group(group: GroupSpec, bid_window_ms: int, snapshot: MarketSnapshot) -> GroupEstimate:
    fits = [(p, a) for p in snapshot.providers if (a := _fits(group, p)) is not None]
    gpus = group.total_gpus
    priced = sorted(
        (snapshot.prices[model].median, model)
        for model in {m for _, a in fits for m in a.gpu_models}
        if model in snapshot.prices
    )
    notes: list[str] = []
    band: tuple[int, int, int] | None = None
    model = None
    if priced and gpus:
        model = priced[0][1]
        b = snapshot.prices[model]
        band = (b.p10 * gpus, b.median * gpus, b.p90 * gpus)
        if group.max_price_per_hour < band[0]:
            notes.append(
                f"your maximum {money.format_amount(group.max_price_per_hour)}/h is under 90% of "
                f"recent {model} prices: expect few or no bids"
            )
    elif gpus:
        notes.append("no recent clearing prices for the GPUs that fit: price unknown")
    if not fits:
        notes.append("no online provider can run this group now: it waits until one comes")
    return GroupEstimate(
        group=group.name,
        eligible=len(fits),
        busy=sum(1 for p, _ in fits if p.leases_running),
        max_per_hour=group.max_price_per_hour,
        price_per_hour=band,
        gpu_model=model,
        wait_ms=bid_window_ms if fits else None,
        notes=tuple(notes),
    )


def estimate(manifest: Manifest, snapshot: MarketSnapshot) -> list[GroupEstimate]:
    window = manifest.job.auction.bid_window_ms
    return [estimate_group(g, window, snapshot) for g in manifest.groups]


def describe_wait(wait_ms: int | None) -> str:
    return "no provider can bid now" if wait_ms is None else f"~{units.format_duration(wait_ms)}"
