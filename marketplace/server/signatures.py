"""Envelope signatures checked on a thread, in batches, for the provider channel.

An Ed25519 verification takes 50-100 µs, and cryptography releases the GIL while it runs, so
the event loop (which runs the whole market) need not spend that time: the channel hands each
envelope here and awaits its signer. One thread takes whatever has queued up, checks it all,
and hands the results back to the loop in one call, so the cost on the loop is a queue put and
a future per envelope. What is checked here is the signature alone (for this marketplace and
the message type); the replay guard and the timestamp are checked on the loop when the command
runs (open_envelope(signed_by=...)), where the nonce table lives.
"""

from __future__ import annotations

import asyncio
import queue
import threading

from google.protobuf.message import Message

from marketplace.api.envelope import signer_of
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import MarketError

_Job = tuple[pb.SignedRequest, type[Message], "asyncio.Future[str]"]
_Result = tuple["asyncio.Future[str]", str | MarketError]
BATCH = 256  # at most this many checks per hand-back to the loop
IDLE_S = 10.0


class SignatureChecker:
    def __init__(self, market: str) -> None:
        self.market = market
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._working = False  # a thread takes jobs (it ends after IDLE_S without any)

    def signer(
        self, request: pb.SignedRequest, message_class: type[Message]
    ) -> asyncio.Future[str]:
        """Who signed this envelope for this marketplace as a `message_class`; the future
        raises Unauthenticated when the signature does not verify."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        with self._lock:
            self._jobs.put((request, message_class, future))
            if not self._working:
                self._working = True
                threading.Thread(
                    target=self._work, args=(loop,), name="signatures", daemon=True
                ).start()
        return future

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._working = False
                        return
                continue
            results: list[_Result] = [self._check(job)]
            while len(results) < BATCH:
                try:
                    results.append(self._check(self._jobs.get_nowait()))
                except queue.Empty:
                    break
            try:
                loop.call_soon_threadsafe(_deliver, results)
            except RuntimeError:  # the loop is closed: nobody waits any more
                with self._lock:
                    self._working = False
                return

    def _check(self, job: _Job) -> _Result:
        request, message_class, future = job
        try:
            return future, signer_of(request, message_class, market=self.market)
        except MarketError as exc:
            return future, exc


def _deliver(results: list[_Result]) -> None:
    for future, outcome in results:
        if future.done():  # its stream went away meanwhile
            continue
        if isinstance(outcome, MarketError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


__all__ = ["SignatureChecker"]
