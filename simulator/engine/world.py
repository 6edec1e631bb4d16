"""What every process of a run shares: the simulated clock and its one scheduling primitive, the
run's random stream, the market (marketplace.core on that clock), the providers with the pools
of those that have free GPUs, the group specs the tenants ask for, and the metrics.

The processes copy what they use from here into their own attributes once, at construction, so
a hot path reads `self.market`, never a chain through the world.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from heapq import heappop, heappush
from typing import ClassVar, TypeVarTuple, cast

import simpy
from simpy.events import NORMAL, Event

from marketplace.core.archive import NullArchive
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.resources import (
    GpuOption,
    GpuRequest,
    GroupSpec,
    PlacementRequirements,
    ResourceUnit,
)
from simulator.metrics import MS_PER_HOUR, Collector
from simulator.providers import SimProvider, make_providers, reference_costs
from simulator.scenario import Scenario
from simulator.workload import Job

ADMIN = "sim-admin"
GIB = 1 << 30

Args = TypeVarTuple("Args")


def _fire(call: Call) -> None:
    call.fn(*call.args)


class Call(Event):
    """A timeout that calls fn(*args) when it fires: what env.timeout(delay) plus a callback
    do, scheduled the same way (NORMAL priority, the environment's event counter, so the order
    of events is the same), without a Timeout, a closure and a callback list per event."""

    # one callback list shared by every Call: SimPy's step only reads it (and unsets the
    # event's reference to it)
    _CALLBACKS: ClassVar[list[Callable[[Call], None]]] = [_fire]
    _ok = True  # a fired Call succeeded (step checks it)

    def __init__(self, fn: Callable[..., None], args: tuple[object, ...]) -> None:
        # no Event.__init__: a Call is scheduled at once and never waited on
        self.fn = fn
        self.args = args
        self.callbacks = self._CALLBACKS


class SimClock:
    """The market's Clock, reading SimPy's simulated time (whole ms: every delay is an int)."""

    def __init__(self, env: simpy.Environment) -> None:
        # The market reads the clock in every command (~30 times per job): a C-level
        # getattr of the environment's time instead of a Python method and property call.
        self.now_ms: Callable[[], int] = functools.partial(getattr, env, "_now")


class Pool:
    """Provider indices with free GPUs: O(1) add/remove and uniform sampling, deterministic."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.pos: dict[int, int] = {}

    def add(self, i: int) -> None:
        if i not in self.pos:
            self.pos[i] = len(self.items)
            self.items.append(i)

    def remove(self, i: int) -> None:
        at = self.pos.pop(i, None)
        if at is None:
            return
        last = self.items.pop()
        if last != i:
            self.items[at] = last
            self.pos[last] = at


class World:
    """One run's shared state, built from the scenario and the seed."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.rng = random.Random(self.seed)  # the providers' draws (made once, below)
        # Each process draws from its own stream of the seed: a change in how one of them draws
        # (the auctions' candidates, say) leaves the jobs that arrive and the providers'
        # failures as they were, so two versions of the engine compare on the same workload.
        self.streams = {
            name: random.Random(f"{self.seed}/{name}")
            for name in ("arrivals", "failures", "auctions")
        }
        self.env = simpy.Environment()
        clock = SimClock(self.env)
        # SimPy's time as the market reads it (SimClock): whole ms
        self.now = clock.now_ms
        self.horizon_ms = round(scenario.duration_days * 24 * MS_PER_HOUR)
        m = scenario.market
        self.timeout_ms = max(1, round(m.heartbeat_timeout_s * 1000))
        # Liveness is lazy: the core does not expire heartbeats on its own clock; the failure
        # process tells it a provider went silent (MarketService.provider_silent).
        config = MarketConfig(
            heartbeat_timeout_ms=self.timeout_ms,
            heartbeat_expiry=False,
            admin_address=ADMIN,
            journal=False,
            record_events=False,
            keep_ledger=False,
            retain_closed=False,
            max_bids_per_order=max(100, m.bidders_per_order),
            mint_limit=None,  # every tenant is funded 10^18: the books stay in memory
        )
        # nothing reads a closed record back: it leaves memory as it closes (no archive)
        self.market = MarketService(clock, config, archive=NullArchive())
        self.costs = reference_costs(scenario.providers)
        self.providers = make_providers(scenario, self.rng)
        models = sorted({p.model for p in self.providers})
        self.metrics = Collector(models, round(scenario.report.sample_minutes * 60_000))
        self.pools: dict[str, Pool] = {model: Pool() for model in [*models, "*"]}
        self.silent: dict[int, None] = {}  # failed providers the market has noticed
        # providers whose GPUs came free (or that came back up) in the current event: once it
        # is done, each looks at the orders waiting for capacity (offer_freed)
        self.freed: dict[int, None] = {}
        # what a provider with freed capacity does: Auctions.offer_freed, wired by Simulation
        self.offer_freed: Callable[[list[int]], None] = lambda _indices: None
        self.groups: dict[tuple[str, int], tuple[GroupSpec, ...]] = {}
        self.events = 0

    def after(self, delay_ms: float, fn: Callable[[*Args], None], *args: *Args) -> None:
        """Call fn(*args) in `delay_ms` of simulated time: one SimPy event (a Call), queued as
        Environment.schedule queues it (time, NORMAL, the environment's event counter)."""
        self.events += 1
        env = self.env
        delay = math.ceil(delay_ms) if delay_ms > 0 else 0
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), Call(fn, args)))

    def run_until(self, until: int) -> None:
        """What env.run(until=until) does with a queue of Calls only: fire every one due
        before `until` in the queue's order (time, priority, event counter), then stand at
        `until` (a Call due at `until` itself fires in the next run, as SimPy's urgent until
        event comes first). Without Environment.step's per-event bookkeeping (callback lists,
        the failure check: a Call never fails, its exception propagates the same way)."""
        env = self.env
        queue = cast("list[tuple[int, int, int, Call]]", env._queue)  # World.after queues Calls
        while queue and queue[0][0] < until:
            env._now, _, _, call = heappop(queue)
            call.fn(*call.args)
        env._now = until

    def refresh(self, p: SimProvider) -> None:
        """Keep p in the pools of providers with free GPUs exactly when it has some."""
        free = p.up and p.free_gpus > 0
        if free == p.pooled:
            return
        p.pooled = free
        if free:
            self.pools[p.model].add(p.index)
            self.pools["*"].add(p.index)
        else:
            self.pools[p.model].remove(p.index)
            self.pools["*"].remove(p.index)

    def release(self, p: SimProvider, gpus: int) -> None:
        """`gpus` of p are free again (a lease ended, a bid lost, was withdrawn or went with
        its job): back in the pools now, and offered to the waiting orders after this event.
        Every path that frees GPUs comes through here, so none leaves waiting work waiting."""
        p.free_gpus += gpus
        self.refresh(p)
        self.capacity_back(p)

    def capacity_back(self, p: SimProvider) -> None:
        """p has capacity to offer again (freed GPUs, or it came back up): once the current
        event is done (one Call at this instant, so every path gets the same turn, after the
        event's own bookkeeping), it looks at the orders waiting for capacity, as a provider
        agent that sees free GPUs bids on the open orders it can serve."""
        if not self.freed:
            self.after(0, self._offer_freed)
        self.freed[p.index] = None

    def _offer_freed(self) -> None:
        indices = list(self.freed)
        self.freed.clear()
        self.offer_freed(indices)

    def lease_gone(self, p: SimProvider, lease_id: str) -> None:
        """A lease of p ended (any reason): its GPUs are free again."""
        entry = p.leases.pop(lease_id, None)
        if entry is None:
            return
        job, g = entry
        if job.providers[g] == p.index:
            job.providers[g] = -1
        if job.leases[g] == lease_id:
            job.leases[g] = ""
        running = p.running.pop(lease_id, None)
        if running is not None:
            gpus, since = running
            p.busy_gpu_ms += gpus * (self.now() - since)
            self.metrics.busy_gpus.add(self.now(), -gpus)
        self.release(p, job.gpus_per_group)

    def group_specs(self, job: Job) -> tuple[GroupSpec, ...]:
        """The groups a job's deployment asks for, interned per (GPU model, GPUs per group)."""
        key = (job.gpu_model, job.gpus_per_group)
        specs = self.groups.get(key)
        if specs is None:
            unit = ResourceUnit(
                services=("worker",),
                count=1,
                cpu_millis=2_000 * job.gpus_per_group,
                memory_bytes=8 * GIB * job.gpus_per_group,
                gpu=GpuRequest(job.gpus_per_group, (GpuOption(job.gpu_model),)),
                max_price_per_hour=job.max_price_per_hour,
            )
            # the groups share their units and placement, so a provider's bid decision on one
            # is its decision on all (see Auctions.reserve)
            units, placement = (unit,), PlacementRequirements()
            specs = tuple(GroupSpec(f"g{i + 1}", placement, units) for i in range(64))
            self.groups[key] = specs
        return specs[: job.groups]
