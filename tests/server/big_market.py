"""A real marketplace with a long history, built fast: thousands of closed deployments (each with
its order, bids, lease, events and ledger entries) made through the app's own command path
(MarketApp.run, so they are committed to SQLite and leave memory as in a long-running market),
not through thousands of RPCs. For the event-loop tests (test_loop.py) and bench/bench_loop.py.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.core import money
from marketplace.core.manifest import parse_manifest
from marketplace.core.price_advice import DAY_MS
from marketplace.core.state import Offer
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.helpers import funded_tenant, registered_provider

CHUNK = 500  # deployments per committed command (one transaction each)


@dataclass
class BigMarket:
    tenant: TenantClient
    providers: list[ProviderClient]
    closed: int


def build_history(
    server: ServerThread, deployments: int, providers: int = 2, tenant: TenantClient | None = None
) -> BigMarket:
    """`deployments` closed deployments of one tenant (a new one unless given), each leased to
    one of `providers` (after every provider bid on it), all committed; returns the parties'
    clients."""
    tenant = tenant or funded_tenant(server.address, server.admin, 10**12)
    bidders = [registered_provider(server.address, f"big{i}") for i in range(providers)]
    sdl = gpu_sdl(bid_window="5m", extra=", manual: true")
    manifest = parse_manifest(sdl, "manifest")
    assert tenant.key is not None and all(p.key is not None for p in bidders)
    app, owner = server.app, tenant.key.address
    addresses = [p.key.address for p in bidders if p.key is not None]

    def chunk(start: int, count: int) -> int:
        market = app.market
        for i in range(start, start + count):
            dep = market.create_deployment(
                owner, manifest.groups, manifest.job, sdl, manifest.sdl_sha256, b"", money.MICRO
            )
            order_id = dep.order_ids[0]
            bids = [
                market.place_bid(a, order_id, 1_000 + j, Offer(price_per_gpu_hour=1_000 + j))
                for j, a in enumerate(addresses)
            ]
            market.accept_bid(owner, bids[i % len(bids)].id)
            market.close_deployment(owner, dep.id)
        return count

    done = 0
    while done < deployments:
        count = min(CHUNK, deployments - done)
        future = asyncio.run_coroutine_threadsafe(
            app.run(functools.partial(chunk, done, count), int), server.loop
        )
        done += future.result(300)
    return BigMarket(tenant, bidders, done)


# --- latency under load: probes beside hammered reads -----------------------------------------


@dataclass
class Latency:
    """What the probes saw in one phase (milliseconds), and how many heavy reads were served."""

    health_p50: float
    health_p99: float
    bid_p50: float
    bid_p99: float
    reads: int
    probes: int


def _p(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1] * 1000


class _Repeat(threading.Thread):
    """Runs `step` until stopped; keeps the first thing it raised."""

    def __init__(self, step: Callable[[], object], pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.step, self.pause = step, pause
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.count = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
                self.count += 1
            except BaseException as exc:  # kept for the caller to raise
                self.failure = self.failure or exc
            self.stopping.wait(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(120)


class Probes:
    """A gRPC health check and a small signed bid (placed, then withdrawn), each timed."""

    def __init__(self, address: str, bidder: ProviderClient, order_id: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.bidder, self.order_id = bidder, order_id
        self.health_ms: list[float] = []
        self.bid_ms: list[float] = []

    def check_health(self) -> None:
        started = time.perf_counter()
        reply = self.health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        self.health_ms.append(time.perf_counter() - started)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def bid(self) -> None:
        started = time.perf_counter()
        bid = self.bidder.place_bid(self.order_id, 1_000)
        self.bid_ms.append(time.perf_counter() - started)
        self.bidder.withdraw_bid(bid.id)

    def close(self) -> None:
        self.channel.close()


def open_order(big: BigMarket) -> str:
    """An open order (manual award, long window) for the bid probe."""
    sdl = gpu_sdl(bid_window="5m", extra=", manual: true")
    return big.tenant.create_deployment(sdl, money.MICRO).order_ids[0]


def under_load(
    address: str,
    bidder: ProviderClient,
    order_id: str,
    read: Callable[[], object] | None,
    seconds: float,
    hammers: int = 2,
) -> Latency:
    """The probes' latency for `seconds` while `hammers` threads call `read` back to back."""
    probes = Probes(address, bidder, order_id)
    loads = [_Repeat(read) for _ in range(hammers)] if read is not None else []
    for load in loads:
        load.start()
    bidder.heartbeat([])  # online (the market may have just restarted)
    alive = _Repeat(lambda: bidder.heartbeat([]), 1.0)
    checks = [_Repeat(probes.check_health, 0.02), _Repeat(probes.bid, 0.05), alive]
    for check in checks:
        check.start()
    time.sleep(seconds)  # a measuring window: the probes run meanwhile
    for thread in [*checks, *loads]:
        thread.stop()
    probes.close()
    for thread in [*checks, *loads]:
        if thread.failure is not None:
            raise thread.failure
    return Latency(
        _p(probes.health_ms, 50),
        _p(probes.health_ms, 99),
        _p(probes.bid_ms, 50),
        _p(probes.bid_ms, 99),
        sum(load.count for load in loads),
        len(probes.health_ms),
    )


def heavy_reads(address: str, admin: Key, big: BigMarket) -> dict[str, Callable[[], object]]:
    """Every read whose work grows with the market's history, as one call each."""
    tenant, provider = big.tenant, big.providers[0]
    assert provider.key is not None
    as_provider = TenantClient(address, provider.key)
    admin_view = MarketClient(address, admin)
    provider_view = MarketClient(address, provider.key)
    public = MarketClient(address)
    first = tenant.list_deployments(limit=1)[0]
    return {
        "ListDeployments": lambda: tenant.list_deployments(limit=100),
        "ListOrders": lambda: tenant.list_orders(limit=100),
        "ListLeases/tenant": lambda: tenant.list_leases(limit=100),
        "ListLeases/provider": lambda: as_provider.list_leases(limit=100),
        "ListOrders/provider": lambda: as_provider.list_orders(limit=100),
        "ListLedger/admin": lambda: admin_view.ledger(limit=100),
        "Audit": admin_view.audit,
        "PriceAdvice": lambda: provider_view.price_advice(int(time.time() * 1000) - DAY_MS),
        "Stats": public.stats,
        "GetPriceHistory": public.price_history,
        "WatchDeployment/closed": lambda: list(
            tenant.watch_deployment(first.id, history_only=True)
        ),
    }
