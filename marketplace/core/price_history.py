"""The market's clearing prices over time, from its own record (issue 15, item 5).

The market keeps the price per GPU-hour of its newest GPU leases (limits.PRICE_POINTS_KEPT, by
creation time; reads.py). Market.GetPriceHistory cuts them into buckets of time and gives each
bucket's P10/median/P90 per GPU model, as Market.Stats does for one window: so a console that
starts now draws the last hours at once, not only what it sampled itself.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from marketplace.core.errors import InvalidArgument
from marketplace.core.state import PriceStat

DEFAULT_BUCKET_MS = 5 * 60_000
MIN_BUCKET_MS = 60_000
MAX_BUCKETS = 1_000  # an older since_ms is moved up to the newest MAX_BUCKETS buckets

PricePoint = tuple[int, str, int]  # (lease created ms, GPU model, price per GPU-hour)


@dataclass(frozen=True, slots=True)
class PriceBucket:
    start_ms: int
    prices: tuple[PriceStat, ...]  # by model; only models with a lease in the bucket


def percentiles(model: str, prices: list[int]) -> PriceStat:
    """P10/median/P90 as Market.Stats gives them (the value at that rank of the sorted list)."""
    prices.sort()

    def pick(q: float) -> int:
        return prices[min(len(prices) - 1, int(q * len(prices)))]

    return PriceStat(model, len(prices), pick(0.1), pick(0.5), pick(0.9))


def bucket_size(bucket_ms: int) -> int:
    if bucket_ms == 0:
        return DEFAULT_BUCKET_MS
    if bucket_ms < MIN_BUCKET_MS:
        raise InvalidArgument(
            f"bucket_ms {bucket_ms} is under the minimum of {MIN_BUCKET_MS} (one minute)"
        )
    return bucket_ms


def bucketed_prices(
    points: Sequence[PricePoint], since_ms: int, bucket_ms: int, now_ms: int
) -> tuple[int, list[PriceBucket]]:
    """(the bucket size, the buckets with a lease from `since_ms` on, oldest first). Buckets
    start at multiples of the size, so two readers' buckets line up."""
    size = bucket_size(bucket_ms)
    if since_ms < 0:
        raise InvalidArgument("since_ms is negative")
    start = max(since_ms, now_ms - MAX_BUCKETS * size)
    start -= start % size
    buckets: dict[int, dict[str, list[int]]] = {}
    for created, model, price in points[bisect_left(points, start, key=lambda p: p[0]) :]:
        at = created - created % size
        buckets.setdefault(at, {}).setdefault(model, []).append(price)
    return size, [
        PriceBucket(at, tuple(percentiles(m, prices) for m, prices in sorted(models.items())))
        for at, models in sorted(buckets.items())
    ]
