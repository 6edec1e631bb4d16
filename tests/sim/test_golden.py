"""A run's results are pinned: the same scenario and seed write byte-identical metrics.json,
providers.csv and timeseries.csv, on every machine and after every speed-up.

The golden files under tests/sim/golden/ were written by the simulator before the performance
round (issue 13), and rewritten since only by changes meant to alter results, each saying in its
commit which results changed and why (per-process random streams; freed capacity offered to the
waiting orders on every path; multi-node jobs as gangs under the market's rules). Such a change
rewrites them with `python -m tests.sim.test_golden` and commits the diff with its explanation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simulator.engine import run_scenario
from simulator.report import write_report
from simulator.scenario import parse_scenario

GOLDEN = Path(__file__).parent / "golden"
FILES = ("metrics.json", "providers.csv", "timeseries.csv")

# Small enough for CI (about a second each), broad enough to cross every path of the engine:
# failures and failovers, both payment rules, all three pricing strategies, multi-node training,
# orders left without bids, sampled welfare optima.
SCENARIOS: dict[str, tuple[dict[str, object], int]] = {
    # the built-in scenario (simulator/scenarios/default.yaml), on a shorter horizon
    "default": (
        {
            "name": "default",
            "duration_days": 1.5,
            "market": {
                "payment": "first-price",
                "bid_window_s": 30,
                "heartbeat_timeout_s": 60,
                "bidders_per_order": 8,
            },
            "providers": {
                "count": 300,
                "mix": "default",
                "strategies": {"cost-plus": 0.4, "equilibrium": 0.3, "adaptive": 0.3},
            },
            "tenants": {
                "count": 200,
                "arrivals": {"kind": "poisson", "rate_per_hour": 30},
                "mix": {"training": 0.4, "inference": 0.6},
            },
        },
        7,
    ),
    # examples/scenario-small.yaml: second price, flaky community boxes, a crowded market
    "second-price": (
        {
            "name": "small",
            "duration_days": 0.5,
            "market": {"payment": "second-price", "bid_window_s": 30},
            "providers": {
                "count": 40,
                "failures": {"per_gpu_year": 0.17, "community_share": 0.5, "community_factor": 300},
            },
            "tenants": {"count": 20, "arrivals": {"kind": "poisson", "rate_per_hour": 8}},
            "report": {"sample_minutes": 30},
        },
        3,
    ),
    # bench/bench_sim.py's market at 1/200 of its size: small jobs, many auctions per provider
    "bench": (
        {
            "name": "bench",
            "duration_days": 2,
            "market": {
                "payment": "first-price",
                "bid_window_s": 30,
                "bidders_per_order": 6,
                "efficiency_sample_every": 50,
            },
            "providers": {"count": 50},
            "tenants": {
                "count": 100,
                "arrivals": {"rate_per_hour": 7},
                "mix": {"training": 0.3, "inference": 0.7},
                "training": {
                    "nodes": {1: 0.7, 2: 0.2, 4: 0.1},
                    "gpus_per_node": {1: 0.5, 2: 0.3, 4: 0.2},
                    "compute_hours": {"median": 2.5, "sigma": 1.0},
                },
                "inference": {
                    "duration_hours": {"median": 5.0, "sigma": 1.0},
                    "request_rate": {"median": 2.0, "sigma": 1.0},
                },
            },
            "report": {"sample_minutes": 60},
        },
        1,
    ),
}


def write_run(name: str, out: Path) -> None:
    data, seed = SCENARIOS[name]
    sim = run_scenario(parse_scenario(data), seed)
    write_report(sim, out, plots=False)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_results_match_the_golden_files(name: str, tmp_path: Path) -> None:
    write_run(name, tmp_path)
    for file in FILES:
        got = (tmp_path / file).read_text(encoding="utf-8")
        want = (GOLDEN / name / file).read_text(encoding="utf-8")
        assert got == want, f"{name}/{file} differs from tests/sim/golden/{name}/{file}"


def regenerate() -> None:
    """Rewrite the golden files (only for a change that is meant to alter results)."""
    for name in SCENARIOS:
        write_run(name, GOLDEN / name)
        print(f"wrote {GOLDEN / name}", file=sys.stderr)


if __name__ == "__main__":
    regenerate()
