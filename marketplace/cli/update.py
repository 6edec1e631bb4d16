"""`gpumarket update DEPLOYMENT FILE`: change what a running deployment runs, in place.

As on Akash (MsgUpdateDeployment and a manifest sent again), an update changes each service's
image, command, args and env (and registry credentials). What was bought at auction stays:
resources, placement, pricing, replica count, exposes and storage; the market refuses a change
to those (FAILED_PRECONDITION) naming the service and field. Each lease's provider replaces its
containers, keeping the persistent volumes and the endpoints, and reports the new version
running, or update_failed (the old version then runs again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.ids import Ids
from marketplace.cli.render import proto_dict
from marketplace.cli.tenant import Connection, market_options, read_manifest
from marketplace.core.errors import FailedPrecondition, Unavailable
from marketplace.polling import wait_until
from marketplace.terminal import friendly_errors, json_option, print_json

WAIT_POLL_S = 0.25


@dataclass(frozen=True)
class LeaseOutcome:
    lease_id: str
    outcome: str  # "running" | "failed"
    message: str


@click.command()
@click.argument("deployment")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until every lease runs the new version (or its provider says it failed).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds --wait waits.",
)
@market_options
@json_option
@friendly_errors
def update(
    deployment: str, file: Path, wait: bool, timeout: float, conn: Connection, as_json: bool
) -> None:
    """Update DEPLOYMENT in place with the manifest FILE (Akash SDL).

    \b
    May change:    image, command, args, env (and registry credentials) of each service
    Refused:       resources, placement, pricing, count, expose, storage, gpumarket settings
                   (close the deployment and deploy again for those)
    Kept:          persistent volumes, endpoints (host ports and ingress names), the lease

    \b
    Example:
      gpumarket update D7 web-v2.yaml --wait
    """
    raw = read_manifest(file, force=True)  # the GPU models are the running ones
    client = conn.tenant()
    deployment = Ids(client).deployment(deployment)
    current = client.get_deployment(deployment).version
    result = client.update_deployment(deployment, raw, current + 1)
    dep = result.deployment
    if not as_json:
        click.echo(f"deployment {dep.id}: version {dep.version}")
        for line in result.changes:
            click.echo(f"  {line}")
    if wait and not as_json:
        click.echo(f"waiting (up to {timeout:g} s) for its leases to run version {dep.version}…")
    outcomes = wait_for_version(client, dep, timeout) if wait else []
    if as_json:
        print_json(
            {
                "deployment": proto_dict(dep),
                "changes": list(result.changes),
                "leases": [vars(o) for o in outcomes],
            }
        )
    else:
        for o in outcomes:
            click.echo(f"lease {o.lease_id}: {o.outcome}" + (f": {o.message}" if o.message else ""))
    failed = [o.lease_id for o in outcomes if o.outcome == "failed"]
    if failed:
        raise FailedPrecondition(
            f"version {dep.version} did not start on {', '.join(failed)}; "
            "the previous version runs there again"
        )


def wait_for_version(
    client: TenantClient, dep: pb.Deployment, timeout: float
) -> list[LeaseOutcome]:
    """Poll the deployment's open leases until each reports `dep.version` running or failed."""
    version = dep.version

    def outcomes() -> tuple[list[LeaseOutcome]] | None:  # wrapped: no open lease is an answer
        found = []
        for lease_id in dep.lease_ids:
            lease = client.get_lease(lease_id)
            if lease.state == pb.LEASE_CLOSED:
                continue
            if lease.version >= version:
                found.append(LeaseOutcome(lease.id, "running", ""))
            elif lease.failed_version == version:
                found.append(LeaseOutcome(lease.id, "failed", lease.message))
            else:
                return None
        return (found,)

    try:
        (found,) = wait_until(outcomes, timeout, f"version {version} running", interval=WAIT_POLL_S)
        return found
    except TimeoutError as exc:
        raise Unavailable(str(exc)) from None
