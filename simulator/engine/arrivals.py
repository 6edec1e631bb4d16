"""The tenants' arrivals: jobs drawn from the scenario's distributions at Poisson times, or
replayed from a trace. Each arriving job is a deployment (funded, with an escrow deposit) whose
group orders go to auction, and a patience timeout after which it gives up waiting."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

from marketplace.core.resources import (
    AuctionSettings,
    GangSettings,
    JobKind,
    JobSettings,
    Payment,
    RestartPolicy,
    Tier,
)
from simulator.engine.auctions import Auctions
from simulator.engine.jobs import Jobs
from simulator.engine.world import ADMIN, World
from simulator.metrics import MS_PER_HOUR
from simulator.workload import Job, JobFactory, TraceTask, load_trace, poisson_arrivals

TENANT_FUNDS = 10**18  # micro-units: tenants never run out; escrows are what is at stake


class Arrivals:
    """Tenants and the jobs they bring, one arrival at a time."""

    def __init__(self, world: World, auctions: Auctions, jobs: Jobs) -> None:
        self.market = world.market
        self.metrics = world.metrics
        self.after = world.after
        self.now = world.now
        self.group_specs = world.group_specs
        self.horizon_ms = world.horizon_ms
        self.rng = world.streams["arrivals"]
        self.tenants = world.scenario.tenants
        self.base_dir = world.scenario.base_dir
        self.factory = JobFactory(world.scenario, world.providers, world.costs, self.rng)
        self.solicit = auctions.solicit
        self.solicit_gang = auctions.solicit_gang
        self.wake_market = auctions.wake_market
        self.active = jobs.active
        self.patience = jobs.patience
        self.funded: dict[str, None] = {}
        m = world.scenario.market
        self.settings = {
            kind: JobSettings(
                kind=kind,
                restart_policy=RestartPolicy.ON_FAILURE,
                auction=AuctionSettings(
                    bid_window_ms=max(1, round(m.bid_window_s * 1000)),
                    payment=Payment(m.payment),
                    min_reliability=m.min_reliability,
                ),
            )
            for kind in (JobKind.TRAINING, JobKind.INFERENCE)
        }
        self.spot_settings = dataclasses.replace(self.settings[JobKind.TRAINING], tier=Tier.SPOT)

    def start(self) -> None:
        """Schedule the first arrival (each arrival schedules the next)."""
        arrivals = self.tenants.arrivals
        if arrivals.kind == "trace":
            path = arrivals.trace
            if self.base_dir and not path.startswith("/"):
                path = f"{self.base_dir}/{path}"
            offset_s = arrivals.trace_offset_days * 86_400
            tasks = load_trace(Path(path), arrivals.trace_speedup, self.horizon_ms, offset_s)
            self._next_trace(iter(tasks))
        else:
            times = poisson_arrivals(self.rng, arrivals.rate_per_hour, self.horizon_ms)
            self._next_poisson(times)

    def _next_poisson(self, times: Iterator[int]) -> None:
        at = next(times, None)
        if at is not None:
            self.after(at - self.now(), self._poisson_arrival, times)

    def _poisson_arrival(self, times: Iterator[int]) -> None:
        self.arrive(self.factory.make(self.now()))
        self._next_poisson(times)

    def _next_trace(self, tasks: Iterator[TraceTask]) -> None:
        task = next(tasks, None)
        if task is not None:
            self.after(task.time_ms - self.now(), self._trace_arrival, task, tasks)

    def _trace_arrival(self, task: TraceTask, tasks: Iterator[TraceTask]) -> None:
        self.arrive(self.factory.make(self.now(), task.kind, task.gpus, task.duration_ms))
        self._next_trace(tasks)

    @staticmethod
    def gang_settings(job: Job) -> GangSettings:
        """A multi-node training job is a gang (`gpumarket: gang:`), as its tenant would
        declare it: its nodes, link floor, gradient size and sync interval."""
        return GangSettings(
            nodes=job.groups,
            min_bandwidth_mbps=job.min_bandwidth_mbps,
            gradient_bytes=round(job.gradient_bytes),
            sync_interval_ms=job.sync_interval_ms,
        )

    def arrive(self, job: Job) -> None:
        """The tenant deploys the job: one order per group, each solicited now."""
        now = self.now()
        self.active[job.id] = job
        self.metrics.jobs_arrived[job.kind] += 1
        self.metrics.spot_jobs += job.spot
        if job.tenant not in self.funded:
            self.funded[job.tenant] = None
            self.market.fund(ADMIN, job.tenant, TENANT_FUNDS)
        hours = job.compute_ms * 2 if job.kind == "training" else job.duration_ms * 1.2
        hours = hours / MS_PER_HOUR + 2
        deposit = max(1, math.ceil(job.max_price_per_hour * job.groups * hours))
        specs = self.group_specs(job)
        kind = JobKind.TRAINING if job.kind == "training" else JobKind.INFERENCE
        settings = self.spot_settings if job.spot else self.settings[kind]
        if job.gang:
            settings = dataclasses.replace(settings, gang=self.gang_settings(job))
        dep = self.market.create_deployment(job.tenant, specs, settings, b"", b"", b"", deposit)
        job.deployment_id = dep.id
        job.orders = list(dep.group_orders)
        job.leases = [""] * job.groups
        job.providers = [-1] * job.groups
        job.lost_at = [-1] * job.groups
        job.replica_since = [-1] * job.groups
        job.waiting_since_ms = now
        if job.gang:
            self.solicit_gang(job, list(range(job.groups)))
        else:
            for g, order_id in enumerate(job.orders):
                self.solicit(job, g, order_id)
        patience = (
            self.tenants.training.patience_hours
            if job.kind == "training"
            else self.tenants.inference.patience_hours
        )
        job.patience_ms = round(patience * MS_PER_HOUR)
        self.after(job.patience_ms, self.patience, job, now)
        self.wake_market()
