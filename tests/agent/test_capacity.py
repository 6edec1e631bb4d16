"""What a provider holds and offers, against the real marketplace (gRPC on a real socket, SQLite in
tmp) with the agent's containers on the in-memory runtime: an idle order cannot lock its
capacity, it never offers more than its host has, and a shape that failed to start is not bid on
again at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core.clock import SystemClock
from marketplace.identity import Key
from provider_agent.agent import Agent
from provider_agent.config import ResourcesSection, parse_config
from provider_agent.host import HostCapacity, fit_to_host, read_host
from provider_agent.memory_runtime import MemoryRuntime
from tests.agent.test_e2e import Tenant, _async, agent_config, eventually, job, marketplace

IMAGE = "gpumarket/busybox:latest"
GIB = 1 << 30
BIG_HOST = HostCapacity(cpu_millis=8000, memory_bytes=16 * GIB, storage_bytes=100 * GIB)


@asynccontextmanager
async def provider(
    tmp: Path, port: int, policy: dict[str, Any], host: HostCapacity = BIG_HOST
) -> AsyncIterator[tuple[Agent, MemoryRuntime, list[str]]]:
    key = Key.generate()
    runtime = MemoryRuntime(key.address, images=[IMAGE])
    said: list[str] = []
    cfg = agent_config(port, tmp / "agent")
    cfg["policy"] = policy
    agent = Agent(parse_config(cfg), key, runtime, SystemClock(), say=said.append, host=host)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await eventually(lambda: _async(agent.connected.is_set()), timeout=10)
        yield agent, runtime, said
    finally:
        stop.set()
        assert await task == 0


def sdl(cpus: int = 8, window: str = "1s", manual: bool = False, restart: str = "never") -> str:
    text = job("sleep 600").replace("cpu: {units: 1}", f"cpu: {{units: {cpus}}}")
    text = text.replace("bid_window: 1s", f"bid_window: {window}" + "\n    manual: true" * manual)
    return text.replace("restart: never", f"restart: {restart}")


def said_about(said: list[str], order_id: str, prefix: str) -> str | None:
    return next((s for s in said if s.startswith(prefix) and order_id in s), None)


async def bids_on(tenant: Tenant, order_id: str) -> list[pb.Bid]:
    return list(
        (await tenant.stub.ListBids(tenant.signed(pb.ListBidsRequest(order_id=order_id)))).bids
    )


def run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, 90))


# --- item 8: an idle order cannot lock a provider's capacity ----------------------------------


def test_an_idle_manual_order_locks_nothing_for_long(tmp_path: Path) -> None:
    """The attack: a manual auction with a long window and a tiny deposit, on an order that takes
    the provider's whole box. The market refuses the tiny deposit and the 1h window; what it
    accepts the agent declines (window longer than it holds) or holds for max_hold at most, then
    withdraws; and a tenant holds at most max_bids_per_tenant pending bids. A real order then
    gets the capacity."""

    async def scenario() -> None:
        admin = Key.generate()
        async with (
            marketplace(tmp_path, admin) as port,
            provider(tmp_path, port, {"max_hold": "3s", "max_bids_per_tenant": 1}) as (
                agent,
                _runtime,
                said,
            ),
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            attacker = Tenant(channel, admin)
            stub = attacker.stub
            await stub.Fund(
                seal(
                    admin,
                    pb.FundAccount(address=attacker.key.address, amount=10**8),
                    market=admin.address,
                )
            )

            async def refused(text: str, deposit: int) -> str:
                msg = pb.CreateDeployment(sdl=text.encode(), deposit=deposit)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.CreateDeployment(seal(attacker.key, msg, market=admin.address))
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                return caught.value.details() or ""

            # a 1u deposit cannot pay 10 minutes at its own maximum price; a 1h window is refused
            assert "does not pay for 10m" in await refused(sdl(manual=True), 1)
            assert "at most 5m" in await refused(sdl(window="1h", manual=True), 10**7)

            # the longest window the market takes outlasts what this provider holds: declined
            long = await attacker.deploy(sdl(window="5m", manual=True))
            declined = await eventually(
                lambda: _async(said_about(said, long.order_ids[0], "decline"))
            )
            assert "later than this provider holds capacity" in declined
            assert agent.reservations.keys() == []

            # a short manual window: a bid, held for max_hold (3 s) at most, then withdrawn
            short = await attacker.deploy(sdl(window="2s", manual=True))
            order_id = short.order_ids[0]
            await eventually(lambda: _async(said_about(said, order_id, "bid ")))
            assert agent.reservations.keys() == [f"order:{order_id}"]
            # meanwhile the same tenant's next order is declined: one pending bid per tenant
            more = await attacker.deploy(sdl(cpus=1, window="2s", manual=True))
            capped = await eventually(
                lambda: _async(said_about(said, more.order_ids[0], "decline"))
            )
            assert "already holds 1 pending bids" in capped
            await eventually(lambda: _async(said_about(said, order_id, "withdrew bid")), 10)
            assert agent.reservations.keys() == []
            [bid] = await bids_on(attacker, order_id)
            assert bid.state == pb.BID_WITHDRAWN

            # the capacity is free again: a real order gets the whole box
            honest = Tenant(channel, admin)
            real = await honest.deploy(sdl())
            lease = await eventually(lambda: honest.lease(real.id, pb.LEASE_RUNNING), 15)
            assert lease is not None
            await channel.close(grace=None)

    run(scenario())


# --- item 9: a lease that cannot start --------------------------------------------------------


def test_a_provider_offers_no_more_than_its_host_has(tmp_path: Path) -> None:
    """Configured with 8 CPUs on a 2-CPU host: it says so, offers 2, and declines a 4-CPU job
    (which Docker would refuse to start) instead of winning it."""

    async def scenario() -> None:
        admin = Key.generate()
        small = HostCapacity(cpu_millis=2000, memory_bytes=64 * GIB, storage_bytes=500 * GIB)
        async with (
            marketplace(tmp_path, admin) as port,
            provider(tmp_path, port, {}, host=small) as (agent, _runtime, said),
        ):
            assert "warning: resources.cpu is 8 CPU but this host has 2: offering 2 CPU" in said
            assert agent.inventory is not None and agent.inventory.cpu_millis == 2000
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            market = pb_grpc.MarketStub(channel)
            [info] = (await market.ListProviders(pb.ListRequest())).providers
            assert info.inventory.cpu_millis == 2000
            tenant = Tenant(channel, admin)
            dep = await tenant.deploy(sdl(cpus=4, restart="on-failure"))
            declined = await eventually(
                lambda: _async(said_about(said, dep.order_ids[0], "decline"))
            )
            assert "CPU" in declined
            again = await tenant.stub.GetDeployment(tenant.signed(pb.GetRequest(id=dep.id)))
            assert (len(again.order_ids), len(again.lease_ids)) == (1, 0)
            await channel.close(grace=None)

    run(scenario())


def test_a_shape_that_failed_to_start_is_not_bid_on_until_its_cooldown_ends(
    tmp_path: Path,
) -> None:
    """The runtime refuses to start (as Docker refuses more CPUs than the host has): the lease
    fails once, its re-order is declined for the cooldown (and the market keeps the provider
    out of that window), and once starts work again the same shape runs and the cooldown is
    cleared."""

    async def scenario() -> None:
        admin = Key.generate()
        async with (
            marketplace(tmp_path, admin) as port,
            provider(tmp_path, port, {"failed_start_cooldown": "3s"}) as (agent, runtime, said),
        ):
            runtime.refuse_starts("range of CPUs is from 0.01 to 2.00")
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            dep = await tenant.deploy(sdl(cpus=1, restart="on-failure"))
            failed = await eventually(lambda: tenant.lease(dep.id, pb.LEASE_CLOSED))
            assert failed.close_reason == pb.FAILED and "range of CPUs" in failed.message
            reorder = f"{dep.id}/1/2"
            declined = await eventually(lambda: _async(said_about(said, reorder, "decline")))
            assert "failed to start here" in declined and "range of CPUs" in declined
            await asyncio.sleep(2)
            again = await tenant.stub.GetDeployment(tenant.signed(pb.GetRequest(id=dep.id)))
            assert (len(again.order_ids), len(again.lease_ids)) == (2, 1), "re-auctioned again"

            runtime.allow_starts()
            await asyncio.sleep(1.5)  # the 3 s cooldown ends
            fresh = await tenant.deploy(sdl(cpus=1, restart="on-failure"))
            assert await eventually(lambda: tenant.lease(fresh.id, pb.LEASE_RUNNING), 15)
            assert len(agent.bidder.cooldowns) == 0  # cleared by the start
            await channel.close(grace=None)

    run(scenario())


# --- the host reading -------------------------------------------------------------------------


def test_the_host_reading_is_this_machine(tmp_path: Path) -> None:
    host = read_host(tmp_path / "not" / "yet")
    assert host.cpu_millis == (os.cpu_count() or 1) * 1000
    assert host.memory_bytes > GIB and host.storage_bytes > 0


def test_fit_to_host_lowers_only_what_is_above_the_host() -> None:
    host = HostCapacity(cpu_millis=2000, memory_bytes=8 * GIB, storage_bytes=50 * GIB)
    asked = ResourcesSection(cpu_millis=1500, memory_bytes=16 * GIB, storage_bytes=None)
    fitted, warnings = fit_to_host(asked, host)
    assert (fitted.cpu_millis, fitted.memory_bytes, fitted.storage_bytes) == (1500, 8 * GIB, None)
    assert warnings == ["resources.memory is 16 GiB but this host has 8: offering 8 GiB"]
