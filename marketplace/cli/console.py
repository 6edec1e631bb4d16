"""`gpumarket console`: the web console, served from this machine beside your key."""

from __future__ import annotations

import logging
import secrets
import sys
import webbrowser
from pathlib import Path
from urllib.parse import quote

import click

from marketplace.api.addresses import is_loopback
from marketplace.api.client import MarketClient, ProviderClient
from marketplace.cli.tenant import Connection, load_key, market_options
from marketplace.console.api import ConsoleApi
from marketplace.console.server import ConsoleConfig, ConsoleServer
from marketplace.core.errors import InvalidArgument
from marketplace.core.limits import whole_number
from marketplace.terminal import friendly_errors

DEFAULT_LISTEN = "127.0.0.1:7480"


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    number = whole_number(port, 5)
    if not sep or number is None or not host or number > 65535:
        raise InvalidArgument(f"--listen {listen!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]"), number


@click.command()
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    help="Where to serve the console, HOST:PORT (port 0: any free port). Off loopback it "
    "needs --https-cert/--https-key and a login token.",
)
@click.option(
    "--https-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TLS certificate (PEM) to serve the console over HTTPS.",
)
@click.option(
    "--https-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key (PEM) of --https-cert.",
)
@click.option(
    "--token",
    envvar="GPUMARKET_CONSOLE_TOKEN",
    help="Login token every request must carry (default off loopback: a new random one, "
    "printed in the login link) [env GPUMARKET_CONSOLE_TOKEN].",
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sim-out"),
    show_default=True,
    help="Folder of `gpumarket simulate` reports for the Reports page.",
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.2, max=60),
    default=2.0,
    show_default=True,
    help="Seconds between readings of the public market (providers, prices).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the console in a browser.")
@click.option(
    "--view",
    default="market",
    show_default=True,
    help="The page --open shows: market, tenant, provider, reports or reports/RUN.",
)
@market_options
@friendly_errors
def console(
    listen: str,
    https_cert: Path | None,
    https_key: Path | None,
    token: str | None,
    reports_dir: Path,
    refresh: float,
    open_browser: bool,
    view: str,
    conn: Connection,
) -> None:
    """Serve the web console: the market live, your deployments (deploy, top up, close,
    accept bids), your provider, simulation reports.

    \b
    It talks to the marketplace over gRPC with your key (--key), which stays here: the
    browser never sees it. Loopback by default; elsewhere only over HTTPS with a login token:
        gpumarket console --open
        gpumarket console --listen 0.0.0.0:7480 --https-cert c.pem --https-key k.pem
    """
    host, port = split_listen(listen)
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    config = ConsoleConfig(host, port, token, https_cert, https_key)
    config.check()
    key = load_key(conn.key_name)
    api = ConsoleApi(
        conn.tenant(key),
        conn.client(MarketClient, key),
        key,
        reports_dir,
        refresh_s=refresh,
        provider=conn.client(ProviderClient, key),
    )
    try:
        server = ConsoleServer(config, api)
    except OSError as exc:
        api.close()
        raise InvalidArgument(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    logging.basicConfig(level=logging.WARNING, format="console: %(message)s", stream=sys.stderr)
    click.echo(f"console: {server.login_url}", nl=True)
    click.echo(f"  key {key.address}, market {conn.market}; Ctrl-C stops", err=True)
    sys.stdout.flush()
    if open_browser:
        # the fragment survives the login redirect: the browser keeps it
        page = server.login_url if config.token else server.url + "/"
        webbrowser.open(f"{page}#/{quote(view.strip('/#'))}")
    api.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
        api.close()
