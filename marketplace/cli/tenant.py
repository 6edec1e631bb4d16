"""Tenant commands: `gpumarket deploy/status/bids/why/accept/leases/logs/close/account/providers`.

Every command takes --market ADDR (env GPUMARKET_MARKET) and --key NAME (env GPUMARKET_KEY,
default "default", created on first use with a notice). Tables for people (render.py), --json
for scripts.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import click

from marketplace import identity
from marketplace.api import convert
from marketplace.api.addresses import off_loopback
from marketplace.api.client import (
    DEFAULT_MARKET,
    MarketClient,
    MarketUnavailable,
    ServiceClient,
    TenantClient,
)
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.amounts import parse_auto_top_up, parse_money
from marketplace.cli.ids import Ids
from marketplace.cli.manifest import read_manifest_file
from marketplace.cli.render import (
    account_lines,
    amount,
    bid_table,
    deployment_detail,
    deployment_table,
    describe_event,
    explanation,
    lease_detail,
    lease_table,
    low_warning,
    proto_dict,
    provider_table,
)
from marketplace.cli.wait import WAIT_TIMED_OUT, WaitTimedOut, no_provider_line
from marketplace.core import units
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.events import DeploymentEventKind
from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.core.manifest.support import refuse_unmatchable
from marketplace.terminal import friendly_errors, json_option, print_json

R = TypeVar("R")
C = TypeVar("C", bound=ServiceClient)


# --- shared options ------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """Where the marketplace is and how to reach it, as the shared options gave it."""

    market: str  # one address, or several of one marketplace, comma-separated (failover)
    key_name: str
    tls_ca: Path | None
    tls_cert: Path | None
    tls_key: Path | None

    @property
    def client_cert(self) -> tuple[Path, Path] | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        return (self.tls_cert, self.tls_key)

    def tenant(self, key: identity.Key | None = None) -> TenantClient:
        """A tenant client signing with `key`, or with the --key option's key."""
        signer = key if key is not None else load_key(self.key_name)
        return TenantClient(self.market, signer, tls_ca=self.tls_ca, client_cert=self.client_cert)

    def market_client(self, key: identity.Key | None = None) -> MarketClient:
        return self.client(MarketClient, key)

    def client(self, cls: type[C], key: identity.Key | None = None) -> C:
        """A client of service `cls` on this connection, signing with `key` (None: unsigned)."""
        return cls(self.market, key, tls_ca=self.tls_ca, client_cert=self.client_cert)


def market_options(func: Callable[..., R]) -> Callable[..., R]:
    """--market, --key, --tls-ca and --tls-cert/--tls-key (from options or the environment),
    handed to the command as one `conn: Connection`."""
    return _connection_options(func, signing=True)


def endpoint_options(func: Callable[..., R]) -> Callable[..., R]:
    """market_options without --key, for commands that sign with another key or not at all."""
    return _connection_options(func, signing=False)


def _connection_options(func: Callable[..., R], signing: bool) -> Callable[..., R]:
    @functools.wraps(func)
    def with_connection(*args: object, **kwargs: object) -> R:
        cert, key = kwargs.pop("tls_cert"), kwargs.pop("tls_key")
        if (cert is None) != (key is None):
            raise click.UsageError("--tls-cert and --tls-key go together")
        conn = Connection(
            market=str(kwargs.pop("market")),
            key_name=str(kwargs.pop("key_name", "default")),
            tls_ca=cast("Path | None", kwargs.pop("tls_ca")),
            tls_cert=cast("Path | None", cert),
            tls_key=cast("Path | None", key),
        )
        if not kwargs.pop("insecure") and conn.tls_ca is None and conn.tls_cert is None:
            refuse_plaintext(conn.market)
        return func(*args, conn=conn, **kwargs)

    pem = click.Path(exists=True, dir_okay=False, path_type=Path)
    options = [
        click.option(
            "--insecure",
            is_flag=True,
            envvar="GPUMARKET_INSECURE",
            help="Talk plaintext to a marketplace off loopback, on purpose: anyone on the path "
            "reads your manifests and their secrets [env GPUMARKET_INSECURE=1].",
        ),
        click.option(
            "--tls-key",
            type=pem,
            envvar="GPUMARKET_TLS_KEY",
            help="Private key of --tls-cert [env GPUMARKET_TLS_KEY].",
        ),
        click.option(
            "--tls-cert",
            type=pem,
            envvar="GPUMARKET_TLS_CERT",
            help="Your client certificate, for a marketplace serving mutual TLS "
            "[env GPUMARKET_TLS_CERT].",
        ),
        click.option(
            "--tls-ca",
            type=pem,
            envvar="GPUMARKET_TLS_CA",
            help="CA certificate of a TLS marketplace [env GPUMARKET_TLS_CA].",
        ),
    ]
    if signing:
        options.append(
            click.option(
                "--key",
                "key_name",
                default="default",
                envvar="GPUMARKET_KEY",
                show_default=True,
                help="Your signing key: a name in the keys dir or a .pem path [env GPUMARKET_KEY].",
            )
        )
    options.append(
        click.option(
            "--market",
            default=DEFAULT_MARKET,
            envvar="GPUMARKET_MARKET",
            show_default=True,
            help="Marketplace address HOST:PORT; several of one marketplace (leader, standbys) "
            "as HOST:PORT,HOST:PORT: calls move on to the next when one is down or not the "
            "leader [env GPUMARKET_MARKET].",
        )
    )
    for option in options:
        with_connection = option(with_connection)
    return with_connection


def refuse_plaintext(market: str) -> None:
    """Without TLS, only a marketplace on this machine: signatures keep requests from being
    altered, not from being read, and a manifest carries its env secrets."""
    try:
        remote = off_loopback(market)
    except InvalidArgument as exc:
        raise click.ClickException(str(exc)) from None
    if remote is not None:
        raise click.ClickException(
            f"refusing plaintext to {remote} (not this machine): pass the marketplace's CA "
            "with --tls-ca CA.pem [env GPUMARKET_TLS_CA], or --insecure "
            "[env GPUMARKET_INSECURE=1] to send it readable on purpose"
        )


def load_key(name: str) -> identity.Key:
    """The named key; a missing "name" (not a path) is created, with a notice on stderr."""
    try:
        return identity.load_key(name)
    except NotFound:
        if identity.is_key_path(name):
            raise  # a file the user named is not made up in its place
        key = identity.create_key(name)
        click.echo(
            f"created key {name!r} ({key.address}) in {identity.keys_dir()}; "
            "fund it with `gpumarket account fund`",
            err=True,
        )
        return key


# --- deploy -------------------------------------------------------------------------------------


def read_manifest(path: Path, force: bool = False) -> bytes:
    """The file's bytes, validated locally first: every problem on its own line; a GPU model
    no provider can be is refused too, unless `force` (deploy --force)."""
    try:
        raw = read_manifest_file(path)  # bounded: never /dev/zero to the end
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        manifest = parse_manifest(raw, str(path))
    except ManifestError as exc:
        for error in exc.errors:
            click.echo(error.location_message, err=True)
        raise InvalidArgument(
            f"{path} is not a valid manifest ({len(exc.errors)} problem(s))"
        ) from None
    for warning in manifest.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not force:
        refuse_unmatchable(manifest, "use --force")
    return raw


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--deposit", required=True, help="Escrow to lock, e.g. 5 (units) or 5000000u.")
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Follow the auction until every group runs (default: on a terminal).",
)
@click.option(
    "--timeout",
    "timeout_text",
    metavar="DURATION",
    help="Wait at most DURATION (e.g. 90s, 10m, 1h; implies --wait): then exit with status "
    f"{WAIT_TIMED_OUT}, the deployment left open.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Deploy even if a GPU model is unknown to the registry (no provider can match it).",
)
@click.option(
    "--auto-top-up",
    "auto_top_up",
    metavar="AMOUNT[/max TOTAL]",
    help="When the escrow runs low (escrow_low), move AMOUNT from your account into it, at "
    "most TOTAL over the deployment's life [default TOTAL: 10 × AMOUNT].",
)
@market_options
@json_option
@friendly_errors
def deploy(
    file: Path,
    deposit: str,
    wait: bool | None,
    timeout_text: str | None,
    force: bool,
    auto_top_up: str | None,
    conn: Connection,
    as_json: bool,
) -> None:
    """Deploy the job manifest FILE (Akash SDL) with a DEPOSIT in escrow."""
    micro = parse_money("--deposit", deposit)
    timeout_ms = parse_timeout(timeout_text)
    step, cap = parse_auto_top_up(auto_top_up)
    raw = read_manifest(file, force)
    client = conn.tenant()
    dep = client.create_deployment(raw, micro, force=force, auto_top_up=step, auto_top_up_max=cap)
    if as_json:
        print_json(proto_dict(dep))
    else:
        click.echo(
            f"deployment {dep.id}: {amount(dep.deposited)} in escrow, "
            f"{len(dep.order_ids)} order(s): {', '.join(dep.order_ids)}"
        )
    if wait is None:
        wait = timeout_ms is not None or (sys.stdout.isatty() and not as_json)
    if wait:
        if line := no_provider_line(conn.market_client()):
            click.echo(line, err=True)
        follow_deployment(client, dep, as_json, timeout_ms)


def parse_timeout(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return units.parse_duration_ms(text)
    except ValueError as exc:
        raise InvalidArgument(f"--timeout: {exc}") from None


def follow_deployment(
    client: TenantClient, dep: pb.Deployment, as_json: bool, timeout_ms: int | None = None
) -> None:
    """Print the auction as it happens; return once every group's lease runs, or it closes;
    WaitTimedOut after `timeout_ms`."""
    timeout_s = None if timeout_ms is None else timeout_ms / 1000
    started = time.monotonic()
    try:
        _follow(client, dep, as_json, timeout_s)
    except MarketUnavailable:
        if timeout_ms is None or time.monotonic() - started < timeout_ms / 1000:
            raise  # the market itself is away, not the wait's end
        raise WaitTimedOut(
            f"deployment {dep.id}: not every group runs after {units.format_duration(timeout_ms)}"
            f"; it stays open (`gpumarket status {dep.id}`, `gpumarket close {dep.id}`)"
        ) from None


def _follow(
    client: TenantClient, dep: pb.Deployment, as_json: bool, timeout_s: float | None
) -> None:
    groups = len(dep.groups)
    running: set[str] = set()
    for message in client.watch_deployment(dep.id, timeout_s=timeout_s):
        if as_json:
            print_json(proto_dict(message))
        event = convert.deployment_event_from_proto(message)
        if event is None:
            continue  # a kind this client does not know
        if not as_json and (line := describe_event(event)):
            click.echo(line)
        if event.kind == DeploymentEventKind.LEASE_RUNNING:
            running.add(event.lease_id)
        elif event.kind == DeploymentEventKind.LEASE_CLOSED:
            running.discard(event.lease_id)
        if len(running) >= groups:
            return


# --- reading ------------------------------------------------------------------------------------


@click.command()
@click.argument("id", required=False)
@market_options
@json_option
@friendly_errors
def status(id: str | None, conn: Connection, as_json: bool) -> None:
    """Your deployments, or one deployment (D<n>), order (D<n>/G/O) or lease in detail.

    Ids may be short: 2 for D2; a lease by its order (D2/1/1) or deployment when it has one
    lease; a provider address cut short (D2/1/1/3fa)."""
    client = conn.tenant()
    if id is None:
        deps = client.list_deployments()
        if as_json:
            print_json([proto_dict(d) for d in deps])
        else:
            deployment_table(deps)
            for low in (d for d in deps if d.escrow_low):
                click.echo(low_warning(low))
        return
    ids = Ids(client)
    parts = id.strip().rstrip("/").count("/") + 1
    if parts == 3:
        why_order(client, ids.order(id), as_json)
        return
    if parts > 1:
        show_lease(client.get_lease(ids.lease(id)), as_json)
        return
    dep = client.get_deployment(ids.deployment(id))
    leases = [client.get_lease(x) for x in dep.lease_ids]
    orders = [client.get_order(o) for o in dep.order_ids]
    if as_json:
        print_json(
            {
                "deployment": proto_dict(dep),
                "orders": [proto_dict(o) for o in orders],
                "leases": [proto_dict(x) for x in leases],
            }
        )
        return
    deployment_detail(dep, orders, leases)


def show_lease(lease: pb.Lease, as_json: bool) -> None:
    if as_json:
        print_json(proto_dict(lease))
    else:
        lease_detail(lease)


@click.command()
@click.argument("order")
@market_options
@json_option
@friendly_errors
def bids(order: str, conn: Connection, as_json: bool) -> None:
    """The bids on ORDER you may see, best first (sealed until its bid window closes)."""
    client = conn.tenant()
    found = client.list_bids(Ids(client).order(order))
    if as_json:
        print_json([proto_dict(b) for b in found])
        return
    bid_table(found)


@click.command()
@click.argument("order")
@market_options
@json_option
@friendly_errors
def why(order: str, conn: Connection, as_json: bool) -> None:
    """Why ORDER has no (winning) bid: every provider's decline reason and a summary."""
    client = conn.tenant()
    why_order(client, Ids(client).order(order), as_json)


def why_order(client: TenantClient, order: str, as_json: bool) -> None:
    answer = client.explain_order(order)
    if as_json:
        print_json(proto_dict(answer))
    else:
        explanation(answer)


@click.command()
@click.argument("bid")
@market_options
@json_option
@friendly_errors
def accept(bid: str, conn: Connection, as_json: bool) -> None:
    """Accept BID (manual auctions): it becomes your lease at its price."""
    client = conn.tenant()
    lease = client.accept_bid(Ids(client).bid(bid))
    if as_json:
        print_json(proto_dict(lease))
    else:
        click.echo(f"lease {lease.id}: {amount(lease.price_per_hour)}/h with {lease.provider}")


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Closed leases too.")
@market_options
@json_option
@friendly_errors
def leases(show_all: bool, conn: Connection, as_json: bool) -> None:
    """Your leases (open ones unless --all)."""
    client = conn.tenant()
    assert client.key is not None
    found = client.list_leases(owner=client.key.address, open_only=not show_all)
    if as_json:
        print_json([proto_dict(x) for x in found])
    else:
        lease_table(found)


@click.command()
@click.argument("lease")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the lease ends.")
@click.option("--tail", type=int, default=0, help="Only the last N lines first.")
@market_options
@json_option
@friendly_errors
def logs(
    lease: str,
    follow: bool,
    tail: int,
    conn: Connection,
    as_json: bool,
) -> None:
    """The log lines of LEASE (stdout, stderr, and the provider's system lines)."""
    client = conn.tenant()
    for line in client.stream_logs(Ids(client).lease(lease), follow=follow, tail=tail):
        if as_json:
            click.echo(
                f'{{"seq": {line.seq}, "time_ms": {line.time_ms}, '
                f'"stream": "{line.stream}", "line": {_json_str(line.line)}}}'
            )
        else:
            prefix = "" if line.stream == "stdout" else f"[{line.stream}] "
            click.echo(prefix + line.line)


def _json_str(text: str) -> str:
    return json.dumps(text)


@click.command()
@click.argument("id")
@market_options
@json_option
@friendly_errors
def close(id: str, conn: Connection, as_json: bool) -> None:
    """Close a deployment (D<n>: every lease, refund the rest) or one lease (D<n>/G/O/PROVIDER,
    or the short D<n>/G/O when that order has one lease)."""
    client = conn.tenant()
    ids = Ids(client)
    if "/" in id.strip().rstrip("/"):
        lease = client.close_lease(ids.lease(id))
        if as_json:
            print_json(proto_dict(lease))
        else:
            click.echo(f"lease {lease.id} closed; paid {amount(lease.paid)} in all")
        return
    dep = client.close_deployment(ids.deployment(id))
    if as_json:
        print_json(proto_dict(dep))
    else:
        # every deposit and top-up is in `deposited`; what the leases did not take came back
        paid = sum(client.get_lease(lease_id).paid for lease_id in dep.lease_ids)
        click.echo(
            f"deployment {dep.id} closed: {amount(paid)} paid to providers, "
            f"{amount(dep.deposited - paid)} refunded to your account"
        )


# --- accounts and providers -------------------------------------------------------------------


@click.group(invoke_without_command=True)
@market_options
@json_option
@click.pass_context
@friendly_errors
def account(ctx: click.Context, conn: Connection, as_json: bool) -> None:
    """Your account: `account show` (the default) and the dev faucet `account fund`."""
    if ctx.invoked_subcommand is None:
        show_account(None, conn, as_json)


@account.command()
@click.argument("address", required=False)
@market_options
@json_option
@friendly_errors
def show(address: str | None, conn: Connection, as_json: bool) -> None:
    """Balance and escrow of ADDRESS (default: your key's; another's needs the admin key)."""
    show_account(address, conn, as_json)


def show_account(address: str | None, conn: Connection, as_json: bool) -> None:
    client = conn.tenant()
    acct = client.get_account(address)
    if as_json:
        print_json(proto_dict(acct))
    else:
        account_lines(acct)


@account.command()
@click.argument("address")
@click.argument("amount_text", metavar="AMOUNT")
@click.option(
    "--admin-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The marketplace's admin key (admin.pem in its data dir).",
)
@market_options
@json_option
@friendly_errors
def fund(
    address: str,
    amount_text: str,
    admin_key: Path,
    conn: Connection,
    as_json: bool,
) -> None:
    """Dev faucet: mint AMOUNT into ADDRESS (only the marketplace's admin key may)."""
    micro = parse_money("amount", amount_text)
    if address in ("me", "self"):
        address = load_key(conn.key_name).address
    key = identity.Key.from_file(admin_key)
    acct = conn.tenant(key).fund(address, micro)
    if as_json:
        print_json(proto_dict(acct))
    else:
        click.echo(f"funded {acct.address}: balance {amount(acct.balance)}")


@click.command()
@click.option("--online", is_flag=True, help="Only providers online now.")
@market_options
@json_option
@friendly_errors
def providers(online: bool, conn: Connection, as_json: bool) -> None:
    """The providers the marketplace knows: GPUs, reliability, liveness."""
    found = conn.market_client().list_providers(online_only=online)
    if as_json:
        print_json([proto_dict(p) for p in found])
    else:
        provider_table(found)
