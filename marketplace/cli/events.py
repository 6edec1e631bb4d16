"""`gpumarket events`: the market's own record of your deployments (bids, awards, running, exits,
failovers, low escrow, top-ups, closes), with times.

The record is the deployment event stream (Tenant.WatchDeployment): the stored events first
(history_only), then, with --follow, the live ones of every deployment still open, each on a
thread of its own feeding one queue, until Ctrl-C.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable

import click

from marketplace.api import convert
from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.ids import Ids
from marketplace.cli.render import describe_event, proto_dict, when
from marketplace.cli.tenant import Connection, market_options
from marketplace.core.errors import MarketError
from marketplace.core.events import DeploymentEventKind
from marketplace.terminal import friendly_errors, json_option

_POLL_S = 0.2  # how often the main thread looks up from the queue (so Ctrl-C is seen at once)


def event_line(event: pb.DeploymentEvent) -> str:
    """One line for a person: UTC time, deployment, kind, and what happened."""
    decoded = convert.deployment_event_from_proto(event)
    text = (describe_event(decoded).strip() if decoded is not None else "") or event.message
    return f"{when(event.time_ms)}  {event.deployment_id:<6} {event.kind:<18} {text}".rstrip()


def show(event: pb.DeploymentEvent, as_json: bool) -> None:
    if as_json:
        record = proto_dict(event) | {"time": when(event.time_ms) + " UTC"}
        click.echo(json.dumps(record, sort_keys=True))  # one object a line
    else:
        click.echo(event_line(event))


def history(client: TenantClient, deployment_ids: Iterable[str]) -> list[pb.DeploymentEvent]:
    """The stored events of the deployments, in the market's order (seq)."""
    found = [
        event
        for dep_id in deployment_ids
        for event in client.watch_deployment(dep_id, history_only=True)
    ]
    return sorted(found, key=lambda e: e.seq)


Item = pb.DeploymentEvent | MarketError | None  # an event, a failed watch, a watch that ended


def follow(client: TenantClient, after: dict[str, int], as_json: bool) -> None:
    """Print the live events of the deployments (`after`: id → last seq shown) until every
    watch ends (its deployment closed) or Ctrl-C."""
    feed: queue.Queue[Item] = queue.Queue()

    def watch(dep_id: str) -> None:
        try:
            for event in client.watch_deployment(dep_id, after_seq=after[dep_id]):
                feed.put(event)
        except MarketError as exc:
            feed.put(exc)
        finally:
            feed.put(None)

    for dep_id in after:
        threading.Thread(target=watch, args=(dep_id,), daemon=True).start()
    open_watches = len(after)
    while open_watches:
        try:
            item = feed.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        if item is None:
            open_watches -= 1
        elif isinstance(item, MarketError):
            raise item
        else:
            show(item, as_json)


@click.command()
@click.argument("deployment", required=False)
@click.option(
    "-f", "--follow", "keep_following", is_flag=True, help="Keep printing new events until Ctrl-C."
)
@market_options
@json_option
@friendly_errors
def events(deployment: str | None, keep_following: bool, conn: Connection, as_json: bool) -> None:
    """What the market recorded for DEPLOYMENT (default: all of yours), oldest first.

    Bids (sealed while the bid window is open), awards, leases running, exits and failovers
    (re-orders), low escrow and top-ups, closes: one line each with its time in UTC. With -f,
    the live events of every deployment still open follow, until Ctrl-C (or they all close);
    without DEPLOYMENT, of those you had when it started.
    --json prints one JSON object a line.

    \b
    gpumarket events D2
    gpumarket events -f
    """
    client = conn.tenant()
    try:
        if deployment is not None:
            dep_ids = [Ids(client).deployment(deployment)]
        else:
            assert client.key is not None
            dep_ids = [d.id for d in client.list_deployments(client.key.address)]
        after = dict.fromkeys(dep_ids, 0)
        for event in history(client, dep_ids):
            show(event, as_json)
            after[event.deployment_id] = event.seq
            if event.kind == DeploymentEventKind.DEPLOYMENT_CLOSED:
                del after[event.deployment_id]  # nothing follows a close
        if keep_following:
            if not after:
                click.echo("none of these deployments is open: nothing to follow", err=True)
            follow(client, after, as_json)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a follow: a clean exit
    finally:
        client.close()  # any watch still open ends with the channel
