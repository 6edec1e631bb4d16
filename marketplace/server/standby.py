"""Which store a server opens (`--store`), and, on a store several servers share, standing by
until this one leads and stepping down when it no longer does.

A standby listens on its address from the start, so clients that list it among their
marketplaces find it: its health is NOT_SERVING and every other call fails UNAVAILABLE
("standby: not the leader"), which sends them to the next address. It asks for the lease every
poll; once it leads, the standby server is stopped and the real one is bound to the same port
(serve.py), on the state loaded then, with a fresh heartbeat grace for every provider.

A leader renews its lease every third of it (from the moment it leads, while its state loads
too), and steps down as soon as a renewal fails or is late, which is before any standby may take
the lease: a leader cut off from the database stops before another leads, and one that was
paused finds its term over and its writes refused (store_api.Deposed) when it wakes. A deposed
server stands by again on the same address (serve.py), leaving the lease to the others for one
lease before it asks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import grpc
import grpc.aio
from grpc_health.v1 import _async as health_aio  # = health.aio, which grpc-stubs leaves out
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import FailedPrecondition, InvalidArgument
from marketplace.server.store import DB_NAME, Store
from marketplace.server.store_api import Deposed, Leadership, MarketStore

log = logging.getLogger("gpumarket.market")

DEFAULT_LEASE_S = 3.0  # = store_pg.DEFAULT_LEASE_S, without importing psycopg here
NOT_THE_LEADER = "standby: not the leader"
STORE_FORMS = "sqlite:PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
MARKET_ID_KEY = "market_id"


def open_store(spec: str | None, data_dir: Path, lease_s: float) -> MarketStore:
    """The store `--store` names: market.db in the data dir by default."""
    if not spec:
        return Store(data_dir / DB_NAME)
    if spec.startswith("sqlite:"):
        path = Path(spec.removeprefix("sqlite:")).expanduser()
        if not spec.removeprefix("sqlite:") or path.is_dir():
            raise InvalidArgument(
                f"--store {spec}: name the database file, e.g. sqlite:/srv/market.db"
            )
        return Store(path)
    if spec.startswith(("postgresql://", "postgres://")):
        try:
            from marketplace.server.store_pg import PostgresStore
        except ImportError:
            raise FailedPrecondition(
                "a PostgreSQL store needs psycopg: pip install 'gpumarket[postgresql]'"
            ) from None
        return PostgresStore(spec, lease_s)
    raise InvalidArgument(f"--store {spec!r}: use {STORE_FORMS}")


def sqlite_path(spec: str | None, data_dir: Path) -> Path | None:
    """The SQLite file `--store` names (None for PostgreSQL)."""
    if not spec:
        return data_dir / DB_NAME
    if spec.startswith("sqlite:"):
        return Path(spec.removeprefix("sqlite:")).expanduser()
    return None


def check_market_id(store: MarketStore, admin_address: str) -> None:
    """A shared store holds one market: refuse a server whose admin key names another."""
    held = store.meta(MARKET_ID_KEY)
    if held is not None and held != admin_address:
        raise FailedPrecondition(
            f"{store.describe()} holds the market of admin {held}, not of this server's key "
            f"({admin_address}): pass that market's key with --admin-key on every server"
        )


def claim_market_id(store: MarketStore, admin_address: str) -> None:
    check_market_id(store, admin_address)
    if store.meta(MARKET_ID_KEY) is None:
        store.set_meta(MARKET_ID_KEY, admin_address)


def holder_name(listen: str) -> str:
    return f"{socket.gethostname()} pid {os.getpid()} ({listen})"


class _Refuse(grpc.GenericRpcHandler):
    """Every method but health: UNAVAILABLE, so a client tries its next marketplace."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return grpc.unary_unary_rpc_method_handler(_refuse)


async def _refuse(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> NoReturn:
    await context.abort(grpc.StatusCode.UNAVAILABLE, NOT_THE_LEADER)


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def service_names() -> list[str]:
    services = pb.DESCRIPTOR.services_by_name
    return [services[name].full_name for name in ("Tenant", "Provider", "Market", "Auditor")]


async def stand_by(
    leadership: Leadership,
    listen: str,
    bind: Callable[[grpc.aio.Server, str], int],
    poll_s: float,
    on_listening: Callable[[int], None],
    defer_s: float = 0.0,
) -> tuple[int, int]:
    """Lead at once if no one does; else serve as a standby on `listen` until this server
    leads. Returns (the bound port, 0 when nothing was bound; the term it leads in).
    `defer_s`: stand by that long before asking (a server just deposed leaves the lease to
    the others first, rather than flap)."""
    if not defer_s:
        term = await asyncio.to_thread(leadership.try_lead, holder_name(listen))
        if term is not None:
            return 0, term
    server = grpc.aio.server(options=(("grpc.so_reuseport", 0),))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_generic_rpc_handlers([_Refuse()])
    port = bind(server, listen)
    if port == 0:
        raise InvalidArgument(f"cannot listen on {listen}")
    try:
        for name in ("", *service_names()):  # before any client can ask
            await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        on_listening(port)
        bound = f"{listen.rpartition(':')[0]}:{port}"
        leader = await asyncio.to_thread(leadership.leader)  # reachable: try_lead just answered
        log.info("standing by: %s; asking for the lease every %.1f s", leader, poll_s)
        await asyncio.sleep(defer_s)
        while True:
            try:
                term = await asyncio.to_thread(leadership.try_lead, holder_name(bound))
            except Exception as exc:  # the database is away: stand by for it too
                log.warning("standing by: cannot ask for the lease: %s", one_line(exc))
                term = None
            if term is not None:
                return port, term
            await asyncio.sleep(poll_s)
    finally:
        await server.stop(0)


async def keep_leading(
    leadership: Leadership, lease_s: float, step_down: Callable[[Deposed], None]
) -> None:
    """Renew the lease every third of it; on a refused or late renewal, step down before any
    standby may take the lease (a renewal may take at most half of it)."""
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            await asyncio.wait_for(asyncio.to_thread(leadership.renew), lease_s / 2)
        except Deposed as exc:
            step_down(exc)
            return
        except TimeoutError:
            step_down(Deposed(f"the lease was not renewed within {lease_s / 2:.1f} s"))
            return
        except Exception as exc:  # the database is out of reach: no lease, no writes
            step_down(Deposed(f"cannot renew the lease: {exc}"))
            return
