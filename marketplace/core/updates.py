"""Update in place, the market's side: what an update carries into MarketService, and what a
provider's report of a version means for the lease (the events the tenant sees).

manifest/update.py decides whether a new SDL may replace the running one; MarketService.
update_deployment then makes it the deployment's next version and tells each open lease's
provider (lease_updated). The provider replaces the lease's containers and reports the version
it runs (ReportLeaseStatus.version): `update_running` once the new version runs, or
`update_failed` (with why) when it could not start and the previous version runs again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from marketplace.core.events import DeploymentEventKind
from marketplace.core.journal import Journal, Record
from marketplace.core.resources import GroupSpec, JobSettings
from marketplace.core.state import Lease


@dataclass(frozen=True, slots=True)
class DeploymentUpdate:
    """A new version of a deployment's SDL, parsed and judged updatable (its groups and job
    are the running ones: the market checks again)."""

    groups: Sequence[GroupSpec]
    job: JobSettings
    sdl: bytes = field(repr=False)  # may hold a registry password
    sdl_sha256: bytes
    tenant_request: bytes = field(repr=False)  # the tenant's signed UpdateDeployment
    changes: tuple[str, ...] = ()  # what changes, one line each (plan_update)


def report(
    journal: Journal,
    touch: Callable[[Record], None],
    lease: Lease,
    now_ms: int,
    version: int,
    failed: bool,
    message: str,
) -> None:
    """The provider reports `lease` running `version`, or (failed) unable to run it; `touch`
    marks the lease changed (MarketService's)."""
    if failed:
        if version > lease.version and version != lease.failed_version:
            lease.failed_version = version
            touch(lease)
            text = f"version {version} failed; version {lease.version} runs again: {message}"
            journal.deployment_event(
                lease.deployment_id,
                DeploymentEventKind.UPDATE_FAILED,
                now_ms,
                lease=lease,
                message=text,
            )
        return
    if version <= lease.version:
        return  # said before (a repeated report)
    first = lease.version == 0  # its first run: lease_running told it already
    lease.version = version
    touch(lease)
    if not first:
        journal.deployment_event(
            lease.deployment_id,
            DeploymentEventKind.UPDATE_RUNNING,
            now_ms,
            lease=lease,
            message=f"version {version} running",
        )
