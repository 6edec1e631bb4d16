"""Clients given several marketplace addresses fail over between them by themselves, against
real `market serve` processes: a dead first address, a standby answering "not the leader",
a market SIGKILLed mid-session while the CLI retries to a copy of it (same data, same id: the
stand-in for a hot standby taking over), and two different markets, which are never mixed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from marketplace.api.addresses import AddressRing, parse_addresses
from marketplace.api.client import MarketClient, MarketUnavailable, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import InvalidArgument, MarketError
from marketplace.identity import Key
from marketplace.server.testing import gpu_sdl
from tests.helpers import closed_port, funded_tenant
from tests.server.market_process import MarketProcess

CLI = [sys.executable, "-c", "from marketplace.cli.main import main; main()"]


class NotTheLeader(grpc.GenericRpcHandler):
    """What a standby answers every call with (see issue 14): UNAVAILABLE, not the leader."""

    def __init__(self) -> None:
        self.calls = 0

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        def refuse(_request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "standby: not the leader")
            raise AssertionError("abort returns by raising")

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.fixture
def standby() -> Iterator[tuple[str, NotTheLeader]]:
    handler = NotTheLeader()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", handler
    finally:
        server.stop(grace=None)


@pytest.fixture
def market(tmp_path: Path) -> Iterator[MarketProcess]:
    with MarketProcess.start(tmp_path / "market") as running:
        yield running


def cli(market: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPUMARKET_MARKET": market, "GPUMARKET_KEY": "alice"}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_address_lists_parse_and_refuse_blanks() -> None:
    assert parse_addresses(" a:1, b:2 ,a:1") == ("a:1", "b:2")
    assert parse_addresses(["a:1", "b:2,c:3"]) == ("a:1", "b:2", "c:3")
    with pytest.raises(InvalidArgument, match="empty entry"):
        parse_addresses("a:1,,b:2")
    ring = AddressRing.parse("a:1,b:2")
    assert (ring.advance(), ring.round_done, ring.advance(), ring.round_done) == (
        "b:2",
        False,
        "a:1",
        True,
    )


def test_a_dead_first_address_is_passed_over_and_the_live_one_kept(
    market: MarketProcess,
) -> None:
    dead = closed_port()
    tenant = funded_tenant(f"{dead},{market.address}", market.admin, 50_000_000)
    with tenant:
        made = tenant.create_deployment(gpu_sdl(), deposit=1_000_000)
        assert tenant.address == market.address
        assert [d.id for d in tenant.list_deployments()] == [made.id]
        assert tenant.ring.moves == 0  # stuck to the live one: no more tries of the dead one
        assert tenant.market_id == market.admin.address


def test_a_standby_answering_not_the_leader_is_passed_over(
    market: MarketProcess, standby: tuple[str, NotTheLeader]
) -> None:
    address, handler = standby
    with MarketClient(f"{address},{market.address}") as client:
        assert client.info().market_id == market.admin.address
        assert client.address == market.address
    assert handler.calls >= 1
    with MarketClient(address, failover_s=1) as alone, pytest.raises(MarketUnavailable):
        alone.info()  # one address: its answer is the answer
    both_away = f"{address},{closed_port()}"
    started = time.monotonic()
    with (
        MarketClient(both_away, failover_s=1) as nowhere,
        pytest.raises(MarketUnavailable, match=f"marketplace at {both_away}:"),
    ):
        nowhere.info()
    assert time.monotonic() - started < 5  # tried within its budget, then gave up


def test_the_cli_takes_several_addresses(market: MarketProcess, tmp_path: Path) -> None:
    both = f"{closed_port()},{market.address}"
    admin = tmp_path / "admin.pem"
    admin.write_bytes(market.admin.to_pem())
    funded = cli(both, "account", "fund", "me", "3", "--admin-key", str(admin))
    assert funded.returncode == 0, funded.stderr
    shown = cli(both, "account", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["balance"] == 3_000_000
    blank = cli(f"{market.address},,", "account", "show")
    assert blank.returncode == 1 and "Traceback" not in blank.stderr
    assert blank.stderr.strip().splitlines() == [
        f"Error: marketplace address list '{market.address},,' has an empty entry: "
        "give HOST:PORT[,HOST:PORT...]"
    ]


def test_a_market_killed_mid_session_fails_over_to_its_standby(tmp_path: Path) -> None:
    """The leader dies; its standby (a copy of its data: same id, same admin key) comes up on
    its own address while a client and the CLI are already retrying; both carry on there, with
    the state the leader had acknowledged."""
    second = closed_port()
    with MarketProcess.start(tmp_path / "a") as first:
        both = f"{first.address},{second}"
        tenant = funded_tenant(both, first.admin, 50_000_000)
        assert tenant.key is not None
        pem = tmp_path / "tenant.pem"
        pem.write_bytes(tenant.key.to_pem())
        kept = tenant.create_deployment(gpu_sdl(), deposit=2_000_000)
        first.kill9()
        shutil.copytree(first.data_dir, tmp_path / "b")
        listed: list[list[pb.Deployment]] = []
        retrying = threading.Thread(target=lambda: listed.append(tenant.list_deployments()))
        retrying.start()
        env = {**os.environ, "GPUMARKET_MARKET": both, "GPUMARKET_KEY": str(pem)}
        shown = subprocess.Popen(
            [*CLI, "account", "show", "--json"], stdout=subprocess.PIPE, text=True, env=env
        )
        with MarketProcess.start(tmp_path / "b", listen=second) as standby:
            out, _ = shown.communicate(timeout=60)
            assert shown.returncode == 0
            assert json.loads(out)["balance"] == 48_000_000  # 50 funded, 2 in escrow
            retrying.join(timeout=60)
            assert [[d.id for d in found] for found in listed] == [[kept.id]]
            # the client sticks to the standby, and what it seals stays valid there
            assert tenant.address == standby.address
            more = tenant.create_deployment(gpu_sdl(), deposit=1_000_000)
            assert {d.id for d in tenant.list_deployments()} == {kept.id, more.id}
        tenant.close()


def test_two_different_markets_are_never_mixed(tmp_path: Path) -> None:
    with (
        MarketProcess.start(tmp_path / "a") as first,
        MarketProcess.start(tmp_path / "c") as other,
    ):
        tenant = funded_tenant(f"{first.address},{other.address}", first.admin, 5_000_000)
        with tenant:
            tenant.get_account()
            first.kill9()
            with pytest.raises(MarketError, match="different markets") as refused:
                tenant.get_account()
            assert str(refused.value) == (
                f"the marketplaces at {first.address} (id {first.admin.address}) and "
                f"{other.address} (id {other.admin.address}) are different markets: list only "
                "addresses of one marketplace (its leader and standbys)"
            )
        with TenantClient(other.address, Key.generate()) as outsider:
            assert outsider.get_account().balance == 0  # nothing of the first reached it
        # a fresh command learns its market from the first address that answers: one market
        fresh = cli(f"{first.address},{other.address}", "account", "show", "--json")
        assert fresh.returncode == 0, fresh.stderr
