"""Exact accrual arithmetic and the double-entry ledger."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.core import auction, leases, money
from marketplace.core.errors import FailedPrecondition, InsufficientFunds
from marketplace.core.ledger import Billing, Ledger, audit, due, run_dry_at
from marketplace.core.resources import Payment
from marketplace.core.state import MINT, Account, Bid, BidState, LeaseState, MarketState

lines = st.lists(
    st.builds(
        Billing,
        rate=st.integers(0, 40 * money.MICRO),
        start_ms=st.integers(0, 20_000),
        paid=st.just(0),
        stop_ms=st.none() | st.integers(0, 40_000),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(lines=lines, funds=st.integers(0, 200_000), now=st.integers(0, 30_000))
def test_run_dry_at_is_the_first_ms_owing_more_than_funds(
    lines: list[Billing], funds: int, now: int
) -> None:
    got = run_dry_at(lines, funds, now)
    if got is None:
        assert due(lines, 10**12) <= funds  # never runs dry
        return
    assert due(lines, got) > funds
    if got > now or due(lines, now) > funds:
        assert due(lines, got - 1) <= funds  # and not a millisecond earlier
    else:
        assert got == now


def test_settling_in_pieces_pays_the_same_as_once() -> None:
    rate = 2_500_003
    total = money.accrued(rate, 7_777_777)
    paid = 0
    for t in range(0, 7_777_778, 333_331):
        paid += money.accrued(rate, t) - paid
    paid += money.accrued(rate, 7_777_777) - paid
    assert paid == total


def make_ledger() -> tuple[MarketState, Ledger]:
    state = MarketState()

    def balance_of(key: str) -> int:
        return state.accounts.get(key.split(":", 1)[1], Account("")).balance

    def add_to(key: str, amount: int) -> None:
        name = key.split(":", 1)[1]
        state.accounts.setdefault(name, Account(name)).balance += amount

    return state, Ledger(state, balance_of, add_to)


def test_ledger_moves_money_and_audits() -> None:
    state, ledger = make_ledger()
    ledger.transfer(0, MINT, "acct:a", 100, "faucet")
    ledger.transfer(1, "acct:a", "acct:b", 40, "pay")
    assert ledger.transfer(2, "acct:a", "acct:b", 0, "nothing") is None
    with pytest.raises(InsufficientFunds):
        ledger.transfer(3, "acct:a", "acct:b", 61, "too much")
    assert (state.accounts["a"].balance, state.accounts["b"].balance) == (60, 40)
    assert audit(state).balanced
    state.accounts["b"].balance += 1  # a balance the ledger does not explain
    report = audit(state)
    assert not report.balanced and any("acct:b" in p for p in report.problems)


def test_transition_table_refuses_illegal_moves() -> None:
    bid = Bid("o/p", "o", "p", 1, BidState.LOST, 0, 0.8)
    with pytest.raises(FailedPrecondition, match="cannot become won"):
        leases.move(bid, BidState.WON)
    assert leases.allowed(LeaseState.PENDING, LeaseState.RUNNING)
    assert not leases.allowed(LeaseState.CLOSED, LeaseState.RUNNING)


def test_auction_rule_is_deterministic() -> None:
    def bid(provider: str, price: int, rel: float, seq: int) -> Bid:
        return Bid(f"o/{provider}", "o", provider, price, BidState.OPEN, 0, rel, seq=seq)

    bids = [bid("b", 5, 0.8, 2), bid("a", 5, 0.8, 2), bid("c", 5, 0.9, 3), bid("d", 9, 1.0, 1)]
    assert [b.provider for b in auction.rank(bids)] == ["c", "a", "b", "d"]
    first = auction.award(bids, Payment.FIRST_PRICE, 10)
    second = auction.award(bids, Payment.SECOND_PRICE, 10)
    assert first is not None and second is not None
    assert (first.winner.provider, first.price_per_hour) == ("c", 5)
    assert second.price_per_hour == 5  # runner-up "a" bid 5 too
    lone = auction.award([bids[3]], Payment.SECOND_PRICE, 10)
    assert lone is not None and lone.price_per_hour == 10  # the reserve
    assert auction.award([], Payment.FIRST_PRICE, 10) is None
