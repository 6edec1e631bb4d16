"""Provider.Channel over real gRPC (port 0) and a real SQLite market: each message verified and
answered in order, refusals answered while the stream stays up, the order feed on the same
stream, resends never applied twice (also after a restart), heartbeats that keep leases alive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message

from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.core.config import MarketConfig
from marketplace.core.state import LeaseState
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from tests.helpers import await_until, funded_tenant

OK = 0
DEPOSIT = 100 * money.MICRO  # pays the orders' price for the 10 minutes the market asks


def code(status: grpc.StatusCode) -> int:
    number: int = status.value[0]
    return number


class RawChannel:
    """A provider's Channel stream, spoken by hand: what goes up and what comes down."""

    def __init__(self, address: str, key: Key) -> None:
        self.key = key
        self.channel = grpc.aio.insecure_channel(address)
        self.outbox: asyncio.Queue[pb.ProviderMessage | None] = asyncio.Queue()
        self.call = pb_grpc.ProviderStub(self.channel).Channel(self._requests())
        self.seq = 0
        self.events: list[pb.ProviderEvent] = []
        self.market = ""

    async def open(self) -> RawChannel:
        info = await pb_grpc.MarketStub(self.channel).Info(pb.MarketInfoRequest(), timeout=10)
        self.market = info.market_id
        return self

    async def _requests(self) -> AsyncIterator[pb.ProviderMessage]:
        while (message := await self.outbox.get()) is not None:
            yield message

    def seal(self, message: Message, key: Key | None = None) -> pb.SignedRequest:
        return seal(key or self.key, message, market=self.market)

    def send(self, method: str, request: pb.SignedRequest) -> int:
        self.seq += 1
        self.outbox.put_nowait(pb.ProviderMessage(seq=self.seq, method=method, request=request))
        return self.seq

    async def answer(self) -> pb.ChannelAnswer:
        """The next answer (feed events read meanwhile are kept in `events`)."""
        while True:
            message = await asyncio.wait_for(self.call.read(), 10)
            assert isinstance(message, pb.MarketMessage), "the stream ended"
            if message.HasField("answer"):
                return message.answer
            self.events.append(message.event)

    async def ask(self, method: str, request: pb.SignedRequest) -> pb.ChannelAnswer:
        seq = self.send(method, request)
        answer = await self.answer()
        assert answer.seq == seq
        return answer

    async def event(self, matches: Callable[[pb.ProviderEvent], bool]) -> pb.ProviderEvent:
        while True:
            for event in self.events:
                if matches(event):
                    self.events.remove(event)
                    return event
            message = await asyncio.wait_for(self.call.read(), 10)
            assert isinstance(message, pb.MarketMessage) and message.HasField("event"), message
            self.events.append(message.event)

    async def close(self) -> None:
        self.outbox.put_nowait(None)
        await self.channel.close(grace=None)


async def registered(address: str, name: str = "p") -> RawChannel:
    stream = await RawChannel(address, Key.generate()).open()
    answer = await stream.ask("Register", stream.seal(provider_registration(name)))
    assert answer.code == OK, answer.message
    return stream


def bid(order_id: str, price: int = 1000) -> pb.PlaceBid:
    return pb.PlaceBid(order_id=order_id, price_per_hour=price)


def bids_of(server: ServerThread, provider: str) -> list[str]:
    return server.call(
        lambda: sorted(
            b.order_id for b in server.app.market.state.bids.values() if b.provider == provider
        )
    )


def run(scenario: Callable[[], Coroutine[object, object, None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path) as running:
        yield running


def test_a_provider_bids_over_the_stream_and_wins(server: ServerThread) -> None:
    tenant = funded_tenant(server.address, server.admin, 10**4 * money.MICRO)

    async def scenario() -> None:
        stream = await registered(server.address)
        watching = await stream.ask("WatchOrders", stream.seal(pb.WatchOrders()))
        assert watching.code == OK
        order_id = tenant.create_deployment(gpu_sdl("1s", 1_000_000), DEPOSIT).order_ids[0]
        opened = await stream.event(lambda e: e.order_opened.id == order_id)
        assert opened.seq > 0  # a resume token
        answer = await stream.ask("PlaceBid", stream.seal(bid(order_id)))
        assert answer.code == OK and not answer.already_applied
        placed = pb.Bid.FromString(answer.reply)
        assert (placed.order_id, placed.provider) == (order_id, stream.key.address)
        won = await stream.event(lambda e: e.WhichOneof("event") == "lease_won")
        assert won.lease_won.order_id == order_id
        assert won.lease_won.provider == stream.key.address
        await stream.close()

    run(scenario)


def test_answers_come_in_order_with_their_seq_while_commands_pipeline(
    server: ServerThread,
) -> None:
    tenant = funded_tenant(server.address, server.admin, 10**5 * money.MICRO)
    orders = [
        tenant.create_deployment(gpu_sdl("5m", 1_000_000), DEPOSIT).order_ids[0] for _ in range(20)
    ]

    async def scenario() -> None:
        stream = await registered(server.address)
        sent = [stream.send("PlaceBid", stream.seal(bid(o))) for o in orders]
        sent.append(stream.send("Heartbeat", stream.seal(pb.Heartbeat())))
        answers = [await stream.answer() for _ in sent]
        assert [a.seq for a in answers] == sent
        assert all(a.code == OK for a in answers), [a.message for a in answers if a.code]
        assert [pb.Bid.FromString(a.reply).order_id for a in answers[:-1]] == orders
        assert pb.HeartbeatResponse.FromString(answers[-1].reply).server_time_ms > 0
        # the provider closes its side: what it sent is answered, then the stream ends OK
        await stream.outbox.put(None)
        assert not isinstance(await stream.call.read(), pb.MarketMessage)  # EOF
        assert await stream.call.code() == grpc.StatusCode.OK
        await stream.channel.close(grace=None)

    run(scenario)


def test_each_message_is_verified_and_a_refusal_leaves_the_stream_up(
    server: ServerThread,
) -> None:
    tenant = funded_tenant(server.address, server.admin, 10**4 * money.MICRO)
    order_id = tenant.create_deployment(gpu_sdl("5m", 1_000_000), DEPOSIT).order_ids[0]

    async def scenario() -> None:
        stream = await registered(server.address)
        forged = stream.seal(bid(order_id))
        forged.signature = bytes([forged.signature[0] ^ 1]) + forged.signature[1:]
        answer = await stream.ask("PlaceBid", forged)
        assert answer.code == code(grpc.StatusCode.UNAUTHENTICATED)
        assert "bad signature" in answer.message and answer.error == "Unauthenticated"

        elsewhere = seal(stream.key, bid(order_id), market="gm1another")
        answer = await stream.ask("PlaceBid", elsewhere)
        assert answer.code == code(grpc.StatusCode.UNAUTHENTICATED)
        assert "another marketplace" in answer.message

        as_payload_of_another_type = stream.seal(pb.Heartbeat())
        answer = await stream.ask("PlaceBid", as_payload_of_another_type)
        assert answer.code == code(grpc.StatusCode.UNAUTHENTICATED)

        stranger = Key.generate()
        answer = await stream.ask("PlaceBid", stream.seal(bid(order_id), key=stranger))
        assert answer.code == code(grpc.StatusCode.PERMISSION_DENIED)
        assert stranger.address in answer.message

        answer = await stream.ask("Transfer", stream.seal(bid(order_id)))
        assert answer.code == code(grpc.StatusCode.INVALID_ARGUMENT)
        assert "no command" in answer.message

        answer = await stream.ask("PlaceBid", stream.seal(bid("o-missing")))
        assert answer.code == code(grpc.StatusCode.NOT_FOUND)
        assert answer.error == "NotFound"

        assert bids_of(server, stream.key.address) == []
        answer = await stream.ask("PlaceBid", stream.seal(bid(order_id)))  # still up
        assert answer.code == OK
        assert bids_of(server, stream.key.address) == [order_id]
        assert bids_of(server, stranger.address) == []
        await stream.close()

    run(scenario)


def test_a_first_message_with_a_bad_signature_binds_nothing(server: ServerThread) -> None:
    async def scenario() -> None:
        victim, stream = Key.generate(), await registered(server.address)
        forged = stream.seal(pb.Heartbeat(), key=victim)
        forged.signature = bytes(64)
        fresh = await RawChannel(server.address, stream.key).open()
        answer = await fresh.ask("Heartbeat", forged)
        assert answer.code == code(grpc.StatusCode.UNAUTHENTICATED)
        answer = await fresh.ask("Heartbeat", fresh.seal(pb.Heartbeat()))
        assert answer.code == OK  # the stream is its first verified signer's
        await fresh.close()
        await stream.close()

    run(scenario)


def test_a_resent_envelope_is_answered_again_and_applied_once(server: ServerThread) -> None:
    tenant = funded_tenant(server.address, server.admin, 10**4 * money.MICRO)
    order_id = tenant.create_deployment(gpu_sdl("5m", 1_000_000), DEPOSIT).order_ids[0]

    async def scenario() -> None:
        stream = await registered(server.address)
        envelope = stream.seal(bid(order_id))
        first = await stream.ask("PlaceBid", envelope)
        again = await stream.ask("PlaceBid", envelope)
        assert first.code == again.code == OK
        assert not first.already_applied and again.already_applied
        assert again.reply == first.reply

        # on another stream of the same provider (a reconnect) too
        other = await RawChannel(server.address, stream.key).open()
        third = await other.ask("PlaceBid", envelope)
        assert third.code == OK and third.already_applied and third.reply == first.reply

        # a refused envelope is refused again the same way, and still applied once
        refused = stream.seal(bid(order_id))
        answer = await stream.ask("PlaceBid", refused)
        assert answer.code == code(grpc.StatusCode.ALREADY_EXISTS)
        answer = await stream.ask("PlaceBid", refused)
        assert answer.code == code(grpc.StatusCode.ALREADY_EXISTS) and answer.already_applied

        # the same nonce with any byte changed is a forgery, not a resend
        changed = pb.SignedRequest()
        changed.CopyFrom(envelope)
        changed.payload = bid(order_id, price=999).SerializeToString()
        answer = await stream.ask("PlaceBid", changed)
        assert answer.code == code(grpc.StatusCode.UNAUTHENTICATED)
        await other.close()
        await stream.close()

        # the unary rpc keeps the same contract: the envelope the stream applied gets its
        # answer again, the changed one is refused
        channel = grpc.aio.insecure_channel(server.address)
        stub = pb_grpc.ProviderStub(channel)
        assert await stub.PlaceBid(envelope, timeout=10) == pb.Bid.FromString(first.reply)
        with pytest.raises(grpc.aio.AioRpcError) as refusal:
            await stub.PlaceBid(changed, timeout=10)
        assert refusal.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await channel.close(grace=None)

    run(scenario)
    assert len(server.call(lambda: list(server.app.market.list_bids(order_id)))) == 1


def test_a_resend_after_a_restart_is_answered_from_the_state_not_applied_again(
    tmp_path: Path,
) -> None:
    with ServerThread(tmp_path) as server:
        tenant = funded_tenant(server.address, server.admin, 10**4 * money.MICRO)
        order_id = tenant.create_deployment(gpu_sdl("5m", 1_000_000), DEPOSIT).order_ids[0]
        key = Key.generate()

        async def before() -> tuple[pb.SignedRequest, pb.ChannelAnswer]:
            stream = await RawChannel(server.address, key).open()
            assert (
                await stream.ask("Register", stream.seal(provider_registration("p")))
            ).code == OK
            envelope = stream.seal(bid(order_id))
            answer = await stream.ask("PlaceBid", envelope)
            await stream.close()
            return envelope, answer

        envelope, first = asyncio.run(before())
        assert first.code == OK
    with ServerThread(tmp_path) as server:  # the same data dir: nonces kept, answers not

        async def after() -> pb.ChannelAnswer:
            stream = await RawChannel(server.address, key).open()
            answer = await stream.ask("PlaceBid", envelope)
            await stream.close()
            return answer

        again = asyncio.run(after())
        assert again.code == OK and again.already_applied
        assert pb.Bid.FromString(again.reply).id == pb.Bid.FromString(first.reply).id
        assert server.call(lambda: len(server.app.market.list_bids(order_id))) == 1


def test_heartbeats_over_the_stream_keep_a_lease_alive(tmp_path: Path) -> None:
    config = MarketConfig(heartbeat_timeout_ms=1500, heartbeat_interval_ms=300)
    with ServerThread(tmp_path, config) as server:
        tenant = funded_tenant(server.address, server.admin, 10**4 * money.MICRO)

        def lease_state(lease_id: str) -> LeaseState:
            return server.call(lambda: server.app.market.get_lease(lease_id).state)

        async def scenario() -> None:
            stream = await registered(server.address)
            await stream.ask("WatchOrders", stream.seal(pb.WatchOrders()))
            order_id = tenant.create_deployment(gpu_sdl("300ms", 1_000_000), DEPOSIT).order_ids[0]
            await stream.event(lambda e: e.order_opened.id == order_id)
            assert (await stream.ask("PlaceBid", stream.seal(bid(order_id)))).code == OK
            won = (await stream.event(lambda e: e.HasField("lease_won"))).lease_won
            running = pb.LeaseStatusReport(lease_id=won.id, state=pb.LEASE_RUNNING)
            assert (await stream.ask("ReportLeaseStatus", stream.seal(running))).code == OK
            loop = asyncio.get_running_loop()
            until = loop.time() + 3.0  # twice the timeout
            while loop.time() < until:
                beat = pb.Heartbeat(running_lease_ids=[won.id])
                answer = await stream.ask("Heartbeat", stream.seal(beat))
                assert answer.code == OK
                assert list(pb.HeartbeatResponse.FromString(answer.reply).unknown_lease_ids) == []
                await asyncio.sleep(0.3)
            assert lease_state(won.id) == LeaseState.RUNNING
            # silent now: the market gives the lease up after the timeout
            await await_until(
                lambda: _async(lease_state(won.id) == LeaseState.CLOSED), 10, "the lease lost"
            )
            await stream.close()

        asyncio.run(scenario())


async def _async(value: bool) -> bool:
    return value


def test_a_new_stream_says_it_is_open_before_any_message(server: ServerThread) -> None:
    async def scenario() -> None:
        stream = await RawChannel(server.address, Key.generate()).open()
        await asyncio.wait_for(stream.call.wait_for_connection(), 10)  # nothing sent yet
        await stream.close()

    run(scenario)
