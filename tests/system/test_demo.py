"""`gpumarket demo` as a user runs it: one command, the whole market, cleaned up afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from marketplace.cli.demo_stack import GPUMARKET, toml_dumps, wait_for_market
from marketplace.core.errors import NotFound
from marketplace.polling import wait_until
from provider_agent.runtime import LABEL_PROVIDER

ADDRESS = re.compile(r"^\s+(?:h100|cpu)\s+(gm1\w+)", re.M)


def run_demo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    done = subprocess.run(
        [*GPUMARKET, "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout, done.stderr


def working_dir(stdout: str) -> Path:
    found = re.search(r"working dir (\S+)\)", stdout)
    assert found, stdout
    return Path(found.group(1))


def containers_of(addresses: list[str]) -> list[str]:
    client = docker.from_env()
    try:
        return [
            str(c.name)
            for a in addresses
            for c in client.containers.list(all=True, filters={"label": f"{LABEL_PROVIDER}={a}"})
        ]
    finally:
        client.close()


def test_without_a_docker_engine_it_says_so_in_one_line() -> None:
    code, out, err = run_demo(env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "no Docker engine" in lines[0]
    assert "sudo dockerd &" in lines[0] and "scripts/docker-up.sh" in lines[0]
    assert "Traceback" not in err


def test_toml_dumps_round_trips_an_agent_config() -> None:
    import tomllib

    config = {
        "provider": {"key": "/tmp/a b/k.pem", "region": 'eu "west"'},
        "gpu": {"backend": "replay", "allow_uuids": ["GPU-1", "GPU-2"], "replay_load": False},
        "pricing": {"scale": {"cpu_hour": "0.01", "gpu_hour": {"h100": "0.9", "a100.80Gi": "1"}}},
        "metrics": {"port": 0, "poll": 1.5},
    }
    assert tomllib.loads(toml_dumps(config)) == config


def test_wait_for_market_counts_market_errors_as_not_yet_and_names_the_last() -> None:
    answers = iter([NotFound("lease L1"), None, "ready"])

    def answer() -> str | None:
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_for_market(answer, 5, "the lease") == "ready"

    def missing() -> None:
        raise NotFound("lease L2")

    with pytest.raises(TimeoutError, match=r"waiting for the lease \(last error: .*L2"):
        wait_for_market(missing, 0.1, "the lease")


def gone(pid: int) -> bool:
    """Exited (a zombie left for an init that does not reap counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


ORCHESTRATOR = """
import sys, time
from pathlib import Path
from marketplace.cli.demo_stack import Stack
stack = Stack(root=Path(sys.argv[1]))
stack.start_market()
print(stack.market.pid, flush=True)
time.sleep(120)  # idle until the test kills us
"""


def test_children_die_with_their_orchestrator_even_on_sigkill(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", ORCHESTRATOR, str(tmp_path / "stack")],
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        market_pid = int(parent.stdout.readline())
        assert not gone(market_pid)
        parent.kill()
        parent.wait(10)
    wait_until(lambda: gone(market_pid), 10, "the marketplace to exit")


@pytest.mark.docker
@pytest.mark.slow
def test_demo_runs_the_whole_market_and_cleans_up() -> None:
    code, out, err = run_demo()
    assert code == 0, out + err
    assert "Traceback" not in out + err
    for expected in (
        "winner: cpu",  # the cheaper CPU-only provider wins both auctions
        '{"model":"tiny-llm","status":"ready"}',  # the endpoint, fetched over HTTP
        "step 10 loss 0.027",
        "training done",
        ": completed (exit 0)",
        "(exact to the micro-unit)",
        ": provider_lost after",
        "running on h100",  # the failover
        "books balanced",
        "deploy → container running (inference):",
        "provider SIGKILL → lease running again elsewhere:",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert not working_dir(out).exists()
    assert containers_of(ADDRESS.findall(out)) == []
    print(out[out.index("== timings") :])  # the figures, for `pytest -s`


@pytest.mark.docker
@pytest.mark.slow
def test_ctrl_c_mid_demo_stops_everything_and_removes_containers() -> None:
    proc = subprocess.Popen(
        [*GPUMARKET, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # read until a lease runs: containers exist now
        seen += line
        if line.startswith("winner:") or time.monotonic() > deadline:
            break
    assert "winner:" in seen, seen
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, seen + rest + err
    assert "interrupted: cleaning up" in err
    assert "Traceback" not in err
    assert not working_dir(seen).exists()
    assert containers_of(ADDRESS.findall(seen)) == []
    leftovers = subprocess.run(["pgrep", "-f", str(working_dir(seen))], capture_output=True)
    assert leftovers.stdout == b"", "a child process outlived the demo"
