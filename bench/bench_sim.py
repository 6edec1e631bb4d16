"""Simulator throughput: simulated events/s against a raw SimPy timeout loop in the same run,
and the wall time of a 30-day market with 10,000 providers and >= 1,000,000 jobs.

    python bench/bench_sim.py                 # the full scenario (minutes)
    python bench/bench_sim.py --scale 0.05    # 500 providers, ~50,000 jobs, same 30 days
    python bench/bench_sim.py --scale 0.1     # 1,000 providers, ~100,000 jobs
    python bench/bench_sim.py --profile       # also print where the time goes (cProfile)
    python bench/bench_sim.py --out DIR       # also write the report (metrics.json, CSVs)
    python bench/bench_sim.py --compiled build/compiled   # on the compiled core (see below)

--compiled runs the market core compiled by `python -m simulator.compiled build` (mypyc) when
that build matches the sources; otherwise it says why and runs the pure-Python core (the
reference; same results either way).

"events" are the SimPy events (timed calls) the simulation schedules (arrivals, bid-window closes,
completions, failures, detections, repairs, patience checks, samples); each one runs the
market's real code (MarketService) on the simulated clock. Peak RSS is this process's
(resource.getrusage ru_maxrss): the raw SimPy baselines that run first are far smaller.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import simpy
from simpy.events import ProcessGenerator

from simulator import compiled

if TYPE_CHECKING:
    from simulator.engine.simulation import Simulation
    from simulator.scenario import Scenario

# the full-scale month: 10,000 providers (~26,800 GPUs), >1M small jobs in 30 days
MONTH = Path(__file__).resolve().parent.parent / "examples" / "scenario-month.yaml"


def bench_scenario(scale: float, days: float) -> Scenario:
    """The month of examples/scenario-month.yaml, `scale` of its providers, tenants and
    arrivals, over `days`."""
    from simulator.scenario import load_scenario  # after the compiled core (if any) is active

    full = load_scenario(MONTH)
    return load_scenario(
        MONTH,
        {
            "name": f"bench-x{scale:g}",
            "duration_days": days,
            "providers.count": max(10, round(full.providers.count * scale)),
            "tenants.count": max(10, round(full.tenants.count * scale)),
            "tenants.arrivals.rate_per_hour": full.tenants.arrivals.rate_per_hour * scale,
        },
    )


def raw_simpy(events: int, processes: int) -> float:
    """Events/s of plain `yield env.timeout(1)` loops spread over `processes` processes."""
    env = simpy.Environment()
    per = events // processes

    def loop(env: simpy.Environment, n: int) -> ProcessGenerator:
        for _ in range(n):
            yield env.timeout(1)

    for _ in range(processes):
        env.process(loop(env, per))
    started = time.perf_counter()
    env.run()
    return per * processes / (time.perf_counter() - started)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--out", type=Path, help="also write the run's report into this folder")
    parser.add_argument(
        "--compiled",
        type=Path,
        metavar="DIR",
        help="run the compiled core built into DIR (python -m simulator.compiled build)",
    )
    args = parser.parse_args()
    refused = None if args.compiled is None else compiled.activate(args.compiled)
    if refused is not None:
        print(f"compiled core not used: {refused}", file=sys.stderr)
    # imported only now: the compiled core (if any) must be in place before the core loads
    from marketplace.core import market
    from simulator.engine import run_scenario

    base_1 = raw_simpy(1_000_000, 1)
    base_10k = raw_simpy(1_000_000, 10_000)
    scenario = bench_scenario(args.scale, args.days)
    gc.collect()
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    if profiler is not None:
        profiler.enable()

    def report_progress(fraction: float) -> None:
        if round(fraction * 100) % 10 == 0:
            elapsed = time.perf_counter() - started
            print(f"  {fraction:4.0%} simulated after {elapsed:6.1f} s", file=sys.stderr)

    sim = run_scenario(scenario, progress=report_progress)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    report(args, sim, wall, cpu, compiled.is_compiled(market), (base_1, base_10k), profiler)


def report(
    args: argparse.Namespace,
    sim: Simulation,
    wall: float,
    cpu: float,
    core_compiled: bool,
    baselines: tuple[float, float],
    profiler: cProfile.Profile | None,
) -> None:
    """Print the run's figures (and the profile), write the report when asked."""
    from simulator.report import summarize, write_report

    base_1, base_10k = baselines

    summary = summarize(sim)
    jobs = sum(summary["jobs"]["arrived"].values())
    rate = sim.events / wall
    figures = {
        "scale": args.scale,
        "core_compiled": core_compiled,
        "simulated_days": args.days,
        "providers": len(sim.providers),
        "gpus": summary["utilization"]["gpus"],
        "jobs": jobs,
        "auctions": summary["market"]["auctions"],
        "bids": summary["market"]["bids"],
        "simpy_events": sim.events,
        "wall_seconds": round(wall, 2),
        # this process's CPU time: on a shared box, steadier than the wall time
        "cpu_seconds": round(cpu, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "events_per_second": round(rate),
        "jobs_per_second": round(jobs / wall),
        "raw_simpy_events_per_second_1_process": round(base_1),
        "raw_simpy_events_per_second_10k_processes": round(base_10k),
        "ratio_to_raw_1_process": round(rate / base_1, 4),
        "ratio_to_raw_10k_processes": round(rate / base_10k, 4),
        "gpu_utilization": summary["utilization"]["gpu_busy_fraction"],
        "ledger_balanced": summary["ledger"]["balanced"],
        "peak_rss_mib": round(peak_rss_bytes() / 2**20),
    }
    if args.out is not None:
        write_report(sim, args.out, plots=False)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:45} {value}")
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        print(text.getvalue())


if __name__ == "__main__":
    main()
