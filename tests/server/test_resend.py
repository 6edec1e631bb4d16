"""A unary command's sealed bytes sent twice (a client whose deadline passed after the market
committed, and resent), on one server and after its restart: the first answer again, applied
once (server/once.py). The failover case, with real processes on PostgreSQL, is in
test_failover.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from marketplace.api.client import TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.identity import Key
from marketplace.server.servicers import MAX_MANIFESTS_PARSING
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from tests.helpers import funded_tenant
from tests.server.market_process import MarketProcess


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


def slow_to_parse_sdl() -> bytes:
    """A valid manifest near the parser's node bound (~9,000 env entries): its parse, off the
    loop, takes a good fraction of a second on this box, the window these tests send into."""
    env = "".join(f"      - VAR_{i}=value{i}\n" for i in range(9_000))
    image = "    image: gpumarket/busybox:latest\n"
    return gpu_sdl().replace(image.encode(), f"{image}    env:\n{env}".encode())


def test_the_same_bytes_sent_again_while_the_first_is_still_parsed_get_its_answer(
    tmp_path: Path,
) -> None:
    """Before, the copy that came while the first was parsed (its nonce accepted, no outcome
    yet) was told FAILED_PRECONDITION for a deployment that was being made."""
    with ServerThread(tmp_path) as server:
        tenant = funded_tenant(server.address, server.admin, 50 * money.MICRO)
        assert tenant.key is not None
        create = seal(
            tenant.key,
            pb.CreateDeployment(sdl=slow_to_parse_sdl(), deposit=2 * money.MICRO),
            market=server.admin.address,
        )
        with grpc.insecure_channel(server.address) as channel:
            send = pb_grpc.TenantStub(channel).CreateDeployment
            copies = [send.future(create, timeout=60) for _ in range(3)]
            answers = [copy.result() for copy in copies]
        assert answers[0].id and all(a == answers[0] for a in answers)
        assert [d.id for d in tenant.list_deployments()] == [answers[0].id]
        assert tenant.get_account().balance == 48 * money.MICRO  # one deposit taken
        tenant.close()


def test_a_caller_whose_deadline_passed_mid_parse_gets_its_deployment_when_it_resends(
    tmp_path: Path,
) -> None:
    """gRPC cancels the rpc when its deadline passes; the command, its nonce accepted, runs on
    (before, it stopped half-way and the resend was told FAILED_PRECONDITION). Four manifests
    sent first hold the one parser thread, so the deadline passes while this one waits for it,
    however fast the machine."""
    with ServerThread(tmp_path) as server:
        tenant = funded_tenant(server.address, server.admin, 50 * money.MICRO)
        assert tenant.key is not None
        key, sdl = tenant.key, slow_to_parse_sdl()

        def create() -> pb.SignedRequest:
            msg = pb.CreateDeployment(sdl=sdl, deposit=2 * money.MICRO)
            return seal(key, msg, market=server.admin.address)

        ahead, mine = [create() for _ in range(4)], create()
        with grpc.insecure_channel(server.address) as channel:
            rpc = pb_grpc.TenantStub(channel)
            queued = [rpc.CreateDeployment.future(request, timeout=60) for request in ahead]
            with pytest.raises(grpc.RpcError) as gave_up:
                rpc.CreateDeployment(mine, timeout=0.05)
            assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            made = rpc.CreateDeployment(mine, timeout=60)
            first = [call.result().id for call in queued]
        assert sorted(d.id for d in tenant.list_deployments()) == sorted([*first, made.id])
        assert tenant.get_account().balance == 40 * money.MICRO  # five deposits, each once
        tenant.close()


def test_manifests_past_what_the_parser_queue_holds_are_refused_until_it_drains(
    tmp_path: Path,
) -> None:
    """A command runs on when its caller hangs up, so callers that send and hang up would grow
    the parser's queue without end: past MAX_MANIFESTS_PARSING, RESOURCE_EXHAUSTED, nothing
    taken; once the queue drains, deployments are made again."""
    sent = 2 * MAX_MANIFESTS_PARSING
    with ServerThread(tmp_path) as server:
        tenant = funded_tenant(server.address, server.admin, 100 * money.MICRO)
        assert tenant.key is not None
        sdl = slow_to_parse_sdl()
        creates = [
            seal(tenant.key, pb.CreateDeployment(sdl=sdl, deposit=money.MICRO), market=market)
            for market in [server.admin.address] * sent
        ]
        with grpc.insecure_channel(server.address) as channel:
            send = pb_grpc.TenantStub(channel).CreateDeployment
            calls = [send.future(create, timeout=120) for create in creates]
            made, refused = [], []
            for call in calls:
                try:
                    made.append(call.result().id)
                except grpc.RpcError as exc:
                    refused.append((exc.code(), exc.details() or ""))
        assert made and refused, (len(made), refused[:1])
        assert {code for code, _ in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert "send yours again, newly signed, in a moment" in refused[0][1]
        assert sorted(d.id for d in tenant.list_deployments()) == sorted(made)
        assert tenant.get_account().balance == (100 - len(made)) * money.MICRO
        assert tenant.create_deployment(gpu_sdl(), money.MICRO).id  # drained: taken again
        tenant.close()


def test_a_command_with_no_answer_in_time_is_sent_again_and_made_once(tmp_path: Path) -> None:
    """A market that stops answering (SIGSTOP: a long GC pause, a VM stalled) past the client's
    deadline: before, `create_deployment` raised "did not answer in time" although the market
    would make the deployment once it ran again, and the tenant who tried again had two. Now the
    client sends the same bytes again within failover_s and gets the one deployment."""
    market = MarketProcess.start(tmp_path / "market")
    try:
        tenant = funded_tenant(market.address, market.admin, 10 * money.MICRO)
        assert tenant.key is not None
        impatient = TenantClient(market.address, tenant.key, timeout_s=0.3, failover_s=60)
        impatient.get_account()  # the market id learned while it answers
        made: list[pb.Deployment] = []
        market.pause()
        creating = threading.Thread(
            target=lambda: made.append(impatient.create_deployment(gpu_sdl(), money.MICRO))
        )
        creating.start()
        # nothing to await here: the point is that deadlines pass while the market is stopped
        time.sleep(1.0)
        market.resume()
        creating.join(60)
        assert len(made) == 1, "the create did not come back"
        assert [d.id for d in tenant.list_deployments()] == [made[0].id]
        assert tenant.get_account().balance == 9 * money.MICRO
        impatient.close()
        tenant.close()
    finally:
        market.resume()
        market.stop()
