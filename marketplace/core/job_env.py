"""The environment the market gives every container of a lease, beside the tenant's own `env`:
which lease this is, how many times its group was ordered again before it, and the tenant's
checkpoint location, so a job restarted by a failover or a re-order resumes instead of starting
over (a training loop reads GPUMARKET_CHECKPOINT_URI, saves there, and on
GPUMARKET_RESTART_COUNT > 0 loads the last checkpoint first)."""

from __future__ import annotations

from marketplace.core.limits import whole_number
from marketplace.core.resources import JobSettings

ENV_PREFIX = "GPUMARKET_"
LEASE_ID = "GPUMARKET_LEASE_ID"
RESTART_COUNT = "GPUMARKET_RESTART_COUNT"
CHECKPOINT_URI = "GPUMARKET_CHECKPOINT_URI"


def restart_count(lease_id: str) -> int:
    """Orders of a group before this lease's: its order sequence less one. A lease id is
    `D<dseq>/<gseq>/<oseq>/<provider>`; each failover or re-order adds one to oseq."""
    parts = lease_id.split("/")
    oseq = whole_number(parts[2]) if len(parts) >= 3 else None
    if oseq is None:
        raise ValueError(f"lease id {lease_id!r} has no order sequence (D<n>/<group>/<order>/...)")
    return max(oseq - 1, 0)


def lease_environment(lease_id: str, job: JobSettings) -> tuple[tuple[str, str], ...]:
    env = [(LEASE_ID, lease_id), (RESTART_COUNT, str(restart_count(lease_id)))]
    if job.checkpoint_uri is not None:
        env.append((CHECKPOINT_URI, job.checkpoint_uri))
    return tuple(env)


def with_lease_environment(
    own: tuple[tuple[str, str], ...], lease_id: str, job: JobSettings
) -> tuple[tuple[str, str], ...]:
    """The tenant's env with the market's variables last, so they win over a same-named entry
    (the parser warns about those)."""
    ours = lease_environment(lease_id, job)
    names = {name for name, _ in ours}
    return (*(item for item in own if item[0] not in names), *ours)
