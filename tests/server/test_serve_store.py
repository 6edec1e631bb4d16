"""`market serve --store`: each engine by its URL, and every refusal in one line (a bad URL, an
unreachable database, a schema from a newer gpumarket, a standby holding another market's key)."""

from __future__ import annotations

import stat
from pathlib import Path

from marketplace.api.client import TenantClient
from marketplace.core import money
from marketplace.identity import Key
from marketplace.server.store_api import SCHEMA_VERSION
from marketplace.server.store_pg import PostgresStore
from tests.pgcluster import PgCluster, free_port
from tests.server.market_process import MarketProcess, refused_start


def test_sqlite_store_at_a_path_of_its_own(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "books.db"
    with MarketProcess.start(tmp_path / "market", "--store", f"sqlite:{db}") as market:
        with TenantClient(market.address, market.admin) as admin:
            admin.fund(Key.generate().address, money.MICRO)
        assert f"store: sqlite {db}" in market.stop()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert not (tmp_path / "market" / "market.db").exists()


def test_a_store_url_of_no_known_engine_is_one_line(tmp_path: Path) -> None:
    code, lines = refused_start("--data-dir", str(tmp_path / "m"), "--store", "mysql://db/x")
    assert code != 0 and len(lines) == 1, lines
    assert "use sqlite:PATH or postgresql://" in lines[0]


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://market:hunter2@127.0.0.1:{port}/books"
    code, lines = refused_start("--data-dir", str(tmp_path / "m"), "--store", url)
    assert code != 0 and len(lines) == 1, lines
    assert (
        f"cannot reach postgresql market@127.0.0.1:{url.split(':')[3].split('/')[0]}/books"
        in lines[0]
    )
    assert "hunter2" not in lines[0]


def test_a_database_from_a_newer_gpumarket_is_refused(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    url = pg_cluster.create_database()
    PostgresStore(url).close()
    pg_cluster.sql(
        f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'",
        url.rpartition("/")[2],
    )
    code, lines = refused_start("--data-dir", str(tmp_path / "m"), "--store", url)
    assert code != 0 and len(lines) == 1, lines
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this gpumarket" in lines[0]


def test_a_standby_with_another_markets_key_is_refused(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    url = pg_cluster.create_database()
    with MarketProcess.start(tmp_path / "a", "--store", url) as leader:
        code, lines = refused_start("--data-dir", str(tmp_path / "b"), "--store", url)
        assert code != 0 and len(lines) == 1, lines
        assert f"holds the market of admin {leader.admin.address}" in lines[0]
        assert "--admin-key" in lines[0]
