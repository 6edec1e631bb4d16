"""Signed requests over real gRPC: forged, tampered, mistyped, replayed and stale requests are
refused UNAUTHENTICATED; acting on what another account owns is PERMISSION_DENIED."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from marketplace.api.client import ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.core.clock import ManualClock, SystemClock
from marketplace.core.errors import PermissionDenied
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, h100_inventory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ServerThread(tmp_path_factory.mktemp("market")) as running:
        yield running


@pytest.fixture
def stub(server: ServerThread) -> Iterator[pb_grpc.TenantStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.TenantStub(channel)


def funded(server: ServerThread) -> Key:
    key = Key.generate()
    TenantClient(server.address, server.admin).fund(key.address, 10 * money.MICRO)
    return key


def refused(call: object, request: pb.SignedRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=5)  # type: ignore[operator]
    return caught.value


def deploy_request(key: Key, clock: object = None) -> pb.SignedRequest:
    return seal(key, pb.CreateDeployment(sdl=gpu_sdl(), deposit=money.MICRO), clock)  # type: ignore[arg-type]


def test_a_good_request_passes(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    reply = stub.CreateDeployment(deploy_request(funded(server)), timeout=5)
    assert reply.id.startswith("D")


def test_forged_signature(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    victim, forger = funded(server), Key.generate()
    request = deploy_request(forger)
    request.public_key = victim.public_key  # claims to be the victim; signed by someone else
    error = refused(stub.CreateDeployment, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tampered_payload(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    request = deploy_request(funded(server))
    message = pb.CreateDeployment.FromString(request.payload)
    message.deposit = 5 * money.MICRO
    request.payload = message.SerializeToString()
    error = refused(stub.CreateDeployment, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_message_type(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    # a validly signed CloseDeployment presented as a CreateDeployment
    request = seal(funded(server), pb.CloseDeployment(deployment_id="D1"))
    error = refused(stub.CreateDeployment, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_replayed_nonce(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    request = deploy_request(funded(server))
    stub.CreateDeployment(request, timeout=5)
    error = refused(stub.CreateDeployment, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "replayed" in (error.details() or "")


def test_stale_timestamp(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    an_hour_ago = ManualClock(SystemClock().now_ms() - 3_600_000)
    error = refused(stub.CreateDeployment, deploy_request(funded(server), an_hour_ago))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "stale" in (error.details() or "")


def test_unsigned_garbage(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    error = refused(stub.CreateDeployment, pb.SignedRequest(payload=b"x"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_other_accounts_things_are_permission_denied(server: ServerThread) -> None:
    alice = TenantClient(server.address, funded(server))
    mallory = TenantClient(server.address, funded(server))
    dep = alice.create_deployment(gpu_sdl(extra=", manual: true"), deposit=money.MICRO)
    with pytest.raises(PermissionDenied):
        mallory.close_deployment(dep.id)
    with pytest.raises(PermissionDenied):
        mallory.deposit(dep.id, 1)
    prov = ProviderClient(server.address, Key.generate())
    prov.register(
        pb.RegisterProvider(
            host_uri="h",
            inventory=h100_inventory("p"),
            attributes=[pb.Attribute(key="region", value="eu")],
        )
    )
    bid = prov.place_bid(dep.order_ids[0], 100_000)
    with pytest.raises(PermissionDenied):
        mallory.accept_bid(bid.id)
    lease = alice.accept_bid(bid.id)
    with pytest.raises(PermissionDenied):
        mallory.close_lease(lease.id)
    with pytest.raises(PermissionDenied):
        ProviderClient(server.address, mallory.key).get_manifest(lease.id)
    with pytest.raises(PermissionDenied):
        ProviderClient(server.address, mallory.key).report_logs(lease.id, [pb.LogLine(line="x")])
    # only the marketplace's admin key funds
    with pytest.raises(PermissionDenied, match="admin"):
        mallory.fund(mallory.key.address, 1)  # type: ignore[union-attr]
