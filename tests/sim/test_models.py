"""The simulator's failure and bandwidth models reproduce the published anchors
(../shared/reference/simulation.md §4, §5, §7)."""

from __future__ import annotations

import random

import pytest

from simulator.failures import MS_PER_HOUR, FailureModel, count_failures
from simulator.network import Link, allreduce_seconds, sync_seconds, utilization
from simulator.scenario import FailureDistribution, FailureSpec, LogNormal

DAY_MS = 24 * MS_PER_HOUR


def llama3_model(distribution: FailureDistribution = "exponential") -> FailureModel:
    spec = FailureSpec(
        distribution=distribution, per_gpu_year=0.17, repair_hours=LogNormal(3.0, 1.0)
    )
    return FailureModel.from_spec(spec)


def test_llama3_interruptions_16384_gpus_54_days() -> None:
    # Meta's Llama 3 run: 419 unplanned interruptions on 16,384 H100s in 54 days (± 41 at 95%).
    model = llama3_model()
    counts = [count_failures(model, random.Random(seed), 2048, 8, 54 * DAY_MS) for seed in (1, 2)]
    mean = sum(counts) / len(counts)
    assert 419 - 41 <= mean <= 419 + 41, counts


def test_weibull_keeps_the_mean_time_between_failures() -> None:
    model = llama3_model("weibull")
    rng = random.Random(7)
    draws = [model.time_to_failure_ms(rng, 8) for _ in range(40_000)]
    mean = sum(draws) / len(draws)
    assert mean == pytest.approx(model.mtbf_ms(8), rel=0.05)


def test_repairs_are_lognormal_with_the_given_median() -> None:
    model = llama3_model()
    rng = random.Random(3)
    draws = sorted(model.repair_time_ms(rng) for _ in range(20_001))
    assert draws[10_000] == pytest.approx(3 * MS_PER_HOUR, rel=0.05)


def test_ring_allreduce_formula() -> None:
    # 7B model, bf16 gradients (14 GB), 8 ranks at 1 Gb/s: 2·7/8·14e9/1.25e8 = 196 s.
    assert allreduce_seconds(8, 14e9, 1.25e8) == pytest.approx(196.0)
    assert allreduce_seconds(1, 14e9, 1.25e8) == 0.0


@pytest.mark.parametrize(("mbps", "expected"), [(1000.0, 0.94), (100.0, 0.61)])
def test_diloco_utilization(mbps: float, expected: float) -> None:
    # INTELLECT-1 / DiLoCo: 38 min of compute between syncs of 10 GB (int8) over 14 nodes.
    links = [Link(up_mbps=mbps, down_mbps=10 * mbps, region="us") for _ in range(14)]
    sync = sync_seconds(links, 10e9, cross_region_factor=1.0)
    assert utilization(38 * 60, sync) == pytest.approx(expected, abs=0.01)


def test_slowest_link_and_region_penalty_set_the_pace() -> None:
    fast = Link(10_000, 10_000, "us")
    slow = Link(100, 1_000, "us")
    far = Link(10_000, 10_000, "eu")
    assert sync_seconds([fast, slow], 1e9, 0.5) == pytest.approx(
        allreduce_seconds(2, 1e9, 100e6 / 8)
    )
    assert sync_seconds([fast, far], 1e9, 0.5) == pytest.approx(allreduce_seconds(2, 1e9, 5e9 / 8))


def test_min_cost_assignment_matches_brute_force() -> None:
    import itertools
    import math

    from simulator.assignment import min_cost_assignment

    rng = random.Random(11)
    for _ in range(200):
        n = rng.randint(1, 4)
        m = rng.randint(n, 6)
        cost = [[rng.choice([math.inf, rng.randint(1, 20)]) for _ in range(m)] for _ in range(n)]
        feasible = [
            sum(cost[i][c] for i, c in enumerate(cols))
            for cols in itertools.permutations(range(m), n)
        ]
        best = min(feasible)
        if math.isinf(best):
            with pytest.raises(ValueError):
                min_cost_assignment(cost)
            continue
        total, cols = min_cost_assignment(cost)
        assert total == best
        assert len(set(cols)) == n
