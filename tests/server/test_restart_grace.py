"""After a marketplace restart, providers get a heartbeat timeout's grace before being declared
lost: the marketplace, not they, was away. A provider that stays silent is still lost after it,
billed only up to its last heartbeat."""

from __future__ import annotations

import asyncio
from pathlib import Path

from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import parse_manifest
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.state import CloseReason, LeaseState
from marketplace.server.app import MarketApp
from marketplace.server.store import Store, changes_batch
from marketplace.server.testing import gpu_sdl

CONFIG = MarketConfig(admin_address="admin", heartbeat_timeout_ms=30_000)


def _running_lease(tmp_path: Path, clock: ManualClock) -> tuple[str, int]:
    """A market stored in tmp_path whose provider "p" runs a lease for "alice". Returns the
    lease's id and the provider's last heartbeat."""
    store = Store(tmp_path / "market.db")
    market = MarketService(clock, CONFIG)
    manifest = parse_manifest(gpu_sdl(bid_window="1s"))
    gpus = (GpuDevice("GPU-0", GpuVariant("h100", 80, "sxm")),)
    market.fund("admin", "alice", 10 * money.MICRO)
    market.register_provider("p", "https://p", {"region": "eu"}, Capacity(8000, 2**34, 2**40, gpus))
    dep = market.create_deployment(
        "alice", manifest.groups, manifest.job, b"sdl", manifest.sdl_sha256, b"", money.MICRO
    )
    market.place_bid("p", dep.order_ids[0], 100_000)
    clock.advance(1_000)
    market.tick()
    (lease,) = market.list_leases(owner="alice")
    market.report_status("p", lease.id, running=True)
    last_heartbeat = clock.now_ms()
    store.write(changes_batch(market.drain_changes()))
    return lease.id, last_heartbeat


def test_restart_grace_then_lost(tmp_path: Path) -> None:
    clock = ManualClock(1_700_000_000_000)
    lease_id, last_heartbeat = _running_lease(tmp_path, clock)

    clock.advance(10 * 60_000)  # the marketplace was down for ten minutes
    app = MarketApp(Store(tmp_path / "market.db"), CONFIG, clock)
    app.market.tick()
    assert app.market.get_provider("p").online
    assert app.market.get_lease(lease_id).state == LeaseState.RUNNING

    clock.advance(30_001)  # and the provider never came back
    app.market.tick()
    closed = app.market.get_lease(lease_id)
    assert closed.close_reason == CloseReason.PROVIDER_LOST
    assert closed.billed_until_ms == last_heartbeat


def test_the_grace_counts_from_when_the_market_starts_not_from_loading(tmp_path: Path) -> None:
    """A restart that is slow between loading the state and serving (a big state, a loaded box)
    still leaves the agents a whole heartbeat timeout once the market serves."""
    clock = ManualClock(1_700_000_000_000)
    lease_id, _ = _running_lease(tmp_path, clock)
    clock.advance(10 * 60_000)
    app = MarketApp(Store(tmp_path / "market.db"), CONFIG, clock)
    clock.advance(29_000)  # loaded, then 29 s until it serves

    async def started_then_ticked() -> None:
        await app.start()
        try:
            clock.advance(29_000)  # 58 s after loading, 29 s after starting
            app.market.tick()
        finally:
            await app.stop()

    asyncio.run(started_then_ticked())
    assert app.market.get_provider("p").online
    assert app.market.get_lease(lease_id).state == LeaseState.RUNNING
