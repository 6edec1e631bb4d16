"""An agent reconciles with the market's view of its leases at every (re)connect, instead of
relying on having acted on every LeaseWon event: real gRPC, the SQLite market in-process, the
replayed H100 and the in-memory container runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc.aio

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.provider_feed import FeedEvent, LeaseWon
from marketplace.core.state import Offer
from marketplace.identity import Key
from provider_agent.agent import read_inventory
from provider_agent.config import parse_config
from provider_agent.link import MarketLink
from provider_agent.memory_runtime import MemoryRuntime
from tests.agent.test_e2e import Tenant, _async, eventually, marketplace
from tests.agent.test_gang_bids import IMAGE, ONE_BOX, agent, config, said_about


async def _collect(link: MarketLink, into: list[FeedEvent]) -> None:
    async for event in link.watch(0):
        into.append(event)


def test_a_lease_won_just_before_the_agent_died_is_started_when_it_comes_back(
    tmp_path: Path,
) -> None:
    """The provider's key wins a lease and its feed token is saved past the LeaseWon (the agent
    was killed after saving it, before fetching the manifest): no container of the lease
    exists. The agent started with that key and token must still run the lease (before, it
    resumed after the event, never heard of the lease, and the lease sat until the market's
    manifest timeout). Restarted once more with its container running, it re-adopts it and
    starts nothing twice."""

    async def scenario() -> None:
        admin = Key.generate()
        key = Key.generate()
        state = tmp_path / "agent"
        async with marketplace(tmp_path, admin) as port:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            link = MarketLink(f"127.0.0.1:{port}", key)
            heard: list[FeedEvent] = []
            watching = asyncio.create_task(_collect(link, heard))
            try:
                await link.register(read_inventory(parse_config(config(port, state))), "", "")
                dep = await tenant.deploy(ONE_BOX.format(window="1s"))
                await eventually(lambda: _async(any(e.seq for e in heard)))  # the feed is live
                await link.place_bid(dep.order_ids[0], 3_000, Offer())
                won = await eventually(
                    lambda: _async(next((e for e in heard if isinstance(e, LeaseWon)), None))
                )
            finally:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
                await link.close()
            assert won.seq > 0
            # what the killed agent left: its token past the LeaseWon, and no container
            state.mkdir(parents=True, exist_ok=True)
            (state / "resume-token").write_text(str(won.seq))

            runtime = MemoryRuntime(key.address, images=[IMAGE])
            async with agent(tmp_path, port, "agent", key=key, runtime=runtime) as (a, said):
                running = await eventually(lambda: tenant.lease(dep.id, pb.LEASE_RUNNING))
                assert running.id == won.lease.id
                [container] = runtime.owned(won.lease.id)
                assert a.reservations.keys() == [f"lease:{won.lease.id}"]
                assert f"lease {won.lease.id}: starting job" in said

            # again, the token now past everything and the container running: re-adopted
            async with agent(tmp_path, port, "agent", key=key, runtime=runtime) as (a, said):
                assert any(s.startswith("re-adopted") and won.lease.id in s for s in said)
                # an order opened now comes after the leases listed at the connect: once it is
                # declined (no room beside the lease), the listed lease was heard
                other = await tenant.deploy(ONE_BOX.format(window="30s"))
                order_id = other.order_ids[0]
                why = await eventually(lambda: _async(said_about(said, order_id, "decline")))
                assert "memory" in why
                assert [c.id for c in runtime.owned(won.lease.id)] == [container.id]
                assert not any(s.startswith(f"lease {won.lease.id}: starting") for s in said)
                assert a.reservations.keys() == [f"lease:{won.lease.id}"]
            assert (await tenant.lease(dep.id, pb.LEASE_RUNNING)) is not None
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 120))
