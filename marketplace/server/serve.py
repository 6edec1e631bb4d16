"""Start the marketplace: data dir, admin key, SQLite store, grpc.aio server, health, reflection.

Off loopback the server speaks TLS (--tls-cert/--tls-key) unless told --insecure on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import ipaddress
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import _async as health_aio  # = health.aio, which grpc-stubs leaves out
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from marketplace.core.errors import InvalidArgument
from marketplace.core.market import MarketConfig
from marketplace.identity import Key, load_key
from marketplace.server.app import MarketApp
from marketplace.server.servicers import MAX_MANIFEST_BYTES, add_servicers
from marketplace.server.store import DB_NAME, Store

log = logging.getLogger("gpumarket.market")

DEFAULT_LISTEN = "127.0.0.1:7420"
ADMIN_KEY_FILE = "admin.pem"
# A manifest of 1 MiB plus its envelope fits; anything much larger is refused by gRPC itself.
MAX_MESSAGE_BYTES = MAX_MANIFEST_BYTES + 64 * 1024
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
    # in lockstep with the clients' keepalive (30 s), so long-lived watches survive NATs
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)


def default_data_dir() -> Path:
    """$GPUMARKET_HOME/market, else $XDG_DATA_HOME/gpumarket (~/.local/share/gpumarket)."""
    if home := os.environ.get("GPUMARKET_HOME"):
        return Path(home) / "market"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gpumarket"


def load_or_create_admin_key(data_dir: Path) -> tuple[Key, bool]:
    """The marketplace's own key (the faucet), created at first start. Returns (key, created)."""
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        return Key.from_pem(path.read_bytes()), False
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Key.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem())
    return key, True


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidArgument(f"--listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:7420")
    return host, int(port)


@dataclass
class ServeOptions:
    listen: str = DEFAULT_LISTEN
    data_dir: Path = field(default_factory=default_data_dir)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    admin_key: Path | None = None
    port_file: Path | None = None
    config: MarketConfig = field(default_factory=MarketConfig)


@dataclass
class Running:
    """A started marketplace: what a caller needs to talk to it and to stop it."""

    server: grpc.aio.Server
    app: MarketApp
    address: str
    admin: Key
    admin_created: bool
    data_dir: Path

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)
        await self.app.stop()
        self.app.store.close()


def _credentials(opts: ServeOptions, host: str) -> grpc.ServerCredentials | None:
    if opts.tls_cert or opts.tls_key:
        if not (opts.tls_cert and opts.tls_key):
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        return grpc.ssl_server_credentials(
            [(opts.tls_key.read_bytes(), opts.tls_cert.read_bytes())]
        )
    if not is_loopback(host) and not opts.insecure:
        raise InvalidArgument(
            f"listening on {host} (off loopback) needs TLS: pass --tls-cert and --tls-key, "
            "or --insecure if you really mean plaintext"
        )
    return None


async def start(opts: ServeOptions) -> Running:
    """Open the store, load the state, bind, start serving. The caller awaits termination."""
    host, _ = split_listen(opts.listen)
    credentials = _credentials(opts, host)
    if opts.admin_key is not None:
        admin, created = load_key(str(opts.admin_key)), False
    else:
        admin, created = load_or_create_admin_key(opts.data_dir)
    config = opts.config
    if not config.admin_address:
        config = dataclasses.replace(config, admin_address=admin.address)
    store = Store(opts.data_dir / DB_NAME)
    app = MarketApp(store, config)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    names = add_servicers(server, app)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    if credentials is None:
        port = server.add_insecure_port(opts.listen)
    else:
        port = server.add_secure_port(opts.listen, credentials)
    if port == 0:
        raise InvalidArgument(f"cannot listen on {opts.listen}: address in use or not available")
    await app.start()
    await server.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"{host}:{port}"
    if opts.port_file is not None:
        tmp = opts.port_file.with_suffix(".tmp")
        tmp.write_text(address + "\n")
        tmp.replace(opts.port_file)  # atomic: a reader never sees half an address
    return Running(server, app, address, admin, created, opts.data_dir)


async def serve_forever(opts: ServeOptions, say: Callable[[str], None]) -> None:
    """`gpumarket market serve`: run until SIGINT/SIGTERM, then stop cleanly."""
    running = await start(opts)
    # The loaded state is long-lived: keep the collector from re-scanning it, and collect the
    # old generation rarely, so a full collection does not stall awards for tens of ms.
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    running.app.on_fatal = lambda exc: stop.set()
    state = running.app.market.state
    say(f"marketplace listening on {running.address} ({'TLS' if opts.tls_cert else 'plaintext'})")
    say(f"data dir: {running.data_dir}")
    note = " (new)" if running.admin_created else ""
    say(f"admin (faucet) address: {running.admin.address}{note}")
    say(
        f"state: {len(state.deployments)} open deployments of {state.next_deployment - 1}, "
        f"{state.next_ledger_id - 1} ledger entries, {len(state.providers)} providers"
    )
    await stop.wait()
    say("stopping: writing what is queued")
    await running.stop()
    if running.app.failure is not None:
        raise SystemExit(f"stopped: cannot store the market's state: {running.app.failure}")
