"""The providers' uptime: each joins the market up, fails after a drawn time (its last heartbeat
is the moment it fails, so billing stops there), is reported silent one heartbeat timeout later
(its leases are lost and their groups ordered again), and comes back after a drawn repair
time. Nothing ticks per minute: each of these is one timeout (simulator.failures draws them)."""

from __future__ import annotations

from simulator.engine.auctions import Auctions
from simulator.engine.jobs import Jobs
from simulator.engine.world import World
from simulator.failures import FailureModel
from simulator.providers import SimProvider
from simulator.workload import Job


class Failures:
    """Provider failures, their detection by the market, and repairs."""

    def __init__(self, world: World, auctions: Auctions, jobs: Jobs) -> None:
        self.market = world.market
        self.metrics = world.metrics
        self.providers = world.providers
        self.rng = world.streams["failures"]
        self.silent = world.silent
        self.after = world.after
        self.now = world.now
        self.refresh = world.refresh
        self.lease_gone = world.lease_gone
        self.horizon_ms = world.horizon_ms
        self.timeout_ms = world.timeout_ms
        self.model = FailureModel.from_spec(world.scenario.providers.failures)
        self.closed_by_market = auctions.closed_by_market
        self.capacity_back = world.capacity_back
        self.wake_market = auctions.wake_market
        self.group_down = jobs.group_down
        self.providers_down = 0

    def start(self) -> None:
        """Every provider joins the market, up, with its first failure drawn."""
        now = self.now()
        for p in self.providers:
            self.market.register_provider(
                p.address,
                f"sim://{p.address}",
                p.attributes,
                p.capacities[p.gpus],
                region=p.link.region,
                version="sim",
            )
            self.refresh(p)
            self.metrics.up_gpus.add(now, p.gpus)
            self._schedule_failure(p)

    def _schedule_failure(self, p: SimProvider) -> None:
        ttf = self.model.time_to_failure_ms(self.rng, p.gpus, p.failure_factor)
        if self.now() + ttf < self.horizon_ms:
            self.after(ttf, self.fail, p)

    def fail(self, p: SimProvider) -> None:
        now = self.now()
        self.metrics.provider_failures += 1
        # Its last heartbeat: billing for its leases stops here.
        self.market.heartbeat(p.address, list(p.leases))
        p.up = False
        self.providers_down += 1
        self.refresh(p)
        self.metrics.up_gpus.add(now, -p.gpus)
        for gpus, since in p.running.values():
            p.busy_gpu_ms += gpus * (now - since)
            self.metrics.busy_gpus.add(now, -gpus)
        p.running.clear()
        for job, g in list(p.leases.values()):
            self.group_down(job, g)
        self.after(self.timeout_ms, self._detect, p)
        repair = self.model.repair_time_ms(self.rng)
        self.after(max(repair, self.timeout_ms + 1_000), self._repair, p)

    def _detect(self, p: SimProvider) -> None:
        """The market notices the silence: leases provider_lost, groups ordered again."""
        self.market.provider_silent(p.address)
        self.silent[p.index] = None
        lost: dict[int, tuple[Job, list[int]]] = {}
        for lease_id, (job, g) in list(p.leases.items()):
            self.lease_gone(p, lease_id)
            if not job.done:
                self.metrics.leases_lost += 1
            lost.setdefault(job.id, (job, []))[1].append(g)
        for job, groups in lost.values():
            # ordered again; a gang's other nodes stopped with the lost one and are too
            self.closed_by_market(job, tuple(groups))
        self.wake_market()

    def _repair(self, p: SimProvider) -> None:
        now = self.now()
        self.market.heartbeat(p.address)
        self.silent.pop(p.index, None)
        p.up = True
        self.providers_down -= 1
        self.refresh(p)
        self.metrics.up_gpus.add(now, p.gpus)
        self._schedule_failure(p)
        self.capacity_back(p)
        self.wake_market()
