"""The market's cache of allocate() verdicts (MarketService._fits), keyed by what a provider's
leases hold, answers exactly what a fresh allocate() on the provider's free capacity would, over
random sequences of market commands (test_market_property's machine, with one more invariant)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant

from marketplace.core import matching
from marketplace.core.state import Offer
from tests.core.test_market_property import PROVIDERS, SimulatorConfigMachine


class CachedFitsMachine(SimulatorConfigMachine):
    @invariant()
    def cached_verdicts_are_fresh_ones(self) -> None:
        market = self.market
        for order in list(market._open_orders.values()):
            for address in PROVIDERS:
                prov = market.state.providers[address]
                if not prov.online or prov.draining or order.excluded_provider == address:
                    continue  # _check answers those before the allocation
                cached = market._check(prov, order, 1, Offer())
                fresh = matching.allocate(order.group, market._free(prov))
                assert cached == fresh


CachedFitsMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCachedFits = CachedFitsMachine.TestCase
