"""Spot jobs in the simulator, with the market's own pre-emption rule (core/spot.py): an
on-demand job that finds the only provider full of a spot job pre-empts it; the spot lease is
billed to that moment and its group is ordered again; a spot scenario is reproducible."""

from __future__ import annotations

import json
from pathlib import Path

from marketplace.core.money import accrued
from marketplace.core.resources import Tier
from marketplace.core.state import CloseReason, OrderState
from simulator.engine import Simulation
from simulator.providers import bid_price
from simulator.report import metrics_json, summarize
from simulator.scenario import load_scenario
from simulator.workload import MS_PER_HOUR
from tests.helpers import EXAMPLES
from tests.sim.test_engine import hand_driven_market

WINDOW_MS = 30_000


def one_provider_market() -> Simulation:
    return hand_driven_market(
        providers=1,
        tenants=2,
        provider_keys={"spot_percent": 60},
        training_keys={"spot_share": 0.5},
    )


def test_an_on_demand_job_preempts_a_spot_job_with_the_markets_rule() -> None:
    sim = one_provider_market()
    spot_job = sim.arrivals.factory.make(0, "training", gpus=8, duration_ms=5 * MS_PER_HOUR)
    spot_job.spot = True
    sim.world.after(0, sim.arrivals.arrive, spot_job)
    sim.env.run(until=WINDOW_MS + 1)
    [provider] = sim.providers
    spot_lease = sim.market.get_lease(spot_job.leases[0])
    started = spot_job.first_start_ms
    assert sim.market.get_deployment(spot_job.deployment_id).job.tier == Tier.SPOT
    on_demand_price = bid_price(provider, 8, sim.costs["h100"], sim.auctions.pricing)
    assert spot_lease.price_per_hour == on_demand_price * 60 // 100  # the agent's spot price

    arrive_at = started + 2 * MS_PER_HOUR
    demand_job = sim.arrivals.factory.make(0, "training", gpus=8, duration_ms=MS_PER_HOUR)
    demand_job.spot = False
    sim.world.after(arrive_at - sim.world.now(), sim.arrivals.arrive, demand_job)
    sim.env.run(until=arrive_at + WINDOW_MS + 1)

    preempted = sim.market.get_lease(spot_lease.id)
    assert preempted.close_reason == CloseReason.PREEMPTED
    preempted_at = arrive_at + WINDOW_MS
    assert preempted.billed_until_ms == preempted_at
    assert preempted.paid == accrued(spot_lease.price_per_hour, preempted_at - started)
    assert demand_job.providers[0] == provider.index and demand_job.first_start_ms == preempted_at
    assert sim.metrics.preemptions == 1 and spot_job.interruptions == 1
    # the spot group was ordered again and waits for room (restart: on-failure)
    reorder = sim.market.get_order(f"{spot_job.deployment_id}/1/2")
    assert reorder.state == OrderState.OPEN and reorder.tier == Tier.SPOT
    assert sim.market.audit().balanced
    sim.env.run(until=sim.horizon_ms)
    assert demand_job.outcome == "completed"
    assert sim.market.audit().balanced


def test_the_spot_scenario_preempts_and_is_reproducible(tmp_path: Path) -> None:
    scenario = load_scenario(EXAMPLES / "scenario-spot.yaml")
    outputs = []
    for _ in range(2):
        sim = Simulation(scenario, seed=1)
        sim.run()
        outputs.append(metrics_json(summarize(sim)))
    assert outputs[0] == outputs[1]
    summary = json.loads(outputs[0])
    assert summary["spot"]["jobs"] > 0 and summary["spot"]["preemptions"] > 0
    assert summary["ledger"]["balanced"]
    assert summary["scenario"]["tenants"]["training"]["spot_share"] == 0.5
