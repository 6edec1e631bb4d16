"""A lease won while the marketplace stops answering (a restart, a standby taking over) is not
failed for want of its manifest: the agent asks again until the market answers, then runs it.
A real `market serve` process, paused with SIGSTOP the moment the agent hears of its win (before
it asks for the manifest); the agent in-process with the replayed H100 and the in-memory
container runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc.aio

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.clock import SystemClock
from marketplace.identity import Key
from provider_agent.agent import Agent
from provider_agent.config import parse_config
from provider_agent.memory_runtime import MemoryRuntime
from tests.agent.test_e2e import Tenant, _async, eventually
from tests.agent.test_gang_bids import HOST, IMAGE, ONE_BOX, config
from tests.server.market_process import MarketProcess


def test_a_lease_whose_manifest_the_paused_market_did_not_give_runs_once_it_answers(
    tmp_path: Path,
) -> None:
    market = MarketProcess.start(tmp_path / "market")
    said: list[str] = []

    def say(text: str) -> None:
        said.append(text)
        if text.startswith("won "):  # before the agent asks for the lease's manifest
            market.pause()

    async def scenario() -> None:
        key = Key.generate()
        cfg = config(market.port, tmp_path / "agent")
        cfg["marketplace"]["call_timeout_s"] = 0.3  # unanswered within it: Unavailable
        agent = Agent(
            parse_config(cfg), key, MemoryRuntime(key.address, images=[IMAGE]), SystemClock(),
            say=say, host=HOST,
        )  # fmt: skip
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        channel = grpc.aio.insecure_channel(market.address)
        try:
            await eventually(lambda: _async(agent.connected.is_set()), timeout=30)
            tenant = Tenant(channel, market.admin)
            dep = await tenant.deploy(ONE_BOX.format(window="1s"))
            await eventually(lambda: _async(any("manifest" in s for s in said)))
            market.resume()
            lease = await eventually(lambda: tenant.lease(dep.id))
            lease = await eventually(lambda: _settled(tenant, lease.id))
            assert lease.state == pb.LEASE_RUNNING, (lease.close_reason, lease.message)
            assert any(f"lease {lease.id}: no manifest yet" in s for s in said), said
            assert not any("cannot get its manifest" in s for s in said), said
        finally:
            market.resume()
            await channel.close(grace=None)
            stop.set()
            assert await running == 0

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        market.stop()


async def _settled(tenant: Tenant, lease_id: str) -> pb.Lease | None:
    """The lease once running or closed."""
    lease = await tenant.stub.GetLease(tenant.signed(pb.GetRequest(id=lease_id)))
    return lease if lease.state in (pb.LEASE_RUNNING, pb.LEASE_CLOSED) else None
