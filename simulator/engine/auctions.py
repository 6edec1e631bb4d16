"""The auctions: each new order draws providers that can host its group, they bid or decline with
the provider agent's own rule (marketplace.core.bidding), the market's tick closes the bid
windows, and each award becomes a lease the job's group starts on. Orders left without a bid
wait for providers with freed GPUs. On sampled rounds the award is compared with the offline
optimum (welfare)."""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from marketplace.core import spot
from marketplace.core.bidding import BidDecision, BidPolicy, decide, with_price
from marketplace.core.errors import FailedPrecondition, Ineligible, MarketError, NotFound
from marketplace.core.resources import GroupSpec
from marketplace.core.state import CloseReason, LeaseState, Offer, OrderState
from simulator.assignment import min_cost_assignment
from simulator.engine.world import World
from simulator.providers import Pricing, SimProvider, learn, strategy_price
from simulator.workload import Job

# The offline optimum looks at this many of the cheapest providers per order (a bound that
# only binds when nearly every cheap provider is busy).
SCAN_LIMIT = 2_000
# Gangs left without a full set of winners that are auctioned again per round of freed
# capacity (the oldest first): a bound on the bids one round can place.
GANG_RETRIES = 4
# ... and how far into the pool of providers with free GPUs the first look for room goes
GANG_SCAN = 512


@dataclass(slots=True)
class OrderWatch:
    job: Job
    group: int
    spec: GroupSpec  # the order's group
    bidders: list[tuple[int, int]] = field(default_factory=list)  # (provider index, price)


class Auctions:
    """The orders the tenants wait on, the providers' bids on them, and the awards."""

    # An award starts the job's group on its lease: Jobs.group_up, wired by the Simulation
    # (the jobs process needs this one to withdraw a finished job's orders).
    start_group: Callable[[Job, int], None]
    # A pre-empted spot lease stops its job's group: Jobs.group_down, wired likewise.
    stop_group: Callable[[Job, int], None]

    def __init__(self, world: World) -> None:
        self.market = world.market
        self.metrics = world.metrics
        self.providers = world.providers
        self.rng = world.streams["auctions"]
        self.pools = world.pools
        self.costs = world.costs
        self.silent = world.silent
        self.after = world.after
        self.now = world.now
        self.refresh = world.refresh
        self.release = world.release
        self.lease_gone = world.lease_gone
        self.group_specs = world.group_specs
        scenario = world.scenario
        m = scenario.market
        self.bidders_per_order = m.bidders_per_order
        self.efficiency_sample_every = m.efficiency_sample_every
        self.pricing = Pricing(
            payment=m.payment,
            bidders=m.bidders_per_order,
            spread=scenario.providers.cost_spread,
            adaptive_step=scenario.providers.adaptive_step,
        )
        # every simulated provider bids on any tenant's order, with no lease limit
        self.policy = BidPolicy()
        self.by_address = {p.address: p for p in self.providers}
        # what each provider says it offers (informational; the market prices from the bid):
        # one object per (model, region), so the market's check of an offer it has seen is an
        # identity test (limits.check_offer)
        offers: dict[tuple[str, str], Offer] = {}
        self.offers = [
            offers.setdefault(
                (p.model, p.link.region), Offer(gpu_models=(p.model,), region=p.link.region)
            )
            for p in self.providers
        ]
        # fixed for a run, read on every draw and bid
        self.link_mbps = [min(p.link.up_mbps, p.link.down_mbps) for p in self.providers]
        self.reference = [self.costs.get(p.model, p.cost_per_gpu_hour) for p in self.providers]
        # providers cheapest first, per model and overall: costs are fixed for a run
        ranked = sorted(self.providers, key=lambda p: (p.cost_per_gpu_hour, p.index))
        self.by_cost: dict[str, list[int]] = {"*": [p.index for p in ranked]}
        for p in ranked:
            self.by_cost.setdefault(p.model, []).append(p.index)
        self.watch: dict[str, OrderWatch] = {}  # orders the tenants wait on, by id
        self.due: list[tuple[int, str]] = []  # heap of (window close, order id)
        # orders left without a bid, oldest first, per GPU model. OrderedDicts, not dicts: a
        # dict's iteration walks the holes its deletions leave at the front, and every freed
        # provider reads the first few (offer_capacity), so a long queue made that O(queue)
        self.waiting: dict[str, OrderedDict[str, None]] = {
            model: OrderedDict() for model in world.pools
        }
        # gangs (multi-node training) whose auction found no full set of winners, oldest
        # first, per GPU model: the market awards a gang all or none (core/gang.py), so a gang
        # waits as a whole and is auctioned again, every node at once, when capacity frees
        self.waiting_gangs: dict[str, OrderedDict[int, Job]] = {
            model: OrderedDict() for model in world.pools
        }
        # when each waiting gang was last auctioned again: once per instant (its failed
        # bidders, released, free capacity at that instant again)
        self.gang_retried_ms: dict[int, int] = {}
        self.next_tick_ms = math.inf
        self.spot_percent = scenario.providers.spot_percent
        # per provider index: the spot leases it runs (pre-emptible for on-demand orders)
        self.spot_leases: dict[int, dict[str, None]] = {}

    # ---- the market's clock ------------------------------------------------------------------
    def wake_market(self) -> None:
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
        self.wake_market()

    # ---- bidding -----------------------------------------------------------------------------
    def sees(self, p: SimProvider, job: Job) -> bool:
        """A provider that is up and whose link carries the job's traffic (what the simulator
        models outside the manifest) looks at the order; the bid decision does the rest."""
        return p.up and min(p.link.up_mbps, p.link.down_mbps) >= job.min_bandwidth_mbps

    def reserve(self, p: SimProvider, group: GroupSpec, job: Job) -> BidDecision:
        """The provider agent's decision up to the price: bidding.decide with pricing=None
        (policy, placement, reservation of concrete GPUs from what p has free). Memoized per
        (group's units, group's placement, free GPUs): decide is pure and reads nothing else of
        the group, both are interned for the run (World.group_specs), and p's attributes and
        policy are fixed (the policy has no tenant lists or lease limit, so neither the tenant
        nor p's lease count can change the verdict)."""
        free = p.free_gpus if p.free_gpus > 0 else 0
        key = (id(group.resources), id(group.requirements))
        verdicts = p.decisions.get(key)
        if verdicts is None:
            verdicts = p.decisions[key] = [None] * len(p.capacities)
        decision = verdicts[free]
        if decision is None:
            decision = decide(
                group, job.tenant, p.attributes, p.capacities[free], self.policy, None, self.now()
            )
            verdicts[free] = decision
        return decision

    def can_host(self, p: SimProvider, job: Job, group: GroupSpec) -> bool:
        """p sees the order and its bid decision, short of the price, is yes."""
        key = (id(group.resources), id(group.requirements))
        return self._hostable(p, job, group, key) is not None

    def _hostable(
        self, p: SimProvider, job: Job, group: GroupSpec, key: tuple[int, int]
    ) -> BidDecision | None:
        """p's reservation (reserve) when p sees the order and it is a bid; None (and a decline
        counted) when not. `key` is the group's memo key, made once per order by the caller."""
        # sees and reserve's memo inlined: this runs for every provider drawn for an order
        if not p.up or self.link_mbps[p.index] < job.min_bandwidth_mbps:
            return None
        verdicts = p.decisions.get(key)
        decision = verdicts[p.free_gpus if p.free_gpus > 0 else 0] if verdicts else None
        if decision is None:
            decision = self.reserve(p, group, job)
        if decision.bid:
            return decision
        if not job.spot and self.spot_leases.get(p.index):
            preempting = self._preempting(p, group)
            if preempting is not None:
                return preempting
        self.metrics.declines_no_room += 1
        return None

    def _preemptors(
        self, job: Job, group: GroupSpec, drawn: set[int], most: int = 0
    ) -> list[tuple[SimProvider, BidDecision]]:
        """Providers full of spot leases are in no pool of free GPUs: an on-demand order looks
        at them too (oldest first), up to `most` (default bidders_per_order) in all, each with
        its reservation."""
        found: list[tuple[SimProvider, BidDecision]] = []
        want = (most or self.bidders_per_order) - len(drawn)
        key = (id(group.resources), id(group.requirements))
        for index, leases in self.spot_leases.items():
            if len(found) >= want:
                break
            p = self.providers[index]
            if not leases or index in drawn or job.gpu_model not in ("*", p.model):
                continue
            reserved = self._hostable(p, job, group, key)
            if reserved is not None:
                found.append((p, reserved))
        return found

    def _preempting(self, p: SimProvider, group: GroupSpec) -> BidDecision | None:
        """The agent's rule for an on-demand order p has no room for: the fewest of its spot
        leases to pre-empt (core/spot.py's plan, on the market's records of those leases)."""
        leases = self.market.state.leases
        mine = self.spot_leases[p.index]
        holdings = []
        for lease_id in list(mine):
            lease = leases.get(lease_id)
            if lease is None or lease.state == LeaseState.CLOSED:
                del mine[lease_id]
                continue
            holdings.append(
                spot.SpotHolding(
                    lease_id,
                    lease.cpu_millis,
                    lease.memory_bytes,
                    lease.storage_bytes,
                    lease.gpu_uuids,
                    lease.created_at_ms,
                )
            )
        devices = self.market.state.providers[p.address].capacity.gpus
        free = p.capacities[p.free_gpus if p.free_gpus > 0 else 0]
        found = spot.plan(group, free, devices, holdings)
        if found is None:
            return None
        return BidDecision(True, 0, found.allocation, preempts=found.lease_ids)

    def _candidates(
        self, job: Job, group: GroupSpec, want: int = 0
    ) -> list[tuple[SimProvider, BidDecision]]:
        """Up to `want` (default bidders_per_order) providers that can host a group, drawn at
        random, each with its reservation."""
        want = want or self.bidders_per_order
        pool = self.pools.get(job.gpu_model)
        if pool is None or not pool.items:
            return []
        items = pool.items
        providers = self.providers
        hostable = self._hostable
        key = (id(group.resources), id(group.requirements))
        if len(items) <= want * 2:
            eligible = []
            for i in items:
                p = providers[i]
                reserved = hostable(p, job, group, key)
                if reserved is not None:
                    eligible.append((p, reserved))
            if len(eligible) > want:
                eligible = self.rng.sample(eligible, want)
            return eligible
        chosen: dict[int, tuple[SimProvider, BidDecision]] = {}
        randrange = self.rng.randrange
        size = len(items)
        for _ in range(want * 4):
            i = items[randrange(size)]
            if i not in chosen:
                p = providers[i]
                reserved = hostable(p, job, group, key)
                if reserved is not None:
                    chosen[i] = (p, reserved)
                    if len(chosen) >= want:
                        break
        return list(chosen.values())

    def _bid(self, p: SimProvider, watch: OrderWatch, order_id: str, reserved: BidDecision) -> bool:
        """p, which can host the group (`reserved`: its reservation), prices it with its
        strategy; bidding.with_price decides whether that is still a bid (positive, within the
        order's maximum) or a decline."""
        job = watch.job
        group = watch.spec
        # a new price nearly every time (adaptive), a one-off reservation (pre-emption), or a
        # spot price (the memo is the on-demand one): nothing to reuse
        fresh = p.strategy == "adaptive" or bool(reserved.preempts) or job.spot
        # The others' prices are fixed for the run (cost, markup, reference, pricing), so their
        # price and with_price (pure) are memoized per (reservation, group's units)
        key = (id(reserved), id(group.resources))
        decision = None if fresh else p.priced.get(key)
        if decision is None:
            reference = self.reference[p.index]
            reserve = group.max_price_per_hour
            price = strategy_price(p, job.gpus_per_group, reference, self.pricing, reserve)
            if job.spot:  # the agent's spot price (no floor in the simulator)
                price = spot.spot_price(price, self.spot_percent, 0, job.gpus_per_group)
            decision = with_price(reserved, group, price)
            if not fresh:
                p.priced[key] = decision
        if not decision.bid:
            # Counted, not sent: a DeclineOrder per such decline (a market tick and a decline
            # record each) made whole runs ~10% slower, for a reason no simulated tenant reads.
            self.metrics.declines_price += 1
            return False
        self.metrics.bids += 1
        try:
            offer = self.offers[p.index]
            if reserved.preempts:
                offer = dataclasses.replace(offer, preempts=reserved.preempts)
            self.market.place_bid(p.address, order_id, decision.price_per_hour, offer)
        except Ineligible:
            self.metrics.bids_refused += 1
            return False
        except (NotFound, FailedPrecondition):
            return False  # the order closed meanwhile
        p.free_gpus -= job.gpus_per_group
        self.refresh(p)
        watch.bidders.append((p.index, decision.price_per_hour))
        return True

    def solicit(self, job: Job, g: int, order_id: str) -> None:
        """A new order: providers that see it bid; its window's close is watched."""
        watch = OrderWatch(job, g, self.group_specs(job)[g])
        self.watch[order_id] = watch
        candidates = self._candidates(job, watch.spec)
        if not job.spot and len(candidates) < self.bidders_per_order and self.spot_leases:
            candidates += self._preemptors(job, watch.spec, {p.index for p, _ in candidates})
        for p, reserved in candidates:
            self._bid(p, watch, order_id, reserved)
        self.metrics.orders_solicited += 1
        self.metrics.bids_at_open += len(watch.bidders)
        order = self.market.get_order(order_id)
        heapq.heappush(self.due, (order.closes_at_ms, order_id))

    def solicit_gang(self, job: Job, nodes: list[int]) -> None:
        """A gang's new orders (every node, opened together): their windows' closes are
        watched, and providers bid on them (_bid_gang)."""
        specs = self.group_specs(job)
        watches = []
        for g in nodes:
            watch = OrderWatch(job, g, specs[g])
            self.watch[job.orders[g]] = watch
            watches.append(watch)
        self._bid_gang(job, watches)
        self.metrics.orders_solicited += len(nodes)
        self.metrics.bids_at_open += sum(len(w.bidders) for w in watches)
        for g in nodes:
            order = self.market.get_order(job.orders[g])
            heapq.heappush(self.due, (order.closes_at_ms, order.id))

    def _bid_gang(self, job: Job, watches: list[OrderWatch]) -> None:
        """Bidders for a gang's nodes: up to bidders_per_order per node, drawn at once and
        dealt one node each in turn. The market leases a gang to distinct providers, all nodes
        or none; a provider with room for one node that bid on the first node the way it bids
        on any order (every drawn provider on every node, in node order) would leave the later
        nodes without bids whenever the market holds no more such providers than nodes."""
        spec = watches[0].spec  # the nodes ask for the same group (World.group_specs)
        want = self.bidders_per_order * len(watches)
        drawn = self._candidates(job, spec, want)
        if not job.spot and len(drawn) < want and self.spot_leases:
            drawn += self._preemptors(job, spec, {p.index for p, _ in drawn}, want)
        for k, (p, reserved) in enumerate(drawn):
            watch = watches[k % len(watches)]
            self._bid(p, watch, watch.job.orders[watch.group], reserved)

    def reorder(self, job: Job, g: int) -> None:
        """The market re-ordered a lost group: bid on the new order (a gang's: on every node
        the market ordered again, together)."""
        if job.gang:
            self._reorder_gang(job)
            return
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
        self.solicit(job, g, order_id)

    def _reorder_gang(self, job: Job) -> None:
        dep = self.market.state.deployments.get(job.deployment_id)
        if dep is None:
            return
        fresh = []
        for g, order_id in enumerate(dep.group_orders):
            if order_id == job.orders[g] or order_id in self.watch:
                continue
            order = self.market.state.orders.get(order_id)
            if order is None or order.state != OrderState.OPEN:
                continue
            job.orders[g] = order_id
            fresh.append(g)
        if fresh:
            self.solicit_gang(job, fresh)

    def offer_freed(self, indices: list[int]) -> None:
        """Providers whose GPUs came free, or that came back up, in the event just done
        (World.capacity_back): each that is up with free GPUs looks at the waiting orders,
        then the waiting gangs one of them could hold a node of are auctioned again."""
        placed = False
        freed = []
        for index in indices:
            p = self.providers[index]
            if p.up and p.free_gpus > 0:
                freed.append(p)
                placed = self.offer_capacity(p) or placed
        if freed and any(self.waiting_gangs.values()):
            placed = self._retry_gangs(freed) or placed
        if placed:
            self.wake_market()

    def _retry_gangs(self, freed: list[SimProvider]) -> bool:
        """Auction waiting gangs again, every node at once (drawn as a new order's bidders
        are), the oldest first, up to GANG_RETRIES: those a freed provider could hold a node
        of (else nothing has changed for them). Returns whether any was."""
        retried = 0
        now = self.now()
        for model in dict.fromkeys([*(p.model for p in freed), "*"]):
            queue = self.waiting_gangs[model]
            for job in list(islice(queue.values(), 16)):
                if retried >= GANG_RETRIES:
                    return True
                watches = [self.watch.get(order_id) for order_id in job.orders]
                if job.done or None in watches:
                    queue.pop(job.id, None)  # ended, or a node is being ordered again
                    self.gang_retried_ms.pop(job.id, None)
                    continue
                if any(w is not None and w.bidders for w in watches):
                    continue  # being auctioned again already
                if self.gang_retried_ms.get(job.id) == now:
                    continue
                if not any(self._could_hold(p, job) for p in freed):
                    continue
                self.gang_retried_ms[job.id] = now
                if not self._room_for_gang(job):
                    continue  # its bids would only be withdrawn
                retried += 1
                self._bid_gang(job, [w for w in watches if w is not None])
                for order_id in job.orders:
                    heapq.heappush(self.due, (now, order_id))
        return retried > 0

    def _room_for_gang(self, job: Job) -> bool:
        """At least as many providers with free GPUs as the gang has nodes could each hold one
        (the gang's nodes go to distinct providers), found within GANG_SCAN of its pool."""
        pool = self.pools.get(job.gpu_model)
        if pool is None:
            return False
        found = 0
        for i in islice(pool.items, GANG_SCAN):
            if self.providers[i].free_gpus >= job.gpus_per_group and (
                self.link_mbps[i] >= job.min_bandwidth_mbps
            ):
                found += 1
                if found >= job.groups:
                    return True
        return False

    def _could_hold(self, p: SimProvider, job: Job) -> bool:
        """A cheap first look: p's model, free GPUs and link fit one node of the job."""
        return (
            p.free_gpus >= job.gpus_per_group
            and job.gpu_model in ("*", p.model)
            and self.link_mbps[p.index] >= job.min_bandwidth_mbps
        )

    def offer_capacity(self, p: SimProvider) -> bool:
        """Freed GPUs: the provider looks at orders left without a winner, oldest first.
        Returns whether it bid on any (their awards are due now)."""
        placed = False
        for model in (p.model, "*"):
            queue = self.waiting[model]
            if not queue:
                continue  # the usual case: every order found a bidder
            for order_id in list(islice(queue, 16)):  # a copy: bids take orders out
                if p.free_gpus <= 0:
                    return placed
                watch = self.watch.get(order_id)
                if watch is None:
                    queue.pop(order_id, None)
                    continue
                spec = watch.spec
                key = (id(spec.resources), id(spec.requirements))
                reserved = self._hostable(p, watch.job, spec, key)
                if reserved is not None and self._bid(p, watch, order_id, reserved):
                    queue.pop(order_id, None)
                    heapq.heappush(self.due, (self.now(), order_id))
                    placed = True
        return placed

    def withdraw(self, job: Job) -> None:
        """A job ended: its orders stop waiting and their bidders are released."""
        self.waiting_gangs[job.gpu_model].pop(job.id, None)
        self.gang_retried_ms.pop(job.id, None)
        for order_id in job.orders:
            self.waiting[job.gpu_model].pop(order_id, None)
        for order_id in job.orders:
            watch = self.watch.pop(order_id, None)
            if watch is not None:
                self._release_bidders(watch, None)

    def closed_by_market(self, job: Job, lost: tuple[int, ...] = ()) -> None:
        """Groups `lost` (their leases gone already), and leases of the job the market closed
        on its own, as a gang's rule closes the other nodes of one that was lost or pre-empted
        (gang_stopped, core/gang.py): their GPUs are free first, then the groups the market
        ordered again are bid on."""
        again = list(lost)
        leases = self.market.state.leases
        for g, lease_id in enumerate(job.leases):
            if not lease_id or job.providers[g] < 0:
                continue
            lease = leases.get(lease_id)
            if lease is not None and lease.state != LeaseState.CLOSED:
                continue
            self.lease_gone(self.providers[job.providers[g]], lease_id)
            again.append(g)
        if not job.done:
            for g in again:
                self.reorder(job, g)  # a gang's: every node at the first

    # ---- awards ------------------------------------------------------------------------------
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
                job = watch.job
                if job.gang:  # no full set of winners: the gang waits as a whole
                    self.waiting_gangs[job.gpu_model].setdefault(job.id, job)
                else:
                    self.waiting[job.gpu_model][order_id] = None
                continue
            self.watch.pop(order_id, None)
            if not order.lease_id:
                self._release_bidders(watch, None)
                continue
            if watch.job.gang:
                self.waiting_gangs[watch.job.gpu_model].pop(watch.job.id, None)
                self.gang_retried_ms.pop(watch.job.id, None)
            awarded.append((watch, self._awarded(watch, order.lease_id)))
        if awarded:
            self.metrics.auction_rounds += 1
            every = self.efficiency_sample_every
            if every > 0 and self.metrics.auction_rounds % every == 0:
                self._round_optimum(awarded)

    def _release_bidders(self, watch: OrderWatch, winner: int | None, withdraw: str = "") -> None:
        """Losers (or everyone, with no winner) unreserve (World.release: after this event they
        look at the waiting orders); with `withdraw` (an order that stays open) they also
        withdraw their bids, as Akash's bid engine does on a bid timeout."""
        g = watch.job.gpus_per_group
        for index, _price in watch.bidders:
            if index == winner:
                continue
            p = self.providers[index]
            if withdraw:
                with contextlib.suppress(MarketError):  # not open any more
                    self.market.withdraw_bid(p.address, f"{withdraw}/{p.address}")
            self.release(p, g)
            if winner is not None:
                learn(p, won=False, step=self.pricing.adaptive_step)

    def _awarded(self, watch: OrderWatch, lease_id: str) -> SimProvider:
        """The market leased the order to a provider: it starts the workload."""
        job, g = watch.job, watch.group
        lease = self.market.get_lease(lease_id)
        p = self.by_address[lease.provider]
        self._preempted(p, lease_id)
        self.metrics.auctions += 1
        self._welfare(watch, p)
        learn(p, won=True, step=self.pricing.adaptive_step)
        self._release_bidders(watch, p.index)
        per_gpu = lease.price_per_hour // job.gpus_per_group
        self.metrics.price(p.model, per_gpu, self.costs.get(p.model, p.cost_per_gpu_hour))
        if not any(index == p.index for index, _ in watch.bidders):
            p.free_gpus -= job.gpus_per_group  # an older bid of its won: it holds the GPUs now
            self.refresh(p)
        if job.done:
            return p
        job.leases[g] = lease_id
        job.providers[g] = p.index
        p.leases[lease_id] = (job, g)
        if job.spot:
            self.spot_leases.setdefault(p.index, {})[lease_id] = None
        if not p.up:
            if p.index in self.silent:  # known dead already: it can never start the lease
                self.market.close_lease(p.address, lease_id, "provider lost (simulated)")
                self.lease_gone(p, lease_id)
                self.closed_by_market(job, (g,))  # a gang's other nodes stop with it
            return p  # else it won while failing: detection closes the lease and re-orders
        if lease.state == LeaseState.CLOSED:  # a gang's node, stopped with another already
            self.closed_by_market(job)
            return p
        self.market.report_status(p.address, lease_id, running=True)
        p.running[lease_id] = (job.gpus_per_group, self.now())
        self.metrics.busy_gpus.add(self.now(), job.gpus_per_group)
        if job.lost_at[g] >= 0:
            self.metrics.failovers += 1
            self.metrics.failover_ms.append(self.now() - job.lost_at[g])
            job.lost_at[g] = -1
        self.start_group(job, g)
        return p

    def _preempted(self, p: SimProvider, lease_id: str) -> None:
        """The winning bid named spot leases of p, which the market closed `preempted`: their
        jobs' groups stop (work since the last sync is lost) and are ordered again."""
        bid = self.market.state.bids.get(lease_id)
        if bid is None or not bid.offer.preempts:
            return
        leases = self.market.state.leases
        for victim in bid.offer.preempts:
            lease = leases.get(victim)
            entry = p.leases.get(victim)
            if lease is None or lease.close_reason != CloseReason.PREEMPTED or entry is None:
                continue  # closed otherwise, before the award: not pre-empted
            job, g = entry
            self.metrics.preemptions += 1
            self.spot_leases.get(p.index, {}).pop(victim, None)
            self.lease_gone(p, victim)
            self.stop_group(job, g)
            self.closed_by_market(job, (g,))  # a gang's other nodes stop with it

    # ---- welfare -----------------------------------------------------------------------------
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
                # fewer free GPUs than the group's: a no without asking (most of the cheapest
                # are busy, and at 10,000 providers the scan goes deep)
                if p.free_gpus >= g and self.sees(p, job) and self.reserve(p, group, job).bid:
                    found[(i, -1)] = float(p.cost_per_gpu_hour * g)
            rows.append(found)
            for slot in found:
                column.setdefault(slot, len(column))
        matrix = [[math.inf] * len(column) for _ in rows]
        for r, found in enumerate(rows):
            for slot, cost in found.items():
                matrix[r][column[slot]] = cost
        optimum, _ = min_cost_assignment(matrix)
        values = sum(watch.job.max_price_per_hour for watch, _ in awarded)
        used = sum(winner.cost_per_gpu_hour * watch.job.gpus_per_group for watch, winner in awarded)
        w = self.metrics.welfare
        w.sampled_orders += n
        w.sampled_mechanism += values - used
        w.sampled_optimum += values - optimum
