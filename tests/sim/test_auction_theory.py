"""The market's real auction (marketplace.core.auction.award) reproduces reverse-auction theory
(../shared/reference/simulation.md §3.2): n providers with costs U[0,1], tenant reserve 1.

- second price, truthful bids:                 E[price] = 2/(n+1)
- first price, equilibrium bids c + (1−c)/n:   E[price] = 2/(n+1)   (revenue equivalence)

Bids come from the simulator's own "equilibrium" pricing strategy (simulator.providers).
- first price, naive bids at cost:             E[price] = 1/(n+1)
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from marketplace.core.auction import award
from marketplace.core.money import MICRO
from marketplace.core.resources import Payment
from marketplace.core.state import Bid, BidState
from simulator.network import Link
from simulator.providers import Pricing, SimProvider, bid_price

ROUNDS = 20_000
RESERVE = MICRO  # a cost of 1 unit per hour is the most anyone asks


def mean_price(n: int, payment: Payment, bid_of: Callable[[int], int], seed: int) -> float:
    """Average payment over ROUNDS auctions, as a fraction of the reserve."""
    rng = random.Random(seed)
    total = 0
    seq = 0
    for _ in range(ROUNDS):
        bids = []
        for i in range(n):
            seq += 1
            cost = max(1, round(rng.random() * MICRO))  # micro-units: rounding ≪ 2%
            price = bid_of(cost)
            bids.append(Bid(f"o/p{i}", "o", f"p{i}", price, BidState.OPEN, 0, 1.0, seq=seq))
        result = award(bids, payment, RESERVE)
        assert result is not None
        total += result.price_per_hour
    return total / ROUNDS / MICRO


def strategy(n: int, payment: Payment) -> Callable[[int], int]:
    """The simulator's "equilibrium" providers, whose costs span U[0, 1] (reference ½ ± 100%)."""
    pricing = Pricing(payment=payment.value, bidders=n, spread=1.0, adaptive_step=0.0)
    link = Link(1000.0, 1000.0, "us")

    def bid_of(cost: int) -> int:
        p = SimProvider(0, "p", "h100", 80, "sxm", 1, cost, "equilibrium", 0.0, link, 1.0)
        return bid_price(p, 1, RESERVE // 2, pricing)

    return bid_of


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_second_price_truthful(n: int) -> None:
    bid_of = strategy(n, Payment.SECOND_PRICE)
    assert bid_of(123_456) == 123_456  # truthful: bidding cost is dominant under second price
    price = mean_price(n, Payment.SECOND_PRICE, bid_of, seed=n)
    assert price == pytest.approx(2 / (n + 1), rel=0.02)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_first_price_equilibrium_bids(n: int) -> None:
    bid_of = strategy(n, Payment.FIRST_PRICE)
    assert bid_of(0) == pytest.approx(MICRO / n, abs=1)  # b(c) = c + (1 − c)/n
    price = mean_price(n, Payment.FIRST_PRICE, bid_of, seed=100 + n)
    assert price == pytest.approx(2 / (n + 1), rel=0.02)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_first_price_naive_bidders_at_cost(n: int) -> None:
    price = mean_price(n, Payment.FIRST_PRICE, lambda c: c, seed=200 + n)
    assert price == pytest.approx(1 / (n + 1), rel=0.02)
