"""The price chart draws the market's own record (Market.GetPriceHistory), so a console started
after the leases cleared still shows them (issue 15, item 5)."""

from __future__ import annotations

import pytest

from marketplace.api.client import MarketClient
from marketplace.core.errors import InvalidArgument
from marketplace.server.testing import gpu_sdl
from tests.console.conftest import Browserless, funded_key, running_console
from tests.helpers import funded_tenant, registered_provider, wait_until
from tests.server.market_process import MarketProcess


def test_a_new_console_draws_prices_cleared_before_it_started(market: MarketProcess) -> None:
    tenant = funded_tenant(market.address, market.admin, 10**9)
    provider = registered_provider(market.address, "early")
    try:
        dep = tenant.create_deployment(gpu_sdl("300ms"), 10**7)
        provider.place_bid(dep.order_ids[0], 4_000)
        wait_until(lambda: tenant.get_deployment(dep.id).lease_ids, 30, "the lease")
        with MarketClient(market.address) as public:
            history = public.price_history(0, 60_000)
            assert history.bucket_ms == 60_000
            [bucket] = history.buckets
            assert [(s.model, s.samples, s.median) for s in bucket.gpu_prices] == [
                ("h100", 1, 4_000)
            ]
            with pytest.raises(InvalidArgument, match="minimum"):
                public.price_history(0, 1_000)
        with running_console(market.address, funded_key(market)) as console:
            wait_until(lambda: console.api.sampler.latest()[1], 10, "the first market reading")
            doc = Browserless(console.url).get("/api/market").doc
            [point] = doc["history"]
            assert point["prices"]["h100"]["median"] == 4_000
            assert point["leases_hour"] == 60  # one lease in a minute's bucket
    finally:
        provider.close()
        tenant.close()
