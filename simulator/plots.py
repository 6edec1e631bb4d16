"""PNG plots of a run and of a sweep (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from marketplace.core.money import MICRO
from simulator.engine import Simulation

MS_PER_MINUTE = 60_000


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    # no timestamp in the PNG metadata: the same run draws the same bytes
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _column(rows: list[dict[str, float | str]], key: str) -> list[float]:
    """A numeric column of the time series (only the price_<model> columns may hold "")."""
    return [cast(float, r[key]) for r in rows]


def run_plots(sim: Simulation, out: Path) -> None:
    rows = sim.metrics.rows
    hours = _column(rows, "time_h")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for model in sim.metrics.gpu_models:
        points = [(h, r[f"price_{model}"]) for h, r in zip(hours, rows, strict=True)]
        points = [(h, p) for h, p in points if p != ""]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=model)
    ax.set(
        xlabel="simulated hours",
        ylabel="mean clearing price per GPU-hour",
        title=f"Clearing price per GPU model ({sim.scenario.market.payment})",
    )
    ax.set_yscale("log")
    ax.legend(fontsize="small", ncol=2)
    _save(fig, out / "clearing_price.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(hours, _column(rows, "utilization"), label="GPUs leased / GPUs up")
    gpus_up = _column(rows, "gpus_up")
    ax.plot(
        hours,
        [up / max(gpus_up[0], 1) for up in gpus_up],
        label="GPUs up / all GPUs",
        linestyle="--",
    )
    ax.set(xlabel="simulated hours", ylabel="fraction", ylim=(0, 1.05), title="GPU utilization")
    ax.legend()
    _save(fig, out / "utilization.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    waits = sorted(w / MS_PER_MINUTE for w in sim.metrics.wait_ms)
    if waits:
        n = len(waits)
        ax.step(waits, [(i + 1) / n for i in range(n)], where="post")
        if waits[0] > 0:
            ax.set_xscale("log")  # every wait is at least one bid window
        else:
            ax.set_xscale("symlog", linthresh=1.0)
    ax.set(
        xlabel="minutes from arrival to start",
        ylabel="fraction of started jobs",
        title="Queue wait (CDF)",
    )
    _save(fig, out / "queue_wait_cdf.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    strategies = sorted({p.strategy for p in sim.providers})
    earned = [p.revenue / MICRO for p in sim.providers if p.revenue > 0]
    idle = len(sim.providers) - len(earned)
    if earned:
        # revenues span orders of magnitude (a 1-GPU T4 box vs an 8-GPU H100 one): log bins
        low, high = min(earned), max(earned)
        bins = [low * (high / low) ** (i / 30) for i in range(31)] if high > low else 10
        data = [
            [p.revenue / MICRO for p in sim.providers if p.strategy == s and p.revenue > 0]
            for s in strategies
        ]
        ax.hist(data, bins=bins, stacked=True, label=strategies)
        ax.set_xscale("log")
        ax.legend()
    ax.set(
        xlabel="revenue per provider (units)",
        ylabel="providers",
        title=f"Provider revenue by pricing strategy ({idle} earned nothing)",
    )
    _save(fig, out / "provider_revenue.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label in (
        ("provider_failures", "provider failures"),
        ("leases_lost", "leases lost"),
        ("failovers", "failovers (group re-leased)"),
        ("job_interruptions", "training interruptions"),
    ):
        ax.plot(hours, _column(rows, key), label=label)
    ax.set(xlabel="simulated hours", ylabel="cumulative count", title="Failures and failovers")
    ax.legend()
    _save(fig, out / "failures.png")


def sweep_plots(rows: list[dict[str, object]], params: list[str], out: Path) -> list[str]:
    """Mean clearing price (÷ reference cost) and efficiency against the first numeric grid
    parameter, one line per combination of the others (e.g. first- vs second-price)."""
    numeric = [p for p in params if all(isinstance(r[p], int | float) for r in rows)]
    if not numeric:
        return []
    x_key = numeric[0]
    others = [p for p in params if p != x_key]
    written = []
    for metric, label, name in (
        ("price_to_reference_cost", "clearing price ÷ reference cost", "sweep_price.png"),
        ("efficiency_market", "allocative efficiency", "sweep_efficiency.png"),
        ("gpu_utilization", "GPU utilization", "sweep_utilization.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        lines: dict[tuple[object, ...], list[tuple[float, float]]] = {}
        for r in rows:
            # x_key is numeric (checked above); metric columns always are
            point = (cast(float, r[x_key]), cast(float, r[metric]))
            lines.setdefault(tuple(r[o] for o in others), []).append(point)
        for key, points in sorted(lines.items(), key=lambda kv: str(kv[0])):
            points.sort()
            text = ", ".join(f"{o}={v}" for o, v in zip(others, key, strict=True)) or metric
            ax.plot(*zip(*points, strict=True), marker="o", label=text)
        ax.set(xlabel=x_key, ylabel=label, title=f"{label} vs {x_key} (mean over seeds)")
        ax.legend(fontsize="small")
        _save(fig, out / name)
        written.append(name)
    return written
