"""Fixtures of the server tests: a throwaway PostgreSQL for the whole session (tests/pgcluster.py),
a fresh database in it per test, and a store of either engine (the contract suite's parameter)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from marketplace.server.store import Store
from marketplace.server.store_api import MarketStore
from marketplace.server.store_pg import PostgresStore
from tests.pgcluster import PgCluster

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL server for the session; it fails (never skips) where PostgreSQL is missing."""
    with PgCluster.start() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(pg_cluster: PgCluster) -> str:
    """An empty database of its own for this test."""
    return pg_cluster.create_database()


# Opens the test's store (the same file or database each call); a PostgreSQL store is made to
# lead when no other does, as the server does before it writes.
StoreOpener = Callable[[], MarketStore]


@pytest.fixture(params=ENGINES)
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster
) -> Iterator[StoreOpener]:
    opened: list[MarketStore] = []
    url = pg_cluster.create_database() if request.param == "postgresql" else ""

    def opener() -> MarketStore:
        store: MarketStore
        if url:
            pg = PostgresStore(url)
            pg.try_lead(f"test {len(opened)}")
            store = pg
        else:
            store = Store(tmp_path / "market.db")
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()
