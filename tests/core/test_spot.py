"""The spot tier (core/spot.py): who may pre-empt what, billing to the pre-emption, re-orders,
forgery, the price floor, and the manifest key; on a ManualClock through MarketService."""

from __future__ import annotations

import dataclasses

import pytest

from marketplace.core import money, spot
from marketplace.core.clock import ManualClock
from marketplace.core.errors import FailedPrecondition, Ineligible, PermissionDenied
from marketplace.core.events import DeploymentEventKind
from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.matching import Allocation, Capacity, GpuDevice
from marketplace.core.resources import GroupSpec, JobSettings, RestartPolicy, Tier
from marketplace.core.state import CloseReason, LeaseState, Offer, OrderState
from tests.core.test_market import (
    ADMIN,
    GIB,
    H100,
    TENANT,
    assert_audited,
    elapse,
    gpu_group,
    job,
)
from tests.helpers import BASE

SPOT_PRICE = 3 * money.MICRO
ON_DEMAND_PRICE = 9 * money.MICRO


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


def small(gpus: int, prefix: str) -> Capacity:
    devices = tuple(GpuDevice(f"{prefix}-{i}", H100) for i in range(gpus))
    return Capacity(cpu_millis=8000, memory_bytes=32 * GIB, storage_bytes=100 * GIB, gpus=devices)


@pytest.fixture
def market(clock: ManualClock) -> MarketService:
    """p1 has one GPU slot, p2 two, outsider one; the tenant is funded."""
    m = MarketService(clock, MarketConfig(admin_address=ADMIN))
    m.fund(ADMIN, TENANT, 1_000 * money.MICRO)
    for name, gpus in (("p1", 1), ("p2", 2), ("outsider", 1)):
        m.register_provider(name, f"https://{name}", {}, small(gpus, name))
    return m


def deploy(
    market: MarketService,
    tier: Tier,
    group: GroupSpec | None = None,
    restart: RestartPolicy = RestartPolicy.ON_FAILURE,
) -> str:
    settings = dataclasses.replace(job(restart=restart), tier=tier)
    return market.create_deployment(
        TENANT, [group or gpu_group()], settings, b"sdl", b"h" * 32, b"req", 100 * money.MICRO
    ).id


def run_spot(market: MarketService, clock: ManualClock, provider: str = "p1") -> str:
    """A spot deployment whose lease runs on `provider`; its lease id."""
    dep_id = deploy(market, Tier.SPOT)
    market.place_bid(provider, f"{dep_id}/1/1", SPOT_PRICE)
    clock.advance(5_000)
    market.tick()
    lease_id = f"{dep_id}/1/1/{provider}"
    market.report_status(provider, lease_id, running=True)
    return lease_id


def test_an_on_demand_order_preempts_a_spot_lease_billed_to_that_moment_and_reordered(
    market: MarketService, clock: ManualClock
) -> None:
    spot_lease = run_spot(market, clock)
    running_at = market.get_lease(spot_lease).running_at_ms
    elapse(market, clock, 1_234_567)  # an odd time: the bill is exact to the millisecond
    order_id = f"{deploy(market, Tier.ON_DEMAND)}/1/1"
    with pytest.raises(Ineligible, match="GPU"):  # no room without pre-emption
        market.place_bid("p1", order_id, ON_DEMAND_PRICE)
    market.place_bid("p1", order_id, ON_DEMAND_PRICE, Offer(preempts=(spot_lease,)))
    assert market.get_lease(spot_lease).state == LeaseState.RUNNING  # nothing before the award
    clock.advance(5_000)
    market.heartbeat("p1", [spot_lease])
    preempted_at = clock.now_ms()
    market.tick()
    lease = market.get_lease(spot_lease)
    assert lease.state == LeaseState.CLOSED and lease.close_reason == CloseReason.PREEMPTED
    assert lease.closed_at_ms == lease.billed_until_ms == preempted_at
    assert lease.paid == money.accrued(SPOT_PRICE, preempted_at - running_at)
    on_demand = market.get_lease(f"{order_id}/p1")
    assert on_demand.state == LeaseState.PENDING and on_demand.gpu_uuids == ("p1-0",)
    spot_dep = lease.deployment_id
    kinds = [e.kind for e in market.deployment_events_after(spot_dep)]
    assert DeploymentEventKind.LEASE_PREEMPTED in kinds
    assert kinds.index(DeploymentEventKind.LEASE_PREEMPTED) < len(kinds) - 1
    [preempted] = [
        e
        for e in market.deployment_events_after(spot_dep)
        if e.kind == DeploymentEventKind.LEASE_PREEMPTED
    ]
    assert "on-demand order" in preempted.message
    assert order_id.split("/")[0] not in preempted.message  # another deployment's: private
    # on-failure: the spot group is ordered again, at once, as a spot order
    reorder = market.get_order(f"{spot_dep}/1/2")
    assert reorder.state == OrderState.OPEN and reorder.tier == Tier.SPOT
    assert_audited(market)


def test_restart_never_does_not_reorder_a_preempted_group(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy(market, Tier.SPOT, restart=RestartPolicy.NEVER)
    market.place_bid("p1", f"{dep_id}/1/1", SPOT_PRICE)
    clock.advance(5_000)
    market.tick()
    spot_lease = f"{dep_id}/1/1/p1"
    order_id = f"{deploy(market, Tier.ON_DEMAND)}/1/1"
    market.place_bid("p1", order_id, ON_DEMAND_PRICE, Offer(preempts=(spot_lease,)))
    clock.advance(5_000)
    market.tick()
    assert market.get_lease(spot_lease).close_reason == CloseReason.PREEMPTED
    assert market.get_lease(spot_lease).paid == 0  # it never ran: nothing to pay
    assert market.get_deployment(dep_id).order_ids == [f"{dep_id}/1/1"]
    assert_audited(market)


def test_only_spot_leases_are_preempted_and_only_for_on_demand_orders(
    market: MarketService, clock: ManualClock
) -> None:
    on_demand = deploy(market, Tier.ON_DEMAND)
    market.place_bid("p1", f"{on_demand}/1/1", ON_DEMAND_PRICE)
    clock.advance(5_000)
    market.tick()
    held = f"{on_demand}/1/1/p1"
    order_id = f"{deploy(market, Tier.ON_DEMAND)}/1/1"
    with pytest.raises(Ineligible, match="only spot leases"):
        market.place_bid("p1", order_id, ON_DEMAND_PRICE, Offer(preempts=(held,)))
    market.close_lease(TENANT, held)
    spot_lease = run_spot(market, clock)
    spot_order = f"{deploy(market, Tier.SPOT)}/1/1"
    with pytest.raises(Ineligible, match="only an on-demand order pre-empts"):
        market.place_bid("p1", spot_order, SPOT_PRICE, Offer(preempts=(spot_lease,)))
    assert market.get_lease(spot_lease).state == LeaseState.RUNNING
    assert "only an on-demand order" in market.explain_order(spot_order).summary


def test_only_when_it_creates_the_room(market: MarketService, clock: ManualClock) -> None:
    spot_lease = run_spot(market, clock, "p2")  # p2 has two GPUs: one left free
    one = f"{deploy(market, Tier.ON_DEMAND)}/1/1"
    with pytest.raises(Ineligible, match="fits without pre-empting"):
        market.place_bid("p2", one, ON_DEMAND_PRICE, Offer(preempts=(spot_lease,)))
    three = f"{deploy(market, Tier.ON_DEMAND, gpu_group(gpus=3))}/1/1"
    with pytest.raises(Ineligible, match="does not fit even after"):
        market.place_bid("p2", three, ON_DEMAND_PRICE, Offer(preempts=(spot_lease,)))
    assert market.get_lease(spot_lease).state == LeaseState.RUNNING
    # two GPUs, one spot lease in the way: that one, and it is enough
    market.place_bid("p2", one, ON_DEMAND_PRICE)  # takes the free GPU, no pre-emption
    elapse(market, clock, 5_000)
    assert market.get_order(one).state == OrderState.ACTIVE
    two = f"{deploy(market, Tier.ON_DEMAND, gpu_group(gpus=1))}/1/1"
    market.place_bid("p2", two, ON_DEMAND_PRICE, Offer(preempts=(spot_lease,)))
    elapse(market, clock, 5_000)
    assert market.get_lease(spot_lease).close_reason == CloseReason.PREEMPTED
    assert market.get_order(one).state == market.get_order(two).state == OrderState.ACTIVE
    assert_audited(market)


def test_a_named_lease_closed_before_the_award_is_not_replaced_by_another(
    market: MarketService, clock: ManualClock
) -> None:
    spot_lease = run_spot(market, clock)
    order_id = f"{deploy(market, Tier.ON_DEMAND)}/1/1"
    market.place_bid("p1", order_id, ON_DEMAND_PRICE, Offer(preempts=(spot_lease,)))
    market.close_lease(TENANT, spot_lease)  # the tenant stops it first: the room is free
    clock.advance(5_000)
    market.tick()
    assert market.get_lease(spot_lease).close_reason == CloseReason.TENANT
    assert market.get_order(order_id).state == OrderState.ACTIVE
    events = market.deployment_events_after(market.get_lease(spot_lease).deployment_id)
    assert DeploymentEventKind.LEASE_PREEMPTED not in [e.kind for e in events]


def test_an_outsider_cannot_preempt_by_forging(market: MarketService, clock: ManualClock) -> None:
    spot_lease = run_spot(market, clock)
    order_id = f"{deploy(market, Tier.ON_DEMAND)}/1/1"
    before = len(market.explain_order(order_id).declines)
    for forged in (spot_lease, "D999/1/1/p1"):
        with pytest.raises(PermissionDenied, match="not yours to pre-empt"):
            market.place_bid("outsider", order_id, ON_DEMAND_PRICE, Offer(preempts=(forged,)))
    # the bid names p1's GPU as well as its lease: still not the outsider's to take
    offer = Offer(gpu_uuids=("p1-0",), preempts=(spot_lease,))
    with pytest.raises(PermissionDenied):
        market.place_bid("outsider", order_id, ON_DEMAND_PRICE, offer)
    clock.advance(5_000)
    market.heartbeat("p1", [spot_lease])
    market.tick()
    assert market.get_lease(spot_lease).state == LeaseState.RUNNING
    assert market.get_order(order_id).state == OrderState.OPEN
    assert len(market.explain_order(order_id).declines) == before
    assert market.list_bids(order_id=order_id) == []


def test_a_closed_lease_cannot_be_named(market: MarketService, clock: ManualClock) -> None:
    spot_lease = run_spot(market, clock)
    market.close_lease(TENANT, spot_lease)
    order_id = f"{deploy(market, Tier.ON_DEMAND)}/1/1"
    with pytest.raises(FailedPrecondition, match="closed already"):
        market.place_bid("p1", order_id, ON_DEMAND_PRICE, Offer(preempts=(spot_lease,)))


# --- the pure rules -----------------------------------------------------------------------------


def holding(lease_id: str, uuids: tuple[str, ...], since: int) -> spot.SpotHolding:
    return spot.SpotHolding(lease_id, 1000, 4 * GIB, 0, uuids, since)


def test_plan_takes_the_fewest_newest_first_and_spares_what_is_not_needed() -> None:
    devices = tuple(GpuDevice(f"g{i}", H100) for i in range(4))
    free = Capacity(cpu_millis=16_000, memory_bytes=64 * GIB, storage_bytes=0, gpus=())
    old_big = holding("old-big", ("g0", "g1"), since=1)
    new_small = holding("new-small", ("g2",), since=3)
    mid_small = holding("mid-small", ("g3",), since=2)
    spot_leases = [old_big, new_small, mid_small]
    one = gpu_group(gpus=1)
    found = spot.plan(one, free, devices, spot_leases)
    assert found is not None and found.lease_ids == ("new-small",)
    assert found.allocation.gpu_uuids == ("g2",)
    two = gpu_group(gpus=2)
    found = spot.plan(two, free, devices, spot_leases)
    assert found is not None and sorted(found.lease_ids) == ["mid-small", "new-small"]
    three = gpu_group(gpus=3)
    found = spot.plan(three, free, devices, spot_leases)
    # newest first took new-small, mid-small, then old-big; 3 GPUs need old-big and one small
    # one: mid-small (the older) is spared
    assert found is not None and sorted(found.lease_ids) == ["new-small", "old-big"]
    assert spot.plan(gpu_group(gpus=5), free, devices, spot_leases) is None
    with_room = dataclasses.replace(free, gpus=devices[:1])
    assert spot.plan(one, with_room, devices, spot_leases) is None  # fits without


def test_check_named_refuses_a_lease_not_needed() -> None:
    devices = tuple(GpuDevice(f"g{i}", H100) for i in range(2))
    free = Capacity(cpu_millis=16_000, memory_bytes=64 * GIB, storage_bytes=0, gpus=())
    named = [holding("a", ("g0",), 1), holding("b", ("g1",), 2)]
    verdict = spot.check_named(gpu_group(gpus=1), free, devices, named)
    assert verdict == "pre-empting a is not needed to make room"
    verdict = spot.check_named(gpu_group(gpus=2), free, devices, named)
    assert isinstance(verdict, Allocation) and sorted(verdict.gpu_uuids) == ["g0", "g1"]


def test_spot_price_never_goes_below_the_floor() -> None:
    assert spot.spot_price(10_000_000, 60, 0, 2) == 6_000_000
    assert spot.spot_price(10_000_000, 60, 4_000_000, 2) == 8_000_000  # the floor: 2 × 4
    assert spot.spot_price(10_000_001, 100, 1, 0) == 10_000_001  # no GPUs: no floor
    assert spot.spot_price(7, 33, 0, 1) == 2  # integers, rounded down


def test_may_preempt() -> None:
    assert spot.may_preempt(Tier.ON_DEMAND, Tier.SPOT) is None
    assert spot.may_preempt(Tier.SPOT, Tier.SPOT) is not None
    assert spot.may_preempt(Tier.ON_DEMAND, Tier.ON_DEMAND) is not None


# --- the manifest key ---------------------------------------------------------------------------


def test_the_tier_key() -> None:
    assert parse_manifest(BASE, "job.yaml").job.tier == Tier.ON_DEMAND
    spot_job: JobSettings = parse_manifest(BASE + "gpumarket:\n  tier: spot\n", "job.yaml").job
    assert spot_job.tier == Tier.SPOT
    text = BASE + "gpumarket:\n  kind: training\n  tier: cheap\n"
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "job.yaml")
    err = info.value
    assert err.path == "gpumarket.tier" and "on-demand|spot" in err.message
    assert err.line == text.splitlines().index("  tier: cheap") + 1
