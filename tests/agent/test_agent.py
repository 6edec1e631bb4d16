"""The agent against the real marketplace (gRPC on a real socket, SQLite in tmp) with its
containers on the in-memory runtime: the bid path, its one cleanup, and a lease run to its end,
without Docker (tests/agent/test_e2e.py runs the same flows on the engine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc.aio

from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.clock import SystemClock
from marketplace.identity import Key
from provider_agent.agent import Agent
from provider_agent.config import parse_config
from provider_agent.memory_runtime import MemoryRuntime
from tests.agent.test_e2e import Tenant, _async, agent_config, eventually, job, marketplace

IMAGE = "gpumarket/busybox:latest"


@asynccontextmanager
async def running_agent(
    tmp: Path, port: int
) -> AsyncIterator[tuple[Agent, MemoryRuntime, list[str]]]:
    key = Key.generate()
    runtime = MemoryRuntime(key.address, images=[IMAGE])
    said: list[str] = []
    agent = Agent(
        parse_config(agent_config(port, tmp / "agent")),
        key,
        runtime,
        SystemClock(),
        say=said.append,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await eventually(lambda: _async(agent.connected.is_set()), timeout=10)
        yield agent, runtime, said
    finally:
        stop.set()
        assert await task == 0


def with_window(sdl: str, window: str) -> str:
    return sdl.replace("bid_window: 1s", f"bid_window: {window}")


def test_a_won_lease_runs_on_the_memory_runtime_and_completes(tmp_path: Path) -> None:
    async def scenario() -> None:
        admin = Key.generate()
        async with (
            marketplace(tmp_path, admin) as port,
            running_agent(tmp_path, port) as (agent, runtime, said),
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            dep = await tenant.deploy(job("echo hello"))
            lease = await eventually(lambda: tenant.lease(dep.id, pb.LEASE_RUNNING), timeout=10)
            assert agent.reservations.keys() == [f"lease:{lease.id}"]  # the bid's, moved
            [container] = runtime.owned(lease.id)
            runtime.write(container.id, "hello from memory")
            runtime.finish(container.id, 0)
            done = await eventually(lambda: tenant.lease(dep.id, pb.LEASE_CLOSED), timeout=10)
            assert done.close_reason == pb.COMPLETED and done.exit_code == 0
            assert "hello from memory" in await tenant.logs(done.id)
            assert any(s.startswith("bid ") and dep.id in s for s in said)
            await eventually(lambda: _async(agent.reservations.keys() == []), timeout=10)
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_order_it_cannot_serve_is_declined_with_the_reason_and_holds_nothing(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        admin = Key.generate()
        async with (
            marketplace(tmp_path, admin) as port,
            running_agent(tmp_path, port) as (agent, _runtime, said),
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            dep = await Tenant(channel, admin).deploy(job("true", memory="64Gi"))
            order_id = dep.order_ids[0]
            declined = await eventually(
                lambda: _async(next((s for s in said if s.startswith(f"decline {order_id}")), None))
            )
            assert "memory" in declined
            await eventually(lambda: _async(not agent.bidder.open_orders()), timeout=10)
            assert agent.reservations.keys() == []
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_bid_still_open_at_shutdown_is_withdrawn_and_its_reservation_released(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        admin = Key.generate()
        async with marketplace(tmp_path, admin) as port:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            async with running_agent(tmp_path, port) as (agent, _runtime, said):
                dep = await tenant.deploy(with_window(job("true"), "60s"))
                order_id = dep.order_ids[0]
                await eventually(lambda: _async(any(s.startswith("bid ") for s in said)))
                assert agent.reservations.keys() == [f"order:{order_id}"]
            assert f"withdrew bid on {order_id}" in said
            assert agent.reservations.keys() == [] and agent.bidder.open_orders() == []
            # the window is still open: the bid is sealed, so its bidder reads it
            as_bidder = seal(agent.key, pb.ListBidsRequest(order_id=order_id), market=admin.address)
            [bid] = (await tenant.stub.ListBids(as_bidder)).bids
            assert bid.state == pb.BID_WITHDRAWN
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_order_declined_for_want_of_room_is_bid_on_once_a_lease_frees_it(
    tmp_path: Path,
) -> None:
    """The box (16 GiB) runs one 12 GiB job; a second one is declined, stays open at the market
    past its window, and is bid on and leased the moment the first job ends: no idle box beside
    a waiting order, and the market hears the decline once."""

    async def scenario() -> None:
        admin = Key.generate()
        async with (
            marketplace(tmp_path, admin) as port,
            running_agent(tmp_path, port) as (agent, runtime, said),
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            first = await tenant.deploy(job("sleep 600", memory="12Gi"))
            running = await eventually(lambda: tenant.lease(first.id, pb.LEASE_RUNNING))
            second = await tenant.deploy(job("sleep 600", memory="12Gi"))
            order_id = second.order_ids[0]
            await eventually(lambda: _async(agent.bidder.waiting_orders() == [order_id]))
            assert any(s.startswith(f"decline {order_id}") and "memory" in s for s in said)
            [container] = runtime.owned(running.id)
            runtime.finish(container.id, 0)  # the first job ends: its 12 GiB are free
            leased = await eventually(lambda: tenant.lease(second.id, pb.LEASE_RUNNING))
            assert leased.provider == agent.key.address
            assert agent.bidder.waiting_orders() == []
            why = await tenant.stub.ExplainOrder(tenant.signed(pb.GetRequest(id=order_id)))
            mine = [d for d in why.declines if d.provider == agent.key.address]
            assert len(mine) == 1 and not mine[0].by_marketplace  # declined once, not per look
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 90))
