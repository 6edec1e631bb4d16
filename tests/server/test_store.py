"""Persistence contract: what MarketService drained into SQLite loads back as the same state."""

from __future__ import annotations

from pathlib import Path

from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import parse_manifest
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.state import Endpoint, LeaseState, Offer
from marketplace.server.store import Store, StoredLogLine, changes_batch, logs_batch
from marketplace.server.store_api import MarketStore

GIB = 1024**3
SDL = b"""
version: "2.0"
services:
  train:
    image: gpumarket/busybox:latest
    expose:
      - port: 8080
        to:
          - global: true
profiles:
  compute:
    train:
      resources:
        cpu: {units: 2}
        memory: {size: 4Gi}
        storage: {size: 10Gi}
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
                  ram: 80Gi
  placement:
    dc:
      attributes: {region: eu}
      pricing:
        train: {denom: uact, amount: 5000}
deployment:
  train:
    dc: {profile: train, count: 1}
gpumarket:
  kind: training
  restart: on-failure
  auction: {bid_window: 1s, payment: second-price}
"""


def capacity(prefix: str) -> Capacity:
    gpus = tuple(GpuDevice(f"{prefix}-{i}", GpuVariant("h100", 80, "sxm")) for i in range(4))
    return Capacity(64_000, 256 * GIB, 2000 * GIB, gpus)


def run_scenario(market: MarketService, clock: ManualClock, store: MarketStore) -> None:
    """Deployments, bids, declines, a lease that runs, one that fails and re-orders, a close."""

    def commit() -> None:  # as the server does: write a drain, then tell the market it is stored
        store.write(changes_batch(market.drain_changes()))
        market.committed(market.drains)

    manifest = parse_manifest(SDL)
    market.fund("admin", "alice", 1_000 * money.MICRO)
    commit()
    for name in ("p1", "p2", "p3"):
        market.register_provider(name, f"https://{name}", {"region": "eu"}, capacity(name), "eu")
        commit()
    dep_ids = []
    for _ in range(2):
        dep = market.create_deployment(
            "alice", manifest.groups, manifest.job, SDL, manifest.sdl_sha256, b"signed", 50_000_000
        )
        dep_ids.append(dep.id)
        commit()
    for dep_id in dep_ids:
        order_id = market.get_deployment(dep_id).group_orders[0]
        for name, price in (("p1", 2_500_000), ("p2", 2_000_000)):
            market.place_bid(name, order_id, price, Offer(("h100-80gb-sxm",), (f"{name}-0",)))
            commit()
        market.decline_order("p3", order_id, "busy")
        commit()
    clock.advance(1_500)
    market.tick()
    commit()
    leases = market.list_leases(owner="alice")
    assert len(leases) == 2
    market.report_status(leases[0].provider, leases[0].id, True, endpoints=[Endpoint("train", 80)])
    commit()
    clock.advance(20_000)
    for name in ("p1", "p2", "p3"):
        market.heartbeat(name, [x.id for x in leases if x.provider == name])
        commit()
    market.report_status(leases[1].provider, leases[1].id, True)
    clock.advance(10_000)
    market.report_status(leases[1].provider, leases[1].id, False, exited=True, exit_code=3)
    commit()
    market.settle_all()
    commit()


def test_reloaded_state_equals_the_state_before(tmp_path: Path) -> None:
    clock = ManualClock(1_700_000_000_000)
    store = Store(tmp_path / "market.db")
    market = MarketService(clock, MarketConfig(admin_address="admin"), archive=store)
    run_scenario(market, clock, store)
    assert any(x.state == LeaseState.RUNNING for x in market.state.leases.values())
    assert market.ledger_entries() and market.state.declines and market.state.provider_events

    reopened = Store(tmp_path / "market.db")
    loaded = reopened.load()
    assert loaded == market.state
    # a market rebuilt on the loaded state carries on: books balance, the re-order is open
    again = MarketService(clock, MarketConfig(admin_address="admin"), loaded, reopened)
    assert again.audit().balanced
    # events come back with the records they name (the store keeps only the ids)
    assert all(e.order is loaded.orders[e.order_id] for e in loaded.provider_events)
    assert all(e.lease is loaded.leases.get(e.lease_id) for e in loaded.provider_events)
    assert again.list_orders(open_only=True)


def test_logs_keep_order_and_tail(tmp_path: Path) -> None:
    store = Store(tmp_path / "market.db")
    lines = [StoredLogLine("L1", i, 1000 + i, "stdout", f"line {i}") for i in range(1, 11)]
    store.write(logs_batch(lines))
    assert [x.line for x in store.logs("L1", tail=3)] == ["line 8", "line 9", "line 10"]
    assert [x.seq for x in store.logs("L1", after_seq=8)] == [9, 10]
    assert store.last_log_seqs() == {"L1": 10}
