"""Freed capacity goes to the work waiting for it, whatever freed it: a job that found no room
waits (its order stays open, without bids), and the moment GPUs come free (a training job
completes, an inference service ends, a provider comes back from a failure, a spot job is
pre-empted with room to spare, a gang's node is lost and the market stops the rest) the
provider bids on it and it starts then, not at some later, unrelated event. One path per case:
each frees capacity through World.release or World.capacity_back; a new path is one more case."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import pytest

from simulator.engine import Simulation
from simulator.engine.world import World
from simulator.workload import MS_PER_HOUR, Job
from tests.helpers import REPO
from tests.sim.test_engine import TIMEOUT_MS, WINDOW_MS, hand_driven_market


def arrive(
    sim: Simulation, kind: str, gpus: int, hours: float, spot: bool = False, groups: int = 1
) -> Job:
    """A job of `kind` arriving now, on H100s, with one group of `gpus`."""
    job = sim.arrivals.factory.make(sim.world.now(), kind, gpus, round(hours * MS_PER_HOUR))
    job.gpu_model = "h100"
    job.groups = groups
    job.spot = spot
    job.max_price_per_hour = sim.arrivals.factory._reserve("h100", gpus)
    sim.world.after(0, sim.arrivals.arrive, job)
    return job


def run_to(sim: Simulation, at_ms: int) -> None:
    sim.env.run(until=at_ms)


def waiting_for_the_box(sim: Simulation, blocker: Job) -> Job:
    """`blocker` holds the box; then an 8-GPU training job arrives, finds no room, and waits."""
    run_to(sim, WINDOW_MS + 1)
    assert blocker.first_start_ms == WINDOW_MS
    waiting = arrive(sim, "training", 8, 1)
    run_to(sim, sim.world.now() + 2 * WINDOW_MS)
    assert waiting.first_start_ms < 0 and sim.metrics.orders_without_bids == 1
    return waiting


def completes(kind: str) -> Callable[[Simulation], tuple[Job, int]]:
    def case(sim: Simulation) -> tuple[Job, int]:
        blocker = arrive(sim, kind, 8, 2)
        waiting = waiting_for_the_box(sim, blocker)
        freed_at = WINDOW_MS + 2 * MS_PER_HOUR
        run_to(sim, freed_at + 1)
        assert blocker.outcome == "completed"
        return waiting, freed_at

    return case


def provider_comes_back(sim: Simulation) -> tuple[Job, int]:
    blocker = arrive(sim, "training", 8, 20)
    waiting = waiting_for_the_box(sim, blocker)
    [box] = sim.providers
    blocker.patience_ms = 1  # the blocker gives up on its lost node at once
    sim.failures.fail(box)  # repair comes a drawn time later
    [back_at] = [
        int(t) for t, _, _, c in sim.env._queue if getattr(c, "fn", None) == sim.failures._repair
    ]
    assert back_at < waiting.arrival_ms + waiting.patience_ms  # still waiting then
    run_to(sim, back_at + 1)
    assert box.up
    return waiting, back_at


def spot_preempted_with_room_to_spare(sim: Simulation) -> tuple[Job, int]:
    """A spot job holds the box; a 4-GPU on-demand job pre-empts it and leaves 4 GPUs free."""
    spot_job = arrive(sim, "training", 8, 20, spot=True)
    run_to(sim, WINDOW_MS + 1)
    assert spot_job.first_start_ms == WINDOW_MS
    waiting = arrive(sim, "training", 4, 1, spot=True)  # spot: it pre-empts nothing
    run_to(sim, sim.world.now() + 2 * WINDOW_MS)
    assert waiting.first_start_ms < 0
    demand = arrive(sim, "training", 4, 1)
    preempted_at = sim.world.now() + WINDOW_MS
    run_to(sim, preempted_at + 1)
    assert sim.metrics.preemptions == 1 and demand.first_start_ms == preempted_at
    return waiting, preempted_at


def a_gang_loses_a_node(sim: Simulation) -> tuple[Job, int]:
    """A 2-node gang on two boxes loses one: when the market notices, it stops the other node
    (gang_stopped) and orders both again (core/gang.py); the survivor's box bids on that
    re-auction, which cannot fill (the other box is down), and goes to the waiting job as
    its bid lapses at the window's close."""
    gang = arrive(sim, "training", 8, 20, groups=2)
    run_to(sim, WINDOW_MS + 1)
    assert gang.first_start_ms == WINDOW_MS
    waiting = arrive(sim, "training", 8, 1)
    run_to(sim, sim.world.now() + 2 * WINDOW_MS)
    assert waiting.first_start_ms < 0
    lost = sim.providers[gang.providers[0]]
    noticed_at = sim.world.now() + TIMEOUT_MS
    sim.failures.fail(lost)
    run_to(sim, noticed_at + WINDOW_MS + 1)
    assert not lost.up  # the survivor's box is the only one free
    assert gang.first_start_ms == WINDOW_MS and gang.running_since_ms < 0
    return waiting, noticed_at + WINDOW_MS


CASES: dict[str, tuple[Callable[[Simulation], tuple[Job, int]], int]] = {
    "training completes": (completes("training"), 1),
    "inference ends": (completes("inference"), 1),
    "provider repaired": (provider_comes_back, 1),
    "spot pre-empted": (spot_preempted_with_room_to_spare, 1),
    "gang loses a node": (a_gang_loses_a_node, 2),
}


@pytest.mark.parametrize("path", sorted(CASES))
def test_a_waiting_job_starts_the_moment_capacity_frees(path: str) -> None:
    case, boxes = CASES[path]
    sim = hand_driven_market(
        providers=boxes,
        tenants=3,
        provider_keys={"spot_percent": 60} if "spot" in path else None,
        training_keys={"patience_hours": 48},  # nothing gives up unless the case says so
    )
    waiting, freed_at = case(sim)
    assert waiting.first_start_ms == freed_at, (
        f"{path}: the waiting job started at {waiting.first_start_ms}, not when capacity "
        f"freed ({freed_at})"
    )
    run_to(sim, sim.horizon_ms)
    assert sim.market.audit().balanced


def test_gpus_come_free_only_through_world_release() -> None:
    """The class, not the cases: an engine module that hands GPUs back on its own (free_gpus
    += ...) would skip the offer to the waiting orders; World.release is the one place."""
    engine = REPO / "simulator" / "engine"
    found = {
        f"{path.name}:{n}"
        for path in sorted(engine.glob("*.py"))
        for n, line in enumerate(path.read_text("utf-8").splitlines(), start=1)
        if re.search(r"free_gpus\s*\+=", line)
    }
    release = inspect.getsourcelines(World.release)
    inside = {f"world.py:{release[1] + i}" for i, line in enumerate(release[0]) if "+=" in line}
    assert found == inside
