"""Parameter sweeps: a grid of scenario settings × seeds, run in parallel processes (or as Ray
tasks on a cluster: simulator/ray_pool.py).

A sweep file (YAML):

    name: payment-vs-providers
    scenario: scenario-small.yaml      # optional, relative to this file; default: built-in
    seeds: [1, 2]
    set: {duration_days: 1}             # optional: fixed overrides for every run
    grid:                               # dotted scenario keys → values to try
      providers.count: [100, 200, 400]
      market.payment: [first-price, second-price]
    workers: 2                          # optional; default: the machine's CPU count

Every combination is validated before anything runs, so a bad value fails in one line.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, cast

import yaml

from marketplace.core.quoting import path_key
from marketplace.userfiles import CONFIG_FILE_BYTES, read_bounded_text
from simulator import compiled
from simulator.engine import run_scenario
from simulator.report import Summary, metrics_json, summarize
from simulator.scenario import ScenarioError, load_scenario

# One line of sweep_runs.csv / sweep.csv: a run's grid parameters (any scenario value), then
# its seed and metrics (numbers).
SweepRow: TypeAlias = dict[str, object]

_KEYS = ("name", "scenario", "seeds", "set", "grid", "workers")


@dataclass(frozen=True)
class Sweep:
    name: str
    scenario: Path | None
    seeds: tuple[int, ...]
    fixed: dict[str, object]
    grid: dict[str, tuple[object, ...]]
    workers: int

    def combinations(self) -> list[dict[str, object]]:
        keys = list(self.grid)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]


def load_sweep(path: Path) -> Sweep:
    try:
        data = yaml.safe_load(read_bounded_text(path, CONFIG_FILE_BYTES, "a sweep"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a sweep must be a mapping with a 'grid'")
    for key in data:
        if key not in _KEYS:
            raise ScenarioError(f"sweep.{path_key(key)}: unknown key (known: {', '.join(_KEYS)})")
    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ScenarioError("sweep.grid: needs at least one 'dotted.key: [values]' entry")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"sweep.grid.{path_key(key)}: expected a non-empty list of values")
    seeds = data.get("seeds", [1])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ScenarioError("sweep.seeds: expected a list of whole numbers >= 0")
    fixed = data.get("set") or {}
    if not isinstance(fixed, dict):
        raise ScenarioError("sweep.set: expected a mapping of dotted keys to values")
    workers = data.get("workers", os.cpu_count() or 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ScenarioError(f"sweep.workers: expected a whole number >= 1, got {workers!r}")
    scenario = data.get("scenario")
    base = None
    if scenario is not None:
        if not isinstance(scenario, str):
            raise ScenarioError("sweep.scenario: expected a file name")
        base = (path.parent / scenario).resolve()
    sweep = Sweep(
        name=str(data.get("name") or path.stem),
        scenario=base,
        seeds=tuple(seeds),
        fixed=dict(fixed),
        grid={k: tuple(v) for k, v in grid.items()},
        workers=workers,
    )
    for combo in sweep.combinations():  # validate every run before starting any
        load_scenario(base, {**sweep.fixed, **combo})
    return sweep


def run_one(scenario: Path | None, overrides: dict[str, object], seed: int) -> Summary:
    """One sweep run, in a worker (a local process or a Ray task): its summary. The driver
    writes the files, so a worker on another machine needs no shared disk."""
    sc = load_scenario(scenario, overrides)
    return summarize(run_scenario(sc, seed))


# One run of a sweep: (its index in grid order × seeds, scenario file, overrides, seed).
RunSpec: TypeAlias = tuple[int, Path | None, dict[str, object], int]
# Runs the specs, yielding (index, summary) as each finishes, in any order.
Runner: TypeAlias = Callable[[list[RunSpec], int], Iterator[tuple[int, Summary]]]


def process_pool(specs: list[RunSpec], workers: int) -> Iterator[tuple[int, Summary]]:
    """The default runner: local worker processes, on the compiled core when this process runs
    on it (a forked worker has it already; a worker started afresh activates it first)."""
    build = compiled.active()
    most = min(workers, len(specs))
    if build is None:
        pool = ProcessPoolExecutor(max_workers=most)
    else:
        pool = ProcessPoolExecutor(most, initializer=compiled.activate, initargs=(build,))
    with pool:
        futures = {pool.submit(run_one, sc, over, seed): i for i, sc, over, seed in specs}
        for future in as_completed(futures):
            yield futures[future], future.result()


def table_row(params: dict[str, object], seed: int, s: Summary) -> SweepRow:
    outcomes = s["jobs"]["outcomes"]
    return {
        **params,
        "seed": seed,
        "price_to_reference_cost": s["price_to_reference_cost"],
        "efficiency_auction": s["efficiency"]["auction_vs_best_bidder"],
        "efficiency_market": s["efficiency"]["market_vs_cost_minimising"],
        "gpu_utilization": s["utilization"]["gpu_busy_fraction"],
        "wait_p50_min": s["wait_minutes"]["p50"],
        "completed": outcomes.get("completed", 0),
        "unfilled": outcomes.get("unfilled", 0),
        "failovers": s["failures"]["failovers"],
        "sla_violations": s["sla"]["violations"],
        "provider_revenue": s["providers"]["revenue_total"],
    }


def average(rows: list[SweepRow], params: list[str]) -> list[SweepRow]:
    """Mean over seeds of each numeric column, per parameter combination (grid order kept)."""
    groups: dict[tuple[object, ...], list[SweepRow]] = {}
    for row in rows:
        groups.setdefault(tuple(row[p] for p in params), []).append(row)
    out = []
    for key, members in groups.items():
        merged: SweepRow = dict(zip(params, key, strict=True))
        merged["seeds"] = len(members)
        for column in members[0]:
            if column in params or column == "seed":
                continue
            total = sum(cast(float, m[column]) for m in members)  # a metric: a number
            merged[column] = round(total / len(members), 6)
        out.append(merged)
    return out


def run_sweep(
    sweep: Sweep,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    runner: Runner | None = None,
) -> tuple[list[SweepRow], list[SweepRow], list[str]]:
    """Run every combination × seed (on `runner`; default: local processes); write each run's
    metrics.json, sweep_runs.csv, sweep.csv, sweep.json and plots.
    Returns (per-run rows, per-combination means, plot file names)."""
    out.mkdir(parents=True, exist_ok=True)
    params = list(sweep.grid)
    jobs = [
        (i, combo, seed) for i, combo in enumerate(sweep.combinations()) for seed in sweep.seeds
    ]
    specs: list[RunSpec] = [
        (n, sweep.scenario, {**sweep.fixed, **combo}, seed)
        for n, (_, combo, seed) in enumerate(jobs)
    ]
    results: dict[int, SweepRow] = {}
    for done, (n, summary) in enumerate((runner or process_pool)(specs, sweep.workers), start=1):
        i, combo, seed = jobs[n]
        folder = out / "runs" / f"run{i:03d}-seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(metrics_json(summary), encoding="utf-8")
        results[n] = table_row(combo, seed, summary)
        if progress is not None:
            progress(done, len(jobs))
    rows = [results[n] for n in range(len(jobs))]  # grid order, not finishing order
    means = average(rows, params)
    _write_csv(out / "sweep_runs.csv", rows)
    _write_csv(out / "sweep.csv", means)
    (out / "sweep.json").write_text(
        json.dumps(
            {
                "name": sweep.name,
                "grid": {k: list(v) for k, v in sweep.grid.items()},
                "seeds": list(sweep.seeds),
                "runs": rows,
                "means": means,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    from simulator.plots import sweep_plots

    plots = sweep_plots(means, params, out)
    return rows, means, plots


def _write_csv(path: Path, rows: list[SweepRow]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
