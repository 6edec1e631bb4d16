"""Failed starts and reservations, on a ManualClock: re-orders back off and stop, the provider that
could not start a lease sits out the next window, manual orders lapse, deposits must pay for the
longest hold, bid windows are bounded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import Ineligible, InvalidArgument
from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.state import BidState, CloseReason, DeploymentState, OrderState
from marketplace.server.store import Store, changes_batch
from tests.core.test_market import ADMIN, TENANT, assert_audited, deploy, gpu_group, job
from tests.core.test_market import market_with as market_for

SECOND = 1_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


@pytest.fixture
def market(clock: ManualClock) -> MarketService:
    return market_for(clock, MarketConfig(admin_address=ADMIN))


def heartbeat_for(market: MarketService, clock: ManualClock, ms: int) -> None:
    """Let `ms` pass in steps of 10 s with every provider heartbeating."""
    while ms > 0:
        step = min(ms, 10 * SECOND)
        clock.advance(step)
        ms -= step
        for name in ("p1", "p2", "p3"):
            market.heartbeat(name)


def win(market: MarketService, clock: ManualClock, order_id: str, provider: str) -> str:
    market.place_bid(provider, order_id, 2 * money.MICRO)
    heartbeat_for(market, clock, 5 * SECOND)
    assert market.get_order(order_id).state == OrderState.ACTIVE
    return f"{order_id}/{provider}"


def fail_to_start(market: MarketService, lease_id: str) -> None:
    provider = market.get_lease(lease_id).provider
    market.report_status(provider, lease_id, False, exited=True, exit_code=-1, message="no CPUs")


def current_order(market: MarketService, dep_id: str) -> str:
    return market.get_deployment(dep_id).group_orders[0]


# --- failed starts ----------------------------------------------------------------------------


def test_the_first_reorder_is_immediate_and_the_failed_provider_sits_out_its_window(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy(market)
    fail_to_start(market, win(market, clock, f"{dep_id}/1/1", "p1"))
    second = f"{dep_id}/1/2"
    assert market.get_order(second).state == OrderState.OPEN
    assert market.get_order(second).excluded_provider == "p1"
    with pytest.raises(Ineligible, match="failed to start this group's last lease"):
        market.place_bid("p1", second, 2 * money.MICRO)
    assert "failed to start" in market.explain_order(second).summary
    market.place_bid("p2", second, 3 * money.MICRO)  # anyone else may
    # after the window, with no winner yet, the excluded provider's late bid is taken
    fresh = deploy(market)
    fail_to_start(market, win(market, clock, f"{fresh}/1/1", "p3"))
    clock.advance(6 * SECOND)
    market.tick()
    market.place_bid("p3", f"{fresh}/1/2", 2 * money.MICRO)


def test_reorders_back_off_while_starts_keep_failing_then_stop(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy(market)
    waits = []
    for attempt in range(1, 6):
        order_id = current_order(market, dep_id)
        assert order_id == f"{dep_id}/1/{attempt}"
        fail_to_start(market, win(market, clock, order_id, ("p1", "p2")[attempt % 2]))
        if attempt == 5:
            break
        failed_at = clock.now_ms()
        due = market.get_deployment(dep_id).reorder_at_ms[0]
        if current_order(market, dep_id) == order_id:  # the re-order waits
            waits.append(due - failed_at)
            heartbeat_for(market, clock, due - failed_at - 1)
            assert current_order(market, dep_id) == order_id, "opened before its time"
            heartbeat_for(market, clock, 1)
        else:
            waits.append(0)
        assert market.get_order(current_order(market, dep_id)).state == OrderState.OPEN
    assert waits == [0, 5 * SECOND, 10 * SECOND, 20 * SECOND]
    # the fifth failed start in a row: not ordered again; the tenant is told why
    dep = market.get_deployment(dep_id)
    assert len(dep.order_ids) == 5
    [stopped] = [
        e
        for e in market.deployment_events_after(dep_id)
        if e.kind == DeploymentEventKind.REORDERS_STOPPED
    ]
    assert stopped.order_id == f"{dep_id}/1/5"
    assert "5 leases in a row failed to start" in stopped.message and "no CPUs" in stopped.message
    # its only group is finished, so the deployment closed and the escrow went back
    assert dep.state == DeploymentState.CLOSED and dep.escrow == 0
    assert market.get_account(TENANT).balance == 1_000 * money.MICRO
    assert_audited(market)


def test_a_lease_that_ran_a_while_ends_the_run_of_failed_starts(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy(market)
    fail_to_start(market, win(market, clock, f"{dep_id}/1/1", "p1"))
    # a quick failure (ran 10 s) counts: the next re-order waits; no one is excluded
    lease_id = win(market, clock, f"{dep_id}/1/2", "p2")
    market.report_status("p2", lease_id, True)
    heartbeat_for(market, clock, 10 * SECOND)
    market.report_status("p2", lease_id, False, exited=True, exit_code=1)
    assert market.get_deployment(dep_id).failed_starts == [2]
    heartbeat_for(market, clock, 5 * SECOND)
    third = f"{dep_id}/1/3"
    assert market.get_order(third).excluded_provider == ""
    # a lease that ran past quick_failure_ms and then failed: re-ordered at once, count reset
    lease_id = win(market, clock, third, "p2")
    market.report_status("p2", lease_id, True)
    heartbeat_for(market, clock, 2 * 60 * SECOND)
    market.report_status("p2", lease_id, False, exited=True, exit_code=1)
    assert market.get_deployment(dep_id).failed_starts == [0]
    assert market.get_order(f"{dep_id}/1/4").state == OrderState.OPEN


def test_a_pending_reorder_keeps_the_deployment_open_and_survives_a_reload(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy(market)
    fail_to_start(market, win(market, clock, f"{dep_id}/1/1", "p1"))
    fail_to_start(market, win(market, clock, f"{dep_id}/1/2", "p2"))
    dep = market.get_deployment(dep_id)
    assert dep.state == DeploymentState.ACTIVE and dep.reorder_at_ms == [clock.now_ms() + 5_000]
    # a market loaded from the same records (a restart) opens it on time
    again = MarketService(clock, market.config, dataclasses.replace(market.state))
    assert again.next_deadline_ms() == dep.reorder_at_ms[0]
    clock.advance(5 * SECOND)
    again.tick()
    third = again.get_order(f"{dep_id}/1/3")
    assert third.state == OrderState.OPEN and third.excluded_provider == "p2"
    assert again.get_deployment(dep_id).reorder_at_ms == [0]


def test_a_pending_reorder_survives_the_sqlite_store(clock: ManualClock, tmp_path: Path) -> None:
    market = market_for(clock, MarketConfig(admin_address=ADMIN))
    store = Store(tmp_path / "market.db")
    dep_id = deploy(market)
    fail_to_start(market, win(market, clock, f"{dep_id}/1/1", "p1"))
    fail_to_start(market, win(market, clock, f"{dep_id}/1/2", "p2"))
    store.write(changes_batch(market.drain_changes()))
    store.close()
    reopened = Store(tmp_path / "market.db")
    again = MarketService(clock, market.config, reopened.load())
    reopened.close()
    dep = again.get_deployment(dep_id)
    assert (dep.failed_starts, dep.reorder_at_ms) == ([2], [clock.now_ms() + 5 * SECOND])
    assert again.get_order(f"{dep_id}/1/2").excluded_provider == "p1"
    clock.advance(5 * SECOND)
    again.tick()
    assert again.get_order(f"{dep_id}/1/3").excluded_provider == "p2"


def test_closing_the_deployment_cancels_a_pending_reorder(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy(market)
    fail_to_start(market, win(market, clock, f"{dep_id}/1/1", "p1"))
    fail_to_start(market, win(market, clock, f"{dep_id}/1/2", "p2"))
    market.close_deployment(TENANT, dep_id)
    heartbeat_for(market, clock, 60 * SECOND)
    dep = market.get_deployment(dep_id)
    assert len(dep.order_ids) == 2 and dep.reorder_at_ms == [0] and dep.escrow == 0
    assert_audited(market)


def test_provider_loss_still_reorders_at_once(market: MarketService, clock: ManualClock) -> None:
    # liveness failover is not a failed start: no wait, no exclusion (the simulator relies on it)
    dep_id = deploy(market)
    lease_id = win(market, clock, f"{dep_id}/1/1", "p1")
    market.close_lease("p1", lease_id, "going away")
    assert market.get_lease(lease_id).close_reason == CloseReason.PROVIDER
    second = market.get_order(f"{dep_id}/1/2")
    assert second.state == OrderState.OPEN and second.excluded_provider == ""


# --- reservations -----------------------------------------------------------------------------


def test_a_manual_order_lapses_when_no_bid_is_accepted_in_time(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy(market, manual=True, bid_window_ms=60 * SECOND)
    order_id = f"{dep_id}/1/1"
    market.place_bid("p1", order_id, 2 * money.MICRO)
    lapse_at = market.get_order(order_id).closes_at_ms + market.config.manual_accept_ms
    heartbeat_for(market, clock, lapse_at - clock.now_ms() - 1)
    assert market.get_order(order_id).state == OrderState.OPEN  # the tenant may still accept
    heartbeat_for(market, clock, 1)
    assert market.get_order(order_id).state == OrderState.CLOSED
    assert market.get_bid(f"{order_id}/p1").state == BidState.CLOSED
    # the bidder is told the order closed (it releases what it held); the tenant is told why
    told = [e.kind for e in market.provider_events_after("p1") if e.order_id == order_id]
    assert told[-1] == ProviderEventKind.ORDER_CLOSED
    closed = [
        e
        for e in market.deployment_events_after(dep_id)
        if e.kind == DeploymentEventKind.ORDER_CLOSED
    ]
    assert "no bid accepted within 300 s" in closed[0].message
    dep = market.get_deployment(dep_id)
    assert dep.state == DeploymentState.CLOSED and dep.escrow == 0
    assert_audited(market)


def test_a_manual_bid_accepted_in_time_is_leased(market: MarketService, clock: ManualClock) -> None:
    dep_id = deploy(market, manual=True)
    order_id = f"{dep_id}/1/1"
    market.place_bid("p1", order_id, 2 * money.MICRO)
    heartbeat_for(market, clock, 4 * 60 * SECOND)  # the window closed, the acceptance time not
    lease = market.accept_bid(TENANT, f"{order_id}/p1")
    heartbeat_for(market, clock, 5 * 60 * SECOND)  # past when it would have lapsed
    assert market.get_lease(lease.id).state.value == "pending"
    assert market.get_order(order_id).state == OrderState.ACTIVE


def test_a_deposit_must_pay_for_the_longest_hold_at_the_maximum_price(
    market: MarketService,
) -> None:
    group = gpu_group(max_price=6 * money.MICRO)  # 6 units/h: 10 min cost 1 unit
    with pytest.raises(InvalidArgument, match=r"does not pay for 10m .* at least 1\.000000"):
        market.create_deployment(TENANT, [group], job(), b"", b"", b"", money.MICRO - 1)
    assert market.create_deployment(TENANT, [group], job(), b"", b"", b"", money.MICRO)
    # a job that runs at most 1 min needs to pay for 1 min only
    short = dataclasses.replace(job(), max_runtime_ms=60 * SECOND)
    assert market.create_deployment(TENANT, [group], short, b"", b"", b"", money.MICRO // 10)
    # every group counts
    with pytest.raises(InvalidArgument, match=r"at least 2\.000000"):
        market.create_deployment(TENANT, [group, group], job(), b"", b"", b"", money.MICRO)
    assert market.get_account(TENANT).balance == 1_000 * money.MICRO - money.MICRO * 11 // 10


def test_a_bid_window_longer_than_the_bound_is_refused(market: MarketService) -> None:
    longest = market.config.max_bid_window_ms
    assert longest == 5 * 60 * SECOND
    with pytest.raises(InvalidArgument, match=r"bid window 301s is longer .* maximum 5m"):
        deploy(market, bid_window_ms=longest + SECOND)
    deploy(market, bid_window_ms=longest)
