"""Provider.WatchOrders, the unary rpc tools use (the agent's channel shares provider_feed with
it): resumed with_leases, the feed starts with the provider's open leases, whatever its token;
without, it starts with what came after the token."""

from __future__ import annotations

from pathlib import Path

from marketplace.core import money
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.helpers import funded_tenant, registered_provider, wait_until


def test_a_resumed_feed_with_leases_starts_with_the_open_leases(tmp_path: Path) -> None:
    with ServerThread(tmp_path) as server:
        tenant = funded_tenant(server.address, server.admin, 10 * money.MICRO)
        assert tenant.key is not None
        owner = tenant.key.address
        provider = registered_provider(server.address, "p1")
        dep = tenant.create_deployment(gpu_sdl(bid_window="100ms"), money.MICRO)
        bid = provider.place_bid(dep.order_ids[0], 1_000)
        lease = wait_until(
            lambda: next(iter(tenant.list_leases(owner=owner)), None), 10, "the lease"
        )
        assert lease.id == bid.id
        # a token past the lease_won, as an agent killed after saving it holds
        token = next(e.seq for e in provider.watch_orders() if e.seq)
        other = tenant.create_deployment(gpu_sdl(bid_window="30s"), money.MICRO)
        listed = next(iter(provider.watch_orders(token, with_leases=True)))
        assert listed.WhichOneof("event") == "lease_won" and listed.lease_won.id == lease.id
        first = next(iter(provider.watch_orders(token)))  # after the token: not the lease again
        assert first.WhichOneof("event") == "order_opened"
        assert first.order_opened.id == other.order_ids[0]
        tenant.close()
        provider.close()
