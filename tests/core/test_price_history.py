"""The market's clearing prices in buckets of time (core/price_history.py)."""

from __future__ import annotations

import pytest

from marketplace.core.errors import InvalidArgument
from marketplace.core.price_history import (
    DEFAULT_BUCKET_MS,
    MAX_BUCKETS,
    bucketed_prices,
)
from marketplace.core.state import PriceStat

MIN = 60_000


def test_buckets_hold_each_models_percentiles_oldest_first() -> None:
    points = [
        (0 * MIN + 5, "h100", 100),
        (1 * MIN + 1, "h100", 300),
        (1 * MIN + 2, "h100", 200),
        (1 * MIN + 3, "a100", 50),
        (4 * MIN, "h100", 400),
    ]
    size, buckets = bucketed_prices(points, 0, MIN, now_ms=5 * MIN)
    assert size == MIN
    assert [b.start_ms for b in buckets] == [0, MIN, 4 * MIN]  # empty buckets left out
    assert buckets[1].prices == (
        PriceStat("a100", 1, 50, 50, 50),
        PriceStat("h100", 2, 200, 300, 300),
    )
    assert buckets[2].prices == (PriceStat("h100", 1, 400, 400, 400),)


def test_since_starts_at_its_bucket_and_defaults_and_bounds_hold() -> None:
    points = [(m * MIN, "h100", m) for m in range(10)]
    _, buckets = bucketed_prices(points, 3 * MIN + 30_000, MIN, now_ms=10 * MIN)
    assert buckets[0].start_ms == 3 * MIN  # the bucket holding since_ms, whole
    size, _ = bucketed_prices(points, 0, 0, now_ms=10 * MIN)
    assert size == DEFAULT_BUCKET_MS
    _, newest = bucketed_prices(points, 0, MIN, now_ms=(MAX_BUCKETS + 5) * MIN)
    assert [b.start_ms for b in newest] == [5 * MIN + m * MIN for m in range(5)]
    with pytest.raises(InvalidArgument, match="minimum"):
        bucketed_prices(points, 0, 59_999, now_ms=0)
    with pytest.raises(InvalidArgument, match="negative"):
        bucketed_prices(points, -1, MIN, now_ms=0)
