"""The journal: what changed since the server last stored the market, and the market's event log.

MarketService (market.py) tells the journal every record it changes (touch), every decline and
ledger entry it adds, and every event it emits. drain() hands all of that over as one Changes,
which the server writes in one transaction (server/store.py) before it answers. The simulator
keeps neither (MarketConfig.journal and record_events off); then MarketService does not call
touch() at all, and the event methods return at once.

Events are numbered from MarketState.next_event_seq (deployment and provider events share the
sequence, which is what a provider's resume token counts) and kept in the MarketState; the
provider log is trimmed to the newest `provider_event_retention`. An event carries the records it
names (events.py); the store keeps only the ids, so the journal attaches the records again to the
events of a loaded state (from the archive, archive.py, for records no longer in memory).

What may leave memory once stored: the journal numbers its drains and remembers, per drain, the
deployments created (their SDL and signed request) and closed (all their records and events) in
it, and its last ledger entry; stored(n) hands back those of drains up to n, which the server has
written, and MarketService.committed() lets them go.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

from marketplace.core.archive import Archive, NullArchive
from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.state import (
    Account,
    Bid,
    Changes,
    Decline,
    Deployment,
    DeploymentEvent,
    Lease,
    LedgerEntry,
    MarketState,
    Order,
    ProviderEvent,
    ProviderRecord,
)

# A record the store keeps one row of, rewritten whenever it changes.
Record: TypeAlias = Account | Deployment | Order | Bid | Lease | ProviderRecord
AnyEvent = TypeVar("AnyEvent", DeploymentEvent, ProviderEvent)


@dataclass(slots=True)
class Stored:
    """What one or more drains held that may leave memory once stored."""

    drain: int  # the last drain it covers
    created: list[Deployment] = field(default_factory=list)  # their SDL and signed request
    closed: list[str] = field(default_factory=list)  # deployment ids: every record and event
    last_entry: int = 0  # ledger entries up to this id


class Journal:
    def __init__(
        self,
        state: MarketState,
        *,
        track_changes: bool,
        record_events: bool,
        provider_event_retention: int,
        archive: Archive | None = None,
    ) -> None:
        self.state = state
        self._archive: Archive = archive or NullArchive()
        self.tracking = track_changes
        self.recording = record_events
        self._retention = provider_event_retention
        # provider events up to this seq left memory: a resume token before it is not served
        # from the log (MarketService.provider_log_covers)
        self.trimmed_upto = 0
        # changed since the last drain: records by (type, key), and what was added
        self._dirty: dict[tuple[type, str], Record] = {}
        self._declines: list[Decline] = []
        self._entries: list[LedgerEntry] = []
        self._deployment_events: list[DeploymentEvent] = []
        self._provider_events: list[ProviderEvent] = []
        self._by_deployment: dict[str, list[DeploymentEvent]] = {}
        # drains so far, and per drain the deployments created and closed in it (while tracking)
        self.drains = 0
        self._created: list[Deployment] = []
        self._closed: list[str] = []
        self._unstored: deque[Stored] = deque()
        self._forgotten: set[str] = set()  # deployments whose events leave state.deployment_events
        self._attach_records()
        if len(state.provider_events) >= provider_event_retention > 0:  # loaded: maybe older ones
            self.trimmed_upto = state.provider_events[0].seq - 1

    # --- changes --------------------------------------------------------------------------
    def touch(self, record: Record) -> None:
        """`record` changed: its row must be written again (called only while tracking)."""
        key = record.address if isinstance(record, Account | ProviderRecord) else record.id
        self._dirty[(type(record), key)] = record

    def declined(self, decline: Decline) -> None:
        if self.tracking:
            self._declines.append(decline)

    def entry_added(self, entry: LedgerEntry) -> None:
        if self.tracking:
            self._entries.append(entry)

    def deployment_created(self, dep: Deployment) -> None:
        if self.tracking:
            self._created.append(dep)

    def awaiting_drain(self, dep: Deployment) -> bool:
        """`dep` was created or updated since the last drain (its SDL is not in a drain yet)."""
        return any(created is dep for created in self._created)

    def deployment_closed(self, deployment_id: str) -> None:
        if self.tracking:
            self._closed.append(deployment_id)

    def stored(self, drain: int) -> Stored:
        """What drains up to `drain` (which the caller has stored) held, each handed back once."""
        done = Stored(drain)
        while self._unstored and self._unstored[0].drain <= drain:
            one = self._unstored.popleft()
            done.created += one.created
            done.closed += one.closed
            done.last_entry = max(done.last_entry, one.last_entry)
        return done

    def drain(self) -> Changes:
        """Records changed, and ledger entries, declines and events added, since the last drain."""
        self.drains += 1
        if self._created or self._closed or self._entries:
            last_entry = self._entries[-1].id if self._entries else 0
            self._unstored.append(Stored(self.drains, self._created, self._closed, last_entry))
            self._created, self._closed = [], []
        changes = Changes(
            declines=self._declines,
            ledger=self._entries,
            deployment_events=self._deployment_events,
            provider_events=self._provider_events,
        )
        self._declines, self._entries = [], []
        self._deployment_events, self._provider_events = [], []
        for record in self._dirty.values():
            if isinstance(record, Lease):
                changes.leases.append(record)
            elif isinstance(record, Bid):
                changes.bids.append(record)
            elif isinstance(record, Order):
                changes.orders.append(record)
            elif isinstance(record, Deployment):
                changes.deployments.append(record)
            elif isinstance(record, Account):
                changes.accounts.append(record)
            else:
                changes.providers.append(record)
        self._dirty.clear()
        st = self.state
        changes.counters = {
            "total_minted": st.total_minted,
            "next_deployment": st.next_deployment,
            "next_ledger_id": st.next_ledger_id,
            "next_event_seq": st.next_event_seq,
            "next_bid_seq": st.next_bid_seq,
        }
        return changes

    # --- events ---------------------------------------------------------------------------
    def deployment_event(
        self,
        deployment_id: str,
        kind: DeploymentEventKind,
        time_ms: int,
        *,
        order: Order | None = None,
        bid: Bid | None = None,
        lease: Lease | None = None,
        message: str = "",
    ) -> None:
        if not self.recording:
            return
        st = self.state
        event = DeploymentEvent.from_records(
            st.next_event_seq,
            time_ms,
            deployment_id,
            kind,
            order=order,
            bid=bid,
            lease=lease,
            message=message,
        )
        st.next_event_seq += 1
        st.deployment_events.append(event)
        self._by_deployment.setdefault(deployment_id, []).append(event)
        if self.tracking:
            self._deployment_events.append(event)

    def provider_event(
        self,
        provider: str,
        kind: ProviderEventKind,
        time_ms: int,
        *,
        order: Order,
        bid: Bid | None = None,
        lease: Lease | None = None,
    ) -> None:
        """Tell `provider` (every provider when "") about `order`."""
        if not self.recording:
            return
        st = self.state
        event = ProviderEvent.from_records(
            st.next_event_seq, time_ms, provider, kind, order=order, bid=bid, lease=lease
        )
        st.next_event_seq += 1
        events = st.provider_events
        events.append(event)
        if len(events) > 2 * self._retention:
            cut = len(events) - self._retention
            self.trimmed_upto = events[cut - 1].seq
            del events[:cut]
        if self.tracking:
            self._provider_events.append(event)

    def deployment_events(self, deployment_id: str) -> list[DeploymentEvent]:
        """The deployment's events, oldest first (the journal's own list: do not change it)."""
        return self._by_deployment.get(deployment_id, [])

    def forget_deployment(self, deployment_id: str) -> None:
        """Drop the deployment's events from memory (compact() takes them out of the state)."""
        if self._by_deployment.pop(deployment_id, None):
            self._forgotten.add(deployment_id)

    def compact(self) -> None:
        """Take the events of forgotten deployments out of state.deployment_events (one pass
        for all of them)."""
        if self._forgotten:
            gone = self._forgotten
            st = self.state
            st.deployment_events = [e for e in st.deployment_events if e.deployment_id not in gone]
            self._forgotten = set()

    def _attach_records(self) -> None:
        """Give the events of a loaded state the records they name, and index them."""
        st = self.state
        st.deployment_events = [self._with_records(e) for e in st.deployment_events]
        st.provider_events = [self._with_records(e) for e in st.provider_events]
        for event in st.deployment_events:
            self._by_deployment.setdefault(event.deployment_id, []).append(event)

    def _with_records(self, event: AnyEvent) -> AnyEvent:
        st, archive = self.state, self._archive
        order = event.order or st.orders.get(event.order_id)
        bid = event.bid or st.bids.get(event.bid_id)
        lease = event.lease or st.leases.get(event.lease_id)
        # records that left memory (a provider event about a closed deployment)
        if order is None and event.order_id:
            order = archive.order(event.order_id)
        if bid is None and event.bid_id:
            bid = archive.bid(event.bid_id)
        if lease is None and event.lease_id:
            lease = archive.lease(event.lease_id)
        if order is event.order and bid is event.bid and lease is event.lease:
            return event
        return dataclasses.replace(event, order=order, bid=bid, lease=lease)


def with_records(
    events: list[DeploymentEvent],
    orders: Mapping[str, Order],
    bids: Mapping[str, Bid],
    leases: Mapping[str, Lease],
) -> list[DeploymentEvent]:
    """Stored events (ids only) carrying the records they name, from these maps."""
    return [
        dataclasses.replace(
            e, order=orders.get(e.order_id), bid=bids.get(e.bid_id), lease=leases.get(e.lease_id)
        )
        for e in events
    ]
