"""Checkpoint-aware failover in the simulator: a training job keeps its work up to its last
checkpoint when a member fails, so under the same failure and seed more frequent checkpoints
lose less work; the report says how much was lost and how much the checkpoints saved against a
restart from scratch. The default (a checkpoint at every sync) is the engine's rule from before."""

from __future__ import annotations

import copy

import pytest

from simulator.checkpoints import effective_interval_ms, interrupt
from simulator.engine import Simulation, run_scenario
from simulator.report import summarize
from simulator.scenario import parse_scenario
from simulator.workload import MS_PER_HOUR, MS_PER_MINUTE
from tests.sim.test_engine import hand_driven_market
from tests.sim.test_golden import SCENARIOS

WINDOW_MS = 30_000
TIMEOUT_MS = 60_000
SYNC_MIN = 38
NEVER = 10**6  # minutes: longer than any job, so no checkpoint: a restart from scratch


def one_job_market(checkpoint_min: float | None) -> Simulation:
    """tests/sim/test_engine.py's market (one 1-node job syncing every 38 minutes) with the
    given checkpoint interval."""
    keys: dict[str, object] = {}
    if checkpoint_min is not None:
        keys["checkpoint_interval_min"] = checkpoint_min
    return hand_driven_market(training_keys=keys)


def fail_after_two_hours(checkpoint_min: float | None) -> Simulation:
    """The job's provider dies 2 h into a 5 h job; the job fails over and completes."""
    sim = one_job_market(checkpoint_min)
    job = sim.arrivals.factory.make(0, "training", gpus=8, duration_ms=5 * MS_PER_HOUR)
    sim.world.after(0, sim.arrivals.arrive, job)
    sim.env.run(until=WINDOW_MS + 1)
    assert job.first_start_ms == WINDOW_MS
    fail_at = job.first_start_ms + 2 * MS_PER_HOUR
    sim.world.after(fail_at - sim.world.now(), sim.failures.fail, sim.providers[job.providers[0]])
    sim.env.run(until=sim.horizon_ms)
    assert job.outcome == "completed" and sim.metrics.job_interruptions == 1
    return sim


@pytest.mark.parametrize(
    ("checkpoint_min", "kept_min"),
    [
        (None, 3 * SYNC_MIN),  # the default: every sync (114 of the 120 minutes kept)
        (0, 3 * SYNC_MIN),
        (60, 2 * SYNC_MIN),  # at the first sync after each hour: every 76 minutes
        (100, 3 * SYNC_MIN),  # ceil(100 / 38) = 3 syncs: one checkpoint, at 114 minutes
        (NEVER, 0),  # no checkpoint: all 120 minutes are redone
    ],
)
def test_the_work_kept_is_up_to_the_last_checkpoint(
    checkpoint_min: float | None, kept_min: int
) -> None:
    sim = fail_after_two_hours(checkpoint_min)
    gpus = 8
    lost_ms = (120 - kept_min) * MS_PER_MINUTE
    assert sim.metrics.work_lost_gpu_ms == lost_ms * gpus
    assert sim.metrics.work_saved_gpu_ms == kept_min * MS_PER_MINUTE * gpus
    failures = summarize(sim)["failures"]
    assert failures["work_lost_gpu_hours"] == round(lost_ms * gpus / MS_PER_HOUR, 6)
    assert failures["work_saved_gpu_hours"] == round(kept_min * gpus / 60, 6)


def test_more_frequent_checkpoints_lose_less_work_under_the_same_failure() -> None:
    # every 1, 2 and 4 syncs (38, 76, 152 minutes), then never: each checkpoint of a longer
    # interval is one of the shorter's too, so the shorter never keeps less
    lost = [fail_after_two_hours(every).metrics.work_lost_gpu_ms for every in (0, 60, 120, NEVER)]
    minutes = [x / 8 / MS_PER_MINUTE for x in lost]
    assert minutes == [120 - 114, 120 - 76, 120, 120]


def test_a_market_run_loses_less_with_frequent_checkpoints_and_same_seed() -> None:
    """The bench golden scenario on flaky boxes (enough failures to interrupt a dozen training
    jobs): the providers' failures stay the same whatever the interval (drawn from their own
    stream), and the work lost, in all and per interrupted job, grows with it; with no
    checkpoint nothing is saved. (Which jobs a failure hits, and so the work saved, may
    differ: a job that kept less work runs longer, into later failures.)"""
    data, seed = SCENARIOS["bench"]
    runs = []
    for every in (0, 30, 120, NEVER):
        changed = copy.deepcopy(data)
        tenants, providers = changed["tenants"], changed["providers"]
        assert isinstance(tenants, dict) and isinstance(providers, dict)
        tenants["training"] = {**tenants["training"], "checkpoint_interval_min": every}
        providers["failures"] = {"community_share": 1.0, "community_factor": 300}
        runs.append(summarize(run_scenario(parse_scenario(changed), seed))["failures"])
    assert len({r["provider_failures"] for r in runs}) == 1
    assert all(r["job_interruptions"] >= 5 for r in runs)
    lost = [r["work_lost_gpu_hours"] for r in runs]
    per_job = [r["work_lost_gpu_hours"] / r["job_interruptions"] for r in runs]
    saved = [r["work_saved_gpu_hours"] for r in runs]
    assert lost == sorted(lost) and lost[0] < lost[-1]
    assert per_job == sorted(per_job)
    assert saved[0] > 0 and saved[-1] == 0.0


def test_the_checkpoint_falls_on_a_sync() -> None:
    assert effective_interval_ms(38, 0) == 38
    assert effective_interval_ms(38, 1) == 38
    assert effective_interval_ms(38, 39) == 76
    cut = interrupt(100.0, 50.0, 1_000.0, 38, 60)  # 76 of the 100 kept, on top of 50 kept
    assert (cut.kept_ms, cut.lost_ms, cut.saved_ms) == (76.0, 24.0, 126.0)
    assert interrupt(100.0, 950.0, 1_000.0, 10, 0).saved_ms == 1_000.0  # never past the job
