"""A run's report: the metrics as JSON, time series and providers as CSV, plots as PNG.

The metrics JSON holds only simulated quantities (no wall-clock time), with sorted keys and
rounded floats, so the same scenario and seed give the same bytes.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

from marketplace.core.money import MICRO
from simulator.engine import Simulation
from simulator.metrics import MS_PER_HOUR, mean, quantiles, r6
from simulator.providers import SimProvider
from simulator.scenario import scenario_to_dict

MS_PER_MINUTE = 60_000


# --- the shape of metrics.json -----------------------------------------------------------------


class JobsSummary(TypedDict):
    arrived: dict[str, int]
    outcomes: dict[str, int]


class Declines(TypedDict):
    no_room: int
    price_above_maximum: int


class MarketSummary(TypedDict):
    payment: str
    orders: int
    auctions: int
    auction_rounds: int
    bids: int
    bids_refused_by_market: int
    declines: Declines
    mean_bidders_per_order: float
    orders_without_bids_at_close: int
    escrow_top_ups: int


class PriceSummary(TypedDict):
    leases: int
    mean: float
    p10: float
    p50: float
    p90: float
    reference_cost: float


class EfficiencySummary(TypedDict):
    auction_vs_best_bidder: float
    market_vs_cost_minimising: float
    sampled_orders: int


class UtilizationSummary(TypedDict):
    gpu_busy_fraction: float
    gpus: int
    training_compute_utilization_mean: float


class Spread(TypedDict):
    mean: float
    p50: float
    p90: float
    p99: float


class WaitSummary(Spread):
    started: int


class FailureSummary(TypedDict):
    provider_failures: int
    leases_lost: int
    job_interruptions: int
    failovers: int
    failover_minutes: Spread
    work_lost_gpu_hours: float  # training compute lost since the last checkpoint
    work_saved_gpu_hours: float  # kept by checkpoints, against restarting from scratch


class SlaSummary(TypedDict):
    services_checked: int
    violations: int
    mean_availability: float


class StrategySummary(TypedDict):
    providers: int
    wins: int
    losses: int
    mean_revenue: float
    mean_profit: float


class RevenueSpread(TypedDict):
    p10: float
    p50: float
    p90: float


class ProvidersSummary(TypedDict):
    count: int
    revenue_total: float
    profit_total: float
    revenue_per_provider: RevenueSpread
    by_strategy: dict[str, StrategySummary]


class LedgerSummary(TypedDict):
    balanced: bool
    problems: list[str]


class EngineSummary(TypedDict):
    simpy_events: int


class Summary(TypedDict):
    scenario: dict[str, object]
    seed: int
    simulated_hours: float
    jobs: JobsSummary
    market: MarketSummary
    clearing_price_per_gpu_hour: dict[str, PriceSummary]
    price_to_reference_cost: float
    efficiency: EfficiencySummary
    utilization: UtilizationSummary
    wait_minutes: WaitSummary
    failures: FailureSummary
    sla: SlaSummary
    providers: ProvidersSummary
    ledger: LedgerSummary
    engine: EngineSummary
    spot: NotRequired[SpotSummary]  # only with spot jobs (tenants.training.spot_share > 0)


class SpotSummary(TypedDict):
    jobs: int  # training jobs that asked for spot capacity
    preemptions: int  # spot leases pre-empted by on-demand orders (core/spot.py)


def _spread(values: list[float]) -> Spread:
    q = quantiles(values)
    return {"mean": r6(mean(values)), "p50": r6(q["p50"]), "p90": r6(q["p90"]), "p99": r6(q["p99"])}


@dataclass
class _StrategyTotals:
    providers: int = 0
    revenue: float = 0.0
    profit: float = 0.0
    wins: int = 0
    losses: int = 0


def _by_strategy(
    providers: list[SimProvider], revenue: list[float], profit: list[float]
) -> dict[str, StrategySummary]:
    """Providers, wins, losses, mean revenue and profit per pricing strategy."""
    totals: dict[str, _StrategyTotals] = {}
    for p, rev, prof in zip(providers, revenue, profit, strict=True):
        t = totals.setdefault(p.strategy, _StrategyTotals())
        t.providers += 1
        t.revenue += rev
        t.profit += prof
        t.wins += p.wins
        t.losses += p.losses
    return {
        strategy: {
            "providers": t.providers,
            "wins": t.wins,
            "losses": t.losses,
            "mean_revenue": r6(t.revenue / t.providers),
            "mean_profit": r6(t.profit / t.providers),
        }
        for strategy, t in sorted(totals.items())
    }


def summarize(sim: Simulation) -> Summary:
    """Every headline number of a finished run, as plain JSON-able data."""
    m = sim.metrics
    end = sim.end_ms
    w = m.welfare
    prices: dict[str, PriceSummary] = {}
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
    revenue_spread = quantiles(revenue, (0.1, 0.5, 0.9))
    audit = sim.market.audit()
    summary: Summary = {
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
        "wait_minutes": {"started": len(waits), **_spread(waits)},
        "failures": {
            "provider_failures": m.provider_failures,
            "leases_lost": m.leases_lost,
            "job_interruptions": m.job_interruptions,
            "failovers": m.failovers,
            "failover_minutes": _spread(failovers),
            "work_lost_gpu_hours": r6(m.work_lost_gpu_ms / MS_PER_HOUR),
            "work_saved_gpu_hours": r6(m.work_saved_gpu_ms / MS_PER_HOUR),
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
                "p10": r6(revenue_spread["p10"]),
                "p50": r6(revenue_spread["p50"]),
                "p90": r6(revenue_spread["p90"]),
            },
            "by_strategy": _by_strategy(sim.providers, revenue, profit),
        },
        "ledger": {"balanced": audit.balanced, "problems": list(audit.problems)},
        "engine": {"simpy_events": sim.events},
    }
    if m.spot_jobs:  # only scenarios with spot jobs (tenants.training.spot_share) say so
        summary["spot"] = {"jobs": m.spot_jobs, "preemptions": m.preemptions}
    return summary


def metrics_json(summary: Summary) -> str:
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def write_report(sim: Simulation, out: Path, plots: bool = True) -> Summary:
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


def summary_rows(summary: Summary) -> list[tuple[str, str]]:
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
            "work on failures",
            f"{f['work_lost_gpu_hours']:.1f} GPU-h lost, {f['work_saved_gpu_hours']:.1f} GPU-h "
            "saved by checkpoints",
        ),
        (
            "SLA violations",
            f"{summary['sla']['violations']} of {summary['sla']['services_checked']} services",
        ),
        ("provider revenue", f"{summary['providers']['revenue_total']:.2f} total"),
        ("ledger", "balanced" if summary["ledger"]["balanced"] else "NOT BALANCED"),
    ]
