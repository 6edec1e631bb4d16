"""Sweep wall time: Ray tasks against the local process pool, for the same sweep in the same run.

    python bench/bench_sweep.py                   # 8 runs (2×2 grid × 2 seeds), 2 workers
    python bench/bench_sweep.py --providers 200 --days 1 --workers 2 --ray auto

The process pool runs first, then the same sweep on Ray: a local cluster started here with
--workers CPUs (its start-up is timed apart, not counted in the sweep), or the cluster at
--ray ADDRESS. Prints both wall times, the ratio ray/pool (1.0: as fast; below: faster), and
whether every run's metrics.json is byte-for-byte the same.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from simulator.ray_pool import LOCAL, connected, ray_runner
from simulator.sweep import Runner, Sweep, run_sweep


def bench_sweep(providers: int, days: float, workers: int) -> Sweep:
    return Sweep(
        name="bench-sweep",
        scenario=None,  # the built-in scenario
        seeds=(1, 2),
        fixed={"duration_days": days},
        grid={
            "providers.count": (providers, providers * 2),
            "market.payment": ("first-price", "second-price"),
        },
        workers=workers,
    )


def timed(sweep: Sweep, out: Path, runner: Runner | None) -> float:
    started = time.perf_counter()
    run_sweep(sweep, out, runner=runner)
    return time.perf_counter() - started


def metrics(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("metrics.json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--providers", type=int, default=100)
    parser.add_argument("--days", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ray", default=LOCAL, help="Ray address (default: a local cluster)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sweep = bench_sweep(args.providers, args.days, args.workers)
    runs = len(sweep.combinations()) * len(sweep.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        pool_out, ray_out = Path(tmp, "pool"), Path(tmp, "ray")
        pool_s = timed(sweep, pool_out, None)
        started = time.perf_counter()
        with connected(args.ray, num_cpus=args.workers) as ray:
            ray_start_s = time.perf_counter() - started
            ray_s = timed(sweep, ray_out, ray_runner(ray))
        same = metrics(pool_out) == metrics(ray_out) and len(metrics(pool_out)) == runs
    result = {
        "runs": runs,
        "providers": [args.providers, args.providers * 2],
        "days": args.days,
        "workers": args.workers,
        "process_pool_s": round(pool_s, 2),
        "ray_s": round(ray_s, 2),
        "ray_cluster_start_s": round(ray_start_s, 2),
        "ray_to_pool": round(ray_s / pool_s, 3),
        "byte_identical": same,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"sweep of {runs} runs ({args.providers}/{args.providers * 2} providers, "
        f"{args.days:g} days), {args.workers} workers\n"
        f"  process pool: {pool_s:7.2f} s\n"
        f"  ray tasks:    {ray_s:7.2f} s   (cluster start {ray_start_s:.1f} s, not counted)\n"
        f"  ray / pool:   {ray_s / pool_s:7.3f}\n"
        f"  metrics.json byte-identical: {same}"
    )


if __name__ == "__main__":
    main()
