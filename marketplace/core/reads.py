"""The market's read side: every query MarketService answers, over its records and indexes.

Nothing here changes the market. MarketService (market.py) is a MarketReads that also takes
commands: it fills the indexes declared here and keeps them in step with the records, so the
rules that hold them together stay in one place. Reads answer from the records as they are (a
read does not run due deadlines first; every command does).

Records of closed deployments leave memory once stored (MarketService.committed): a read looks in
memory first and then in the archive (archive.py), and a list merges the closed records the
archive holds with those in memory, in creation order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from marketplace.core import auction, ledger, money, reliability
from marketplace.core.archive import Archive
from marketplace.core.clock import Clock
from marketplace.core.config import MarketConfig
from marketplace.core.errors import NotFound
from marketplace.core.events import ProviderEventKind
from marketplace.core.journal import Journal, with_records
from marketplace.core.price_history import PriceBucket, bucketed_prices
from marketplace.core.state import (
    Account,
    AuditReport,
    Bid,
    BidState,
    Decline,
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Lease,
    LeaseState,
    LedgerEntry,
    MarketState,
    Order,
    OrderExplanation,
    OrderState,
    PriceStat,
    ProviderEvent,
    ProviderRecord,
)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Rec = TypeVar("Rec", bound=_HasId)


def _merged(
    held: Iterable[Rec], archived: Iterable[Rec], key: Callable[[Rec], tuple[int, str]]
) -> list[Rec]:
    """The records in memory and the archived ones not among them, sorted by `key`."""
    records = list(held)
    ids = {r.id for r in records}
    records += [r for r in archived if r.id not in ids]
    return sorted(records, key=key)


def _deployment_number(dep: Deployment) -> tuple[int, str]:
    """Deployment "D12" → 12: deployments in the order they were created."""
    return (int(dep.id[1:]), dep.id)


def _created(record: Order | Lease) -> tuple[int, str]:
    return (record.created_at_ms, record.id)


class MarketReads:
    """Queries over the records and indexes (MarketService's read side)."""

    def __init__(
        self,
        clock: Clock,
        config: MarketConfig,
        state: MarketState,
        journal: Journal,
        archive: Archive,
    ) -> None:
        self.clock = clock
        self.config = config
        self.state = state
        self.journal = journal
        self.archive = archive  # closed records no longer in memory
        # Indexes over the records, kept by MarketService.
        self._open_orders: dict[str, Order] = {}
        self._order_bids: dict[str, dict[str, Bid]] = {}  # order → provider → its latest bid
        self._dep_leases: dict[str, dict[str, Lease]] = {}  # open leases per deployment
        self._prov_leases: dict[str, dict[str, Lease]] = {}  # open leases per provider
        self._owner_deps: dict[str, dict[str, None]] = {}  # owner → deployment ids, in order
        # (lease created ms, gpu model, per GPU-h): the newest limits.PRICE_POINTS_KEPT
        self._prices: list[tuple[int, str, int]] = []

    # ==== accounts =========================================================================
    def get_account(self, address: str) -> Account:
        """The account (a zero-balance one if it never received anything)."""
        return self.state.accounts.get(address) or Account(address)

    def escrowed(self, address: str) -> int:
        """What `address` holds in the escrows of its open deployments."""
        deps = self.state.deployments
        return sum(
            deps[d].escrow
            for d in self._owner_deps.get(address, [])
            if d in deps and deps[d].state == DeploymentState.ACTIVE
        )

    # ==== deployments ======================================================================
    def get_deployment(self, deployment_id: str) -> Deployment:
        dep = self.state.deployments.get(deployment_id) or self.archive.deployment(deployment_id)
        if dep is None:
            raise NotFound(f"deployment {deployment_id} not found")
        return dep

    def list_deployments(
        self, owner: str | None = None, open_only: bool = False
    ) -> list[Deployment]:
        if owner is not None:
            deps = [self.state.deployments[d] for d in self._owner_deps.get(owner, [])]
        else:
            deps = list(self.state.deployments.values())
        if open_only:
            return [d for d in deps if d.state == DeploymentState.ACTIVE]
        return _merged(deps, self.archive.closed_deployments(owner), _deployment_number)

    def held_deployments(self, owner: str) -> list[Deployment]:
        """The owner's deployments in memory (open, or closed and not yet stored), oldest
        first: a listing's part that memory holds (the store holds the rest)."""
        return [self.state.deployments[d] for d in self._owner_deps.get(owner, [])]

    def escrow_available(self, deployment_id: str) -> int:
        """Escrow left after what its open leases have accrued but not yet settled."""
        dep = self.get_deployment(deployment_id)
        lines = self._billing_lines(dep)
        return max(0, dep.escrow - ledger.due(lines, self.clock.now_ms()))

    def _billing_lines(self, dep: Deployment) -> list[ledger.Billing]:
        return [
            ledger.Billing(lease.price_per_hour, lease.running_at_ms, lease.paid)
            for lease in self._dep_leases.get(dep.id, {}).values()
            if lease.started
        ]

    # ==== orders and bids ==================================================================
    def get_order(self, order_id: str) -> Order:
        order = self.state.orders.get(order_id) or self.archive.order(order_id)
        if order is None:
            raise NotFound(f"order {order_id} not found")
        return order

    def list_orders(self, open_only: bool = False, deployment_id: str | None = None) -> list[Order]:
        if deployment_id is not None:
            dep = self.get_deployment(deployment_id)
            orders = [self.get_order(o) for o in dep.order_ids]
            return [o for o in orders if o.state == OrderState.OPEN] if open_only else orders
        if open_only:
            return list(self._open_orders.values())
        return _merged(self.state.orders.values(), self.archive.closed_orders(None), _created)

    def list_bids(self, order_id: str) -> list[Bid]:
        self.get_order(order_id)
        held = self._order_bids.get(order_id)
        return auction.rank(
            list(held.values()) if held is not None else self.archive.bids(order_id)
        )

    def bid_of(self, order_id: str, provider: str) -> Bid | None:
        """The provider's latest bid on the order, if it bid (also once the order left memory)."""
        held = self._order_bids.get(order_id)
        if held is not None:
            return held.get(provider)
        return self.archive.bid(f"{order_id}/{provider}")

    def get_bid(self, bid_id: str) -> Bid:
        bid = self.state.bids.get(bid_id) or self.archive.bid(bid_id)
        if bid is None:
            raise NotFound(f"bid {bid_id} not found")
        return bid

    def explain_order(self, order_id: str) -> OrderExplanation:
        """The order, its bids, every decline with its reason, and a one-line summary."""
        order = self.get_order(order_id)
        bids = tuple(self.list_bids(order_id))
        if order_id in self.state.orders:
            declines = tuple(self.state.declines.get(order_id, ()))
        else:
            declines = tuple(self.archive.declines(order_id))
        return OrderExplanation(order, bids, declines, self._summary(order, bids, declines))

    def _summary(self, order: Order, bids: tuple[Bid, ...], declines: tuple[Decline, ...]) -> str:
        now = self.clock.now_ms()
        if order.state == OrderState.ACTIVE:
            lease = self.get_lease(order.lease_id)
            return f"leased to {lease.provider} at {money.format_amount(lease.price_per_hour)}/h"
        if order.state == OrderState.CLOSED:
            if order.lease_id:
                lease = self.get_lease(order.lease_id)
                return f"closed: lease {lease.id} ended ({lease.close_reason})"
            return "closed without a lease"
        open_bids = [b for b in bids if b.state == BidState.OPEN]
        if order.auction.manual and open_bids:
            best = open_bids[0]
            return (
                f"{len(open_bids)} open bid(s), waiting for you to accept one (best "
                f"{money.format_amount(best.price_per_hour)}/h from {best.provider})"
            )
        if open_bids and now < order.closes_at_ms:
            return f"{len(open_bids)} bid(s) so far; the auction closes in {order.closes_at_ms - now} ms"
        online = sum(1 for p in self.state.providers.values() if p.online and not p.draining)
        if not declines:
            if now < order.closes_at_ms:
                return f"no bids yet; {online} provider(s) online; window closes in {order.closes_at_ms - now} ms"
            return f"no bids and no declines yet from {online} online provider(s); still open"
        tally: dict[str, int] = {}
        for d in declines:
            tally[d.reason] = tally.get(d.reason, 0) + 1
        top = "; ".join(
            f"{reason} ({n})" for reason, n in sorted(tally.items(), key=lambda x: -x[1])[:3]
        )
        return f"no eligible bid: {len(declines)} provider(s) declined: {top}"

    # ==== leases ===========================================================================
    def get_lease(self, lease_id: str) -> Lease:
        lease = self.state.leases.get(lease_id) or self.archive.lease(lease_id)
        if lease is None:
            raise NotFound(f"lease {lease_id} not found")
        return lease

    def list_leases(
        self,
        owner: str | None = None,
        provider: str | None = None,
        open_only: bool = False,
        deployment_id: str | None = None,
    ) -> list[Lease]:
        if provider is not None and open_only:
            found = list(self._prov_leases.get(provider, {}).values())
        elif deployment_id is not None:
            found = [self.get_lease(x) for x in self.get_deployment(deployment_id).lease_ids]
        elif open_only:
            found = list(self.state.leases.values())
        else:
            archived = self.archive.closed_leases(owner, provider, None)
            found = _merged(self.state.leases.values(), archived, _created)
        return [
            x
            for x in found
            if (owner is None or x.tenant == owner)
            and (provider is None or x.provider == provider)
            and (deployment_id is None or x.deployment_id == deployment_id)
            and (not open_only or x.state != LeaseState.CLOSED)
        ]

    # ==== providers ========================================================================
    def get_provider(self, address: str) -> ProviderRecord:
        prov = self.state.providers.get(address)
        if prov is None:
            raise NotFound(f"provider {address} is not registered")
        return prov

    def list_providers(self) -> list[ProviderRecord]:
        return list(self.state.providers.values())

    def open_lease_count(self, address: str) -> int:
        return len(self._prov_leases.get(address, {}))

    def reliability(self, address: str) -> float:
        """The provider's score in [0, 1] from its history (reliability.py)."""
        return reliability.score(
            self.get_provider(address),
            self.config.reliability_prior_ok,
            self.config.reliability_prior_bad,
        )

    # ==== events ===========================================================================
    def provider_events_after(
        self, address: str, seq: int = 0, limit: int = 1000
    ) -> list[ProviderEvent]:
        """Events for `address` (and broadcasts) with seq > `seq`, oldest first."""
        events = self.state.provider_events
        start = bisect_right(events, seq, key=lambda e: e.seq)
        out: list[ProviderEvent] = []
        for event in events[start:]:
            if event.provider in ("", address):
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    def provider_log_covers(self, seq: int) -> bool:
        """Whether provider_events_after(seq) misses nothing: the events after `seq` are all
        still in memory (the log keeps the newest provider_event_retention)."""
        return seq >= self.journal.trimmed_upto

    def provider_snapshot(self, address: str) -> list[ProviderEvent]:
        """What a provider watching afresh must know, as events outside the log (seq 0): its
        own open leases (provider_leases), then every open order (order_opened). Leases first:
        an agent holds the room its leases take before it looks at any order."""
        opened = [
            ProviderEvent.from_records(0, 0, "", ProviderEventKind.ORDER_OPENED, order=o)
            for o in self._open_orders.values()
            if o.state == OrderState.OPEN
        ]
        return self.provider_leases(address) + opened

    def provider_leases(self, address: str) -> list[ProviderEvent]:
        """The provider's open leases as events outside the log (seq 0): each one (lease_won),
        then those of them running a version older than their deployment's (lease_updated).
        What an agent reconciles with at every (re)connect, whatever its resume token: an
        event it acknowledged but did not act on (killed in between) is not lost."""
        st = self.state
        mine = [
            x for x in self._prov_leases.get(address, {}).values() if x.state != LeaseState.CLOSED
        ]
        won = [
            ProviderEvent.from_records(
                0,
                0,
                address,
                ProviderEventKind.LEASE_WON,
                order=st.orders[x.order_id],
                bid=st.bids.get(x.id),
                lease=x,
            )
            for x in mine
        ]
        # running leases whose deployment was updated since the version they last reported
        updated = [
            ProviderEvent.from_records(
                0, 0, address, ProviderEventKind.LEASE_UPDATED, order=st.orders[x.order_id], lease=x
            )
            for x in mine
            if x.started and self._update_unseen(x)
        ]
        return won + updated

    def _update_unseen(self, lease: Lease) -> bool:
        """The lease's deployment was updated, and its provider has reported neither running
        nor failing to run the current version."""
        current = self.state.deployments[lease.deployment_id].version
        return current > 1 and max(lease.version, lease.failed_version) < current

    def deployment_events_after(self, deployment_id: str, seq: int = 0) -> list[DeploymentEvent]:
        dep = self.get_deployment(deployment_id)
        if deployment_id in self.state.deployments:
            events = self.journal.deployment_events(deployment_id)
        else:
            events = self._archived_events(dep)
        return events[bisect_right(events, seq, key=lambda e: e.seq) :]

    def _archived_events(self, dep: Deployment) -> list[DeploymentEvent]:
        """The stored events of a deployment no longer in memory, carrying their records."""
        orders = {o: self.get_order(o) for o in dep.order_ids}
        leases = {x: self.get_lease(x) for x in dep.lease_ids}
        bids = {b.id: b for o in dep.order_ids for b in self.archive.bids(o)}
        return with_records(self.archive.deployment_events(dep.id), orders, bids, leases)

    # ==== market data ======================================================================
    def price_stats(self, since_ms: int = 0) -> list[PriceStat]:
        """Per GPU model: p10/median/p90 of leases' price per GPU-hour, leases created since."""
        start = bisect_left(self._prices, since_ms, key=lambda p: p[0])
        by_model: dict[str, list[int]] = {}
        for _, model, price in self._prices[start:]:
            by_model.setdefault(model, []).append(price)
        stats = []
        for model, prices in sorted(by_model.items()):
            prices.sort()

            def pick(q: float, prices: list[int] = prices) -> int:
                return prices[min(len(prices) - 1, int(q * len(prices)))]

            stats.append(PriceStat(model, len(prices), pick(0.1), pick(0.5), pick(0.9)))
        return stats

    def price_history(self, since_ms: int, bucket_ms: int) -> tuple[int, list[PriceBucket]]:
        """The kept leases' prices per GPU-hour in buckets of time (price_history.py)."""
        return bucketed_prices(self._prices, since_ms, bucket_ms, self.clock.now_ms())

    def audit(self) -> AuditReport:
        """Ledger vs balances: Σ accounts + escrows == total minted, no negative balance, every
        entry > 0, and (when the ledger is kept) replaying it gives every balance."""
        replay = self.config.keep_ledger and self.config.retain_closed
        stored = self.archive.ledger_replay(self._first_kept_entry()) if replay else None
        return ledger.audit(self.state, replay=replay, stored=stored)

    def ledger_entries(self, key: str = "", limit: int | None = None) -> list[LedgerEntry]:
        """Ledger entries by id, those moving money from or to `key` (an account key such as
        acct_key(address)) when it is not "": the last `limit` of them when given. Stored
        entries come from the archive, the rest from memory."""
        if limit is not None and limit <= 0:
            return []
        held = [e for e in self.state.ledger if not key or key in (e.debit, e.credit)]
        if limit is not None:
            held = held[-limit:]
            if len(held) == limit:
                return held
        wanted = None if limit is None else limit - len(held)
        return self.archive.ledger(key, self._first_kept_entry(), wanted) + held

    def first_kept_entry(self) -> int:
        """The id of the oldest ledger entry in memory; every older one is stored."""
        return self._first_kept_entry()

    def _first_kept_entry(self) -> int:
        """The id of the oldest ledger entry in memory; every older one is stored."""
        kept = self.state.ledger
        return kept[0].id if kept else self.state.next_ledger_id
