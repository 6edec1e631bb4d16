"""The jobs on their leases: a training job runs when all its groups are leased and up, at the
speed its gradient syncs allow, loses the work since its last checkpoint when a member fails, and
completes when its compute is done (a multi-node one is a gang to the market, which leases, stops
and re-auctions its nodes together by its own rule, core/gang.py); an inference service serves from its first replica's start
for its duration, and its availability is checked against the tenant's target. A job still
waiting for a group past the tenant's patience gives up. The tenant keeps the escrow topped up
and closes the deployment at the end."""

from __future__ import annotations

import contextlib
import math

from marketplace.core.errors import MarketError
from marketplace.core.escrow import MIN_DEPOSIT_MS
from marketplace.core.state import LeaseState
from simulator import checkpoints
from simulator.engine.auctions import Auctions
from simulator.engine.world import World
from simulator.metrics import MS_PER_HOUR
from simulator.network import sync_seconds, utilization
from simulator.workload import Job


class Jobs:
    """The jobs not ended yet, and what happens to them as their leases come and go."""

    def __init__(self, world: World, auctions: Auctions) -> None:
        self.market = world.market
        self.metrics = world.metrics
        self.providers = world.providers
        self.after = world.after
        self.now = world.now
        self.lease_gone = world.lease_gone
        self.cross_region_factor = world.scenario.providers.cross_region_factor
        self.withdraw = auctions.withdraw
        self.wake_market = auctions.wake_market
        self.active: dict[int, Job] = {}  # jobs not ended yet, by id
        self.ended = 0

    def patience(self, job: Job, since: int) -> None:
        """A job still waiting for all its groups since `since` gives up."""
        if job.done or job.waiting_since_ms != since:
            return
        if job.kind == "training" and job.running_since_ms >= 0:
            return
        if job.kind == "inference" and job.first_start_ms >= 0:
            return
        self.end_job(job, "abandoned" if job.first_start_ms >= 0 else "unfilled")

    def group_up(self, job: Job, g: int) -> None:
        """Group g of the job runs on its new lease."""
        now = self.now()
        if job.kind == "inference":
            job.replica_since[g] = now
            if job.first_start_ms < 0:
                job.first_start_ms = now
                self.metrics.wait_ms.append(now - job.arrival_ms)
                job.end_ms = now + job.duration_ms
                self.after(job.duration_ms, self._inference_done, job)
            return
        if all(i >= 0 and self.providers[i].up for i in job.providers) and all(job.leases):
            self._start_training(job)

    def _start_training(self, job: Job) -> None:
        now = self.now()
        if job.first_start_ms < 0:
            job.first_start_ms = now
            self.metrics.wait_ms.append(now - job.arrival_ms)
        links = [self.providers[i].link for i in job.providers]
        sync_s = sync_seconds(links, job.gradient_bytes, self.cross_region_factor)
        job.utilization = utilization(job.sync_interval_ms / 1000, sync_s)
        job.running_since_ms = now
        job.waiting_since_ms = -1
        job.epoch += 1
        remaining_wall = max(job.compute_ms - job.progress_ms, 0) / job.utilization
        self._top_up(job, remaining_wall)
        self.after(remaining_wall, self._training_done, job, job.epoch)

    def _top_up(self, job: Job, wall_ms: float) -> None:
        """Keep the escrow ahead of what the running leases will owe (a tenant watching it)."""
        dep = self.market.state.deployments.get(job.deployment_id)
        if dep is None or dep.state != "active":
            return
        price = job.max_price_per_hour * job.groups
        needed = math.ceil(price * (wall_ms * 1.2 / MS_PER_HOUR + 1))
        available = self.market.escrow_available(job.deployment_id)
        if available < needed:
            # the market refuses a deposit that buys less than a minute at the current rate:
            # a small shortfall is topped up by that minute's worth
            least = -(-self.market.current_rate(dep) * MIN_DEPOSIT_MS // MS_PER_HOUR)
            self.market.deposit(job.tenant, job.deployment_id, max(needed - available, least))
            self.metrics.escrow_top_ups += 1

    def group_down(self, job: Job, g: int) -> None:
        """A member of the job failed (its provider died): the job stops now. (What happens to
        its leases is the market's to say when it notices: Auctions.closed_by_market.)"""
        if job.done:
            return
        now = self.now()
        job.lost_at[g] = now
        if job.kind == "inference":
            if job.replica_since[g] >= 0:
                job.up_ms += now - job.replica_since[g]
                job.replica_since[g] = -1
            return
        if job.running_since_ms >= 0:
            # work since the last checkpoint is lost (a synchronous job fails together)
            done = (now - job.running_since_ms) * job.utilization
            cut = checkpoints.interrupt(
                done, job.progress_ms, job.compute_ms, job.sync_interval_ms, job.checkpoint_ms
            )
            job.progress_ms = cut.saved_ms
            self.metrics.work_lost_gpu_ms += cut.lost_ms * job.groups * job.gpus_per_group
            self.metrics.work_saved_gpu_ms += cut.saved_ms * job.groups * job.gpus_per_group
            job.running_since_ms = -1
            job.epoch += 1
            job.interruptions += 1
            self.metrics.job_interruptions += 1
            self.metrics.training_utilization.append(job.utilization)
            job.waiting_since_ms = now
            self._top_up(
                job, job.patience_ms + (job.compute_ms - job.progress_ms) / job.utilization
            )
            self.after(job.patience_ms, self.patience, job, now)

    def _training_done(self, job: Job, epoch: int) -> None:
        if job.done or epoch != job.epoch:
            return
        job.progress_ms = job.compute_ms
        self.metrics.training_utilization.append(job.utilization)
        if job.deployment_id not in self.market.state.deployments:
            self.end_job(job, "escrow_ran_dry")
            return
        leases = self.market.state.leases
        for g, lease_id in enumerate(job.leases):
            p = self.providers[job.providers[g]]
            lease = leases.get(lease_id)
            # a gang's other nodes close (gang_stopped, at this moment) as the first exits
            if lease is not None and lease.state != LeaseState.CLOSED:
                self.market.report_status(p.address, lease_id, running=False, exited=True)
            self.lease_gone(p, lease_id)
        self.end_job(job, "completed")

    def _inference_done(self, job: Job) -> None:
        if job.done:
            return
        now = self.now()
        for since in job.replica_since:
            if since >= 0:
                job.up_ms += now - since
        availability = job.up_ms / (job.groups * job.duration_ms)
        self.metrics.availability.append(availability)
        self.metrics.sla_checked += 1
        if availability < job.uptime_target:
            self.metrics.sla_violations += 1
        self.end_job(job, "completed")

    def end_job(self, job: Job, outcome: str) -> None:
        """The tenant closes the deployment (refund of the escrow's rest) and stops waiting."""
        job.done = True
        job.outcome = outcome
        self.active.pop(job.id, None)
        self.ended += 1
        self.metrics.outcome(outcome)
        dep = self.market.state.deployments.get(job.deployment_id)
        if dep is not None and dep.state != "closed":
            with contextlib.suppress(MarketError):
                self.market.close_deployment(job.tenant, job.deployment_id)
        self.withdraw(job)
        for g, lease_id in enumerate(job.leases):
            if lease_id and job.providers[g] >= 0:
                p = self.providers[job.providers[g]]
                if p.up:  # a failed provider's leases go when the market notices (Failures)
                    self.lease_gone(p, lease_id)
        self.wake_market()
