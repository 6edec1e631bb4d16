"""Provider uptime: failures (exponential or Weibull time between failures) and repairs (lognormal).

Each draw is one number handed to one SimPy timeout: a provider is up for `time_to_failure`,
then down for `repair_time`; no per-minute events. Rates are per GPU-year, so a box with g GPUs
fails g times as often as one GPU (a synchronous job fails when any member fails: rate Σλ).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulator.scenario import FailureSpec

MS_PER_HOUR = 3_600_000
MS_PER_YEAR = 365 * 24 * MS_PER_HOUR


@dataclass(frozen=True)
class FailureModel:
    distribution: str  # exponential | weibull | none
    per_gpu_year: float
    weibull_shape: float
    repair_median_ms: float
    repair_sigma: float

    @classmethod
    def from_spec(cls, spec: FailureSpec) -> FailureModel:
        return cls(
            distribution=spec.distribution,
            per_gpu_year=spec.per_gpu_year,
            weibull_shape=spec.weibull_shape,
            repair_median_ms=spec.repair_hours.median * MS_PER_HOUR,
            repair_sigma=spec.repair_hours.sigma,
        )

    def mtbf_ms(self, gpus: int, factor: float = 1.0) -> float:
        """Mean time between failures of a box with `gpus` GPUs (inf if it never fails)."""
        rate = self.per_gpu_year * max(gpus, 1) * factor
        return math.inf if rate <= 0 or self.distribution == "none" else MS_PER_YEAR / rate

    def time_to_failure_ms(self, rng: random.Random, gpus: int, factor: float = 1.0) -> float:
        """Up time until the next failure; inf when the box never fails."""
        mtbf = self.mtbf_ms(gpus, factor)
        if math.isinf(mtbf):
            return math.inf
        if self.distribution == "weibull":
            # Scale so the mean is the MTBF: mean = scale · Γ(1 + 1/k).
            k = self.weibull_shape
            return rng.weibullvariate(mtbf / math.gamma(1.0 + 1.0 / k), k)
        return rng.expovariate(1.0 / mtbf)

    def repair_time_ms(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.repair_median_ms), self.repair_sigma)


def count_failures(
    model: FailureModel, rng: random.Random, boxes: int, gpus_per_box: int, horizon_ms: float
) -> int:
    """Interruptions seen on `boxes` boxes over `horizon_ms` (up/down renewal process per box)."""
    total = 0
    for _ in range(boxes):
        t = model.time_to_failure_ms(rng, gpus_per_box)
        while t < horizon_ms:
            total += 1
            t += model.repair_time_ms(rng) + model.time_to_failure_ms(rng, gpus_per_box)
    return total
