"""Signed requests over real gRPC: forged, tampered, mistyped, replayed (also after a restart),
stale requests and requests signed for another marketplace are refused UNAUTHENTICATED; acting
on what another account owns is PERMISSION_DENIED, reading it NOT_FOUND (tests/server/test_reads.py
has every read)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.core.clock import Clock, ManualClock, SystemClock
from marketplace.core.errors import InvalidArgument, NotFound, PermissionDenied
from marketplace.identity import Key, SeenNonce
from marketplace.server.serve import ADMIN_KEY_FILE
from marketplace.server.store import Store, nonces_batch
from marketplace.server.testing import ServerThread, gpu_sdl, h100_inventory
from tests.server.market_process import MarketProcess


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


def refused(call: Callable[..., Message], request: pb.SignedRequest) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=5)
    assert isinstance(caught.value, grpc.Call)
    return caught.value


def deploy_request(key: Key, market: str, clock: Clock | None = None) -> pb.SignedRequest:
    return seal(key, pb.CreateDeployment(sdl=gpu_sdl(), deposit=money.MICRO), clock, market=market)


def test_the_market_id_is_public_and_is_the_admin_keys_address(server: ServerThread) -> None:
    assert MarketClient(server.address).info().market_id == server.admin.address


def test_a_good_request_passes(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    reply = stub.CreateDeployment(deploy_request(funded(server), server.admin.address), timeout=5)
    assert reply.id.startswith("D")


def test_forged_signature(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    victim, forger = funded(server), Key.generate()
    request = deploy_request(forger, server.admin.address)
    request.public_key = victim.public_key  # claims to be the victim; signed by someone else
    error = refused(stub.CreateDeployment, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tampered_payload(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    request = deploy_request(funded(server), server.admin.address)
    message = pb.CreateDeployment.FromString(request.payload)
    message.deposit = 5 * money.MICRO
    request.payload = message.SerializeToString()
    error = refused(stub.CreateDeployment, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_message_type(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    # a validly signed CloseDeployment presented as a CreateDeployment
    request = seal(
        funded(server), pb.CloseDeployment(deployment_id="D1"), market=server.admin.address
    )
    error = refused(stub.CreateDeployment, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_resent_bytes_are_answered_not_applied_again(
    server: ServerThread, stub: pb_grpc.TenantStub
) -> None:
    request = deploy_request(funded(server), server.admin.address)
    made = stub.CreateDeployment(request, timeout=5)
    assert stub.CreateDeployment(request, timeout=5).id == made.id
    owner = made.owner
    held = server.call(lambda: server.app.market.held_deployments(owner))
    assert [d.id for d in held] == [made.id]


def test_stale_timestamp(server: ServerThread, stub: pb_grpc.TenantStub) -> None:
    an_hour_ago = ManualClock(SystemClock().now_ms() - 3_600_000)
    error = refused(
        stub.CreateDeployment, deploy_request(funded(server), server.admin.address, an_hour_ago)
    )
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
    with pytest.raises(NotFound):  # another's lease reads as a missing one
        ProviderClient(server.address, mallory.key).get_manifest(lease.id)
    with pytest.raises(PermissionDenied):
        ProviderClient(server.address, mallory.key).report_logs(lease.id, [pb.LogLine(line="x")])
    # only the marketplace's admin key funds
    with pytest.raises(PermissionDenied, match="admin"):
        mallory.fund(mallory.key.address, 1)  # type: ignore[union-attr]


def test_a_request_signed_for_another_marketplace_is_refused(
    server: ServerThread, tmp_path: Path
) -> None:
    """A provider that saw a tenant's signed request (it gets one with each manifest) cannot
    replay it on another marketplace: the signature names the marketplace it was meant for."""
    with ServerThread(tmp_path / "other") as other:
        key = funded(server)
        TenantClient(other.address, other.admin).fund(key.address, 10 * money.MICRO)
        for_a = deploy_request(key, MarketClient(server.address).info().market_id)
        with grpc.insecure_channel(other.address) as channel:
            error = refused(pb_grpc.TenantStub(channel).CreateDeployment, for_a)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "signed for another marketplace" in (error.details() or "")
        assert TenantClient(other.address, key).list_deployments() == []
        # reads are bound too; and the clients learn each marketplace's id on their own
        read_for_a = seal(key, pb.GetAccountRequest(), market=server.admin.address)
        with grpc.insecure_channel(other.address) as channel:
            error = refused(pb_grpc.TenantStub(channel).GetAccount, read_for_a)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert TenantClient(other.address, key).create_deployment(gpu_sdl(), money.MICRO).id
        assert TenantClient(server.address, key).get_account().balance == 10 * money.MICRO


@pytest.mark.slow
def test_signed_requests_are_never_applied_twice_across_a_restart(tmp_path: Path) -> None:
    """A faucet payment, a deployment and a deposit resent byte for byte after kill -9 and a
    restart on the same data dir are answered as the first time and run nothing: their nonces
    were stored with them, with what they came to, and reloaded (server/once.py)."""
    data_dir = tmp_path / "market"
    admin_key_file = data_dir / ADMIN_KEY_FILE
    tenant = Key.generate()
    server = MarketProcess.start(data_dir)
    try:
        admin = Key.from_pem(admin_key_file.read_bytes())
        market = MarketClient(server.address).info().market_id
        fund = seal(
            admin, pb.FundAccount(address=tenant.address, amount=10 * money.MICRO), market=market
        )
        create = seal(
            tenant, pb.CreateDeployment(sdl=gpu_sdl(), deposit=money.MICRO), market=market
        )
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.TenantStub(channel)
            stub.Fund(fund, timeout=5)
            dep = stub.CreateDeployment(create, timeout=5)
            deposit = seal(
                tenant, pb.DepositEscrow(deployment_id=dep.id, amount=money.MICRO), market=market
            )
            stub.Deposit(deposit, timeout=5)
        server.kill9()
    finally:
        server.stop()

    server = MarketProcess.start(data_dir)
    try:
        books = MarketClient(server.address, admin).ledger()
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.TenantStub(channel)
            replays = {"Fund": fund, "CreateDeployment": create, "Deposit": deposit}
            for method, request in replays.items():
                getattr(stub, method)(request, timeout=5)  # answered, not refused
            assert stub.CreateDeployment(create, timeout=5).id == dep.id
        assert MarketClient(server.address, admin).ledger() == books
        alice = TenantClient(server.address, tenant)
        assert [d.id for d in alice.list_deployments()] == [dep.id]
        assert alice.get_account().balance == 8 * money.MICRO
        audit = subprocess.run(
            [
                sys.executable,
                "-c",
                "from marketplace.cli.main import main; main()",
                "market",
                "audit",
                "--market",
                server.address,
                "--admin-key",
                str(admin_key_file),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert audit.returncode == 0 and "books balanced" in audit.stdout, (
            audit.stdout + audit.stderr
        )
    finally:
        server.stop()


def test_unsigned_or_foreign_reads_are_refused(server: ServerThread) -> None:
    alice = funded(server)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.TenantStub(channel)
        error = refused(stub.GetAccount, pb.SignedRequest(payload=b""))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(PermissionDenied):
        TenantClient(server.address, Key.generate()).get_account(alice.address)
    with pytest.raises(InvalidArgument, match="must be signed"):  # a client with no key
        TenantClient(server.address).get_account(alice.address)


def test_stored_nonces_are_kept_while_fresh_and_pruned_after(tmp_path: Path) -> None:
    store = Store(tmp_path / "market.db")
    try:
        old = SeenNonce(b"k" * 32, b"a" * 16, 1_000)
        fresh = SeenNonce(b"k" * 32, b"b" * 16, 100_000)
        store.write(nonces_batch([old], 0))
        store.write(nonces_batch([fresh], 50_000))  # forgets those older than 50 s
        assert store.nonces_since(0) == [fresh]
    finally:
        store.close()
