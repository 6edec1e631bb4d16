"""Each signed command runs once: a resend of its envelope is answered, never run again.

A client resends THE SAME SEALED BYTES when it got no answer: its deadline passed, its stream
dropped, or the leader died and a standby took over (api/client.py). The command may have been
applied all the same. So for every command that changes the market (the unary rpcs and the
provider's channel alike):

- the same envelope again (same key and nonce, same bytes: identity.envelope_digest) gets the
  first answer: the one kept in memory (AnswerBook, ANSWER_MEMORY_MS, one still being made
  durable too), else its equivalent read from the state now (Command.again), marked
  already_applied on the channel; a refusal gets the same refusal. It never runs twice.
- what a command came to is written with its nonce, in the command's own transaction (the
  ReplayGuard's settle(), store_api.nonces_batch): "=" and the result a resend's answer is found
  by (a new deployment's id, a lease's id; often nothing, where the request names it), or "!"
  and the refusal (its class and message). So after a restart, or on a standby that took over,
  a resend is answered as before. It is forgotten with the nonce, once the nonce is stale.
- the same nonce on other bytes is refused UNAUTHENTICATED (replayed), as before.

A unary command runs in a task of its own. Some take steps after their nonce is accepted and
before they run (a manifest parsed off the loop): a resend that comes meanwhile waits for that
task and gets its answer, and a caller that gives up (its deadline passed: gRPC cancels the
rpc) does not stop the command half-way. A nonce accepted without an outcome (the server died
before the command ran) is answered from the state where the request names what to read, else
FAILED_PRECONDITION saying so.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from marketplace.api.envelope import signature_of
from marketplace.api.status import ERROR_KEY, details_of, error_from_status, error_name
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import FailedPrecondition, MarketError, Unavailable
from marketplace.identity import Resent, address_of
from marketplace.identity import envelope_digest as _digest
from marketplace.server.app import MarketApp, Submitted

R = TypeVar("R", bound=Message)
Reply = TypeVar("Reply", bound=Message)

# How long the answer of an accepted envelope is kept for a resend (the agent reconnects within
# a few seconds: backoff from 0.2 s, at most 5 s); after it, a resend is answered from the state
ANSWER_MEMORY_MS = 10_000
# ... and at most this many, oldest forgotten first (under 1 KiB each: at most ~20 MiB)
MAX_ANSWERS = 25_000


def _nothing(reply: Any) -> str:
    return ""


@dataclass(frozen=True, slots=True)
class Command(Generic[Reply]):
    """One command rpc, as both the unary rpc and the channel run it."""

    message_class: type[Message]
    # opens the envelope (verify, replay guard) and runs the command now; raises MarketError.
    # None: the unary rpc runs it in steps of its own (Once.unary's `run`)
    run: Callable[[pb.SignedRequest], Submitted[Reply]] | None
    # the answer to a resend whose first answer is forgotten, read from the state now (from
    # the signer, its envelope, and the result recorded with its nonce: None when none was);
    # None: a resend is FAILED_PRECONDITION
    again: Callable[[str, pb.SignedRequest, str | None], Reply] | None = None
    # what of the reply to record with the nonce, for `again` after a restart
    result_of: Callable[[Any], str] = _nothing


def envelope_digest(request: pb.SignedRequest) -> bytes:
    """What makes two envelopes the same message: every signed byte and the signature."""
    return _digest(request.payload, signature_of(request))


@dataclass(slots=True)
class _Kept:
    kept_at_ms: int
    digest: bytes
    submitted: Submitted[Any]


class AnswerBook:
    """The answers of accepted envelopes, by public key and nonce, for resends (see above)."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._kept: OrderedDict[bytes, _Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, request: pb.SignedRequest, submitted: Submitted[Any]) -> None:
        now = self._now_ms()
        self._kept[request.public_key + request.nonce] = _Kept(
            now, envelope_digest(request), submitted
        )
        self._forget(now)

    def find(self, request: pb.SignedRequest) -> Submitted[Any] | None:
        """The answer kept for this very envelope, if any."""
        kept = self._kept.get(request.public_key + request.nonce)
        if kept is None or kept.digest != envelope_digest(request):
            return None
        return kept.submitted

    def _forget(self, now: int) -> None:
        cutoff = now - ANSWER_MEMORY_MS
        kept = self._kept
        while kept:
            oldest = next(iter(kept.values()))
            if oldest.kept_at_ms >= cutoff and len(kept) <= MAX_ANSWERS:
                return
            if not oldest.submitted.durable():
                return  # in order: what follows is newer still
            kept.popitem(last=False)


def refusal_text(exc: MarketError) -> str:
    """A refusal as its nonce's outcome: the class to raise again and the message."""
    return f"!{error_name(exc)} {details_of(exc)}"


def refusal_from(outcome: str) -> MarketError:
    name, _, details = outcome[1:].partition(" ")
    error = error_from_status(grpc.StatusCode.UNKNOWN, details, [(ERROR_KEY, name)])
    return error if error is not None else MarketError(details)


class Once:
    """The server's one book of answers, and the steps every command's rpc takes around it."""

    def __init__(self, app: MarketApp) -> None:
        self.app = app
        self.book = AnswerBook(app.clock.now_ms)
        # unary commands not yet run, by public key and nonce: the envelope's digest, and the
        # task that opens and runs it
        self._preparing: dict[bytes, tuple[bytes, asyncio.Task[Submitted[Any]]]] = {}

    def kept(self, request: pb.SignedRequest) -> Submitted[Any] | None:
        return self.book.find(request)

    def fresh(self, request: pb.SignedRequest) -> bool:
        """Whether this nonce is new here (call before the command opens the envelope)."""
        return not self.app.guard.accepted(request.public_key, request.nonce)

    def ran(
        self, request: pb.SignedRequest, submitted: Submitted[R], result_of: Callable[[R], str]
    ) -> None:
        """Record what the command that opened `request` came to: in memory for a resend now,
        and with its nonce (in the command's own transaction: call before the loop moves on)."""
        outcome = submitted.outcome
        if isinstance(outcome, Unavailable):
            return  # nothing was applied: the store refused (a deposed leader)
        text = (
            refusal_text(outcome) if isinstance(outcome, MarketError) else "=" + result_of(outcome)
        )
        self.app.guard.settle(request.public_key, request.nonce, text)
        self.book.keep(request, submitted)

    def refused(self, request: pb.SignedRequest, exc: MarketError, fresh: bool) -> None:
        """A command that opened `request` (its nonce new before: `fresh`) refused it."""
        if not fresh or isinstance(exc, Unavailable | Resent) or self.fresh(request):
            return  # a replay or forgery, not this envelope's own refusal; or never accepted
        self.app.guard.settle(request.public_key, request.nonce, refusal_text(exc))
        self.book.keep(request, Submitted(exc, None))

    def again(self, command: Command[R], request: pb.SignedRequest, resent: Resent) -> R:
        """The answer to a resend whose first answer is no longer kept; raises the refusal."""
        signer = address_of(request.public_key)  # verified before the guard spoke
        outcome = resent.seen.outcome
        if outcome is not None and outcome.startswith("!"):
            raise refusal_from(outcome)
        if command.again is None:
            raise FailedPrecondition(
                "this request was applied before and its answer is no longer kept; "
                "ask again with a new one"
            )
        return command.again(signer, request, None if outcome is None else outcome[1:])

    async def unary(
        self,
        command: Command[R],
        request: pb.SignedRequest,
        run: Callable[[pb.SignedRequest], Awaitable[Submitted[R]]] | None = None,
    ) -> R:
        """A unary rpc of `command`: its answer, once durable. `run`: the command's own steps
        when some must be awaited before it runs (a manifest parsed off the loop)."""
        kept = self.kept(request)
        if kept is not None:
            return await kept.result()
        await self.app.ready()
        key, digest = request.public_key + request.nonce, envelope_digest(request)
        preparing = self._preparing.get(key)
        if preparing is not None and preparing[0] == digest:
            task = preparing[1]  # its first copy is still being prepared: that one's answer
        else:
            task = asyncio.ensure_future(self._run(command, request, run, self.fresh(request)))
            if preparing is None:  # (the same nonce on other bytes is refused: replayed)
                self._preparing[key] = (digest, task)
                task.add_done_callback(lambda _: self._preparing.pop(key, None))
        submitted = await asyncio.shield(task)  # a caller that gives up leaves it running
        if isinstance(submitted.outcome, Resent):
            return self.again(command, request, submitted.outcome)
        return await submitted.result()

    async def _run(
        self,
        command: Command[R],
        request: pb.SignedRequest,
        run: Callable[[pb.SignedRequest], Awaitable[Submitted[R]]] | None,
        fresh: bool,
    ) -> Submitted[R]:
        """Open `request` and run its command (its own steps first, where it has some), and
        record what it came to; a refusal is the outcome, not raised."""
        try:
            if run is not None:
                submitted = await run(request)
            else:
                assert command.run is not None
                submitted = command.run(request)
        except MarketError as exc:  # Resent too: the caller answers it (again())
            self.refused(request, exc, fresh)
            return Submitted(exc, None)
        self.ran(request, submitted, command.result_of)
        return submitted


__all__ = ["ANSWER_MEMORY_MS", "AnswerBook", "Command", "Once", "envelope_digest"]
