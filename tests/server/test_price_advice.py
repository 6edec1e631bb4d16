"""`gpumarket provider price-advice` against a real marketplace (gRPC on port 0, SQLite): a
provider that priced itself out of (or under) a week of auctions is told the price that would
have earned it more, the figure it gets is the one a replay of those auctions by the market's
auction code gives, and nobody else may read it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.main import cli
from marketplace.core import auction, money
from marketplace.core.errors import InvalidArgument, NotFound, PermissionDenied
from marketplace.core.events import DeploymentEventKind
from marketplace.core.resources import Payment
from marketplace.core.state import Bid, BidState
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from tests.helpers import funded_tenant

MAX_PER_HOUR = 3 * 10**9  # gpu_sdl(price=5e6 uact a block): big, so a few ms earn something
RIVAL_BIDS = [2_000 * 10**6, 2_200 * 10**6, 1_800 * 10**6, 2_400 * 10**6]  # Q, auction by auction


@dataclass(frozen=True)
class Held:
    """An auction as the test saw it: both bids, in the order placed, and the lease's length."""

    order_id: str
    bids: tuple[pb.Bid, ...]
    length_ms: int
    winner: str
    price: int


@pytest.fixture
def market(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path / "market") as server:
        yield server


def provider(server: ServerThread, name: str) -> tuple[ProviderClient, Key]:
    key = Key.generate()
    client = ProviderClient(server.address, key)
    client.register(provider_registration(name, "eu"))
    return client, key


def trade(
    server: ServerThread, tenant: TenantClient, bidders: list[tuple[ProviderClient, int]]
) -> Held:
    """One auction: each bidder bids its price; the winner runs the lease; the tenant closes it."""
    dep = tenant.create_deployment(gpu_sdl(price=5_000_000), 10**13)
    order_id = dep.order_ids[0]
    for client, price in bidders:
        client.place_bid(order_id, price)
    created = next(
        e for e in tenant.watch_deployment(dep.id) if e.kind == DeploymentEventKind.LEASE_CREATED
    )
    lease = tenant.get_lease(created.lease_id)
    winner = next(c for c, _ in bidders if c.key is not None and c.key.address == lease.provider)
    winner.report_status(pb.LeaseStatusReport(lease_id=lease.id, state=pb.LEASE_RUNNING))
    tenant.close_deployment(dep.id)
    lease = tenant.get_lease(lease.id)
    return Held(
        order_id=order_id,
        bids=tuple(tenant.list_bids(order_id)),
        length_ms=lease.billed_until_ms - lease.running_at_ms,
        winner=lease.provider,
        price=lease.price_per_hour,
    )


def replayed(held: list[Held], me: str, price: int) -> tuple[int, int]:
    """(revenue, leases) had `me` bid `price` on every auction: auction.award over the bids the
    tenant saw, in the order they were placed; one GPU per order, two on the box (no overlap)."""
    revenue = leases = 0
    for h in held:
        bids = [
            Bid(
                b.id,
                b.order_id,
                b.provider,
                b.price_per_hour,
                BidState.OPEN,
                b.created_at_ms,
                b.reliability,
                seq=i,
            )
            if b.provider != me
            else Bid(
                b.id, b.order_id, me, price, BidState.OPEN, b.created_at_ms, b.reliability, seq=i
            )
            for i, b in enumerate(sorted(h.bids, key=lambda b: b.created_at_ms))
        ]
        bids = [b for b in bids if b.price_per_hour <= MAX_PER_HOUR]
        won = auction.award(bids, Payment.FIRST_PRICE, MAX_PER_HOUR)
        if won is not None and won.winner.provider == me:
            revenue += money.accrued(won.price_per_hour, h.length_ms)
            leases += 1
    return revenue, leases


def run(server: ServerThread, key: Key, tmp_path: Path, *args: str) -> Result:
    pem = tmp_path / "provider.pem"
    pem.write_bytes(key.to_pem())
    env = {"GPUMARKET_MARKET": server.address, "GPUMARKET_PROVIDER_KEY": str(pem)}
    return CliRunner().invoke(
        cli, ["provider", "price-advice", *args], env=env, catch_exceptions=False
    )


@pytest.mark.parametrize(
    ("own_price", "why"),
    [(2_500 * 10**6, "too high: it won nothing"), (1_000 * 10**6, "too low: it won at 1.0")],
)
def test_a_provider_gets_the_price_that_would_have_earned_more(
    market: ServerThread, tmp_path: Path, own_price: int, why: str
) -> None:
    tenant = funded_tenant(market.address, market.admin, 10**17)
    (p, p_key), (q, _) = provider(market, "p"), provider(market, "q")
    held = [trade(market, tenant, [(p, own_price), (q, rival)]) for rival in RIVAL_BIDS]
    assert all(h.length_ms > 0 for h in held)  # every lease ran, so every auction earns

    result = run(market, p_key, tmp_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["provider"] == p_key.address
    [h100] = report["models"]
    assert (h100["model"], h100["auctions"], h100["unleased"]) == ("h100", 4, 0)
    assert h100["current_price_per_gpu_hour"] == own_price
    # what it earned is what its leases billed
    mine = [h for h in held if h.winner == p_key.address]
    assert h100["leases_won"] == len(mine)
    assert h100["earned"] == sum(money.accrued(h.price, h.length_ms) for h in mine)
    assert replayed(held, p_key.address, own_price) == (h100["earned"], h100["leases_won"])
    # the advice earns more, and its figure is the replay's at that price
    best = h100["best_price_per_gpu_hour"]
    assert h100["best_revenue"] > h100["earned"], why
    assert replayed(held, p_key.address, best) == (h100["best_revenue"], h100["best_leases_won"]), (
        best,
        held,
    )
    # and no price does better: revenue peaks at or just under a rival's bid or the reserve
    for top in [*RIVAL_BIDS, MAX_PER_HOUR]:
        for price in (top, top - 1):
            assert replayed(held, p_key.address, price)[0] <= h100["best_revenue"]

    table = run(market, p_key, tmp_path).output
    assert "BEST PRICE" in table and "h100" in table and "/GPU-h" in table


def test_only_the_provider_reads_its_advice(market: ServerThread, tmp_path: Path) -> None:
    tenant = funded_tenant(market.address, market.admin, 10**17)
    (p, p_key), (q, q_key) = provider(market, "p"), provider(market, "q")
    trade(market, tenant, [(p, 2_500 * 10**6), (q, 2_000 * 10**6)])
    since = market.app.clock.now_ms() - 3_600_000

    denied = pytest.raises(PermissionDenied, match="your own price advice only")
    for outsider in (Key.generate(), q_key):  # a stranger, and the rival provider
        with MarketClient(market.address, outsider) as client, denied:
            client.price_advice(since, provider=p_key.address)
    unknown = pytest.raises(NotFound, match="not registered")
    with MarketClient(market.address, Key.generate()) as client, unknown:  # no provider at all
        client.price_advice(since)
    with MarketClient(market.address, market.admin) as client:  # the market's admin key may
        assert client.price_advice(since, provider=p_key.address).models[0].auctions == 1
    too_far = pytest.raises(InvalidArgument, match="at most 31 days")
    with MarketClient(market.address, p_key) as client, too_far:  # a window past the limit
        client.price_advice(0)

    stranger = run(market, Key.generate(), tmp_path)
    assert stranger.exit_code == 1
    assert "not registered" in stranger.output and "Traceback" not in stranger.output
