"""The marketplace over real gRPC (port 0) and a real SQLite file: a deployment from bids to
settlement, as a tenant and two providers see it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import money
from marketplace.core.errors import (
    FailedPrecondition,
    Ineligible,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
)
from marketplace.core.events import DeploymentEventKind
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, h100_inventory

UNITS = money.MICRO


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path / "market") as running:
        yield running


def tenant(server: ServerThread, amount: int = 100 * UNITS) -> TenantClient:
    key = Key.generate()
    TenantClient(server.address, server.admin).fund(key.address, amount)
    return TenantClient(server.address, key)


def provider(server: ServerThread, name: str, region: str = "eu") -> ProviderClient:
    client = ProviderClient(server.address, Key.generate())
    client.register(
        pb.RegisterProvider(
            host_uri=f"https://{name}.example",
            attributes=[pb.Attribute(key="region", value=region)],
            inventory=h100_inventory(name),
            region=region,
            version="test",
        )
    )
    return client


def address(client: ProviderClient) -> str:
    assert client.key is not None
    return client.key.address


def wait_for(
    client: TenantClient, deployment_id: str, kind: DeploymentEventKind
) -> pb.DeploymentEvent:
    """The first event of `kind` (replayed or live): awaited on the stream, never slept for."""
    for event in client.watch_deployment(deployment_id):
        if event.kind == kind:
            return event
    raise AssertionError(f"deployment {deployment_id} closed without a {kind} event")


def test_deploy_bid_lease_run_complete_settle(server: ServerThread) -> None:
    alice = tenant(server)
    cheap, dear = provider(server, "cheap"), provider(server, "dear")
    dep = alice.create_deployment(gpu_sdl(), deposit=10 * UNITS)
    assert dep.state == pb.DEPLOYMENT_ACTIVE and len(dep.order_ids) == 1
    order_id = dep.order_ids[0]
    assert alice.get_account().balance == 90 * UNITS

    cheap.place_bid(order_id, 1_000_000)
    dear.place_bid(order_id, 2_000_000)
    # sealed while the window is open: each bidder reads its own bid
    for bidder, price in ((cheap, 1_000_000), (dear, 2_000_000)):
        own = TenantClient(server.address, bidder.key).list_bids(order_id)
        assert [(b.provider, b.price_per_hour) for b in own] == [(address(bidder), price)]

    created = wait_for(alice, dep.id, DeploymentEventKind.LEASE_CREATED)
    assert [b.price_per_hour for b in alice.list_bids(order_id)] == [1_000_000, 2_000_000]
    assert created.lease.id == created.lease_id  # the event carries the lease it names
    lease_id = created.lease_id
    lease = alice.get_lease(lease_id)
    assert lease.provider == address(cheap) and lease.price_per_hour == 1_000_000
    assert created.lease.provider == lease.provider
    assert {b.provider: b.state for b in alice.list_bids(order_id)} == {
        address(cheap): pb.BID_WON,
        address(dear): pb.BID_LOST,
    }

    # the manifest goes to the winner only, with the tenant's own signed request
    manifest = cheap.get_manifest(lease_id)
    assert manifest.sdl == gpu_sdl() and manifest.group_name == "dc"
    signed = pb.CreateDeployment.FromString(manifest.tenant_request.payload)
    assert signed.sdl == gpu_sdl()
    with pytest.raises(NotFound):  # another's lease reads as a missing one
        dear.get_manifest(lease_id)

    running = cheap.report_status(
        pb.LeaseStatusReport(
            lease_id=lease_id,
            state=pb.LEASE_RUNNING,
            endpoints=[
                pb.Endpoint(service="train", port=8080, host="cheap.example", external_port=31000)
            ],
        )
    )
    assert running.state == pb.LEASE_RUNNING
    assert alice.get_lease(lease_id).endpoints[0].external_port == 31000

    cheap.report_logs(lease_id, [pb.LogLine(stream="stdout", line=f"step {i}") for i in range(5)])
    assert [x.line for x in alice.stream_logs(lease_id, tail=2)] == ["step 3", "step 4"]

    done = cheap.report_status(
        pb.LeaseStatusReport(lease_id=lease_id, state=pb.LEASE_CLOSED, exited=True, exit_code=0)
    )
    assert done.state == pb.LEASE_CLOSED and done.close_reason == pb.COMPLETED
    # settlement is exact: the provider got the accrual over the running time, the rest came back
    owed = money.accrued(done.price_per_hour, done.closed_at_ms - done.running_at_ms)
    assert done.paid == owed
    assert cheap_balance(server, cheap) == owed
    assert alice.get_deployment(dep.id).state == pb.DEPLOYMENT_CLOSED
    assert alice.get_account().balance == 100 * UNITS - owed
    assert MarketClient(server.address, server.admin).audit().balanced

    # a follower of a closed lease's logs gets everything and ends
    assert len(list(alice.stream_logs(lease_id, follow=True))) == 5


def cheap_balance(server: ServerThread, client: ProviderClient) -> int:
    assert client.key is not None
    return TenantClient(server.address, client.key).get_account().balance


def test_logs_follow_sees_lines_as_they_come(server: ServerThread) -> None:
    alice = tenant(server)
    prov = provider(server, "p")
    dep = alice.create_deployment(gpu_sdl(bid_window="100ms"), deposit=UNITS)
    prov.place_bid(dep.order_ids[0], 500_000)
    lease_id = wait_for(alice, dep.id, DeploymentEventKind.LEASE_CREATED).lease_id
    prov.report_logs(lease_id, [pb.LogLine(line="first")])
    follow = alice.stream_logs(lease_id, follow=True)
    assert next(follow).line == "first"
    prov.report_logs(lease_id, [pb.LogLine(line="second")])
    assert next(follow).line == "second"
    alice.close_lease(lease_id)
    assert list(follow) == []  # the stream ends with the lease


def test_provider_stream_replays_and_carries_lease_won(server: ServerThread) -> None:
    alice = tenant(server)
    prov = provider(server, "p")
    first = alice.create_deployment(gpu_sdl(bid_window="5s"), deposit=UNITS)
    events = prov.watch_orders(0)
    opened = next(events)
    assert opened.WhichOneof("event") == "order_opened"
    assert opened.order_opened.id == first.order_ids[0]
    token = opened.seq
    assert token > 0

    second = alice.create_deployment(gpu_sdl(bid_window="100ms"), deposit=UNITS)
    live = next(events)
    assert live.order_opened.id == second.order_ids[0] and live.seq > token
    prov.place_bid(second.order_ids[0], 700_000)
    won = next(e for e in events if e.WhichOneof("event") == "lease_won")
    assert won.lease_won.order_id == second.order_ids[0]
    assert won.lease_won.price_per_hour == 700_000

    # resuming from a token replays exactly what came after it
    replay = prov.watch_orders(token)
    kinds = [next(replay).WhichOneof("event") for _ in range(3)]
    assert kinds[0] == "order_opened" and "lease_won" in kinds


def test_why_lists_declines_and_ineligible_bids(server: ServerThread) -> None:
    alice = tenant(server)
    far = provider(server, "far", region="us")
    busy = provider(server, "busy")
    dep = alice.create_deployment(gpu_sdl(bid_window="10s"), deposit=UNITS)
    order_id = dep.order_ids[0]
    with pytest.raises(Ineligible, match="region"):
        far.place_bid(order_id, 500_000)
    busy.decline_order(order_id, "all GPUs busy")
    why = alice.explain_order(order_id)
    reasons = {d.provider: (d.reason, d.by_marketplace) for d in why.declines}
    assert reasons[busy.key.address] == ("all GPUs busy", False)  # type: ignore[union-attr]
    assert "region" in reasons[far.key.address][0]  # type: ignore[union-attr]
    assert "declined" in why.summary


def test_errors_come_back_as_the_markets_own(server: ServerThread) -> None:
    alice = tenant(server, amount=UNITS)
    with pytest.raises(InsufficientFunds):
        alice.create_deployment(gpu_sdl(), deposit=2 * UNITS)
    with pytest.raises(NotFound):
        alice.get_deployment("D999")
    with pytest.raises(InvalidArgument, match="manifest"):
        alice.create_deployment(b"version: '2.0'\nservices: 12\n", deposit=1)
    dep = alice.create_deployment(gpu_sdl(), deposit=UNITS // 2)
    alice.close_deployment(dep.id)
    with pytest.raises(FailedPrecondition, match="closed"):
        alice.close_deployment(dep.id)


def test_manual_mode_accept(server: ServerThread) -> None:
    alice = tenant(server)
    prov = provider(server, "p")
    dep = alice.create_deployment(gpu_sdl(extra=", manual: true"), deposit=UNITS)
    bid = prov.place_bid(dep.order_ids[0], 900_000)
    lease = alice.accept_bid(bid.id)
    assert lease.id == bid.id and lease.price_per_hour == 900_000


def test_manifest_over_the_limit_is_refused_clearly(server: ServerThread) -> None:
    alice = tenant(server)
    huge = gpu_sdl() + b"#" + b"x" * (1024 * 1024)
    with pytest.raises(InvalidArgument, match="limit is 1,048,576"):
        alice.create_deployment(huge, deposit=UNITS)
    with pytest.raises(InvalidArgument, match="refused"):
        alice.create_deployment(b"#" * (3 * 1024 * 1024), deposit=UNITS)


def test_health_and_reflection(server: ServerThread) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "marketplace.api.v1.Tenant"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in answer.list_services_response.service}
    assert {
        "marketplace.api.v1.Tenant",
        "marketplace.api.v1.Provider",
        "marketplace.api.v1.Market",
        "grpc.health.v1.Health",
    } <= names
