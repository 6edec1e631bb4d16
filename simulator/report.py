"""A run's report: the metrics as JSON, time series and providers as CSV, plots as PNG.

The metrics JSON holds only simulated quantities (no wall-clock time), with sorted keys and
rounded floats, so the same scenario and seed give the same bytes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from marketplace.core.money import MICRO
from simulator.engine import Simulation
from simulator.metrics import MS_PER_HOUR, mean, quantiles, r6
from simulator.scenario import scenario_to_dict

MS_PER_MINUTE = 60_000


def summarize(sim: Simulation) -> dict[str, Any]:
    """Every headline number of a finished run, as plain JSON-able data."""
    m = sim.metrics
    end = sim.end_ms
    w = m.welfare
    prices = {}
    for model in sorted(m.prices):
        values = m.prices[model]
        q = quantiles([v / MICRO for v in values], (0.1, 0.5, 0.9))
        prices[model] = {
            "leases": len(values),
            "mean": r6(mean(values) / MICRO),
            "p10": r6(q["p10"]),
            "p50": r6(q["p50"]),
            "p90": r6(q["p90"]),
            "reference_cost": r6(sim.costs.get(model, 0) / MICRO),
        }
    waits = [x / MS_PER_MINUTE for x in m.wait_ms]
    failovers = [x / MS_PER_MINUTE for x in m.failover_ms]
    revenue = [p.revenue / MICRO for p in sim.providers]
    profit = [
        (p.revenue - p.cost_per_gpu_hour * p.busy_gpu_ms / MS_PER_HOUR) / MICRO
        for p in sim.providers
    ]
    by_strategy: dict[str, dict[str, Any]] = {}
    for p, rev, prof in zip(sim.providers, revenue, profit, strict=True):
        s = by_strategy.setdefault(
            p.strategy, {"providers": 0, "revenue": 0.0, "profit": 0.0, "wins": 0, "losses": 0}
        )
        s["providers"] += 1
        s["revenue"] += rev
        s["profit"] += prof
        s["wins"] += p.wins
        s["losses"] += p.losses
    for s in by_strategy.values():
        n = s["providers"]
        s["mean_revenue"] = r6(s.pop("revenue") / n)
        s["mean_profit"] = r6(s.pop("profit") / n)
    audit = sim.market.audit()
    return {
        "scenario": scenario_to_dict(sim.scenario),
        "seed": sim.seed,
        "simulated_hours": r6(end / MS_PER_HOUR),
        "jobs": {
            "arrived": dict(m.jobs_arrived),
            "outcomes": dict(sorted(m.outcomes.items())),
        },
        "market": {
            "payment": sim.scenario.market.payment,
            "orders": m.orders_solicited,
            "auctions": m.auctions,
            "auction_rounds": m.auction_rounds,
            "bids": m.bids,
            "bids_refused_by_market": m.bids_refused,
            "declines": {"no_room": m.declines_no_room, "price_above_maximum": m.declines_price},
            "mean_bidders_per_order": r6(m.bids_at_open / max(m.orders_solicited, 1)),
            "orders_without_bids_at_close": m.orders_without_bids,
            "escrow_top_ups": m.escrow_top_ups,
        },
        "clearing_price_per_gpu_hour": prices,
        "price_to_reference_cost": r6(m.price_ratio_sum / max(m.auctions, 1)),
        "efficiency": {
            # welfare = Σ (tenant's value − winner's true cost) over awarded orders
            "auction_vs_best_bidder": r6(w.mechanism / w.best_bidder) if w.best_bidder else 1.0,
            "market_vs_cost_minimising": (
                r6(w.sampled_mechanism / w.sampled_optimum) if w.sampled_optimum else 1.0
            ),
            "sampled_orders": w.sampled_orders,
        },
        "utilization": {
            "gpu_busy_fraction": r6(m.busy_gpus.total(end) / max(m.up_gpus.total(end), 1.0)),
            "gpus": sum(p.gpus for p in sim.providers),
            "training_compute_utilization_mean": r6(mean(m.training_utilization)),
        },
        "wait_minutes": {
            "started": len(waits),
            "mean": r6(mean(waits)),
            **{k: r6(v) for k, v in quantiles(waits).items()},
        },
        "failures": {
            "provider_failures": m.provider_failures,
            "leases_lost": m.leases_lost,
            "job_interruptions": m.job_interruptions,
            "failovers": m.failovers,
            "failover_minutes": {
                "mean": r6(mean(failovers)),
                **{k: r6(v) for k, v in quantiles(failovers).items()},
            },
        },
        "sla": {
            "services_checked": m.sla_checked,
            "violations": m.sla_violations,
            "mean_availability": r6(mean(m.availability)),
        },
        "providers": {
            "count": len(sim.providers),
            "revenue_total": r6(sum(revenue)),
            "profit_total": r6(sum(profit)),
            "revenue_per_provider": {
                k: r6(v) for k, v in quantiles(revenue, (0.1, 0.5, 0.9)).items()
            },
            "by_strategy": dict(sorted(by_strategy.items())),
        },
        "ledger": {"balanced": audit.balanced, "problems": list(audit.problems)},
        "engine": {"simpy_events": sim.events},
    }


def metrics_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def write_report(sim: Simulation, out: Path, plots: bool = True) -> dict[str, Any]:
    """Write metrics.json, timeseries.csv, providers.csv and the plots into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(sim)
    (out / "metrics.json").write_text(metrics_json(summary), encoding="utf-8")
    rows = sim.metrics.rows
    if rows:
        with (out / "timeseries.csv").open("w", newline="", encoding="utf-8") as handle:
            series = csv.DictWriter(handle, fieldnames=list(rows[0]))
            series.writeheader()
            series.writerows(rows)
    with (out / "providers.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "address",
                "model",
                "gpus",
                "strategy",
                "cost_per_gpu_hour",
                "region",
                "up_mbps",
                "down_mbps",
                "wins",
                "losses",
                "busy_gpu_hours",
                "revenue",
            ]
        )
        for p in sim.providers:
            writer.writerow(
                [
                    p.address,
                    p.model,
                    p.gpus,
                    p.strategy,
                    r6(p.cost_per_gpu_hour / MICRO),
                    p.link.region,
                    p.link.up_mbps,
                    p.link.down_mbps,
                    p.wins,
                    p.losses,
                    r6(p.busy_gpu_ms / MS_PER_HOUR),
                    r6(p.revenue / MICRO),
                ]
            )
    if plots:
        from simulator import plots as plotting  # matplotlib only when drawing

        plotting.run_plots(sim, out)
    return summary


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The table printed at the end of a run: (metric, value)."""
    jobs = summary["jobs"]
    outcomes = ", ".join(f"{k} {v}" for k, v in jobs["outcomes"].items())
    prices = ", ".join(
        f"{model} {p['p50']:.2f}" for model, p in summary["clearing_price_per_gpu_hour"].items()
    )
    f = summary["failures"]
    return [
        ("simulated", f"{summary['simulated_hours'] / 24:.1f} days"),
        (
            "jobs arrived",
            f"{jobs['arrived']['training']} training, {jobs['arrived']['inference']} inference",
        ),
        ("job outcomes", outcomes or "-"),
        (
            "auctions",
            f"{summary['market']['auctions']} ({summary['market']['payment']}, "
            f"{summary['market']['mean_bidders_per_order']:.1f} bidders/order)",
        ),
        ("median price /GPU-h", prices or "-"),
        ("price / reference cost", f"{summary['price_to_reference_cost']:.3f}"),
        (
            "efficiency",
            f"{summary['efficiency']['auction_vs_best_bidder']:.3f} of best bid, "
            f"{summary['efficiency']['market_vs_cost_minimising']:.3f} of optimum",
        ),
        ("GPU utilization", f"{summary['utilization']['gpu_busy_fraction']:.1%}"),
        (
            "wait (median, p90)",
            f"{summary['wait_minutes']['p50']:.1f} min, {summary['wait_minutes']['p90']:.1f} min",
        ),
        (
            "failures",
            f"{f['provider_failures']} provider failures, {f['leases_lost']} leases "
            f"lost, {f['failovers']} failovers",
        ),
        (
            "SLA violations",
            f"{summary['sla']['violations']} of {summary['sla']['services_checked']} services",
        ),
        ("provider revenue", f"{summary['providers']['revenue_total']:.2f} total"),
        ("ledger", "balanced" if summary["ledger"]["balanced"] else "NOT BALANCED"),
    ]
