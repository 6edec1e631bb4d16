"""`gpumarket market`: run the marketplace (`serve`) and read its books (`audit`, `stats`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from marketplace.cli.render import proto_dict
from marketplace.cli.tenant import Connection, endpoint_options
from marketplace.core.errors import InvalidArgument
from marketplace.core.money import format_amount
from marketplace.core.units import parse_duration_ms
from marketplace.identity import Key
from marketplace.terminal import friendly_errors, json_option, print_json, print_table

if TYPE_CHECKING:
    from marketplace.server.logs import LogFormat, LogLevel


@click.group()
def market() -> None:
    """Run the marketplace server and read its books."""


@market.command()
@click.option(
    "--listen", default="127.0.0.1:7420", show_default=True, help="HOST:PORT (port 0: any)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory [default: $GPUMARKET_HOME/market or ~/.local/share/gpumarket].",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Server certificate (PEM, chain allowed): serve TLS.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key of --tls-cert (PEM, unencrypted).",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Mutual TLS: require every client to show a certificate signed by this CA (PEM).",
)
@click.option("--insecure", is_flag=True, help="Allow plaintext off loopback (on purpose only).")
@click.option(
    "--admin-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Faucet key [default: admin.pem in the data dir, created at first start].",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound HOST:PORT here once listening.",
)
@click.option(
    "--heartbeat-timeout",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Seconds of provider silence before its leases are lost and re-ordered [default: 30]; "
    "providers are told to heartbeat three times as often.",
)
@click.option(
    "--escrow-low",
    metavar="DURATION",
    help="Tell a tenant (event escrow_low, and the auto top-up) when a deployment's escrow lasts "
    "at most DURATION at its current rate, e.g. 30m; 0: never [default: 1h].",
)
@click.option(
    "--min-escrow",
    metavar="DURATION",
    help="A deposit must pay every group's maximum price this long (or its max runtime if "
    "shorter); 0: no minimum (tests, demos) [default: 10m].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Least important log line shown (debug: every RPC, bid and decline too).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr as text, or as one JSON object a line (time, level, logger, "
    "message and fields).",
)
@click.option(
    "--metrics-listen",
    metavar="[HOST:]PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (a bare port: loopback; "
    "port 0: any free one, shown in the startup log) [default: off].",
)
@click.option(
    "--auditor",
    "auditors",
    multiple=True,
    metavar="ADDRESS",
    help="Trust this key's signed provider attributes for placement signedBy (repeatable).",
)
@click.option(
    "--auditor-alias",
    "auditor_aliases",
    multiple=True,
    metavar="FOREIGN=ADDRESS",
    help="Read signedBy FOREIGN (e.g. Akash's akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63) "
    "as the local auditor ADDRESS, which is then trusted (repeatable).",
)
@click.option(
    "--store",
    envvar="GPUMARKET_STORE",
    metavar="URL",
    help="Where the market's state lives: sqlite:PATH, or postgresql://USER@HOST/DB to share it "
    "with standby servers (one leads, the others take over when it dies) "
    "[default: market.db in the data dir; env GPUMARKET_STORE].",
)
@click.option(
    "--leader-lease",
    type=click.FloatRange(min=0.3),
    default=3.0,
    show_default=True,
    help="PostgreSQL: seconds after which a leader that stopped renewing its lease (hung, "
    "paused, cut off) is replaced by a standby; a killed leader (its database session gone) "
    "at the standby's next poll, a sixth of this.",
)
@click.option("-v", "--verbose", is_flag=True, help="Same as --log-level debug.")
@friendly_errors
def serve(
    listen: str,
    data_dir: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    insecure: bool,
    admin_key: Path | None,
    port_file: Path | None,
    heartbeat_timeout: float | None,
    escrow_low: str | None,
    min_escrow: str | None,
    log_level: LogLevel,
    log_format: LogFormat,
    metrics_listen: str | None,
    auditors: tuple[str, ...],
    auditor_aliases: tuple[str, ...],
    store: str | None,
    leader_lease: float,
    verbose: bool,
) -> None:
    """Run the marketplace's gRPC server; its state lives in SQLite under the data dir, or in
    PostgreSQL (--store), where more servers may stand by to take over."""
    from marketplace.core.attestations import AuditorTrust, parse_alias
    from marketplace.core.market import MarketConfig
    from marketplace.server import logs
    from marketplace.server.serve import ServeOptions, default_data_dir, serve_forever

    logs.configure("debug" if verbose else log_level, log_format)
    opts = ServeOptions(
        listen=listen,
        data_dir=data_dir or default_data_dir(),
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        insecure=insecure,
        admin_key=admin_key,
        port_file=port_file,
        metrics_listen=metrics_listen,
        store=store,
        leader_lease_s=leader_lease,
    )
    if heartbeat_timeout is not None:
        timeout_ms = int(heartbeat_timeout * 1000)
        opts.config = MarketConfig(
            heartbeat_timeout_ms=timeout_ms, heartbeat_interval_ms=max(timeout_ms // 3, 100)
        )
    if escrow_low is not None:
        opts.config = dataclasses.replace(
            opts.config, escrow_low_ms=duration_or_zero("--escrow-low", escrow_low)
        )
    if min_escrow is not None:
        opts.config = dataclasses.replace(
            opts.config, min_escrow_ms=duration_or_zero("--min-escrow", min_escrow)
        )
    if auditors or auditor_aliases:
        trust = AuditorTrust(frozenset(auditors), tuple(map(parse_alias, auditor_aliases)))
        opts.config = dataclasses.replace(
            opts.config, auditors=trust.auditors, auditor_aliases=trust.aliases
        )
        click.echo(f"trusted auditors: {', '.join(trust.trusted)}")
        for foreign, local in trust.aliases:
            click.echo(f"  signedBy {foreign} means {local}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(opts, lambda line: click.echo(line)))


def duration_or_zero(option: str, text: str) -> int:
    """A duration option's milliseconds ("0": off)."""
    if text.strip() == "0":
        return 0
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise InvalidArgument(f"{option}: {exc}") from None


@market.command()
@endpoint_options
@click.option(
    "--admin-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="GPUMARKET_ADMIN_KEY",
    help="The marketplace's admin key [env GPUMARKET_ADMIN_KEY; default: admin.pem in the "
    "default data dir].",
)
@json_option
@friendly_errors
def audit(conn: Connection, admin_key: Path | None, as_json: bool) -> None:
    """Check that the books balance (exit 1 if they do not); needs the admin key."""
    from marketplace.server.serve import ADMIN_KEY_FILE, default_data_dir

    path = admin_key or default_data_dir() / ADMIN_KEY_FILE
    if not path.exists():
        raise InvalidArgument(
            "the audit needs the marketplace's admin key: pass --admin-key (admin.pem in the "
            "marketplace's data dir)"
        )
    key = Key.from_file(path)
    report = conn.market_client(key).audit()
    if as_json:
        print_json(proto_dict(report))
    else:
        verdict = "balanced" if report.balanced else "NOT BALANCED"
        click.echo(
            f"books {verdict}: {report.entries} ledger entries, "
            f"{format_amount(report.total_minted)} minted"
        )
        for problem in report.problems:
            click.echo(f"  problem: {problem}")
    if not report.balanced:
        raise SystemExit(1)


@market.command()
@endpoint_options
@click.option("--since-ms", type=int, default=0, help="Only leases created since (Unix ms).")
@json_option
@friendly_errors
def stats(conn: Connection, since_ms: int, as_json: bool) -> None:
    """Lease prices per GPU-hour by model (P10 / median / P90), and market activity."""
    answer = conn.market_client().stats(since_ms)
    if as_json:
        print_json(proto_dict(answer))
        return
    click.echo(
        f"{answer.providers_online} providers online, {answer.open_orders} open orders, "
        f"{answer.running_leases} leases running"
    )
    print_table(
        ["GPU", "LEASES", "P10/GPU-H", "MEDIAN/GPU-H", "P90/GPU-H"],
        [
            (
                s.model,
                s.samples,
                format_amount(s.p10),
                format_amount(s.median),
                format_amount(s.p90),
            )
            for s in answer.gpu_prices
        ],
    )
