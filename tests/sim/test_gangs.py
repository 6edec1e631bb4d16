"""Multi-node training jobs are gangs to the simulated market, so the market's own rules
(core/gang.py) lease them all or none and stop and re-auction them together; the engine keeps no
rule of its own for them. A gang that cannot be filled holds no GPU; a node lost stops the others
(gang_stopped, billed to that moment) and the whole gang is leased again, together."""

from __future__ import annotations

from marketplace.core.money import accrued
from marketplace.core.state import CloseReason, LeaseState, OrderState
from simulator.engine import Simulation
from simulator.workload import MS_PER_HOUR, Job
from tests.sim.test_engine import TIMEOUT_MS, WINDOW_MS, hand_driven_market
from tests.sim.test_freed_capacity import arrive, run_to


def market(boxes: int) -> Simulation:
    return hand_driven_market(providers=boxes, tenants=3, training_keys={"patience_hours": 48})


def test_a_gang_the_market_cannot_fill_holds_no_gpu() -> None:
    sim = market(boxes=1)
    gang = arrive(sim, "training", 8, 2, groups=2)
    run_to(sim, WINDOW_MS + 1)
    dep = sim.market.get_deployment(gang.deployment_id)
    assert dep.job.gang is not None and dep.job.gang.nodes == 2
    # one box for two nodes: no node is leased (before, the engine leased one and held it)
    assert gang.leases == ["", ""] and gang.first_start_ms < 0
    assert [sim.market.get_order(o).state for o in gang.orders] == [OrderState.OPEN] * 2
    [box] = sim.providers
    assert box.free_gpus == 8
    single = arrive(sim, "training", 8, 1)
    run_to(sim, sim.world.now() + WINDOW_MS + 1)
    assert single.first_start_ms >= 0 and single.providers == [box.index]


def lease_of(sim: Simulation, job: Job, g: int) -> str:
    lease = job.leases[g]
    assert lease
    return lease


def test_a_lost_node_stops_the_gang_and_it_is_leased_again_together() -> None:
    sim = market(boxes=3)
    gang = arrive(sim, "training", 8, 5, groups=2)
    run_to(sim, WINDOW_MS + 1)
    assert gang.first_start_ms == WINDOW_MS
    first = [lease_of(sim, gang, g) for g in range(2)]
    lost_box = sim.providers[gang.providers[0]]
    survivor_box = sim.providers[gang.providers[1]]
    survivor_price = sim.market.get_lease(first[1]).price_per_hour

    failed_at = WINDOW_MS + MS_PER_HOUR
    sim.world.after(failed_at - sim.world.now(), sim.failures.fail, lost_box)
    noticed_at = failed_at + TIMEOUT_MS
    run_to(sim, noticed_at + 1)
    lost, stopped = (sim.market.get_lease(lease_id) for lease_id in first)
    assert lost.close_reason == CloseReason.PROVIDER_LOST
    assert lost.billed_until_ms == failed_at  # its last heartbeat
    assert stopped.state == LeaseState.CLOSED
    assert stopped.close_reason == CloseReason.GANG_STOPPED
    assert stopped.billed_until_ms == noticed_at  # the market's rule: billed to that moment
    assert stopped.paid == accrued(survivor_price, noticed_at - WINDOW_MS)
    assert survivor_box.free_gpus == 0  # its GPUs came back and it bid on the re-auction
    # every node ordered again, together
    assert [o.split("/")[-1] for o in gang.orders] == ["2", "2"]

    run_to(sim, noticed_at + WINDOW_MS + 1)
    assert gang.running_since_ms == noticed_at + WINDOW_MS
    assert sorted(gang.providers) == sorted(p.index for p in sim.providers if p is not lost_box)
    assert gang.interruptions == 1
    run_to(sim, sim.horizon_ms)
    assert gang.outcome == "completed"
    assert sim.market.audit().balanced
