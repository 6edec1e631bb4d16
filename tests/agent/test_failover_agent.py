"""The provider agent given several marketplace addresses: it passes over a dead one, and when
its market is SIGKILLed it moves by itself to the standby (a copy of the market's data on
another address: same id), registering there and carrying on; the config takes the list as
a string with commas or a TOML list."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient
from provider_agent.config import ConfigError, load_config
from tests.helpers import closed_port
from tests.server.market_process import MarketProcess

CONFIG = """
[provider]
key = "failover-test"
region = "eu"
host_uri = "https://127.0.0.1"
[marketplace]
address = {addresses}
reconnect_max_s = 0.5
[gpu]
backend = "replay"
replay_file = "builtin:h100_nvml.json"
[resources]
cpu = 2
memory = "4Gi"
storage = "10Gi"
[pricing.scale]
cpu_hour = "0.01"
[metrics]
port = 0  # any free port: the default 9400 may be another agent's on a shared box
"""


class Agent:
    """`gpumarket provider run` as a process, its output read line by line."""

    def __init__(self, tmp: Path, addresses: str) -> None:
        cfg = tmp / "provider.toml"
        cfg.write_text(CONFIG.format(addresses=addresses))
        env = {**os.environ, "GPUMARKET_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1"}
        command = "from marketplace.cli.main import main; main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", command, "provider", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, pattern: str, timeout: float = 60) -> str:
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        if self.proc.stdout is not None:
            self.proc.stdout.close()  # an agent that exited by itself: its pipe is still open


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


@pytest.mark.docker  # the daemon needs a Docker engine to start
def test_the_agent_fails_over_to_the_standby_by_itself(tmp_path: Path, agents: list[Agent]) -> None:
    standby_address = closed_port()
    with MarketProcess.start(tmp_path / "a") as leader:
        # a dead address first, the leader, then where the standby will come up
        listed = f'["{closed_port()}", "{leader.address}, {standby_address}"]'
        agent = Agent(tmp_path, listed)
        agents.append(agent)
        agent.read_until(rf"registered with the marketplace at {re.escape(leader.address)}$")
        with MarketClient(leader.address) as client:
            (provider,) = client.list_providers(online_only=True)
        leader.kill9()
        shutil.copytree(leader.data_dir, tmp_path / "b")
        with MarketProcess.start(tmp_path / "b", listen=standby_address) as standby:
            agent.read_until(rf"registered with the marketplace at {re.escape(standby_address)}$")
            with MarketClient(standby.address) as client:
                online = client.list_providers(online_only=True)
            assert [p.address for p in online] == [provider.address]


def test_the_config_takes_a_list_or_commas(tmp_path: Path) -> None:
    path = tmp_path / "provider.toml"
    for given, expected in [
        ('"localhost:1"', ("localhost:1",)),
        ('"localhost:1, 127.0.0.2:2"', ("localhost:1", "127.0.0.2:2")),
        ('["localhost:1", "[::1]:2"]', ("localhost:1", "[::1]:2")),
    ]:
        path.write_text(CONFIG.format(addresses=given))
        cfg = load_config(path)
        assert cfg.marketplace.addresses == expected
        assert cfg.marketplace.address == ",".join(expected)
    for bad, message in [
        ('"a:1,,b:2"', "has an empty entry"),
        ("[1, 2]", "must be a string or a list of strings, got"),
        ("[]", "no marketplace address given"),
    ]:
        path.write_text(CONFIG.format(addresses=bad))
        with pytest.raises(ConfigError, match=message) as refused:
            load_config(path)
        assert "marketplace.address" in str(refused.value)
