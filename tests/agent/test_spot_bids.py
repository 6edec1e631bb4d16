"""The agent's side of the spot tier (provider_agent/bidder.py over core/spot.py): spot orders
priced at spot_percent, never below spot_floor; an on-demand order with no room left is bid on
naming the spot leases to pre-empt, a spot order never is; the config keys and their bounds."""

from __future__ import annotations

import asyncio
import tomllib

import pytest

from marketplace.core import money
from marketplace.core.bidding import BidDecision
from marketplace.core.clock import ManualClock
from marketplace.core.resources import GroupSpec, Tier
from marketplace.core.spot import SpotHolding
from provider_agent.agent import read_inventory
from provider_agent.bidder import Quoter, offer_for
from provider_agent.config import AgentConfig, ConfigError, parse_config
from provider_agent.inventory import Inventory, Reservations
from tests.core.test_market import gpu_group
from tests.helpers import EXAMPLES

GPU_HOUR = 900_000  # the replay example's h100 price per hour


def config(**pricing: object) -> AgentConfig:
    data = tomllib.loads((EXAMPLES / "provider-h100-replay.toml").read_text())
    data["pricing"].update(pricing)
    data["metrics"] = {"enabled": False}
    return parse_config(data, "provider.toml", EXAMPLES)


def evaluate(
    quoter: Quoter,
    inventory: Inventory,
    reservations: Reservations,
    group: GroupSpec,
    tier: Tier,
    spot_leases: tuple[SpotHolding, ...] = (),
) -> BidDecision:
    async def run() -> BidDecision:
        return await quoter.evaluate(
            group, "tenant", inventory, reservations, "order:x", tier=tier, spot_leases=spot_leases
        )

    return asyncio.run(run())


def test_a_spot_order_is_bid_at_spot_percent_never_below_the_floor() -> None:
    group = gpu_group(max_price=10 * money.MICRO)
    prices = {}
    for percent, floor, tier in ((100, "0", Tier.ON_DEMAND), (50, "0", Tier.SPOT)):
        cfg = config(spot_percent=percent, spot_floor=floor)
        inventory = read_inventory(cfg)
        quoter = Quoter.from_config(cfg, ManualClock(0))
        prices[tier] = evaluate(quoter, inventory, Reservations(), group, tier).price_per_hour
    on_demand = prices[Tier.ON_DEMAND]
    assert on_demand > GPU_HOUR and prices[Tier.SPOT] == on_demand // 2
    cfg = config(spot_percent=50, spot_floor="0.80")  # above half the price: the floor holds
    quoter = Quoter.from_config(cfg, ManualClock(0))
    decision = evaluate(quoter, read_inventory(cfg), Reservations(), group, Tier.SPOT)
    assert decision.bid and decision.price_per_hour == 800_000
    # a floor above the tenant's maximum: no bid below it
    cheap = gpu_group(max_price=700_000)
    decision = evaluate(quoter, read_inventory(cfg), Reservations(), cheap, Tier.SPOT)
    assert not decision.bid and "maximum" in decision.reason
    assert decision.price_per_hour == 800_000


def test_an_on_demand_order_without_room_names_the_spot_lease_to_preempt() -> None:
    cfg = config()
    inventory = read_inventory(cfg)
    quoter = Quoter.from_config(cfg, ManualClock(0))
    group = gpu_group()
    reservations = Reservations()
    first = evaluate(quoter, inventory, reservations, group, Tier.SPOT)
    assert first.bid and first.allocation is not None
    reservations.move("order:x", "lease:S1")  # the spot bid won: its lease holds the one GPU
    spot_lease = SpotHolding.of("S1", first.allocation, since_ms=0)

    no_room = evaluate(quoter, inventory, reservations, group, Tier.ON_DEMAND)
    assert not no_room.bid and "GPU" in no_room.reason
    reservations.release("order:x")
    decision = evaluate(quoter, inventory, reservations, group, Tier.ON_DEMAND, (spot_lease,))
    assert decision.bid and decision.preempts == ("S1",)
    assert decision.allocation is not None
    assert decision.allocation.gpu_uuids == first.allocation.gpu_uuids
    assert "pre-empts S1" in decision.reason
    offer = offer_for(decision, inventory)
    assert offer.preempts == ("S1",) and offer.gpu_uuids == first.allocation.gpu_uuids
    reservations.release("order:x")
    # a spot order pre-empts nothing
    spot_order = evaluate(quoter, inventory, reservations, group, Tier.SPOT, (spot_lease,))
    assert not spot_order.bid and spot_order.preempts == ()
    # nor does an order that would not fit even with the spot lease gone
    two = gpu_group(gpus=2)
    too_big = evaluate(quoter, inventory, reservations, two, Tier.ON_DEMAND, (spot_lease,))
    assert not too_big.bid and too_big.preempts == ()


def test_spot_config_keys_and_their_bounds() -> None:
    cfg = parse_config({})
    assert (cfg.pricing.spot_percent, cfg.pricing.spot_floor) == (100, 0)
    assert cfg.runtime.preempt_grace_s == 30
    cfg = parse_config(
        {"pricing": {"spot_percent": 60, "spot_floor": "1.25"}, "runtime": {"preempt_grace_s": 5}}
    )
    assert (cfg.pricing.spot_percent, cfg.pricing.spot_floor) == (60, 1_250_000)
    assert cfg.runtime.preempt_grace_s == 5
    for bad, key in (
        ({"pricing": {"spot_percent": 0}}, "pricing.spot_percent"),
        ({"pricing": {"spot_percent": 101}}, "pricing.spot_percent"),
        ({"pricing": {"spot_floor": 0.5}}, "pricing.spot_floor"),
        ({"runtime": {"preempt_grace_s": 0}}, "runtime.preempt_grace_s"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config(bad)
