"""Memory does not grow with history: closed records leave memory and are read from the store.

A real `gpumarket market serve` subprocess on a real SQLite file takes 300 deployments, each with
a ~500 KB SDL, each leased and closed. Its resident memory (VmRSS) after the first 50 must grow
by less than a bound that is far below what keeping the SDLs and signed requests would take
(~1 MiB a deployment); every closed deployment, order, lease and ledger entry must still be
readable over the API, before and after a restart, and the books must balance (measured: +253 MiB
before closed records left memory, +2 to +5 MiB after).

Faster, on MarketService and a real SQLite store: every read answers the same once a closed
deployment's records, its ledger entries and every SDL left memory, in the same market and in one
loaded again; the audit still replays the whole stored ledger.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import FailedPrecondition
from marketplace.core.events import DeploymentEventKind
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.state import DeploymentState, acct_key
from marketplace.identity import Key
from marketplace.server.serve import ADMIN_KEY_FILE
from marketplace.server.store import Store, changes_batch
from marketplace.server.testing import gpu_sdl
from tests.helpers import registered_provider
from tests.server.market_process import MarketProcess
from tests.server.test_store import SDL, run_scenario

DEPLOYMENTS = 300
WARMUP = 50
SDL_PAD = 500 * 1024
RSS_BOUND_MIB = 60


def big_sdl(n: int) -> bytes:
    """gpu_sdl (manual auction) with one ~500 KB environment variable, different for each n."""
    sdl = gpu_sdl(extra=", manual: true").decode()
    pad = f"{n:06d}" + "x" * SDL_PAD
    service = "    image: gpumarket/busybox:latest\n"
    return sdl.replace(service, f'{service}    env:\n      - "PAD={pad}"\n', 1).encode()


def every_read(market: MarketService) -> dict[str, object]:
    """What every query answers about alice's deployments (events with the records they carry)."""
    deps = market.list_deployments("alice")
    orders = market.list_orders()
    events = {
        d.id: [(e, e.order, e.bid, e.lease) for e in market.deployment_events_after(d.id)]
        for d in deps
    }
    return {
        "deployments": [market.get_deployment(d.id) for d in deps],
        "all deployments": market.list_deployments(),
        "open": market.list_deployments(open_only=True),
        "orders": orders,
        "orders of": [market.list_orders(deployment_id=d.id) for d in deps],
        "order": [market.get_order(o.id) for o in orders],
        "bids": [market.list_bids(o.id) for o in orders],
        "bid": [market.get_bid(b.id) for o in orders for b in market.list_bids(o.id)],
        "explain": [market.explain_order(o.id) for o in orders],
        "leases": market.list_leases(owner="alice"),
        "leases of p1": market.list_leases(provider="p1"),
        "leases of": [market.list_leases(deployment_id=d.id) for d in deps],
        "lease": [market.get_lease(x.id) for x in market.list_leases()],
        "events": events,
        "prices": market.price_stats(),
        "audit": market.audit(),
        "ledger": market.ledger_entries(),
        "alice's last 3": market.ledger_entries(acct_key("alice"), 3),
        "alice": (market.get_account("alice"), market.escrowed("alice")),
    }


def test_reads_answer_the_same_once_closed_records_left_memory(tmp_path: Path) -> None:
    """The core lets a closed deployment go once the store has it, and every read answers as
    before, from the archive: in the same market and in one loaded again from the store."""
    clock = ManualClock(1_700_000_000_000)
    config = MarketConfig(admin_address="admin")
    store = Store(tmp_path / "market.db")
    market = MarketService(clock, config, archive=store)
    run_scenario(market, clock, store)
    dep_ids = [d.id for d in market.list_deployments("alice")]
    assert all(not market.get_deployment(d).sdl for d in dep_ids)  # stored: out of memory
    for dep_id in dep_ids:
        market.close_deployment("alice", dep_id)
    store.write(changes_batch(market.drain_changes()))
    before = copy.deepcopy(every_read(market))
    assert market.state.deployments and market.state.leases  # not gone before it is stored

    market.committed(market.drains)
    st = market.state
    assert not (st.deployments or st.orders or st.bids or st.leases or st.declines)
    assert not st.deployment_events and not st.ledger
    assert every_read(market) == before
    assert market.list_deployments("alice")[0].state == DeploymentState.CLOSED
    again = MarketService(clock, config, store.load(), store)
    assert not again.state.deployments
    assert every_read(again) == before

    # what is closed takes no command, and nothing of it comes back into memory
    order_id = market.get_deployment(dep_ids[0]).order_ids[0]
    with pytest.raises(FailedPrecondition):
        market.decline_order("p3", order_id, "too late")
    with pytest.raises(FailedPrecondition):
        market.accept_bid("alice", market.list_bids(order_id)[0].id)
    assert not (st.deployments or st.orders or st.declines or market.drain_changes().declines)


def test_the_audit_replays_the_stored_ledger(tmp_path: Path) -> None:
    """The ledger left memory, and the audit still replays every entry: from the store."""
    clock = ManualClock(1_700_000_000_000)
    store = Store(tmp_path / "market.db")
    market = MarketService(clock, MarketConfig(admin_address="admin"), archive=store)
    run_scenario(market, clock, store)
    assert not market.state.ledger
    report = market.audit()
    assert report.balanced and report.entries == market.state.next_ledger_id - 1 == 5
    with contextlib.closing(sqlite3.connect(store.path)) as db, db:
        db.execute("UPDATE ledger SET amount = amount + 1 WHERE id = 1")  # the faucet's mint
    report = market.audit()
    assert not report.balanced
    assert any(p.startswith("ledger mints") for p in report.problems), report.problems


def test_the_manifest_is_read_from_the_store_once_stored(tmp_path: Path) -> None:
    clock = ManualClock(1_700_000_000_000)
    store = Store(tmp_path / "market.db")
    market = MarketService(clock, MarketConfig(admin_address="admin"), archive=store)
    run_scenario(market, clock, store)
    lease = market.list_leases(owner="alice", open_only=True)[0]
    dep, _ = market.manifest_for(lease.provider, lease.id)
    assert (dep.sdl, dep.tenant_request) == (SDL, b"signed")
    assert not market.get_deployment(dep.id).sdl  # the one in memory holds no copy


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MarketProcess]:
    proc = MarketProcess.start(tmp_path / "market")
    try:
        yield proc
    finally:
        proc.stop()


def lease_and_close(
    tenant: TenantClient, provider: ProviderClient, n: int
) -> tuple[pb.Deployment, pb.Lease]:
    dep = tenant.create_deployment(big_sdl(n), money.MICRO)
    bid = provider.place_bid(dep.order_ids[0], 500_000)
    lease = tenant.accept_bid(bid.id)
    if n % 25 == 0:  # the provider reads the manifest while the lease is open
        assert provider.get_manifest(lease.id).sdl == big_sdl(n)
    tenant.close_deployment(dep.id)
    return dep, lease


def check_readable(
    address: str, keys: tuple[Key, Key], deps: list[pb.Deployment], leases: list[pb.Lease]
) -> None:
    """Everything the tenant (keys[0]) owns reads back; the admin (keys[1]) audits the books."""
    tenant_key, admin_key = keys
    owner = tenant_key.address
    tenant = TenantClient(address, tenant_key)
    for dep in deps:
        got = tenant.get_deployment(dep.id)
        assert (got.id, got.state) == (dep.id, pb.DEPLOYMENT_CLOSED)
    listed = tenant.list_deployments(owner)
    assert [d.id for d in listed] == [d.id for d in deps]
    for lease in leases:
        got_lease = tenant.get_lease(lease.id)
        assert (got_lease.id, got_lease.state) == (lease.id, pb.LEASE_CLOSED)
    assert len(tenant.list_leases(owner)) == len(leases)
    order = tenant.get_order(deps[0].order_ids[0])
    assert order.state == pb.ORDER_CLOSED
    assert [b.id for b in tenant.list_bids(order.id)] == [leases[0].id]
    assert "closed" in tenant.explain_order(order.id).summary
    kinds = [e.kind for e in tenant.watch_deployment(deps[0].id)]
    assert kinds[0] == DeploymentEventKind.DEPLOYMENT_CREATED
    assert kinds[-1] == DeploymentEventKind.DEPLOYMENT_CLOSED
    with MarketClient(address, admin_key) as market:
        entries = market.ledger(owner)
        # per deployment: the deposit and the refund
        assert len(entries) == 1 + 2 * len(deps)
        assert market.audit().balanced


@pytest.mark.slow
def test_closed_deployments_leave_memory_and_stay_readable(server: MarketProcess) -> None:
    admin_key = Key.from_pem((server.data_dir / ADMIN_KEY_FILE).read_bytes())
    admin = TenantClient(server.address, admin_key)
    tenant_key = Key.generate()
    admin.fund(tenant_key.address, 10_000 * money.MICRO)
    tenant = TenantClient(server.address, tenant_key)
    provider = registered_provider(server.address, "p1")
    pid = server.pid
    deps: list[pb.Deployment] = []
    leases: list[pb.Lease] = []
    for n in range(DEPLOYMENTS):
        if n == WARMUP:
            after_warmup = rss_mib(pid)
        dep, lease = lease_and_close(tenant, provider, n)
        deps.append(dep)
        leases.append(lease)
    grown = rss_mib(pid) - after_warmup
    print(
        f"server RSS after {WARMUP}: {after_warmup:.1f} MiB, after {DEPLOYMENTS}: +{grown:.1f} MiB"
    )
    if os.environ.get("GPUMARKET_MEMORY_MEASURE_ONLY"):
        return
    assert grown < RSS_BOUND_MIB, f"server RSS grew {grown:.1f} MiB over {DEPLOYMENTS - WARMUP}"
    check_readable(server.address, (tenant_key, admin_key), deps, leases)

    server.stop()
    server.restart()
    check_readable(server.address, (tenant_key, admin_key), deps, leases)
