"""The providers an order draws (Auctions._candidates) are the ones a plain scan finds eligible:
each drawn provider sees the order and its bid decision is yes, with the very reservation the
agent's rule (Auctions.reserve → bidding.decide) gives; a pool small enough to scan yields exactly
the plain scan's eligible providers (all of them when there are no more than bidders_per_order)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.core.bidding import decide
from simulator.engine import Simulation
from simulator.scenario import parse_scenario


def busy_market(providers: int, bidders: int, seed: int) -> Simulation:
    scenario = parse_scenario(
        {
            "duration_days": 0.2,
            "market": {"bidders_per_order": bidders},
            "providers": {"count": providers},
            "tenants": {"count": 20, "arrivals": {"rate_per_hour": providers / 10}},
        }
    )
    sim = Simulation(scenario, seed)
    sim.env.run(until=sim.horizon_ms // 2)  # some GPUs busy or reserved, most models free
    return sim


@settings(max_examples=25, deadline=None)
@given(
    providers=st.integers(min_value=4, max_value=60),
    bidders=st.integers(min_value=1, max_value=8),
    seed=st.integers(min_value=0, max_value=10_000),
    gpus=st.sampled_from([1, 2, 4, 8]),
    mbps=st.sampled_from([0.0, 500.0, 5_000.0]),  # none, the 100 Mbps links, nearly all
)
def test_drawn_candidates_are_what_a_plain_scan_finds(
    providers: int, bidders: int, seed: int, gpus: int, mbps: float
) -> None:
    sim = busy_market(providers, bidders, seed)
    auctions = sim.auctions
    for model in sorted(sim.world.pools):
        job = sim.arrivals.factory.make(sim.world.now(), "training", gpus=gpus)
        job.gpu_model = model
        job.min_bandwidth_mbps = mbps
        group = sim.world.group_specs(job)[0]
        pool = list(sim.world.pools[model].items)
        scan = [
            i
            for i in pool
            if auctions.sees(sim.providers[i], job)
            and decide(
                group,
                job.tenant,
                sim.providers[i].attributes,
                sim.providers[i].capacities[max(sim.providers[i].free_gpus, 0)],
                auctions.policy,
                None,
                sim.world.now(),
            ).bid
        ]
        drawn = auctions._candidates(job, group)
        indices = [p.index for p, _ in drawn]
        assert len(set(indices)) == len(indices) <= bidders
        assert set(indices) <= set(scan)
        for p, reserved in drawn:
            assert reserved is auctions.reserve(p, group, job)
            assert reserved.bid
        if len(pool) <= 2 * bidders:  # scanned, not sampled: every eligible one, up to the cap
            assert len(indices) == min(len(scan), bidders)
            if len(scan) <= bidders:
                assert indices == scan
