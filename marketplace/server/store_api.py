"""The market's store: one interface, two engines (SQLite by default, PostgreSQL to outlive a host).

What the server writes is a Batch: rows for named writes (Write), serialized on the event loop
from MarketService.drain_changes() and written in ONE transaction before the server answers
(app.py). Each engine maps a Write to its own SQL (store.py for SQLite, store_pg.py for
PostgreSQL) and must keep this contract, which tests/server/test_store_contract.py holds both
to:

- write(batch) returns once the whole batch is durable (committed, synced), or raises and
  writes nothing of it;
- load() gives back the state as committed, less the archive's part (core/archive.py): the
  records of closed deployments, SDLs and signed requests, which the store reads on demand;
- a store refuses a schema newer than it knows (SchemaTooNew), and migrates an older one.

A store several servers share (PostgreSQL) also has a Leadership: one server leads and writes,
the others stand by; a deposed leader's writes are refused (Deposed), never committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeAlias

from marketplace.core.archive import Archive
from marketplace.core.attestations import Attestation
from marketplace.core.errors import FailedPrecondition
from marketplace.core.provider_audit import KEEP_REPORTS, InventoryReport
from marketplace.core.state import EVENT_RECORD_FIELDS, Changes, MarketState
from marketplace.identity import SeenNonce
from marketplace.server.codec import dumps, dumps_without

# The schema this gpumarket writes. Each engine migrates an older store up to it at open, and
# refuses a newer one (written by a newer gpumarket) rather than guess at it.
SCHEMA_VERSION = 2  # 2: nonces keep their envelope's digest and outcome (resends)

# What the writer binds to a statement's placeholders.
SqlValue: TypeAlias = int | float | str | bytes | None
Row: TypeAlias = tuple[SqlValue, ...]

# Large, write-once fields of a Deployment live in their own columns, not in its JSON body,
# so the body (rewritten at every escrow change) stays small.
DEPLOYMENT_BLOBS = ("sdl", "tenant_request")
COUNTERS = ("total_minted", "next_deployment", "next_ledger_id", "next_event_seq", "next_bid_seq")


class Write(StrEnum):
    """A kind of row a batch writes; each engine has one statement per kind."""

    ACCOUNT = "account"  # (address, balance, body): replaces
    DEPLOYMENT = "deployment"  # (id, owner, state, sdl, tenant_request, body): state, body change
    ORDER = "order"  # (id, deployment_id, state, body): replaces
    BID = "bid"  # (id, order_id, provider, state, body): replaces
    LEASE = "lease"  # (id, deployment_id, tenant, provider, state, body): replaces
    PROVIDER = "provider"  # (address, body): replaces
    DECLINE = "decline"  # (order_id, provider, body): replaces, and becomes the order's newest
    LEDGER = "ledger"  # (id, time_ms, debit, credit, amount, memo, lease_id): appends
    DEPLOYMENT_EVENT = "deployment_event"  # (seq, deployment_id, body): appends
    PROVIDER_EVENT = "provider_event"  # (seq, provider, body): appends
    COUNTER = "counter"  # (name, value): replaces
    LOG = "log"  # (lease_id, seq, time_ms, stream, line): replaces
    NONCE = "nonce"  # (public_key, nonce, timestamp_ms, digest, outcome): kept once
    OUTCOME = "outcome"  # (public_key, nonce, timestamp_ms, digest, outcome): sets the outcome
    FORGET_NONCES = "forget_nonces"  # (before_ms,): deletes older ones
    ATTESTATION = "attestation"  # (provider, auditor, key, body, proof): replaces
    INVENTORY_REPORT = "inventory_report"  # (provider, time_ms, body): replaces
    TRIM_INVENTORY = "trim_inventory"  # (provider, provider, keep): keeps the newest `keep`


class SchemaTooNew(FailedPrecondition):
    """The store was written by a newer gpumarket: this one refuses to read or write it."""


class StoreUnreachable(FailedPrecondition):
    """The store's server does not answer (a shared store's database is away)."""


class Deposed(Exception):
    """Another server leads the shared store now: this one's writes are refused (fencing)."""


@dataclass(frozen=True, slots=True)
class StoredLogLine:
    lease_id: str
    seq: int
    time_ms: int
    stream: str
    line: str


@dataclass(slots=True)
class Batch:
    """Rows ready to write: serialized on the event loop, written later on the writer thread
    (records go on changing in memory meanwhile, so they must not be read there)."""

    statements: list[tuple[Write, list[Row]]] = field(default_factory=list)

    def add(self, write: Write, rows: list[Row]) -> None:
        if rows:
            self.statements.append((write, rows))

    def extend(self, other: Batch) -> None:
        self.statements.extend(other.statements)

    def __bool__(self) -> bool:
        return bool(self.statements)

    def grouped(self) -> dict[Write, list[Row]]:
        """The rows by kind, each kind where it first came, its rows in order: what one
        statement per kind writes. Nothing in one kind depends on a later kind (reports before
        their trim, nonces before they are forgotten)."""
        groups: dict[Write, list[Row]] = {}
        for write, rows in self.statements:
            if write in groups:
                groups[write].extend(rows)
            else:
                groups[write] = list(rows)
        return groups


def changes_batch(changes: Changes) -> Batch:
    """Serialize a drain of MarketService into rows."""
    b = Batch()
    b.add(Write.ACCOUNT, [(a.address, a.balance, dumps(a)) for a in changes.accounts])
    b.add(
        Write.DEPLOYMENT,
        [
            (
                d.id,
                d.owner,
                d.state.value,
                d.sdl,
                d.tenant_request,
                dumps_without(d, DEPLOYMENT_BLOBS),
            )
            for d in changes.deployments
        ],
    )
    b.add(
        Write.ORDER,
        [(o.id, o.deployment_id, o.state.value, dumps(o)) for o in changes.orders],
    )
    b.add(
        Write.BID,
        [(x.id, x.order_id, x.provider, x.state.value, dumps(x)) for x in changes.bids],
    )
    b.add(
        Write.LEASE,
        [
            (x.id, x.deployment_id, x.tenant, x.provider, x.state.value, dumps(x))
            for x in changes.leases
        ],
    )
    b.add(Write.PROVIDER, [(p.address, dumps(p)) for p in changes.providers])
    # the core keeps one decline per (order, provider), the latest last
    b.add(Write.DECLINE, [(d.order_id, d.provider, dumps(d)) for d in changes.declines])
    b.add(
        Write.LEDGER,
        [
            (e.id, e.time_ms, e.debit, e.credit, e.amount, e.memo, e.lease_id)
            for e in changes.ledger
        ],
    )
    b.add(
        Write.DEPLOYMENT_EVENT,
        [
            (e.seq, e.deployment_id, dumps_without(e, EVENT_RECORD_FIELDS))
            for e in changes.deployment_events
        ],
    )
    b.add(
        Write.PROVIDER_EVENT,
        [
            (e.seq, e.provider, dumps_without(e, EVENT_RECORD_FIELDS))
            for e in changes.provider_events
        ],
    )
    b.add(Write.COUNTER, [(k, v) for k, v in changes.counters.items()])
    return b


def logs_batch(lines: Sequence[StoredLogLine]) -> Batch:
    b = Batch()
    b.add(Write.LOG, [(x.lease_id, x.seq, x.time_ms, x.stream, x.line) for x in lines])
    return b


def nonces_batch(
    seen: Sequence[SeenNonce], forget_before_ms: int, settled: Sequence[SeenNonce] = ()
) -> Batch:
    """Accepted nonces (replay protection across restarts) and the outcomes of their commands
    (a resend's answer: server/once.py), and forget those too old to matter. A nonce and its
    outcome may come in either order, in one batch or two: the outcome is kept either way."""
    b = Batch()
    b.add(Write.NONCE, [_nonce_row(n) for n in seen])
    b.add(Write.OUTCOME, [_nonce_row(n) for n in settled])
    if seen or settled:
        b.add(Write.FORGET_NONCES, [(forget_before_ms,)])
    return b


def _nonce_row(n: SeenNonce) -> Row:
    return (n.public_key, n.nonce, n.timestamp_ms, n.digest, n.outcome)


def attestations_batch(attestations: Sequence[Attestation]) -> Batch:
    """Auditors' signatures (a re-signed or revoked one replaces its row)."""
    b = Batch()
    b.add(
        Write.ATTESTATION,
        [
            (a.provider, a.auditor, a.key, dumps_without(a, ("proof",)), a.proof)
            for a in attestations
        ],
    )
    return b


def inventory_reports_batch(reports: Sequence[InventoryReport]) -> Batch:
    """Providers' distinct inventories; only the newest KEEP_REPORTS per provider are kept."""
    b = Batch()
    b.add(Write.INVENTORY_REPORT, [(r.provider, r.time_ms, dumps(r)) for r in reports])
    b.add(
        Write.TRIM_INVENTORY,
        [(p, p, KEEP_REPORTS) for p in sorted({r.provider for r in reports})],
    )
    return b


def schema_too_new(where: str, version: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{where} has schema version {version}, newer than this gpumarket knows "
        f"({SCHEMA_VERSION}): it was written by a newer gpumarket; upgrade gpumarket to serve it"
    )


class Leadership(Protocol):
    """Who writes a store several servers share: one leader at a time, by a lease in the
    database and a term that grows with every new leader. Every write of the leader checks its
    term in the same transaction, so a deposed leader commits nothing (raises Deposed)."""

    @property
    def term(self) -> int | None:
        """The term this server leads in; None while it does not lead."""
        ...

    def try_lead(self, holder: str) -> int | None:
        """Lead if no one does (the lease is free, has lapsed, or its holder's database session
        ended); returns the new term, or None when another server leads."""
        ...

    def renew(self) -> None:
        """Extend this leader's lease; raises Deposed when another server leads now."""
        ...

    def resign(self) -> None:
        """Give the lease up at once (a clean stop), so a standby takes over without waiting."""
        ...

    def leader(self) -> str:
        """Who holds the lease, in words (for a standby's log)."""
        ...


class MarketStore(Archive, Protocol):
    """What the server keeps its state in. Writes come from one thread at a time (the server's
    committer); reads may run beside a write."""

    def describe(self) -> str:
        """The store in words for the log, e.g. `sqlite /path/market.db` (no password)."""
        ...

    def leadership(self) -> Leadership | None:
        """The lease of a store several servers share; None for one only this server opens."""
        ...

    def write(self, batch: Batch) -> None:
        """Everything in `batch`, in one transaction: durable when this returns."""
        ...

    def close(self) -> None: ...

    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def load(self, provider_events: int | None = None) -> MarketState:
        """The market state as committed, less what the archive keeps: the records of closed
        deployments, and SDLs and signed requests (left empty). Only the newest
        `provider_events` provider events (all when None)."""
        ...

    def nonces_since(self, since_ms: int) -> list[SeenNonce]:
        """Accepted nonces whose timestamps are at or after `since_ms`, oldest first."""
        ...

    def attestations(self) -> list[Attestation]: ...

    def inventory_reports(self, provider: str | None = None) -> list[InventoryReport]:
        """A provider's reports, oldest first; every provider's latest when None."""
        ...

    def last_log_seqs(self) -> dict[str, int]: ...

    def logs(
        self, lease_id: str, after_seq: int = 0, tail: int = 0, limit: int = 10_000
    ) -> list[StoredLogLine]:
        """Lines of a lease after `after_seq`; only the last `tail` of them when tail > 0."""
        ...
