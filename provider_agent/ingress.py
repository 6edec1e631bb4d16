"""The provider's HTTP ingress: one port for every lease, routed by the Host header, as Akash
providers route through their Kubernetes ingress.

A lease's HTTP ports (a global TCP expose `as: 80`, or one with `accept:` hostnames) are
reachable at a stable per-lease hostname, `<hash>.<domain>` (the hash of lease, service and
port, so the same lease always gets the same name, across container and agent restarts), and at
each `accept` hostname. The supervisor registers a lease's routes in a `RouteTable` when its
containers start, restart or are re-adopted, and drops them when the lease ends; the proxy looks
the Host up per connection and streams bytes both ways to the container's published port.

What the proxy does with a connection: read the request head (at most `max_head_bytes`, within
`head_timeout_s`: else 431 / 408), take its single Host header (none or several: 400), find the
backends (none: 404), connect to one (a dead one is skipped; all dead: 502), send the head as it
came and pipe both ways until both sides close or nothing moves for `idle_timeout_s`. Routing is
per connection: a keep-alive connection stays with the backend its first request chose, which can
only ever be a backend that request's Host named. WebSockets pass through as bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

PIPE_CHUNK = 64 * 1024
LINGER_BYTES = 256 * 1024  # read and dropped after an error answer, at most
LINGER_S = 1.0


@dataclass(frozen=True)
class Backend:
    """Where a route's container answers: its published host port."""

    host: str
    port: int


@dataclass(frozen=True)
class IngressLimits:
    max_head_bytes: int = 16 * 1024  # request line and headers
    head_timeout_s: float = 10.0  # to send the whole head
    connect_timeout_s: float = 5.0  # to reach a backend
    idle_timeout_s: float = 300.0  # no byte either way: the connection is closed
    max_connections: int = 1024  # open at once; beyond it: 503


def lease_hostname(lease_id: str, service: str, port: int, domain: str) -> str:
    """The stable hostname of one HTTP port of one service of a lease: `<hash>.<domain>`."""
    tag = hashlib.sha256(f"{lease_id}\0{service}\0{port}".encode()).hexdigest()[:16]
    return f"{tag}.{domain}"


class RouteTable:
    """Hostname → backends, per lease. Thread-safe: the supervisor's threads write, the proxy's
    event loop reads. A hostname belongs to the first lease that claims it while that lease holds
    it; another lease's claim is refused (returned), never silently taken over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, tuple[str, tuple[Backend, ...]]] = {}  # host -> (lease, backends)
        self._turn = itertools.count()

    def set_lease(self, lease_id: str, routes: Mapping[str, Iterable[Backend]]) -> list[str]:
        """Replace the lease's routes; the hostnames refused because another lease holds them."""
        refused = []
        with self._lock:
            for host in [h for h, (owner, _) in self._hosts.items() if owner == lease_id]:
                del self._hosts[host]
            for host, backends in routes.items():
                name = normal_host(host)
                owner = self._hosts.get(name, (lease_id, ()))[0]
                if owner != lease_id:
                    refused.append(name)
                    continue
                self._hosts[name] = (lease_id, tuple(backends))
        return refused

    def drop_lease(self, lease_id: str) -> None:
        self.set_lease(lease_id, {})

    def lookup(self, host: str) -> tuple[Backend, ...]:
        """The backends of a hostname, rotated per call (replicas share the load)."""
        with self._lock:
            _, backends = self._hosts.get(normal_host(host), ("", ()))
        if not backends:
            return ()
        k = next(self._turn) % len(backends)
        return backends[k:] + backends[:k]

    def hosts(self, lease_id: str) -> list[str]:
        with self._lock:
            return sorted(h for h, (owner, _) in self._hosts.items() if owner == lease_id)


@dataclass(frozen=True)
class IngressSite:
    """What the supervisor needs to publish a lease through the ingress."""

    routes: RouteTable
    domain: str
    public_port: int  # the port tenants use (the listen port, unless forwarded)

    def uri(self, hostname: str) -> str:
        port = "" if self.public_port == 80 else f":{self.public_port}"
        return f"http://{hostname}{port}"


# --- the request head ---------------------------------------------------------------------------


class BadRequest(Exception):
    """The head cannot be routed; `status` says how to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def normal_host(value: str) -> str:
    """A Host value as routed: lower case, no port, no trailing dot."""
    host = value.strip().lower()
    if host.startswith("["):  # [v6]:port
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_of(head: bytes) -> str:
    """The routed hostname of a request head (ending in CRLF CRLF). Raises BadRequest."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest(400, "undecodable head") from exc
    request_line, *lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "not an HTTP/1.x request line")
    hosts = []
    for line in lines:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "host":
            if name != name.strip():
                raise BadRequest(400, "whitespace around a header name")
            hosts.append(value)
    if len(hosts) != 1:
        raise BadRequest(400, "a request needs exactly one Host header")
    host = normal_host(hosts[0])
    if not host:
        raise BadRequest(400, "empty Host header")
    return host


def response(status: int, reason: str, body: str) -> bytes:
    data = (body + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + data


REASONS = {
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# --- the proxy ----------------------------------------------------------------------------------


class Ingress:
    """The reverse proxy on one listening socket."""

    def __init__(
        self, routes: RouteTable, host: str, port: int, limits: IngressLimits | None = None
    ) -> None:
        self.routes = routes
        self.host = host
        self.limits = limits or IngressLimits()
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self._requested_port, limit=self.limits.max_head_bytes
        )

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open += 1
        try:
            if self._open > self.limits.max_connections:
                await _answer(writer, 503, "too many connections", reader)
                return
            await self._proxy(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # the ingress is closing: end here, not as a failed connection task
        finally:
            self._open -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.limits.head_timeout_s)
            host = host_of(head)
        except asyncio.LimitOverrunError:
            too_big = f"request head over {self.limits.max_head_bytes} bytes"
            await _answer(writer, 431, too_big, reader)
            return
        except TimeoutError:
            await _answer(writer, 408, "request head not received in time")
            return
        except BadRequest as exc:
            await _answer(writer, exc.status, str(exc), reader)
            return
        backends = self.routes.lookup(host)
        if not backends:
            await _answer(writer, 404, f"no lease serves {host}")
            return
        upstream = await self._connect(backends)
        if upstream is None:
            await _answer(writer, 502, f"the lease serving {host} does not answer")
            return
        up_reader, up_writer = upstream
        try:
            up_writer.write(head)
            await _pipe_both(reader, writer, up_reader, up_writer, self.limits.idle_timeout_s)
        finally:
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()

    async def _connect(
        self, backends: tuple[Backend, ...]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for backend in backends:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(backend.host, backend.port),
                    self.limits.connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                log.info("ingress backend %s:%d: %s", backend.host, backend.port, exc)
        return None


async def _answer(
    writer: asyncio.StreamWriter,
    status: int,
    text: str,
    reader: asyncio.StreamReader | None = None,
) -> None:
    """Answer and close our side; with `reader`, discard what the client still sends for a
    moment, so a close with unread bytes does not reset the connection before the answer lands."""
    writer.write(response(status, REASONS[status], text))
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()
        if reader is not None and writer.can_write_eof():
            writer.write_eof()
            with contextlib.suppress(TimeoutError, asyncio.LimitOverrunError):
                await asyncio.wait_for(_discard(reader, LINGER_BYTES), LINGER_S)


async def _discard(reader: asyncio.StreamReader, most: int) -> None:
    while most > 0:
        data = await reader.read(min(most, PIPE_CHUNK))
        if not data:
            return
        most -= len(data)


async def _pipe_both(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    idle_s: float,
) -> None:
    """Copy bytes both ways; an EOF is passed on as a half-close; idle on both ways: done."""
    last = [time.monotonic()]
    await asyncio.gather(
        _pipe(client_reader, up_writer, idle_s, last),
        _pipe(up_reader, client_writer, idle_s, last),
    )


async def _pipe(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, idle_s: float, last: list[float]
) -> None:
    try:
        while True:
            try:
                data = await asyncio.wait_for(src.read(PIPE_CHUNK), idle_s)
            except TimeoutError:
                if time.monotonic() - last[0] < idle_s:
                    continue  # the other way is busy (a long download): not idle
                break
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                return
            last[0] = time.monotonic()
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    # idle or broken: end both ways (the other pipe's read then ends too)
    dst.close()
    src.feed_eof()
