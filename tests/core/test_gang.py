"""Gang leases (core/gang.py, `gpumarket: gang:`): N nodes won all or none, ranked by predicted
cost per useful GPU-hour, stopped and re-auctioned together when one is lost."""

from __future__ import annotations

import pytest

from marketplace.core import money
from marketplace.core.allreduce import Link
from marketplace.core.clock import ManualClock
from marketplace.core.errors import Ineligible, InvalidArgument
from marketplace.core.events import DeploymentEventKind
from marketplace.core.gang import (
    DOWN_MBPS,
    UP_MBPS,
    Candidate,
    choose,
    node_rendezvous,
    predicted_utilization,
    rendezvous,
)
from marketplace.core.manifest import parse_manifest
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.resources import GangSettings, JobKind, JobSettings, RestartPolicy
from marketplace.core.state import (
    Bid,
    BidState,
    CloseReason,
    DeploymentState,
    LeaseState,
    OrderState,
)
from tests.core.test_market import ADMIN, TENANT, assert_audited, capacity, elapse, gpu_group
from tests.helpers import BASE

SECOND = 1_000
SLOW, FAST = 100, 10_000  # Mbps
# 10 GB all-reduced every minute: over 100 Mbps the GPUs would idle ~93% of the time
BIG = GangSettings(nodes=2, gradient_bytes=10 * 10**9, sync_interval_ms=60 * SECOND)
PROVIDERS = {"slow1": SLOW, "slow2": SLOW, "fast1": FAST, "fast2": FAST}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


@pytest.fixture
def market(clock: ManualClock) -> MarketService:
    m = MarketService(clock, MarketConfig(admin_address=ADMIN))
    m.fund(ADMIN, TENANT, 1_000 * money.MICRO)
    for name, mbps in PROVIDERS.items():
        attributes = {"region": "eu", UP_MBPS: str(mbps), DOWN_MBPS: str(mbps)}
        m.register_provider(name, f"https://{name}.example:8443", attributes, capacity(prefix=name))
    return m


def deploy_gang(
    market: MarketService,
    gang: GangSettings = BIG,
    restart: RestartPolicy = RestartPolicy.ON_FAILURE,
) -> str:
    job = JobSettings(kind=JobKind.TRAINING, restart_policy=restart, gang=gang)
    groups = [gpu_group()] * gang.nodes
    dep = market.create_deployment(
        TENANT, groups, job, b"sdl", b"h" * 32, b"req", 100 * money.MICRO
    )
    return dep.id


def close_windows(market: MarketService, clock: ManualClock) -> None:
    elapse(market, clock, 5 * SECOND)
    market.tick()


def leased(market: MarketService, dep_id: str) -> dict[int, str]:
    """rank → provider of the gang's open leases."""
    leases = market.list_leases(deployment_id=dep_id, open_only=True)
    return {market.get_order(x.order_id).gseq - 1: x.provider for x in leases}


# --- all or none ---------------------------------------------------------------------------------


def test_no_node_is_leased_until_every_node_has_an_eligible_bid(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy_gang(market)
    market.place_bid("fast1", f"{dep_id}/1/1", 2 * money.MICRO)
    close_windows(market, clock)
    assert leased(market, dep_id) == {}
    for gseq in (1, 2):
        assert market.get_order(f"{dep_id}/{gseq}/1").state == OrderState.OPEN
    waits = [
        e.message
        for e in market.deployment_events_after(dep_id)
        if e.kind == DeploymentEventKind.NO_ELIGIBLE_BID
    ]
    assert waits and "rank 1 has no eligible bid; no node is leased" in waits[-1]
    # the last node's bid arrives after the window: the whole gang is awarded at once
    market.place_bid("fast2", f"{dep_id}/2/1", 2 * money.MICRO)
    market.tick()
    assert leased(market, dep_id) == {0: "fast1", 1: "fast2"}
    assert_audited(market)


def test_one_provider_cannot_hold_two_nodes_of_a_gang(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy_gang(market)
    for gseq in (1, 2):
        market.place_bid("fast1", f"{dep_id}/{gseq}/1", 2 * money.MICRO)
    close_windows(market, clock)
    assert leased(market, dep_id) == {}
    market.place_bid("fast2", f"{dep_id}/1/1", 3 * money.MICRO)
    market.tick()
    # fast1 is cheaper on both; it gets one node and fast2 the other
    assert sorted(leased(market, dep_id).values()) == ["fast1", "fast2"]


def test_a_bidder_under_the_gangs_bandwidth_floor_is_declined_with_the_reason(
    market: MarketService, clock: ManualClock
) -> None:
    gang = GangSettings(nodes=2, min_bandwidth_mbps=1000.0)
    dep_id = deploy_gang(market, gang)
    with pytest.raises(Ineligible, match="link 100 Mbps; the gang needs 1000 Mbps"):
        market.place_bid("slow1", f"{dep_id}/1/1", 1 * money.MICRO)
    market.place_bid("fast1", f"{dep_id}/1/1", 3 * money.MICRO)
    market.place_bid("fast2", f"{dep_id}/2/1", 3 * money.MICRO)
    close_windows(market, clock)
    assert leased(market, dep_id) == {0: "fast1", 1: "fast2"}
    why = market.explain_order(f"{dep_id}/1/1")
    assert any("link 100 Mbps; the gang needs 1000 Mbps" in d.reason for d in why.declines), why
    # a provider that declares no link cannot hold a node of a gang with a floor either
    market.register_provider("quiet", "https://quiet", {"region": "eu"}, capacity(prefix="q"))
    other = deploy_gang(market, gang)
    with pytest.raises(Ineligible, match="declares no link; the gang needs 1000 Mbps"):
        market.place_bid("quiet", f"{other}/1/1", 1 * money.MICRO)


# --- ranking ---------------------------------------------------------------------------------


def test_a_cheap_slow_link_loses_to_a_dearer_fast_one_that_keeps_the_gpus_busy(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = deploy_gang(market)
    for gseq in (1, 2):
        market.place_bid(("slow1", "slow2")[gseq - 1], f"{dep_id}/{gseq}/1", 1 * money.MICRO)
        market.place_bid(("fast1", "fast2")[gseq - 1], f"{dep_id}/{gseq}/1", 3 * money.MICRO)
    close_windows(market, clock)
    assert leased(market, dep_id) == {0: "fast1", 1: "fast2"}
    assert market.get_lease(f"{dep_id}/1/1/fast1").price_per_hour == 3 * money.MICRO


def test_when_links_do_not_idle_the_gpus_the_cheaper_bids_win(
    market: MarketService, clock: ManualClock
) -> None:
    light = GangSettings(nodes=2, gradient_bytes=1_000_000, sync_interval_ms=60 * SECOND)
    dep_id = deploy_gang(market, light)
    for gseq in (1, 2):
        market.place_bid(("slow1", "slow2")[gseq - 1], f"{dep_id}/{gseq}/1", 1 * money.MICRO)
        market.place_bid(("fast1", "fast2")[gseq - 1], f"{dep_id}/{gseq}/1", 3 * money.MICRO)
    close_windows(market, clock)
    assert leased(market, dep_id) == {0: "slow1", 1: "slow2"}


def bid(provider: str, price: int, seq: int) -> Bid:
    return Bid(
        id=f"D1/1/1/{provider}",
        order_id="D1/1/1",
        provider=provider,
        price_per_hour=price,
        state=BidState.OPEN,
        created_at_ms=0,
        reliability=1.0,
        seq=seq,
    )


def test_choose_prices_each_bottleneck_and_mixing_a_slow_link_costs_the_fast_ones() -> None:
    links = {
        "s": Link(SLOW, SLOW, "eu"),
        "f1": Link(FAST, FAST, "eu"),
        "f2": Link(FAST, FAST, "eu"),
    }
    cands = [
        Candidate(0, bid("s", 1, 1), links["s"]),
        Candidate(0, bid("f1", 3, 2), links["f1"]),
        Candidate(1, bid("f2", 3, 3), links["f2"]),
    ]
    picked = choose(BIG, cands)
    assert picked is not None
    assert [c.bid.provider for c in picked.winners] == ["f1", "f2"]
    assert picked.total_price == 6
    fast = predicted_utilization(BIG, [links["f1"], links["f2"]])
    assert picked.utilization == fast and 0.85 < fast < 0.9
    assert predicted_utilization(BIG, [links["s"], links["f2"]]) < 0.1
    assert predicted_utilization(BIG, [links["s"], None]) == 0.0
    assert choose(BIG, cands[:2]) is None  # node 1 has no bid


# --- a lost node stops the gang ------------------------------------------------------------------


def running_gang(market: MarketService, clock: ManualClock, **kw: object) -> str:
    dep_id = deploy_gang(market, **kw)  # type: ignore[arg-type]
    market.place_bid("fast1", f"{dep_id}/1/1", 2 * money.MICRO)
    market.place_bid("fast2", f"{dep_id}/2/1", 2 * money.MICRO)
    close_windows(market, clock)
    for lease in market.list_leases(deployment_id=dep_id, open_only=True):
        market.report_status(lease.provider, lease.id, running=True)
    return dep_id


def test_a_lost_provider_stops_the_whole_gang_and_both_nodes_are_ordered_again(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = running_gang(market, clock)
    lost_at = clock.now_ms()
    elapse(market, clock, 120 * SECOND, silent=("fast2",))  # fast2 goes silent
    rank0 = market.get_lease(f"{dep_id}/1/1/fast1")
    rank1 = market.get_lease(f"{dep_id}/2/1/fast2")
    assert rank1.close_reason == CloseReason.PROVIDER_LOST
    assert rank0.state == LeaseState.CLOSED
    assert rank0.close_reason == CloseReason.GANG_STOPPED
    assert rank0.message.startswith(
        f"gang stopped: rank 1 (lease {rank1.id}) closed (provider_lost)"
    )
    # rank 0 ran, and is billed, until the market stopped it
    assert rank0.billed_until_ms == rank0.closed_at_ms > lost_at
    assert rank1.billed_until_ms < rank0.billed_until_ms  # to fast2's last heartbeat
    # both nodes are auctioned again together
    for gseq in (1, 2):
        assert market.get_order(f"{dep_id}/{gseq}/2").state == OrderState.OPEN
    market.place_bid("fast1", f"{dep_id}/1/2", 2 * money.MICRO)
    close_windows(market, clock)
    assert leased(market, dep_id) == {}  # rank 1 has no bid yet: nothing is leased
    market.place_bid("slow1", f"{dep_id}/2/2", 2 * money.MICRO)
    market.tick()
    assert leased(market, dep_id) == {0: "fast1", 1: "slow1"}
    assert_audited(market)


def test_a_failed_node_stops_the_gang_and_a_tenant_close_does_not_reorder(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = running_gang(market, clock)
    market.report_status("fast1", f"{dep_id}/1/1/fast1", False, exited=True, exit_code=1)
    assert market.get_lease(f"{dep_id}/2/1/fast2").close_reason == CloseReason.GANG_STOPPED
    assert {o.id for o in market.list_orders(deployment_id=dep_id) if o.state == "open"} == {
        f"{dep_id}/1/2",
        f"{dep_id}/2/2",
    }
    other = running_gang(market, clock)
    market.close_lease(TENANT, f"{other}/2/1/fast2")
    assert market.get_lease(f"{other}/1/1/fast1").close_reason == CloseReason.GANG_STOPPED
    assert market.get_deployment(other).state == DeploymentState.CLOSED
    assert_audited(market)


# --- rendezvous and manifest ---------------------------------------------------------------------


def test_each_node_learns_its_rank_and_rank_zeros_host(
    market: MarketService, clock: ManualClock
) -> None:
    dep_id = running_gang(market, clock)
    meeting = rendezvous(market, market.get_lease(f"{dep_id}/2/1/fast2"))
    assert meeting is not None
    assert dict(meeting.environment()) == {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "fast1.example",
        "MASTER_PORT": "29500",
        "GPUMARKET_GANG_ID": dep_id,
    }
    assert node_rendezvous(f"{dep_id}/1/3/p", BIG, "h").rank == 0
    with pytest.raises(ValueError, match="no node of a gang of 2"):
        node_rendezvous(f"{dep_id}/3/1/p", BIG, "h")


def test_a_gang_deployment_needs_one_group_per_node(market: MarketService) -> None:
    job = JobSettings(kind=JobKind.TRAINING, gang=BIG)
    with pytest.raises(InvalidArgument, match="a gang of 2 nodes needs 2 groups, not 1"):
        market.create_deployment(TENANT, [gpu_group()], job, b"s", b"h" * 32, b"r", money.MICRO)


def gang_sdl(lines: str) -> str:
    return BASE + "gpumarket:\n  kind: training\n  gang:\n" + lines


def test_the_manifest_orders_its_group_once_per_node() -> None:
    manifest = parse_manifest(
        gang_sdl(
            "    nodes: 3\n    min_bandwidth: 10Gbps\n    port: 29400\n    gradient_size: 2G\n"
        )
    )
    assert manifest.job.gang == GangSettings(3, 10_000.0, 29400, 2 * 10**9, 300_000)
    assert [g.name for g in manifest.groups] == ["dc", "dc", "dc"]


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ("    nodes: 1\n", "gpumarket.gang.nodes: 1 is outside 2..64"),
        ("    nodes: 2\n    min_bandwidth: fast\n", "gpumarket.gang.min_bandwidth: invalid"),
        ("    nodes: 2\n    port: 80\n", "gpumarket.gang.port: 80 is outside 1024..65535"),
        ("    nodes: 2\n    sync_interval: 8d\n", "sync_interval must be over 0 and at most 7d"),
        ("    nodes: 2\n    colour: red\n", "gpumarket.gang.colour: unexpected field"),
        ("    min_bandwidth: 1Gbps\n", "gpumarket.gang.nodes: nodes is required"),
    ],
)
def test_a_bad_gang_names_the_field_and_its_line(lines: str, needle: str) -> None:
    text = gang_sdl(lines)
    with pytest.raises(InvalidArgument) as error:
        parse_manifest(text)
    assert needle in str(error.value)
    key = needle.split(":")[0].rsplit(".", 1)[-1] if needle.startswith("gpumarket") else ""
    at = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith(f"    {key}:")]
    if at:  # the line of the key at fault
        assert f"<manifest>:{at[0]}: " in str(error.value)


def test_a_gang_is_for_training_only() -> None:
    text = BASE + "gpumarket:\n  gang:\n    nodes: 2\n"
    with pytest.raises(InvalidArgument, match="a gang is for training"):
        parse_manifest(text)
