"""The agent's link on its one stream, through a TCP relay that can hold the market's replies
back and cut the connection: a stream cut in the middle of a burst of bids is opened again and
the unanswered bids resent unchanged, so every bid is recorded exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from marketplace.core import money
from marketplace.core.errors import Unavailable
from marketplace.core.provider_feed import OrderOpened
from marketplace.core.state import Bid, Offer
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl
from provider_agent.agent import read_inventory
from provider_agent.config import load_config
from provider_agent.link import MarketLink
from tests.helpers import EXAMPLES, await_until, funded_tenant

DEPOSIT = 100 * money.MICRO
BURST = 100


class Relay:
    """A TCP relay to the market. hold() stops passing the market's bytes on (they are read and
    dropped), cut() ends every connection; new connections pass everything."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.held = False
        self.connections: list[asyncio.StreamWriter] = []
        self.relaying: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.relaying.add(task)
        market_in, market_out = await asyncio.open_connection(*self.target)
        self.connections += [client_out, market_out]
        held = self.held

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, holdable: bool
        ) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if not (holdable and (held or self.held)):
                        dst.write(data)
                        await dst.drain()
            dst.close()

        await asyncio.gather(pipe(client_in, market_out, False), pipe(market_in, client_out, True))

    def hold(self) -> None:
        self.held = True

    def cut(self) -> None:
        self.held = False
        for writer in self.connections:
            writer.transport.abort()
        self.connections.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.gather(*self.relaying, return_exceptions=True)


def test_a_stream_cut_mid_burst_resumes_with_every_bid_recorded_once(tmp_path: Path) -> None:
    inventory = read_inventory(load_config(EXAMPLES / "provider-h100-replay.toml"))
    sdl = gpu_sdl("5m", 1_000_000).replace(b"region: eu}", b"region: eu-west}")
    with ServerThread(tmp_path) as server:
        tenant = funded_tenant(server.address, server.admin, 10**5 * money.MICRO)
        orders = [tenant.create_deployment(sdl, DEPOSIT).order_ids[0] for _ in range(BURST)]
        key = Key.generate()

        def recorded() -> list[str]:
            bids = server.app.market.state.bids.values()
            return [b.order_id for b in bids if b.provider == key.address]

        async def scenario() -> list[Bid]:
            relay = Relay(server.address)
            link = MarketLink(await relay.start(), key, timeout_s=30)
            try:
                await link.register(inventory, "https://p.example", "eu-west")
                relay.hold()  # the market gets the bids; their answers never arrive
                burst = [
                    asyncio.create_task(link.place_bid(order, 1000, Offer())) for order in orders
                ]

                async def half_recorded() -> bool:
                    return len(server.call(recorded)) >= BURST // 2

                await await_until(half_recorded, 30, "half the bids recorded")
                relay.cut()  # mid-burst: some applied, none answered
                placed = await asyncio.gather(*burst)
                assert link.counters.streams_opened == 2
                assert link.counters.resent >= BURST // 2
                assert link.counters.already_applied >= BURST // 2
                return placed
            finally:
                await link.close()
                await relay.close()

        placed = asyncio.run(scenario())
        assert sorted(b.order_id for b in placed) == sorted(orders)
        assert {b.provider for b in placed} == {key.address}
        assert sorted(server.call(recorded)) == sorted(orders)  # each exactly once

        def bids_on(order_id: str) -> int:
            return len(server.app.market.list_bids(order_id))

        assert [server.call(bids_on, order) for order in orders] == [1] * BURST


def test_the_order_feed_ends_when_the_stream_drops_and_calls_fail_fast_while_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inventory = read_inventory(load_config(EXAMPLES / "provider-h100-replay.toml"))
    sdl = gpu_sdl("5m", 1_000_000).replace(b"region: eu}", b"region: eu-west}")
    with ServerThread(tmp_path) as server:
        tenant = funded_tenant(server.address, server.admin, 10**4 * money.MICRO)

        async def scenario() -> None:
            relay = Relay(server.address)
            link = MarketLink(await relay.start(), Key.generate(), timeout_s=10)
            try:
                await link.register(inventory, "https://p.example", "eu-west")
                feed = link.watch(0)
                order_id = tenant.create_deployment(sdl, DEPOSIT).order_ids[0]
                event = await asyncio.wait_for(anext(feed), 10)
                assert isinstance(event, OrderOpened) and event.order.id == order_id
                relay.cut()
                try:
                    await asyncio.wait_for(anext(feed), 10)
                    raise AssertionError("the feed went on after its stream dropped")
                except Unavailable as exc:
                    assert "dropped" in str(exc)
                # the link opens a new stream by itself; a watch resumes from the token
                resumed = link.watch(event.seq)
                second = tenant.create_deployment(sdl, DEPOSIT).order_ids[0]
                event = await asyncio.wait_for(anext(resumed), 10)
                assert isinstance(event, OrderOpened) and event.order.id == second
                gc.collect()  # what the dropped stream left behind, finalized now
                await asyncio.sleep(0)  # (a finalized async generator closes on the loop)
                assert isinstance(resumed, AsyncGenerator)
                await resumed.aclose()
            finally:
                await link.close()
                await relay.close()

        asyncio.run(scenario())
    # nothing of the dropped stream died noisily ("aclose(): asynchronous generator is already
    # running", "Task was destroyed but it is pending")
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
