"""`gpumarket shell` and `gpumarket cp` through the whole system: `market serve` and `provider run`
as separate processes, the real CLI as a process (under a pty for the interactive session), real
gRPC, real Docker. The market relays every byte over streams the agent opened.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from marketplace.api.client import MarketUnavailable, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.demo_stack import GPUMARKET, Stack, wait_for_market
from marketplace.core import limits
from marketplace.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from tests.helpers import EXAMPLES, funded_tenant

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FUNDS = 50_000_000
DEPOSIT = 5_000_000
SERVICE_SDL = """
version: "2.0"
services:
  box:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: ["mkdir -p /data && exec sleep 3600"]
profiles:
  compute:
    box:
      resources:
        cpu: {units: 1}
        memory: {size: 256Mi}
        storage: {size: 1Gi}
  placement:
    here:
      pricing:
        box: {denom: uact, amount: 3000}
deployment:
  box:
    here: {profile: box, count: 1}
gpumarket:
  kind: service
  auction:
    bid_window: 1s
"""


@dataclass
class Running:
    """A stack with one running lease, and its tenant."""

    stack: Stack
    tenant: TenantClient
    key_path: Path
    lease_id: str

    def cli(self, *args: str, key: Path | None = None) -> list[str]:
        return [
            *GPUMARKET,
            *args[:1],
            "--market",
            self.stack.address,
            "--key",
            str(key or self.key_path),
            *args[1:],
        ]

    def run(
        self, *args: str, key: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.cli(*args, key=key),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )


def start_stack(root: Path, **shell: object) -> Running:
    # a long heartbeat timeout: a test stops the agent for a while without losing its lease
    stack = Stack(heartbeat_timeout_s=30.0, root=root, keep_root=True)
    try:
        stack.start_market()
        overrides = {"shell": dict(shell)} if shell else {}
        stack.add_provider("cpu", EXAMPLES / "provider-cpu.toml", **overrides)
        stack.start_provider("cpu")
        stack.wait_providers_online(["cpu"])
        tenant = funded_tenant(stack.address, stack.admin_key(), FUNDS)
        assert tenant.key is not None
        key_path = root / "tenant.pem"
        key_path.write_bytes(tenant.key.to_pem())
        dep = tenant.create_deployment(SERVICE_SDL.encode(), DEPOSIT)

        def running() -> str | None:
            found = tenant.get_deployment(dep.id)
            for lease_id in found.lease_ids:
                if tenant.get_lease(lease_id).state == pb.LEASE_RUNNING:
                    return lease_id
            return None

        lease_id = wait_for_market(running, 60, "the lease to run")
        return Running(stack, tenant, key_path, lease_id)
    except BaseException:
        print(stack.logs())
        stack.close()
        raise


PROVIDER_MAX_COPY = 60 * 1024 * 1024


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    world = start_stack(tmp_path_factory.mktemp("shell"), max_copy_bytes="60Mi")
    try:
        yield world
    finally:
        world.stack.close()
        print(world.stack.logs())


def test_a_command_prints_its_output_and_exits_with_its_code(running: Running) -> None:
    done = running.run(
        "shell", running.lease_id, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"
    )
    assert done.stdout == b"hi\n", done.stderr
    assert done.stderr == b"oops\n"
    assert done.returncode == 3


def test_stdin_reaches_the_command_and_its_eof_ends_it(running: Running) -> None:
    done = subprocess.run(
        # a short id: the deployment, when one lease of it is yours
        running.cli("shell", running.lease_id.split("/")[0], "--", "wc", "-c"),
        input=b"x" * 100_000,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"100000"


# --- an interactive session, typed through a pty ------------------------------------------------


# A small interactive program: what a person types reaches it through the container's TTY
# (which echoes it), `size` prints the TTY's size, `sleep` sleeps for a minute.
INTERACTIVE = """
echo ready
while read line; do
  case "$line" in
    size) stty size ;;
    sleep) echo sleeping; sleep 60; echo slept ;;
    *) echo "got-$line" ;;
  esac
done
"""

# the child takes its terminal as its controlling terminal itself, then runs the command: a
# preexec_fn makes subprocess fork() this gRPC-using process, and a forked child can abort
# before exec (see marketplace/cli/demo_stack.py)
CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


class Terminal:
    """The real CLI on a pseudo-terminal that is its controlling terminal (so a window resize
    signals it, as a terminal emulator's would)."""

    def __init__(self, command: list[str], rows: int, cols: int) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, cols)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONTROLLING_TTY, *command],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        self.slave = slave
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def expect(self, wanted: bytes | re.Pattern[bytes], timeout: float = 20.0) -> bytes:
        """Read until `wanted` shows; what matched. What came before it is dropped."""
        start = time.monotonic()
        while (found := _search(wanted, self.seen)) is None:
            left = start + timeout - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {wanted!r} within {timeout} s; got {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the CLI exited and closed the terminal
                    raise AssertionError(f"ended before {wanted!r}: {self.seen[-500:]!r}") from None
        self.seen = self.seen[found.end() :]
        return found.group(0)

    def await_size(self, size: bytes, tries: int = 50) -> None:
        """Ask the program for its TTY's size until it is `size` (a resize travels beside the
        keys typed, so the first answers may still be the old size)."""
        for _ in range(tries):
            self.type(b"size\r")
            if self.expect(re.compile(rb"(\d+ \d+|stty: .*)\r\n")) == size + b"\r\n":
                return
        raise AssertionError(f"the TTY's size never became {size!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
        os.close(self.slave)


def _search(wanted: bytes | re.Pattern[bytes], text: bytes) -> re.Match[bytes] | None:
    return (wanted if isinstance(wanted, re.Pattern) else re.compile(re.escape(wanted))).search(
        text
    )


def test_an_interactive_session_echoes_resizes_and_ctrl_c_interrupts(running: Running) -> None:
    command = running.cli("shell", running.lease_id, "--", "sh", "-c", INTERACTIVE)
    term = Terminal(command, rows=33, cols=101)
    try:
        term.expect(b"ready\r\n")
        term.type(b"hello\r")
        # the container's TTY echoes what was typed, then the program answers
        term.expect(b"hello\r\ngot-hello\r\n")
        # the size the session opened with: set just after the command started (Docker API
        # 1.41 takes no size at exec), so a command that asks at once may see none yet
        term.await_size(b"33 101")
        term.resize(40, 120)  # the kernel signals the CLI (SIGWINCH); it sends the size on
        term.await_size(b"40 120")
        term.type(b"sleep\r")
        term.expect(b"sleeping\r\n")
        started = time.monotonic()
        term.type(b"\x03")  # Ctrl-C, as a byte over the TTY: SIGINT to sh and its sleep
        assert term.proc.wait(20) == 130  # killed by SIGINT, as `docker exec -it` reports it
        assert time.monotonic() - started < 15  # the sleep did not run its 60 s
        assert b"slept" not in term.seen
        restored = termios.tcgetattr(term.slave)
        assert restored[3] & termios.ECHO and restored[3] & termios.ICANON  # cooked again
    finally:
        term.close()


# --- cp -------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cp_round_trips_50_mb_byte_for_byte(running: Running, tmp_path: Path) -> None:
    original = tmp_path / "random.bin"
    original.write_bytes(os.urandom(50 * 1024 * 1024))
    remote = f"{running.lease_id}:/data/"
    sent = running.run("cp", str(original), remote, timeout=180)
    assert sent.returncode == 0, sent.stderr
    inside = running.run("shell", running.lease_id, "--", "sha256sum", "/data/random.bin")
    assert inside.stdout.split()[0].decode() == sha256(original)
    back = tmp_path / "back.bin"
    fetched = running.run("cp", f"{running.lease_id}:/data/random.bin", str(back), timeout=180)
    assert fetched.returncode == 0, fetched.stderr
    assert back.stat().st_size == original.stat().st_size
    assert sha256(back) == sha256(original)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_cp_refuses_a_file_over_the_limit_before_a_byte_moves(
    running: Running, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (2 * 1024 * 1024))
    up = running.run("cp", "--max-size", "1Mi", str(big), f"{running.lease_id}:/data/big.bin")
    assert up.returncode == 1
    assert b"2,097,152 bytes" in up.stderr and b"--max-size" in up.stderr
    made = running.run(
        "shell", running.lease_id, "--", "sh", "-c", "head -c 3000000 /dev/zero > /data/3m"
    )
    assert made.returncode == 0, made.stderr
    target = tmp_path / "3m"
    down = running.run("cp", "--max-size", "1Mi", f"{running.lease_id}:/data/3m", str(target))
    assert down.returncode == 1
    assert b"3,000,000 bytes" in down.stderr and b"over the limit" in down.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == [big]


def test_the_providers_own_limit_refuses_a_copy_up_front(running: Running, tmp_path: Path) -> None:
    big = tmp_path / "61m.bin"
    with big.open("wb") as out:
        out.truncate(PROVIDER_MAX_COPY + 1024 * 1024)  # sparse: nothing to write
    up = running.run("cp", str(big), f"{running.lease_id}:/data/")
    assert up.returncode == 1
    assert b"over provider" in up.stderr and b"limit of 62,914,560 bytes" in up.stderr
    made = running.run(
        "shell", running.lease_id, "--", "sh", "-c", "truncate -s 61M /data/61m && echo ok"
    )
    assert made.stdout == b"ok\n", made.stderr
    down = running.run("cp", f"{running.lease_id}:/data/61m", str(tmp_path / "61m"))
    assert down.returncode == 1
    assert b"over this provider's limit" in down.stderr and b"max_copy_bytes" in down.stderr
    listed = running.run("shell", running.lease_id, "--", "ls", "/data")
    assert b"61m.bin" not in listed.stdout


def test_the_agent_enforces_the_announced_size_while_streaming(running: Running) -> None:
    opening = pb.ShellOpen(lease_id=running.lease_id, copy_to="/data/short", copy_size=10)
    frames = [pb.ShellFrame(stdin=b"x" * 20), pb.ShellFrame(stdin_closed=True)]
    answers = list(running.tenant.shell(opening, iter(frames)))
    assert any("more bytes than the 10 announced" in f.error for f in answers), answers
    listed = running.run("shell", running.lease_id, "--", "ls", "/data")
    assert b"short" not in listed.stdout


def test_a_frame_over_the_limit_ends_the_session_as_invalid(running: Running) -> None:
    opening = pb.ShellOpen(lease_id=running.lease_id, command=["cat"])
    frames = [pb.ShellFrame(stdin=b"x" * (limits.MAX_SHELL_FRAME_BYTES + 1))]
    with pytest.raises(InvalidArgument, match="at most 1,048,576"):
        list(running.tenant.shell(opening, iter(frames)))


# --- refusals -------------------------------------------------------------------------------------


def test_an_outsiders_shell_is_permission_denied_and_runs_nothing(
    running: Running, tmp_path: Path
) -> None:
    outsider = funded_tenant(running.stack.address, running.stack.admin_key(), FUNDS)
    opening = pb.ShellOpen(lease_id=running.lease_id, command=["touch", "/data/outsider-was-here"])
    with pytest.raises(PermissionDenied, match="not yours"):
        list(outsider.shell(opening, iter(())))
    assert outsider.key is not None
    key = tmp_path / "outsider.pem"
    key.write_bytes(outsider.key.to_pem())
    done = running.run("shell", running.lease_id, "--", "touch", "/data/outsider-was-here", key=key)
    assert done.returncode == 1
    assert done.stderr.decode().strip().endswith(f"lease {running.lease_id} is not yours")
    cp = running.run("cp", f"{running.lease_id}:/etc/passwd", str(tmp_path / "p"), key=key)
    assert cp.returncode == 1 and b"not yours" in cp.stderr
    listed = running.run("shell", running.lease_id, "--", "ls", "/data")
    assert b"outsider-was-here" not in listed.stdout


def test_a_replayed_opening_is_refused(running: Running) -> None:
    opening = pb.ShellOpen(lease_id=running.lease_id, command=["true"])
    assert running.tenant.key is not None
    signed = seal(running.tenant.key, opening, market=running.tenant.market_id)
    channel = running.tenant.channel.stream_stream(
        "/marketplace.api.v1.Tenant/Shell",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.ShellFrame.FromString,
    )
    first = list(channel(iter([pb.ShellFrame(open=signed)])))
    assert first[-1].exited and first[-1].exit_code == 0
    with pytest.raises(grpc.RpcError) as refused:
        list(channel(iter([pb.ShellFrame(open=signed)])))
    assert isinstance(refused.value, grpc.Call)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "replayed request" in (refused.value.details() or "")


def test_shell_switched_off_on_the_provider_is_refused(tmp_path: Path) -> None:
    world = start_stack(tmp_path / "off", enabled=False)
    try:
        done = world.run("shell", world.lease_id, "--", "echo", "hi")
        assert done.returncode == 1 and done.stdout == b""
        assert b"switched shell access off" in done.stderr
        with pytest.raises(FailedPrecondition, match="switched shell access off"):
            list(world.tenant.shell(pb.ShellOpen(lease_id=world.lease_id), iter(())))
        cp = world.run("cp", f"{world.lease_id}:/etc/passwd", str(tmp_path / "p"))
        assert cp.returncode == 1 and b"switched shell access off" in cp.stderr
        world.tenant.close_lease(world.lease_id)
        with pytest.raises(FailedPrecondition, match="not running"):
            list(world.tenant.shell(pb.ShellOpen(lease_id=world.lease_id), iter(())))
    finally:
        world.stack.close()


def test_a_provider_that_does_not_answer_is_unavailable(running: Running) -> None:
    """Last in this module: the agent is stopped (SIGSTOP) for the length of the wait, its
    stream to the market still open; the tenant hears so after the answer timeout."""
    agent = running.stack.providers["cpu"].proc
    assert agent is not None
    agent.popen.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        done = running.run("shell", running.lease_id, "--", "true")
        waited = time.monotonic() - started
        with pytest.raises(MarketUnavailable, match="did not answer"):
            list(running.tenant.shell(pb.ShellOpen(lease_id=running.lease_id), iter(())))
    finally:
        agent.popen.send_signal(signal.SIGCONT)
    assert done.returncode == 1
    assert b"did not answer the session request within 10 s" in done.stderr
    assert 9 < waited < 30
