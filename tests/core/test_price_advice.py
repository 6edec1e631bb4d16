"""The price-advice replay (core/price_advice.py) on auctions written by hand: the market's own
award decides each one, a bid above the reserve is refused, second-price pays the runner-up,
the provider cannot hold more GPUs than it has, and the advised price is the best one."""

from __future__ import annotations

from marketplace.core import money
from marketplace.core.price_advice import (
    MAX_CANDIDATES,
    Auction,
    advise_model,
    candidate_prices,
    replay,
)
from marketplace.core.resources import Payment
from marketplace.core.state import Bid, BidState

ME, RIVAL = "gm1me", "gm1rival"
HOUR = 3_600_000


def rival(order: str, price: int, seq: int = 1, reliability: float = 0.9) -> Bid:
    return Bid(f"{order}/{RIVAL}", order, RIVAL, price, BidState.LOST, 0, reliability, seq=seq)


def own(order: str, price: int, seq: int = 0) -> Bid:
    return Bid(f"{order}/{ME}", order, ME, price, BidState.LOST, 0, 0.9, seq=seq)


def auction(
    order: str,
    rival_price: int | None,
    at_ms: int = 0,
    length_ms: int = HOUR,
    gpus: int = 1,
    reserve: int = 3_000,
    payment: Payment = Payment.FIRST_PRICE,
    own_price: int | None = None,
) -> Auction:
    return Auction(
        order_id=order,
        model="h100",
        gpus=gpus,
        reserve=reserve,
        payment=payment,
        rivals=() if rival_price is None else (rival(order, rival_price),),
        own=None if own_price is None else own(order, own_price),
        awarded_at_ms=at_ms,
        length_ms=length_ms,
    )


def test_the_lower_bid_wins_and_is_paid_its_price_for_the_lease_length() -> None:
    a = [auction("D1/1/1", 2_000), auction("D2/1/1", 1_500, at_ms=2 * HOUR)]
    assert replay(a, ME, 1_800, 0.9, gpus=8) == (money.accrued(1_800, HOUR), 1)
    assert replay(a, ME, 1_400, 0.9, gpus=8).leases == 2
    # a tie goes to the better reliability (the rival's 0.9 over our 0.5): as live
    assert replay(a, ME, 2_000, 0.5, gpus=8).leases == 0


def test_a_bid_above_the_reserve_is_refused_and_an_empty_auction_pays_the_bid() -> None:
    a = [auction("D1/1/1", None, reserve=3_000)]
    assert replay(a, ME, 3_001, 0.9, gpus=8).leases == 0
    assert replay(a, ME, 3_000, 0.9, gpus=8) == (3_000, 1)


def test_second_price_pays_the_runner_up() -> None:
    a = [auction("D1/1/1", 2_500, payment=Payment.SECOND_PRICE)]
    assert replay(a, ME, 1_000, 0.9, gpus=8).revenue == 2_500
    lone = [auction("D1/1/1", None, payment=Payment.SECOND_PRICE, reserve=3_000)]
    assert replay(lone, ME, 1_000, 0.9, gpus=8).revenue == 3_000  # the reserve, as live


def test_the_provider_holds_no_more_gpus_than_it_has() -> None:
    overlapping = [
        auction("D1/1/1", 2_000, at_ms=0, gpus=2, reserve=6_000),
        auction("D2/1/1", 2_000, at_ms=HOUR // 2, gpus=2, reserve=6_000),  # while D1 runs
        auction("D3/1/1", 2_000, at_ms=2 * HOUR, gpus=2, reserve=6_000),  # after D1 ended
    ]
    assert replay(overlapping, ME, 900, 0.9, gpus=2).leases == 2  # D1 and D3
    assert replay(overlapping, ME, 900, 0.9, gpus=4).leases == 3


def test_the_advice_is_the_best_price_and_says_what_the_provider_earned() -> None:
    a = [
        auction("D1/1/1", 2_000, own_price=2_500),
        auction("D2/1/1", 2_200, own_price=2_500),
        auction("D3/1/1", 1_800, own_price=2_500),
    ]
    advice = advise_model("h100", a, 1, ME, 0.9, gpus=8)
    assert (advice.auctions, advice.unleased, advice.current_price) == (3, 1, 2_500)
    assert (advice.earned, advice.leases_won) == (0, 0)  # priced out of all three
    revenue = replay(a, ME, advice.best_price, 0.9, 8).revenue
    assert revenue == advice.best_revenue > 0
    every_price = range(1, 3_001)
    assert advice.best_revenue == max(replay(a, ME, p, 0.9, 8).revenue for p in every_price)


def test_candidates_are_thinned_but_keep_the_current_price() -> None:
    many = [auction(f"D{i}/1/1", 1_000 + 7 * i) for i in range(400)]
    found = candidate_prices(many, current=1_234)
    assert len(found) <= MAX_CANDIDATES + 1 and 1_234 in found
    assert found == sorted(found) and min(found) > 0
