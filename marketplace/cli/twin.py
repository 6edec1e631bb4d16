"""The live market's twin on the command line: `gpumarket simulate --from-market ADDR` writes
the market's providers and prices as a scenario file (edit it, run it), and `gpumarket estimate
FILE` says what a manifest would pay and how long it would wait there (simulator/twin.py)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import click
import yaml

from marketplace.api.convert import attributes_from_proto, capacity_from_proto
from marketplace.cli.manifest import read_manifest_file
from marketplace.cli.tenant import Connection, endpoint_options
from marketplace.core import money
from marketplace.core.manifest import parse_manifest
from marketplace.terminal import friendly_errors, json_option, print_json, print_table
from simulator.twin import (
    GroupEstimate,
    MarketSnapshot,
    PriceBand,
    ProviderSnapshot,
    describe_wait,
    estimate,
    scenario_document,
)

WEEK_MS = 7 * 24 * 3600 * 1000


def take_snapshot(conn: Connection, window_ms: int = WEEK_MS) -> MarketSnapshot:
    """The market's public data: online providers, and clearing prices over `window_ms`."""
    now_ms = int(time.time() * 1000)
    with conn.market_client() as market:
        info = market.info()
        stats = market.stats(since_ms=max(now_ms - window_ms, 0))
        listed = market.list_providers(online_only=True)
    providers = tuple(
        ProviderSnapshot(
            address=p.address,
            region=p.region,
            reliability=p.reliability,
            attributes=attributes_from_proto(p.attributes),
            capacity=capacity_from_proto(p.inventory),
            leases_running=p.leases_running,
        )
        for p in listed
    )
    prices = {s.model: PriceBand(s.samples, s.p10, s.median, s.p90) for s in stats.gpu_prices}
    return MarketSnapshot(
        market_id=info.market_id,
        taken_at_ms=info.server_time_ms,
        providers=providers,
        prices=prices,
        open_orders=stats.open_orders,
        running_leases=stats.running_leases,
    )


def _header(snapshot: MarketSnapshot, address: str) -> str:
    taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(snapshot.taken_at_ms / 1000))
    return (
        f"# A twin of the market at {address} (id {snapshot.market_id}), taken {taken}:\n"
        f"# {len(snapshot.providers)} providers online, {snapshot.open_orders} open orders,\n"
        f"# {snapshot.running_leases} leases running. Providers, GPUs, regions and prices\n"
        "# (clearing medians as costs) come from the market; tenant demand is the built-in\n"
        "# scenario's: edit `tenants:` (see examples/scenario.yaml) and run it with\n"
        "# `gpumarket simulate THIS_FILE`.\n"
    )


@click.command("from-market")
@click.argument("address", required=False)
@endpoint_options
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scenario file to write [default: ./twin-<market id>.yaml].",
)
@click.option("--days", type=click.FloatRange(min=0.01), default=7.0, show_default=True)
@click.option("--run", "run_it", is_flag=True, help="Run the scenario right away.")
@json_option
@friendly_errors
@click.pass_context
def from_market(
    ctx: click.Context,
    address: str | None,
    conn: Connection,
    out: Path | None,
    days: float,
    run_it: bool,
    as_json: bool,
) -> None:
    """Snapshot the live market (providers, GPUs, prices) into a scenario file.

    \b
    gpumarket simulate --from-market 127.0.0.1:7420        writes twin-<id>.yaml
    gpumarket simulate --from-market ADDR --run            and runs it
    """
    if address:
        conn = dataclasses.replace(conn, market=address)
    snapshot = take_snapshot(conn)
    if not any(p.capacity.gpus for p in snapshot.providers):
        raise click.ClickException(f"{conn.market} has no GPU provider online: nothing to twin")
    document = scenario_document(snapshot, days)
    path = out or Path(f"{document['name']}.yaml")
    try:
        path.write_text(_header(snapshot, conn.market) + yaml.safe_dump(document, sort_keys=False))
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {path}: {exc.strerror or exc} (-o FILE)"
        ) from None
    if as_json and not run_it:
        print_json({"scenario": str(path), "document": document})
        return
    if not as_json:
        click.echo(
            f"wrote {path}: {len(snapshot.providers)} providers, {len(snapshot.prices)} "
            "GPU models priced"
        )
    if run_it:
        from simulator.cli import run

        ctx.invoke(run, scenario=path, as_json=as_json)


def _row(e: GroupEstimate) -> tuple[str, ...]:
    band = e.price_per_hour
    price = "unknown" if band is None else " / ".join(money.format_amount(x) for x in band)
    return (
        e.group,
        f"{e.eligible} ({e.busy} busy)",
        price,
        money.format_amount(e.max_per_hour),
        describe_wait(e.wait_ms),
    )


@click.command("estimate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@endpoint_options
@json_option
@friendly_errors
def estimate_command(file: Path, conn: Connection, as_json: bool) -> None:
    """What FILE (an SDL) would pay per hour and how long it would wait, on the live market.

    Providers that fit each placement group are found by the market's own matching (GPU
    model, VRAM, CPU, memory, storage, attributes) over what they registered; prices are the
    last week's clearing prices (P10 / median / P90) of the cheapest GPU model that fits.
    """
    try:
        text = read_manifest_file(file)
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
    manifest = parse_manifest(text, source=str(file))
    found = estimate(manifest, take_snapshot(conn))
    if as_json:
        print_json([e.__dict__ | {"notes": list(e.notes)} for e in found])
        return
    print_table(
        ["GROUP", "PROVIDERS", "PRICE/H P10 / MEDIAN / P90", "YOUR MAX/H", "WAIT"],
        [_row(e) for e in found],
    )
    for e in found:
        for note in e.notes:
            click.echo(f"{e.group}: {note}")
