"""How fast MarketService runs a simulator-sized workload (simulator config: no journal/events).

    python bench/bench_core_market.py [deployments] [providers] [bids per order]

Each deployment asks for one H100 for ~1 h; `bids` random providers bid; the window closes; the
winner reports running, the job completes. Prints commands per second and µs per deployment.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time

from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import MarketError
from marketplace.core.gpus import GpuVariant
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.resources import (
    AuctionSettings,
    GpuOption,
    GpuRequest,
    GroupSpec,
    JobKind,
    JobSettings,
    PlacementRequirements,
    ResourceUnit,
)

GIB = 1024**3


def main() -> None:
    n_deps = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    n_prov = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000
    n_bids = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    rng = random.Random(1)
    clock = ManualClock(0)
    config = MarketConfig(
        admin_address="admin",
        journal=False,
        record_events=False,
        keep_ledger=False,
        retain_closed=False,
        heartbeat_timeout_ms=10**15,  # the bench sends no heartbeats
    )
    market = MarketService(clock, config)
    h100 = GpuVariant("h100", 80, "sxm")
    providers = [f"p{i}" for i in range(n_prov)]
    for p in providers:
        gpus = tuple(GpuDevice(f"{p}-{g}", h100) for g in range(8))
        market.register_provider(p, "", {}, Capacity(128_000, 1024 * GIB, 10_000 * GIB, gpus))
    market.fund("admin", "tenant", 10**18)
    unit = ResourceUnit(
        ("w",), 1, 4000, 16 * GIB, (), GpuRequest(1, (GpuOption("h100"),)), 4 * money.MICRO
    )
    group = GroupSpec("g", PlacementRequirements(), (unit,))
    job = JobSettings(kind=JobKind.TRAINING, auction=AuctionSettings(bid_window_ms=5_000))
    running: list[tuple[int, str, str]] = []  # (end ms, provider, lease)
    awaiting: list[str] = []  # orders whose window has not closed yet
    commands = 0
    start = time.perf_counter()
    for i in range(n_deps):
        clock.advance(rng.randint(1, 200))
        while running and running[0][0] <= clock.now_ms():
            _, prov, lease_id = running.pop(0)
            market.report_status(prov, lease_id, False, True, 0)
            commands += 1
        dep = market.create_deployment("tenant", [group], job, b"", b"", b"", 10 * money.MICRO)
        commands += 1
        order_id = dep.group_orders[0]
        for p in rng.sample(providers, n_bids):
            with contextlib.suppress(MarketError):
                market.place_bid(p, order_id, rng.randint(1, 4) * money.MICRO)
            commands += 1
        awaiting.append(order_id)
        if i % 25 == 0:  # windows close; winners start
            clock.advance(5_000)
            market.tick()
            for lease in [x for leases in market._prov_leases.values() for x in leases.values()]:
                if not lease.started:
                    market.report_status(lease.provider, lease.id, True)
                    running.append(
                        (clock.now_ms() + rng.randint(600_000, 7_200_000), lease.provider, lease.id)
                    )
                    commands += 1
            running.sort()
    elapsed = time.perf_counter() - start
    print(f"{n_deps} deployments, {n_prov} providers, {n_bids} bids each: {elapsed:.2f} s")
    print(f"{commands / elapsed:,.0f} commands/s, {elapsed / n_deps * 1e6:,.0f} µs per deployment")
    print(
        f"projected 1M deployments: {elapsed / n_deps * 1e6:,.0f} s; audit: {market.audit().balanced}"
    )


if __name__ == "__main__":
    main()
