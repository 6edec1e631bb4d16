"""The simulation: SimPy drives the market's own MarketService on a simulated clock.

Time is integer milliseconds (env.now). Every happening is ONE SimPy timeout with a callback:
an arrival, a bid window's close (the market's next deadline), a job's completion, a provider's
failure, its detection, its repair. Nothing ticks per minute: a failed provider sends one last
heartbeat at the moment it fails (so billing stops there) and is reported silent at
failure + heartbeat timeout.

The simulator plays the tenants and the providers; the market (orders, bids, the auction and
its payment rule, leases, escrow, billing, liveness, re-orders) is marketplace.core, unchanged,
and each provider decides to bid or decline with the provider agent's own rule
(marketplace.core.bidding: placement, reservation of concrete GPUs, the price check).
One random.Random(seed) owned by the run drives every draw; iteration is over lists and dicts
(insertion order), never sets, so a run is reproducible byte for byte.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simpy

from marketplace.core.bidding import BidDecision, BidPolicy, decide, with_price
from marketplace.core.errors import FailedPrecondition, Ineligible, MarketError, NotFound
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.resources import (
    AuctionSettings,
    GpuOption,
    GpuRequest,
    GroupSpec,
    JobKind,
    JobSettings,
    Payment,
    PlacementRequirements,
    ResourceUnit,
    RestartPolicy,
)
from marketplace.core.state import Offer, OrderState
from simulator.assignment import min_cost_assignment
from simulator.failures import FailureModel
from simulator.metrics import MS_PER_HOUR, Collector
from simulator.network import sync_seconds, utilization
from simulator.providers import (
    Pricing,
    SimProvider,
    learn,
    make_providers,
    reference_costs,
    strategy_price,
)
from simulator.scenario import Scenario, ScenarioError
from simulator.workload import Job, JobFactory, load_trace, poisson_arrivals

ADMIN = "sim-admin"
GIB = 1 << 30
TENANT_FUNDS = 10**18  # micro-units: tenants never run out; escrows are what is at stake
NEVER = 100 * 365 * 24 * MS_PER_HOUR  # heartbeat timeout when the core cannot be told
# The offline optimum looks at this many of the cheapest providers per order (a bound that
# only binds when nearly every cheap provider is busy).
SCAN_LIMIT = 2_000


class SimClock:
    """The market's Clock, reading SimPy's simulated time (whole ms: every delay is an int)."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        # The market reads the clock in every command (~30 times per job): a C-level
        # getattr of the environment's time instead of a Python method and property call.
        self.now_ms = functools.partial(getattr, env, "_now")  # type: ignore[method-assign]

    def now_ms(self) -> int:
        return self.env.now  # type: ignore[no-any-return]


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


@dataclass(slots=True)
class OrderWatch:
    job: Job
    group: int
    spec: GroupSpec  # the order's group
    bidders: list[tuple[int, int]] = field(default_factory=list)  # (provider index, price)


class Simulation:
    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.rng = random.Random(self.seed)
        self.env = simpy.Environment()
        self.horizon_ms = round(scenario.duration_days * 24 * MS_PER_HOUR)
        m = scenario.market
        self.timeout_ms = max(1, round(m.heartbeat_timeout_s * 1000))
        # Lazy liveness needs the core to let the caller report silent providers (see
        # /work/notes/sim_needs_from_core.md); until then heartbeats never expire in the core
        # and the simulator closes a dead provider's leases itself at detection time.
        self.lazy_liveness = hasattr(MarketService, "provider_silent") and (
            "heartbeat_expiry" in MarketConfig.__dataclass_fields__
        )
        config_kwargs: dict[str, Any] = dict(
            heartbeat_timeout_ms=self.timeout_ms if self.lazy_liveness else NEVER,
            admin_address=ADMIN,
            journal=False,
            record_events=False,
            keep_ledger=False,
            retain_closed=False,
            max_bids_per_order=max(100, m.bidders_per_order),
        )
        if self.lazy_liveness:
            config_kwargs["heartbeat_expiry"] = False
        self.market = MarketService(SimClock(self.env), MarketConfig(**config_kwargs))
        self.payment = Payment(m.payment)
        self.costs = reference_costs(scenario.providers)
        self.providers = make_providers(scenario, self.rng)
        self.failure_model = FailureModel.from_spec(scenario.providers.failures)
        self.pricing = Pricing(
            payment=m.payment,
            bidders=m.bidders_per_order,
            spread=scenario.providers.cost_spread,
            adaptive_step=scenario.providers.adaptive_step,
        )
        # every simulated provider bids on any tenant's order, with no lease limit
        self.policy = BidPolicy()
        self.factory = JobFactory(scenario, self.providers, self.costs, self.rng)
        models = sorted({p.model for p in self.providers})
        self.metrics = Collector(models, round(scenario.report.sample_minutes * 60_000))
        self.by_address = {p.address: p for p in self.providers}
        # what each provider says it offers (informational; the market prices from the bid)
        self.offers = [Offer(gpu_models=(p.model,), region=p.link.region) for p in self.providers]
        self.pools: dict[str, Pool] = {model: Pool() for model in [*models, "*"]}
        # providers cheapest first, per model and overall: costs are fixed for a run
        ranked = sorted(self.providers, key=lambda p: (p.cost_per_gpu_hour, p.index))
        self.by_cost: dict[str, list[int]] = {"*": [p.index for p in ranked]}
        for p in ranked:
            self.by_cost.setdefault(p.model, []).append(p.index)
        self.watch: dict[str, OrderWatch] = {}  # orders the tenants wait on, by id
        self.due: list[tuple[int, str]] = []  # heap of (window close, order id)
        self.silent: dict[int, None] = {}  # failed providers the market has noticed
        self.waiting: dict[str, dict[str, None]] = {model: {} for model in self.pools}
        self.active: dict[int, Job] = {}  # jobs not ended yet, by id
        self.ended = 0
        self.providers_down = 0
        self.funded: dict[str, None] = {}
        self.next_tick_ms = math.inf
        self.events = 0
        self.groups: dict[tuple[str, int], tuple[GroupSpec, ...]] = {}
        self.settings = {
            kind: JobSettings(
                kind=kind,
                restart_policy=RestartPolicy.ON_FAILURE,
                auction=AuctionSettings(
                    bid_window_ms=max(1, round(m.bid_window_s * 1000)),
                    payment=self.payment,
                    min_reliability=m.min_reliability,
                ),
            )
            for kind in (JobKind.TRAINING, JobKind.INFERENCE)
        }
        self._register_providers()
        self._start_arrivals()
        self.after(0, self._sample)

    # ---- scheduling ------------------------------------------------------------------------
    def after(self, delay_ms: float, fn: Callable[..., None], *args: Any) -> None:
        """Call fn(*args) in `delay_ms` of simulated time: one SimPy timeout."""
        self.events += 1
        event = self.env.timeout(max(0, math.ceil(delay_ms)))
        event.callbacks.append(lambda _event: fn(*args))

    def now(self) -> int:
        return self.env._now  # type: ignore[no-any-return]  # SimPy's time, as SimClock reads it

    def run(self, progress: Callable[[float], None] | None = None, steps: int = 100) -> None:
        """Run to the horizon, calling progress(fraction) between chunks of simulated time."""
        # The run makes millions of short-lived, acyclic objects; the cyclic GC would rescan the
        # long-lived ones (providers, market records) over and over (~10% of the time at
        # 1,000 providers, more at 10,000). Collect rarely while it runs; restore afterwards.
        threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(100_000, 50, 1_000)
        try:
            for step in range(1, steps + 1):
                until = self.horizon_ms * step // steps
                if until > self.env.now:
                    self.env.run(until=until)
                if progress is not None:
                    progress(step / steps)
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()
        self._finish()

    def _sample(self) -> None:
        """One row of the time series; the next one in sample_ms."""
        now = self.now()
        m = self.metrics
        up = m.up_gpus.value
        m.sample(
            now,
            {
                "gpus_up": up,
                "gpus_busy": m.busy_gpus.value,
                "utilization": m.busy_gpus.value / up if up else 0.0,
                "providers_down": self.providers_down,
                "jobs_open": len(self.active),
                "jobs_ended": self.ended,
                "auctions": m.auctions,
                "provider_failures": m.provider_failures,
                "leases_lost": m.leases_lost,
                "failovers": m.failovers,
                "job_interruptions": m.job_interruptions,
            },
        )
        if now + m.sample_ms <= self.horizon_ms:
            self.after(m.sample_ms, self._sample)

    def _wake_market(self) -> None:
        """Make sure the market's next deadline has a timeout waiting for it."""
        deadline = self.market.next_deadline_ms()
        if self.due and (deadline is None or self.due[0][0] < deadline):
            # any command ticks the market first, so an award can already have happened
            deadline = self.due[0][0]
        if deadline is not None and deadline < self.next_tick_ms:
            self.next_tick_ms = deadline
            self.after(deadline - self.now(), self._tick, deadline)

    def _tick(self, deadline: int) -> None:
        if deadline != self.next_tick_ms:
            return  # an earlier wake-up superseded this one
        self.next_tick_ms = math.inf
        self.market.tick()
        self._collect_awards()
        self._wake_market()

    # ---- providers -------------------------------------------------------------------------
    def _register_providers(self) -> None:
        now = self.now()
        for p in self.providers:
            self.market.register_provider(
                p.address,
                f"sim://{p.address}",
                p.attributes,
                p.capacities[p.gpus],
                region=p.link.region,
                version="sim",
            )
            self._refresh(p)
            self.metrics.up_gpus.add(now, p.gpus)
            self._schedule_failure(p)

    def _refresh(self, p: SimProvider) -> None:
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

    def _schedule_failure(self, p: SimProvider) -> None:
        ttf = self.failure_model.time_to_failure_ms(self.rng, p.gpus, p.failure_factor)
        if self.now() + ttf < self.horizon_ms:
            self.after(ttf, self._fail, p)

    def _fail(self, p: SimProvider) -> None:
        now = self.now()
        self.metrics.provider_failures += 1
        # Its last heartbeat: billing for its leases stops here.
        self.market.heartbeat(p.address, list(p.leases))
        p.up = False
        self.providers_down += 1
        self._refresh(p)
        self.metrics.up_gpus.add(now, -p.gpus)
        for gpus, since in p.running.values():
            p.busy_gpu_ms += gpus * (now - since)
            self.metrics.busy_gpus.add(now, -gpus)
        p.running.clear()
        for job, g in list(p.leases.values()):
            self._group_down(job, g)
        self.after(self.timeout_ms, self._detect, p)
        repair = self.failure_model.repair_time_ms(self.rng)
        self.after(max(repair, self.timeout_ms + 1_000), self._repair, p)

    def _detect(self, p: SimProvider) -> None:
        """The market notices the silence: leases provider_lost, groups ordered again."""
        if self.lazy_liveness:
            self.market.provider_silent(p.address)  # type: ignore[attr-defined]
        else:
            for lease_id in list(p.leases):
                with contextlib.suppress(NotFound, FailedPrecondition):
                    self.market.close_lease(p.address, lease_id, "provider lost (simulated)")
        self.silent[p.index] = None
        for lease_id, (job, g) in list(p.leases.items()):
            self._lease_gone(p, lease_id)
            if not job.done:
                self.metrics.leases_lost += 1
                self._reorder(job, g)
        self._wake_market()

    def _repair(self, p: SimProvider) -> None:
        now = self.now()
        self.market.heartbeat(p.address)
        self.silent.pop(p.index, None)
        p.up = True
        self.providers_down -= 1
        self._refresh(p)
        self.metrics.up_gpus.add(now, p.gpus)
        self._schedule_failure(p)
        self._offer_capacity(p)
        self._wake_market()

    def _lease_gone(self, p: SimProvider, lease_id: str) -> None:
        """A lease of p ended (any reason): its GPUs are free again."""
        entry = p.leases.pop(lease_id, None)
        if entry is None:
            return
        job, g = entry
        p.free_gpus += job.gpus_per_group
        if job.providers[g] == p.index:
            job.providers[g] = -1
        if job.leases[g] == lease_id:
            job.leases[g] = ""
        running = p.running.pop(lease_id, None)
        if running is not None:
            gpus, since = running
            p.busy_gpu_ms += gpus * (self.now() - since)
            self.metrics.busy_gpus.add(self.now(), -gpus)
        self._refresh(p)

    # ---- tenants ---------------------------------------------------------------------------
    def _start_arrivals(self) -> None:
        arrivals = self.scenario.tenants.arrivals
        if arrivals.kind == "trace":
            path = arrivals.trace
            if self.scenario.base_dir and not path.startswith("/"):
                path = f"{self.scenario.base_dir}/{path}"
            offset_s = arrivals.trace_offset_days * 86_400
            tasks = load_trace(Path(path), arrivals.trace_speedup, self.horizon_ms, offset_s)
            self._next_trace(iter(tasks))
        else:
            times = poisson_arrivals(self.rng, arrivals.rate_per_hour, self.horizon_ms)
            self._next_poisson(times)

    def _next_poisson(self, times: Any) -> None:
        at = next(times, None)
        if at is not None:
            self.after(at - self.now(), self._poisson_arrival, times)

    def _poisson_arrival(self, times: Any) -> None:
        self._arrive(self.factory.make(self.now()))
        self._next_poisson(times)

    def _next_trace(self, tasks: Any) -> None:
        task = next(tasks, None)
        if task is not None:
            self.after(task.time_ms - self.now(), self._trace_arrival, task, tasks)

    def _trace_arrival(self, task: Any, tasks: Any) -> None:
        self._arrive(self.factory.make(self.now(), task.kind, task.gpus, task.duration_ms))
        self._next_trace(tasks)

    def _group_specs(self, job: Job) -> tuple[GroupSpec, ...]:
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
            # is its decision on all (see _reserve)
            units, placement = (unit,), PlacementRequirements()
            specs = tuple(GroupSpec(f"g{i + 1}", placement, units) for i in range(64))
            self.groups[key] = specs
        return specs[: job.groups]

    def _arrive(self, job: Job) -> None:
        now = self.now()
        self.active[job.id] = job
        self.metrics.jobs_arrived[job.kind] += 1
        if job.tenant not in self.funded:
            self.funded[job.tenant] = None
            self.market.fund(ADMIN, job.tenant, TENANT_FUNDS)
        hours = job.compute_ms * 2 if job.kind == "training" else job.duration_ms * 1.2
        hours = hours / MS_PER_HOUR + 2
        deposit = max(1, math.ceil(job.max_price_per_hour * job.groups * hours))
        specs = self._group_specs(job)
        kind = JobKind.TRAINING if job.kind == "training" else JobKind.INFERENCE
        dep = self.market.create_deployment(
            job.tenant, specs, self.settings[kind], b"", b"", b"", deposit
        )
        job.deployment_id = dep.id
        job.orders = list(dep.group_orders)
        job.leases = [""] * job.groups
        job.providers = [-1] * job.groups
        job.lost_at = [-1] * job.groups
        job.replica_since = [-1] * job.groups
        job.waiting_since_ms = now
        for g, order_id in enumerate(job.orders):
            self._solicit(job, g, order_id)
        patience = (
            self.scenario.tenants.training.patience_hours
            if job.kind == "training"
            else self.scenario.tenants.inference.patience_hours
        )
        job.patience_ms = round(patience * MS_PER_HOUR)
        self.after(job.patience_ms, self._patience, job, now)
        self._wake_market()

    def _patience(self, job: Job, since: int) -> None:
        """A job still waiting for all its groups since `since` gives up."""
        if job.done or job.waiting_since_ms != since:
            return
        if job.kind == "training" and job.running_since_ms >= 0:
            return
        if job.kind == "inference" and job.first_start_ms >= 0:
            return
        self._end_job(job, "abandoned" if job.first_start_ms >= 0 else "unfilled")

    # ---- bidding ---------------------------------------------------------------------------
    def _sees(self, p: SimProvider, job: Job) -> bool:
        """A provider that is up and whose link carries the job's traffic (what the simulator
        models outside the manifest) looks at the order; the bid decision does the rest."""
        return p.up and min(p.link.up_mbps, p.link.down_mbps) >= job.min_bandwidth_mbps

    def _reserve(self, p: SimProvider, group: GroupSpec, job: Job) -> BidDecision:
        """The provider agent's decision up to the price: bidding.decide with pricing=None
        (policy, placement, reservation of concrete GPUs from what p has free). Memoized per
        (group's units, group's placement, free GPUs): decide is pure and reads nothing else of
        the group, both are interned for the run (_group_specs), and p's attributes and policy
        are fixed (the policy has no tenant lists or lease limit, so neither the tenant nor p's
        lease count can change the verdict)."""
        free = p.free_gpus if p.free_gpus > 0 else 0
        key = (id(group.resources), id(group.requirements), free)
        decision = p.decisions.get(key)
        if decision is None:
            decision = decide(
                group, job.tenant, p.attributes, p.capacities[free], self.policy, None, self.now()
            )
            p.decisions[key] = decision
        return decision

    def _can_host(self, p: SimProvider, job: Job, group: GroupSpec) -> bool:
        """p sees the order and its bid decision, short of the price, is yes."""
        # _sees and _reserve's memo inlined: this runs for every provider drawn for an order
        link = p.link
        if not p.up or min(link.up_mbps, link.down_mbps) < job.min_bandwidth_mbps:
            return False
        key = (id(group.resources), id(group.requirements), p.free_gpus if p.free_gpus > 0 else 0)
        decision = p.decisions.get(key) or self._reserve(p, group, job)
        if decision.bid:
            return True
        self.metrics.declines_no_room += 1
        return False

    def _candidates(self, job: Job, group: GroupSpec) -> list[SimProvider]:
        """Up to bidders_per_order providers that can host a group, drawn at random."""
        want = self.scenario.market.bidders_per_order
        pool = self.pools.get(job.gpu_model)
        if pool is None or not pool.items:
            return []
        items = pool.items
        chosen: dict[int, None] = {}
        if len(items) <= want * 2:
            eligible = [i for i in items if self._can_host(self.providers[i], job, group)]
            if len(eligible) > want:
                eligible = self.rng.sample(eligible, want)
            return [self.providers[i] for i in eligible]
        for _ in range(want * 4):
            i = items[self.rng.randrange(len(items))]
            if i not in chosen and self._can_host(self.providers[i], job, group):
                chosen[i] = None
                if len(chosen) >= want:
                    break
        return [self.providers[i] for i in chosen]

    def _bid(self, p: SimProvider, watch: OrderWatch, order_id: str) -> bool:
        """p, which can host the group, prices it with its strategy; bidding.with_price decides
        whether that is still a bid (positive, within the order's maximum) or a decline."""
        job = watch.job
        group = watch.spec
        reference = self.costs.get(p.model, p.cost_per_gpu_hour)
        price = strategy_price(
            p, job.gpus_per_group, reference, self.pricing, group.max_price_per_hour
        )
        reserved = self._reserve(p, group, job)
        if p.strategy == "adaptive":  # a new price nearly every time: nothing to reuse
            decision = with_price(reserved, group, price)
        else:  # with_price is pure; these providers ask the same few prices again and again
            key = (id(reserved), id(group.resources), price)
            decision = p.priced.get(key) or p.priced.setdefault(
                key, with_price(reserved, group, price)
            )
        if not decision.bid:
            # Counted, not sent: a DeclineOrder per such decline (a market tick and a decline
            # record each) made whole runs ~10% slower, for a reason no simulated tenant reads.
            self.metrics.declines_price += 1
            return False
        self.metrics.bids += 1
        try:
            self.market.place_bid(
                p.address, order_id, decision.price_per_hour, self.offers[p.index]
            )
        except Ineligible:
            self.metrics.bids_refused += 1
            return False
        except (NotFound, FailedPrecondition):
            return False  # the order closed meanwhile
        p.free_gpus -= job.gpus_per_group
        self._refresh(p)
        watch.bidders.append((p.index, decision.price_per_hour))
        return True

    def _solicit(self, job: Job, g: int, order_id: str) -> None:
        """A new order: providers that see it bid; its window's close is watched."""
        watch = OrderWatch(job, g, self._group_specs(job)[g])
        self.watch[order_id] = watch
        for p in self._candidates(job, watch.spec):
            self._bid(p, watch, order_id)
        self.metrics.orders_solicited += 1
        self.metrics.bids_at_open += len(watch.bidders)
        order = self.market.get_order(order_id)
        heapq.heappush(self.due, (order.closes_at_ms, order_id))

    def _offer_capacity(self, p: SimProvider) -> None:
        """Freed GPUs: the provider looks at orders left without a winner, oldest first."""
        for model in (p.model, "*"):
            queue = self.waiting[model]
            for order_id in list(queue)[:16]:
                if p.free_gpus <= 0:
                    return
                watch = self.watch.get(order_id)
                if watch is None:
                    queue.pop(order_id, None)
                    continue
                if self._can_host(p, watch.job, watch.spec) and self._bid(p, watch, order_id):
                    queue.pop(order_id, None)
                    heapq.heappush(self.due, (self.now(), order_id))

    def _collect_awards(self) -> None:
        """After a tick: settle what each closed bid window decided."""
        now = self.now()
        ready = []
        while self.due and self.due[0][0] <= now:
            ready.append(heapq.heappop(self.due))
        awarded: list[tuple[OrderWatch, SimProvider]] = []
        for _, order_id in ready:
            watch = self.watch.get(order_id)
            if watch is None:
                continue
            order = self.market.state.orders.get(order_id)
            if order is None:
                self._release_bidders(watch, None)
                self.watch.pop(order_id, None)
                continue
            if order.state == OrderState.OPEN:
                # no eligible bid: the order stays open; free providers will look at it
                self._release_bidders(watch, None, withdraw=order_id)
                watch.bidders = []
                self.metrics.orders_without_bids += 1
                self.waiting[watch.job.gpu_model][order_id] = None
                continue
            self.watch.pop(order_id, None)
            if not order.lease_id:
                self._release_bidders(watch, None)
                continue
            awarded.append((watch, self._awarded(watch, order.lease_id)))
        if awarded:
            self.metrics.auction_rounds += 1
            every = self.scenario.market.efficiency_sample_every
            if every > 0 and self.metrics.auction_rounds % every == 0:
                self._round_optimum(awarded)

    def _release_bidders(
        self, watch: OrderWatch, winner: int | None, withdraw: str = "", offer: bool = True
    ) -> None:
        """Losers (or everyone, with no winner) unreserve; with `withdraw` (an order that stays
        open) they also withdraw their bids, as Akash's bid engine does on a bid timeout."""
        g = watch.job.gpus_per_group
        for index, _price in watch.bidders:
            if index == winner:
                continue
            p = self.providers[index]
            if withdraw:
                with contextlib.suppress(MarketError):  # not open any more
                    self.market.withdraw_bid(p.address, f"{withdraw}/{p.address}")
            p.free_gpus += g
            self._refresh(p)
            if winner is not None:
                learn(p, won=False, step=self.pricing.adaptive_step)
            if offer and p.free_gpus > 0 and p.up:
                self._offer_capacity(p)

    def _awarded(self, watch: OrderWatch, lease_id: str) -> SimProvider:
        """The market leased the order to a provider: it starts the workload."""
        job, g = watch.job, watch.group
        lease = self.market.get_lease(lease_id)
        p = self.by_address[lease.provider]
        self.metrics.auctions += 1
        self._welfare(watch, p)
        learn(p, won=True, step=self.pricing.adaptive_step)
        self._release_bidders(watch, p.index)
        per_gpu = lease.price_per_hour // job.gpus_per_group
        self.metrics.price(p.model, per_gpu, self.costs.get(p.model, p.cost_per_gpu_hour))
        if not any(index == p.index for index, _ in watch.bidders):
            p.free_gpus -= job.gpus_per_group  # an older bid of its won: it holds the GPUs now
            self._refresh(p)
        if job.done:
            return p
        job.leases[g] = lease_id
        job.providers[g] = p.index
        p.leases[lease_id] = (job, g)
        if not p.up:
            if p.index in self.silent:  # known dead already: it can never start the lease
                self.market.close_lease(p.address, lease_id, "provider lost (simulated)")
                self._lease_gone(p, lease_id)
                self._reorder(job, g)
            return p  # else it won while failing: detection closes the lease and re-orders
        self.market.report_status(p.address, lease_id, running=True)
        p.running[lease_id] = (job.gpus_per_group, self.now())
        self.metrics.busy_gpus.add(self.now(), job.gpus_per_group)
        if job.lost_at[g] >= 0:
            self.metrics.failovers += 1
            self.metrics.failover_ms.append(self.now() - job.lost_at[g])
            job.lost_at[g] = -1
        self._group_up(job, g)
        return p

    def _welfare(self, watch: OrderWatch, winner: SimProvider) -> None:
        """Welfare of this award (tenant's value − winner's true cost) vs the cheapest bidder."""
        job = watch.job
        value = job.max_price_per_hour
        g = job.gpus_per_group
        costs = [self.providers[i].cost_per_gpu_hour * g for i, _ in watch.bidders]
        winner_cost = winner.cost_per_gpu_hour * g
        w = self.metrics.welfare
        w.orders += 1
        w.mechanism += value - winner_cost
        w.best_bidder += value - min(costs, default=winner_cost)

    def _round_optimum(self, awarded: list[tuple[OrderWatch, SimProvider]]) -> None:
        """Offline, on a sampled round: the cost-minimising assignment of the round's orders to
        every provider that could have hosted them (one order each), against what the market did.
        An order's n cheapest candidates suffice when the round has n orders."""
        n = len(awarded)
        column: dict[tuple[int, int], int] = {}
        rows: list[dict[tuple[int, int], float]] = []
        for r, (watch, winner) in enumerate(awarded):
            job = watch.job
            g = job.gpus_per_group
            group = watch.spec
            # the winner's own slot (it may have won several orders of the round), then the
            # cheapest providers with room for the group now
            found = {(winner.index, r): float(winner.cost_per_gpu_hour * g)}
            for scanned, i in enumerate(self.by_cost[job.gpu_model]):
                if len(found) > n or scanned >= SCAN_LIMIT:
                    break
                p = self.providers[i]
                if self._sees(p, job) and self._reserve(p, group, job).bid:
                    found[(i, -1)] = float(p.cost_per_gpu_hour * g)
            rows.append(found)
            for i in found:
                column.setdefault(i, len(column))
        matrix = [[math.inf] * len(column) for _ in rows]
        for r, found in enumerate(rows):
            for i, c in found.items():
                matrix[r][column[i]] = c
        optimum, _ = min_cost_assignment(matrix)
        values = sum(watch.job.max_price_per_hour for watch, _ in awarded)
        used = sum(winner.cost_per_gpu_hour * watch.job.gpus_per_group for watch, winner in awarded)
        w = self.metrics.welfare
        w.sampled_orders += n
        w.sampled_mechanism += values - used
        w.sampled_optimum += values - optimum

    # ---- jobs running ------------------------------------------------------------------------
    def _group_up(self, job: Job, g: int) -> None:
        now = self.now()
        if job.kind == "inference":
            job.replica_since[g] = now
            if job.first_start_ms < 0:
                job.first_start_ms = now
                self.metrics.wait_ms.append(now - job.arrival_ms)
                job.end_ms = now + job.duration_ms
                self.after(job.duration_ms, self._inference_done, job)
            return
        if all(i >= 0 and self.providers[i].up for i in job.providers) and all(job.leases):
            self._start_training(job)

    def _start_training(self, job: Job) -> None:
        now = self.now()
        if job.first_start_ms < 0:
            job.first_start_ms = now
            self.metrics.wait_ms.append(now - job.arrival_ms)
        links = [self.providers[i].link for i in job.providers]
        sync_s = sync_seconds(
            links, job.gradient_bytes, self.scenario.providers.cross_region_factor
        )
        job.utilization = utilization(job.sync_interval_ms / 1000, sync_s)
        job.running_since_ms = now
        job.waiting_since_ms = -1
        job.epoch += 1
        remaining_wall = max(job.compute_ms - job.progress_ms, 0) / job.utilization
        self._top_up(job, remaining_wall)
        self.after(remaining_wall, self._training_done, job, job.epoch)

    def _top_up(self, job: Job, wall_ms: float) -> None:
        """Keep the escrow ahead of what the running leases will owe (a tenant watching it)."""
        dep = self.market.state.deployments.get(job.deployment_id)
        if dep is None or dep.state != "active":
            return
        price = job.max_price_per_hour * job.groups
        needed = math.ceil(price * (wall_ms * 1.2 / MS_PER_HOUR + 1))
        available = self.market.escrow_available(job.deployment_id)
        if available < needed:
            self.market.deposit(job.tenant, job.deployment_id, needed - available)
            self.metrics.escrow_top_ups += 1

    def _group_down(self, job: Job, g: int) -> None:
        """A member of the job failed (its provider died): the job stops now."""
        if job.done:
            return
        now = self.now()
        job.lost_at[g] = now
        if job.kind == "inference":
            if job.replica_since[g] >= 0:
                job.up_ms += now - job.replica_since[g]
                job.replica_since[g] = -1
            return
        if job.running_since_ms >= 0:
            # work since the last synchronisation is lost (a synchronous job fails together)
            done = (now - job.running_since_ms) * job.utilization
            kept = (done // job.sync_interval_ms) * job.sync_interval_ms
            job.progress_ms = min(job.compute_ms, job.progress_ms + kept)
            job.running_since_ms = -1
            job.epoch += 1
            job.interruptions += 1
            self.metrics.job_interruptions += 1
            self.metrics.training_utilization.append(job.utilization)
            job.waiting_since_ms = now
            self._top_up(
                job, job.patience_ms + (job.compute_ms - job.progress_ms) / job.utilization
            )
            self.after(job.patience_ms, self._patience, job, now)

    def _reorder(self, job: Job, g: int) -> None:
        """The market re-ordered a lost group: bid on the new order."""
        dep = self.market.state.deployments.get(job.deployment_id)
        if dep is None:
            return
        order_id = dep.group_orders[g]
        if order_id == job.orders[g] or order_id in self.watch:
            return
        order = self.market.state.orders.get(order_id)
        if order is None or order.state != OrderState.OPEN:
            return
        job.orders[g] = order_id
        self._solicit(job, g, order_id)

    def _training_done(self, job: Job, epoch: int) -> None:
        if job.done or epoch != job.epoch:
            return
        job.progress_ms = job.compute_ms
        self.metrics.training_utilization.append(job.utilization)
        if job.deployment_id not in self.market.state.deployments:
            self._end_job(job, "escrow_ran_dry")
            return
        for g, lease_id in enumerate(job.leases):
            p = self.providers[job.providers[g]]
            self.market.report_status(p.address, lease_id, running=False, exited=True)
            self._lease_gone(p, lease_id)
        self._end_job(job, "completed")

    def _inference_done(self, job: Job) -> None:
        if job.done:
            return
        now = self.now()
        for _g, since in enumerate(job.replica_since):
            if since >= 0:
                job.up_ms += now - since
        availability = job.up_ms / (job.groups * job.duration_ms)
        self.metrics.availability.append(availability)
        self.metrics.sla_checked += 1
        if availability < job.uptime_target:
            self.metrics.sla_violations += 1
        self._end_job(job, "completed")

    def _end_job(self, job: Job, outcome: str) -> None:
        """The tenant closes the deployment (refund of the escrow's rest) and stops waiting."""
        job.done = True
        job.outcome = outcome
        self.active.pop(job.id, None)
        self.ended += 1
        self.metrics.outcome(outcome)
        dep = self.market.state.deployments.get(job.deployment_id)
        if dep is not None and dep.state != "closed":
            with contextlib.suppress(MarketError):
                self.market.close_deployment(job.tenant, job.deployment_id)
        for order_id in job.orders:
            self.waiting[job.gpu_model].pop(order_id, None)
        freed = []
        for order_id in job.orders:
            watch = self.watch.pop(order_id, None)
            if watch is not None:
                freed.extend(self.providers[i] for i, _ in watch.bidders)
                self._release_bidders(watch, None, offer=False)
        for g, lease_id in enumerate(job.leases):
            if lease_id and job.providers[g] >= 0:
                p = self.providers[job.providers[g]]
                if p.up:
                    self._lease_gone(p, lease_id)
                    freed.append(p)
        for p in freed:
            if p.up and p.free_gpus > 0:
                self._offer_capacity(p)
        self._wake_market()

    # ---- the end -----------------------------------------------------------------------------
    def _finish(self) -> None:
        now = self.now()
        for job in self.active.values():
            if job.kind == "training" and job.running_since_ms >= 0:
                self.metrics.training_utilization.append(job.utilization)
            self.metrics.outcome("running" if job.first_start_ms >= 0 else "waiting")
        for p in self.providers:
            for gpus, since in p.running.values():
                p.busy_gpu_ms += gpus * (now - since)
        self.market.settle_all()
        for p in self.providers:
            p.revenue = self.market.get_account(p.address).balance
        self.end_ms = now


def run_scenario(
    scenario: Scenario, seed: int | None = None, progress: Callable[[float], None] | None = None
) -> Simulation:
    """Build and run one simulation; raises ScenarioError for unusable settings."""
    try:
        sim = Simulation(scenario, seed)
    except MarketError as exc:
        raise ScenarioError(f"the market refused the scenario: {exc}") from exc
    sim.run(progress)
    return sim
