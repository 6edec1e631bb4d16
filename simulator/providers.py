"""Simulated providers: GPU inventory, costs, pricing strategy, uptime and network links.

The population is drawn once from the run's RNG. Costs and prices are integer micro-units per
hour, as the market core wants them. Whether a provider bids is the provider agent's own rule
(marketplace.core.bidding.decide: policy, placement, reservation of concrete GPUs); what it asks
is its strategy here (`strategy_price`), and `bidding.with_price` checks it against the order.
"""

from __future__ import annotations

import json
import random
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from itertools import accumulate
from typing import TYPE_CHECKING, Generic, Literal, TypedDict, TypeVar

from marketplace.core.bidding import BidDecision
from marketplace.core.gang import DOWN_MBPS, UP_MBPS
from marketplace.core.gpus import GpuVariant
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.money import MICRO
from simulator.network import Link
from simulator.scenario import GpuMixEntry, ProviderSpec, Scenario

if TYPE_CHECKING:
    from simulator.workload import Job

V = TypeVar("V")

STRATEGIES = ("cost-plus", "equilibrium", "adaptive")
GIB = 1 << 30
# what a simulated box has per GPU besides the GPU (the market registers the same)
CPU_MILLIS_PER_GPU = 16_000
MEMORY_PER_GPU = 128 * GIB
STORAGE_PER_GPU = 2048 * GIB


class MachineCount(TypedDict):
    model: str
    ram_gib: int
    interface: Literal["sxm", "pcie"]
    gpus_per_node: int
    machines: int  # how many the trace holds
    source: str


class PackagedData(TypedDict):
    """simulator/data/machine_mix.json"""

    about: str
    machines: list[MachineCount]
    cost_per_gpu_hour_about: str
    cost_per_gpu_hour: dict[str, float]


@cache
def packaged_data() -> PackagedData:
    text = resources.files("simulator.data").joinpath("machine_mix.json").read_text("utf-8")
    return json.loads(text)


def default_mix() -> tuple[GpuMixEntry, ...]:
    """The machine mix of the public Alibaba traces (see simulator/data/machine_mix.json)."""
    return tuple(
        GpuMixEntry(
            model=m["model"],
            ram_gib=m["ram_gib"],
            interface=m["interface"],
            gpus_per_node=m["gpus_per_node"],
            weight=float(m["machines"]),
        )
        for m in packaged_data()["machines"]
    )


def reference_costs(spec: ProviderSpec) -> dict[str, int]:
    """Reference cost per GPU-hour in micro-units, by model (packaged table + overrides)."""
    table = dict(packaged_data()["cost_per_gpu_hour"])
    table.update(spec.cost_per_gpu_hour)
    return {model: round(cost * MICRO) for model, cost in table.items()}


class Chooser(Generic[V]):
    """Weighted choice from a value → weight table with one RNG draw (deterministic order)."""

    def __init__(self, table: dict[V, float] | Sequence[tuple[V, float]]) -> None:
        items = list(table.items()) if isinstance(table, dict) else list(table)
        self.values = [value for value, _ in items]
        self.cumulative = list(accumulate(weight for _, weight in items))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> V:
        index = bisect(self.cumulative, rng.random() * self.total)
        return self.values[min(index, len(self.values) - 1)]


@dataclass(slots=True)
class SimProvider:
    index: int
    address: str
    model: str
    ram_gib: int
    interface: str
    gpus: int
    cost_per_gpu_hour: int  # micro-units, this provider's true cost
    strategy: str
    markup: float  # cost-plus and adaptive: price = cost × (1 + markup)
    link: Link
    failure_factor: float  # community boxes fail more often than datacentre ones
    free_gpus: int = 0  # not leased and not reserved by an open bid
    up: bool = True
    pooled: bool = False  # in the engine's pools of providers with free GPUs
    # lease id → (job, group index), insertion-ordered (never a set: iteration must be stable)
    leases: dict[str, tuple[Job, int]] = field(default_factory=dict)
    # its free resources by number of free GPUs (GPUs of one box are interchangeable, so the
    # free ones are its first n devices), and its attributes as the market sees them
    capacities: tuple[Capacity, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    # bidding.decide(pricing=None) verdicts, memoized by the engine (Auctions.reserve): by
    # (group's units, group's placement) ids, a list indexed by the number of free GPUs
    decisions: dict[tuple[int, int], list[BidDecision | None]] = field(default_factory=dict)
    # bidding.with_price results for those verdicts, by (verdict, units) ids (Auctions._bid;
    # not for adaptive providers, whose price moves)
    priced: dict[tuple[int, int], BidDecision] = field(default_factory=dict)
    running: dict[str, tuple[int, int]] = field(default_factory=dict)  # lease → (GPUs, since ms)
    busy_gpu_ms: float = 0.0  # GPU-time spent running leases (what its cost is paid on)
    revenue: int = 0
    wins: int = 0
    losses: int = 0


@dataclass(frozen=True)
class Pricing:
    """What a provider needs to price a bid; shared by all providers of a run."""

    payment: str  # first-price | second-price
    bidders: int  # the number of competitors it expects (the scenario's bidders_per_order)
    spread: float  # costs are reference × U[1 − spread, 1 + spread]
    adaptive_step: float


def bid_price(p: SimProvider, gpus: int, reference: int, pricing: Pricing) -> int:
    """The hourly price `p` asks for `gpus` of its GPUs (before the reserve check)."""
    cost = p.cost_per_gpu_hour * gpus
    if p.strategy == "equilibrium":
        if pricing.payment == "second-price":
            return cost  # truthful bidding is dominant under second price
        # First-price symmetric equilibrium with costs U[lo, hi]: b(c) = c + (hi − c)/n.
        high = reference * gpus * (1.0 + pricing.spread)
        return round(cost + max(high - cost, 0.0) / pricing.bidders)
    return round(cost * (1.0 + p.markup))


def strategy_price(
    p: SimProvider, gpus: int, reference: int, pricing: Pricing, reserve: int
) -> int:
    """What `p` asks for `gpus` of its GPUs on an order with maximum `reserve`. Strategic
    providers (equilibrium, adaptive) shade a price above the maximum down to it while it still
    covers their cost; cost-plus ones ask their price regardless, and the bid decision declines
    it (as Akash's price script refuses to bid above the tenant's maximum)."""
    price = bid_price(p, gpus, reference, pricing)
    if price > reserve and p.strategy != "cost-plus" and p.cost_per_gpu_hour * gpus <= reserve:
        return reserve
    return price


def capacities(address: str, variant: GpuVariant, gpus: int) -> tuple[Capacity, ...]:
    """A box's free resources with 0..gpus of its GPUs free (its other resources in proportion)."""
    devices = tuple(GpuDevice(f"GPU-{address}-{i}", variant) for i in range(gpus))
    return tuple(
        Capacity(
            cpu_millis=n * CPU_MILLIS_PER_GPU,
            memory_bytes=n * MEMORY_PER_GPU,
            storage_bytes=n * STORAGE_PER_GPU,
            gpus=devices[:n],
        )
        for n in range(gpus + 1)
    )


def learn(p: SimProvider, won: bool, step: float) -> None:
    """Adaptive providers raise their markup after a win and lower it after a loss."""
    if won:
        p.wins += 1
    else:
        p.losses += 1
    if p.strategy == "adaptive":
        p.markup = p.markup * (1.0 + step) + step / 10 if won else p.markup * (1.0 - step)


def make_providers(scenario: Scenario, rng: random.Random) -> list[SimProvider]:
    spec = scenario.providers
    mix = default_mix() if spec.mix == "default" else spec.mix
    assert isinstance(mix, tuple)
    costs = reference_costs(spec)
    machines = Chooser([(entry, entry.weight) for entry in mix])
    strategies = Chooser(spec.strategies)
    regions = Chooser(spec.regions)
    ups = Chooser(spec.up_mbps)
    downs = Chooser(spec.down_mbps)
    fail = spec.failures
    providers = []
    for i in range(spec.count):
        entry: GpuMixEntry = machines.pick(rng)
        reference = costs.get(entry.model, MICRO)  # unknown model: 1 unit per GPU-hour
        cost = round(reference * rng.uniform(1.0 - spec.cost_spread, 1.0 + spec.cost_spread))
        community = rng.random() < fail.community_share
        address = f"prov{i:06d}"
        variant = GpuVariant(entry.model, entry.ram_gib, entry.interface)
        providers.append(
            SimProvider(
                index=i,
                address=address,
                model=entry.model,
                ram_gib=entry.ram_gib,
                interface=entry.interface,
                gpus=entry.gpus_per_node,
                cost_per_gpu_hour=max(cost, 1),
                strategy=strategies.pick(rng),
                markup=spec.markup,
                link=Link(ups.pick(rng), downs.pick(rng), regions.pick(rng)),
                failure_factor=fail.community_factor if community else 1.0,
                free_gpus=entry.gpus_per_node,
                capacities=capacities(address, variant, entry.gpus_per_node),
            )
        )
    for p in providers:
        # what an agent declares from its [network] settings: the gang auction ranks by it
        p.attributes = {
            "region": p.link.region,
            UP_MBPS: f"{p.link.up_mbps:g}",
            DOWN_MBPS: f"{p.link.down_mbps:g}",
        }
    return providers
