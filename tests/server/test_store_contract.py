"""The store contract (store_api.py), held against both engines: every test runs on SQLite and on
PostgreSQL (a throwaway server, tests/pgcluster.py). What one engine does, the other must."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TypeVar

import pytest

from marketplace.core.attestations import Attestation
from marketplace.core.clock import ManualClock
from marketplace.core.errors import FailedPrecondition
from marketplace.core.ledger import Replay
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.provider_audit import KEEP_REPORTS, GpuReading, InventoryReport
from marketplace.core.state import DeploymentState, Lease, LeaseState, LedgerEntry, Order
from marketplace.identity import SeenNonce
from marketplace.polling import wait_until
from marketplace.server.store import Store
from marketplace.server.store_api import (
    SCHEMA_VERSION,
    Batch,
    Deposed,
    Row,
    SchemaTooNew,
    StoredLogLine,
    Write,
    attestations_batch,
    changes_batch,
    inventory_reports_batch,
    logs_batch,
    nonces_batch,
)
from marketplace.server.store_pg import PostgresStore
from tests.pgcluster import PgCluster, free_port
from tests.server.conftest import StoreOpener
from tests.server.test_store import SDL, run_scenario

CONFIG = MarketConfig(admin_address="admin")
Created = TypeVar("Created", Order, Lease)


def by_creation(records: list[Created]) -> list[Created]:
    """In a listing's order: by creation time, then id."""
    return sorted(records, key=lambda r: (r.created_at_ms, r.id))


def scenario_with_a_closed_deployment(open_store: StoreOpener) -> tuple[MarketService, str]:
    """The persistence scenario of test_store, then one deployment closed (its records leave
    memory for the archive). Returns the market and the closed deployment's id."""
    clock = ManualClock(1_700_000_000_000)
    store = open_store()
    market = MarketService(clock, CONFIG, archive=store)
    run_scenario(market, clock, store)
    closed = market.list_leases(owner="alice")[0].deployment_id
    market.close_deployment("alice", closed)
    store.write(changes_batch(market.drain_changes()))
    market.committed(market.drains)
    assert closed not in market.state.deployments  # left memory: read back from the store
    return market, closed


def test_state_round_trips_through_a_reopened_store(open_store: StoreOpener) -> None:
    market, closed = scenario_with_a_closed_deployment(open_store)
    loaded = open_store().load()
    assert loaded == market.state
    assert closed not in loaded.deployments and loaded.deployments
    for counter in ("total_minted", "next_deployment", "next_ledger_id", "next_event_seq"):
        assert getattr(loaded, counter) == getattr(market.state, counter), counter


def test_only_the_newest_provider_events_load_when_asked(open_store: StoreOpener) -> None:
    scenario_with_a_closed_deployment(open_store)
    every = open_store().load().provider_events
    newest = open_store().load(provider_events=3).provider_events
    assert len(every) > 3 and newest == every[-3:]


def test_archive_reads_answer_as_memory_did(open_store: StoreOpener) -> None:
    market, closed = scenario_with_a_closed_deployment(open_store)
    store = open_store()
    again = MarketService(market.clock, CONFIG, store.load(), store)
    # every read of the closed deployment, through the archive, on a market rebuilt from disk
    for view in (market, again):
        dep = view.get_deployment(closed)
        assert dep.state == DeploymentState.CLOSED
        assert closed in [d.id for d in view.list_deployments(owner="alice")]
        orders = view.list_orders(deployment_id=closed)
        assert orders and all(o.deployment_id == closed for o in orders)
        bids = view.list_bids(orders[0].id)
        assert {b.provider for b in bids} == {"p1", "p2"}
        leases = [x for x in view.list_leases(owner="alice") if x.deployment_id == closed]
        assert leases and all(x.state == LeaseState.CLOSED for x in leases)
    assert again.get_deployment(closed) == market.get_deployment(closed)
    assert again.list_orders(deployment_id=closed) == market.list_orders(deployment_id=closed)
    assert store.closed_deployments("alice") == [store.deployment(closed)]
    assert store.closed_deployments("bob") == []
    assert store.manifest(closed) == (SDL, b"signed")
    assert store.manifest("no-such") == (b"", b"")
    order_id = store.closed_orders(closed)[0].id
    assert [d.provider for d in store.declines(order_id)] == ["p3"]
    events = store.deployment_events(closed)
    assert events and [e.seq for e in events] == sorted(e.seq for e in events)
    lease = store.closed_leases("alice", None, closed)[0]
    assert store.lease(lease.id) == lease
    assert store.closed_leases(None, "nobody", None) == []
    assert store.bid(store.bids(order_id)[0].id) is not None
    assert store.order("no-such") is None and store.deployment("no-such") is None
    # a listing's first records, in its order: the same records, `limit` at most
    assert store.first_closed_deployments("alice", 10) == store.closed_deployments("alice")
    assert store.first_closed_deployments("alice", 0) == []
    alices = by_creation(store.closed_leases("alice", None, None))
    assert store.first_closed_leases_of("alice", 10) == alices
    assert store.first_closed_leases_of("alice", 1) == alices[:1]
    assert store.first_closed_leases_of("p1", 10) == by_creation(
        store.closed_leases(None, "p1", None)
    )
    assert store.first_closed_leases_of("bob", 10) == []
    every = by_creation(store.closed_orders(None))
    assert store.first_closed_orders_of("alice", 10) == [o for o in every if o.owner == "alice"]
    bid_on = [o for o in every if store.bid(f"{o.id}/p2") is not None]
    assert bid_on and store.first_closed_orders_of("p2", 10) == bid_on
    for key in ("", "acct:alice"):
        entries = store.ledger(key, 10**9, None)
        assert len(entries) > 2 and store.first_ledger(key, 10**9, 2) == entries[:2]
        assert store.first_ledger(key, entries[1].id, 10) == entries[:1]
    assert store.first_closed_orders_of("p3", 10) == []  # it declined: not its order


def test_ledger_replays_and_pages(open_store: StoreOpener) -> None:
    market, _ = scenario_with_a_closed_deployment(open_store)
    store = open_store()
    again = MarketService(market.clock, CONFIG, store.load(), store)
    assert again.audit().balanced and market.audit().balanced
    assert again.ledger_entries() == market.ledger_entries()
    end = market.state.next_ledger_id
    entries = store.ledger("", end, None)
    assert [e.id for e in entries] == list(range(1, end))
    assert store.ledger("", end, 2) == entries[-2:]
    alice = store.ledger("acct:alice", end, None)
    assert alice and all("acct:alice" in (e.debit, e.credit) for e in alice)
    replay = store.ledger_replay(end)
    assert replay.entries == end - 1 and not replay.problems
    assert replay == Replay().add(entries)


def test_a_large_ledger_replays_a_page_at_a_time(open_store: StoreOpener) -> None:
    store = open_store()
    count = 25_000  # more than two pages
    batch = Batch()
    batch.add(Write.LEDGER, [(i, i, "admin", "alice", 1, "mint", "") for i in range(1, count + 1)])
    store.write(batch)
    replay = store.ledger_replay(count + 1)
    whole = store.ledger("", count + 1, None)
    assert len(whole) == count and whole[0] == LedgerEntry(1, 1, "admin", "alice", 1, "mint", "")
    assert replay.entries == count and replay.balances == {"admin": -count, "alice": count}
    assert replay.minted == 0  # "admin" is an account here, not the mint


def test_nonces_are_kept_once_and_forgotten_when_old(open_store: StoreOpener) -> None:
    store = open_store()
    seen = [SeenNonce(b"key-a", bytes([i]) * 16, 1_000 + i) for i in range(5)]
    store.write(nonces_batch(seen, forget_before_ms=0))
    store.write(nonces_batch(seen[:2], forget_before_ms=0))  # the same again: kept once
    assert store.nonces_since(0) == seen
    assert store.nonces_since(1_003) == seen[3:]
    later = [SeenNonce(b"key-b", b"n" * 16, 5_000)]
    store.write(nonces_batch(later, forget_before_ms=1_002))
    assert store.nonces_since(0) == seen[2:] + later
    assert open_store().nonces_since(0) == seen[2:] + later


def test_a_nonce_keeps_its_envelope_digest_and_what_its_command_came_to(
    open_store: StoreOpener,
) -> None:
    """The outcome of a command (server/once.py) is kept with its nonce, whichever of the two
    is written first, in one batch or two, and forgotten with it."""
    store = open_store()
    first = SeenNonce(b"key-a", b"1" * 16, 1_000, b"digest-1")
    second = SeenNonce(b"key-a", b"2" * 16, 1_001, b"digest-2")
    store.write(nonces_batch([first, second], forget_before_ms=0))  # accepted, not yet run
    assert [n.outcome for n in store.nonces_since(0)] == [None, None]
    settled = SeenNonce(b"key-a", b"1" * 16, 1_000, b"digest-1", "=D-7")
    store.write(nonces_batch([], forget_before_ms=0, settled=[settled]))  # in a later batch
    # a nonce and its outcome in one batch, the outcome first, then the nonce: both kept
    third = SeenNonce(b"key-b", b"3" * 16, 1_002, b"digest-3", "!NotFound order o-9 not found")
    batch = nonces_batch([], forget_before_ms=0, settled=[third])
    batch.extend(nonces_batch([SeenNonce(b"key-b", b"3" * 16, 1_002, b"digest-3")], 0))
    store.write(batch)
    expected = [settled, second, third]
    assert store.nonces_since(0) == expected
    assert open_store().nonces_since(0) == expected
    store.write(nonces_batch([], forget_before_ms=1_002, settled=[second]))  # forgotten: old
    assert open_store().nonces_since(0) == [third]


def test_sqlite_migrates_a_first_version_store_keeping_its_nonces(tmp_path: Path) -> None:
    path = tmp_path / "market.db"
    with sqlite3.connect(path) as db:  # what gpumarket of schema 1 left
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute(
            "CREATE TABLE nonces (public_key BLOB, nonce BLOB, timestamp_ms INTEGER, "
            "PRIMARY KEY (public_key, nonce))"
        )
        db.execute("INSERT INTO nonces VALUES (?, ?, ?)", (b"k", b"n" * 16, 5))
    store = Store(path)
    assert store.meta("schema_version") == str(SCHEMA_VERSION)
    assert store.nonces_since(0) == [SeenNonce(b"k", b"n" * 16, 5)]  # a resend: refused


def test_postgresql_migrates_a_first_version_store_keeping_its_nonces(
    pg_cluster: PgCluster,
) -> None:
    url = pg_cluster.create_database()
    PostgresStore(url).close()
    name = url.rpartition("/")[2]
    pg_cluster.sql(
        "ALTER TABLE nonces DROP COLUMN digest, DROP COLUMN outcome; "
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'; "
        "INSERT INTO nonces VALUES ('\\x6b', '\\x6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e', 5)",
        name,
    )
    store = PostgresStore(url)
    try:
        assert store.meta("schema_version") == str(SCHEMA_VERSION)
        assert store.nonces_since(0) == [SeenNonce(b"k", b"n" * 16, 5)]
    finally:
        store.close()


def test_logs_keep_order_tail_and_last_seq(open_store: StoreOpener) -> None:
    store = open_store()
    lines = [StoredLogLine("L1", i, 1000 + i, "stdout", f"line {i} ✓") for i in range(1, 11)]
    store.write(logs_batch(lines))
    store.write(logs_batch([StoredLogLine("L2", 1, 5, "stderr", "other")]))
    assert [x.line for x in store.logs("L1", tail=3)] == ["line 8 ✓", "line 9 ✓", "line 10 ✓"]
    assert [x.seq for x in store.logs("L1", after_seq=8)] == [9, 10]
    assert store.logs("L1", limit=2) == lines[:2]
    assert open_store().last_log_seqs() == {"L1": 10, "L2": 1}


def test_attestations_and_inventory_reports_round_trip(open_store: StoreOpener) -> None:
    store = open_store()
    first = Attestation("p1", "aud", "tier", "gold", 1, 10, proof=b"\x00signed")
    store.write(attestations_batch([first, Attestation("p1", "aud", "dc", "x", 1, 10)]))
    revoked = Attestation("p1", "aud", "tier", "gold", 1, 10, revoked_at_ms=5, proof=b"r")
    store.write(attestations_batch([revoked]))
    assert {(a.key, a.revoked_at_ms, a.proof) for a in open_store().attestations()} == {
        ("dc", 0, b""),
        ("tier", 5, b"r"),
    }
    gpu = GpuReading("GPU-1", "NVIDIA H100 80GB HBM3", "h100", 81559, "sxm", "S1")
    reports = [InventoryReport("p1", t, (gpu,), 1000, 2**40, 2**41) for t in range(1, 20)]
    for report in reports:
        store.write(inventory_reports_batch([report]))
    store.write(inventory_reports_batch([InventoryReport("p2", 7, (), 1, 2, 3)]))
    kept = store.inventory_reports("p1")
    assert kept == reports[-KEEP_REPORTS:]
    assert [(r.provider, r.time_ms) for r in store.inventory_reports()] == [("p1", 19), ("p2", 7)]


def test_a_failed_batch_writes_nothing(open_store: StoreOpener) -> None:
    store = open_store()
    store.write(logs_batch([StoredLogLine("L1", 1, 1, "stdout", "kept")]))
    batch = logs_batch([StoredLogLine("L1", 2, 2, "stdout", "never")])
    entry = (1, 1, "admin", "alice", 1, "mint", "")
    batch.add(Write.LEDGER, [entry, entry])  # the same ledger id twice: the batch fails
    with pytest.raises(Exception):  # noqa: B017 - each engine's own integrity error
        store.write(batch)
    assert [x.line for x in open_store().logs("L1")] == ["kept"]
    assert open_store().ledger("", 10, None) == []


def test_a_committed_batch_survives_closing_and_reopening(open_store: StoreOpener) -> None:
    store = open_store()
    lines = [StoredLogLine("L9", i, i, "stdout", "x" * 1000) for i in range(1, 200)]
    store.write(logs_batch(lines))
    store.close()
    assert open_store().logs("L9", limit=1000) == lines


def test_a_store_records_its_schema_version(open_store: StoreOpener) -> None:
    assert open_store().meta("schema_version") == str(SCHEMA_VERSION)
    assert open_store().meta("schema_version") == str(SCHEMA_VERSION)  # reopening keeps it


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    Store(tmp_path / "market.db").close()
    with sqlite3.connect(tmp_path / "market.db") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        Store(tmp_path / "market.db")


def test_postgresql_refuses_a_newer_schema(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database()
    PostgresStore(url).close()
    name = url.rpartition("/")[2]
    pg_cluster.sql(
        f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'", name
    )
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        PostgresStore(url)


# --- leadership and fencing (PostgreSQL only: a SQLite file has one server) --------------------


def test_one_leader_at_a_time_and_a_deposed_one_commits_nothing(postgres_url: str) -> None:
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    try:
        with pytest.raises(Deposed, match="does not lead"):  # no lease, no writes
            first.write(logs_batch([StoredLogLine("L", 1, 1, "stdout", "before leading")]))
        assert first.try_lead("first") == 1
        assert second.try_lead("second") is None  # the lease is held and fresh
        first.write(logs_batch([StoredLogLine("L", 1, 1, "stdout", "by the first")]))
        first.resign()  # a clean stop: the lease is free at once
        assert second.try_lead("second") == 2
        first._term = 1
        with pytest.raises(Deposed, match="term 1 is over"):
            first.write(logs_batch([StoredLogLine("L", 2, 2, "stdout", "by the deposed")]))
        with pytest.raises(Deposed):
            first.renew()
        second.write(logs_batch([StoredLogLine("L", 2, 2, "stdout", "by the second")]))
        assert [x.line for x in second.logs("L")] == ["by the first", "by the second"]
        assert "second leads in term 2" in first.leader()
    finally:
        first.close()
        second.close()


def test_a_lapsed_lease_is_taken_over(postgres_url: str) -> None:
    first = PostgresStore(postgres_url, lease_s=0.5)
    second = PostgresStore(postgres_url, lease_s=0.5)
    try:
        assert first.try_lead("first") == 1
        first.renew()
        assert second.try_lead("second") is None
        # the first stops renewing (hung, paused, cut off): after the lease it is replaced
        wait_until(lambda: second.try_lead("second"), 5, "the standby leads")
        with pytest.raises(Deposed):
            first.renew()
    finally:
        first.close()
        second.close()


def test_a_leader_whose_session_died_is_replaced_at_once(postgres_url: str) -> None:
    first = PostgresStore(postgres_url, lease_s=60)  # a long lease: the session decides
    second = PostgresStore(postgres_url, lease_s=60)
    try:
        assert first.try_lead("first") == 1
        first.close()  # as SIGKILL would: its database session ends, its lease stays fresh
        wait_until(lambda: second.try_lead("second"), 5, "the standby leads")
        assert second.term == 2
    finally:
        second.close()


def test_an_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(FailedPrecondition, match=r"cannot reach postgresql nobody@127\.0\.0\.1"):
        PostgresStore(f"postgresql://nobody:secret@127.0.0.1:{free_port()}/db")


def test_one_key_twice_in_a_batch_leaves_what_the_statements_in_order_would(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    batch = Batch()
    batch.add(Write.COUNTER, [("next_deployment", 5)])
    batch.add(Write.LOG, [("L", 1, 1, "stdout", "first")])
    batch.add(Write.NONCE, [(b"k", b"n", 10, b"d", None)])
    batch.add(Write.DEPLOYMENT, [("D1", "alice", "open", b"sdl", b"signed", "{}")])
    batch.add(Write.COUNTER, [("next_deployment", 7)])  # a replace: the last one stays
    batch.add(Write.LOG, [("L", 1, 2, "stdout", "second")])
    batch.add(Write.NONCE, [(b"k", b"n", 20, b"e", None)])  # kept once: the first one stays
    batch.add(Write.DEPLOYMENT, [("D1", "alice", "closed", b"", b"", "{}")])  # SDL kept
    store.write(batch)
    reopened = open_store()
    assert reopened.load().next_deployment == 7
    assert [x.line for x in reopened.logs("L")] == ["second"]
    assert reopened.nonces_since(0) == [SeenNonce(b"k", b"n", 10, b"d")]
    assert reopened.manifest("D1") == (b"sdl", b"signed")


def test_one_key_twice_in_one_write_of_many_rows_leaves_the_later_row(
    open_store: StoreOpener,
) -> None:
    """SQLite writes many rows per statement (store.py): rows of one kind in one list go in
    their order, across statements too (1,500 rows: more than one statement holds)."""
    store = open_store()
    logs: list[Row] = [("L", i % 700 + 1, i, "stdout", f"line {i}") for i in range(1_500)]
    nonces: list[Row] = [(b"k", i.to_bytes(2, "big") * 8, 10 + i, b"", None) for i in range(1_200)]
    # kept once: the first stays
    nonces.append((b"k", (5).to_bytes(2, "big") * 8, 99_999, b"", None))
    batch = Batch()
    batch.add(Write.COUNTER, [("next_deployment", 5), ("next_bid_seq", 3), ("next_deployment", 9)])
    batch.add(Write.LOG, logs)
    batch.add(Write.NONCE, nonces)
    store.write(batch)
    reopened = open_store()
    state = reopened.load()
    assert (state.next_deployment, state.next_bid_seq) == (9, 3)
    lines = reopened.logs("L", limit=10_000)
    assert [x.seq for x in lines] == list(range(1, 701))
    # the last row of each seq wins: seq s + 1 came from i = s, s + 700 and (s < 100) s + 1400
    assert [x.line for x in lines[:3]] == ["line 1400", "line 1401", "line 1402"]
    assert lines[699].line == "line 1399"
    kept = reopened.nonces_since(0)
    assert len(kept) == 1_200
    assert SeenNonce(b"k", (5).to_bytes(2, "big") * 8, 15) in kept
