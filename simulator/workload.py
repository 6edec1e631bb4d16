"""Tenants' jobs: training jobs (nodes × GPUs, compute, gradient syncs, bandwidth floor) and
inference services (duration, uptime target, request rate), arriving as a Poisson process or
replayed from an Alibaba GPU v2023 pod list.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from simulator.providers import Chooser, SimProvider
from simulator.scenario import LogNormal, Scenario, ScenarioError

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000


@dataclass(slots=True)
class Job:
    id: int
    kind: str  # training | inference
    tenant: str
    arrival_ms: int
    groups: int  # training: nodes; inference: replicas (each its own order and lease)
    gpus_per_group: int
    gpu_model: str  # canonical model or "*"
    max_price_per_hour: int  # per group (reserve), micro-units
    # training
    compute_ms: int = 0
    gradient_bytes: float = 0.0
    sync_interval_ms: int = 0
    checkpoint_ms: int = 0  # checkpoint interval in compute time (0: at every sync)
    min_bandwidth_mbps: float = 0.0
    spot: bool = False  # training: interruptible capacity (gpumarket: tier: spot)
    # inference
    duration_ms: int = 0
    uptime_target: float = 0.0
    request_rate: float = 0.0
    # run state, owned by the engine
    deployment_id: str = ""
    orders: list[str] = field(default_factory=list)  # per group: its current order id ("" none)
    leases: list[str] = field(default_factory=list)  # per group: its current lease id ("" none)
    providers: list[int] = field(default_factory=list)  # per group: provider index (-1 none)
    lost_at: list[int] = field(default_factory=list)  # per group: when its provider failed (-1)
    replica_since: list[int] = field(default_factory=list)  # inference: replica up since (-1)
    progress_ms: float = 0.0  # training: compute done and kept (up to the last sync)
    running_since_ms: int = -1  # when all groups last became leased; -1 when not running
    utilization: float = 1.0
    up_ms: float = 0.0  # inference: replica-time served
    waiting_since_ms: int = 0  # since when it lacks a group (patience); -1 while running
    patience_ms: int = 0
    end_ms: int = 0  # inference: when the tenant stops the service
    first_start_ms: int = -1
    interruptions: int = 0
    done: bool = False
    outcome: str = ""  # completed | failed | abandoned | unfilled | running (at the end)
    epoch: int = 0  # bumped on every (re)start/stop, so stale completion timeouts are ignored

    @property
    def gang(self) -> bool:
        """A multi-node training job: the market leases, stops and re-auctions its nodes
        together (core/gang.py), as a synchronous job needs."""
        return self.kind == "training" and self.groups > 1


def _lognormal_ms(rng: random.Random, dist: LogNormal, unit_ms: int) -> int:
    return max(1, round(rng.lognormvariate(math.log(dist.median), dist.sigma) * unit_ms))


class JobFactory:
    """Draws jobs from the scenario's distributions, clipped to what the providers can host."""

    def __init__(
        self,
        scenario: Scenario,
        providers: list[SimProvider],
        costs: dict[str, int],
        rng: random.Random,
    ) -> None:
        self.rng = rng
        self.tenants = scenario.tenants
        self.multiplier = scenario.market.max_price_multiplier
        self.largest: dict[str, int] = {}
        gpu_total = 0
        cost_total = 0
        for p in providers:
            self.largest[p.model] = max(self.largest.get(p.model, 0), p.gpus)
            gpu_total += p.gpus
            cost_total += costs.get(p.model, 0) * p.gpus
        self.largest["*"] = max(self.largest.values(), default=1)
        self.costs = dict(costs)
        # "any GPU": the tenant values it at the population's average reference cost.
        self.costs["*"] = cost_total // max(gpu_total, 1)
        t, inf = self.tenants.training, self.tenants.inference
        self.kind = Chooser(self.tenants.mix)
        self.t_nodes = Chooser(t.nodes)
        self.t_gpus = Chooser(t.gpus_per_node)
        self.t_models = Chooser(self._hostable(t.gpu_models))
        self.t_grad = Chooser(t.gradient_gb)
        self.t_sync = Chooser(t.sync_interval_min)
        self.t_bw = Chooser(t.min_bandwidth_mbps)
        self.i_gpus = Chooser(inf.gpus_per_replica)
        self.i_models = Chooser(self._hostable(inf.gpu_models))
        self.next_id = 0

    def _hostable(self, table: dict[str, float]) -> dict[str, float]:
        """Models nobody offers can never be served; keep them only if nothing else is left."""
        kept = {m: w for m, w in table.items() if m in self.largest and w > 0}
        return kept or {"*": 1.0}

    def _tenant(self) -> str:
        return f"tenant{self.rng.randrange(self.tenants.count):06d}"

    def _reserve(self, model: str, gpus: int) -> int:
        return max(1, round(self.costs.get(model, self.costs["*"]) * gpus * self.multiplier))

    def make(
        self,
        now_ms: int,
        kind: str | None = None,
        gpus: int | None = None,
        duration_ms: int | None = None,
    ) -> Job:
        kind = kind or self.kind.pick(self.rng)
        self.next_id += 1
        if kind == "training":
            return self._training(now_ms, gpus, duration_ms)
        return self._inference(now_ms, gpus, duration_ms)

    def _training(self, now_ms: int, gpus: int | None, compute_ms: int | None) -> Job:
        t = self.tenants.training
        model = self.t_models.pick(self.rng)
        per_node = min(gpus or self.t_gpus.pick(self.rng), self.largest[model])
        nodes = self.t_nodes.pick(self.rng)
        return Job(
            id=self.next_id,
            kind="training",
            tenant=self._tenant(),
            arrival_ms=now_ms,
            groups=nodes,
            gpus_per_group=per_node,
            gpu_model=model,
            max_price_per_hour=self._reserve(model, per_node),
            compute_ms=compute_ms or _lognormal_ms(self.rng, t.compute_hours, MS_PER_HOUR),
            gradient_bytes=self.t_grad.pick(self.rng) * 1e9,
            sync_interval_ms=round(self.t_sync.pick(self.rng) * MS_PER_MINUTE),
            checkpoint_ms=round(t.checkpoint_interval_min * MS_PER_MINUTE),  # a knob, not drawn
            min_bandwidth_mbps=self.t_bw.pick(self.rng),
            # no draw without spot jobs: scenarios without them keep their numbers
            spot=t.spot_share > 0 and self.rng.random() < t.spot_share,
        )

    def _inference(self, now_ms: int, gpus: int | None, duration_ms: int | None) -> Job:
        inf = self.tenants.inference
        model = self.i_models.pick(self.rng)
        per_replica = min(gpus or self.i_gpus.pick(self.rng), self.largest[model])
        rate = self.rng.lognormvariate(math.log(inf.request_rate.median), inf.request_rate.sigma)
        replicas = min(inf.max_replicas, max(1, math.ceil(rate / inf.requests_per_replica)))
        return Job(
            id=self.next_id,
            kind="inference",
            tenant=self._tenant(),
            arrival_ms=now_ms,
            groups=replicas,
            gpus_per_group=per_replica,
            gpu_model=model,
            max_price_per_hour=self._reserve(model, per_replica),
            duration_ms=duration_ms or _lognormal_ms(self.rng, inf.duration_hours, MS_PER_HOUR),
            uptime_target=inf.uptime_target,
            request_rate=rate,
        )


def poisson_arrivals(rng: random.Random, rate_per_hour: float, horizon_ms: int) -> Iterator[int]:
    """Arrival times (ms) of a Poisson process, up to the horizon."""
    if rate_per_hour <= 0:
        return
    mean_gap = MS_PER_HOUR / rate_per_hour
    t = 0.0
    while True:
        t += rng.expovariate(1.0 / mean_gap)
        if t >= horizon_ms:
            return
        yield int(t)


@dataclass(frozen=True)
class TraceTask:
    time_ms: int
    kind: str
    gpus: int
    duration_ms: int


def load_trace(
    path: Path, speedup: float, horizon_ms: int, offset_s: float = 0.0
) -> list[TraceTask]:
    """GPU tasks of an Alibaba GPU v2023 pod list (openb_pod_list_*.csv), in arrival order.

    Latency-sensitive (qos LS) tasks become inference services, the rest training jobs; a
    fractional GPU (gpu_milli < 1000) still rents a whole one; lifetime = deletion − scheduled.
    Tasks created before `offset_s` (trace seconds) are skipped; the rest start at 0.
    """
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"tenants.arrivals.trace: cannot read {path}: {exc.strerror}") from exc
    tasks = []
    with handle:
        reader = csv.DictReader(handle)
        needed = {"num_gpu", "creation_time"}
        if not needed <= set(reader.fieldnames or ()):
            raise ScenarioError(
                f"tenants.arrivals.trace: {path.name} lacks columns {sorted(needed)}"
                " (expected an Alibaba GPU v2023 pod list)"
            )
        for row in reader:
            gpus = int(row["num_gpu"] or 0)
            if gpus <= 0:
                continue
            start = (float(row["creation_time"] or 0) - offset_s) * MS_PER_SECOND / speedup
            if start < 0 or start >= horizon_ms:
                continue
            scheduled = row.get("scheduled_time") or row["creation_time"]
            deleted = row.get("deletion_time") or ""
            life_s = (float(deleted) - float(scheduled) if deleted else 3600.0) / speedup
            kind = "inference" if row.get("qos") == "LS" else "training"
            tasks.append(TraceTask(int(start), kind, gpus, max(1, int(life_s * MS_PER_SECOND))))
    tasks.sort(key=lambda task: task.time_ms)
    return tasks
