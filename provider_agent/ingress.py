"""The provider's HTTP ingress: one port for every lease, routed by the Host header, as Akash
providers route through their Kubernetes ingress.

A lease's HTTP ports (a global TCP expose `as: 80`, or one with `accept:` hostnames) are
reachable at a stable per-lease hostname, `<hash>.<domain>` (the hash of lease, service and
port, so the same lease always gets the same name, across container and agent restarts), and at
each `accept` hostname. The supervisor registers a lease's routes in a `RouteTable` when its
containers start, restart or are re-adopted, and drops them when the lease ends; the proxy looks
the Host up per connection and streams bytes both ways to the container's published port.

What the proxy does with a connection, per request (HTTP/1.1 keep-alive): read the head (at
most `max_head_bytes`; the first within `head_timeout_s`, later ones within `idle_timeout_s`:
else 431 / 408 / closed), take its single Host header (none or several: 400), find the backends
(none: 404), and apply the route's `http_options` as Akash's nginx ingress does: a body over
`max_body_size` is a 413 without contacting the lease (by Content-Length up front, or while a
chunked body arrives); the body (so at most `max_body_size`) is buffered, so a connect error or
timeout before any response byte is retried on the next replica, up to `next_tries` while the
case is in `next_cases` and `next_timeout` has not passed; a backend that does not take the
request within `send_timeout` or answer within `read_timeout` is a 504. The response is
relayed framed by Content-Length, chunked, or until the backend closes (which ends the
client connection too); each request gets its own backend connection. `Connection: upgrade`
requests (WebSockets) switch to raw bytes both ways, until both sides close or nothing moves
for `idle_timeout_s`. Each request is routed by its own Host, so a keep-alive connection only
ever reaches backends its requests named.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from marketplace.core.limits import whole_number
from marketplace.core.manifest.model import HttpOptions

log = logging.getLogger(__name__)

PIPE_CHUNK = 64 * 1024
LINGER_BYTES = 256 * 1024  # read and dropped after an error answer, at most
LINGER_S = 1.0
AKASH_HTTP = HttpOptions()  # 1 MiB bodies, 60 s timeouts, 3 tries on error or timeout


@dataclass(frozen=True)
class Backend:
    """Where a route's container answers: its published host port, and the expose's HTTP
    options (body size, timeouts, retries), as Akash's ingress applies them."""

    host: str
    port: int
    options: HttpOptions = AKASH_HTTP


@dataclass(frozen=True)
class IngressLimits:
    max_head_bytes: int = 16 * 1024  # request line and headers
    head_timeout_s: float = 10.0  # to send the whole head
    connect_timeout_s: float = 5.0  # to reach a backend
    idle_timeout_s: float = 300.0  # no byte either way: the connection is closed
    body_timeout_s: float = 60.0  # to send a request body (at most the route's max_body_size)
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
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
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
        wait = self.limits.head_timeout_s
        while True:  # one request per turn: HTTP/1.1 keep-alive
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
                request = parse_request(head)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    await _answer(writer, 400, "the request head ended early")
                return  # the client closed between requests
            except asyncio.LimitOverrunError:
                too_big = f"request head over {self.limits.max_head_bytes} bytes"
                await _answer(writer, 431, too_big, reader)
                return
            except TimeoutError:
                if wait == self.limits.head_timeout_s:
                    await _answer(writer, 408, "request head not received in time")
                return
            except BadRequest as exc:
                await _answer(writer, exc.status, str(exc), reader)
                return
            backends = self.routes.lookup(request.host)
            if not backends:
                await _answer(writer, 404, f"no lease serves {request.host}")
                return
            if request.upgrade:
                await self._tunnel(head, request.host, backends, reader, writer)
                return
            if not await self._exchange(head, request, backends, reader, writer):
                return
            wait = self.limits.idle_timeout_s

    async def _tunnel(
        self,
        head: bytes,
        host: str,
        backends: tuple[Backend, ...],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """An upgraded connection (WebSocket): bytes both ways from here on."""
        upstream = await self._connect(backends)
        if upstream is None:
            await _answer(writer, 502, f"the lease serving {host} does not answer")
            return
        up_reader, up_writer = upstream
        try:
            up_writer.write(head)
            await _pipe_both(reader, writer, up_reader, up_writer, self.limits.idle_timeout_s)
        finally:
            await _shut(up_writer)

    async def _exchange(
        self,
        head: bytes,
        request: Request,
        backends: tuple[Backend, ...],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """One request and its response; whether the client connection stays open."""
        options = backends[0].options
        if request.length is not None and request.length > options.max_body_size:
            await _answer(writer, 413, f"body over {options.max_body_size} bytes", reader)
            return False
        if request.expect_continue and (request.chunked or request.length):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body is read here, not there
        try:
            body = await asyncio.wait_for(
                _read_body(reader, request, options.max_body_size), self.limits.body_timeout_s
            )
        except BodyTooLarge:
            await _answer(writer, 413, f"body over {options.max_body_size} bytes", reader)
            return False
        except TimeoutError:
            await _answer(writer, 408, "request body not received in time")
            return False
        except ValueError as exc:
            await _answer(writer, 400, str(exc), reader)
            return False
        tries = min(options.next_tries or len(backends), len(backends))
        deadline = (
            time.monotonic() + options.next_timeout_ms / 1000 if options.next_timeout_ms else None
        )
        failure = "error"
        for turn, backend in enumerate(backends[:tries]):
            last = turn == tries - 1 or (deadline is not None and time.monotonic() >= deadline)
            outcome = await self._try(backend, head + body, request, writer)
            if isinstance(outcome, bool):
                return outcome
            failure = outcome
            if last or failure not in options.next_cases:
                break
        if failure == "timeout":
            await _answer(writer, 504, f"the lease serving {request.host} did not answer in time")
        else:
            await _answer(writer, 502, f"the lease serving {request.host} does not answer")
        return False

    async def _try(
        self, backend: Backend, data: bytes, request: Request, writer: asyncio.StreamWriter
    ) -> bool | str:
        """Send the buffered request to one backend and relay its response: whether the client
        connection stays open; or, when no response byte came, the failure ("error", "timeout")."""
        options = backend.options
        read_s = min(options.read_timeout_ms / 1000, self.limits.idle_timeout_s)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(
                    backend.host, backend.port, limit=self.limits.max_head_bytes
                ),
                self.limits.connect_timeout_s,
            )
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            log.info("ingress backend %s:%d: %s", backend.host, backend.port, exc)
            return "error"
        try:
            try:
                up_writer.write(data)
                await asyncio.wait_for(up_writer.drain(), options.send_timeout_ms / 1000)
                while True:  # interim 1xx answers are relayed, then the final one
                    head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), read_s)
                    status, length, chunked, close = parse_response(head)
                    if status >= 200 or status == 101:
                        break
                    writer.write(head)
            except TimeoutError:
                idle = self.limits.idle_timeout_s < options.read_timeout_ms / 1000
                return False if idle else "timeout"  # idle: closed, as every idle connection
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                return "error"
            writer.write(head)
            await writer.drain()
            if request.method == "HEAD" or status in (204, 304):
                return not (close or request.close)
            try:
                complete = await _relay_body(up_reader, writer, length, chunked, read_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                return False  # the response started: the client sees the connection end
            return complete and not (close or request.close)
        finally:
            await _shut(up_writer)

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


# --- HTTP/1.1 framing ---------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    host: str
    length: int | None  # Content-Length; None when chunked or absent
    chunked: bool
    upgrade: bool  # Connection: upgrade: raw bytes after the head
    close: bool  # the client ends the connection after this request
    expect_continue: bool  # Expect: 100-continue: the client waits for a go before the body


def _headers(lines: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            found.setdefault(name.strip().lower(), []).append(value.strip())
    return found


def _tokens(headers: dict[str, list[str]], name: str) -> set[str]:
    return {t.strip().lower() for v in headers.get(name, []) for t in v.split(",") if t.strip()}


def _framing(headers: dict[str, list[str]]) -> tuple[int | None, bool]:
    """(Content-Length, chunked) of a message; ValueError when they cannot be trusted."""
    chunked = "chunked" in _tokens(headers, "transfer-encoding")
    lengths = set(headers.get("content-length", []))
    if chunked and lengths:
        raise ValueError("both Content-Length and chunked")  # request smuggling
    if not lengths:
        return None, chunked
    length = whole_number(next(iter(lengths))) if len(lengths) == 1 else None
    if length is None:
        raise ValueError("a bad Content-Length")
    return length, False


def parse_request(head: bytes) -> Request:
    """The routing and framing of a request head. Raises BadRequest."""
    host = host_of(head)
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, _, version = request_line.split(" ")
    headers = _headers(lines)
    try:
        length, chunked = _framing(headers)
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from exc
    connection = _tokens(headers, "connection")
    return Request(
        method=method,
        host=host,
        length=length,
        chunked=chunked,
        upgrade="upgrade" in connection and "upgrade" in headers,
        close="close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection),
        expect_continue="100-continue" in _tokens(headers, "expect"),
    )


def parse_response(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, Content-Length, chunked, closes) of a response head; ValueError if malformed."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    status = whole_number(parts[1], 3) if len(parts) >= 2 else None
    if status is None or not parts[0].startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.x status line")
    headers = _headers(lines)
    length, chunked = _framing(headers)
    connection = _tokens(headers, "connection")
    close = "close" in connection or (parts[0] == "HTTP/1.0" and "keep-alive" not in connection)
    return status, length, chunked, close


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[tuple[bytes, int]]:
    """A chunked body as it came, piece by piece, with each piece's payload size."""
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise ValueError("a bad chunk size") from exc
        if size < 0:
            raise ValueError("a bad chunk size")
        if size == 0:
            trailer = line
            while True:
                end = await reader.readuntil(b"\r\n")
                trailer += end
                if end == b"\r\n":
                    yield trailer, 0
                    return
        yield line, 0
        rest = size + 2
        while rest:
            data = await reader.readexactly(min(rest, PIPE_CHUNK))
            rest -= len(data)
            yield data, len(data) - max(0, 2 - rest)


async def _read_body(reader: asyncio.StreamReader, request: Request, most: int) -> bytes:
    """The whole request body as it came (to be sent again on a retry); BodyTooLarge past
    `most` payload bytes."""
    if request.length is not None:
        return await reader.readexactly(request.length)  # checked against `most` already
    if not request.chunked:
        return b""
    parts, size = [], 0
    async for data, payload in _chunks(reader):
        size += payload
        if size > most:
            raise BodyTooLarge()
        parts.append(data)
    return b"".join(parts)


async def _relay_body(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    length: int | None,
    chunked: bool,
    read_s: float,
) -> bool:
    """Copy a response body; whether it ended framed (else it ran until the backend closed)."""
    if chunked:
        pieces = _chunks(src)
        while True:
            try:
                data, _ = await asyncio.wait_for(anext(pieces), read_s)
            except StopAsyncIteration:
                return True
            dst.write(data)
            await dst.drain()
    rest = length
    while rest is None or rest > 0:
        data = await asyncio.wait_for(
            src.read(PIPE_CHUNK if rest is None else min(rest, PIPE_CHUNK)), read_s
        )
        if not data:
            if rest is None:
                return False
            raise asyncio.IncompleteReadError(b"", rest)
        dst.write(data)
        await dst.drain()
        if rest is not None:
            rest -= len(data)
    return True


async def _shut(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


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
