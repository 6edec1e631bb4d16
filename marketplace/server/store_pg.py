"""PostgreSQL persistence of the market's state, shared by a leader and its standbys. The only
module that imports psycopg (`pip install gpumarket[postgresql]`).

The same tables as the SQLite store (store.py), the same contract (store_api.py). Where SQLite
orders rows by rowid, a `pos` column drawn from one sequence does: set at insert, and drawn
again where SQLite's REPLACE would re-insert the row (an order's declines, latest last).

Durability: synchronous_commit is on for every session (whatever the server's default), so a
commit returns once its WAL is flushed: an acknowledged command survives the server's crash. A
batch is one transaction sent in one round trip (pipeline mode).

Leadership (store_api.Leadership): one row holds the leader's term, name, database session
(backend pid) and when it last renewed its lease. A server leads by bumping the term, which it
may do only when no one leads: the lease was given up, has lapsed (the leader hung, was paused,
or was cut off from the database), or the leader's database session is gone (it was killed).
Every write transaction first locks that row FOR SHARE where the term is still its own
(gpumarket_fence), so a deposed leader's writes fail and commit nothing; a takeover waits for a
write in flight and then sees it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from marketplace.core.attestations import Attestation
from marketplace.core.errors import InvalidArgument
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
    Deposed,
    Leadership,
    Row,
    SqlValue,
    StoredLogLine,
    StoreUnreachable,
    Write,
    schema_too_new,
)

DEFAULT_LEASE_S = 3.0
# Any number, the same in every gpumarket: the transaction lock that serializes migrations.
_MIGRATION_LOCK = 0x67706D6B  # "gpmk"
FENCED = "GMF01"  # the SQLSTATE gpumarket_fence raises

_SCHEMA_V1 = (
    "CREATE SEQUENCE row_pos",
    "CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL)",
    "CREATE TABLE accounts (address text PRIMARY KEY, balance bigint, body text)",
    "CREATE TABLE deployments (id text PRIMARY KEY, owner text, state text, sdl bytea, "
    "tenant_request bytea, body text, pos bigint NOT NULL DEFAULT nextval('row_pos'))",
    "CREATE INDEX deployments_owner ON deployments (owner)",
    "CREATE INDEX deployments_state ON deployments (state)",
    "CREATE TABLE orders (id text PRIMARY KEY, deployment_id text, state text, body text, "
    "pos bigint NOT NULL DEFAULT nextval('row_pos'))",
    "CREATE TABLE bids (id text PRIMARY KEY, order_id text, provider text, state text, "
    "body text, pos bigint NOT NULL DEFAULT nextval('row_pos'))",
    "CREATE INDEX bids_order ON bids (order_id)",
    "CREATE TABLE leases (id text PRIMARY KEY, deployment_id text, tenant text, provider text, "
    "state text, body text, pos bigint NOT NULL DEFAULT nextval('row_pos'))",
    "CREATE TABLE providers (address text PRIMARY KEY, body text, "
    "pos bigint NOT NULL DEFAULT nextval('row_pos'))",
    "CREATE TABLE declines (order_id text, provider text, body text, "
    "pos bigint NOT NULL DEFAULT nextval('row_pos'), PRIMARY KEY (order_id, provider))",
    "CREATE TABLE ledger (id bigint PRIMARY KEY, time_ms bigint, debit text, credit text, "
    "amount bigint, memo text, lease_id text)",
    "CREATE TABLE deployment_events (seq bigint PRIMARY KEY, deployment_id text, body text)",
    "CREATE TABLE provider_events (seq bigint PRIMARY KEY, provider text, body text)",
    "CREATE TABLE logs (lease_id text, seq bigint, time_ms bigint, stream text, line text, "
    "PRIMARY KEY (lease_id, seq))",
    "CREATE TABLE nonces (public_key bytea, nonce bytea, timestamp_ms bigint, "
    "PRIMARY KEY (public_key, nonce))",
    "CREATE INDEX nonces_time ON nonces (timestamp_ms)",
    "CREATE TABLE attestations (provider text, auditor text, key text, body text, proof bytea, "
    "PRIMARY KEY (provider, auditor, key))",
    "CREATE TABLE inventory_reports (provider text, time_ms bigint, body text, "
    "PRIMARY KEY (provider, time_ms))",
    "CREATE INDEX orders_deployment ON orders (deployment_id)",
    "CREATE INDEX leases_deployment ON leases (deployment_id)",
    "CREATE INDEX leases_tenant ON leases (tenant)",
    "CREATE INDEX leases_provider ON leases (provider)",
    "CREATE INDEX deployment_events_deployment ON deployment_events (deployment_id)",
    "CREATE INDEX ledger_debit ON ledger (debit)",
    "CREATE INDEX ledger_credit ON ledger (credit)",
    # one row: who leads, in which term, from which database session, renewed when
    "CREATE TABLE leadership (id int PRIMARY KEY CHECK (id = 1), term bigint NOT NULL, "
    "holder text NOT NULL, holder_pid int, renewed_at timestamptz NOT NULL)",
    "INSERT INTO leadership VALUES (1, 0, '', NULL, '-infinity')",
    f"""CREATE FUNCTION gpumarket_fence(expected bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM leadership WHERE id = 1 AND term = expected FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'term % is over: another server leads', expected
                USING ERRCODE = '{FENCED}';
        END IF;
    END $$""",
)

# Each schema version, as the statements that reach it from the one before.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _SCHEMA_V1,
    2: ("ALTER TABLE nonces ADD COLUMN digest bytea, ADD COLUMN outcome text",),
}


class Keep(Enum):
    """Which of a batch's rows with one key a write keeps (it sends each key once)."""

    ALL = "all"  # plain inserts: a key twice is an error, as in SQLite
    FIRST = "first"  # ON CONFLICT DO NOTHING
    LAST = "last"  # a replace: the last row, where it last came
    DEPLOYMENT = "deployment"  # the first row, with the last one's state and body (and SDL, if any)


@dataclass(frozen=True)
class _Bulk:
    """One statement for all of a batch's rows of one kind: the columns go as arrays and
    unnest() turns them back into rows (far less work per row than a statement each)."""

    sql: str
    key: int  # leading columns that make the key
    keep: Keep


def _bulk(table: str, columns: str, key: int, keep: Keep, moves: bool = False) -> _Bulk:
    """`columns`: NAME TYPE, ...; `moves`: an updated row draws a new pos, as SQLite's REPLACE
    gives a re-inserted row a new rowid."""
    pairs = [c.split() for c in columns.split(",")]
    names = [name for name, _ in pairs]
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in pairs)
    sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({arrays})"
    keys = ", ".join(names[:key])
    if keep == Keep.FIRST:
        sql += f" ON CONFLICT ({keys}) DO NOTHING"
    elif keep != Keep.ALL:
        changed = ("state", "body") if keep == Keep.DEPLOYMENT else names[key:]
        sets = [f"{c} = excluded.{c}" for c in changed]
        if keep == Keep.DEPLOYMENT:  # an update in place brings a new SDL and signed request
            sets += [
                f"{c} = CASE WHEN length(excluded.{c}) > 0 THEN excluded.{c} ELSE {table}.{c} END"
                for c in ("sdl", "tenant_request")
            ]
        if moves:
            sets.append("pos = nextval('row_pos')")
        sql += f" ON CONFLICT ({keys}) DO UPDATE SET {', '.join(sets)}"
    return _Bulk(sql, key, keep)


_NONCE_COLUMNS = "public_key bytea, nonce bytea, timestamp_ms bigint, digest bytea, outcome text"
_BULK: dict[Write, _Bulk] = {
    Write.ACCOUNT: _bulk("accounts", "address text, balance bigint, body text", 1, Keep.LAST),
    Write.DEPLOYMENT: _bulk(
        "deployments",
        "id text, owner text, state text, sdl bytea, tenant_request bytea, body text",
        1,
        Keep.DEPLOYMENT,
    ),
    Write.ORDER: _bulk(
        "orders", "id text, deployment_id text, state text, body text", 1, Keep.LAST, True
    ),
    Write.BID: _bulk(
        "bids", "id text, order_id text, provider text, state text, body text", 1, Keep.LAST, True
    ),
    Write.LEASE: _bulk(
        "leases",
        "id text, deployment_id text, tenant text, provider text, state text, body text",
        1,
        Keep.LAST,
        True,
    ),
    Write.PROVIDER: _bulk("providers", "address text, body text", 1, Keep.LAST, True),
    Write.DECLINE: _bulk("declines", "order_id text, provider text, body text", 2, Keep.LAST, True),
    Write.LEDGER: _bulk(
        "ledger",
        "id bigint, time_ms bigint, debit text, credit text, amount bigint, memo text, "
        "lease_id text",
        1,
        Keep.ALL,
    ),
    Write.DEPLOYMENT_EVENT: _bulk(
        "deployment_events", "seq bigint, deployment_id text, body text", 1, Keep.ALL
    ),
    Write.PROVIDER_EVENT: _bulk(
        "provider_events", "seq bigint, provider text, body text", 1, Keep.ALL
    ),
    Write.COUNTER: _bulk("counters", "name text, value bigint", 1, Keep.LAST),
    Write.LOG: _bulk(
        "logs", "lease_id text, seq bigint, time_ms bigint, stream text, line text", 2, Keep.LAST
    ),
    Write.NONCE: _bulk("nonces", _NONCE_COLUMNS, 2, Keep.FIRST),
    Write.OUTCOME: _bulk("nonces", _NONCE_COLUMNS, 2, Keep.LAST),
    Write.ATTESTATION: _bulk(
        "attestations",
        "provider text, auditor text, key text, body text, proof bytea",
        3,
        Keep.LAST,
    ),
    Write.INVENTORY_REPORT: _bulk(
        "inventory_reports", "provider text, time_ms bigint, body text", 2, Keep.LAST
    ),
}
# the deletes, a statement a row
_DELETES: dict[Write, str] = {
    Write.FORGET_NONCES: "DELETE FROM nonces WHERE timestamp_ms < %s",
    Write.TRIM_INVENTORY: "DELETE FROM inventory_reports WHERE provider = %s AND time_ms NOT IN "
    "(SELECT time_ms FROM inventory_reports WHERE provider = %s ORDER BY time_ms DESC LIMIT %s)",
}


def _once_per_key(rows: list[Row], bulk: _Bulk) -> list[Row]:
    """The rows a batch's statements in order would leave, one per key (see Keep)."""
    if bulk.keep == Keep.ALL:
        return rows
    kept: dict[Row, Row] = {}
    for row in rows:
        key = row[: bulk.key]
        if bulk.keep == Keep.FIRST:
            kept.setdefault(key, row)
        elif bulk.keep == Keep.DEPLOYMENT:
            first = kept.get(key, row)
            blobs = tuple(new or old for new, old in zip(row[3:5], first[3:5], strict=True))
            kept[key] = (*first[:2], row[2], *blobs, row[5])
        else:
            kept.pop(key, None)  # where it last came: a replace moves the row
            kept[key] = row
    return list(kept.values())


_LEDGER_COLUMNS = "id, time_ms, debit, credit, amount, memo, lease_id"
_REPLAY_PAGE = 10_000
_OPEN_DEPLOYMENTS = "SELECT id FROM deployments WHERE state != 'closed'"
_OPEN_ORDERS = f"SELECT id FROM orders WHERE deployment_id IN ({_OPEN_DEPLOYMENTS})"

Decoded = TypeVar("Decoded", Order, Bid, Lease, Decline, DeploymentEvent)


def describe_url(url: str) -> str:
    """The URL in words without its password: `postgresql user@host:port/dbname`."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise InvalidArgument(f"--store: not a PostgreSQL URL ({exc})") from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql {user}{parts.get('host', 'localhost')}{port}/{parts.get('dbname', '')}"


def first_line(exc: BaseException) -> str:
    """libpq's message without its hints (the first line says what failed)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _deployment(body: str) -> Deployment:
    return decode(Deployment, {**json.loads(body), "sdl": "", "tenant_request": ""})


class PostgresStore:
    """The market's PostgreSQL database. Writes come from one thread at a time (the server's
    committer), reads from another connection, leadership from a third (its session is the
    leader's identity in the lease row)."""

    def __init__(self, url: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.url = url
        self.lease_s = lease_s
        self._where = describe_url(url)
        self._write = self._connect()
        try:
            self._read = self._connect()
        except BaseException:
            self._write.close()
            raise
        self._lease: psycopg.Connection[tuple[Any, ...]] | None = None
        self._term: int | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._lease_lock = threading.Lock()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        # A cut-off database fails a call within about a lease, not after the kernel's minutes.
        timeout_s = max(1, round(self.lease_s))
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=timeout_s,
                keepalives=1,
                keepalives_idle=timeout_s,
                keepalives_interval=1,
                keepalives_count=3,
                tcp_user_timeout=timeout_s * 3000,
                # which server a session is, in pg_stat_activity
                application_name=f"gpumarket market serve pid {os.getpid()}",
            )
        except psycopg.OperationalError as exc:
            raise StoreUnreachable(f"cannot reach {self._where}: {first_line(exc)}") from None
        # durable at commit, whatever the server's default says
        conn.execute("SET synchronous_commit = on")
        return conn

    def _migrate(self) -> None:
        """Create the schema in an empty database, bring an older one up to SCHEMA_VERSION, and
        refuse a newer one; servers starting together migrate one after the other."""
        with self._write_lock, self._write.transaction():
            conn = self._write
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise schema_too_new(self._where, version)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def describe(self) -> str:
        return self._where

    def leadership(self) -> Leadership | None:
        return self

    def close(self) -> None:
        for lock, conn in (
            (self._write_lock, self._write),
            (self._read_lock, self._read),
            (self._lease_lock, self._lease),
        ):
            with lock:
                if conn is not None:
                    conn.close()

    # --- leadership ------------------------------------------------------------------------------
    @property
    def term(self) -> int | None:
        return self._term

    # A connection the server dropped (a restart, a cut link) is opened again before its next
    # use, never in the middle of one: a write that failed midway is the caller's to judge.
    def _lease_conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._lease is None or self._lease.closed or self._lease.broken:
            self._lease = self._connect()
        return self._lease

    def _writer(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._write.closed or self._write.broken:
            self._write = self._connect()
        return self._write

    def _reader(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._read.closed or self._read.broken:
            self._read = self._connect()
        return self._read

    def try_lead(self, holder: str) -> int | None:
        with self._lease_lock:
            row = (
                self._lease_conn()
                .execute(
                    "UPDATE leadership SET term = term + 1, holder = %(holder)s, "
                    "holder_pid = pg_backend_pid(), renewed_at = now() "
                    "WHERE id = 1 AND (holder_pid IS NULL "
                    "OR renewed_at < now() - make_interval(secs => %(lease)s) "
                    "OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
                    "WHERE a.pid = leadership.holder_pid)) RETURNING term",
                    {"holder": holder, "lease": self.lease_s},
                )
                .fetchone()
            )
        if row is None:
            return None
        self._term = int(row[0])
        self._reconnect_dropped()  # a standby's idle sessions may not have outlived an outage
        return self._term

    def _reconnect_dropped(self) -> None:
        with self._write_lock:
            self._write = self._alive(self._write)
        with self._read_lock:
            self._read = self._alive(self._read)

    def _alive(
        self, conn: psycopg.Connection[tuple[Any, ...]]
    ) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            conn.execute("SELECT 1")
        except psycopg.OperationalError:
            conn.close()
            return self._connect()
        return conn

    def renew(self) -> None:
        term = self._term
        if term is None:
            raise Deposed("this server does not lead")
        try:
            with self._lease_lock:
                done = (
                    self._lease_conn()
                    .execute(
                        "UPDATE leadership SET renewed_at = now() WHERE id = 1 AND term = %s "
                        "AND holder_pid = pg_backend_pid()",
                        (term,),
                    )
                    .rowcount
                )
        except psycopg.Error as exc:
            self._term = None
            raise Deposed(
                f"lost the database while leading in term {term}: {first_line(exc)}"
            ) from None
        if done != 1:
            self._term = None
            raise Deposed(f"term {term} is over: {self.leader()}")

    def resign(self) -> None:
        term, self._term = self._term, None
        if term is None:
            return
        with self._lease_lock:
            self._lease_conn().execute(
                "UPDATE leadership SET holder_pid = NULL, renewed_at = '-infinity' "
                "WHERE id = 1 AND term = %s",
                (term,),
            )

    def leader(self) -> str:
        rows = self._rows("SELECT term, holder, renewed_at FROM leadership WHERE id = 1")
        if not rows or not rows[0][0]:
            return "no server has led yet"
        term, holder, renewed = rows[0]
        return f"{holder} leads in term {term} (lease renewed {renewed:%H:%M:%S})"

    # --- writes --------------------------------------------------------------------------------
    def write(self, batch: Batch) -> None:
        """Everything in `batch`, in one transaction and one round trip, if this server still
        leads (raises Deposed otherwise, having written nothing): durable when this returns."""
        if not batch:
            return
        term = self._term
        if term is None:
            raise Deposed("this server does not lead: it writes nothing")
        with self._write_lock:
            conn = self._writer()
            try:
                with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                    cur.execute("SELECT gpumarket_fence(%s)", (term,))
                    for write, rows in batch.grouped().items():
                        if write == Write.FORGET_NONCES:  # cutoffs only grow: the last does all
                            cur.execute(_DELETES[write], (max(r[0] or 0 for r in rows),))
                        elif write in _DELETES:
                            cur.executemany(_DELETES[write], rows)
                        else:
                            bulk = _BULK[write]
                            columns = list(zip(*_once_per_key(rows, bulk), strict=True))
                            cur.execute(bulk.sql, [list(c) for c in columns])
            except psycopg.Error as exc:
                if exc.sqlstate == FENCED:
                    self._term = None
                    raise Deposed(f"term {term} is over: another server leads") from None
                raise

    def set_meta(self, key: str, value: str) -> None:
        self.write_meta(key, value)

    def write_meta(self, key: str, value: str) -> None:
        term = self._term
        if term is None:
            raise Deposed("this server does not lead: it writes nothing")
        with self._write_lock, self._writer().transaction():
            self._write.execute("SELECT gpumarket_fence(%s)", (term,))
            self._write.execute(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value",
                (key, value),
            )

    # --- reads ---------------------------------------------------------------------------------
    def _rows(self, sql: str, params: Iterable[SqlValue] = ()) -> list[tuple[Any, ...]]:
        # Any: a row's column types are those of its query, which only the caller knows.
        with self._read_lock:
            return self._reader().execute(sql, tuple(params)).fetchall()

    def meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (key,))
        return rows[0][0] if rows else None

    def load(self, provider_events: int | None = None) -> MarketState:
        """As store.Store.load, from one snapshot of the database."""
        with self._read_lock, self._reader().transaction():
            self._read.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return self._load(self._read, provider_events)

    @staticmethod
    def _load(
        conn: psycopg.Connection[tuple[Any, ...]], provider_events: int | None
    ) -> MarketState:
        def bodies(sql: str, params: tuple[SqlValue, ...] = ()) -> list[Any]:
            return [json.loads(body) for (body,) in conn.execute(sql, params).fetchall()]

        st = MarketState()
        for body in bodies("SELECT body FROM accounts"):
            a = decode(Account, body)
            st.accounts[a.address] = a
        for (body,) in conn.execute(
            "SELECT body FROM deployments WHERE state != 'closed' ORDER BY pos"
        ).fetchall():
            dep = _deployment(body)
            st.deployments[dep.id] = dep
        for body in bodies(f"SELECT body FROM orders WHERE id IN ({_OPEN_ORDERS}) ORDER BY pos"):
            o = decode(Order, body)
            st.orders[o.id] = o
        for body in bodies(
            f"SELECT body FROM bids WHERE order_id IN ({_OPEN_ORDERS}) ORDER BY pos"
        ):
            b = decode(Bid, body)
            st.bids[b.id] = b
        for body in bodies(
            f"SELECT body FROM leases WHERE deployment_id IN ({_OPEN_DEPLOYMENTS}) ORDER BY pos"
        ):
            x = decode(Lease, body)
            st.leases[x.id] = x
        for body in bodies("SELECT body FROM providers ORDER BY pos"):
            p = decode(ProviderRecord, body)
            st.providers[p.address] = p
        for body in bodies(
            f"SELECT body FROM declines WHERE order_id IN ({_OPEN_ORDERS}) ORDER BY pos"
        ):
            d = decode(Decline, body)
            st.declines.setdefault(d.order_id, []).append(d)
        st.deployment_events = [
            decode(DeploymentEvent, body)
            for body in bodies(
                "SELECT body FROM deployment_events "
                f"WHERE deployment_id IN ({_OPEN_DEPLOYMENTS}) ORDER BY seq"
            )
        ]
        st.provider_events = [
            decode(ProviderEvent, body)
            for body in bodies(
                "SELECT body FROM (SELECT seq, body FROM provider_events ORDER BY seq DESC "
                "LIMIT %s) newest ORDER BY seq",
                (provider_events,),
            )
        ]
        for name, value in conn.execute("SELECT name, value FROM counters").fetchall():
            if name in COUNTERS:
                setattr(st, name, int(value))
        return st

    def nonces_since(self, since_ms: int) -> list[SeenNonce]:
        rows = self._rows(
            "SELECT public_key, nonce, timestamp_ms, digest, outcome FROM nonces "
            "WHERE timestamp_ms >= %s "
            "ORDER BY timestamp_ms",
            (since_ms,),
        )
        return [SeenNonce(bytes(k), bytes(n), int(t), bytes(d or b""), o) for k, n, t, d, o in rows]

    def attestations(self) -> list[Attestation]:
        rows = self._rows("SELECT body, proof FROM attestations ORDER BY provider, auditor, key")
        return [
            decode(Attestation, {**json.loads(body), "proof": ""}).with_proof(bytes(proof))
            for body, proof in rows
        ]

    def inventory_reports(self, provider: str | None = None) -> list[InventoryReport]:
        if provider is None:
            rows = self._rows(
                "SELECT body FROM inventory_reports r WHERE time_ms = (SELECT MAX(time_ms) "
                "FROM inventory_reports WHERE provider = r.provider) ORDER BY provider"
            )
        else:
            rows = self._rows(
                "SELECT body FROM inventory_reports WHERE provider = %s ORDER BY time_ms",
                (provider,),
            )
        return [decode(InventoryReport, json.loads(body)) for (body,) in rows]

    # --- the archive (core/archive.py) ---------------------------------------------------------
    def deployment(self, deployment_id: str) -> Deployment | None:
        rows = self._rows("SELECT body FROM deployments WHERE id = %s", (deployment_id,))
        return _deployment(rows[0][0]) if rows else None

    def closed_deployments(self, owner: str | None) -> list[Deployment]:
        sql = "SELECT body FROM deployments WHERE state = 'closed'"
        rows = (
            self._rows(f"{sql} AND owner = %s ORDER BY pos", (owner,))
            if owner is not None
            else self._rows(f"{sql} ORDER BY pos")
        )
        return [_deployment(body) for (body,) in rows]

    def order(self, order_id: str) -> Order | None:
        return self._one(Order, "SELECT body FROM orders WHERE id = %s", order_id)

    def closed_orders(self, deployment_id: str | None) -> list[Order]:
        sql = "SELECT body FROM orders WHERE state = 'closed'"
        if deployment_id is None:
            return self._all(Order, f"{sql} ORDER BY pos")
        return self._all(Order, f"{sql} AND deployment_id = %s ORDER BY pos", deployment_id)

    def bid(self, bid_id: str) -> Bid | None:
        return self._one(Bid, "SELECT body FROM bids WHERE id = %s", bid_id)

    def bids(self, order_id: str) -> list[Bid]:
        return self._all(Bid, "SELECT body FROM bids WHERE order_id = %s ORDER BY pos", order_id)

    def lease(self, lease_id: str) -> Lease | None:
        return self._one(Lease, "SELECT body FROM leases WHERE id = %s", lease_id)

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
                where.append(f"{column} = %s")
                params.append(value)
        sql = f"SELECT body FROM leases WHERE {' AND '.join(where)} ORDER BY pos"
        return self._all(Lease, sql, *params)

    def declines(self, order_id: str) -> list[Decline]:
        sql = "SELECT body FROM declines WHERE order_id = %s ORDER BY pos"
        return self._all(Decline, sql, order_id)

    # listings' first records; ids compare as Python compares them (bytewise: COLLATE "C")
    def first_closed_deployments(self, owner: str, limit: int) -> list[Deployment]:
        rows = self._rows(
            "SELECT body FROM deployments WHERE state = 'closed' AND owner = %s "
            'ORDER BY substr(id, 2)::bigint, id COLLATE "C" LIMIT %s',
            (owner, limit),
        )
        return [_deployment(body) for (body,) in rows]

    def first_closed_orders_of(self, party: str, limit: int) -> list[Order]:
        return self._all(
            Order,
            "SELECT body FROM orders WHERE state = 'closed' AND (deployment_id IN "
            "(SELECT id FROM deployments WHERE owner = %s) OR id IN "
            "(SELECT order_id FROM bids WHERE provider = %s)) "
            "ORDER BY (body::json->>'created_at_ms')::bigint, id COLLATE \"C\" LIMIT %s",
            party,
            party,
            limit,
        )

    def first_closed_leases_of(self, party: str, limit: int) -> list[Lease]:
        return self._all(
            Lease,
            "SELECT body FROM leases WHERE state = 'closed' AND (tenant = %s OR provider = %s) "
            "ORDER BY (body::json->>'created_at_ms')::bigint, id COLLATE \"C\" LIMIT %s",
            party,
            party,
            limit,
        )

    def deployment_events(self, deployment_id: str) -> list[DeploymentEvent]:
        sql = "SELECT body FROM deployment_events WHERE deployment_id = %s ORDER BY seq"
        return self._all(DeploymentEvent, sql, deployment_id)

    def manifest(self, deployment_id: str) -> tuple[bytes, bytes]:
        rows = self._rows(
            "SELECT sdl, tenant_request FROM deployments WHERE id = %s", (deployment_id,)
        )
        if not rows:
            return b"", b""
        sdl, request = rows[0]
        return bytes(sdl or b""), bytes(request or b"")

    def ledger(self, key: str, before_id: int, limit: int | None) -> list[LedgerEntry]:
        params: list[SqlValue]
        where, params = "id < %s", [before_id]
        if key:
            where += " AND (debit = %s OR credit = %s)"
            params += [key, key]
        sql = f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [LedgerEntry(*row) for row in reversed(self._rows(sql, params))]

    def first_ledger(self, key: str, before_id: int, limit: int) -> list[LedgerEntry]:
        params: list[SqlValue]
        where, params = "id < %s", [before_id]
        if key:
            where += " AND (debit = %s OR credit = %s)"
            params += [key, key]
        sql = f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE {where} ORDER BY id LIMIT %s"
        return [LedgerEntry(*row) for row in self._rows(sql, [*params, limit])]

    def ledger_replay(self, before_id: int) -> Replay:
        replay, after = Replay(), 0
        while True:  # a page at a time: the whole ledger is never in memory at once
            page = self._rows(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE id > %s AND id < %s ORDER BY id "
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
        return {
            lease: int(seq)
            for lease, seq in self._rows("SELECT lease_id, MAX(seq) FROM logs GROUP BY lease_id")
        }

    def logs(
        self, lease_id: str, after_seq: int = 0, tail: int = 0, limit: int = 10_000
    ) -> list[StoredLogLine]:
        if tail > 0:
            rows = self._rows(
                "SELECT * FROM (SELECT lease_id, seq, time_ms, stream, line FROM logs "
                "WHERE lease_id = %s AND seq > %s ORDER BY seq DESC LIMIT %s) last ORDER BY seq",
                (lease_id, after_seq, min(tail, limit)),
            )
        else:
            rows = self._rows(
                "SELECT lease_id, seq, time_ms, stream, line FROM logs "
                "WHERE lease_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (lease_id, after_seq, limit),
            )
        return [StoredLogLine(*row) for row in rows]
