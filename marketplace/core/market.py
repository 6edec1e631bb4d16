"""MarketService: the market's application service. Pure, synchronous, in memory; a Clock is passed in.

This module is its command side, where every rule below is kept; the queries are in reads.py
(MarketService inherits them), the record of what changed and the event log in journal.py, the
event kinds in events.py, the settings in config.py.

Commands validate first and mutate only after every check passed, so a command that raises leaves
the state as it was, with two deliberate exceptions the server must persist too (drain after
every command, even one that raised a MarketError):
- every command first applies what is already due (it calls tick()), so the state is current to
  the clock before the command is judged;
- an ineligible bid records a Decline(by_marketplace=True) and then raises Ineligible, so the
  tenant can see why (explain_order).
Changed records are marked in the journal; drain_changes() hands them, and the new ledger
entries, events and declines, to the server, which writes them in one transaction.

Rules (see also auction.py, ledger.py, leases.py, reliability.py):
- Bid window: bids are taken from order creation until closes_at_ms (exclusive). At the close the
  eligible open bids are ranked and the best wins (auction.py). With no eligible bid the order
  stays open and keeps taking bids; a bid placed after the window closed is awarded at the next
  tick (the server ticks at next_deadline_ms(), i.e. at once), together with any other bids that
  arrived by then. Manual orders (auction.manual) are never awarded by the clock: the tenant calls
  accept_bid (any open, still-eligible bid; it is paid its own price).
- Eligible bid: order open; provider registered, online, not draining; price > 0 and ≤ the group
  maximum (every group has one, at least 1 micro-unit per hour); placement attributes match (matching.placement_mismatches);
  the group fits the provider's registered capacity minus what its pending and running leases
  hold (matching.allocate; when the offer names GPU uuids, only those); the provider's
  reliability ≥ the order's min_reliability. The same checks run again at award time; a bid that
  no longer passes is passed over (and a decline recorded).
- Billing: a lease bills from the moment its provider reports it running (pending time is free: the
  provider is paid for work, not for promises) at its price per hour, exactly
  (money.accrued on the cumulative billed time). It stops at close; for a lost provider at its
  last heartbeat; for a job at max runtime exactly at running_at + max_runtime. Settlement pays
  (owed − paid) from the escrow to the provider; closes settle; settle()/settle_all() may be
  called at any time.
- Escrow run-dry: the first millisecond at which the deployment's running leases owe more than its
  escrow holds is computed exactly (ledger.run_dry_at). At that moment the leases are paid what
  is left, closed insufficient_funds (closed_at = billed_until = that moment), and the deployment
  closes (as Akash does: no funds, no re-order).
- Liveness: a provider silent for more than heartbeat_timeout_ms (no heartbeat after
  last + timeout) goes offline: its leases close provider_lost at the detection time, billed only
  up to its last heartbeat, and each group is ordered again (oseq + 1) per the restart policy.
- Restart policy, applied when a lease closes: never → no re-order; on-failure → re-order after
  failed (exit ≠ 0, OOM), provider_lost, manifest_timeout, a close by the provider and
  preempted (a spot lease that gave way to an on-demand order: spot.py's rules);
  always → the same, plus completed (exit 0) for services and inference, but not for training
  jobs (a finished training job is done). Closes by the tenant, by deployment close, at max
  runtime and for insufficient funds never re-order.
- A deployment whose groups are all finished (no open order, no open lease) closes by itself and
  its escrow's rest is refunded to the tenant.
- Inputs: every string, list and amount a command stores is checked first against limits.py
  (InvalidArgument naming the field and the limit); no money total may pass config.mint_limit.
- Pending too long: a lease not reported running within manifest_timeout_ms closes
  manifest_timeout (re-ordered per policy).
- Reservations (a provider holds capacity for each bid it places, so an idle order must not
  hold it for free): a bid window is at most max_bid_window_ms (5 min); a manual order whose
  tenant accepted no bid closes manual_accept_ms (5 min) after its window, its bids with it
  (order_closed: providers release), and the deployment closes if nothing else is left; a
  deposit must pay every group's maximum price for min_escrow_ms (10 min, the longest such
  hold) or for max_runtime if that is shorter.
- Failed starts: a lease that closed failed or manifest_timeout before running, or failed
  within quick_failure_ms of running, is a failed start of its group; any other close ends the
  group's run of them. The first re-order after a failed start is immediate, the next ones wait
  reorder_backoff_ms, doubling up to reorder_backoff_max_ms (a pending re-order keeps the
  deployment open); after max_failed_starts in a row the group is not ordered again
  (reorders_stopped, with why). A provider whose lease never ran may not bid in the window of
  the group's next order (later bids are taken, as for any order left without a winner).

Memory holds what can still change. Once the server has stored a drain (committed()), the SDL and
signed request of deployments created in it, and every record and event of deployments closed in
it, leave memory; reads find them in the archive (archive.py). Without a journal
(retain_closed=False, the simulator) a closed deployment's records leave at once.
"""

from __future__ import annotations

import dataclasses
import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from marketplace.core import (
    auction,
    escrow,
    gang,
    leases,
    ledger,
    limits,
    matching,
    money,
    spot,
    units,
    updates,
)
from marketplace.core.archive import Archive, NullArchive
from marketplace.core.attestations import Attestation, AttestationBook, AuditorTrust
from marketplace.core.clock import Clock
from marketplace.core.config import MarketConfig as MarketConfig
from marketplace.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    Ineligible,
    InsufficientFunds,
    InvalidArgument,
    PermissionDenied,
)
from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.journal import Journal, Record
from marketplace.core.reads import MarketReads
from marketplace.core.resources import (
    GroupSpec,
    JobKind,
    JobSettings,
    Payment,
    ResourceUnit,
    RestartPolicy,
    Tier,
)
from marketplace.core.state import (
    MINT,
    Account,
    Bid,
    BidState,
    Changes,
    CloseReason,
    Decline,
    Deployment,
    DeploymentState,
    Endpoint,
    Lease,
    LeaseState,
    MarketState,
    Offer,
    Order,
    OrderState,
    ProviderRecord,
    acct_key,
    escrow_key,
)
from marketplace.core.updates import DeploymentUpdate

# Reasons after which a group is ordered again, per restart policy (see the module docstring).
_REORDER_ON_FAILURE = frozenset(
    {
        CloseReason.FAILED,
        CloseReason.PROVIDER_LOST,
        CloseReason.MANIFEST_TIMEOUT,
        CloseReason.PROVIDER,
        CloseReason.PREEMPTED,
    }
)

_WINDOW, _HEARTBEAT, _DRY, _MANIFEST, _RUNTIME = "window", "hb", "dry", "manifest", "runtime"
_REORDER = "reorder"  # key: "<deployment id>/<gseq>"
_LOW = "low"  # key: deployment id; escrow.py's escrow_low
# stale deadline entries (of records closed before their time) allowed beyond twice the live
# ones before the heap drops them all at once
STALE_DEADLINES_SLACK = 1024


@dataclass(slots=True)
class _Used:
    """What a provider's pending and running leases hold."""

    cpu_millis: int = 0
    memory_bytes: int = 0
    storage_bytes: int = 0
    gpu_uuids: set[str] = field(default_factory=set)
    # all of the above, hashable: what allocate() verdicts are cached under (MarketService._fits)
    key: tuple[int, int, int, frozenset[str]] = (0, 0, 0, frozenset())

    def changed(self) -> None:
        self.key = (
            self.cpu_millis,
            self.memory_bytes,
            self.storage_bytes,
            frozenset(self.gpu_uuids),
        )


_NOTHING_USED = _Used().key
# allocate() verdicts kept per provider (MarketService._fits): enough for the units and used
# states a provider meets between two clears, bounded for a market of 10,000 providers
_FITS_PER_PROVIDER = 64


def _untracked(record: Record) -> None:
    """touch() when nothing is journaled (MarketConfig.journal off)."""


class MarketService(MarketReads):
    """The command side; the queries are inherited from MarketReads (reads.py)."""

    def __init__(
        self,
        clock: Clock,
        config: MarketConfig | None = None,
        state: MarketState | None = None,
        archive: Archive | None = None,
    ) -> None:
        config = config or MarketConfig()
        state = state or MarketState()
        archive = archive or NullArchive()
        journal = Journal(
            state,
            track_changes=config.journal,
            record_events=config.record_events,
            provider_event_retention=config.provider_event_retention,
            archive=archive,
        )
        super().__init__(clock, config, state, journal, archive)
        # Every changed record is marked; bound once, as it runs many times per command.
        self._touch: Callable[[Record], None] = journal.touch if config.journal else _untracked
        self.ledger = ledger.Ledger(
            state,
            self._balance_of,
            self._add_to,
            on_entry=journal.entry_added if config.journal else None,
            keep=config.keep_ledger,
        )
        self._used: dict[str, _Used] = {}
        # auditors' signed provider attributes (signedBy); the server restores and stores them
        self.attestations = AttestationBook(AuditorTrust(config.auditors, config.auditor_aliases))
        # provider → {(id of the group's units tuple, offered uuids, what its leases hold):
        # (units, allocate() verdict)}; valid until its registered capacity changes (simulated
        # providers see the same few units, and the same few used states, again and again; the
        # units are shared by a job's groups). allocate() reads only group.resources. Keyed by
        # the units' identity, not their value: hashing a ResourceUnit walks all its nested
        # fields on every lookup. The entry holds the units, so no other object can take their
        # id while it is cached: an equal id means the very same units.
        self._fits: dict[
            str,
            dict[
                tuple[int, tuple[str, ...], tuple[int, int, int, frozenset[str]]],
                tuple[tuple[ResourceUnit, ...], matching.Allocation | str],
            ],
        ] = {}
        # deadlines: a heap of (at ms, push order, kind, key); _sched holds each one's live time
        self._heap: list[tuple[int, int, str, str]] = []
        self._sched: dict[tuple[str, str], int] = {}
        self._heap_seq = 0
        self._build_indexes()

    def drain_changes(self) -> Changes:
        """Records changed, and ledger entries/events/declines added, since the last drain."""
        return self.journal.drain()

    @property
    def drains(self) -> int:
        """How many drains so far: what the server passes to committed() once it stored them."""
        return self.journal.drains

    def committed(self, drain: int) -> None:
        """The server has stored every drain up to `drain`: the SDL and signed request of
        deployments created in them, every record of deployments closed in them, and their
        ledger entries leave memory (reads find them in the archive)."""
        stored = self.journal.stored(drain)
        for dep in stored.created:
            if not self.journal.awaiting_drain(dep):  # updated since: that SDL is not stored yet
                dep.sdl = dep.tenant_request = b""
        for dep_id in stored.closed:
            ended = self.state.deployments.get(dep_id)
            if ended is not None:
                self._forget(ended)
        self.journal.compact()
        kept = self.state.ledger
        if kept and kept[0].id <= stored.last_entry:
            del kept[: bisect_right(kept, stored.last_entry, key=lambda e: e.id)]

    # ==== indexes ==========================================================================
    def _build_indexes(self) -> None:
        """Fill the indexes (reads.py's and the command side's) from the records."""
        st = self.state
        for dep in st.deployments.values():
            self._owner_deps.setdefault(dep.owner, {})[dep.id] = None
        for order in st.orders.values():
            if order.state == OrderState.OPEN:
                self._open_orders[order.id] = order
                self._schedule(_WINDOW, order.id, self._window_deadline(order))
        for bid in sorted(st.bids.values(), key=lambda b: b.seq):
            self._order_bids.setdefault(bid.order_id, {})[bid.provider] = bid
        archived = [
            x for x in self.archive.closed_leases(None, None, None) if x.id not in st.leases
        ]
        for lease in sorted(st.leases.values(), key=lambda x: (x.created_at_ms, x.id)):
            if (owner := st.deployments.get(lease.deployment_id)) is not None:
                lease.tier = owner.job.tier  # the same; a lease stored before leases had one
            if lease.state != LeaseState.CLOSED:
                self._index_lease(lease)
        for lease in sorted(
            [*st.leases.values(), *archived], key=lambda x: (x.created_at_ms, x.id)
        ):
            self._record_price(lease)
        for prov in st.providers.values():
            if prov.online:
                self._schedule(_HEARTBEAT, prov.address, prov.last_heartbeat_ms + self._hb_grace())
        for dep_id in self._dep_leases:
            self._reschedule_dry(st.deployments[dep_id], loading=True)
        for dep in st.deployments.values():
            for gseq, at in enumerate(dep.reorder_at_ms, start=1):
                if at and dep.state == DeploymentState.ACTIVE:
                    self._schedule(_REORDER, f"{dep.id}/{gseq}", at)

    def _index_lease(self, lease: Lease) -> None:
        self._dep_leases.setdefault(lease.deployment_id, {})[lease.id] = lease
        self._prov_leases.setdefault(lease.provider, {})[lease.id] = lease
        used = self._used.setdefault(lease.provider, _Used())
        used.cpu_millis += lease.cpu_millis
        used.memory_bytes += lease.memory_bytes
        used.storage_bytes += lease.storage_bytes
        used.gpu_uuids.update(lease.gpu_uuids)
        used.changed()
        if lease.state == LeaseState.PENDING:
            self._schedule(
                _MANIFEST, lease.id, lease.created_at_ms + self.config.manifest_timeout_ms
            )
        else:
            self._schedule_runtime(lease)

    def _unindex_lease(self, lease: Lease) -> None:
        self._dep_leases.get(lease.deployment_id, {}).pop(lease.id, None)
        if not self._dep_leases.get(lease.deployment_id):
            self._dep_leases.pop(lease.deployment_id, None)
        self._prov_leases.get(lease.provider, {}).pop(lease.id, None)
        used = self._used.get(lease.provider)
        if used is not None:
            used.cpu_millis -= lease.cpu_millis
            used.memory_bytes -= lease.memory_bytes
            used.storage_bytes -= lease.storage_bytes
            used.gpu_uuids.difference_update(lease.gpu_uuids)
            used.changed()
        self._sched.pop((_MANIFEST, lease.id), None)
        self._sched.pop((_RUNTIME, lease.id), None)

    def _record_price(self, lease: Lease) -> None:
        if lease.gpu_models:
            per_gpu = lease.price_per_hour // len(lease.gpu_models)
            self._prices.append((lease.created_at_ms, lease.gpu_models[0], per_gpu))
            # memory stays flat: the newest only (trimmed in halves, so rarely)
            if len(self._prices) > 2 * limits.PRICE_POINTS_KEPT:
                del self._prices[: -limits.PRICE_POINTS_KEPT]

    # ==== deadlines ========================================================================
    def _hb_grace(self) -> int:
        return self.config.heartbeat_timeout_ms + 1

    def _schedule(self, kind: str, key: str, at_ms: int) -> None:
        """(Re)schedule one deadline; an older entry for the same (kind, key) becomes stale."""
        if kind == _HEARTBEAT and not self.config.heartbeat_expiry:
            return
        self._sched[(kind, key)] = at_ms
        self._heap_seq += 1
        heapq.heappush(self._heap, (at_ms, self._heap_seq, kind, key))
        if len(self._heap) > 2 * len(self._sched) + STALE_DEADLINES_SLACK:
            self._drop_stale_deadlines()

    def _drop_stale_deadlines(self) -> None:
        """Take out the heap's stale entries at once (a closed record's deadline stays there
        until its time, hours on: memory would grow with the records closed meanwhile)."""
        sched = self._sched
        self._heap = [e for e in self._heap if sched.get((e[2], e[3])) == e[0]]
        heapq.heapify(self._heap)

    def _schedule_runtime(self, lease: Lease) -> None:
        dep = self.state.deployments[lease.deployment_id]
        if lease.started and dep.job.max_runtime_ms:
            self._schedule(_RUNTIME, lease.id, lease.running_at_ms + dep.job.max_runtime_ms)

    def _reschedule_dry(self, dep: Deployment, loading: bool = False) -> None:
        lines = self._billing_lines(dep)
        at = ledger.run_dry_at(lines, dep.escrow, self.clock.now_ms()) if lines else None
        if at is None:
            self._sched.pop((_DRY, dep.id), None)
        elif self._sched.get((_DRY, dep.id)) != at:
            self._schedule(_DRY, dep.id, at)
        self._reschedule_low(dep, at, loading)

    def _low_threshold_ms(self, dep: Deployment) -> int:
        """How long before running dry escrow_low is said; 0 when there is nobody to tell and
        nothing to top up (the simulator). One rule for arming it and for running dry: were
        they to differ, a run-dry would say escrow_low, be re-armed at once and loop."""
        if not self.config.record_events and not dep.auto_top_up:
            return 0
        return self.config.escrow_low_ms

    def _reschedule_low(self, dep: Deployment, dry_at: int | None, loading: bool) -> None:
        """escrow_low is due at dry − threshold, once per crossing (escrow.py): re-armed when the
        time left is above the threshold again; said at once when it is due already (a lease
        started on a low escrow), except while loading (the next tick says it). Without events
        nor an auto top-up (the simulator) it has nothing to do."""
        threshold = self._low_threshold_ms(dep)
        now = self.clock.now_ms()
        low = None if dry_at is None or not threshold else escrow.low_at(dry_at, threshold)
        if dep.escrow_low and (low is None or low > now):
            dep.escrow_low = False
            self._touch(dep)
        if low is None or dep.escrow_low:
            self._sched.pop((_LOW, dep.id), None)
        elif low <= now and not loading:
            self._sched.pop((_LOW, dep.id), None)
            self._escrow_low(dep, now)
        elif self._sched.get((_LOW, dep.id)) != max(low, now):
            self._schedule(_LOW, dep.id, max(low, now))

    def _live_top(self) -> tuple[int, int, str, str] | None:
        """The earliest valid heap entry (stale ones are dropped; heartbeat deadlines that moved
        later are pushed again at their real time)."""
        while self._heap:
            entry = self._heap[0]
            at, _, kind, key = entry
            if self._sched.get((kind, key)) != at:
                heapq.heappop(self._heap)
                continue
            if kind == _HEARTBEAT:
                prov = self.state.providers.get(key)
                if prov is None or not prov.online:
                    heapq.heappop(self._heap)
                    self._sched.pop((kind, key), None)
                    continue
                real = prov.last_heartbeat_ms + self._hb_grace()
                if real > at:
                    heapq.heappop(self._heap)
                    self._schedule(kind, key, real)
                    continue
            return entry
        return None

    def next_deadline_ms(self) -> int | None:
        """When tick() next has work; None when nothing is scheduled."""
        top = self._live_top()
        return None if top is None else top[0]

    def tick(self) -> None:
        """Do everything due by now, in deadline order: award closed bid windows, mark silent
        providers offline, close leases whose escrow ran dry, whose job hit max runtime, or
        whose manifest timed out."""
        now = self.clock.now_ms()
        # Fast path (tick runs at the top of every command): every live deadline is in the heap,
        # so the heap's first time (live or stale) is a lower bound; later than now → nothing due.
        if not self._heap or self._heap[0][0] > now:
            return
        while True:
            top = self._live_top()
            if top is None or top[0] > now:
                return
            heapq.heappop(self._heap)
            at, _, kind, key = top
            del self._sched[(kind, key)]
            if kind == _WINDOW:
                self._close_window(key, at)
            elif kind == _HEARTBEAT:
                self._provider_lost(key, at)
            elif kind == _DRY:
                self._run_dry(self.state.deployments[key], at)
            elif kind == _MANIFEST:
                lease = self.state.leases[key]
                self._close_lease(
                    lease, CloseReason.MANIFEST_TIMEOUT, at, at, "never reported running"
                )
            elif kind == _RUNTIME:
                lease = self.state.leases[key]
                self._close_lease(lease, CloseReason.TENANT, at, at, "max runtime reached")
            elif kind == _REORDER:
                self._reorder_due(key)
            elif kind == _LOW:
                self._escrow_low(self.state.deployments[key], at)  # popped when it closes

    def _run_dry(self, dep: Deployment, at_ms: int) -> None:
        """The escrow cannot cover what the running leases owe from `at_ms` on: pay each what it
        owes at that moment as far as the escrow goes (in lease order), close them
        insufficient_funds at that moment, and close the deployment. escrow_low comes first if it
        was not said yet (and its auto top-up may keep the deployment running)."""
        if self._low_threshold_ms(dep) and not dep.escrow_low:
            self._escrow_low(dep, at_ms)
            if (_DRY, dep.id) in self._sched:
                return  # rescheduled: topped up, or due again at once (then it closes)
        for lease in list(self._dep_leases.get(dep.id, {}).values()):
            if lease.started:
                self._settle(lease, at_ms)
        self._finish_deployment(dep, CloseReason.INSUFFICIENT_FUNDS, at_ms, "escrow ran dry")

    def _escrow_low(self, dep: Deployment, at_ms: int) -> None:
        """Say the escrow is low (once per crossing), then top it up if the tenant asked."""
        now = self.clock.now_ms()
        lines = self._billing_lines(dep)
        # as it was when due (a tick may come a little later)
        available = max(0, dep.escrow - ledger.due(lines, at_ms))
        left = escrow.time_left_ms(lines, dep.escrow, at_ms) or 0
        rate = escrow.rate_per_hour(lines)
        plan = escrow.TopUp(0, "")
        if dep.auto_top_up:
            threshold = self.config.escrow_low_ms
            shortfall = ledger.due(lines, now + threshold + 1) - dep.escrow
            plan = escrow.plan_top_up(
                dep.auto_top_up,
                dep.auto_top_up_max - dep.auto_topped_up,
                self.get_account(dep.owner).balance,
                shortfall,
            )
        dep.escrow_low = True
        self._touch(dep)
        said = (
            f"escrow {money.format_amount(available)} lasts {escrow.format_time(left)} "
            f"at {money.format_amount(rate)}/h"
        )
        if plan.note and not plan.amount:
            said += f"; {plan.note}"
        self.journal.deployment_event(dep.id, DeploymentEventKind.ESCROW_LOW, at_ms, message=said)
        if plan.amount:
            self.ledger.transfer(
                now, acct_key(dep.owner), escrow_key(dep.id), plan.amount, "auto top-up"
            )
            dep.deposited += plan.amount
            dep.auto_topped_up += plan.amount
            self.journal.deployment_event(
                dep.id, DeploymentEventKind.ESCROW_TOPPED_UP, now, message=plan.note
            )
        self._reschedule_dry(dep)

    def funding(self, dep: Deployment) -> tuple[int, int, int]:
        """(escrow left after what has accrued, rate per hour of its running leases, ms until
        the escrow runs dry at that rate (0: nothing runs))."""
        if dep.state != DeploymentState.ACTIVE:
            return 0, 0, 0
        now = self.clock.now_ms()
        lines = self._billing_lines(dep)
        available = max(0, dep.escrow - ledger.due(lines, now))
        left = escrow.time_left_ms(lines, dep.escrow, now) or 0
        return available, escrow.rate_per_hour(lines), left

    def current_rate(self, dep: Deployment) -> int:
        """What the deployment costs an hour now (escrow.py): its running leases' rates, or
        before any runs, the most its open leases and orders may cost."""
        rate = escrow.rate_per_hour(self._billing_lines(dep))
        if rate:
            return rate
        held = sum(x.price_per_hour for x in self._dep_leases.get(dep.id, {}).values())
        if held:
            return held
        return sum(
            self.state.orders[o].group.max_price_per_hour
            for o in dep.group_orders
            if o in self._open_orders
        )

    # ==== declines =========================================================================
    def _decline(self, order: Order, provider: str, reason: str, by_marketplace: bool) -> None:
        now = self.clock.now_ms()
        decline = Decline(order.id, provider, reason, now, by_marketplace)
        # one decline per provider and order: the latest replaces the earlier
        kept = [d for d in self.state.declines.get(order.id, []) if d.provider != provider]
        kept.append(decline)
        self.state.declines[order.id] = kept
        self.journal.declined(decline)
        self.journal.deployment_event(
            order.deployment_id, DeploymentEventKind.BID_DECLINED, now, order=order, message=reason
        )

    # ==== money ============================================================================
    def _balance_of(self, key: str) -> int:
        kind, _, name = key.partition(":")
        if kind == "acct":
            account = self.state.accounts.get(name)
            return 0 if account is None else account.balance
        return self.state.deployments[name].escrow

    def _add_to(self, key: str, amount: int) -> None:
        kind, _, name = key.partition(":")
        if kind == "acct":
            account = self.state.accounts.get(name)
            if account is None:
                account = self.state.accounts[name] = Account(name)
            account.balance += amount
            self._touch(account)
        else:
            dep = self.state.deployments[name]
            dep.escrow += amount
            self._touch(dep)

    def _owed(self, lease: Lease, until_ms: int) -> int:
        if not lease.started:
            return 0
        return money.accrued(lease.price_per_hour, until_ms - lease.running_at_ms)

    def _settle(self, lease: Lease, until_ms: int) -> None:
        """Pay the lease's provider what it has accrued up to `until_ms`, as far as the escrow
        goes (it always goes far enough except at the run-dry moment)."""
        dep = self.state.deployments[lease.deployment_id]
        until_ms = max(until_ms, lease.billed_until_ms)
        amount = min(self._owed(lease, until_ms) - lease.paid, dep.escrow)
        if amount > 0:
            self.ledger.transfer(
                self.clock.now_ms(),
                escrow_key(dep.id),
                acct_key(lease.provider),
                amount,
                "lease payment",
                lease.id,
            )
            lease.paid += amount
        lease.billed_until_ms = until_ms
        self._touch(lease)

    # ==== accounts =========================================================================
    def fund(self, signer: str, address: str, amount: int) -> Account:
        """Mint `amount` into `address` (faucet). Only config.admin_address may."""
        self.tick()
        if not self.config.admin_address or signer != self.config.admin_address:
            raise PermissionDenied("only the marketplace's admin key may fund accounts")
        if not address:
            raise InvalidArgument("fund: address is empty")
        if amount <= 0:
            raise InvalidArgument(f"fund: amount must be positive, got {amount}")
        limits.check_text("address", address)
        limits.check_amount("fund: amount", amount)
        self._check_mint(amount)
        self.ledger.transfer(self.clock.now_ms(), MINT, acct_key(address), amount, "faucet")
        return self.state.accounts[address]

    def _check_mint(self, amount: int) -> None:
        """Refuse to mint past config.mint_limit (every balance stays under it: see limits.py)."""
        cap = self.config.mint_limit
        if cap is not None and self.state.total_minted + amount > cap:
            raise FailedPrecondition(
                f"minting {amount:,} would bring the money in existence past the market's "
                f"limit of {cap:,} micro-units ({self.state.total_minted:,} minted so far)"
            )

    # ==== deployments ======================================================================
    def _own_deployment(self, owner: str, deployment_id: str) -> Deployment:
        dep = self.get_deployment(deployment_id)
        if dep.owner != owner:
            raise PermissionDenied(f"deployment {deployment_id} is not yours")
        return dep

    def create_deployment(
        self,
        owner: str,
        groups: Sequence[GroupSpec],
        job: JobSettings,
        sdl: bytes,
        sdl_sha256: bytes,
        tenant_request: bytes,
        deposit: int,
        auto_top_up: int = 0,
        auto_top_up_max: int = 0,
    ) -> Deployment:
        """Move `deposit` from the owner's account into the deployment's escrow and open one order
        per group, with the bid window from job.auction. `auto_top_up` (with its cap
        `auto_top_up_max`): escrow.py's auto top-up."""
        self.tick()
        if not owner:
            raise InvalidArgument("owner is empty")
        if not groups:
            raise InvalidArgument("a deployment needs at least one placement group")
        if len(groups) > limits.MAX_GROUPS:
            raise InvalidArgument(f"{len(groups)} groups; the limit is {limits.MAX_GROUPS}")
        for group in groups:
            self._check_group_price(group)
            limits.check_group_texts(group)
        gang.check_groups(groups, job.gang)
        floor = max(self.config.min_deposit, 1)
        if deposit < floor:
            raise InvalidArgument(
                f"deposit {money.format_amount(deposit)} is below the minimum "
                f"{money.format_amount(floor)}"
            )
        limits.check_amount("deposit", deposit)
        limits.check_auto_top_up(auto_top_up, auto_top_up_max)
        self._check_reservation_terms(groups, job, deposit)
        balance = self.get_account(owner).balance
        if balance < deposit:
            raise InsufficientFunds(
                f"deposit {money.format_amount(deposit)} exceeds your balance "
                f"{money.format_amount(balance)}"
            )
        now = self.clock.now_ms()
        st = self.state
        dep = Deployment(
            id=f"D{st.next_deployment}",
            owner=owner,
            state=DeploymentState.ACTIVE,
            groups=tuple(groups),
            job=job,
            sdl=sdl,
            sdl_sha256=sdl_sha256,
            tenant_request=tenant_request,
            deposited=deposit,
            escrow=0,
            created_at_ms=now,
            failed_starts=[0] * len(groups),
            reorder_at_ms=[0] * len(groups),
            auto_top_up=auto_top_up,
            auto_top_up_max=auto_top_up_max
            or min(auto_top_up * escrow.DEFAULT_CAP_AMOUNTS, limits.MAX_AMOUNT),
        )
        st.next_deployment += 1
        st.deployments[dep.id] = dep
        self._owner_deps.setdefault(owner, {})[dep.id] = None
        self._touch(dep)
        self.journal.deployment_created(dep)
        self.ledger.transfer(now, acct_key(owner), escrow_key(dep.id), deposit, "deposit")
        self.journal.deployment_event(dep.id, DeploymentEventKind.DEPLOYMENT_CREATED, now)
        for gseq in range(1, len(groups) + 1):
            dep.group_orders.append("")
            self._open_order(dep, gseq, 1, now)
        return dep

    @staticmethod
    def _check_group_price(group: GroupSpec) -> None:
        """Every group has a maximum price, 1 ≤ max ≤ MAX_PRICE_PER_HOUR: zero is no cap."""
        maximum = group.max_price_per_hour
        if maximum < 0:
            raise InvalidArgument(f"group {group.name}: negative maximum price")
        if maximum == 0:
            raise InvalidArgument(
                f"group {group.name}: maximum price is 0 per hour; a group needs a maximum "
                "of at least 1 micro-unit per hour (there is no uncapped group)"
            )
        if maximum > limits.MAX_PRICE_PER_HOUR:
            raise InvalidArgument(
                f"group {group.name}: maximum price {maximum:,} per hour is over the limit "
                f"of {limits.MAX_PRICE_PER_HOUR:,}"
            )

    def _open_order(
        self, dep: Deployment, gseq: int, oseq: int, now: int, excluded: str = ""
    ) -> Order:
        auction_settings = dep.job.auction
        window = auction_settings.bid_window_ms or self.config.default_bid_window_ms
        order = Order(
            id=f"{dep.id}/{gseq}/{oseq}",
            deployment_id=dep.id,
            owner=dep.owner,
            gseq=gseq,
            oseq=oseq,
            group=dep.groups[gseq - 1],
            auction=auction_settings,
            state=OrderState.OPEN,
            created_at_ms=now,
            closes_at_ms=now + window,
            job_kind=dep.job.kind,
            excluded_provider=excluded,
            tier=dep.job.tier,
            gang=dep.job.gang,
        )
        self.state.orders[order.id] = order
        self._open_orders[order.id] = order
        self._order_bids[order.id] = {}
        dep.group_orders[gseq - 1] = order.id
        dep.order_ids.append(order.id)
        self._touch(order)
        self._touch(dep)
        self._schedule(_WINDOW, order.id, self._window_deadline(order))
        kind = DeploymentEventKind.ORDER_OPENED if oseq == 1 else DeploymentEventKind.ORDER_REOPENED
        self.journal.deployment_event(dep.id, kind, now, order=order)
        self.journal.provider_event("", ProviderEventKind.ORDER_OPENED, now, order=order)
        return order

    def _close_order(self, order: Order, now: int, message: str) -> None:
        """Close an order that will not (or no longer) be leased: its open bids close too."""
        if order.state == OrderState.CLOSED:
            return
        leases.move(order, OrderState.CLOSED)
        self._open_orders.pop(order.id, None)
        self._sched.pop((_WINDOW, order.id), None)
        self._touch(order)
        for bid in self._order_bids.get(order.id, {}).values():
            if bid.state in (BidState.OPEN, BidState.WON):
                leases.move(bid, BidState.CLOSED)
                self._touch(bid)
        self.journal.deployment_event(
            order.deployment_id, DeploymentEventKind.ORDER_CLOSED, now, order=order, message=message
        )
        self.journal.provider_event("", ProviderEventKind.ORDER_CLOSED, now, order=order)

    def close_deployment(self, owner: str, deployment_id: str) -> Deployment:
        """Close its orders and leases (deployment_closed), settle, refund the escrow's rest."""
        self.tick()
        dep = self._own_deployment(owner, deployment_id)
        if dep.state != DeploymentState.ACTIVE:
            raise FailedPrecondition(f"deployment {deployment_id} is closed already")
        now = self.clock.now_ms()
        self._finish_deployment(dep, CloseReason.DEPLOYMENT_CLOSED, now, "closed by the tenant")
        return dep

    def _finish_deployment(
        self, dep: Deployment, reason: CloseReason, at_ms: int, message: str
    ) -> None:
        """Close every open lease (with `reason`) and order, refund the escrow, close `dep`."""
        for lease in list(self._dep_leases.get(dep.id, {}).values()):
            self._close_lease(lease, reason, at_ms, at_ms, message, finishing=True)
        for order_id in dep.group_orders:
            self._close_order(self.state.orders[order_id], at_ms, message)
        self._cancel_reorders(dep)
        self.ledger.transfer(
            self.clock.now_ms(), escrow_key(dep.id), acct_key(dep.owner), dep.escrow, "refund"
        )
        leases.move(dep, DeploymentState.CLOSED)
        dep.closed_at_ms = at_ms
        self._sched.pop((_DRY, dep.id), None)
        self._sched.pop((_LOW, dep.id), None)
        self._touch(dep)
        self.journal.deployment_event(
            dep.id, DeploymentEventKind.DEPLOYMENT_CLOSED, self.clock.now_ms(), message=message
        )
        self.journal.deployment_closed(dep.id)
        if not self.config.retain_closed:
            self._forget(dep)
            self.journal.compact()

    def _forget(self, dep: Deployment) -> None:
        """Drop a closed deployment's records from memory (the archive has them, or, for the
        simulator, nothing reads them back). Money stays in the accounts; the deployment's
        (empty) escrow leaves the books with it."""
        st = self.state
        for order_id in dep.order_ids:
            st.orders.pop(order_id, None)
            st.declines.pop(order_id, None)
            for bid in self._order_bids.pop(order_id, {}).values():
                st.bids.pop(bid.id, None)
        for lease_id in dep.lease_ids:
            st.leases.pop(lease_id, None)
        self.journal.forget_deployment(dep.id)
        self._owner_deps.get(dep.owner, {}).pop(dep.id, None)
        del st.deployments[dep.id]

    def deposit(self, owner: str, deployment_id: str, amount: int) -> Deployment:
        """Top up the escrow from the owner's account."""
        self.tick()
        dep = self._own_deployment(owner, deployment_id)
        if dep.state != DeploymentState.ACTIVE:
            raise FailedPrecondition(f"deployment {deployment_id} is closed")
        if amount <= 0:
            raise InvalidArgument(f"deposit must be positive, got {amount}")
        limits.check_amount("deposit", amount)
        if dep.deposited + amount > limits.MAX_AMOUNT:
            raise InvalidArgument(
                f"deposit: {deployment_id} would hold more than {limits.MAX_AMOUNT:,} in total"
            )
        balance = self.get_account(owner).balance
        if balance < amount:
            raise InsufficientFunds(
                f"deposit {money.format_amount(amount)} exceeds your balance "
                f"{money.format_amount(balance)}"
            )
        escrow.check_deposit_buys(amount, self.current_rate(dep))
        now = self.clock.now_ms()
        self.ledger.transfer(now, acct_key(owner), escrow_key(dep.id), amount, "deposit")
        dep.deposited += amount
        self.journal.deployment_event(
            dep.id,
            DeploymentEventKind.ESCROW_TOPPED_UP,
            now,
            message=f"deposit: {money.format_amount(amount)} from your account",
        )
        self._reschedule_dry(dep)
        return dep

    def update_deployment(
        self,
        owner: str,
        deployment_id: str,
        base_version: int,
        update: DeploymentUpdate,
    ) -> Deployment:
        """Update in place (manifest/update.py judged the new SDL against version
        `base_version`): the new SDL becomes the deployment's next version, and the provider of
        each open lease is told to fetch it (lease_updated). Groups and job settings stay."""
        self.tick()
        dep = self._own_deployment(owner, deployment_id)
        if dep.state != DeploymentState.ACTIVE:
            raise FailedPrecondition(f"deployment {deployment_id} is closed")
        if base_version != dep.version:
            raise FailedPrecondition(
                f"deployment {deployment_id} is at version {dep.version} now, not "
                f"{base_version}: send the update again"
            )
        if tuple(update.groups) != dep.groups or update.job != dep.job:
            raise FailedPrecondition(
                "resources, placement, pricing and job settings cannot change in place"
            )
        if len(update.sdl) > limits.MAX_MANIFEST_BYTES:
            raise InvalidArgument(f"manifest is over {limits.MAX_MANIFEST_BYTES:,} bytes")
        summary = limits.display_safe("; ".join(update.changes), "update summary")  # told, not kept
        now = self.clock.now_ms()
        dep.version += 1
        dep.sdl, dep.sdl_sha256 = update.sdl, update.sdl_sha256
        dep.tenant_request = update.tenant_request
        self._touch(dep)
        self.journal.deployment_created(dep)  # its new SDL leaves memory once stored
        self.journal.deployment_event(
            dep.id,
            DeploymentEventKind.DEPLOYMENT_UPDATED,
            now,
            message=f"version {dep.version}: {summary}",
        )
        for lease in self._dep_leases.get(dep.id, {}).values():
            order = self.state.orders[lease.order_id]
            self.journal.provider_event(
                lease.provider, ProviderEventKind.LEASE_UPDATED, now, order=order, lease=lease
            )
        return dep

    # ==== eligibility and award ============================================================
    def _free(self, prov: ProviderRecord, only_gpus: tuple[str, ...] = ()) -> matching.Capacity:
        """The provider's registered capacity minus what its open leases hold; only the GPUs
        named in `only_gpus` when given (an offer that names its devices)."""
        cap: matching.Capacity = prov.capacity
        used = self._used.get(prov.address) or _Used()
        gpus = cap.gpus
        if used.gpu_uuids:
            gpus = tuple(d for d in gpus if d.uuid not in used.gpu_uuids)
        if only_gpus:
            gpus = tuple(d for d in gpus if d.uuid in only_gpus)
        return matching.Capacity(
            cpu_millis=cap.cpu_millis - used.cpu_millis,
            memory_bytes=cap.memory_bytes - used.memory_bytes,
            storage_bytes=cap.storage_bytes - used.storage_bytes,
            gpus=gpus,
        )

    def _check(
        self, prov: ProviderRecord, order: Order, price: int, offer: Offer
    ) -> matching.Allocation | str:
        """The allocation the bid would take, or why it is ineligible."""
        if not prov.online:
            return "provider is offline (no heartbeat)"
        if prov.draining:
            return "provider is draining"
        if order.excluded_provider == prov.address and self.clock.now_ms() < order.closes_at_ms:
            return "provider failed to start this group's last lease: it sits out this bid window"
        maximum = order.group.max_price_per_hour
        if price > maximum:  # always capped: a group without a maximum cannot be created
            return (
                f"price {money.format_amount(price)}/h is above the tenant's maximum "
                f"{money.format_amount(maximum)}/h"
            )
        req = order.group.requirements
        if req.attributes or req.signed_by_all_of or req.signed_by_any_of:  # else none to miss
            mismatches = matching.placement_mismatches(
                req, prov.attributes, self._audited(prov, order)
            )
            if mismatches:
                return "; ".join(mismatches)
        wanted = order.auction.min_reliability
        if wanted > 0 and (score := self.reliability(prov.address)) < wanted:
            return (
                f"provider reliability {score:.2f} is below the required "
                f"{order.auction.min_reliability:.2f}"
            )
        if offer.preempts:  # room made by pre-empting spot leases (spot.py)
            return self._room_by_preempting(prov, order, offer)
        units = order.group.resources
        used = self._used.get(prov.address)
        key = (id(units), offer.gpu_uuids, used.key if used else _NOTHING_USED)
        fits = self._fits.get(prov.address)
        if fits is None:
            fits = self._fits[prov.address] = {}
        cached = fits.get(key)
        if cached is not None:
            return cached[1]
        if len(fits) >= _FITS_PER_PROVIDER:
            fits.clear()
        verdict = matching.allocate(order.group, self._free(prov, offer.gpu_uuids))
        fits[key] = (units, verdict)
        return verdict

    def _audited(self, prov: ProviderRecord, order: Order) -> dict[str, dict[str, str]] | None:
        """The auditors' attributes for prov that count now, when the order's placement asks
        for signatures (only then: it is checked on every bid)."""
        req = order.group.requirements
        if not (req.signed_by_all_of or req.signed_by_any_of):
            return None
        return self.attestations.signed_for(prov.address, self.clock.now_ms())

    def _close_window(self, order_id: str, at_ms: int) -> None:
        order = self._open_orders.get(order_id)
        if order is None:
            return
        if order.auction.manual:
            self._lapse(order, at_ms)
            return
        dep = self.state.deployments[order.deployment_id]
        if dep.job.gang is not None:  # all nodes or none
            gang.close_window(self, dep, dep.job.gang, at_ms)
            return
        # Check bids best first and stop once the payment rule has what it needs (the winner, and
        # for second price the runner-up): a bid that no longer passes is passed over.
        needed = 2 if order.auction.payment == Payment.SECOND_PRICE else 1
        open_bids = [
            b for b in self._order_bids.get(order_id, {}).values() if b.state == BidState.OPEN
        ]
        eligible: list[tuple[Bid, matching.Allocation]] = []
        for bid in auction.rank(open_bids):
            verdict = self._check(
                self.state.providers[bid.provider], order, bid.price_per_hour, bid.offer
            )
            if isinstance(verdict, str):
                self._decline(order, bid.provider, f"at auction close: {verdict}", True)
                continue
            eligible.append((bid, verdict))
            if len(eligible) == needed:
                break
        result = auction.award(
            [bid for bid, _ in eligible], order.auction.payment, order.group.max_price_per_hour
        )
        if result is None:
            # stays open; a later eligible bid is awarded at the next tick after it arrives
            if self.journal.recording:  # the summary costs a little: only when it is kept
                self.journal.deployment_event(
                    order.deployment_id,
                    DeploymentEventKind.NO_ELIGIBLE_BID,
                    at_ms,
                    order=order,
                    message=self.explain_order(order.id).summary,
                )
            return
        allocation = next(a for b, a in eligible if b is result.winner)
        self._create_lease(order, result.winner, result.price_per_hour, allocation, at_ms)

    def _create_lease(
        self, order: Order, winner: Bid, price: int, allocation: matching.Allocation, now: int
    ) -> Lease:
        if winner.offer.preempts:
            self._preempt(order, winner, now)
        dep = self.state.deployments[order.deployment_id]
        leases.move(order, OrderState.ACTIVE)
        self._open_orders.pop(order.id, None)
        self._sched.pop((_WINDOW, order.id), None)
        leases.move(winner, BidState.WON)
        self._touch(winner)
        for bid in self._order_bids.get(order.id, {}).values():
            if bid.state == BidState.OPEN:
                leases.move(bid, BidState.LOST)
                self._touch(bid)
                self.journal.provider_event(
                    bid.provider, ProviderEventKind.BID_LOST, now, order=order, bid=bid
                )
        lease = Lease(
            id=winner.id,
            order_id=order.id,
            deployment_id=dep.id,
            tenant=dep.owner,
            provider=winner.provider,
            price_per_hour=price,
            state=LeaseState.PENDING,
            created_at_ms=now,
            bid_price_per_hour=winner.price_per_hour,
            billed_until_ms=now,
            gpu_uuids=allocation.gpu_uuids,
            gpu_models=allocation.gpu_models,
            cpu_millis=allocation.cpu_millis,
            memory_bytes=allocation.memory_bytes,
            storage_bytes=allocation.storage_bytes,
            tier=order.tier,
        )
        self.state.leases[lease.id] = lease
        order.lease_id = lease.id
        dep.lease_ids.append(lease.id)
        self._touch(order)
        self._touch(dep)
        self._touch(lease)
        self._index_lease(lease)
        self._record_price(lease)
        self.journal.deployment_event(
            dep.id, DeploymentEventKind.LEASE_CREATED, now, order=order, lease=lease
        )
        self.journal.provider_event(
            lease.provider, ProviderEventKind.LEASE_WON, now, order=order, bid=winner, lease=lease
        )
        self.journal.provider_event("", ProviderEventKind.ORDER_CLOSED, now, order=order)
        return lease

    def accept_bid(self, owner: str, bid_id: str) -> Lease:
        """Manual mode: the tenant picks any open, still-eligible bid; it is paid its own price."""
        self.tick()
        bid = self.get_bid(bid_id)
        order = self.get_order(bid.order_id)
        self._own_deployment(owner, order.deployment_id)
        if order.state != OrderState.OPEN:
            raise FailedPrecondition(f"order {order.id} is {order.state}, not open")
        if bid.state != BidState.OPEN:
            raise FailedPrecondition(f"bid {bid_id} is {bid.state}, not open")
        verdict = self._check(
            self.state.providers[bid.provider], order, bid.price_per_hour, bid.offer
        )
        if isinstance(verdict, str):
            self._decline(order, bid.provider, verdict, True)
            raise Ineligible(verdict)
        return self._create_lease(order, bid, bid.price_per_hour, verdict, self.clock.now_ms())

    # ==== leases ===========================================================================
    def _reorders(self, dep: Deployment, reason: CloseReason) -> bool:
        policy = dep.job.restart_policy
        if policy == RestartPolicy.NEVER:
            return False
        if reason in _REORDER_ON_FAILURE:
            return True
        return (
            policy == RestartPolicy.ALWAYS
            and reason == CloseReason.COMPLETED
            and dep.job.kind != JobKind.TRAINING
        )

    # ==== failed starts: backoff and cap of re-orders =======================================
    def _order_again(self, dep: Deployment, order: Order, lease: Lease, now: int) -> None:
        """Re-order the group of `lease` (closed at `now`): at once, after the backoff of its run
        of failed starts, or not at all once that run reached max_failed_starts."""
        g = order.gseq - 1
        streak = _grown(dep.failed_starts, len(dep.groups))
        streak[g] = streak[g] + 1 if self._failed_start(lease, now) else 0
        self._touch(dep)
        if streak[g] >= self.config.max_failed_starts:
            self.journal.deployment_event(
                dep.id,
                DeploymentEventKind.REORDERS_STOPPED,
                now,
                order=order,
                message=(
                    f"group {order.group.name}: {streak[g]} leases in a row failed to start or "
                    f"failed quickly (last: {lease.message or lease.close_reason.value}); "
                    "it is not ordered again"
                ),
            )
            return
        delay = self._reorder_delay(streak[g])
        if delay == 0:
            self._open_order(dep, order.gseq, order.oseq + 1, now, _excluded_after(lease))
            return
        due = _grown(dep.reorder_at_ms, len(dep.groups))
        due[g] = now + delay
        self._schedule(_REORDER, f"{dep.id}/{order.gseq}", due[g])

    def _failed_start(self, lease: Lease, closed_at_ms: int) -> bool:
        if lease.close_reason == CloseReason.MANIFEST_TIMEOUT:
            return True
        if lease.close_reason != CloseReason.FAILED:
            return False
        return not lease.started or closed_at_ms - lease.running_at_ms < (
            self.config.quick_failure_ms
        )

    def _reorder_delay(self, streak: int) -> int:
        """0 after one failed start (a one-off costs no time), then base, 2×base, ... capped."""
        if streak <= 1:
            return 0
        doublings = min(streak - 2, 30)
        return min(self.config.reorder_backoff_ms << doublings, self.config.reorder_backoff_max_ms)

    def _reorder_due(self, key: str) -> None:
        dep_id, _, gseq_text = key.rpartition("/")
        dep = self.state.deployments.get(dep_id)
        gseq = int(gseq_text)
        if dep is None or dep.state != DeploymentState.ACTIVE or not dep.reorder_at_ms[gseq - 1]:
            return
        dep.reorder_at_ms[gseq - 1] = 0
        last = self.state.orders[dep.group_orders[gseq - 1]]
        lease = self.state.leases.get(last.lease_id)
        excluded = _excluded_after(lease) if lease is not None else ""
        self._open_order(dep, gseq, last.oseq + 1, self.clock.now_ms(), excluded)
        self._reschedule_dry(dep)

    def _cancel_reorders(self, dep: Deployment) -> None:
        for gseq, at in enumerate(dep.reorder_at_ms, start=1):
            if at:
                self._sched.pop((_REORDER, f"{dep.id}/{gseq}"), None)
                dep.reorder_at_ms[gseq - 1] = 0

    # ==== reservations: bounded windows and deposits =======================================
    def _window_deadline(self, order: Order) -> int:
        """When tick() closes the order's window: the auction's end, or for a manual order the
        end of the tenant's time to accept a bid."""
        if order.auction.manual:
            return order.closes_at_ms + self.config.manual_accept_ms
        return order.closes_at_ms

    def _lapse(self, order: Order, at_ms: int) -> None:
        """A manual order whose tenant accepted no bid in time: it closes with its bids (the
        providers release what they held), and so does the deployment if nothing is left."""
        accept = self.config.manual_accept_ms // 1000
        self._close_order(order, at_ms, f"no bid accepted within {accept} s of the bid window")
        dep = self.state.deployments[order.deployment_id]
        if dep.state == DeploymentState.ACTIVE and self._all_finished(dep):
            self._finish_deployment(dep, CloseReason.TENANT, at_ms, "no bid accepted in time")

    def _check_reservation_terms(
        self, groups: Sequence[GroupSpec], job: JobSettings, deposit: int
    ) -> None:
        """An order may not ask providers to hold capacity longer than the bid window's bound,
        nor for less escrow than its own maximum price for min_escrow_ms (or its max runtime)."""
        window = job.auction.bid_window_ms
        if window > self.config.max_bid_window_ms:
            raise InvalidArgument(
                f"bid window {units.format_duration(window)} is longer than the marketplace's "
                f"maximum {units.format_duration(self.config.max_bid_window_ms)}"
            )
        hold_ms = self.config.min_escrow_ms
        if job.max_runtime_ms:
            hold_ms = min(hold_ms, job.max_runtime_ms)
        per_hour = sum(g.max_price_per_hour for g in groups if g.max_price_per_hour > 0)
        needed = money.accrued(per_hour, hold_ms)
        if deposit < needed:
            raise InvalidArgument(
                f"deposit {money.format_amount(deposit)} does not pay for "
                f"{units.format_duration(hold_ms)} at the maximum price "
                f"{money.format_amount(per_hour)}/h: deposit at least "
                f"{money.format_amount(needed)}"
            )

    def _close_lease(
        self,
        lease: Lease,
        reason: CloseReason,
        at_ms: int,
        bill_until_ms: int,
        message: str,
        finishing: bool = False,
    ) -> None:
        """Settle up to `bill_until_ms`, close the lease at `at_ms`, release its capacity, then
        re-order the group or finish the deployment (unless `finishing` it already)."""
        dep = self.state.deployments[lease.deployment_id]
        was_running = lease.started
        self._settle(lease, bill_until_ms)
        leases.move(lease, LeaseState.CLOSED)
        lease.close_reason = reason
        lease.closed_at_ms = at_ms
        if message and not lease.message:
            lease.message = message
        self._touch(lease)
        self._unindex_lease(lease)
        bid = self.state.bids.get(lease.id)
        if bid is not None and bid.state == BidState.WON:
            leases.move(bid, BidState.CLOSED)
            self._touch(bid)
        order = self.state.orders[lease.order_id]
        self._credit_history(lease.provider, reason, was_running)
        now = self.clock.now_ms()
        self.journal.deployment_event(
            dep.id,
            DeploymentEventKind.LEASE_CLOSED,
            now,
            order=order,
            lease=lease,
            message=reason.value,
        )
        self.journal.provider_event(
            lease.provider, ProviderEventKind.LEASE_CLOSED, now, order=order, lease=lease
        )
        if order.state != OrderState.CLOSED:
            leases.move(order, OrderState.CLOSED)
            self._touch(order)
        if finishing:
            return
        if dep.state == DeploymentState.ACTIVE and self._reorders(dep, reason):
            self._order_again(dep, order, lease, now)
        if dep.job.gang is not None:  # the rest of the gang stops (and is ordered again) with it
            gang.stop_others(self, dep, lease, reason)
        if self._all_finished(dep):
            self._finish_deployment(dep, reason, at_ms, f"all groups finished ({reason.value})")
        else:
            self._reschedule_dry(dep)

    def _all_finished(self, dep: Deployment) -> bool:
        if self._dep_leases.get(dep.id) or any(dep.reorder_at_ms):
            return False
        return all(self.state.orders[o].state == OrderState.CLOSED for o in dep.group_orders)

    def _credit_history(self, address: str, reason: CloseReason, was_running: bool) -> None:
        prov = self.state.providers.get(address)
        if prov is None:
            return
        if reason in (CloseReason.PROVIDER_LOST, CloseReason.PROVIDER):
            prov.leases_lost += 1
        elif reason == CloseReason.MANIFEST_TIMEOUT or (
            reason == CloseReason.FAILED and not was_running
        ):
            prov.failed_starts += 1
        elif reason == CloseReason.FAILED:
            prov.leases_failed += 1
        elif was_running:
            prov.leases_ok += 1
        self._touch(prov)

    def close_lease(self, actor: str, lease_id: str, message: str = "") -> Lease:
        """Tenant or provider closes a lease; settles; re-orders per the restart policy (a close
        by the provider counts as a failure it caused; a close by the tenant never re-orders)."""
        self.tick()
        limits.check_text("close message", message)
        lease = self.get_lease(lease_id)
        if actor not in (lease.tenant, lease.provider):
            raise PermissionDenied(f"lease {lease_id} is neither yours as tenant nor as provider")
        if lease.state == LeaseState.CLOSED:
            raise FailedPrecondition(f"lease {lease_id} is closed already ({lease.close_reason})")
        reason = CloseReason.TENANT if actor == lease.tenant else CloseReason.PROVIDER
        now = self.clock.now_ms()
        self._close_lease(lease, reason, now, now, message)
        return lease

    def manifest_for(self, provider: str, lease_id: str) -> tuple[Deployment, GroupSpec]:
        """The deployment and group a lease runs; only the lease's provider may ask."""
        self.tick()
        lease = self.get_lease(lease_id)
        if lease.provider != provider:
            raise PermissionDenied(f"lease {lease_id} is not yours")
        if lease.state == LeaseState.CLOSED:
            raise FailedPrecondition(f"lease {lease_id} is closed ({lease.close_reason})")
        order = self.state.orders[lease.order_id]
        dep = self.state.deployments[lease.deployment_id]
        if not dep.sdl:  # stored and let go (committed()): the provider needs it now
            sdl, request = self.archive.manifest(dep.id)
            dep = dataclasses.replace(dep, sdl=sdl, tenant_request=request)
        return dep, order.group

    def report_status(
        self,
        provider: str,
        lease_id: str,
        running: bool,
        exited: bool = False,
        exit_code: int = 0,
        oom_killed: bool = False,
        endpoints: Iterable[Endpoint] = (),
        message: str = "",
        version: int = 0,
        update_failed: bool = False,
    ) -> Lease:
        """The provider reports a lease running, or exited: exit 0 → completed, else (or OOM)
        failed; the group is re-ordered per the restart policy. `version`: the deployment
        version it runs (update in place), or with `update_failed` the one it could not run."""
        self.tick()
        lease = self.get_lease(lease_id)
        if lease.provider != provider:
            raise PermissionDenied(f"lease {lease_id} is not yours")
        if lease.state == LeaseState.CLOSED:
            raise FailedPrecondition(f"lease {lease_id} is closed ({lease.close_reason})")
        now = self.clock.now_ms()
        endpoints = tuple(endpoints)
        limits.check_endpoints(endpoints)
        limits.check_text("lease message", message)
        dep = self.state.deployments[lease.deployment_id]
        if not 0 <= version <= dep.version:
            raise InvalidArgument(f"version {version}: {dep.id} is at version {dep.version}")
        if endpoints:
            lease.endpoints = endpoints
        if message:
            lease.message = message
        self._touch(lease)
        if running and lease.state == LeaseState.PENDING:
            leases.move(lease, LeaseState.RUNNING)
            lease.started = True
            lease.running_at_ms = now
            lease.billed_until_ms = now
            self._sched.pop((_MANIFEST, lease.id), None)
            self._schedule_runtime(lease)
            self.journal.deployment_event(
                lease.deployment_id, DeploymentEventKind.LEASE_RUNNING, now, lease=lease
            )
            self._reschedule_dry(self.state.deployments[lease.deployment_id])
        if version and not exited:
            updates.report(self.journal, self._touch, lease, now, version, update_failed, message)
        if exited:
            lease.exit_code = exit_code
            ok = exit_code == 0 and not oom_killed
            reason = CloseReason.COMPLETED if ok else CloseReason.FAILED
            text = message or ("OOM-killed" if oom_killed else f"exited with code {exit_code}")
            lease.message = text
            self._close_lease(lease, reason, now, now, text)
        return lease

    def _confirmed_until(self, lease: Lease, now: int) -> int:
        """How far a periodic settlement may bill: up to the provider's last heartbeat, so a
        provider that dies is never paid past it (billing stops there). With
        heartbeat_expiry=False (simulator) heartbeats are not tracked and it is `now`."""
        if not self.config.heartbeat_expiry:
            return now
        return min(now, self.state.providers[lease.provider].last_heartbeat_ms)

    def settle(self, lease_id: str) -> Lease:
        """Pay the provider what the lease has accrued up to its provider's last heartbeat."""
        self.tick()
        lease = self.get_lease(lease_id)
        if lease.state != LeaseState.CLOSED:
            self._settle(lease, self._confirmed_until(lease, self.clock.now_ms()))
        return lease

    def settle_all(self) -> None:
        """settle() every open lease."""
        self.tick()
        now = self.clock.now_ms()
        for open_leases in self._prov_leases.values():
            for lease in open_leases.values():
                self._settle(lease, self._confirmed_until(lease, now))

    # ==== providers ========================================================================
    def register_provider(
        self,
        address: str,
        host_uri: str,
        attributes: dict[str, str],
        capacity: matching.Capacity,
        region: str = "",
        version: str = "",
    ) -> ProviderRecord:
        """Register or update a provider; it is online from now (history is kept)."""
        self.tick()
        if not address:
            raise InvalidArgument("provider address is empty")
        if not isinstance(capacity, matching.Capacity):
            raise InvalidArgument("capacity must be a matching.Capacity")
        self._check_registration(address, host_uri, attributes, capacity, region, version)
        now = self.clock.now_ms()
        prov = self.state.providers.get(address)
        if prov is None:
            prov = ProviderRecord(
                address=address,
                host_uri=host_uri,
                attributes=dict(attributes),
                capacity=capacity,
                region=region,
                version=version,
                registered_at_ms=now,
                last_heartbeat_ms=now,
            )
            self.state.providers[address] = prov
        else:
            self._credit_time(prov, now)
            prov.host_uri, prov.attributes, prov.capacity = host_uri, dict(attributes), capacity
            self._fits.pop(address, None)
            prov.region, prov.version = region, version
        prov.online, prov.draining, prov.last_heartbeat_ms = True, False, now
        self._touch(prov)
        self._schedule(_HEARTBEAT, address, now + self._hb_grace())
        return prov

    def sign_attributes(
        self,
        auditor: str,
        provider: str,
        attributes: dict[str, str],
        expires_at_ms: int,
        proof: bytes = b"",
    ) -> list[Attestation]:
        """An auditor signs attributes of a registered provider (attestations.py's rules)."""
        self.tick()
        self.get_provider(provider)  # NotFound: only a registered provider is attested
        now = self.clock.now_ms()
        return self.attestations.sign(provider, auditor, attributes, now, expires_at_ms, proof)

    def revoke_attributes(self, auditor: str, provider: str, keys: list[str]) -> list[Attestation]:
        """An auditor withdraws its signatures of `keys` (all when empty) for `provider`."""
        self.tick()
        limits.check_texts("attribute key", keys, limits.MAX_ATTRIBUTES)
        return self.attestations.revoke(provider, auditor, keys, self.clock.now_ms())

    @staticmethod
    def _check_registration(
        address: str,
        host_uri: str,
        attributes: dict[str, str],
        capacity: matching.Capacity,
        region: str,
        version: str,
    ) -> None:
        limits.check_text("address", address)
        limits.check_text("host_uri", host_uri)
        limits.check_text("region", region)
        limits.check_text("version", version)
        limits.check_attributes(attributes)
        limits.check_capacity(capacity)

    def _credit_time(self, prov: ProviderRecord, now: int) -> None:
        """Uptime since the last heartbeat (at most the timeout), or downtime if it was offline."""
        gap = max(0, now - prov.last_heartbeat_ms)
        if prov.online:
            prov.uptime_ms += min(gap, self.config.heartbeat_timeout_ms)
        else:
            prov.downtime_ms += gap

    def heartbeat(
        self,
        address: str,
        running_lease_ids: Iterable[str] = (),
        capacity: matching.Capacity | None = None,
        draining: bool = False,
    ) -> list[str]:
        """Provider is alive. Returns the lease ids among `running_lease_ids` it must stop
        (unknown, closed, or not its own)."""
        self.tick()
        prov = self.get_provider(address)
        if capacity is not None and not isinstance(capacity, matching.Capacity):
            raise InvalidArgument("capacity must be a matching.Capacity")
        if capacity is not None:
            limits.check_capacity(capacity)
        running_lease_ids = limits.check_texts("id", running_lease_ids, limits.MAX_RUNNING_IDS)
        now = self.clock.now_ms()
        self._credit_time(prov, now)
        if not prov.online:
            prov.online = True
            self._schedule(_HEARTBEAT, address, now + self._hb_grace())
        elif (_HEARTBEAT, address) not in self._sched:
            self._schedule(_HEARTBEAT, address, now + self._hb_grace())
        prov.last_heartbeat_ms = now
        prov.draining = draining
        if capacity is not None:
            if capacity != prov.capacity:
                self._fits.pop(address, None)
            prov.capacity = capacity
        self._touch(prov)
        mine = self._prov_leases.get(address, {})
        return [lease_id for lease_id in running_lease_ids if lease_id not in mine]

    def grant_heartbeat_grace(self, address: str, until_ms: int) -> None:
        """Do not declare `address` lost before `until_ms`: after the marketplace itself restarted,
        it, not the provider, was away. Billing still stops at the provider's last heartbeat."""
        self.get_provider(address)
        self._schedule(_HEARTBEAT, address, until_ms)

    def provider_silent(self, address: str) -> None:
        """The caller has seen `address` silent past the timeout (config.heartbeat_expiry=False):
        exactly what tick() does for a silent provider: offline, leases provider_lost now,
        billed to its last heartbeat, groups re-ordered per restart policy. Idempotent."""
        self.tick()
        prov = self.get_provider(address)
        if prov.online:
            self._sched.pop((_HEARTBEAT, address), None)
            self._provider_lost(address, self.clock.now_ms())

    def _provider_lost(self, address: str, at_ms: int) -> None:
        prov = self.state.providers[address]
        prov.online = False
        self._touch(prov)
        last = prov.last_heartbeat_ms
        for lease in list(self._prov_leases.get(address, {}).values()):
            if lease.state == LeaseState.CLOSED:
                continue  # closed meanwhile (its deployment finished)
            self._close_lease(
                lease,
                CloseReason.PROVIDER_LOST,
                at_ms,
                max(last, lease.billed_until_ms),
                f"provider silent since {last} ms",
            )

    def place_bid(
        self, provider: str, order_id: str, price_per_hour: int, offer: Offer | None = None
    ) -> Bid:
        """Bid on an open order. Ineligible → a Decline(by_marketplace=True) is recorded and
        Ineligible(reason) raised."""
        self.tick()
        prov = self.get_provider(provider)
        order = self.get_order(order_id)
        if order.state != OrderState.OPEN:
            raise FailedPrecondition(f"order {order_id} is {order.state}, not taking bids")
        if price_per_hour <= 0:
            raise InvalidArgument(f"price must be positive, got {price_per_hour}")
        limits.check_amount("price_per_hour", price_per_hour, limits.MAX_PRICE_PER_HOUR)
        if offer is not None:
            limits.check_offer(offer)
        bids = self._order_bids.setdefault(order_id, {})
        existing = bids.get(provider)
        if existing is not None and existing.state == BidState.OPEN:
            raise AlreadyExists(f"you already bid on {order_id}; withdraw it first to bid again")
        limit = self.config.max_bids_per_order
        if len(bids) >= limit and sum(b.state == BidState.OPEN for b in bids.values()) >= limit:
            raise FailedPrecondition(
                f"order {order_id} has the maximum {self.config.max_bids_per_order} open bids"
            )
        offer = offer or Offer()
        if offer.preempts:
            self._check_preemption_bid(prov, order, offer)
        verdict = self._check(prov, order, price_per_hour, offer)
        if isinstance(verdict, str):
            self._decline(order, provider, verdict, True)
            raise Ineligible(verdict)
        if short := gang.link_problem(prov, self.state.deployments[order.deployment_id].job.gang):
            self._decline(order, provider, short, True)  # a gang's bandwidth floor
            raise Ineligible(short)
        now = self.clock.now_ms()
        st = self.state
        bid = Bid(
            id=f"{order_id}/{provider}",
            order_id=order_id,
            provider=provider,
            price_per_hour=price_per_hour,
            state=BidState.OPEN,
            created_at_ms=now,
            reliability=self.reliability(provider),
            offer=offer,
            seq=st.next_bid_seq,
        )
        st.next_bid_seq += 1
        st.bids[bid.id] = bid
        bids.pop(provider, None)
        bids[provider] = bid
        self._touch(bid)
        self.journal.deployment_event(
            order.deployment_id, DeploymentEventKind.BID_PLACED, now, order=order, bid=bid
        )
        if now >= order.closes_at_ms and not order.auction.manual:
            # the window closed without a winner: award at the next tick
            self._schedule(_WINDOW, order_id, now)
        return bid

    def withdraw_bid(self, provider: str, bid_id: str) -> Bid:
        self.tick()
        bid = self.get_bid(bid_id)
        if bid.provider != provider:
            raise PermissionDenied(f"bid {bid_id} is not yours")
        if bid.state != BidState.OPEN:
            raise FailedPrecondition(f"bid {bid_id} is {bid.state}, not open")
        leases.move(bid, BidState.WITHDRAWN)
        self._touch(bid)
        return bid

    def decline_order(self, provider: str, order_id: str, reason: str) -> None:
        """The provider says why it will not bid (shown to the tenant by explain_order)."""
        self.tick()
        self.get_provider(provider)
        order = self.get_order(order_id)
        limits.check_text("decline reason", reason)
        if order.state != OrderState.OPEN:
            raise FailedPrecondition(f"order {order_id} is {order.state}, not taking bids")
        self._decline(order, provider, reason.strip() or "declined (no reason given)", False)

    # ==== spot: pre-emption (the rules are spot.py's) ======================================
    def _spot_holdings(
        self, prov: ProviderRecord, lease_ids: Iterable[str]
    ) -> list[spot.SpotHolding]:
        """The open spot leases of `prov` among `lease_ids` (others are left out)."""
        mine = self._prov_leases.get(prov.address, {})
        holdings = []
        for lease_id in lease_ids:
            lease = mine.get(lease_id)
            if lease is None or self.state.deployments[lease.deployment_id].job.tier != Tier.SPOT:
                continue
            holdings.append(
                spot.SpotHolding(
                    lease.id,
                    lease.cpu_millis,
                    lease.memory_bytes,
                    lease.storage_bytes,
                    lease.gpu_uuids,
                    lease.created_at_ms,
                )
            )
        return holdings

    @staticmethod
    def _devices(prov: ProviderRecord, offer: Offer) -> tuple[matching.GpuDevice, ...]:
        gpus: tuple[matching.GpuDevice, ...] = prov.capacity.gpus
        if offer.gpu_uuids:
            return tuple(d for d in gpus if d.uuid in offer.gpu_uuids)
        return gpus

    def _check_preemption_bid(self, prov: ProviderRecord, order: Order, offer: Offer) -> None:
        """A bid naming spot leases to pre-empt: they must be this provider's own open spot
        leases (PermissionDenied for anyone else's), the order on-demand, and the pre-emption
        exactly what makes the room (Ineligible, with a decline recorded, otherwise)."""
        if len(set(offer.preempts)) != len(offer.preempts):
            raise InvalidArgument("the bid names a lease to pre-empt twice")
        mine = self._prov_leases.get(prov.address, {})
        for lease_id in offer.preempts:
            lease = self.state.leases.get(lease_id)
            if lease is None or lease.provider != prov.address:
                raise PermissionDenied(f"lease {lease_id} is not yours to pre-empt")
            if lease_id not in mine:
                raise FailedPrecondition(f"lease {lease_id} is closed already")
            victim_tier = self.state.deployments[lease.deployment_id].job.tier
            why = spot.may_preempt(order.tier, victim_tier)
            if why:
                self._decline(order, prov.address, f"{lease_id}: {why}", True)
                raise Ineligible(f"{lease_id}: {why}")
        verdict = spot.check_named(
            order.group,
            self._free(prov, offer.gpu_uuids),
            self._devices(prov, offer),
            self._spot_holdings(prov, offer.preempts),
        )
        if isinstance(verdict, str):
            self._decline(order, prov.address, verdict, True)
            raise Ineligible(verdict)

    def _room_by_preempting(
        self, prov: ProviderRecord, order: Order, offer: Offer
    ) -> matching.Allocation | str:
        """What the bid takes: the free capacity when it fits (a named lease closed meanwhile),
        else that plus the fewest of its still-open named spot leases."""
        if order.tier != Tier.ON_DEMAND:
            return "only an on-demand order pre-empts; this order is spot"
        free = self._free(prov, offer.gpu_uuids)
        fits = matching.allocate(order.group, free)
        if isinstance(fits, matching.Allocation):
            return fits
        holdings = self._spot_holdings(prov, offer.preempts)
        found = spot.plan(order.group, free, self._devices(prov, offer), holdings)
        return fits if found is None else found.allocation

    def _preempt(self, order: Order, winner: Bid, now: int) -> None:
        """The winner's bid makes room by pre-empting spot leases: close them `preempted`,
        billed to now (the container's grace period is the provider's), re-ordered per their
        restart policy. Only those still needed (the same plan _check just accepted)."""
        prov = self.state.providers[winner.provider]
        offer = winner.offer
        free = self._free(prov, offer.gpu_uuids)
        holdings = self._spot_holdings(prov, offer.preempts)
        found = spot.plan(order.group, free, self._devices(prov, offer), holdings)
        if found is None:
            return
        for lease_id in found.lease_ids:
            victim = self.state.leases[lease_id]
            # not the on-demand lease's id: that is another tenant's (reads are private)
            message = "its provider needs the room for an on-demand order"
            self.journal.deployment_event(
                victim.deployment_id,
                DeploymentEventKind.LEASE_PREEMPTED,
                now,
                lease=victim,
                message=message,
            )
            self._close_lease(victim, CloseReason.PREEMPTED, now, now, message)


def _grown(per_group: list[int], groups: int) -> list[int]:
    """`per_group` with room for every group (records stored before it existed are empty)."""
    if len(per_group) < groups:
        per_group.extend([0] * (groups - len(per_group)))
    return per_group


def _excluded_after(lease: Lease) -> str:
    """Who sits out the next order's window: the provider of a lease that never ran."""
    failed = lease.close_reason in (CloseReason.FAILED, CloseReason.MANIFEST_TIMEOUT)
    return lease.provider if failed and not lease.started else ""
