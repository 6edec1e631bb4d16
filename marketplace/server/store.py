"""SQLite persistence of the market's state. The only module that imports sqlite3.

One table per record kind (the record as a JSON document plus a few indexed columns), an
append-only ledger, event tables, log lines, and the state's counters. The server writes what
MarketService.drain_changes() returns in ONE transaction before it answers (see app.py), and
loads into a MarketState at start what can still change (open deployments with their orders,
bids, leases, declines and events; accounts, providers, the ledger); the records of closed
deployments, and every SDL and signed request, stay here and are read on demand (Store is the
core's Archive, core/archive.py).

Durability: WAL journal with synchronous=FULL, so a transaction is on disk when commit()
returns: it survives kill -9 and power loss. The server commits groups of commands at once
(group commit), which keeps the fsync cost per command small.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from marketplace.core.attestations import Attestation
from marketplace.core.ledger import Replay
from marketplace.core.provider_audit import InventoryReport
from marketplace.core.state import (
    Account,
    Bid,
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
from marketplace.identity import SeenNonce
from marketplace.server.codec import decode
from marketplace.server.store_api import (
    COUNTERS,
    SCHEMA_VERSION,
    Batch,
    Leadership,
    Row,
    SqlValue,
    StoredLogLine,
    Write,
    attestations_batch,
    changes_batch,
    inventory_reports_batch,
    logs_batch,
    nonces_batch,
    schema_too_new,
)

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "Batch",
    "Store",
    "StoredLogLine",
    "attestations_batch",
    "changes_batch",
    "inventory_reports_batch",
    "logs_batch",
    "make_private",
    "nonces_batch",
]

DB_NAME = "market.db"
# SQLite's companions of a WAL database; it creates them with the database file's mode.
DB_COMPANIONS = ("-wal", "-shm")
PRIVATE_FILE_MODE = 0o600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (address TEXT PRIMARY KEY, balance INTEGER, body TEXT);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, owner TEXT, state TEXT, sdl BLOB, tenant_request BLOB, body TEXT);
CREATE INDEX IF NOT EXISTS deployments_owner ON deployments (owner);
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, deployment_id TEXT, state TEXT, body TEXT);
CREATE TABLE IF NOT EXISTS bids (
    id TEXT PRIMARY KEY, order_id TEXT, provider TEXT, state TEXT, body TEXT);
CREATE INDEX IF NOT EXISTS bids_order ON bids (order_id);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY, deployment_id TEXT, tenant TEXT, provider TEXT, state TEXT, body TEXT);
CREATE TABLE IF NOT EXISTS providers (address TEXT PRIMARY KEY, body TEXT);
CREATE TABLE IF NOT EXISTS declines (
    order_id TEXT, provider TEXT, body TEXT, PRIMARY KEY (order_id, provider));
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY, time_ms INTEGER, debit TEXT, credit TEXT, amount INTEGER,
    memo TEXT, lease_id TEXT);
CREATE TABLE IF NOT EXISTS deployment_events (seq INTEGER PRIMARY KEY, deployment_id TEXT, body TEXT);
CREATE TABLE IF NOT EXISTS provider_events (seq INTEGER PRIMARY KEY, provider TEXT, body TEXT);
CREATE TABLE IF NOT EXISTS logs (
    lease_id TEXT, seq INTEGER, time_ms INTEGER, stream TEXT, line TEXT,
    PRIMARY KEY (lease_id, seq));
CREATE TABLE IF NOT EXISTS nonces (
    public_key BLOB, nonce BLOB, timestamp_ms INTEGER, PRIMARY KEY (public_key, nonce));
CREATE INDEX IF NOT EXISTS nonces_time ON nonces (timestamp_ms);
CREATE TABLE IF NOT EXISTS attestations (
    provider TEXT, auditor TEXT, key TEXT, body TEXT, proof BLOB,
    PRIMARY KEY (provider, auditor, key));
CREATE TABLE IF NOT EXISTS inventory_reports (
    provider TEXT, time_ms INTEGER, body TEXT, PRIMARY KEY (provider, time_ms));

CREATE INDEX IF NOT EXISTS orders_deployment ON orders (deployment_id);
CREATE INDEX IF NOT EXISTS leases_deployment ON leases (deployment_id);
CREATE INDEX IF NOT EXISTS leases_tenant ON leases (tenant);
CREATE INDEX IF NOT EXISTS leases_provider ON leases (provider);
CREATE INDEX IF NOT EXISTS deployment_events_deployment ON deployment_events (deployment_id);
CREATE INDEX IF NOT EXISTS ledger_debit ON ledger (debit);
CREATE INDEX IF NOT EXISTS ledger_credit ON ledger (credit);
"""

_LEDGER_COLUMNS = "id, time_ms, debit, credit, amount, memo, lease_id"
_REPLAY_PAGE = 10_000

# What a market loads: the records of deployments not closed (the closed stay in the archive).
_OPEN_DEPLOYMENTS = "SELECT id FROM deployments WHERE state != 'closed'"
_OPEN_ORDERS = f"SELECT id FROM orders WHERE deployment_id IN ({_OPEN_DEPLOYMENTS})"

# One statement per kind of write (store_api.Write). REPLACE re-inserts a row, so rowid order
# is last-written order: the order of an order's declines, the core's (latest last).
_WRITES: dict[Write, str] = {
    Write.ACCOUNT: "INSERT OR REPLACE INTO accounts VALUES (?,?,?)",
    Write.DEPLOYMENT: "INSERT INTO deployments VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE "
    "SET state=excluded.state, body=excluded.body, "
    # an update in place brings a new SDL and signed request; other writes bring none
    "sdl=iif(length(excluded.sdl) > 0, excluded.sdl, sdl), "
    "tenant_request=iif(length(excluded.tenant_request) > 0, excluded.tenant_request, "
    "tenant_request)",
    Write.ORDER: "INSERT OR REPLACE INTO orders VALUES (?,?,?,?)",
    Write.BID: "INSERT OR REPLACE INTO bids VALUES (?,?,?,?,?)",
    Write.LEASE: "INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?)",
    Write.PROVIDER: "INSERT OR REPLACE INTO providers VALUES (?,?)",
    Write.DECLINE: "INSERT OR REPLACE INTO declines VALUES (?,?,?)",
    Write.LEDGER: "INSERT INTO ledger VALUES (?,?,?,?,?,?,?)",
    Write.DEPLOYMENT_EVENT: "INSERT INTO deployment_events VALUES (?,?,?)",
    Write.PROVIDER_EVENT: "INSERT INTO provider_events VALUES (?,?,?)",
    Write.COUNTER: "INSERT OR REPLACE INTO counters VALUES (?,?)",
    Write.LOG: "INSERT OR REPLACE INTO logs VALUES (?,?,?,?,?)",
    Write.NONCE: "INSERT OR IGNORE INTO nonces VALUES (?,?,?,?,?)",
    Write.OUTCOME: "INSERT INTO nonces VALUES (?,?,?,?,?) ON CONFLICT(public_key, nonce) "
    "DO UPDATE SET outcome=excluded.outcome",
    Write.FORGET_NONCES: "DELETE FROM nonces WHERE timestamp_ms < ?",
    Write.ATTESTATION: "INSERT OR REPLACE INTO attestations VALUES (?,?,?,?,?)",
    Write.INVENTORY_REPORT: "INSERT OR REPLACE INTO inventory_reports VALUES (?,?,?)",
    Write.TRIM_INVENTORY: "DELETE FROM inventory_reports WHERE provider = ? AND time_ms NOT IN "
    "(SELECT time_ms FROM inventory_reports WHERE provider = ? ORDER BY time_ms DESC LIMIT ?)",
}

# A batch's rows of one kind (from every command the committer gathered) go as statements of
# many rows each (VALUES (...),(...)...): one sqlite3_step, so one hand-back of the GIL, per
# statement rather than per row. The server's committer writes on a thread beside a busy event
# loop, where every hand-back waits for the loop to let go of the GIL: row by row, a batch of
# 480 bids (1,440 rows) took 41 ms there; in a few statements, about 28. The rows go in order,
# so a key twice in a batch ends as row by row would leave it. Statements hold a power of two of rows
# (at most MAX_ROWS_PER_STATEMENT, and under SQLite's 32,766 variables), so a few SQL texts,
# prepared once each, cover every batch size.
MAX_ROWS_PER_STATEMENT = 1024
_MAX_VARIABLES = 32_766
_STATEMENT_CACHE = 512  # every (write, rows) text: 17 writes x 11 sizes
_MULTI_ROW = re.compile(r"^(INSERT [^(]*?VALUES )(\(\?(?:,\?)*\))(.*)$", re.DOTALL)


@cache
def _rows_statement(write: Write, count: int) -> str:
    """The statement of `write` for `count` rows at once."""
    match = _MULTI_ROW.match(_WRITES[write])
    assert match is not None, write
    head, row, tail = match.groups()
    return head + ",".join([row] * count) + tail


@cache
def _row_limit(write: Write) -> int:
    """How many rows one statement of `write` takes: 1 for those that are not an insert."""
    match = _MULTI_ROW.match(_WRITES[write])
    if match is None:
        return 1
    columns = match.group(2).count("?")
    return min(MAX_ROWS_PER_STATEMENT, 1 << ((_MAX_VARIABLES // columns).bit_length() - 1))


def _execute(conn: sqlite3.Connection, write: Write, rows: list[Row]) -> None:
    """Write `rows` in order, as few statements as their count's binary digits."""
    limit = _row_limit(write)
    if limit == 1:
        conn.executemany(_WRITES[write], rows)
        return
    start, left = 0, len(rows)
    while left:
        count = min(limit, 1 << (left.bit_length() - 1))  # the largest power of two that fits
        chunk = rows[start : start + count]
        conn.execute(_rows_statement(write, count), [v for row in chunk for v in row])
        start, left = start + count, left - count


# Each schema version after the first, as the script that reaches it from the one before.
# Each schema version after the first (_SCHEMA), as the statements that reach it.
_MIGRATIONS: dict[int, str] = {
    # nonces keep their envelope's digest and what its command came to (server/once.py)
    2: "ALTER TABLE nonces ADD COLUMN digest BLOB; ALTER TABLE nonces ADD COLUMN outcome TEXT;",
}

Decoded = TypeVar("Decoded", Order, Bid, Lease, Decline, DeploymentEvent)


def _deployment(body: str) -> Deployment:
    """A stored deployment without its SDL and signed request (Store.manifest reads them)."""
    return decode(Deployment, {**json.loads(body), "sdl": "", "tenant_request": ""})


def make_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (which would honour the umask, often
    0644), and tighten an existing one and its WAL/SHM files: they hold every tenant's logs."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE))
    for file in (path, *(path.with_name(path.name + end) for end in DB_COMPANIONS)):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(file, PRIVATE_FILE_MODE)


class Store:
    """The market's SQLite file. Writes come from one thread at a time (the server's committer);
    reads use their own connection, which WAL lets run beside a write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        make_private(path)
        self._write = self._connect()
        self._read = self._connect()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        with self._write_lock:
            self._migrate()

    def _migrate(self) -> None:
        """Create the schema in a new file, bring an older one up to SCHEMA_VERSION, and refuse
        a newer one (a newer gpumarket wrote it). One server per file: no one migrates beside."""
        conn = self._write
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise schema_too_new(str(self.path), version)
        if version == 0:
            conn.executescript(_SCHEMA)  # idempotent: IF NOT EXISTS throughout
            version = 1
        for step in range(version + 1, SCHEMA_VERSION + 1):
            conn.executescript(f"BEGIN IMMEDIATE; {_MIGRATIONS[step]} COMMIT;")
        conn.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            check_same_thread=False,
            isolation_level=None,
            cached_statements=_STATEMENT_CACHE,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def describe(self) -> str:
        return f"sqlite {self.path}"

    def leadership(self) -> Leadership | None:
        return None  # one server per file (the data dir's lock): it always leads

    def close(self) -> None:
        with self._write_lock:
            self._write.close()
        with self._read_lock:
            self._read.close()

    # --- writes --------------------------------------------------------------------------------
    def write(self, batch: Batch) -> None:
        """Everything in `batch`, in one transaction: on disk when this returns."""
        if not batch:
            return
        with self._write_lock:
            conn = self._write
            conn.execute("BEGIN IMMEDIATE")
            try:
                for write, rows in batch.grouped().items():  # a kind's rows from all commands
                    _execute(conn, write, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def set_meta(self, key: str, value: str) -> None:
        with self._write_lock:
            self._write.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --- reads ---------------------------------------------------------------------------------
    def _rows(self, sql: str, params: Iterable[SqlValue] = ()) -> list[tuple[Any, ...]]:
        # Any: a row's column types are those of its query, which only the caller knows.
        with self._read_lock:
            return self._read.execute(sql, tuple(params)).fetchall()

    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def load(self, provider_events: int | None = None) -> MarketState:
        """The market state as committed, less what the archive keeps: the records of closed
        deployments, and SDLs and signed requests (left empty). Only the newest
        `provider_events` provider events (all when None)."""
        st = MarketState()
        for (body,) in self._rows("SELECT body FROM accounts"):
            a = decode(Account, json.loads(body))
            st.accounts[a.address] = a
        for (body,) in self._rows(
            "SELECT body FROM deployments WHERE state != 'closed' ORDER BY rowid"
        ):
            dep = _deployment(body)
            st.deployments[dep.id] = dep
        for (body,) in self._rows(
            f"SELECT body FROM orders WHERE id IN ({_OPEN_ORDERS}) ORDER BY rowid"
        ):
            o = decode(Order, json.loads(body))
            st.orders[o.id] = o
        for (body,) in self._rows(
            f"SELECT body FROM bids WHERE order_id IN ({_OPEN_ORDERS}) ORDER BY rowid"
        ):
            b = decode(Bid, json.loads(body))
            st.bids[b.id] = b
        for (body,) in self._rows(
            f"SELECT body FROM leases WHERE deployment_id IN ({_OPEN_DEPLOYMENTS}) ORDER BY rowid"
        ):
            x = decode(Lease, json.loads(body))
            st.leases[x.id] = x
        for (body,) in self._rows("SELECT body FROM providers ORDER BY rowid"):
            p = decode(ProviderRecord, json.loads(body))
            st.providers[p.address] = p
        for (body,) in self._rows(
            f"SELECT body FROM declines WHERE order_id IN ({_OPEN_ORDERS}) ORDER BY rowid"
        ):
            d = decode(Decline, json.loads(body))
            st.declines.setdefault(d.order_id, []).append(d)
        # the ledger is history: it stays here (ledger(), ledger_replay())
        st.deployment_events = [
            decode(DeploymentEvent, json.loads(body))
            for (body,) in self._rows(
                "SELECT body FROM deployment_events "
                f"WHERE deployment_id IN ({_OPEN_DEPLOYMENTS}) ORDER BY seq"
            )
        ]
        newest = -1 if provider_events is None else provider_events
        st.provider_events = [
            decode(ProviderEvent, json.loads(body))
            for (body,) in self._rows(
                "SELECT body FROM (SELECT seq, body FROM provider_events ORDER BY seq DESC "
                "LIMIT ?) ORDER BY seq",
                (newest,),
            )
        ]
        for name, value in self._rows("SELECT name, value FROM counters"):
            if name in COUNTERS:
                setattr(st, name, value)
        return st

    def nonces_since(self, since_ms: int) -> list[SeenNonce]:
        """Accepted nonces whose timestamps are at or after `since_ms`, oldest first."""
        rows = self._rows(
            "SELECT public_key, nonce, timestamp_ms, digest, outcome FROM nonces "
            "WHERE timestamp_ms >= ? "
            "ORDER BY timestamp_ms",
            (since_ms,),
        )
        return [SeenNonce(bytes(k), bytes(n), t, bytes(d or b""), o) for k, n, t, d, o in rows]

    def attestations(self) -> list[Attestation]:
        rows = self._rows("SELECT body, proof FROM attestations ORDER BY provider, auditor, key")
        return [
            decode(Attestation, {**json.loads(body), "proof": ""}).with_proof(bytes(proof))
            for body, proof in rows
        ]

    def inventory_reports(self, provider: str | None = None) -> list[InventoryReport]:
        """A provider's reports, oldest first; every provider's latest when None."""
        if provider is None:
            sql = (
                "SELECT body FROM inventory_reports r WHERE time_ms = (SELECT MAX(time_ms) "
                "FROM inventory_reports WHERE provider = r.provider)"
            )
            rows = self._rows(sql)
        else:
            sql = "SELECT body FROM inventory_reports WHERE provider = ? ORDER BY time_ms"
            rows = self._rows(sql, (provider,))
        return [decode(InventoryReport, json.loads(body)) for (body,) in rows]

    # --- the archive (core/archive.py): closed records, SDLs and signed requests ---------------
    def deployment(self, deployment_id: str) -> Deployment | None:
        rows = self._rows("SELECT body FROM deployments WHERE id = ?", (deployment_id,))
        return _deployment(rows[0][0]) if rows else None

    def closed_deployments(self, owner: str | None) -> list[Deployment]:
        sql = "SELECT body FROM deployments WHERE state = 'closed'"
        rows = (
            self._rows(f"{sql} AND owner = ?", (owner,)) if owner is not None else self._rows(sql)
        )
        return [_deployment(body) for (body,) in rows]

    def order(self, order_id: str) -> Order | None:
        return self._one(Order, "SELECT body FROM orders WHERE id = ?", order_id)

    def closed_orders(self, deployment_id: str | None) -> list[Order]:
        sql = "SELECT body FROM orders WHERE state = 'closed'"
        if deployment_id is None:
            return self._all(Order, sql)
        return self._all(Order, f"{sql} AND deployment_id = ?", deployment_id)

    def bid(self, bid_id: str) -> Bid | None:
        return self._one(Bid, "SELECT body FROM bids WHERE id = ?", bid_id)

    def bids(self, order_id: str) -> list[Bid]:
        return self._all(Bid, "SELECT body FROM bids WHERE order_id = ?", order_id)

    def lease(self, lease_id: str) -> Lease | None:
        return self._one(Lease, "SELECT body FROM leases WHERE id = ?", lease_id)

    def closed_leases(
        self, tenant: str | None, provider: str | None, deployment_id: str | None
    ) -> list[Lease]:
        where = ["state = 'closed'"]
        params: list[SqlValue] = []
        for column, value in (
            ("tenant", tenant),
            ("provider", provider),
            ("deployment_id", deployment_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return self._all(Lease, f"SELECT body FROM leases WHERE {' AND '.join(where)}", *params)

    def declines(self, order_id: str) -> list[Decline]:
        sql = "SELECT body FROM declines WHERE order_id = ? ORDER BY rowid"
        return self._all(Decline, sql, order_id)

    # listings' first records (the sort runs in SQLite, which lets go of the GIL meanwhile)
    def first_closed_deployments(self, owner: str, limit: int) -> list[Deployment]:
        rows = self._rows(
            "SELECT body FROM deployments WHERE state = 'closed' AND owner = ? "
            "ORDER BY CAST(substr(id, 2) AS INTEGER), id LIMIT ?",
            (owner, limit),
        )
        return [_deployment(body) for (body,) in rows]

    def first_closed_orders_of(self, party: str, limit: int) -> list[Order]:
        return self._all(
            Order,
            "SELECT body FROM orders WHERE state = 'closed' AND (deployment_id IN "
            "(SELECT id FROM deployments WHERE owner = ?) OR id IN "
            "(SELECT order_id FROM bids WHERE provider = ?)) "
            "ORDER BY json_extract(body, '$.created_at_ms'), id LIMIT ?",
            party,
            party,
            limit,
        )

    def first_closed_leases_of(self, party: str, limit: int) -> list[Lease]:
        return self._all(
            Lease,
            "SELECT body FROM leases WHERE state = 'closed' AND (tenant = ? OR provider = ?) "
            "ORDER BY json_extract(body, '$.created_at_ms'), id LIMIT ?",
            party,
            party,
            limit,
        )

    def deployment_events(self, deployment_id: str) -> list[DeploymentEvent]:
        sql = "SELECT body FROM deployment_events WHERE deployment_id = ? ORDER BY seq"
        return self._all(DeploymentEvent, sql, deployment_id)

    def manifest(self, deployment_id: str) -> tuple[bytes, bytes]:
        rows = self._rows(
            "SELECT sdl, tenant_request FROM deployments WHERE id = ?", (deployment_id,)
        )
        if not rows:
            return b"", b""
        sdl, request = rows[0]
        return bytes(sdl or b""), bytes(request or b"")

    def ledger(self, key: str, before_id: int, limit: int | None) -> list[LedgerEntry]:
        params: list[SqlValue]
        where, params = "id < ?", [before_id]
        if key:
            where += " AND (debit = ? OR credit = ?)"
            params += [key, key]
        sql = f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [LedgerEntry(*row) for row in reversed(self._rows(sql, params))]

    def first_ledger(self, key: str, before_id: int, limit: int) -> list[LedgerEntry]:
        params: list[SqlValue]
        where, params = "id < ?", [before_id]
        if key:
            where += " AND (debit = ? OR credit = ?)"
            params += [key, key]
        sql = f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} ORDER BY id LIMIT ?"
        return [LedgerEntry(*row) for row in self._rows(sql, [*params, limit])]

    def ledger_replay(self, before_id: int) -> Replay:
        replay, after = Replay(), 0
        while True:  # a page at a time: the whole ledger is never in memory at once
            page = self._rows(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE id > ? AND id < ? ORDER BY id "
                f"LIMIT {_REPLAY_PAGE}",
                (after, before_id),
            )
            replay.add(LedgerEntry(*row) for row in page)
            if len(page) < _REPLAY_PAGE:
                return replay
            after = page[-1][0]

    def _one(self, cls: type[Decoded], sql: str, key: str) -> Decoded | None:
        rows = self._rows(sql, (key,))
        return decode(cls, json.loads(rows[0][0])) if rows else None

    def _all(self, cls: type[Decoded], sql: str, *params: SqlValue) -> list[Decoded]:
        return [decode(cls, json.loads(body)) for (body,) in self._rows(sql, params)]

    def last_log_seqs(self) -> dict[str, int]:
        return dict(self._rows("SELECT lease_id, MAX(seq) FROM logs GROUP BY lease_id"))

    def logs(
        self, lease_id: str, after_seq: int = 0, tail: int = 0, limit: int = 10_000
    ) -> list[StoredLogLine]:
        """Lines of a lease after `after_seq`; only the last `tail` of them when tail > 0."""
        if tail > 0:
            rows = self._rows(
                "SELECT * FROM (SELECT lease_id, seq, time_ms, stream, line FROM logs "
                "WHERE lease_id = ? AND seq > ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                (lease_id, after_seq, min(tail, limit)),
            )
        else:
            rows = self._rows(
                "SELECT lease_id, seq, time_ms, stream, line FROM logs "
                "WHERE lease_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (lease_id, after_seq, limit),
            )
        return [StoredLogLine(*row) for row in rows]
