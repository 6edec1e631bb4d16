"""Exponential backoff with jitter, for reconnecting and for retrying a call while the market is
away."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with ±20 % jitter, reset after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.current = initial

    def next(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 1.6, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.initial
