"""A unary command's sealed bytes sent twice (a client whose deadline passed after the market
committed, and resent), on one server and after its restart: the first answer again, applied
once (server/once.py). The failover case, with real processes on PostgreSQL, is in
test_failover.py."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from marketplace.api.client import TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from tests.helpers import funded_tenant


def test_the_same_bytes_twice_answer_alike_and_apply_once_across_a_restart(
    tmp_path: Path,
) -> None:
    with ServerThread(tmp_path) as server:
        market = server.admin.address
        tenant = funded_tenant(server.address, server.admin, 50 * money.MICRO)
        assert tenant.key is not None
        create = seal(
            tenant.key, pb.CreateDeployment(sdl=gpu_sdl(), deposit=2 * money.MICRO), market=market
        )
        missing = seal(tenant.key, pb.CloseDeployment(deployment_id="d-missing"), market=market)
        with grpc.insecure_channel(server.address) as channel:
            rpc = pb_grpc.TenantStub(channel)
            made = rpc.CreateDeployment(create, timeout=30)
            assert rpc.CreateDeployment(create, timeout=30) == made  # the answer kept
            with pytest.raises(grpc.RpcError) as first_refusal:
                rpc.CloseDeployment(missing, timeout=10)
            close = seal(tenant.key, pb.CloseDeployment(deployment_id=made.id), market=market)
            closed = rpc.CloseDeployment(close, timeout=10)
        tenant.close()
    with ServerThread(tmp_path) as server:  # the same data dir: nonces and outcomes kept
        with grpc.insecure_channel(server.address) as channel:
            rpc = pb_grpc.TenantStub(channel)
            again = rpc.CreateDeployment(create, timeout=30)  # read from the state now
            assert (again.id, again.owner) == (made.id, made.owner)
            assert rpc.CloseDeployment(close, timeout=10).state == closed.state
            with pytest.raises(grpc.RpcError) as refusal:
                rpc.CloseDeployment(missing, timeout=10)
            assert refusal.value.code() == grpc.StatusCode.NOT_FOUND
            assert refusal.value.details() == first_refusal.value.details()
        with TenantClient(server.address, tenant.key) as client:
            assert [d.id for d in client.list_deployments()] == [made.id]  # none made again
            assert client.get_account().balance == 50 * money.MICRO  # the deposit back, once


def test_a_provider_resending_its_registration_after_a_restart_is_answered(
    tmp_path: Path,
) -> None:
    key = Key.generate()
    with ServerThread(tmp_path) as server:
        register = seal(key, provider_registration("p1", "eu"), market=server.admin.address)
        with grpc.insecure_channel(server.address) as channel:
            first = pb_grpc.ProviderStub(channel).Register(register, timeout=10)
    with ServerThread(tmp_path) as server:
        with grpc.insecure_channel(server.address) as channel:
            again = pb_grpc.ProviderStub(channel).Register(register, timeout=10)
        assert again.provider.address == first.provider.address == key.address
