"""A private registry's password, written in a tenant's SDL, reaches the winning provider with
the manifest and no one else: no read RPC answers it (to the owner, a stranger, a provider that
lost the auction, the admin), no error's text holds it, the server logs it at no level, and the
tenant's commands (`status --json`, `why`, `leases --json`) never print it.

Against a real marketplace (real gRPC on port 0, real SQLite), every read of the proto: the
table of tests/server/test_reads.py, which a test there keeps complete.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from marketplace.api.envelope import seal
from marketplace.cli.main import cli
from marketplace.core import money
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.server.logs import JsonFormatter
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.server.test_reads import READS, Read, World, populated_world

PASSWORD = f"registry-pw-{uuid.uuid4().hex}"
READERS = ("alice", "mallory", "p", "q", "admin")  # owner, stranger, winner, loser, admin
STREAM_WAIT_S = 3.0


def private_sdl(bid_window: str) -> bytes:
    """gpu_sdl with a private image and its registry login."""
    login = (
        "    image: registry.example:5000/private/train:1\n"
        "    credentials:\n"
        "      host: registry.example:5000\n"
        "      username: alice-ci\n"
        f"      password: {PASSWORD}\n"
    )
    sdl = gpu_sdl(bid_window=bid_window)
    assert b"    image: gpumarket/busybox:latest\n" in sdl
    return sdl.replace(b"    image: gpumarket/busybox:latest\n", login.encode())


class Collect(logging.Handler):
    """Every log line of the process, as the server writes them in JSON (with their fields)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Market:
    world: World
    log: Collect


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    log = Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(log)
    root.setLevel(logging.DEBUG)
    try:
        with ServerThread(tmp_path_factory.mktemp("market")) as server:
            yield Market(_world(server), log)
    finally:
        root.removeHandler(log)
        root.setLevel(level)


def _world(server: ServerThread) -> World:
    """test_reads' world with a private image's credentials in every SDL; q bid on D1 and lost."""
    return populated_world(server, private_sdl, "training", losing_bid=900_000)


def _bytes(message: Message) -> bytes:
    return message.SerializeToString()


def answers(w: World, read: Read, who: str) -> list[bytes]:
    """What `who` gets from one read: each reply's bytes, or the error's code and text."""
    request = read.request(w)
    sent = (
        request
        if read.reader == "public"
        else seal(w.keys[who], request, market=w.server.admin.address)
    )
    path = f"/marketplace.api.v1.{read.service}/{read.method}"
    got: list[bytes] = []
    with grpc.insecure_channel(w.server.address) as channel:
        try:
            if not read.stream:
                unary = channel.unary_unary(
                    path,
                    request_serializer=_bytes,
                    response_deserializer=read.reply.FromString,
                )
                return [unary(sent, timeout=10).SerializeToString()]
            stream = channel.unary_stream(
                path,
                request_serializer=_bytes,
                response_deserializer=read.reply.FromString,
            )(sent, timeout=STREAM_WAIT_S)
            for reply in stream:  # all it sends before the deadline: some streams never end
                got.append(reply.SerializeToString())
            return got
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and read.stream:
                return got
            return [f"{exc.code()}: {exc.details()}".encode()]


@pytest.mark.parametrize("read", READS, ids=lambda r: r.method)
def test_no_read_returns_the_password_to_anyone_but_the_winner(market: Market, read: Read) -> None:
    w = market.world
    for who in READERS:
        got = b"".join(answers(w, read, who))
        if who == read.reader:  # the check means something only if the rightful reader is answered
            assert got and not got.startswith(b"StatusCode."), (read.method, got)
        if (read.method, who) == ("GetManifest", "p"):
            assert PASSWORD.encode() in got  # the winner gets the manifest to pull with
            continue
        assert PASSWORD.encode() not in got, f"{read.method} as {who}"


def test_the_losing_provider_is_refused_the_manifest(market: Market) -> None:
    w = market.world
    with pytest.raises(NotFound):
        w.provider("q").get_manifest(w.lease.id)


def test_the_tenant_commands_never_print_it(market: Market) -> None:
    w = market.world
    runner = CliRunner()
    home_key = w.keys["alice"]
    env = {"GPUMARKET_MARKET": w.server.address}
    key_file = "alice.pem"
    with runner.isolated_filesystem():
        with open(key_file, "wb") as out:
            out.write(home_key.to_pem())
        commands = [
            ["status", "--json"],
            ["status", w.leased_dep.id, "--json"],
            ["status", w.leased_dep.id],
            ["status", w.lease.id, "--json"],
            ["why", w.leased_dep.order_ids[0], "--json"],
            ["why", w.sealed_dep.order_ids[0]],
            ["leases", "--all", "--json"],
            ["bids", w.sealed_dep.order_ids[0], "--json"],
        ]
        for args in commands:
            result = runner.invoke(cli, [*args, "--key", key_file], env=env)
            assert result.exit_code == 0, (args, result.output)
            assert PASSWORD not in result.output, args


def test_no_repr_of_a_deployment_shows_its_sdl(market: Market) -> None:
    w = market.world
    stored = w.server.call(lambda: w.server.app.market.state.deployments[w.leased_dep.id])
    held = dataclasses.replace(stored, sdl=private_sdl("1s"), tenant_request=private_sdl("1s"))
    assert PASSWORD not in repr(held) and w.leased_dep.id in repr(held)


def test_the_server_logs_it_at_no_level(market: Market) -> None:
    w = market.world
    # refused at parse: a password YAML reads as an alias; the refusal is the tenant's alone
    broken = private_sdl("1s").replace(
        f"password: {PASSWORD}".encode(), f"password: *{PASSWORD}".encode()
    )
    with pytest.raises(InvalidArgument) as caught:
        w.tenant("alice").create_deployment(broken, money.MICRO)
    assert PASSWORD in str(caught.value)  # the tenant's own bytes, back to the tenant only
    lines = market.log.lines
    assert any("deployment created" in line for line in lines)  # the log was heard
    assert not [line for line in lines if PASSWORD in line]
