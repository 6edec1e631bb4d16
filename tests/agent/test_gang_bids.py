"""Gangs on live providers: every node order of a gang says which gang it is (the deployment),
its node and the gang's size and link floor, so an agent bids on every node it can serve,
holding ONE reservation for the gang (the market awards a provider at most one node). Real
agents over real gRPC against the real marketplace (SQLite in tmp), containers on the in-memory
runtime, GPUs from the replayed NVML recording; no Docker.

Also: a lease won before an agent (re)starts holds its room from the moment the agent hears of
it, not once its manifest is fetched, so no open order is bid that room in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc.aio

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.clock import ManualClock, SystemClock
from marketplace.core.matching import Capacity
from marketplace.core.resources import AuctionSettings, GangSettings, GroupSpec, JobKind
from marketplace.core.state import Lease, LeaseState, Offer, Order, OrderState
from marketplace.identity import Key
from provider_agent.agent import Agent, read_inventory
from provider_agent.bidder import Bidder, Quoter, reservation_key
from provider_agent.config import parse_config
from provider_agent.host import HostCapacity
from provider_agent.inventory import Reservations
from provider_agent.link import MarketLink
from provider_agent.memory_runtime import MemoryRuntime
from provider_agent.metrics import AgentCounters
from tests.agent.test_e2e import Tenant, _async, agent_config, eventually, marketplace
from tests.agent.test_spot_bids import config as replay_config
from tests.core.test_market import gpu_group

IMAGE = "gpumarket/busybox:latest"
GIB = 1 << 30
HOST = HostCapacity(cpu_millis=8000, memory_bytes=16 * GIB, storage_bytes=100 * GIB)

# One job (or gang node) takes 12 GiB of a box's 16: every box has room for exactly one.
ONE_BOX = """
version: "2.0"
services:
  job:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: ["sleep 600"]
profiles:
  compute:
    job:
      resources:
        cpu: {{units: 1}}
        memory: {{size: 12Gi}}
        storage: {{size: 100Mi}}
  placement:
    here:
      pricing:
        job: {{denom: uact, amount: 3000}}
deployment:
  job:
    here: {{profile: job, count: 1}}
gpumarket:
  kind: training
  restart: never
  auction:
    bid_window: {window}
"""
GANG = (
    ONE_BOX
    + """  gang:
    nodes: {nodes}
    min_bandwidth: 1Gbps
"""
)


def config(port: int, state: Path, mbps: int = 10_000) -> dict[str, Any]:
    cfg = agent_config(port, state)
    cfg["network"] = {"up_mbps": mbps, "down_mbps": mbps}
    return cfg


@asynccontextmanager
async def agent(
    tmp: Path,
    port: int,
    name: str,
    mbps: int = 10_000,
    key: Key | None = None,
    runtime: MemoryRuntime | None = None,
) -> AsyncIterator[tuple[Agent, list[str]]]:
    """An agent run until the block ends; `runtime`: the containers a previous one left."""
    key = key or Key.generate()
    said: list[str] = []
    runtime = runtime or MemoryRuntime(key.address, images=[IMAGE])
    cfg = parse_config(config(port, tmp / name, mbps))
    a = Agent(cfg, key, runtime, SystemClock(), say=said.append, host=HOST)
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    try:
        await eventually(lambda: _async(a.connected.is_set()), timeout=30)
        yield a, said
    finally:
        stop.set()
        assert await task == 0


async def gang_leases(tenant: Tenant, dep_id: str, nodes: int) -> list[pb.Lease] | None:
    """Every node's lease, by rank, once all of them run."""
    dep = await tenant.stub.GetDeployment(tenant.signed(pb.GetRequest(id=dep_id)))
    found = {}
    for lease_id in dep.lease_ids:
        lease = await tenant.stub.GetLease(tenant.signed(pb.GetRequest(id=lease_id)))
        found[int(lease.order_id.split("/")[1]) - 1] = lease
    if len(found) < nodes or any(x.state != pb.LEASE_RUNNING for x in found.values()):
        return None
    return [found[rank] for rank in range(nodes)]


def said_about(said: list[str], order_id: str, prefix: str) -> str | None:
    return next((s for s in said if s.startswith(prefix) and f" {order_id}" in s), None)


def said_probe(said: list[str], order_id: str, prefix: str) -> Callable[[], Awaitable[str | None]]:
    return lambda: _async(said_about(said, order_id, prefix))


def holds_only(a: Agent, key: str) -> Callable[[], Awaitable[bool]]:
    return lambda: _async(a.reservations.keys() == [key])


def test_three_agents_with_room_for_one_node_each_fill_a_gang_of_three(tmp_path: Path) -> None:
    """Each agent bids on all three ranks under one reservation; the market gives each a
    distinct rank; each then holds that one lease's room and nothing else. A fourth agent whose
    link is under the gang's floor declines every node, saying why."""

    async def scenario() -> None:
        admin = Key.generate()
        async with marketplace(tmp_path, admin) as port, AsyncExitStack() as stack:
            agents = [
                await stack.enter_async_context(agent(tmp_path, port, f"agent{n}"))
                for n in range(3)
            ]
            slow, slow_said = await stack.enter_async_context(
                agent(tmp_path, port, "slow", mbps=100)
            )
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            dep = await tenant.deploy(GANG.format(nodes=3, window="4s"))
            assert len(dep.order_ids) == 3
            gang_key = f"gang:{dep.id}"

            for a, said in agents:  # every rank bid on, room held once, for the gang
                for order_id in dep.order_ids:
                    await eventually(said_probe(said, order_id, "bid "))
                [key] = a.reservations.keys()
                assert key == gang_key or key.startswith("lease:")  # (awarded already)
            for order_id in dep.order_ids:
                why = await eventually(said_probe(slow_said, order_id, "decline"))
                assert "link 100 Mbps; the gang needs 1000 Mbps" in why
            assert slow.reservations.keys() == []

            leases = await eventually(lambda: gang_leases(tenant, dep.id, 3), timeout=60)
            by_provider = {x.provider: x for x in leases}
            assert len(by_provider) == 3  # each provider exactly one rank
            assert {x.created_at_ms for x in leases} == {leases[0].created_at_ms}  # together
            for a, _said in agents:
                lease = by_provider[a.key.address]
                # the gang's reservation became the lease's; the siblings' bids hold nothing
                await eventually(holds_only(a, f"lease:{lease.id}"))
                free = a.reservations.free(a._inventory().total)
                assert free.memory_bytes == 4 * GIB  # 16 GiB less the one node's 12
                assert a.bidder.open_orders() == []
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 150))


def test_a_lease_won_before_the_agent_starts_holds_its_room_before_its_manifest_arrives(
    tmp_path: Path,
) -> None:
    """The provider's key bids and wins (here through a bare MarketLink: the agent that bid has
    stopped, as in a restart), then another tenant's order needing the same room opens. The
    agent starting with that key hears of both at once: it must hold the lease's room at once
    and decline the order, and the lease must start. Before, the lease held nothing until its
    manifest arrived, the agent bid the room away to the order, and the lease failed to start
    for want of memory."""

    async def scenario() -> None:
        admin = Key.generate()
        key = Key.generate()
        async with marketplace(tmp_path, admin) as port:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            cfg = parse_config(config(port, tmp_path / "before"))
            inventory = read_inventory(cfg)
            link = MarketLink(f"127.0.0.1:{port}", key)
            try:
                await link.register(inventory, "", "")
                first = await tenant.deploy(ONE_BOX.format(window="1s"))
                order_id = first.order_ids[0]
                await link.place_bid(order_id, 3_000, Offer())
                won = await eventually(lambda: tenant.lease(first.id, pb.LEASE_PENDING))
            finally:
                await link.close()
            other = await Tenant(channel, admin).deploy(ONE_BOX.format(window="30s"))
            other_order = other.order_ids[0]

            async with agent(tmp_path, port, "agent", key=key) as (a, said):
                running = await eventually(lambda: tenant.lease(first.id, pb.LEASE_RUNNING))
                assert running.id == won.id
                declined = await eventually(
                    lambda: _async(said_about(said, other_order, "decline"))
                )
                assert "memory" in declined
                assert said_about(said, other_order, "bid ") is None
                assert a.reservations.keys() == [f"lease:{won.id}"]
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 120))


# --- the bidder's shared reservation and a won lease's room, without a market ---------------


def gang_order(node: int, group: GroupSpec) -> Order:
    return Order(
        id=f"D1/{node + 1}/1",
        deployment_id="D1",
        owner="tenant",
        gseq=node + 1,
        oseq=1,
        group=group,
        auction=AuctionSettings(),
        state=OrderState.OPEN,
        created_at_ms=0,
        closes_at_ms=0,
        job_kind=JobKind.TRAINING,
        gang=GangSettings(3),
    )


def evaluate(quoter: Quoter, reservations: Reservations, group: GroupSpec, key: str) -> bool:
    async def run() -> bool:
        inventory = read_inventory(replay_config())
        return (await quoter.evaluate(group, "tenant", inventory, reservations, key)).bid

    return asyncio.run(run())


def test_a_box_with_room_for_one_node_bids_on_every_node_under_one_reservation() -> None:
    """One H100: room for one node of a gang of one-GPU nodes. Every node is bid on (each
    sibling may take the gang's own hold); the room is held once; any other order finds none."""
    quoter = Quoter.from_config(replay_config(), ManualClock(0))
    reservations = Reservations()
    group = gpu_group()
    orders = [gang_order(node, group) for node in range(3)]
    assert {reservation_key(o) for o in orders} == {"gang:D1"}
    for order in orders:
        assert evaluate(quoter, reservations, order.group, reservation_key(order))
    assert reservations.keys() == ["gang:D1"]
    held = reservations.held("gang:D1")
    assert held is not None and len(held.gpu_uuids) == 1
    assert not evaluate(quoter, reservations, group, "order:other")  # the GPU is the gang's
    reservations.release("order:other")
    assert reservations.keys() == ["gang:D1"]


def test_a_lease_heard_of_without_a_bid_of_this_run_holds_what_the_market_says() -> None:
    """After a restart no reservation of this run moves to a won lease: it holds what the
    lease holds at the market (its GPUs, CPU, memory, storage) from the moment it is heard of,
    so the bidder cannot offer that room to another order before the manifest arrives."""
    cfg = replay_config()
    inventory = read_inventory(cfg)
    [gpu] = inventory.total.gpus
    reservations = Reservations()
    lease = Lease(
        id="D7/1/1/p",
        order_id="D7/1/1",
        deployment_id="D7",
        tenant="tenant",
        provider="p",
        price_per_hour=1,
        state=LeaseState.PENDING,
        created_at_ms=0,
        gpu_uuids=(gpu.uuid,),
        cpu_millis=1000,
        memory_bytes=GIB,
        storage_bytes=GIB,
    )

    async def hear_of_it() -> Bidder:
        bidder = Bidder(
            Quoter.from_config(cfg, ManualClock(0)),
            MarketLink("127.0.0.1:1", Key.generate()),  # never dialled: won() asks nothing
            reservations,
            inventory=lambda: inventory,
            running_leases=lambda: 0,
            counters=AgentCounters(),
            say=lambda _: None,
        )
        bidder.won(lease)
        return bidder

    bidder = asyncio.run(hear_of_it())
    held = reservations.held("lease:D7/1/1/p")
    assert held is not None and held.gpu_uuids == (gpu.uuid,) and held.memory_bytes == GIB
    free: Capacity = reservations.free(inventory.total)
    assert free.gpus == () and free.memory_bytes == inventory.memory_bytes - GIB
    assert not evaluate(bidder.quoter, reservations, gpu_group(), "order:other")
