"""Escrow funds on the core market (escrow.py): escrow_low once per crossing and before the escrow
runs dry, the auto top-up within its cap and the tenant's balance, deposits too small to run a
minute, and the books balancing throughout."""

from __future__ import annotations

import pytest

from marketplace.core import escrow, money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import InvalidArgument, PermissionDenied
from marketplace.core.events import DeploymentEventKind as Kind
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.state import CloseReason, DeploymentState
from tests.core.test_market import (
    ADMIN,
    TENANT,
    assert_audited,
    elapse,
    gpu_group,
    job,
    market_with,
)

HOUR = 3_600_000
RATE = money.MICRO  # 1 unit an hour


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


def low_market(clock: ManualClock, threshold_ms: int = 30 * 60_000) -> MarketService:
    return market_with(clock, MarketConfig(admin_address=ADMIN, escrow_low_ms=threshold_ms))


def running(
    market: MarketService, clock: ManualClock, deposit: int, top_up: int = 0, cap: int = 0
) -> str:
    """A deployment whose one lease runs at RATE from now."""
    dep = market.create_deployment(
        TENANT, [gpu_group(max_price=RATE)], job(), b"sdl", b"h" * 32, b"req", deposit, top_up, cap
    )
    market.place_bid("p1", f"{dep.id}/1/1", RATE)
    clock.advance(5_000)
    market.tick()
    market.report_status("p1", f"{dep.id}/1/1/p1", True)
    return dep.id


def kinds(market: MarketService, dep_id: str) -> list[Kind]:
    return [e.kind for e in market.deployment_events_after(dep_id)]


def test_escrow_low_fires_once_at_the_threshold_before_insufficient_funds(
    clock: ManualClock,
) -> None:
    market = low_market(clock)
    dep_id = running(market, clock, deposit=RATE)  # dry after 1 h, low after 30 min
    start = clock.now_ms()
    elapse(market, clock, HOUR // 2 + 10_000)
    # dry at start + 1 h + 4 ms (the first ms it owes more), so low at 30 min + 4 ms
    low = [e for e in market.deployment_events_after(dep_id) if e.kind == Kind.ESCROW_LOW]
    assert [e.time_ms for e in low] == [start + HOUR // 2 + 4]
    assert "escrow 0.499999 act lasts 30 min at 1.000000 act/h" in low[0].message
    assert market.get_deployment(dep_id).escrow_low
    elapse(market, clock, HOUR)
    said = kinds(market, dep_id)
    assert said.count(Kind.ESCROW_LOW) == 1
    assert said.index(Kind.ESCROW_LOW) < said.index(Kind.LEASE_CLOSED)
    assert market.get_lease(f"{dep_id}/1/1/p1").close_reason == CloseReason.INSUFFICIENT_FUNDS
    assert_audited(market)


def test_a_deposit_re_arms_escrow_low(clock: ManualClock) -> None:
    market = low_market(clock)
    dep_id = running(market, clock, deposit=RATE)
    elapse(market, clock, HOUR // 2 + 10_000)
    market.deposit(TENANT, dep_id, RATE)  # 1.5 h left: above the threshold again
    assert not market.get_deployment(dep_id).escrow_low
    elapse(market, clock, HOUR + 10_000)
    said = kinds(market, dep_id)
    assert said.count(Kind.ESCROW_LOW) == 2 and Kind.LEASE_CLOSED not in said
    deposit = [e for e in market.deployment_events_after(dep_id) if e.kind == Kind.ESCROW_TOPPED_UP]
    assert deposit[0].message == "deposit: 1.000000 act from your account"
    assert_audited(market)


def test_a_lease_starting_on_a_low_escrow_is_told_at_once(clock: ManualClock) -> None:
    market = low_market(clock, threshold_ms=2 * HOUR)
    dep_id = running(market, clock, deposit=RATE)
    assert kinds(market, dep_id)[-2:] == [Kind.LEASE_RUNNING, Kind.ESCROW_LOW]


def test_auto_top_up_keeps_it_running_until_its_cap(clock: ManualClock) -> None:
    market = low_market(clock)
    balance = market.get_account(TENANT).balance
    # 1 h deposited; each top-up 1 h; at most 2 h in all
    dep_id = running(market, clock, deposit=RATE, top_up=RATE, cap=2 * RATE)
    elapse(market, clock, 3 * HOUR - 60_000)
    assert market.get_deployment(dep_id).state == DeploymentState.ACTIVE  # 3 h paid for
    events = market.deployment_events_after(dep_id)
    topped = [e for e in events if e.kind == Kind.ESCROW_TOPPED_UP]
    assert [e.message for e in topped] == ["auto top-up: moved 1.000000 act from your account"] * 2
    lows = [e for e in events if e.kind == Kind.ESCROW_LOW]
    assert len(lows) == 3 and lows[-1].message.endswith("auto top-up: its cap is reached")
    elapse(market, clock, 120_000)
    dep = market.get_deployment(dep_id)
    assert dep.state == DeploymentState.CLOSED and dep.auto_topped_up == 2 * RATE
    assert market.get_lease(f"{dep_id}/1/1/p1").close_reason == CloseReason.INSUFFICIENT_FUNDS
    assert market.get_account(TENANT).balance == balance - 3 * RATE
    assert_audited(market)


def test_auto_top_up_says_when_the_account_is_empty(clock: ManualClock) -> None:
    market = low_market(clock)
    balance = market.get_account(TENANT).balance
    dep_id = running(market, clock, deposit=balance, top_up=RATE)  # nothing left to top up
    lasts = escrow.buys_ms(balance, RATE)
    elapse(market, clock, lasts - HOUR // 2 + 10_000)
    [low] = [e for e in market.deployment_events_after(dep_id) if e.kind == Kind.ESCROW_LOW]
    assert low.message.endswith("auto top-up: your account holds 0.000000 act")
    assert_audited(market)


def test_a_top_up_that_falls_short_moves_enough_steps(clock: ManualClock) -> None:
    market = low_market(clock, threshold_ms=4 * HOUR)
    dep_id = running(market, clock, deposit=RATE, top_up=RATE)  # told at once: 1 h < 4 h
    dep = market.get_deployment(dep_id)
    assert dep.auto_topped_up == 3 * RATE and not dep.escrow_low  # 4 h and 4 ms left now
    assert dep.auto_top_up_max == escrow.DEFAULT_CAP_AMOUNTS * RATE
    assert_audited(market)


def test_deposit_too_small_to_run_a_minute_is_refused(clock: ManualClock) -> None:
    market = low_market(clock)
    dep_id = running(market, clock, deposit=RATE)
    before = market.get_deployment(dep_id).escrow
    with pytest.raises(InvalidArgument) as refused:
        market.deposit(TENANT, dep_id, 5_000)  # 5,000 µ at 1 unit/h buys 18 s
    assert str(refused.value) == (
        "deposit 0.005000 act buys 18 s at 1.000000 act/h; at least 1 minute is needed "
        "(0.016667 act)"
    )
    market.deposit(TENANT, dep_id, 16_667)  # a minute and a bit
    assert market.get_deployment(dep_id).escrow == before + 16_667
    assert_audited(market)


def test_deposit_before_anything_runs_is_judged_at_the_maximum_price(clock: ManualClock) -> None:
    market = low_market(clock)
    dep = market.create_deployment(
        TENANT, [gpu_group(max_price=60 * RATE)], job(), b"sdl", b"h" * 32, b"req", 20 * RATE
    )
    with pytest.raises(InvalidArgument, match=r"buys 59 s at 60\.000000 act/h"):
        market.deposit(TENANT, dep.id, 999_999)


@pytest.mark.parametrize("amount", [0, -1, 10**19])
def test_deposit_amount_bounds(clock: ManualClock, amount: int) -> None:
    market = low_market(clock)
    dep_id = running(market, clock, deposit=RATE)
    with pytest.raises(InvalidArgument):
        market.deposit(TENANT, dep_id, amount)
    assert market.get_deployment(dep_id).deposited == RATE


def test_an_outsider_may_not_deposit(clock: ManualClock) -> None:
    market = low_market(clock)
    market.fund(ADMIN, "outsider", 10 * RATE)
    dep_id = running(market, clock, deposit=RATE)
    with pytest.raises(PermissionDenied):
        market.deposit("outsider", dep_id, RATE)
    assert market.get_account("outsider").balance == 10 * RATE
    assert market.get_deployment(dep_id).deposited == RATE


@pytest.mark.parametrize(
    ("step", "cap", "error"),
    [(-1, 0, "auto top-up must be positive"), (RATE, RATE - 1, "below its step")],
)
def test_auto_top_up_bounds(clock: ManualClock, step: int, cap: int, error: str) -> None:
    market = low_market(clock)
    with pytest.raises(InvalidArgument, match=error):
        market.create_deployment(
            TENANT, [gpu_group()], job(), b"sdl", b"h" * 32, b"req", 10 * RATE, step, cap
        )


def test_format_time() -> None:
    assert [escrow.format_time(ms) for ms in (500, 12_000, 270_000, 7_500_000, 90_000_000)] == [
        "under 1 s",
        "12 s",
        "4 min 30 s",
        "2 h 5 min",
        "1 d 1 h",
    ]


def test_a_restarted_market_says_escrow_low_once(clock: ManualClock) -> None:
    """Said before the restart: not again. Due while it was down: said at its first tick."""
    market = low_market(clock)
    told = running(market, clock, deposit=RATE)
    elapse(market, clock, HOUR // 2 + 10_000)  # told's escrow_low is said
    later = running(market, clock, deposit=RATE)
    elapse(market, clock, HOUR // 2 - 10_000)
    again = MarketService(clock, market.config, market.state)
    clock.advance(20_000)  # later's escrow_low fell due while the market was "down"
    for name in ("p1", "p2", "p3"):
        again.heartbeat(name)
    assert kinds(again, told).count(Kind.ESCROW_LOW) == 1
    assert kinds(again, later).count(Kind.ESCROW_LOW) == 1


def test_a_market_without_events_closes_a_dry_escrow_when_its_tick_comes_late(
    clock: ManualClock,
) -> None:
    # found by the property test: with nobody to tell (no events, no auto top-up) a run-dry
    # said escrow_low, was re-armed at once and ran again, forever
    config = MarketConfig(admin_address=ADMIN, escrow_low_ms=HOUR, record_events=False)
    market = market_with(clock, config)
    dep_id = running(market, clock, deposit=RATE)
    for _ in range(2 * HOUR // 25_000):  # heartbeats every 25 s: each tick comes up to 25 s late
        clock.advance(25_000)
        running_ids = [x.id for x in market.list_leases(provider="p1", open_only=True)]
        market.heartbeat("p1", running_ids)
    assert market.get_deployment(dep_id).state == DeploymentState.CLOSED
    assert market.get_lease(f"{dep_id}/1/1/p1").close_reason == CloseReason.INSUFFICIENT_FUNDS
    assert_audited(market)
