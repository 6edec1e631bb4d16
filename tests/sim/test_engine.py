"""The simulator's market mechanics, on a two-provider market driven by hand: a provider dies
mid-job, the market notices one heartbeat timeout later, pays it only up to the failure,
re-auctions the group, and the job resumes from its last synchronisation."""

from __future__ import annotations

import gc

from marketplace.core.money import MICRO, accrued
from simulator.engine import Simulation
from simulator.providers import bid_price
from simulator.scenario import parse_scenario
from simulator.workload import MS_PER_HOUR, MS_PER_MINUTE

WINDOW_MS = 30_000
TIMEOUT_MS = 60_000


def hand_driven_market(
    providers: int = 2,
    tenants: int = 1,
    provider_keys: dict[str, object] | None = None,
    training_keys: dict[str, object] | None = None,
) -> Simulation:
    """8-GPU H100 providers with no random failures and no arrivals, for jobs made by hand: a
    1-node training job syncing every 38 minutes. Extra scenario keys go in `*_keys`."""
    scenario = parse_scenario(
        {
            "duration_days": 1,
            "market": {"payment": "first-price", "bid_window_s": 30, "heartbeat_timeout_s": 60},
            "providers": {
                "count": providers,
                "mix": [{"model": "h100", "ram_gib": 80, "interface": "sxm", "gpus_per_node": 8}],
                "strategies": {"cost-plus": 1},
                "failures": {"distribution": "none"},
                "up_mbps": {1000: 1},
                "down_mbps": {1000: 1},
                **(provider_keys or {}),
            },
            "tenants": {
                "count": tenants,
                "arrivals": {"rate_per_hour": 0},
                "mix": {"training": 1},
                "training": {
                    "nodes": {1: 1},
                    "gpu_models": {"h100": 1},
                    "sync_interval_min": {38: 1},
                    "min_bandwidth_mbps": {0: 1},
                    **(training_keys or {}),
                },
            },
        }
    )
    return Simulation(scenario, seed=4)


def two_provider_market() -> Simulation:
    return hand_driven_market()


def test_failover_bills_to_the_failure_and_resumes_from_the_last_sync() -> None:
    sim = two_provider_market()
    job = sim.arrivals.factory.make(0, "training", gpus=8, duration_ms=5 * MS_PER_HOUR)
    sim.world.after(0, sim.arrivals.arrive, job)
    sim.env.run(until=WINDOW_MS + 1)
    first = sim.providers[job.providers[0]]
    second = next(p for p in sim.providers if p is not first)
    price = sim.market.get_lease(job.leases[0]).price_per_hour
    assert first.cost_per_gpu_hour < second.cost_per_gpu_hour  # the cheaper bid won
    started = job.first_start_ms
    assert started == WINDOW_MS

    fail_at = started + 2 * MS_PER_HOUR
    sim.world.after(fail_at - sim.world.now(), sim.failures.fail, first)
    sim.env.run(until=fail_at + TIMEOUT_MS - 1)
    assert job.leases[0] != ""  # not noticed yet: the market still holds the lease
    sim.env.run(until=fail_at + TIMEOUT_MS + WINDOW_MS + 1)

    # the failed provider is paid exactly up to its failure (its last heartbeat), not detection
    assert sim.market.get_account(first.address).balance == accrued(price, fail_at - started)
    assert sim.metrics.leases_lost == 1
    assert sim.metrics.failovers == 1
    assert job.providers[0] == second.index  # re-auctioned to the other provider
    restarted = fail_at + TIMEOUT_MS + WINDOW_MS
    assert sim.metrics.failover_ms == [restarted - fail_at]

    # 2 h of work at a 38-minute sync interval keeps 3 syncs (114 min); the rest is redone
    kept = 3 * 38 * MS_PER_MINUTE
    assert job.progress_ms == kept
    sim.env.run(until=sim.horizon_ms)
    assert job.outcome == "completed"
    # the second provider is paid its own (first-price) bid for the redone and remaining work
    second_bid = bid_price(second, 8, sim.costs["h100"], sim.auctions.pricing)
    paid = accrued(second_bid, 5 * MS_PER_HOUR - kept)
    assert sim.market.get_account(second.address).balance == paid
    assert sim.market.audit().balanced
    assert sim.metrics.job_interruptions == 1
    assert price == bid_price(first, 8, sim.costs["h100"], sim.auctions.pricing) > 8 * MICRO


def test_a_provider_priced_above_the_maximum_declines_through_the_bid_decision() -> None:
    sim = two_provider_market()
    job = sim.arrivals.factory.make(0, "training", gpus=8, duration_ms=MS_PER_HOUR)
    job.max_price_per_hour = 1  # below either provider's cost-plus price
    sim.world.after(0, sim.arrivals.arrive, job)
    sim.env.run(until=WINDOW_MS + 1)
    assert sim.market.explain_order(job.orders[0]).bids == ()
    assert sim.metrics.declines_price == 2  # both looked, both said no (bidding.with_price)
    assert sim.metrics.bids == 0
    assert job.first_start_ms < 0 and sim.metrics.orders_without_bids == 1


def test_a_provider_without_room_for_the_group_declines_through_the_bid_decision() -> None:
    sim = two_provider_market()
    half = sim.arrivals.factory.make(0, "training", gpus=4, duration_ms=5 * MS_PER_HOUR)
    sim.world.after(0, sim.arrivals.arrive, half)
    sim.env.run(until=WINDOW_MS + 1)
    busy = sim.providers[half.providers[0]]
    assert busy.free_gpus == 4

    whole = sim.arrivals.factory.make(sim.world.now(), "training", gpus=8, duration_ms=MS_PER_HOUR)
    sim.world.after(0, sim.arrivals.arrive, whole)
    sim.env.run(until=2 * WINDOW_MS + 2)
    assert sim.metrics.declines_no_room == 1  # the half-busy box: bidding.decide said no
    assert whole.providers[0] != busy.index
    group = sim.world.group_specs(whole)[0]
    verdict = busy.decisions[(id(group.resources), id(group.requirements))][4]  # 4 GPUs free
    assert verdict is not None and not verdict.bid
    assert "needs 8× h100" in verdict.reason and "4× h100 80Gi free" in verdict.reason


def test_a_run_makes_no_cyclic_garbage() -> None:
    """Simulation.run turns the cyclic GC off (refcounting frees everything): that holds only
    while nothing on the hot paths builds reference cycles. A failure-heavy scenario covers
    failovers, re-orders, refused bids and both job kinds."""
    scenario = parse_scenario(
        {
            "duration_days": 0.5,
            "providers": {
                "count": 40,
                "failures": {"community_share": 1.0, "community_factor": 2000},
            },
            "tenants": {"count": 20, "arrivals": {"rate_per_hour": 20}},
        }
    )
    sim = Simulation(scenario, seed=5)
    gc.collect()
    collected: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["collected"])

    gc.callbacks.append(count)
    try:
        sim.run()
        gc.collect()
    finally:
        gc.callbacks.remove(count)
    assert sim.metrics.provider_failures > 0 and sim.metrics.failovers > 0
    assert sum(collected) == 0
