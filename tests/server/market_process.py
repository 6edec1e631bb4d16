"""`gpumarket market serve` as a real process, for the tests of serving, refusing and TLS.

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

import pytest

SERVE = [sys.executable, "-c", "from marketplace.cli.main import main; main()", "market", "serve"]
# The usual umask, set for the server so the file modes the tests check do not depend on the
# umask of whoever runs them.
UMASK = 0o022
START_TIMEOUT_S = 30.0


class MarketProcess:
    def __init__(self, proc: subprocess.Popen[str], address: str, data_dir: Path) -> None:
        self.proc = proc
        self.address = address
        self.data_dir = data_dir

    @classmethod
    def start(cls, data_dir: Path, *args: str, listen: str = "127.0.0.1:0") -> MarketProcess:
        """Start serving on `data_dir` and wait until it is listening."""
        port_file = data_dir.parent / f"{data_dir.name}.port"
        port_file.unlink(missing_ok=True)
        command = [*SERVE, "--listen", listen, "--data-dir", str(data_dir)]
        proc = subprocess.Popen(
            [*command, "--port-file", str(port_file), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            umask=UMASK,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists():  # polled with a deadline: the file is the signal
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, _ = proc.communicate()
                raise AssertionError(f"the marketplace did not start: {out}")
            time.sleep(0.02)
        return cls(proc, port_file.read_text().strip(), data_dir)

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> str:
        """Stop it (SIGTERM, as an operator would) and return what it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=20)
        return out

    def __enter__(self) -> MarketProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=20)


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
