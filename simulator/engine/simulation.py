"""One run: the world and the four processes that act on it (arrivals, failures, auctions,
jobs), wired once; the time series sampled as it runs; the accounts settled at the end."""

from __future__ import annotations

import gc
from collections.abc import Callable

from marketplace.core.errors import MarketError
from simulator.engine.arrivals import Arrivals
from simulator.engine.auctions import Auctions
from simulator.engine.failures import Failures
from simulator.engine.jobs import Jobs
from simulator.engine.world import World
from simulator.scenario import Scenario, ScenarioError


class Simulation:
    """One scenario and seed, built and ready to run."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.world = world = World(scenario, seed)
        self.auctions = Auctions(world)
        self.jobs = Jobs(world, self.auctions)
        self.auctions.start_group = self.jobs.group_up
        self.auctions.stop_group = self.jobs.group_down
        world.offer_freed = self.auctions.offer_freed
        self.failures = Failures(world, self.auctions, self.jobs)
        self.arrivals = Arrivals(world, self.auctions, self.jobs)
        # what the report reads
        self.scenario = scenario
        self.seed = world.seed
        self.env = world.env
        self.horizon_ms = world.horizon_ms
        self.market = world.market
        self.costs = world.costs
        self.providers = world.providers
        self.metrics = world.metrics
        self.end_ms = 0
        # the order of these draws and first timeouts is part of a seed's result
        self.failures.start()
        self.arrivals.start()
        world.after(0, self._sample)

    @property
    def events(self) -> int:
        """SimPy events (World.after calls) scheduled so far."""
        return self.world.events

    def run(self, progress: Callable[[float], None] | None = None, steps: int = 100) -> None:
        """Run to the horizon, calling progress(fraction) between chunks of simulated time."""
        # The run makes millions of short-lived objects and no reference cycles (refcounting
        # frees them all; tests/sim/test_engine.py checks that a run leaves no cyclic
        # garbage). The cyclic GC would rescan the survivors (providers, market records, open
        # jobs) over and over: ~20% of a 10,000-provider run even with high thresholds, and
        # still a few % with one young-generation pass per chunk. So it is off while the run
        # goes; whatever a future cycle would hold is freed by the first collection after.
        was_enabled = gc.isenabled()
        gc.freeze()
        gc.disable()
        try:
            for step in range(1, steps + 1):
                until = self.horizon_ms * step // steps
                if until > self.env.now:
                    self.world.run_until(until)
                if progress is not None:
                    progress(step / steps)
        finally:
            # The run's survivors go straight to the oldest generation (freeze and unfreeze move
            # lists, scanning nothing): re-enabled, the GC would otherwise scan them all at once
            # in its first young-generation pass, seconds at 10,000 providers.
            gc.freeze()
            gc.unfreeze()
            if was_enabled:
                gc.enable()
        self._finish()

    def _sample(self) -> None:
        """One row of the time series; the next one in sample_ms."""
        now = self.world.now()
        m = self.metrics
        up = m.up_gpus.value
        m.sample(
            now,
            {
                "gpus_up": up,
                "gpus_busy": m.busy_gpus.value,
                "utilization": m.busy_gpus.value / up if up else 0.0,
                "providers_down": self.failures.providers_down,
                "jobs_open": len(self.jobs.active),
                "jobs_ended": self.jobs.ended,
                "auctions": m.auctions,
                "provider_failures": m.provider_failures,
                "leases_lost": m.leases_lost,
                "failovers": m.failovers,
                "job_interruptions": m.job_interruptions,
            },
        )
        if now + m.sample_ms <= self.horizon_ms:
            self.world.after(m.sample_ms, self._sample)

    def _finish(self) -> None:
        now = self.world.now()
        for job in self.jobs.active.values():
            if job.kind == "training" and job.running_since_ms >= 0:
                self.metrics.training_utilization.append(job.utilization)
            self.metrics.outcome("running" if job.first_start_ms >= 0 else "waiting")
        for p in self.providers:
            for gpus, since in p.running.values():
                p.busy_gpu_ms += gpus * (now - since)
        self.market.settle_all()
        for p in self.providers:
            p.revenue = self.market.get_account(p.address).balance
        self.end_ms = now


def run_scenario(
    scenario: Scenario, seed: int | None = None, progress: Callable[[float], None] | None = None
) -> Simulation:
    """Build and run one simulation; raises ScenarioError for unusable settings."""
    try:
        sim = Simulation(scenario, seed)
    except MarketError as exc:
        raise ScenarioError(f"the market refused the scenario: {exc}") from exc
    sim.run(progress)
    return sim
