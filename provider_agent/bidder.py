"""The bid engine, shaped like Akash's (bidengine/order.go): one task per open order.

  decide   marketplace/core/bidding.py: the bid window, the tenant lists and lease limit, the
           placement attributes, and what to reserve (concrete GPUs, CPU, memory, storage);
  reserve  hold those resources, so no other order is offered them while this one is priced;
  price    the configured core `Pricing` (a price scale, or the operator's script), in a thread;
  check    the price against the order's maximum (bidding.with_price);
  bid      or decline with the reason;
  wait     for the outcome: won (the reservation becomes the lease's), lost, closed, or no word
           before the bid window has passed (plus grace), and never longer than max_hold.

What one order or tenant may hold is bounded (config `[policy]`, HoldLimits), so an idle order
is no free denial of service: an order whose bid window outlasts max_hold is declined; a bid
with no outcome after max_hold is withdrawn and its reservation released; a tenant holds at
most max_bids_per_tenant pending bids; and a shape (the group's resources) whose lease failed
to start here is not bid on for a cooldown that doubles with each failure in a row (up to an
hour) and ends with the next lease of that shape that starts.

Every exit goes through one cleanup: unless the lease was won, the reservation is released, and
a bid still open when the agent shuts down, or left without an outcome, is withdrawn.

An order declined for want of room (it would be bid on with nothing of this provider held;
not a manual one, not one the hold limits refused) stays open at the market, taking bids after
its window too. The bidder keeps the newest
MAX_WAITING of them until they close, and when room comes free (a lease ends, a bid is lost or
expires) looks at them again, oldest first, without a second decline; Akash's bid engine sees
an order once, so capacity freed later sat idle beside orders it could serve. `gpumarket provider quote` runs the same
path up to the bid (`Quoter.quote`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from marketplace.core import spot
from marketplace.core.bidding import BidDecision, BidPolicy, decide, with_price
from marketplace.core.clock import Clock
from marketplace.core.errors import MarketError, Unavailable
from marketplace.core.gang import declared_link, link_shortfall
from marketplace.core.matching import Allocation, Capacity
from marketplace.core.money import format_amount
from marketplace.core.pricing import Pricing, PricingError
from marketplace.core.resources import GroupSpec, Tier
from marketplace.core.spot import SpotHolding
from marketplace.core.state import Bid, Lease, Offer, Order
from provider_agent.backoff import Backoff
from provider_agent.config import AgentConfig, HoldLimits
from provider_agent.inventory import (
    Inventory,
    Reservations,
    needs_refusal,
    provider_features,
    storage_refusal,
)
from provider_agent.metrics import AgentCounters
from provider_agent.pricing_script import ScriptPricing

log = logging.getLogger(__name__)
ORDER_GRACE_MS = 60_000  # keep a bid's reservation this long past the window before giving up
NO_PRICES = "no prices configured: set [pricing.scale] in the config"
MAX_COOLDOWN_MS = 3_600_000
MAX_WAITING = 256  # orders declined for want of room, looked at again when room frees


def pricing_from_config(cfg: AgentConfig) -> Pricing | None:
    """The configured strategy, or None when it has no prices to bid with."""
    if cfg.pricing.strategy == "script":
        return ScriptPricing(cfg.pricing.script_command, cfg.pricing.script_timeout_s)
    return cfg.pricing.scale


@dataclass(frozen=True)
class Quoter:
    """What this provider would bid on a group: decide → reserve → price → check."""

    policy: BidPolicy
    pricing: Pricing | None
    clock: Clock
    features: frozenset[str] = frozenset()  # the GroupSpec.needs this provider meets
    spot_percent: int = 100  # spot orders: this percent of the price, never below spot_floor
    spot_floor: int = 0  # per GPU-hour

    @classmethod
    def from_config(cls, cfg: AgentConfig, clock: Clock) -> Quoter:
        return cls(
            cfg.policy,
            pricing_from_config(cfg),
            clock,
            provider_features(cfg),
            cfg.pricing.spot_percent,
            cfg.pricing.spot_floor,
        )

    async def evaluate(
        self,
        group: GroupSpec,
        tenant: str,
        inventory: Inventory,
        reservations: Reservations,
        key: str,
        running_leases: int = 0,
        closes_at_ms: int | None = None,
        auditors: Mapping[str, Mapping[str, str]] | None = None,
        tier: Tier = Tier.ON_DEMAND,
        spot_leases: Sequence[SpotHolding] = (),
    ) -> BidDecision:
        """The decision for `group`. What it would use is held under `key` in `reservations`
        from before pricing on; releasing it is the caller's (its one cleanup path).

        An on-demand order that does not fit, but would with some of `spot_leases` pre-empted,
        is bid on naming those (core/spot.py); a spot order is priced at spot_percent of the
        price, never below the floor."""
        free = reservations.free(inventory.total, ignoring=key)  # its own hold is its to take

        def decided(capacity: Capacity) -> BidDecision:
            return self._unpriced(
                group, tenant, inventory, capacity, running_leases, closes_at_ms, auditors
            )

        decision = decided(free)
        if not decision.bid and tier == Tier.ON_DEMAND and spot_leases:
            devices = inventory.total.gpus
            if decided(spot.freed(free, devices, spot_leases)).bid:  # room, all spot gone
                found = spot.plan(group, free, devices, spot_leases)
                if found is not None:
                    decision = BidDecision(True, 0, found.allocation, preempts=found.lease_ids)
        if not decision.bid or decision.allocation is None:
            return decision
        assert self.pricing is not None  # _unpriced bids only with prices set
        reservations.hold(key, decision.allocation)
        try:
            price = await asyncio.to_thread(self.pricing.price, group, decision.allocation, tenant)
        except PricingError as exc:
            return replace(decision, bid=False, reason=str(exc))
        if tier == Tier.SPOT:
            price = spot.spot_price(price, self.spot_percent, self.spot_floor, group.total_gpus)
        priced = with_price(decision, group, price)
        if priced.bid and decision.preempts:
            names = ", ".join(decision.preempts)
            return replace(
                priced, preempts=decision.preempts, reason=f"{priced.reason}; pre-empts {names}"
            )
        return priced

    def fits_when_empty(
        self,
        group: GroupSpec,
        tenant: str,
        inventory: Inventory,
        auditors: Mapping[str, Mapping[str, str]] | None = None,
    ) -> bool:
        """Whether `group` would be bid on with none of this provider's capacity held and no
        lease running: a decline now is then for want of room, which a lease ending can make."""
        return self._unpriced(group, tenant, inventory, inventory.total, 0, None, auditors).bid

    def _unpriced(
        self,
        group: GroupSpec,
        tenant: str,
        inventory: Inventory,
        capacity: Capacity,
        running_leases: int,
        closes_at_ms: int | None,
        auditors: Mapping[str, Mapping[str, str]] | None,
    ) -> BidDecision:
        """Everything but the price: prices set, features and storage this box has, then the
        core's decision against `capacity` (what to hold, or why not)."""
        if self.pricing is None:
            return BidDecision(False, reason=NO_PRICES)
        lacking = needs_refusal(group, self.features) or storage_refusal(
            group, dict(inventory.attributes)
        )
        if lacking is not None:
            return BidDecision(False, reason=lacking)
        return decide(
            group,
            tenant,
            dict(inventory.attributes),
            capacity,
            self.policy,
            None,  # priced by the caller, once the resources are held
            self.clock.now_ms(),
            running_leases=running_leases,
            closes_at_ms=closes_at_ms,
            auditors=auditors,
        )

    def quote(self, group: GroupSpec, tenant: str, inventory: Inventory) -> BidDecision:
        """`evaluate` against the whole inventory, for a person asking (blocking)."""

        async def quoted() -> BidDecision:
            reservations = Reservations()
            try:
                return await self.evaluate(group, tenant, inventory, reservations, "quote")
            finally:
                reservations.release("quote")

        return asyncio.run(quoted())


class BidMarket(Protocol):
    """What the bidder asks of the marketplace (provider_agent/link.py's MarketLink)."""

    async def place_bid(self, order_id: str, price_per_hour: int, offer: Offer) -> Bid: ...

    async def decline(self, order_id: str, reason: str) -> None: ...

    async def withdraw_bid(self, bid_id: str) -> Bid: ...


Shape = tuple[tuple[int, int, int, int, object], ...]


def shape_of(group: GroupSpec) -> Shape:
    """What a group asks of a host, names and prices aside: per unit the replicas, CPU, memory,
    storage and GPU request."""
    return tuple(
        sorted(
            (u.count, u.cpu_millis, u.memory_bytes, sum(v.size_bytes for v in u.storage), u.gpu)
            for u in group.resources
        )
    )


@dataclass
class _Cooldown:
    failures: int
    until_ms: int
    why: str


class ShapeCooldowns:
    """Shapes whose last lease failed to start here, and until when they are not bid on."""

    def __init__(self, clock: Clock, initial_ms: int, maximum_ms: int = MAX_COOLDOWN_MS) -> None:
        self.clock = clock
        self.initial_ms, self.maximum_ms = initial_ms, maximum_ms
        self._shapes: dict[Shape, _Cooldown] = {}

    def failed(self, group: GroupSpec, why: str) -> int:
        """A lease of this shape failed to start: the cooldown (ms) it now has."""
        shape = shape_of(group)
        failures = self._shapes[shape].failures + 1 if shape in self._shapes else 1
        wait = min(self.initial_ms << min(failures - 1, 30), self.maximum_ms)
        self._shapes[shape] = _Cooldown(failures, self.clock.now_ms() + wait, why)
        return wait

    def started(self, group: GroupSpec) -> None:
        self._shapes.pop(shape_of(group), None)

    def __len__(self) -> int:
        """How many shapes have failed starts on record."""
        return len(self._shapes)

    def refusal(self, group: GroupSpec) -> str | None:
        """Why not to bid on `group` now, or None."""
        cooldown = self._shapes.get(shape_of(group))
        left = (cooldown.until_ms - self.clock.now_ms()) if cooldown else 0
        if cooldown is None or left <= 0:
            return None
        return (
            f"a lease of this shape failed to start here ({cooldown.why}); "
            f"not bidding on it for {left // 1000 + 1} s more"
        )


class Outcome(enum.Enum):
    WON = "won"  # the reservation is the lease's now
    LOST = "lost"
    CLOSED = "closed"  # the order stopped taking bids
    SHUTDOWN = "shutdown"  # the agent is stopping


@dataclass
class _OpenOrder:
    order: Order
    task: asyncio.Task[None] | None = None
    outcome: Outcome | None = None
    bid_id: str = ""  # set once the marketplace has the bid
    expired: bool = False  # no outcome arrived in time
    revisit: bool = False  # declined before for want of room: looked at again, not declined twice
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = reservation_key(self.order)


def reservation_key(order: Order) -> str:
    """Where an order's room is held: its own, or its gang's one reservation for every node
    (the market awards a provider at most one node of a gang, so one node's room serves all
    the bids on its nodes)."""
    return f"gang:{order.deployment_id}" if order.gang is not None else f"order:{order.id}"


def lease_allocation(lease: Lease) -> Allocation | None:
    """What the market says a lease holds of this provider (its allocation at the award), or
    None when it says nothing (an older market)."""
    if not (lease.gpu_uuids or lease.cpu_millis or lease.memory_bytes or lease.storage_bytes):
        return None
    return Allocation(
        gpu_uuids=lease.gpu_uuids,
        cpu_millis=lease.cpu_millis,
        memory_bytes=lease.memory_bytes,
        storage_bytes=lease.storage_bytes,
        gpu_models=lease.gpu_models,
    )


class Bidder:
    """One task per open order; outcomes arrive from the order feed (`won`, `lost`, `closed`)."""

    def __init__(
        self,
        quoter: Quoter,
        market: BidMarket,
        reservations: Reservations,
        inventory: Callable[[], Inventory],
        running_leases: Callable[[], int],
        counters: AgentCounters,
        say: Callable[[str], None],
        limits: HoldLimits | None = None,
        auditors: Callable[[], Mapping[str, Mapping[str, str]]] | None = None,
    ) -> None:
        self.quoter = quoter
        self.auditors = auditors or dict  # the market's signedBy view of this provider
        self.limits = limits or HoldLimits()
        self.cooldowns = ShapeCooldowns(quoter.clock, self.limits.failed_start_cooldown_ms)
        self.market = market
        self.reservations = reservations
        self.inventory = inventory  # the latest reading (GPU health changes)
        self.running_leases = running_leases
        self.counters = counters
        self.say = say
        self.draining = False
        self._withdraw_on_stop = True
        self._orders: dict[str, _OpenOrder] = {}
        self._spot_since: dict[str, int] = {}  # this provider's spot leases: when each was won
        self._preempts: dict[str, tuple[str, ...]] = {}  # order id → the leases its bid names
        self._waiting: OrderedDict[str, Order] = OrderedDict()  # declined for want of room

    def open_orders(self) -> list[str]:
        """Orders being decided, priced, bid on or awaiting their outcome."""
        return list(self._orders)

    # --- the order feed ---------------------------------------------------------------------
    def open(self, order: Order, revisit: bool = False) -> None:
        if self.draining or order.id in self._orders:
            return  # a replayed event, or the agent is stopping
        entry = _OpenOrder(order, revisit=revisit)
        self._orders[order.id] = entry
        entry.task = asyncio.create_task(self._run(entry), name=f"order-{order.id}")

    def won(self, lease: Lease) -> tuple[str, ...]:
        """The lease is ours: its reservation (its gang's, for a gang's node) moves to it. Won
        by a bid before a restart, it holds what the market says it holds, from now on (not
        once its manifest is fetched: the room must not be bid away in between). Returns the
        spot leases its bid named to pre-empt (they stop before it starts)."""
        self.counters.add("bids_won")
        self._waiting.pop(lease.order_id, None)  # (declined after a restart, won by a bid before)
        entry = self._orders.get(lease.order_id)
        key = entry.key if entry is not None else f"order:{lease.order_id}"
        self.reservations.move(key, f"lease:{lease.id}")
        self.hold_lease(lease)
        if entry is not None and entry.order.tier == Tier.SPOT:
            self.note_spot(lease.id, lease.created_at_ms or self.quoter.clock.now_ms())
        self.note_tier(lease)  # won after a restart: the order is not among ours, the lease says
        self._end(lease.order_id, Outcome.WON)
        return self._preempts.pop(lease.order_id, ())

    def hold_lease(self, lease: Lease) -> None:
        """Hold what `lease` holds at the market, unless its room is held already."""
        held = lease_allocation(lease)
        if held is not None and self.reservations.held(f"lease:{lease.id}") is None:
            self.reservations.hold(f"lease:{lease.id}", held)

    def note_tier(self, lease: Lease) -> None:
        """Know a spot lease of ours as one, from the lease the market sent (its tier), e.g.
        a re-adopted lease's, replayed after a restart."""
        if lease.tier == Tier.SPOT:
            self.note_spot(lease.id, lease.created_at_ms or self.quoter.clock.now_ms())

    def note_spot(self, lease_id: str, since_ms: int) -> None:
        """A spot lease of ours, created at `since_ms` (the market's award time: the newest is
        pre-empted first, by the market's plan and ours alike, core/spot.py)."""
        self._spot_since.setdefault(lease_id, since_ms)

    def lease_ended(self, lease_id: str) -> None:
        """A lease of ours closed: it is no longer a spot lease to pre-empt."""
        self._spot_since.pop(lease_id, None)

    def spot_holdings(self) -> list[SpotHolding]:
        """What this provider's running spot leases hold (pre-emptible for on-demand orders)."""
        holdings = []
        for lease_id, since in self._spot_since.items():
            held = self.reservations.held(f"lease:{lease_id}")
            if held is not None:
                holdings.append(SpotHolding.of(lease_id, held, since))
        return holdings

    def lost(self, order_id: str) -> None:
        self.counters.add("bids_lost")
        self._end(order_id, Outcome.LOST)

    def closed(self, order_id: str) -> None:
        self._waiting.pop(order_id, None)
        self._end(order_id, Outcome.CLOSED)

    def waiting_orders(self) -> list[str]:
        """Orders declined for want of room, oldest first (looked at again when room frees)."""
        return list(self._waiting)

    def capacity_freed(self) -> None:
        """Room came free: the orders waiting for it are looked at again, oldest first (each
        task holds what it takes before the next one is priced)."""
        if self.draining:
            return
        waiting, self._waiting = self._waiting, OrderedDict()
        for order in waiting.values():
            self.open(order, revisit=True)

    def _wait_for_room(self, entry: _OpenOrder) -> None:
        """Keep a declined order to look at again if room is all it lacked. Not a manual one:
        it waits for its tenant, and bidding on it again would only hold room again."""
        order = entry.order
        if order.auction.manual or not self.quoter.fits_when_empty(
            order.group, order.owner, self.inventory(), self.auditors()
        ):
            return
        self._waiting[order.id] = order
        while len(self._waiting) > MAX_WAITING:
            self._waiting.popitem(last=False)

    async def stop(self, withdraw: bool) -> None:
        """Bid no more; end every order's task (withdrawing open bids if `withdraw`)."""
        self.draining = True
        self._withdraw_on_stop = withdraw
        tasks = [e.task for e in self._orders.values() if e.task is not None]
        for order_id in list(self._orders):
            self._end(order_id, Outcome.SHUTDOWN)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _end(self, order_id: str, outcome: Outcome) -> None:
        entry = self._orders.get(order_id)
        if entry is None or entry.outcome is not None:
            return
        entry.outcome = outcome
        if entry.task is not None:
            entry.task.cancel()

    # --- one order --------------------------------------------------------------------------
    def start_failed(self, group: GroupSpec, why: str) -> None:
        """A lease of `group` could not start here: cool down on its shape."""
        wait = self.cooldowns.failed(group, why)
        self.say(f"not bidding on this shape for {wait // 1000} s: a lease of it failed to start")

    def started(self, group: GroupSpec) -> None:
        self.cooldowns.started(group)

    def _refusal(self, entry: _OpenOrder) -> str | None:
        """Why this provider will not hold anything for the order, or None."""
        order = entry.order
        cooling = self.cooldowns.refusal(order.group)
        if cooling:
            return cooling
        hold = self.limits.max_hold_ms
        window = order.closes_at_ms - self.quoter.clock.now_ms() if order.closes_at_ms else 0
        if window > hold:
            return (
                f"the bid window ends in {window // 1000} s, later than this provider holds "
                f"capacity for a bid ({hold // 1000} s)"
            )
        short = link_shortfall(declared_link(dict(self.inventory().attributes)), order.gang)
        if short:  # the [network] link this provider declares is too slow for the gang
            return f"this provider {short}"
        most = self.limits.max_bids_per_tenant
        # a gang's bids share one reservation: they count once
        held = len(
            {e.key for e in self._orders.values() if e.order.owner == order.owner} - {entry.key}
        )
        if most and held >= most:
            return f"this provider already holds {held} pending bids for tenant {order.owner}"
        return None

    async def _decline(self, entry: _OpenOrder, reason: str, maybe_room: bool = True) -> None:
        """Say why (once per order: a second look that finds no room says nothing). An order
        turned down before it was priced may be waiting for room; one turned down by its price
        is not (and its own reservation's release must not bring it back)."""
        if maybe_room:
            self._wait_for_room(entry)
        if entry.revisit:
            return
        self.counters.add("orders_declined")
        self.say(f"decline {entry.order.id}: {reason}")
        await self.market.decline(entry.order.id, reason)

    async def _run(self, entry: _OpenOrder) -> None:
        order = entry.order
        closes = order.closes_at_ms or None
        if entry.revisit and closes is not None and closes <= self.quoter.clock.now_ms():
            closes = None  # past its window the order still takes bids, awarded at once
        try:
            refused = self._refusal(entry)
            if refused:  # the hold limits' refusals are final: room does not change them
                await self._decline(entry, refused, maybe_room=False)
                return
            decision = await self.quoter.evaluate(
                order.group,
                order.owner,
                self.inventory(),
                self.reservations,
                entry.key,
                running_leases=self.running_leases(),
                closes_at_ms=closes,
                auditors=self.auditors(),
                tier=order.tier,
                spot_leases=self.spot_holdings(),
            )
            if not decision.bid:
                await self._decline(entry, decision.reason, decision.allocation is None)
                return
            bid = await self._place(order.id, decision, closes)
            entry.bid_id = bid.id
            if decision.preempts:
                self._preempts[order.id] = decision.preempts
            self.counters.add("bids_placed")
            price = format_amount(decision.price_per_hour, order.group.denom)
            self.say(f"bid {price}/h on {order.id} ({decision.reason})")
            await self._await_outcome(None if order.auction.manual else closes)
            entry.expired = True
        except MarketError as exc:
            self.say(f"bid on {order.id} not placed: {exc}")
        finally:
            await self._clean_up(entry)

    async def _place(self, order_id: str, decision: BidDecision, closes_at_ms: int | None) -> Bid:
        """Place the bid, retrying while the marketplace is briefly away (e.g. restarting).

        The order was already read off the stream, so a reconnect will not offer it again:
        giving up on the first Unavailable would lose it. Retry until its window (plus grace)
        has passed; any other error is final at once."""
        backoff = Backoff(maximum=5.0)
        deadline_ms = (closes_at_ms or self.quoter.clock.now_ms()) + ORDER_GRACE_MS
        offer = offer_for(decision, self.inventory())
        while True:
            try:
                return await self.market.place_bid(order_id, decision.price_per_hour, offer)
            except Unavailable as exc:
                late = self.quoter.clock.now_ms() + backoff.current * 1000 > deadline_ms
                if self.draining or late:
                    raise
                if backoff.current == backoff.initial:
                    self.say(f"bid on {order_id}: marketplace away ({exc}); retrying")
                await asyncio.sleep(backoff.next())

    async def _await_outcome(self, closes_at_ms: int | None) -> None:
        """Sleep until the window has passed (plus grace), at most max_hold; with no window (a
        manual order, which the tenant may accept after it) max_hold. An outcome cancels it."""
        wait_ms = self.limits.max_hold_ms
        if closes_at_ms is not None:
            left_ms = closes_at_ms - self.quoter.clock.now_ms() + ORDER_GRACE_MS
            wait_ms = min(max(left_ms, 0), wait_ms)
        await asyncio.sleep(wait_ms / 1000)

    async def _clean_up(self, entry: _OpenOrder) -> None:
        """The one exit: keep a won reservation; else release it, and withdraw a bid still open
        when the agent stops."""
        order_id = entry.order.id
        if self._orders.get(order_id) is entry:
            del self._orders[order_id]
        if entry.outcome is Outcome.WON:
            return
        self._preempts.pop(order_id, None)
        # a gang's room stays held while a bid on another of its nodes awaits its outcome
        shared = any(e.key == entry.key for e in self._orders.values())
        stopping = entry.outcome is Outcome.SHUTDOWN and self._withdraw_on_stop
        if entry.bid_id and (stopping or entry.expired):
            # an expired bid could still win later, for capacity no longer held for it
            with contextlib.suppress(MarketError):
                await self.market.withdraw_bid(entry.bid_id)
                self.say(f"withdrew bid on {order_id}")
        released = not shared and self.reservations.release(entry.key)
        if released:
            self.capacity_freed()
        if released and entry.outcome is Outcome.LOST:
            self.say(f"bid on {order_id} lost; reservation released")
        elif released and entry.expired:
            self.say(f"bid on {order_id} expired without an outcome; reservation released")


def offer_for(decision: BidDecision, inv: Inventory) -> Offer:
    """What the bid says it will run on: the reserved GPUs, their models, the driver and region."""
    a = decision.allocation
    uuids = list(a.gpu_uuids) if a else []
    variants = [v for v in (a.unit_variants if a else ()) if v is not None]
    by_uuid = {g.reading.info.uuid: g.variant for g in inv.gpus}
    models = [f"{v.model}-{v.ram_gib}gb-{v.interface}" for u in uuids if (v := by_uuid.get(u))]
    if not models:
        models = [f"{v.model}-{v.ram_gib}gb-{v.interface}" for v in variants]
    return Offer(
        gpu_models=tuple(models),
        gpu_uuids=tuple(uuids),
        driver_version=inv.host.driver_version or "",
        cuda_version=inv.host.cuda_version or "",
        price_per_gpu_hour=decision.price_per_hour // len(uuids) if uuids else 0,
        region=dict(inv.attributes).get("region", ""),
        preempts=decision.preempts,
    )
