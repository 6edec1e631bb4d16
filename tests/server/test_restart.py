"""kill -9 in the middle of work loses nothing that was acknowledged, and the market carries on.

The marketplace runs as a real subprocess (`gpumarket market serve`) on a real SQLite file; a
client keeps placing bids while the server is SIGKILLed; a new server on the same data dir must
hold every acknowledged deployment, bid, lease and ledger entry, balance its books, and still
award the auctions that were open.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import money
from marketplace.core.errors import FailedPrecondition, MarketError
from marketplace.core.events import DeploymentEventKind
from marketplace.identity import Key
from marketplace.server.serve import ADMIN_KEY_FILE
from marketplace.server.testing import gpu_sdl, h100_inventory
from tests.helpers import wait_until
from tests.server.market_process import MarketProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "market"


def register(address: str, name: str) -> ProviderClient:
    client = ProviderClient(address, Key.generate())
    client.register(
        pb.RegisterProvider(
            host_uri=f"https://{name}",
            attributes=[pb.Attribute(key="region", value="eu")],
            inventory=h100_inventory(name),
            region="eu",
        )
    )
    return client


def test_kill_9_while_bidding_loses_nothing_acknowledged(data_dir: Path) -> None:
    server = MarketProcess.start(data_dir)
    try:
        admin = TenantClient(server.address, Key.from_pem((data_dir / ADMIN_KEY_FILE).read_bytes()))
        alice_key = Key.generate()
        admin.fund(alice_key.address, 1_000 * money.MICRO)
        alice = TenantClient(server.address, alice_key)
        providers = [register(server.address, f"p{i}") for i in range(8)]

        # one lease that runs before the crash
        first = alice.create_deployment(gpu_sdl(bid_window="100ms"), money.MICRO)
        providers[0].place_bid(first.order_ids[0], 500_000)
        lease_id = next(
            e
            for e in alice.watch_deployment(first.id)
            if e.kind == DeploymentEventKind.LEASE_CREATED
        )
        running = providers[0].report_status(
            pb.LeaseStatusReport(lease_id=lease_id.lease_id, state=pb.LEASE_RUNNING)
        )
        assert running.state == pb.LEASE_RUNNING

        # open auctions, bid on without pause while the server is killed
        open_deps = [
            alice.create_deployment(gpu_sdl(bid_window="4s"), money.MICRO) for _ in range(12)
        ]
        orders = [d.order_ids[0] for d in open_deps]
        acknowledged: list[pb.Bid] = []
        stop = threading.Event()

        def keep_bidding() -> None:
            for round_ in range(1000):
                for i, prov in enumerate(providers[1:]):
                    order = orders[(round_ * 7 + i) % len(orders)]
                    try:
                        acknowledged.append(prov.place_bid(order, 400_000 + i * 1000))
                    except FailedPrecondition:
                        continue
                    except MarketError:
                        if stop.is_set():
                            return
                        continue

        bidder = threading.Thread(target=keep_bidding, daemon=True)
        bidder.start()
        wait_until(lambda: len(acknowledged) >= 40, 20, "40 acknowledged bids", interval=0.01)
        stop.set()
        server.kill9()
        bidder.join(20)
        assert len(acknowledged) >= 40
        before_kill = list(acknowledged)
    finally:
        server.stop()

    server = MarketProcess.start(data_dir)
    try:
        alice = TenantClient(server.address, alice_key)
        market = MarketClient(
            server.address, Key.from_pem((data_dir / ADMIN_KEY_FILE).read_bytes())
        )
        deployments = {d.id for d in alice.list_deployments(owner=alice_key.address)}
        assert {first.id, *(d.id for d in open_deps)} <= deployments
        # bids are sealed while their windows are open: each bidder reads its own
        stored = {
            b.id
            for prov in providers[1:]
            for order in orders
            for b in TenantClient(server.address, prov.key).list_bids(order)
        }
        assert {b.id for b in before_kill} <= stored
        assert alice.get_lease(lease_id.lease_id).state == pb.LEASE_RUNNING
        assert market.audit().balanced
        # fund + first deposit + 12 deposits at least, all still on the books
        assert len(market.ledger()) >= 14
        assert alice.get_account().balance == (1_000 - 13) * money.MICRO

        # the open auctions still award after the restart
        bid_on = next(
            d for d in open_deps if any(b.order_id == d.order_ids[0] for b in before_kill)
        )
        won = next(
            e
            for e in alice.watch_deployment(bid_on.id)
            if e.kind == DeploymentEventKind.LEASE_CREATED
        )
        assert alice.get_lease(won.lease_id).state == pb.LEASE_PENDING
        assert market.audit().balanced
    finally:
        server.stop()
