"""`gpumarket market serve` as a real process, for every test that needs one.

with MarketProcess.start(tmp_path / "market") as market:
    MarketClient(market.address).list_providers()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marketplace.identity import Key
from marketplace.server.serve import ADMIN_KEY_FILE

SERVE = [sys.executable, "-c", "from marketplace.cli.main import main; main()", "market", "serve"]
# The usual umask, set for the server so the file modes the tests check do not depend on the
# umask of whoever runs them.
UMASK = 0o022
START_TIMEOUT_S = 30.0


class MarketProcess:
    """One `market serve` process on a data dir. Its output goes to a file beside the data dir,
    never to a pipe nobody reads while it runs: a chatty server would fill the pipe and block.
    With SEPARATE_LOG its stderr (the log) goes to a file of its own."""

    SEPARATE_LOG = False

    def __init__(self, data_dir: Path, args: tuple[str, ...], listen: str) -> None:
        self.data_dir = data_dir
        self.args = args
        self.listen = listen
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.stderr_path = data_dir.parent / f"{data_dir.name}.stderr"
        self.port_file = data_dir.parent / f"{data_dir.name}.port"
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""

    @classmethod
    def start(cls, data_dir: Path, *args: str, listen: str = "127.0.0.1:0") -> MarketProcess:
        """Start serving on `data_dir` and wait until it is listening."""
        return cls(data_dir, args, listen).restart()

    def restart(self) -> MarketProcess:
        """(Re)start on the same data dir, arguments and listen address; wait until listening."""
        self.port_file.unlink(missing_ok=True)
        command = [*SERVE, "--listen", self.listen, "--data-dir", str(self.data_dir)]
        err_path = self.stderr_path if self.SEPARATE_LOG else self.log_path
        # the child keeps its own copies of the fds
        with self.log_path.open("ab") as out, err_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [*command, "--port-file", str(self.port_file), *self.args],
                stdout=out,
                stderr=err,
                umask=UMASK,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.port_file.exists():  # polled with a deadline: the file is the signal
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"the marketplace did not start: {self.output()}")
            time.sleep(0.02)
        self.address = self.port_file.read_text().strip()
        return self

    @property
    def root(self) -> Path:
        """The folder that holds the data dir and the output files."""
        return self.data_dir.parent

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def admin(self) -> Key:
        """The marketplace's admin key (the faucet; its address is the market's id)."""
        return Key.from_pem((self.data_dir / ADMIN_KEY_FILE).read_bytes())

    def output(self) -> str:
        """Everything the server printed, over all its starts."""
        found = [p for p in (self.log_path, self.stderr_path) if p.exists()]
        return "".join(p.read_text(errors="replace") for p in found)

    def memory_mib(self, field: str) -> float:
        """VmHWM (peak resident) or VmRSS of the server process, in MiB."""
        for row in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if row.startswith(field + ":"):
                return int(row.split()[1]) / 1024
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def serving(self) -> bool:
        """Whether it answers health SERVING (a standby answers NOT_SERVING; a dead one not)."""
        with grpc.insecure_channel(self.address) as ch:
            try:
                answer = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=2
                )
            except grpc.RpcError:
                return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def pause(self) -> None:
        """SIGSTOP: alive (its sockets and database sessions open) but doing nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> str:
        """Stop it (SIGTERM, as an operator would) and return what it printed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        return self.output()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)


def refused_start(*args: str, timeout_s: float = START_TIMEOUT_S) -> tuple[int, list[str]]:
    """Run `market serve ARGS` expecting a refusal: (exit status, lines printed). A server that
    starts instead fails the test (it is killed after `timeout_s`)."""
    try:
        done = subprocess.run(
            [*SERVE, *args], capture_output=True, text=True, timeout=timeout_s, umask=UMASK
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`market serve {' '.join(args)}` served instead of refusing: {exc.stdout!r}")
    return done.returncode, (done.stdout + done.stderr).splitlines()
