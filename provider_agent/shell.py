"""Tenant shells and file copies in this provider's lease containers, relayed by the market.

The agent keeps `Provider.Sessions` open (reconnecting with backoff), so a tenant reaches its
container without the provider opening an inbound port (marketplace/server/relay.py has the
market's side). For each SessionRequest it opens one `Provider.SessionIO` stream, signed with the
provider's key and naming the session, and then:

  shell:    runs the command in the lease's container (`docker exec`, with a TTY when asked:
            bytes both ways, resize, Ctrl-C as the byte \\x03; without one, stdout and stderr
            apart), passes stdin in and output out, and ends with the exit code;
  copy out: reads the file through the engine's archive API (what `docker cp` uses) and sends
            its size, then its bytes;
  copy in:  writes the bytes that arrive as a one-file archive, exactly the size announced.

A provider switches all of it off with `[shell] enabled = false` (the market is told when the
stream opens and refuses tenants itself; the agent refuses too, should a request come anyway),
and caps a copied file with `[shell] max_copy_bytes`. Blocking runtime calls run on this module's
own threads, so a held-open shell never starves the supervisor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import limits
from marketplace.core.errors import MarketError
from provider_agent.backoff import Backoff
from provider_agent.config import ShellSection
from provider_agent.container import ContainerRuntime, ContainerState, ExecSession, RuntimeFailure
from provider_agent.link import MarketLink, SessionStream

log = logging.getLogger("provider_agent.shell")

T = TypeVar("T")
DEFAULT_COMMAND = ("/bin/sh",)
CHUNK_BYTES = 1024 * 1024  # a copied file's bytes per frame (the most the market takes)
LINGER_S = 2.0  # after the exit frame, how long the market may take to end the stream
UPLOAD_QUEUE = 16  # chunks on their way into the engine before the stream waits
# one blocking reader per open session, plus short writes: a thread pool of its own
_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="session")


class Refused(Exception):
    """A session the agent will not run; the message is what the tenant reads."""


class ShellServer:
    """Serves the market's session requests for this provider's running leases."""

    def __init__(
        self,
        link: MarketLink,
        runtime: ContainerRuntime,
        config: ShellSection,
        running_leases: Callable[[], list[str]],
        reconnect_max_s: float = 30.0,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.say = say
        self.link = link
        self.runtime = runtime
        self.config = config
        self.running_leases = running_leases
        self.reconnect_max_s = reconnect_max_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Keep the session stream open until cancelled."""
        backoff = Backoff(maximum=self.reconnect_max_s)
        while True:
            try:
                async for request in self.link.sessions(
                    self.config.enabled, self.config.max_copy_bytes
                ):
                    backoff.reset()
                    self._spawn(self.serve(request), f"session-{request.session_id[:8]}")
            except MarketError as exc:
                log.info("session stream: %s", exc)
            await asyncio.sleep(backoff.next())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one session --------------------------------------------------------------------------
    async def serve(self, request: pb.SessionRequest) -> None:
        opening = request.open
        refused = ""
        container: ContainerState | None = None
        try:
            container = await self._container(opening)
        except (Refused, RuntimeFailure) as exc:
            refused = str(exc)
        accept = pb.SessionAccept(
            session_id=request.session_id, lease_id=opening.lease_id, refused=refused
        )
        try:
            stream = await self.link.session_io(accept)
        except MarketError as exc:
            log.warning("session %s: cannot answer: %s", request.session_id[:8], exc)
            return
        self.say(
            f"lease {opening.lease_id}: {_what(opening)} for its tenant"
            + (f" refused: {refused}" if refused else "")
        )
        try:
            if container is None:
                return
            if opening.copy_from:
                await self._copy_out(stream, container, opening.copy_from)
            elif opening.copy_to:
                await self._copy_in(stream, container, opening.copy_to, opening.copy_size)
            else:
                await self._shell(stream, container, opening)
        except MarketError as exc:  # the tenant or the market went
            log.info("session %s ended: %s", request.session_id[:8], exc)
        except Exception:  # a fault in one session must not go unsaid, nor end the others
            log.exception("session %s failed", request.session_id[:8])
        finally:
            await stream.close()

    async def _container(self, opening: pb.ShellOpen) -> ContainerState:
        """The running container the tenant means: the lease's service (its first replica)."""
        if not self.config.enabled:
            raise Refused("this provider has switched shell access off ([shell] enabled = false)")
        lease_id = opening.lease_id
        if lease_id not in self.running_leases():
            raise Refused(f"lease {lease_id} does not run on this provider")
        states = await _blocking(self.runtime.owned, lease_id)
        running = sorted((s for s in states if s.running), key=lambda s: (s.service, s.replica))
        services = sorted({s.service for s in running})
        service = opening.service or (services[0] if len(services) == 1 else "")
        if not opening.service and len(services) > 1:
            raise Refused(f"lease {lease_id} runs {', '.join(services)}: name the service")
        found = [s for s in running if s.service == service]
        if not found:
            known = ", ".join(services) or "none is running"
            raise Refused(f"lease {lease_id} has no running service {service!r} ({known})")
        return found[0]

    async def _shell(
        self, stream: SessionStream, container: ContainerState, opening: pb.ShellOpen
    ) -> None:
        command = tuple(opening.command) or DEFAULT_COMMAND
        try:
            session = await _blocking(
                self.runtime.exec, container.id, command, opening.tty, opening.rows, opening.cols
            )
        except RuntimeFailure as exc:
            await stream.write(pb.ShellFrame(error=str(exc)))
            return
        feeding = asyncio.create_task(_feed_stdin(stream, session))
        try:
            await stream.write(pb.ShellFrame(started=True))
            while True:
                kind, data = await _blocking(session.read)
                if not data:
                    break
                if kind == "stderr":
                    await stream.write(pb.ShellFrame(stderr=data))
                else:
                    await stream.write(pb.ShellFrame(stdout=data))
            code = await _blocking(session.exit_code)
            await stream.write(pb.ShellFrame(exited=True, exit_code=code))
            # the market ends the stream once it has the exit; the reader then ends by itself
            # (cancelling a pending read cancels the whole call, and could lose the exit frame)
            await stream.close()
            with contextlib.suppress(TimeoutError, MarketError):
                await asyncio.wait_for(asyncio.shield(feeding), LINGER_S)
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, MarketError):
                await feeding
            await _blocking(session.close)

    async def _copy_out(self, stream: SessionStream, container: ContainerState, path: str) -> None:
        try:
            found = await _blocking(self.runtime.read_file, container.id, path, CHUNK_BYTES)
        except RuntimeFailure as exc:
            await stream.write(pb.ShellFrame(error=str(exc)))
            return
        most = self.config.max_copy_bytes
        if found.size > most:
            close = getattr(found.chunks, "close", None)
            if callable(close):
                await _blocking(close)
            await stream.write(pb.ShellFrame(error=_too_big(path, found.size, most)))
            return
        await stream.write(pb.ShellFrame(started=True, size=found.size))
        frames = _Frames(found.chunks, CHUNK_BYTES)
        ahead = asyncio.ensure_future(_blocking(frames.next))  # read the next while one is sent
        try:
            while chunk := await ahead:
                ahead = asyncio.ensure_future(_blocking(frames.next))
                await stream.write(pb.ShellFrame(stdout=chunk))
        finally:
            if not ahead.done():
                ahead.cancel()
        await stream.write(pb.ShellFrame(exited=True, exit_code=0))

    async def _copy_in(
        self, stream: SessionStream, container: ContainerState, path: str, size: int
    ) -> None:
        most = self.config.max_copy_bytes
        if size > most:
            await stream.write(pb.ShellFrame(error=_too_big(path, size, most)))
            return
        upload = _Upload()
        writing = asyncio.ensure_future(
            _blocking(self.runtime.write_file, container.id, path, size, upload.chunks())
        )
        writing.add_done_callback(lambda _: upload.finished.set())
        await stream.write(pb.ShellFrame(started=True))
        received = 0
        problem = ""
        while not writing.done():
            frame = await stream.read()
            if frame is None:
                problem = "the copy was cut off before its last byte"
                break
            if frame.stdin:
                received += len(frame.stdin)
                if received > size or received > most:
                    problem = f"more bytes than the {size:,} announced"
                    break
                await _blocking(upload.put, bytes(frame.stdin))
            if frame.stdin_closed:
                break
        await _blocking(upload.end, problem)
        try:
            await writing
        except RuntimeFailure as exc:
            if upload.handed:  # the engine has begun the file: leave no part of it behind
                await self._remove(container, path)
            await stream.write(pb.ShellFrame(error=f"cp {path}: {problem or exc}"))
            return
        await stream.write(pb.ShellFrame(exited=True, exit_code=0))

    async def _remove(self, container: ContainerState, path: str) -> None:
        """Best effort: `rm -f PATH` in the container (an image without rm keeps the part)."""
        try:
            session = await _blocking(
                self.runtime.exec, container.id, ("rm", "-f", "--", path), False
            )
        except RuntimeFailure:
            return
        try:
            while (await _blocking(session.read))[1]:
                pass
        finally:
            await _blocking(session.close)


class _Upload:
    """Chunks handed from the session's stream to the engine's upload, with backpressure."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=UPLOAD_QUEUE)
        self.finished = threading.Event()  # the upload returned: nobody takes chunks any more
        self.handed = False  # a chunk went to the engine: the file exists, maybe in part
        self._problem = ""

    def put(self, chunk: bytes | None) -> None:
        while not self.finished.is_set():
            try:
                self._queue.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def end(self, problem: str) -> None:
        self._problem = problem
        self.put(None)

    def chunks(self) -> Iterator[bytes]:
        while (chunk := self._queue.get()) is not None:
            self.handed = True
            yield chunk
        if self._problem:
            raise RuntimeFailure(self._problem)


async def _feed_stdin(stream: SessionStream, session: ExecSession) -> None:
    """Tenant → command: stdin bytes, resizes, EOF. Ends the command when the tenant goes."""
    while True:
        frame = await stream.read()
        if frame is None:
            await _blocking(session.close)  # the tenant went: its command's TTY hangs up
            return
        if frame.stdin:
            await _blocking(session.write, bytes(frame.stdin))
        if frame.rows and frame.cols:
            await _blocking(session.resize, frame.rows, frame.cols)
        if frame.stdin_closed:
            await _blocking(session.close_stdin)


class _Frames:
    """A file's chunks regrouped into frames of up to `most` bytes: the engine sends 32 KiB
    pieces, and a frame per piece would cost more per byte than the bytes themselves."""

    def __init__(self, chunks: Iterator[bytes], most: int) -> None:
        self._chunks = chunks
        self._most = most
        self._carry = b""

    def next(self) -> bytes:
        """The next frame's bytes; b"" at the end. Blocks."""
        parts, size = [self._carry], len(self._carry)
        while size < self._most:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        joined = b"".join(parts)
        frame, self._carry = joined[: self._most], joined[self._most :]
        return frame


def _what(opening: pb.ShellOpen) -> str:
    """The session in a few words, for the operator's log (never the bytes it carries)."""
    if opening.copy_from:
        return f"copy out of {limits.shown(opening.copy_from, 80)}"
    if opening.copy_to:
        return f"copy of {opening.copy_size:,} bytes into {limits.shown(opening.copy_to, 80)}"
    command = " ".join(opening.command) or DEFAULT_COMMAND[0]
    return f"{'TTY ' if opening.tty else ''}shell {limits.shown(command, 60)}"


def _too_big(path: str, size: int, most: int) -> str:
    return (
        f"cp {path}: {size:,} bytes is over this provider's limit of {most:,} bytes for one file "
        "([shell] max_copy_bytes)"
    )


async def _blocking(func: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_THREADS, func, *args)


__all__ = ["Refused", "ShellServer"]
