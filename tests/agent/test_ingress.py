"""Ports and ingress: UDP exposes answer over UDP, tenant ports bind to the configured address,
and the HTTP ingress routes by Host to the right lease (two leases, two hostnames), answers 404
for a host nobody serves, and keeps a lease's URI across a container restart.

The proxy's own rules (routing, limits, errors) run against real asyncio servers on loopback;
the rest runs leases through the supervisor on the real Docker engine."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import socket
import subprocess
import tarfile
import textwrap
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from marketplace.core.manifest import Manifest, parse_manifest
from marketplace.core.manifest.model import HttpOptions
from marketplace.core.matching import Allocation, Capacity, allocate
from marketplace.core.state import Endpoint
from provider_agent.config import AgentConfig, ConfigError, RuntimeSection, parse_config
from provider_agent.container import ContainerState, RuntimeFailure
from provider_agent.ingress import (
    Backend,
    BadRequest,
    Ingress,
    IngressLimits,
    IngressSite,
    RouteTable,
    host_of,
    lease_hostname,
)
from provider_agent.network import publish_ip
from provider_agent.runtime import DockerRuntime
from provider_agent.supervisor import (
    LeaseSupervisor,
    StatusReport,
    _http_options,
    _ingress_label,
)
from tests.agent.supervision import Recorder
from tests.agent.test_docker_runtime import cleanup_provider
from tests.helpers import wait_until

GIB = 1 << 30
BUSYBOX = "gpumarket/busybox:latest"
UDP_ECHO = "gpumarket/udp-echo:latest"


# --- the request head --------------------------------------------------------------------------


def test_the_host_header_is_read_without_port_case_or_trailing_dot() -> None:
    head = b"GET / HTTP/1.1\r\nhOsT: App.Example.COM.:8080\r\nAccept: */*\r\n\r\n"
    assert host_of(head) == "app.example.com"
    assert host_of(b"GET / HTTP/1.0\r\nHost: [::1]:80\r\n\r\n") == "[::1]"


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",  # two: smuggling
        b"GET / HTTP/1.1\r\nHost : a.example\r\n\r\n",  # space before the colon
        b"GET / HTTP/1.1\r\nHost: \r\n\r\n",  # empty
        b"SSH-2.0-OpenSSH\r\nHost: a.example\r\n\r\n",  # not HTTP
    ],
)
def test_a_head_that_cannot_be_routed_is_a_400(head: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        host_of(head)
    assert caught.value.status == 400


# --- the route table ---------------------------------------------------------------------------


def test_a_hostname_stays_with_the_lease_that_claimed_it_first() -> None:
    table = RouteTable()
    a, b = Backend("127.0.0.1", 1001), Backend("127.0.0.1", 1002)
    assert table.set_lease("lease-a", {"Shop.Example": [a]}) == []
    assert table.set_lease("lease-b", {"shop.example": [b], "b.example": [b]}) == ["shop.example"]
    assert table.lookup("SHOP.example:443") == (a,)
    table.drop_lease("lease-a")
    assert table.lookup("shop.example") == ()
    assert table.set_lease("lease-b", {"shop.example": [b]}) == []  # free again: b may have it
    assert table.hosts("lease-b") == ["shop.example"]  # set_lease replaces: b.example is gone


def test_replicas_share_a_hostname_in_turn() -> None:
    table = RouteTable()
    backends = [Backend("127.0.0.1", p) for p in (1, 2, 3)]
    table.set_lease("l", {"h.example": backends})
    firsts = {table.lookup("h.example")[0].port for _ in range(6)}
    assert firsts == {1, 2, 3}


def test_a_lease_hostname_is_stable_and_distinct_per_port() -> None:
    one = lease_hostname("D1/1/1/p", "web", 80, "ingress.example")
    assert one == lease_hostname("D1/1/1/p", "web", 80, "ingress.example")
    assert one.endswith(".ingress.example") and len(one.split(".")[0]) == 16
    assert one != lease_hostname("D1/1/1/p", "web", 8080, "ingress.example")
    assert one != lease_hostname("D2/1/1/p", "web", 80, "ingress.example")


# --- the proxy on real sockets -----------------------------------------------------------------


async def _backend(name: str) -> asyncio.Server:
    """An HTTP/1.0-style server that answers its name and the request body it got."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":")[1])
        body = await reader.readexactly(length) if length else b""
        reply = f"{name}:".encode() + body
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply) + reply)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _ask(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    await _close(writer)
    return answer


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def _get(host: str, body: bytes = b"") -> bytes:
    method = b"POST" if body else b"GET"
    return (
        method
        + b" / HTTP/1.1\r\nHost: "
        + host.encode()
        + b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


@contextlib.asynccontextmanager
async def _proxy(table: RouteTable, limits: IngressLimits | None = None) -> AsyncIterator[int]:
    ingress = Ingress(table, "127.0.0.1", 0, limits)
    await ingress.start()
    try:
        yield ingress.port
    finally:
        await ingress.close()


def test_the_proxy_routes_by_host_and_answers_404_and_502() -> None:
    async def scenario() -> None:
        a, b = await _backend("a"), await _backend("b")
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        table = RouteTable()
        table.set_lease("la", {"a.example": [Backend("127.0.0.1", _port(a))]})
        table.set_lease("lb", {"b.example": [Backend("127.0.0.1", _port(b))]})
        table.set_lease("ld", {"down.example": [Backend("127.0.0.1", dead.getsockname()[1])]})
        async with _proxy(table) as port:
            assert (await _ask(port, _get("a.example", b"x" * 100_000))).endswith(
                b"a:" + b"x" * 100_000
            )
            assert (await _ask(port, _get("B.EXAMPLE:8080"))).endswith(b"b:")
            unknown = await _ask(port, _get("c.example"))
            assert unknown.startswith(b"HTTP/1.1 404 ") and b"c.example" in unknown
            assert (await _ask(port, _get("down.example"))).startswith(b"HTTP/1.1 502 ")
            bad = await _ask(port, b"GET / HTTP/1.1\r\n\r\n")
            assert bad.startswith(b"HTTP/1.1 400 ")
        dead.close()
        for server in (a, b):
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_the_proxy_bounds_the_head_its_time_and_its_connections() -> None:
    async def scenario() -> None:
        limits = IngressLimits(max_head_bytes=1024, head_timeout_s=0.3, max_connections=2)
        async with _proxy(RouteTable(), limits) as port:
            big = b"GET / HTTP/1.1\r\nHost: a.example\r\nX: " + b"y" * 4096 + b"\r\n\r\n"
            assert (await _ask(port, big)).startswith(b"HTTP/1.1 431 ")
            slow = await _ask(port, b"GET / HTTP/1.1\r\nHost: a.exa")  # never finishes
            assert slow.startswith(b"HTTP/1.1 408 ")
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await asyncio.sleep(0.05)
            assert (await _ask(port, _get("a.example"))).startswith(b"HTTP/1.1 503 ")
            for _, writer in held:
                await _close(writer)

    asyncio.run(scenario())


def test_an_idle_proxied_connection_is_closed() -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # never answers; ends when the ingress hangs up
            await _close(writer)

        backend = await asyncio.start_server(silent, "127.0.0.1", 0)
        table = RouteTable()
        table.set_lease("l", {"a.example": [Backend("127.0.0.1", _port(backend))]})
        async with _proxy(table, IngressLimits(idle_timeout_s=0.3)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get("a.example"))
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, not hung
            await _close(writer)
        backend.close()
        await backend.wait_closed()

    asyncio.run(scenario())


# --- per-request HTTP: keep-alive, framing, the expose's http_options ---------------------------


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return body


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, decoded body) of one HTTP/1.1 message framed by Content-Length or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        return head, await _read_chunked(reader)
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return head, await reader.readexactly(int(line.split(b":")[1]))
    return head, b""


async def _keepalive_backend(name: str, delay: float = 0.0) -> asyncio.Server:
    """An HTTP/1.1 server that keeps connections open and answers `name:` + the body, chunked
    when the request was chunked."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _answer_each(reader, writer, name, delay)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()  # also when the test ends first (cancelled mid-sleep)

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def _answer_each(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str, delay: float
) -> None:
    """Answer each request on the connection with `name:` + its body."""
    while True:
        head, body = await _read_message(reader)
        await asyncio.sleep(delay)
        reply = f"{name}:".encode() + body
        if b"chunked" in head.lower():
            half = len(reply) // 2
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (reply[:half], reply[half:]):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply))
            writer.write(reply)
        await writer.drain()


def _request(host: str, body: bytes = b"", chunked: bool = False) -> bytes:
    head = b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
    if not chunked:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    data = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
        for i in range(0, len(body), 1000)
    )
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + data + b"0\r\n\r\n"


async def _stop(*servers: asyncio.Server) -> None:
    for server in servers:
        server.close()
        await server.wait_closed()


def test_keep_alive_routes_each_request_and_relays_chunked_bodies_intact() -> None:
    async def scenario() -> None:
        a, b = await _keepalive_backend("a"), await _keepalive_backend("b")
        table = RouteTable()
        table.set_lease("la", {"a.example": [Backend("127.0.0.1", _port(a))]})
        table.set_lease("lb", {"b.example": [Backend("127.0.0.1", _port(b))]})
        async with _proxy(table) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request("a.example", b"one"))
            assert (await _read_message(reader))[1] == b"a:one"
            writer.write(_request("b.example", b"two"))  # the same connection, another lease
            assert (await _read_message(reader))[1] == b"b:two"
            body = bytes(range(256)) * 1000
            writer.write(_request("a.example", body, chunked=True))
            head, answer = await asyncio.wait_for(_read_message(reader), 10)
            assert b"chunked" in head.lower() and answer == b"a:" + body
            await _close(writer)
        await _stop(a, b)

    asyncio.run(scenario())


def test_max_body_size_refuses_a_body_over_it_with_413() -> None:
    async def scenario() -> None:
        backend = await _keepalive_backend("a")
        body = b"z" * (2 * 1024 * 1024)
        for most, chunked in ((1024 * 1024, False), (1024 * 1024, True), (4 * 1024 * 1024, False)):
            options = HttpOptions(max_body_size=most)
            table = RouteTable()
            table.set_lease("la", {"a.example": [Backend("127.0.0.1", _port(backend), options)]})
            async with _proxy(table) as port:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_request("a.example", body, chunked))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                head, answer = await asyncio.wait_for(_read_message(reader), 10)
                if most < len(body):
                    assert head.startswith(b"HTTP/1.1 413 "), (most, chunked)
                else:
                    assert head.startswith(b"HTTP/1.1 200 ") and answer == b"a:" + body
                await _close(writer)
        await _stop(backend)

    asyncio.run(scenario())


def test_a_slow_backend_is_a_504_after_read_timeout() -> None:
    async def scenario() -> None:
        slow = await _keepalive_backend("slow", delay=3.0)
        options = HttpOptions(read_timeout_ms=300, next_tries=1)
        table = RouteTable()
        table.set_lease("l", {"a.example": [Backend("127.0.0.1", _port(slow), options)]})
        async with _proxy(table) as port:
            started = asyncio.get_running_loop().time()
            answer = await _ask(port, _get("a.example"))
            assert answer.startswith(b"HTTP/1.1 504 ")
            assert asyncio.get_running_loop().time() - started < 2.5
        await _stop(slow)

    asyncio.run(scenario())


def test_a_dead_replica_is_retried_on_the_next_within_next_tries() -> None:
    async def scenario() -> None:
        alive = await _keepalive_backend("alive")
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # never listening: refused
        replicas = [dead.getsockname()[1], _port(alive)]
        for tries, expect_all in ((3, True), (1, False)):
            options = HttpOptions(next_tries=tries)
            table = RouteTable()
            backends = [Backend("127.0.0.1", p, options) for p in replicas]
            table.set_lease("l", {"a.example": backends})
            async with _proxy(table) as port:
                answers = [await _ask(port, _get("a.example", b"x")) for _ in range(2)]
            ok = [a.endswith(b"alive:x") for a in answers]
            assert all(ok) if expect_all else ok.count(True) == 1, answers
        dead.close()
        await _stop(alive)

    asyncio.run(scenario())


def test_an_upgraded_connection_is_copied_raw() -> None:
    async def scenario() -> None:
        async def websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
            writer.write(b"Connection: Upgrade\r\n\r\n")
            try:
                while data := await reader.read(1024):
                    writer.write(data[::-1])  # not HTTP: raw frames both ways
                    await writer.drain()
            finally:
                writer.close()

        backend = await asyncio.start_server(websocket, "127.0.0.1", 0)
        table = RouteTable()
        table.set_lease("l", {"a.example": [Backend("127.0.0.1", _port(backend))]})
        async with _proxy(table) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 ")
            writer.write(b"\x81\x04ping")
            assert await asyncio.wait_for(reader.readexactly(6), 5) == b"gnip\x04\x81"
            await _close(writer)
        await _stop(backend)

    asyncio.run(scenario())


def test_a_client_expecting_100_continue_is_told_to_send_its_body() -> None:
    async def scenario() -> None:
        backend = await _keepalive_backend("a")
        table = RouteTable()
        table.set_lease("l", {"a.example": [Backend("127.0.0.1", _port(backend))]})
        async with _proxy(table) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST / HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\n"
                b"Content-Length: 4\r\n\r\n"
            )
            go = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert go.startswith(b"HTTP/1.1 100 ")
            writer.write(b"body")
            assert (await asyncio.wait_for(_read_message(reader), 5))[1] == b"a:body"
            await _close(writer)
        await _stop(backend)

    asyncio.run(scenario())


def test_the_supervisor_routes_with_the_expose_http_options_across_readoption() -> None:
    expose = "- port: 80\n  as: 80\n  to: [{global: true}]\n"
    options = "  http_options: {max_body_size: 4096, next_tries: 1}\n"
    (service,) = _sdl("nginx", ["true"], expose + options).services.values()
    labels = _ingress_label(service)
    state = ContainerState("c", "n", "running", "l", service.name, 0, labels=labels)
    (http,) = [e for e in service.expose if e.is_global]
    assert _http_options(state) == {http.port: http.http_options}
    assert http.http_options.max_body_size == 4096 and http.http_options.next_tries == 1
    plain = ContainerState("c", "n", "running", "l", "web", 0)
    assert _http_options(plain) == {}  # Akash's defaults apply


# --- configuration -----------------------------------------------------------------------------


def test_ports_and_ingress_keys_default_and_are_checked() -> None:
    cfg = parse_config({})
    assert cfg.network.publish_address == "auto" and not cfg.ingress.enabled
    on = parse_config({"ingress": {"listen": "0.0.0.0:8080", "domain": "Ingress.Example.com"}})
    assert on.ingress.listen_address == ("0.0.0.0", 8080)
    assert on.ingress.domain == "ingress.example.com"
    for data, key in [
        ({"ingress": {"listen": "0.0.0.0:8080"}}, "ingress.domain"),
        ({"ingress": {"listen": "8080", "domain": "i.example"}}, "ingress.listen"),
        ({"ingress": {"listen": "eth0:8080", "domain": "i.example"}}, "ingress.listen"),
        ({"ingress": {"domain": "not a domain"}}, "ingress.domain"),
        ({"network": {"publish_address": "my-host"}}, "network.publish_address"),
        ({"network": {"bind": "0.0.0.0"}}, "network.bind"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(data)
        assert caught.value.key == key


def _cfg(**network: str) -> AgentConfig:
    host_uri = network.pop("host_uri", "")
    return parse_config({"provider": {"host_uri": host_uri}, "network": network})


def test_tenant_ports_bind_to_one_address_of_this_host_unless_every_one_is_asked_for() -> None:
    assert publish_ip(_cfg()) == "127.0.0.1"  # no host_uri: loopback, never every interface
    assert publish_ip(_cfg(host_uri="https://127.0.0.2:8443")) == "127.0.0.2"
    assert publish_ip(_cfg(host_uri="localhost")) in ("127.0.0.1", "::1")
    assert publish_ip(_cfg(host_uri="203.0.113.7", publish_address="127.0.0.1")) == "127.0.0.1"
    assert publish_ip(_cfg(publish_address="0.0.0.0")) == "0.0.0.0"  # the operator asked
    with pytest.raises(RuntimeFailure, match=r"not an address of this host.*publish_address"):
        publish_ip(_cfg(host_uri="203.0.113.7"))  # behind NAT: say which key to set


# --- leases on the real Docker engine ----------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    rt = DockerRuntime.connect(name)
    cleanup_provider(rt.client, name)
    rt.close()


def _sdl(
    image: str, command: list[str], expose: str, restart: str = "never", count: int = 1
) -> Manifest:
    exposed = textwrap.indent(expose, "      ")
    text = (
        'version: "2.0"\n'
        "services:\n"
        "  web:\n"
        f"    image: {image}\n"
        f"    command: {command!r}\n"
        "    expose:\n"
        f"{exposed}"
        "profiles:\n"
        "  compute:\n"
        "    web:\n"
        "      resources:\n"
        "        cpu: {units: 0.2}\n"
        "        memory: {size: 32Mi}\n"
        "        storage: {size: 10Mi}\n"
        "  placement:\n"
        "    here:\n"
        "      pricing:\n"
        "        web: {denom: uact, amount: 100}\n"
        "deployment:\n"
        "  web:\n"
        f"    here: {{profile: web, count: {count}}}\n"
        "gpumarket:\n"
        "  kind: inference\n"
        f"  restart: {restart}\n"
    )
    return parse_manifest(text.encode())


def _httpd(text: str) -> list[str]:
    """busybox httpd in the foreground, serving one page that says `text`."""
    return ["sh", "-c", f"mkdir -p /srv && echo {text} > /srv/index.html && httpd -f -p 80 -h /srv"]


HTTP_80 = """\
- port: 80
  as: 80
  to: [{global: true}]
"""


def _run(sup: LeaseSupervisor, manifest: Manifest) -> tuple[str, StatusReport]:
    group = manifest.groups[0]
    alloc = allocate(group, Capacity(4000, 4 * GIB, 10 * GIB, ()))
    assert isinstance(alloc, Allocation)
    lease = f"D{uuid.uuid4().hex[:6]}/1/1/prov"
    report = sup.start_lease(lease, manifest, group, alloc)
    assert report.running, report.message
    return lease, report


def _fetch(port: int, host: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()


def _page(port: int, host: str, expect: str) -> str:
    def fetch() -> str:
        status, body = _fetch(port, host)
        assert (status, body) == (200, expect), (status, body)
        return body

    return wait_until(fetch, 20, f"{host} to serve {expect}", retry_on=(OSError, AssertionError))


@contextlib.contextmanager
def _ingress_supervisor(provider: str, rec: Recorder) -> Iterator[tuple[LeaseSupervisor, int]]:
    """A supervisor publishing through a real ingress on a free port (its own loop thread)."""
    loop = asyncio.new_event_loop()
    table = RouteTable()
    ingress = Ingress(table, "127.0.0.1", 0)
    loop.run_until_complete(ingress.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    site = IngressSite(table, "ingress.test", ingress.port)
    sup = LeaseSupervisor(
        DockerRuntime.connect(provider),
        RuntimeSection(max_restarts=2),
        rec.report,
        rec.ship,
        ingress=site,
    )
    try:
        yield sup, ingress.port
    finally:
        sup.close()
        asyncio.run_coroutine_threadsafe(ingress.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _ingress_uris(report: StatusReport) -> dict[str, Endpoint]:
    return {e.host: e for e in report.endpoints if e.host.endswith(".test")}


@pytest.mark.docker
def test_the_ingress_routes_two_hostnames_to_two_leases_and_404s_the_rest(provider: str) -> None:
    rec = Recorder()
    with _ingress_supervisor(provider, rec) as (sup, port):
        shop = HTTP_80 + "  accept: [shop.example.test]\n"
        blog = HTTP_80 + "  accept: [blog.example.test]\n"
        lease_a, a = _run(sup, _sdl(BUSYBOX, _httpd("lease-a"), shop))
        lease_b, b = _run(sup, _sdl(BUSYBOX, _httpd("lease-b"), blog))
        own_a = lease_hostname(lease_a, "web", 80, "ingress.test")
        assert "blog.example.test" in _ingress_uris(b) and own_a not in _ingress_uris(b)
        assert set(_ingress_uris(a)) == {own_a, "shop.example.test"}
        assert _ingress_uris(a)[own_a].uri == f"http://{own_a}:{port}"
        assert _page(port, "shop.example.test", "lease-a") == "lease-a"
        assert _page(port, own_a, "lease-a") == "lease-a"
        assert _page(port, "blog.example.test", "lease-b") == "lease-b"
        status, body = _fetch(port, "nobody.example.test")
        assert status == 404 and "nobody.example.test" in body
        sup.stop_lease(lease_b)  # a closed lease is no longer served
        assert _fetch(port, "blog.example.test")[0] == 404
        assert _page(port, "shop.example.test", "lease-a") == "lease-a"
        sup.stop_lease(lease_a)


@pytest.mark.docker
def test_a_restarted_container_keeps_its_ingress_uri(provider: str) -> None:
    rec = Recorder()
    # The first run serves, then fails; the supervisor restarts it (on-failure) and the second
    # run serves for good. /srv lives in the container, so the marker survives the restart.
    script = (
        "mkdir -p /srv; echo run$(ls /srv | grep -c mark) > /srv/index.html; "
        "httpd -p 80 -h /srv; if [ -e /srv/mark ]; then sleep 600; fi; "
        "touch /srv/mark; sleep 2; exit 3"
    )
    with _ingress_supervisor(provider, rec) as (sup, port):
        lease, first = _run(sup, _sdl(BUSYBOX, ["sh", "-c", script], HTTP_80, restart="on-failure"))
        [own] = _ingress_uris(first)
        assert _page(port, own, "run0") == "run0"
        rec.wait_for(lambda r: any("restarting" in t for t in r.texts("system")))
        assert _page(port, own, "run1") == "run1"  # the same URI, the restarted container
        assert _ingress_uris(StatusReport(lease, True, endpoints=sup.endpoints(lease))) == (
            _ingress_uris(first)
        )
        # A restarted agent knows the route from the container's labels alone.
        assert sup.ingress is not None
        sup.close()
        sup.ingress.routes.drop_lease(lease)
        assert _fetch(port, own)[0] == 404
        again = LeaseSupervisor(
            sup.runtime, RuntimeSection(), rec.report, rec.ship, ingress=sup.ingress
        )
        assert again.adopt() == [lease]
        assert _page(port, own, "run1") == "run1"
        again.stop_lease(lease)
        again.close()
        assert _fetch(port, own)[0] == 404


@pytest.mark.docker
def test_tenant_ports_bind_to_the_configured_address_only(provider: str) -> None:
    rec = Recorder()
    sup = LeaseSupervisor(
        DockerRuntime.connect(provider),
        RuntimeSection(),
        rec.report,
        rec.ship,
        public_host="127.0.0.2",
        publish_ip="127.0.0.2",
    )
    lease, report = _run(sup, _sdl(BUSYBOX, _httpd("bound"), HTTP_80))
    [endpoint] = report.endpoints
    assert (endpoint.host, endpoint.proto) == ("127.0.0.2", "tcp")
    assert isinstance(sup.runtime, DockerRuntime)
    [container] = sup.runtime.owned(lease)
    bindings = sup.runtime.client.api.inspect_container(container.id)["HostConfig"]
    assert bindings["PortBindings"]["80/tcp"] == [{"HostIp": "127.0.0.2", "HostPort": ""}]
    url = f"http://127.0.0.2:{endpoint.external_port}/"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return str(resp.read().decode().strip())

    assert wait_until(fetch, 20, "the bound port to answer", retry_on=(OSError,)) == "bound"
    with pytest.raises(OSError):  # not on another address of the host
        socket.create_connection(("127.0.0.1", endpoint.external_port), timeout=2).close()
    sup.stop_lease(lease)
    sup.close()


UDP_ECHO_C = r"""
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) < 0) return 1;
    for (;;) {
        char buf[2048];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n >= 0) sendto(fd, buf, n, 0, (struct sockaddr *)&peer, len);
    }
}
"""


def _udp_echo_image(runtime: DockerRuntime, work: Path) -> None:
    """An image holding one static UDP echo server (busybox has no UDP server applet)."""
    if runtime.has_image(UDP_ECHO):
        return
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the UDP echo image (apt-get install gcc libc6-dev)")
    (work / "echo.c").write_text(UDP_ECHO_C)
    binary = work / "udp-echo"
    subprocess.run(["gcc", "-static", "-O2", "-o", binary, work / "echo.c"], check=True)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.add(binary, arcname="bin/udp-echo")
    runtime.client.api.import_image_from_data(data.getvalue(), repository=UDP_ECHO.split(":")[0])


@pytest.mark.docker
def test_a_udp_expose_is_published_as_udp_and_answers(provider: str, tmp_path: Path) -> None:
    rec = Recorder()
    runtime = DockerRuntime.connect(provider)
    _udp_echo_image(runtime, tmp_path)
    sup = LeaseSupervisor(runtime, RuntimeSection(), rec.report, rec.ship)
    expose = "- port: 5353\n  as: 5353\n  proto: udp\n  to: [{global: true}]\n"
    lease, report = _run(sup, _sdl(UDP_ECHO, ["/bin/udp-echo", "5353"], expose))
    [endpoint] = report.endpoints
    assert (endpoint.port, endpoint.proto) == (5353, "udp")
    assert endpoint.uri == f"udp://127.0.0.1:{endpoint.external_port}"
    [container] = runtime.owned(lease)
    assert container.udp_ports == ((5353, endpoint.external_port),) and container.ports == ()

    def echo() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto(b"ping over udp", ("127.0.0.1", endpoint.external_port))
            return s.recv(2048)

    assert wait_until(echo, 20, "the UDP echo", retry_on=(OSError,)) == b"ping over udp"
    sup.stop_lease(lease)
    sup.close()


# --- the agent ---------------------------------------------------------------------------------


def test_the_agent_starts_its_ingress_and_refuses_a_publish_address_not_its_own(
    tmp_path: Path,
) -> None:
    from marketplace.core.clock import SystemClock
    from marketplace.identity import Key
    from provider_agent.agent import Agent
    from provider_agent.memory_runtime import MemoryRuntime
    from tests.agent.test_e2e import agent_config

    def agent(extra: dict[str, dict[str, str]], said: list[str]) -> Agent:
        key = Key.generate()
        cfg = parse_config({**agent_config(1, tmp_path / "agent"), **extra})
        return Agent(cfg, key, MemoryRuntime(key.address), SystemClock(), say=said.append)

    async def scenario() -> None:
        said: list[str] = []
        on = agent({"ingress": {"listen": "127.0.0.1:0", "domain": "ingress.test"}}, said)
        await on.start()
        assert on.ingress is not None and on.supervisor is not None
        assert on.supervisor.ingress is not None and on.supervisor.publish_ip == "127.0.0.1"
        assert any(line.startswith("ingress on 127.0.0.1:") for line in said)
        answer = await _ask(on.ingress.port, _get("x.ingress.test"))
        assert answer.startswith(b"HTTP/1.1 404 ")
        await on.shutdown([])
        foreign = agent({"provider": {"host_uri": "https://203.0.113.7:8443"}}, said)
        with pytest.raises(RuntimeFailure, match="publish_address"):
            await foreign.start()
        await foreign.shutdown([])

    asyncio.run(scenario())


def test_no_lease_may_claim_a_name_under_the_ingress_domain() -> None:
    """Lease names are hashes of guessable lease ids: an SDL's `accept` of one is not served."""
    from provider_agent.memory_runtime import MemoryRuntime

    victim = lease_hostname("D2/1/1/prov", "web", 80, "ingress.test")
    manifest = _sdl(BUSYBOX, ["true"], HTTP_80 + f"  accept: [{victim}, mine.example.test]\n")
    rec = Recorder()
    table = RouteTable()
    sup = LeaseSupervisor(
        MemoryRuntime("p", images=[BUSYBOX]),
        RuntimeSection(),
        rec.report,
        rec.ship,
        ingress=IngressSite(table, "ingress.test", 8080),
    )
    lease, report = _run(sup, manifest)
    own = lease_hostname(lease, "web", 80, "ingress.test")
    assert table.hosts(lease) == sorted([own, "mine.example.test"])
    assert set(_ingress_uris(report)) == {own, "mine.example.test"}
    assert table.lookup(victim) == ()
    sup.stop_lease(lease)
    assert table.hosts(lease) == []
    sup.close()
