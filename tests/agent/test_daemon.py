"""The daemon as a process: what it prints at start, its metrics endpoint, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker  # the daemon needs a Docker engine to start

CONFIG = """
[provider]
key = "daemon-test"
[marketplace]
address = "127.0.0.1:1"     # nothing listens: the agent keeps retrying
reconnect_max_s = 1
[gpu]
backend = "{backend}"
{replay}
poll_interval_s = 0.2
[resources]
cpu = 2
memory = "4Gi"
storage = "10Gi"
[pricing.scale]
cpu_hour = "0.01"
[metrics]
port = 0
"""


class Daemon:
    def __init__(self, tmp: Path, backend: str) -> None:
        replay = 'replay_file = "builtin:h100_nvml.json"' if backend == "replay" else ""
        cfg = tmp / "provider.toml"
        cfg.write_text(CONFIG.format(backend=backend, replay=replay))
        env = {**os.environ, "GPUMARKET_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from marketplace.cli.main import main; main()",
                "provider",
                "run",
                "--config",
                str(cfg),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, pattern: str, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        self.lines += out.splitlines()
        return self.proc.returncode


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    started: list[Daemon] = []

    def make(backend: str) -> Daemon:
        d = Daemon(tmp_path, backend)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_daemon_prints_its_gpus_serves_metrics_and_drains_on_sigterm(
    daemon_factory: Callable[[str], Daemon],
) -> None:
    d = daemon_factory("replay")
    d.read_until(
        r"GPU 0: NVIDIA H100 80GB HBM3 GPU-ec74fc0e-388d-22e5-9031-c553a0c26378 81559 MiB CC 9.0"
    )
    d.read_until(r"offering 1× h100 80Gi sxm")
    found = re.search(r"http://\S+/metrics", d.read_until(r"metrics on"))
    assert found is not None
    url = found.group(0)
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    assert re.search(
        r'DCGM_FI_DEV_GPU_TEMP\{gpu="0",UUID="GPU-ec74fc0e-388d-22e5-9031-c553a0c26378",'
        r'pci_bus_id="00000000:00:06.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",'
        r'Hostname="[^"]+"\} 32',
        body,
    ), body
    assert "DCGM_FI_DEV_FB_USED{" in body and "DCGM_FI_DEV_POWER_USAGE{" in body
    assert "gpumarket_provider_bids_placed_total 0" in body
    assert "gpumarket_provider_leases_running 0" in body
    assert "DCGM_FI_DEV_XID_ERRORS" not in body  # no XID seen: no sentinel value exported
    d.read_until(r"marketplace unreachable .*retrying in")
    assert d.stop() == 0
    assert any("draining" in line for line in d.lines)


def test_daemon_on_a_host_without_nvidia_driver_runs_cpu_only(
    daemon_factory: Callable[[str], Daemon],
) -> None:
    d = daemon_factory("nvml")
    line = d.read_until(r"offering|no GPUs")
    if "no GPUs" not in line:
        d.stop()
        pytest.skip("this host has NVIDIA GPUs")
    assert "no NVIDIA driver library (libnvidia-ml.so.1) on this host" in line
    assert "offering CPU-only capacity: 2 CPU, 4 GiB memory" in line
    d.read_until(r"marketplace unreachable")
    assert d.stop() == 0
    assert sum("no GPUs" in x for x in d.lines) == 1  # said once, plainly
