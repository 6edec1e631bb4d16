"""A provider's reliability score in [0, 1], from its history.

    leases  = (ok + a) / (ok + lost + failed_starts + a + b)      Beta(a, b) prior, a=4, b=1
    uptime  = (up + U) / (up + down + U)                           U = one hour of prior uptime
    score   = leases × uptime

A new provider scores a/(a+b) = 0.8: below a proven one, above one that loses leases. `ok` counts
leases that ran and ended normally (completed, closed by the tenant, ran out of funds); `lost`
counts leases it lost (went silent) or abandoned (closed them itself); `failed_starts` counts
leases it never started (manifest timeout, or failed before reporting running). A workload that
fails after running is the tenant's business and is not held against the provider.
"""

from __future__ import annotations

from marketplace.core.state import ProviderRecord

PRIOR_UPTIME_MS = 3_600_000


def score(record: ProviderRecord, prior_ok: float = 4.0, prior_bad: float = 1.0) -> float:
    bad = record.leases_lost + record.failed_starts
    leases = (record.leases_ok + prior_ok) / (record.leases_ok + bad + prior_ok + prior_bad)
    up = record.uptime_ms + PRIOR_UPTIME_MS
    uptime = up / (up + record.downtime_ms)
    return leases * uptime
