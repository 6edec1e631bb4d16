"""Nothing waits on the market's event loop behind a read whose work grows with its history.

A real `gpumarket market serve` process on a data dir holding 2,500 closed deployments (each with
its order, two bids, a lease, events and ledger entries; built through the app's own command
path, tests/server/big_market.py). Every read whose work grows with that history (listings,
ledger, audit, price advice, statistics, a closed deployment's events) is called back to back
from two threads, one read at a time, while a gRPC health check and a small signed bid are
timed. Their latency is compared with the same run's unloaded baseline: before these reads
went off the loop, a health check waited 360-750 ms (median) behind one listing at 3,000
deployments (bench/bench_loop.py); it must now stay within a few tens of ms of the baseline.
Generous bounds: the box is shared and loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.core import money
from marketplace.core.state import OrderState, acct_key
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.helpers import funded_tenant
from tests.server.big_market import (
    BigMarket,
    Latency,
    build_history,
    heavy_reads,
    open_order,
    under_load,
)
from tests.server.market_process import MarketProcess

DEPLOYMENTS = 2_500
SECONDS = 1.5  # per read
MEDIAN_SLACK_MS = 60.0  # median health/bid latency under load, above the baseline's
P99_SLACK_MS = 300.0  # p99, above the baseline's (on one listing: 700-4,700 ms before)


@pytest.mark.slow
def test_heavy_reads_leave_health_checks_and_bids_prompt(tmp_path: Path) -> None:
    data = tmp_path / "market"
    with ServerThread(data) as building:
        built = build_history(building, DEPLOYMENTS)
    server = MarketProcess.start(data)
    try:
        address = server.address
        assert built.tenant.key is not None
        big = BigMarket(
            TenantClient(address, built.tenant.key),
            [ProviderClient(address, p.key) for p in built.providers if p.key is not None],
            built.closed,
        )
        assert len(big.tenant.list_deployments(limit=1000)) == 1000  # the history is there
        order_id = open_order(big)
        bidder = big.providers[1]
        reads = heavy_reads(address, server.admin, big)
        base = under_load(address, bidder, order_id, None, SECONDS)
        slow = []
        for name, read in reads.items():
            # a phase is measured again once if it looks slow: a shared box has hiccups of
            # hundreds of ms that hit p99 once; a read that blocks the loop is slow every time
            line = _phase(name, read, base, address, bidder, order_id)
            if line is not None:
                line = _phase(name, read, base, address, bidder, order_id)
            if line is not None:
                slow.append(line)
        assert not slow, "the event loop waited behind heavy reads:\n" + "\n".join(slow)
    finally:
        server.stop()


def _phase(
    name: str,
    read: Callable[[], object],
    base: Latency,
    address: str,
    bidder: ProviderClient,
    order_id: str,
) -> str | None:
    """One read hammered while the probes run: None when they stayed prompt, else what they saw."""
    got = under_load(address, bidder, order_id, read, SECONDS)
    assert got.reads > 0, f"{name}: no read was served"
    line = (
        f"{name}: health p50 {got.health_p50:.0f} p99 {got.health_p99:.0f} ms, "
        f"bid p50 {got.bid_p50:.0f} p99 {got.bid_p99:.0f} ms ({got.reads} reads; "
        f"baseline health {base.health_p50:.0f}/{base.health_p99:.0f}, "
        f"bid {base.bid_p50:.0f}/{base.bid_p99:.0f})"
    )
    print(line)
    prompt = (
        got.health_p50 <= base.health_p50 + MEDIAN_SLACK_MS
        and got.bid_p50 <= base.bid_p50 + MEDIAN_SLACK_MS
        and got.health_p99 <= base.health_p99 + P99_SLACK_MS
        and got.bid_p99 <= base.bid_p99 + P99_SLACK_MS
    )
    return None if prompt else line


def test_listings_page_through_memory_and_store_as_the_core_lists_them(tmp_path: Path) -> None:
    """Listings read only the store's first records a page needs (offloop.first_of_listing),
    merged with memory's: paged 7 at a time they are the core's full listing, for a tenant
    and for a provider, with open deployments before, among and after the closed ones."""
    with ServerThread(tmp_path / "market") as server:
        tenant = funded_tenant(server.address, server.admin, 10**12)
        sdl = gpu_sdl(bid_window="5m", extra=", manual: true")
        tenant.create_deployment(sdl, money.MICRO)  # open, older than the history
        built = build_history(server, 60, tenant=tenant)
        provider = built.providers[0]
        bid_on = tenant.create_deployment(sdl, money.MICRO).order_ids[0]
        provider.place_bid(bid_on, 1_000)
        tenant.create_deployment(sdl, money.MICRO)  # open, newer
        market = server.app.market
        assert provider.key is not None
        as_provider = TenantClient(server.address, provider.key)
        for client in (tenant, as_provider):
            assert client.key is not None
            me = client.key.address
            client.page_size = 7
            is_provider = me in market.state.providers

            def deployments(me: str = me) -> list[str]:
                return [d.id for d in market.list_deployments(me)]

            def orders(me: str = me, is_provider: bool = is_provider) -> list[str]:
                return [
                    o.id
                    for o in market.list_orders()
                    if o.owner == me
                    or market.bid_of(o.id, me) is not None
                    or (is_provider and o.state == OrderState.OPEN)
                ]

            def leases(me: str = me) -> list[str]:
                return [x.id for x in market.list_leases() if me in (x.tenant, x.provider)]

            assert [d.id for d in client.list_deployments()] == server.call(deployments)
            assert [o.id for o in client.list_orders()] == server.call(orders)
            assert [x.id for x in client.list_leases()] == server.call(leases)
            assert len(server.call(leases)) >= 30  # half the history's leases are each's
        admin = MarketClient(server.address, server.admin)
        admin.page_size = 7
        everything = server.call(market.ledger_entries)
        assert len(everything) > 100
        assert [e.id for e in admin.ledger()] == [e.id for e in everything]
        assert tenant.key is not None
        mine = acct_key(tenant.key.address)
        tenant_view = MarketClient(server.address, tenant.key)
        tenant_view.page_size = 7
        theirs = server.call(lambda: market.ledger_entries(mine))
        assert [e.id for e in tenant_view.ledger()] == [e.id for e in theirs]
