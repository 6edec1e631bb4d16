"""Start the marketplace: data dir, admin key, store, grpc.aio server, health, reflection.

The store is SQLite in the data dir by default; --store names another file or a PostgreSQL
database, which several servers may share: one leads, the others stand by (standby.py).

Off loopback the server speaks TLS (--tls-cert/--tls-key) unless told --insecure on purpose;
--tls-client-ca makes it mutual (every client shows a certificate signed by that CA).
One server per port (no SO_REUSEPORT) and per data dir (datadir.lock); whatever stops a start
is said in one line (a MarketError), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import _async as health_aio  # = health.aio, which grpc-stubs leaves out
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from marketplace.api.addresses import is_loopback
from marketplace.core.errors import FailedPrecondition, InvalidArgument
from marketplace.core.limits import whole_number
from marketplace.core.market import MarketConfig
from marketplace.identity import Key
from marketplace.server import datadir
from marketplace.server.app import MarketApp
from marketplace.server.decoding import RequestDecoding
from marketplace.server.logs import fields
from marketplace.server.metrics import split_metrics_listen
from marketplace.server.observe import Observability
from marketplace.server.servicers import MAX_MANIFEST_BYTES, add_servicers
from marketplace.server.standby import (
    DEFAULT_LEASE_S,
    check_market_id,
    claim_market_id,
    keep_leading,
    open_store,
    sqlite_path,
    stand_by,
)
from marketplace.server.store_api import Deposed, MarketStore, StoreUnreachable

log = logging.getLogger("gpumarket.market")

DEFAULT_LISTEN = "127.0.0.1:7420"
ADMIN_KEY_FILE = "admin.pem"
# A manifest of 1 MiB plus its envelope fits; anything much larger is refused by gRPC itself.
MAX_MESSAGE_BYTES = MAX_MANIFEST_BYTES + 64 * 1024
SERVER_OPTIONS = (
    # gRPC sets SO_REUSEPORT by default: a second server on a busy port would start and share
    # its clients with the first. Off, so binding a busy port fails.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
    # in lockstep with the clients' keepalive (30 s), so long-lived watches survive NATs
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)

# How long a thread holding the GIL keeps it from another that asks (CPython's default: 5 ms).
# A heavy read decodes the archive on the reader thread (offloop.py) while the event loop
# serves bids: each time the loop comes back from I/O it waits up to this long for the GIL, and
# a bid crosses the loop, the committer's thread and gRPC several times. At 5 ms a bid took
# 100+ ms behind one price-advice read (tests/server/test_loop.py); at 1 ms ~5x less.
GIL_SWITCH_S = 0.001


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
        return Key.from_file(path), False
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Key.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem())
    return key, True


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    number = whole_number(port, 9)
    if not sep or number is None or not host:
        raise InvalidArgument(f"--listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:7420")
    # gRPC would take 99999 modulo 65536 and listen on a port nobody asked for
    if number > 65535:
        raise InvalidArgument(f"--listen {listen!r}: port {number} is out of range (0-65535)")
    return host, number


def check_listen(host: str, port: int) -> None:
    """Bind the address once as gRPC will (SO_REUSEADDR, no SO_REUSEPORT), to say in one line
    why it cannot be served: gRPC itself only says "Failed to bind"."""
    listen = f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise InvalidArgument(f"cannot listen on {listen}: unknown host ({exc.strerror})") from None
    failures: list[OSError] = []
    for family, kind, proto, _, sockaddr in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise FailedPrecondition(
                        f"{listen} is already in use (another marketplace?)"
                    ) from None
                failures.append(exc)
    if len(failures) == len(addresses):  # gRPC serves if any of the addresses binds
        reason = failures[0].strerror if failures else "no address"
        raise InvalidArgument(f"cannot listen on {listen}: {reason}")


@dataclass
class ServeOptions:
    listen: str = DEFAULT_LISTEN
    data_dir: Path = field(default_factory=default_data_dir)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    insecure: bool = False
    admin_key: Path | None = None
    port_file: Path | None = None
    config: MarketConfig = field(default_factory=MarketConfig)
    metrics_listen: str | None = None  # PORT or HOST:PORT: serve /metrics there
    store: str | None = None  # sqlite:PATH or postgresql://...; None: market.db in data_dir
    leader_lease_s: float = DEFAULT_LEASE_S  # shared stores: a silent leader is replaced after
    deposed: bool = False  # stands by again after a deposal: leaves the lease to others first


@dataclass
class Running:
    """A started marketplace: what a caller needs to talk to it and to stop it."""

    server: grpc.aio.Server
    app: MarketApp
    address: str
    admin: Key
    admin_created: bool
    data_dir: Path
    data_dir_lock: datadir.DataDirLock
    observability: Observability | None = None
    metrics_address: str | None = None  # HOST:PORT of /metrics, when served
    keeper: asyncio.Task[None] | None = None  # renews the lease of a shared store

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)
        if self.keeper is not None:
            self.keeper.cancel()
        await self.app.stop()
        leadership = self.app.store.leadership()
        if leadership is not None and leadership.term is not None:
            with contextlib.suppress(Exception):  # a standby takes over at once, not at expiry
                leadership.resign()
        self.app.store.close()
        if self.observability is not None:
            self.observability.close()
        log.info("marketplace stopped", extra=fields(address=self.address))
        self.data_dir_lock.release()


def _pem_certificates(path: Path, option: str) -> bytes:
    data = path.read_bytes()
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InvalidArgument(f"{option} {path} is not a PEM certificate") from None
    return data


def _pem_private_key(path: Path) -> bytes:
    data = path.read_bytes()
    try:
        serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InvalidArgument(f"--tls-key {path} is not an unencrypted PEM private key") from None
    return data


def _credentials(opts: ServeOptions, host: str) -> grpc.ServerCredentials | None:
    if opts.tls_client_ca and not (opts.tls_cert and opts.tls_key):
        raise InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key")
    if opts.tls_cert or opts.tls_key:
        if not (opts.tls_cert and opts.tls_key):
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        key = _pem_private_key(opts.tls_key)
        cert = _pem_certificates(opts.tls_cert, "--tls-cert")
        client_ca = None
        if opts.tls_client_ca is not None:
            client_ca = _pem_certificates(opts.tls_client_ca, "--tls-client-ca")
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
    if not is_loopback(host) and not opts.insecure:
        raise InvalidArgument(
            f"listening on {host} (off loopback) needs TLS: pass --tls-cert and --tls-key, "
            "or --insecure if you really mean plaintext"
        )
    return None


async def start(opts: ServeOptions) -> Running:
    """Hold the data dir, open the store, load the state, bind, start serving; on any failure
    undo what was done. The caller awaits termination."""
    host, port = split_listen(opts.listen)
    if opts.metrics_listen is not None:
        split_metrics_listen(opts.metrics_listen)  # a bad address is said before anything starts
    credentials = _credentials(opts, host)
    datadir.prepare(opts.data_dir)
    undo = contextlib.AsyncExitStack()
    try:
        return await _start(opts, host, port, credentials, undo)
    except BaseException:
        await undo.aclose()
        raise


async def _start(
    opts: ServeOptions,
    host: str,
    port: int,
    credentials: grpc.ServerCredentials | None,
    undo: contextlib.AsyncExitStack,
) -> Running:
    held = datadir.lock(opts.data_dir)
    undo.callback(held.release)
    check_listen(host, port)
    db = sqlite_path(opts.store, opts.data_dir)
    if db is not None:
        datadir.check_store(db.parent, db.name, (ADMIN_KEY_FILE,))
    store = open_store(opts.store, opts.data_dir, opts.leader_lease_s)
    undo.callback(store.close)
    if db is not None:
        datadir.mark_in_use(db.parent, db.name)
    # after the store: a faucet key in the dir then means a store was created beside it
    if opts.admin_key is not None:
        admin, created = Key.from_file(opts.admin_key), False
    else:
        admin, created = load_or_create_admin_key(opts.data_dir)
    listen = await _lead(store, admin.address, opts, credentials)
    config = opts.config
    if not config.admin_address:
        config = dataclasses.replace(config, admin_address=admin.address)
    keeper = _Keeper.start(store, opts.leader_lease_s)
    if keeper is None:
        app = MarketApp(store, config)
    else:  # the lease is renewed while the state loads, however long that takes
        undo.callback(keeper.cancel)
        app = await asyncio.to_thread(MarketApp, store, config)
        keeper.serve(app)
    observability, metrics_address = _observe(app, opts, undo)
    server, health_servicer, names = _grpc_server(app, observability)
    bound = _bind(server, listen, credentials)
    if bound == 0:
        check_listen(host, port)  # says why, if it can
        raise InvalidArgument(f"cannot listen on {listen}")
    await app.start()
    undo.push_async_callback(app.stop)
    await server.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"{host}:{bound}"
    _write_port_file(opts, bound)
    running = Running(server, app, address, admin, created, opts.data_dir, held)
    running.observability, running.metrics_address = observability, metrics_address
    running.keeper = None if keeper is None else keeper.task
    log.info(
        "marketplace started",
        extra=fields(
            address=address,
            data_dir=str(opts.data_dir),
            tls=_transport(opts),
            store=store.describe(),
            term=store_term(store),
            metrics=f"http://{metrics_address}/metrics" if metrics_address else None,
        ),
    )
    return running


async def _lead(
    store: MarketStore,
    admin_address: str,
    opts: ServeOptions,
    credentials: grpc.ServerCredentials | None,
) -> str:
    """On a store several servers share: stand by until this server leads (serving health
    NOT_SERVING on the listen address meanwhile). Returns the address to serve on: the port the
    standby held, so clients keep finding this server where they found the standby."""
    leadership = store.leadership()
    if leadership is None:
        return opts.listen
    check_market_id(store, admin_address)  # a misconfigured standby refuses now, not at takeover

    def bind(server: grpc.aio.Server, listen: str) -> int:
        return _bind(server, listen, credentials)

    port, term = await stand_by(
        leadership,
        opts.listen,
        bind,
        poll_s=max(opts.leader_lease_s / 6, 0.05),
        on_listening=lambda bound: _write_port_file(opts, bound),
        defer_s=opts.leader_lease_s if opts.deposed else 0.0,
    )
    log.info("leading", extra=fields(store=store.describe(), term=term))
    claim_market_id(store, admin_address)
    if port == 0:
        return opts.listen
    host, _ = split_listen(opts.listen)
    return f"{host}:{port}"


def store_term(store: MarketStore) -> int | None:
    leadership = store.leadership()
    return None if leadership is None else leadership.term


@dataclass
class _Keeper:
    """Renews a shared store's lease from the moment this server leads (keep_leading); told of
    a deposal before the app is loaded, it passes it on once it is."""

    app: MarketApp | None = None
    deposed: Deposed | None = None
    task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, store: MarketStore, lease_s: float) -> _Keeper | None:
        leadership = store.leadership()
        if leadership is None:
            return None
        keeper = cls()
        keeper.task = asyncio.create_task(keep_leading(leadership, lease_s, keeper.step_down))
        return keeper

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def step_down(self, exc: Deposed) -> None:
        if self.app is None:
            self.deposed = exc
        else:
            _step_down(self.app, exc)

    def serve(self, app: MarketApp) -> None:
        self.app = app
        if self.deposed is not None:
            _step_down(app, self.deposed)


def _step_down(app: MarketApp, exc: Deposed) -> None:
    """This server no longer leads: stop serving (the standby that leads now serves)."""
    log.error("deposed, stepping down: %s; this server commits nothing more", exc)
    if app.failure is None:
        app.failure = exc
    if app.on_fatal is not None:
        app.on_fatal(exc)


def _write_port_file(opts: ServeOptions, port: int) -> None:
    if opts.port_file is None:
        return
    host, _ = split_listen(opts.listen)
    tmp = opts.port_file.with_suffix(".tmp")
    tmp.write_text(f"{host}:{port}\n")
    tmp.replace(opts.port_file)  # atomic: a reader never sees half an address


def _observe(
    app: MarketApp, opts: ServeOptions, undo: contextlib.AsyncExitStack
) -> tuple[Observability, str | None]:
    """The market's logs and metrics, and /metrics served when asked (before gRPC binds, so a
    refused metrics address leaves nothing bound). Returns it and the bound metrics address."""
    observability = Observability(app.market.state, app.clock)
    undo.callback(observability.close)
    app.observers.append(observability.observer)
    if opts.metrics_listen is None:
        return observability, None
    return observability, observability.serve_metrics(*split_metrics_listen(opts.metrics_listen))


def _grpc_server(
    app: MarketApp, observability: Observability
) -> tuple[grpc.aio.Server, health_aio.HealthServicer, list[str]]:
    """The server with the market's services, health and reflection; not bound yet."""
    # innermost: RequestDecoding (undecodable requests are refused before they are counted)
    interceptors = [observability.interceptor, RequestDecoding()]
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
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
    return server, health_servicer, names


def _bind(server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None) -> int:
    """The bound port, or 0 when gRPC cannot bind (it raises or returns 0, by version)."""
    try:
        if credentials is None:
            return server.add_insecure_port(listen)
        return server.add_secure_port(listen, credentials)
    except RuntimeError:
        return 0


def _transport(opts: ServeOptions) -> str:
    if opts.tls_client_ca:
        return "TLS, client certificates required"
    return "TLS" if opts.tls_cert else "plaintext"


async def serve_forever(opts: ServeOptions, say: Callable[[str], None]) -> None:
    """`gpumarket market serve`: run until SIGINT/SIGTERM, then stop cleanly. On a shared
    store, a leader that is deposed stands by again, on the same address."""
    sys.setswitchinterval(GIL_SWITCH_S)
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, signalled.set)
    running = await _start_unless_stopped(opts, signalled)
    while running is not None:
        await _serve(running, opts, say, signalled)
        failure = running.app.failure
        if not isinstance(failure, Deposed) or signalled.is_set():
            if failure is not None and not isinstance(failure, Deposed):
                raise SystemExit(f"stopped: cannot store the market's state: {failure}")
            return
        say(f"stepped down: {failure}; standing by for the leader")
        gc.unfreeze()  # the deposed state is garbage now
        # on the address clients know it by
        opts = dataclasses.replace(opts, listen=running.address, deposed=True)
        running = await _stand_by_again(opts, signalled)
    say("stopped while standing by")


async def _serve(
    running: Running, opts: ServeOptions, say: Callable[[str], None], signalled: asyncio.Event
) -> None:
    """Serve until a signal or a fatal failure (the store refused, or this server was deposed),
    then stop cleanly."""
    # The loaded state is long-lived: keep the collector from re-scanning it, and collect the
    # old generation rarely, so a full collection does not stall awards for tens of ms.
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    fatal = asyncio.Event()
    running.app.on_fatal = lambda exc: fatal.set()
    if running.app.failure is not None:  # deposed while it loaded
        fatal.set()
    state = running.app.market.state
    say(f"marketplace listening on {running.address} ({_transport(opts)})")
    say(f"data dir: {running.data_dir}")
    say(f"store: {running.app.store.describe()}{_term_note(running.app.store)}")
    if running.metrics_address is not None:
        say(f"metrics: http://{running.metrics_address}/metrics")
    note = " (new)" if running.admin_created else ""
    say(f"admin (faucet) address: {running.admin.address}{note}")
    say(
        f"state: {len(state.deployments)} open deployments of {state.next_deployment - 1}, "
        f"{state.next_ledger_id - 1} ledger entries, {len(state.providers)} providers"
    )
    waits = [asyncio.create_task(signalled.wait()), asyncio.create_task(fatal.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    say("stopping: writing what is queued")
    await running.stop()


async def _stand_by_again(opts: ServeOptions, signalled: asyncio.Event) -> Running | None:
    """Start again after a deposal, waiting out a database that is away (as a standby would)."""
    while not signalled.is_set():
        try:
            return await _start_unless_stopped(opts, signalled)
        except StoreUnreachable as exc:
            log.warning("standing by: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signalled.wait(), max(opts.leader_lease_s / 6, 0.05))
    return None


def _term_note(store: MarketStore) -> str:
    term = store_term(store)
    return "" if term is None else f" (leading, term {term})"


async def _start_unless_stopped(opts: ServeOptions, stop: asyncio.Event) -> Running | None:
    """start(), which on a shared store stands by first; None when stopped before it led."""
    starting = asyncio.create_task(start(opts))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return None
    return starting.result()
