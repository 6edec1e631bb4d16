"""Checkpoints of training jobs: what a synchronous job keeps when a member fails (failover) or
is pre-empted, and what that is worth against restarting from scratch.

A job writes a checkpoint at a gradient sync (the one moment its nodes agree on the weights):
with a checkpoint interval of 0 (the default) at every sync, which is the engine's rule from
before checkpoints were a knob; with an interval of N minutes of compute, at the first sync after
each N minutes. On an interruption the job keeps its work up to its last checkpoint and loses
the rest; a restart from scratch would have lost everything it had done, and that difference is
the work the checkpoints saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def effective_interval_ms(sync_interval_ms: int, checkpoint_interval_ms: int) -> int:
    """Compute time between two checkpoints: a whole number of syncs, at least one."""
    sync = max(sync_interval_ms, 1)
    if checkpoint_interval_ms <= 0:
        return sync
    return math.ceil(checkpoint_interval_ms / sync) * sync


@dataclass(frozen=True, slots=True)
class Interruption:
    kept_ms: float  # compute of this run kept by its last checkpoint
    lost_ms: float  # compute of this run done since that checkpoint, to do again
    saved_ms: float  # compute a restart from scratch would redo and the checkpoints keep


def interrupt(
    done_ms: float,
    progress_ms: float,
    compute_ms: float,
    sync_interval_ms: int,
    checkpoint_interval_ms: int,
) -> Interruption:
    """A run that did `done_ms` of compute on top of `progress_ms` (kept from earlier runs, and
    itself checkpointed) is interrupted."""
    every = effective_interval_ms(sync_interval_ms, checkpoint_interval_ms)
    kept = (done_ms // every) * every
    progress = min(compute_ms, progress_ms + kept)
    return Interruption(kept_ms=kept, lost_ms=max(done_ms - kept, 0.0), saved_ms=progress)
