"""Provider.Channel: one provider's long-lived two-way stream (DESIGN.md, decision 12).

Up come ProviderMessages: a sequence number, the name of a Provider rpc and exactly the
SignedRequest that rpc takes. Each is verified as the unary rpc verifies it (the signature over
the received bytes, this marketplace's id, the timestamp, a nonce never accepted twice) and runs
the same function (ProviderServicer.commands). Down go a ChannelAnswer per message, in the
order the messages arrived, with its seq; and the order feed once a WatchOrders command
started it (another WatchOrders restarts it from its resume token).

Commands are pipelined: each runs as soon as it is read, and its answer goes out once its
changes are durable (the committer writes many streams' commands in one transaction).
Signatures are checked on the event loop, as the unary rpcs do: `cryptography`'s Ed25519
verify holds the GIL (two threads verify no faster than one: 62 µs each either way), so a
thread only adds hand-offs; an A/B cut throughput by a quarter (982 against 1,272 bids/s).

Refusals: a message that fails (a bad signature, a stale one, an unknown method, the core's
refusal) gets an answer with the status the unary rpc would end with; the stream stays up, so
one bad message costs its sender that message only. The first message whose signature verifies
binds the stream to its signer; a message signed by another key is refused PERMISSION_DENIED.
A stream ends when the provider closes it (after its last answer), when its feed falls too far
behind (RESOURCE_EXHAUSTED: reconnect with the resume token), or with the transport.

Resends. A provider whose stream dropped opens another and resends the messages it holds no
answer for, with the SAME signed envelopes: each is answered as its first time, marked
already_applied, and runs nothing; the unary rpcs keep the same contract (server/once.py). An
envelope changed in any byte is a new message: its signature, nonce and timestamp are checked
afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from marketplace.api.channel import WATCH_ORDERS, answered, refused
from marketplace.api.envelope import open_envelope, signer_of
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import (
    InvalidArgument,
    MarketError,
    PermissionDenied,
    Unauthenticated,
)
from marketplace.core.limits import shown
from marketplace.identity import Resent, address_of
from marketplace.server.app import MarketApp, Submitted, WatcherOverflow
from marketplace.server.once import ANSWER_MEMORY_MS, AnswerBook, Command, Once

log = logging.getLogger("gpumarket.market")

# Messages read but not yet answered, per stream: beyond it the stream stops reading, and the
# provider's sends wait (HTTP/2 flow control).
MAX_UNANSWERED = 1024


async def provider_feed(
    app: MarketApp, signer: str, resume_token: int, with_leases: bool = False
) -> AsyncIterator[pb.ProviderEvent]:
    """A registered provider's order feed after `resume_token` (0: a snapshot of what is open
    first), then live; the same for Provider.WatchOrders and the channel. `with_leases`: a
    resumed feed starts with the provider's open leases too (the snapshot has them anyway).
    Raises WatcherOverflow when the provider reads too slowly."""
    watcher = app.subscribe(app.provider_watchers, signer)
    try:
        upto = app.committed_seq
        last = resume_token
        if last <= 0 or last > upto:  # fresh start, or a token from another marketplace
            snapshot = app.provider_snapshot(signer)
            for i, event in enumerate(snapshot):
                if i == len(snapshot) - 1:
                    event.seq = upto  # resuming from here misses nothing
                yield event
            last = upto
        else:
            # before the backlog: a lease whose event is behind the token but was never acted
            # on (the agent killed after saving the token) is still started
            for event in app.provider_leases(signer) if with_leases else ():
                yield event
            for event in app.provider_backlog(signer, last, upto):
                yield event
            last = upto
        while True:
            live = await watcher.get()
            if live is not None and live.seq > last:
                last = live.seq
                yield live
    finally:
        app.unsubscribe(app.provider_watchers, signer, watcher)


@dataclass(frozen=True, slots=True)
class _Pending:
    """An answer to send once its command is durable."""

    seq: int
    submitted: Submitted[Message]
    already_applied: bool


@dataclass(frozen=True, slots=True)
class _End:
    """The stream ends: with OK once answered (None), or with an error."""

    error: BaseException | None = None


_Out = pb.MarketMessage | _Pending | _End


class ProviderChannel:
    """One open stream: reads and runs commands, writes answers (in order) and the feed."""

    def __init__(self, app: MarketApp, commands: dict[str, Command[Any]], once: Once) -> None:
        self.app = app
        self.commands = commands
        self.once = once
        self.provider: str | None = None  # bound by the first message that verifies
        self._out: asyncio.Queue[_Out] = asyncio.Queue(MAX_UNANSWERED)
        self._feed: asyncio.Task[None] | None = None
        # a resume token and whether to send the provider's leases first: start the feed so
        self._feed_from: tuple[int, bool] | None = None

    async def serve(
        self, incoming: AsyncIterator[pb.ProviderMessage]
    ) -> AsyncIterator[pb.MarketMessage]:
        reader = asyncio.create_task(self._read(incoming), name="channel-reader")
        try:
            while True:
                item = await self._out.get()
                if isinstance(item, _Pending):
                    yield await self._answer(item)
                elif isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                else:
                    yield item
        finally:
            reader.cancel()
            if self._feed is not None:
                self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _answer(self, item: _Pending) -> pb.MarketMessage:
        try:
            reply = await item.submitted.result()
        except MarketError as exc:
            return refused(item.seq, exc, item.already_applied)
        return answered(item.seq, reply, item.already_applied)

    async def _read(self, incoming: AsyncIterator[pb.ProviderMessage]) -> None:
        end = _End()
        try:
            async for message in incoming:
                await self.app.ready()
                item = self._dispatch(message)
                if self._out.full():  # wait until the provider reads its answers
                    await self._out.put(item)
                else:
                    self._out.put_nowait(item)
                if self._feed_from is not None:
                    self._start_feed(*self._feed_from)
        except Exception as exc:  # the transport failed, or a bug: end the stream with it
            end = _End(exc)
        await self._out.put(end)

    # --- one message ---------------------------------------------------------------------------
    def _dispatch(self, message: pb.ProviderMessage) -> _Out:
        seq, request = message.seq, message.request
        try:
            return self._run(seq, message.method, request)
        except MarketError as exc:
            return refused(seq, exc)
        except Exception as exc:  # a bug: this message fails, the stream goes on
            log.error("internal error in a channel command", exc_info=exc)
            return refused(seq, MarketError(f"internal error: {type(exc).__name__}"))

    def _run(self, seq: int, method: str, request: pb.SignedRequest) -> _Out:
        signer = address_of(request.public_key)
        if self.provider is not None and signer != self.provider:
            self._check_signature(method, request)  # a forgery is UNAUTHENTICATED, as unary
            raise PermissionDenied(f"this stream is {self.provider}'s; {signer} signed this")
        if method == WATCH_ORDERS:
            return self._watch(seq, request)
        command = self.commands.get(method)
        if command is None:
            raise InvalidArgument(f"no command {shown(method)} on the provider channel")
        kept = self.once.kept(request)
        if kept is not None:
            return _Pending(seq, kept, True)
        fresh = self.once.fresh(request)
        if command.run is None:
            raise InvalidArgument(f"no command {shown(method)} on the provider channel")
        try:
            submitted = command.run(request)
        except Resent as resent:
            return self._again(seq, command, request, resent)
        except Unauthenticated:
            raise
        except MarketError as exc:  # verified, then refused (its nonce is spent)
            self._bind(signer)
            self.once.refused(request, exc, fresh)
            raise
        self._bind(signer)
        self.once.ran(request, submitted, command.result_of)
        return _Pending(seq, submitted, False)

    def _check_signature(self, method: str, request: pb.SignedRequest) -> None:
        """Raise Unauthenticated unless `request` is signed, as `method`'s, by its key."""
        command = self.commands.get(method)
        message_class: type[Message] | None = pb.WatchOrders if method == WATCH_ORDERS else None
        if command is not None:
            message_class = command.message_class
        if message_class is None:
            raise InvalidArgument(f"no command {shown(method)} on the provider channel")
        signer_of(request, message_class, market=self.app.market_id)

    def _again(
        self, seq: int, command: Command[Any], request: pb.SignedRequest, resent: Resent
    ) -> _Out:
        """A resend of an accepted envelope whose answer is no longer kept."""
        self._bind(address_of(request.public_key))  # verified before the guard spoke
        try:
            return answered(seq, self.once.again(command, request, resent), already_applied=True)
        except MarketError as exc:
            return refused(seq, exc, already_applied=True)

    def _bind(self, signer: str) -> None:
        if self.provider is None:
            self.provider = signer

    # --- the order feed ------------------------------------------------------------------------
    def _watch(self, seq: int, request: pb.SignedRequest) -> _Out:
        app = self.app
        signer, msg = open_envelope(  # a read: its nonce need not outlive a restart
            request, pb.WatchOrders, app.guard, market=app.market_id, durable=False
        )
        app.market.get_provider(signer)  # the feed is for registered providers (NotFound)
        self._bind(signer)
        self._feed_from = (msg.resume_token, msg.with_leases)  # started once this is queued
        return answered(seq, pb.Ack(ok=True, message="order feed started"))

    def _start_feed(self, resume_token: int, with_leases: bool) -> None:
        assert self.provider is not None
        self._feed_from = None
        if self._feed is not None:
            self._feed.cancel()
        self._feed = asyncio.create_task(
            self._pump(self.provider, resume_token, with_leases), name="channel-feed"
        )

    async def _pump(self, signer: str, resume_token: int, with_leases: bool) -> None:
        try:
            async for event in provider_feed(self.app, signer, resume_token, with_leases):
                await self._out.put(pb.MarketMessage(event=event))
        except WatcherOverflow as exc:
            await self._out.put(_End(exc))


__all__ = ["ANSWER_MEMORY_MS", "AnswerBook", "Command", "ProviderChannel", "provider_feed"]
