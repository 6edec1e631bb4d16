"""Tenant shells and file copies, relayed over streams the provider opens (DESIGN.md decision 12).

A provider needs no inbound port: its agent keeps `Provider.Sessions` open, and the market sends
a SessionRequest down it when the lease's tenant opens `Tenant.Shell`. The agent answers by
opening `Provider.SessionIO` for that session (one HTTP/2 stream per session, so each has its
own flow control), and from then on the market copies frames between the two streams:

    tenant ──Shell──▶ market ──SessionIO──▶ agent ──docker exec──▶ container
           ◀────────        ◀─────────────        ◀─────────────

Each stream opens with one signed request (the `open` field of its first frame): the tenant's
ShellOpen, which only the lease's tenant may sign, and the agent's SessionAccept, signed by the
lease's provider and naming the session id the market issued for it. Nonces are durable, as for
any command: a replayed opening must not run its command again, even after a restart. The
frames after an opening are not signed one by one: they are bound to the authenticated opening
by the stream they travel on (TLS off loopback). Signing each keystroke would add an Ed25519
signature and a verification (~0.1 ms) and ~100 bytes to every byte typed, and buy nothing
against the market, which relays them anyway and which the agent already trusts to name the
tenant of a lease.

Each side's handler reads only its own stream (a context is read by the call that owns it) and
writes to the other's; write() waits for HTTP/2 flow control, so a slow reader slows its writer
and nothing piles up here. A session ends when the provider's side sends its exit (or error)
frame or goes, or when the tenant goes: both handlers then return. Bounds: a frame's bytes
(limits.MAX_SHELL_FRAME_BYTES), open sessions per lease and in all; a provider that does not
answer a session request within `answer_timeout_s` is reported UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from marketplace.api.envelope import open_envelope
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import limits
from marketplace.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from marketplace.core.state import Lease, LeaseState

if TYPE_CHECKING:
    from marketplace.server.app import MarketApp

log = logging.getLogger("gpumarket.relay")

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
M = TypeVar("M", bound=Message)
ANSWER_TIMEOUT_S = 10.0  # a provider's agent opens SessionIO within this, or the tenant hears so


class ProviderSilent(Unavailable):
    """The provider did not answer a session request in time, or has no session stream open."""


@dataclass(eq=False)
class _Line:
    """One provider agent's open Sessions stream: where its session requests go."""

    shell_enabled: bool
    max_copy_bytes: int
    queue: asyncio.Queue[pb.SessionRequest | None] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class _Writes:
    """The writes to one side's stream: one at a time, each finished even when its writer is
    cancelled, and none after close(). gRPC refuses to end a call (abort or return) while a
    write is in flight on it (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS, and the call then hangs), so
    each handler closes the writes to its own stream before it ends."""

    context: Context
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    async def write(self, frame: pb.ShellFrame) -> None:
        async with self.lock:
            if self.closed:
                return
            sending = asyncio.ensure_future(self.context.write(frame))
            try:
                await asyncio.shield(sending)
            except asyncio.CancelledError:
                await asyncio.gather(sending, return_exceptions=True)
                raise

    async def close(self) -> None:
        async with self.lock:
            self.closed = True


@dataclass(eq=False)
class _Session:
    id: str
    lease_id: str
    provider: str
    tenant: _Writes
    answered: asyncio.Future[_Writes]  # writes to the provider's SessionIO, once it opened it
    provider_done: asyncio.Event = field(default_factory=asyncio.Event)
    tenant_gone: asyncio.Event = field(default_factory=asyncio.Event)
    exited: bool = False  # the provider sent the exit or error frame


class Relay:
    """Pairs tenants' Shell streams with providers' SessionIO streams, and copies frames."""

    def __init__(self, app: MarketApp, answer_timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.app = app
        self.answer_timeout_s = answer_timeout_s
        self._lines: dict[str, _Line] = {}
        self._waiting: dict[str, _Session] = {}
        self._open_by_lease: Counter[str] = Counter()

    @property
    def open_sessions(self) -> int:
        return sum(self._open_by_lease.values())

    # --- the provider's request stream -----------------------------------------------------
    async def sessions(self, request: pb.SignedRequest) -> AsyncIterator[pb.SessionRequest]:
        """Provider.Sessions: the session requests for the signer's leases, until it goes. A
        newer stream of the same provider replaces an older one (the older one ends)."""
        signer, msg = self._open(request, pb.SessionsOpen)
        await self.app.run(lambda: self.app.market.get_provider(signer), lambda _: None)
        line = _Line(msg.shell_enabled, max(0, msg.max_copy_bytes))
        previous = self._lines.get(signer)
        if previous is not None:
            previous.queue.put_nowait(None)
        self._lines[signer] = line
        try:
            while (item := await line.queue.get()) is not None:
                yield item
        finally:
            if self._lines.get(signer) is line:
                del self._lines[signer]

    # --- the tenant's side -----------------------------------------------------------------
    async def tenant_session(self, context: Context) -> None:
        """Tenant.Shell: check the opening, ask the provider, then relay until the session ends."""
        signer, msg = self._open(await _first(context, "ShellOpen"), pb.ShellOpen)
        _check_open(msg)
        lease = await self.app.run(lambda: self._lease_for(signer, msg.lease_id), lambda x: x)
        line = self._line_for(lease, msg)
        if self._open_by_lease[lease.id] >= limits.MAX_SESSIONS_PER_LEASE:
            raise FailedPrecondition(
                f"lease {lease.id} has {limits.MAX_SESSIONS_PER_LEASE} sessions open, the most "
                "allowed at once: close one first"
            )
        if self.open_sessions >= limits.MAX_SESSIONS:
            raise ProviderSilent("the marketplace relays as many sessions as it can: try later")
        session = _Session(
            secrets.token_hex(16),
            lease.id,
            lease.provider,
            _Writes(context),
            asyncio.get_running_loop().create_future(),
        )
        self._open_by_lease[lease.id] += 1
        try:
            self._waiting[session.id] = session
            line.queue.put_nowait(pb.SessionRequest(session_id=session.id, open=msg, tenant=signer))
            provider = await self._answer(session)
            await self._relay_tenant(session, provider)
        finally:
            self._waiting.pop(session.id, None)
            session.tenant_gone.set()
            await session.tenant.close()
            self._open_by_lease[lease.id] -= 1
            if self._open_by_lease[lease.id] <= 0:
                del self._open_by_lease[lease.id]
        if not session.exited:
            raise ProviderSilent(
                f"provider {lease.provider} ended the session without an exit status "
                "(its agent stopped or lost the marketplace)"
            )

    def _lease_for(self, signer: str, lease_id: str) -> Lease:
        lease = self.app.market.get_lease(lease_id)
        if lease.tenant != signer:
            raise PermissionDenied(f"lease {lease_id} is not yours")
        if lease.state != LeaseState.RUNNING:
            raise FailedPrecondition(
                f"lease {lease_id} is {lease.state.value}, not running: a shell needs a running "
                "lease"
            )
        return lease

    def _line_for(self, lease: Lease, msg: pb.ShellOpen) -> _Line:
        line = self._lines.get(lease.provider)
        if line is None:
            raise ProviderSilent(
                f"provider {lease.provider} has no session stream open: its agent is offline "
                "or too old for shells"
            )
        if not line.shell_enabled:
            raise FailedPrecondition(
                f"provider {lease.provider} has switched shell access off ([shell] enabled = "
                "false in its agent's config): shell and cp are refused on its leases"
            )
        if msg.copy_to and line.max_copy_bytes and msg.copy_size > line.max_copy_bytes:
            raise FailedPrecondition(
                f"{msg.copy_size:,} bytes is over provider {lease.provider}'s limit of "
                f"{line.max_copy_bytes:,} bytes for one copied file"
            )
        return line

    async def _answer(self, session: _Session) -> _Writes:
        try:
            return await asyncio.wait_for(
                asyncio.shield(session.answered), timeout=self.answer_timeout_s
            )
        except TimeoutError:
            raise ProviderSilent(
                f"provider {session.provider} did not answer the session request within "
                f"{self.answer_timeout_s:g} s: its agent may be busy or cut off; try again"
            ) from None

    async def _relay_tenant(self, session: _Session, provider: _Writes) -> None:
        """Copy the tenant's frames to the provider until the provider's side is done."""
        upstream = asyncio.create_task(_copy_stdin(session.tenant.context, provider))
        done = asyncio.create_task(session.provider_done.wait())
        try:
            finished, _ = await asyncio.wait({upstream, done}, return_when=asyncio.FIRST_COMPLETED)
            if upstream in finished and upstream.exception() is None:
                await done  # the tenant closed stdin: the output goes on until the exit
            elif upstream in finished and not session.provider_done.is_set():
                upstream.result()  # raises: a bad frame from the tenant
        finally:
            for task in (upstream, done):
                task.cancel()
            await asyncio.gather(upstream, done, return_exceptions=True)

    # --- the provider's side ---------------------------------------------------------------
    async def provider_session(self, context: Context) -> None:
        """Provider.SessionIO: bind the stream to its session, then copy the provider's frames
        to the tenant until the command ends or either side goes."""
        signer, msg = self._open(await _first(context, "SessionAccept"), pb.SessionAccept)
        session = self._waiting.get(msg.session_id)
        if session is None or session.lease_id != msg.lease_id:
            raise NotFound(f"no session {limits.shown(msg.session_id)} waits for an answer")
        if session.provider != signer:
            raise PermissionDenied(f"session {msg.session_id} is not for your lease")
        await self.app.run(lambda: None, lambda _: None)  # its nonce is durable before it acts
        del self._waiting[session.id]
        if msg.refused:
            reason = limits.clipped(msg.refused, 1024)
            session.answered.set_exception(
                FailedPrecondition(f"provider {signer} refused: {reason}")
            )
            return
        provider = _Writes(context)
        session.answered.set_result(provider)
        downstream = asyncio.create_task(_copy_output(context, session))
        gone = asyncio.create_task(session.tenant_gone.wait())
        try:
            await asyncio.wait({downstream, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            session.provider_done.set()
            for task in (downstream, gone):
                task.cancel()
            await asyncio.gather(downstream, gone, return_exceptions=True)
            await provider.close()

    def _open(self, request: pb.SignedRequest, message_class: type[M]) -> tuple[str, M]:
        return open_envelope(request, message_class, self.app.guard, market=self.app.market_id)


async def _first(context: Context, name: str) -> pb.SignedRequest:
    frame = await context.read()
    if not isinstance(frame, pb.ShellFrame):  # grpc.aio.EOF
        raise InvalidArgument(f"the stream ended before its opening {name}")
    if not frame.HasField("open"):
        raise InvalidArgument(f"the first frame must carry the signed {name} (field `open`)")
    return frame.open


def _check_open(msg: pb.ShellOpen) -> None:
    limits.check_text("shell: lease id", msg.lease_id, limits.TEXT["id"])
    limits.check_text("shell: service", msg.service, limits.TEXT["endpoint service"])
    if len(msg.command) > limits.MAX_SHELL_COMMAND_ARGS:
        raise InvalidArgument(
            f"shell: {len(msg.command)} command words; at most {limits.MAX_SHELL_COMMAND_ARGS}"
        )
    if sum(len(word) for word in msg.command) > limits.MAX_SHELL_COMMAND_CHARS:
        raise InvalidArgument(
            f"shell: the command is longer than {limits.MAX_SHELL_COMMAND_CHARS:,} characters"
        )
    for path in (msg.copy_from, msg.copy_to):
        if len(path) > limits.MAX_SHELL_PATH_CHARS or "\x00" in path:
            raise InvalidArgument(f"cp: path {limits.shown(path)} is not a valid path")
    if msg.copy_from and msg.copy_to:
        raise InvalidArgument("cp: copy_from and copy_to exclude each other")
    if msg.copy_to and not 0 <= msg.copy_size <= limits.MAX_COPY_BYTES:
        raise InvalidArgument(
            f"cp: {msg.copy_size:,} bytes; one file may have at most {limits.MAX_COPY_BYTES:,}"
        )


def _check_frame(frame: pb.ShellFrame) -> None:
    biggest = max(len(frame.stdin), len(frame.stdout), len(frame.stderr))
    if biggest > limits.MAX_SHELL_FRAME_BYTES:
        raise InvalidArgument(
            f"a session frame carries {biggest:,} bytes; at most {limits.MAX_SHELL_FRAME_BYTES:,}"
        )


async def _copy_stdin(tenant: Context, provider: _Writes) -> None:
    """Tenant → provider: stdin, resizes, EOF. Returns after passing on the tenant's EOF."""
    while True:
        frame = await tenant.read()
        if not isinstance(frame, pb.ShellFrame):  # grpc.aio.EOF: the tenant closed its side
            await provider.write(pb.ShellFrame(stdin_closed=True))
            return
        _check_frame(frame)
        passed = pb.ShellFrame(
            stdin=frame.stdin, stdin_closed=frame.stdin_closed, rows=frame.rows, cols=frame.cols
        )
        await provider.write(passed)


async def _copy_output(provider: Context, session: _Session) -> None:
    """Provider → tenant: output, then the exit (or error) frame. Returns at the exit frame or
    when the provider's stream ends."""
    while True:
        frame = await provider.read()
        if not isinstance(frame, pb.ShellFrame):  # grpc.aio.EOF: the provider closed its side
            return
        _check_frame(frame)
        frame.ClearField("open")
        with contextlib.suppress(asyncio.InvalidStateError):
            await session.tenant.write(frame)
        if frame.exited or frame.error:
            session.exited = True
            return
