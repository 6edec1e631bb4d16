"""What a run measures, collected as it goes and summarised at the end.

Everything here is plain numbers keyed in a fixed order, so the same run gives the same bytes.
Money is integer micro-units until the summary, which reports whole units per GPU-hour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from marketplace.core.money import MICRO

MS_PER_HOUR = 3_600_000


@dataclass(slots=True)
class TimeIntegral:
    """∫ value dt, for time-weighted averages (busy GPUs, GPUs up)."""

    value: float = 0.0
    since_ms: float = 0.0
    area: float = 0.0

    def set(self, now_ms: float, value: float) -> None:
        self.area += self.value * (now_ms - self.since_ms)
        self.since_ms = now_ms
        self.value = value

    def add(self, now_ms: float, delta: float) -> None:
        self.set(now_ms, self.value + delta)

    def total(self, now_ms: float) -> float:
        return self.area + self.value * (now_ms - self.since_ms)


@dataclass(slots=True)
class Welfare:
    """Social welfare of awarded orders: Σ (tenant value − winner's true cost), against the best
    possible choice among the bidders and, on sampled rounds, among every free provider."""

    orders: int = 0
    mechanism: float = 0.0
    best_bidder: float = 0.0
    sampled_orders: int = 0
    sampled_mechanism: float = 0.0
    sampled_optimum: float = 0.0


@dataclass
class Collector:
    gpu_models: list[str]
    sample_ms: int
    # counters
    jobs_arrived: dict[str, int] = field(default_factory=lambda: {"training": 0, "inference": 0})
    outcomes: dict[str, int] = field(default_factory=dict)
    bids: int = 0
    bids_refused: int = 0  # the market refused a bid as ineligible
    # providers that looked at an order and declined (bidding.decide / with_price said no)
    declines_no_room: int = 0  # placement or reservation failed (counted here only)
    declines_price: int = 0  # its price was above the order's maximum (counted here only)
    auctions: int = 0
    auction_rounds: int = 0
    orders_without_bids: int = 0
    provider_failures: int = 0
    leases_lost: int = 0
    job_interruptions: int = 0
    work_lost_gpu_ms: float = 0.0  # training compute done since the last checkpoint, lost
    work_saved_gpu_ms: float = 0.0  # compute kept by checkpoints that a fresh restart would redo
    failovers: int = 0
    spot_jobs: int = 0  # training jobs that asked for spot capacity
    preemptions: int = 0  # spot leases pre-empted by on-demand orders (core/spot.py)
    sla_checked: int = 0
    sla_violations: int = 0
    escrow_top_ups: int = 0
    # distributions
    wait_ms: list[float] = field(default_factory=list)
    failover_ms: list[float] = field(default_factory=list)
    availability: list[float] = field(default_factory=list)
    training_utilization: list[float] = field(default_factory=list)
    orders_solicited: int = 0
    bids_at_open: int = 0  # bids placed while the window was open (bidders per order)
    welfare: Welfare = field(default_factory=Welfare)
    # time-weighted
    busy_gpus: TimeIntegral = field(default_factory=TimeIntegral)
    up_gpus: TimeIntegral = field(default_factory=TimeIntegral)
    # clearing prices per GPU-hour (micro-units) per model, and their ratio to the model's
    # reference cost (comparable across models)
    prices: dict[str, list[int]] = field(default_factory=dict)
    price_ratio_sum: float = 0.0
    # the time series: time_h, the engine's state, then price_<model> ("" when none cleared)
    rows: list[dict[str, float | str]] = field(default_factory=list)
    _interval_prices: dict[str, list[int]] = field(default_factory=dict)

    def outcome(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1

    def price(self, model: str, per_gpu_hour: int, reference: int) -> None:
        self.prices.setdefault(model, []).append(per_gpu_hour)
        self._interval_prices.setdefault(model, []).append(per_gpu_hour)
        self.price_ratio_sum += per_gpu_hour / reference

    def sample(self, now_ms: int, state: dict[str, float]) -> None:
        """One row of the time series: the state now and the mean clearing price per model
        over the interval since the last row."""
        row: dict[str, float | str] = {"time_h": round(now_ms / MS_PER_HOUR, 4)}
        row.update({k: round(v, 6) for k, v in state.items()})
        for model in self.gpu_models:
            prices = self._interval_prices.get(model)
            row[f"price_{model}"] = round(sum(prices) / len(prices) / MICRO, 6) if prices else ""
        self._interval_prices = {}
        self.rows.append(row)


def quantiles(
    values: Sequence[float], qs: tuple[float, ...] = (0.5, 0.9, 0.99)
) -> dict[str, float]:
    if not values:
        return {f"p{round(q * 100)}": 0.0 for q in qs}
    ordered = sorted(values)
    out = {}
    for q in qs:
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        out[f"p{round(q * 100)}"] = ordered[index]
    return out


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def r6(x: float) -> float:
    return round(x, 6)
