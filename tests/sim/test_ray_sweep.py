"""`gpumarket simulate sweep --ray`: the same sweep on a local Ray cluster (started and shut
down here, 2 CPUs) gives the process pool's results byte for byte; without Ray the flag says
how to get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from marketplace.cli.main import cli

SCENARIO = """
name: tiny
duration_days: 0.1
providers: {count: 15, failures: {community_share: 1.0, community_factor: 2000}}
tenants: {count: 6, arrivals: {rate_per_hour: 10}}
report: {sample_minutes: 30}
"""
SWEEP = """
name: raytest
scenario: tiny.yaml
seeds: [1, 2]
grid:
  providers.count: [10, 20]
  market.payment: [first-price, second-price]
workers: 2
"""
COMPARED = ("sweep_runs.csv", "sweep.csv", "sweep.json")
# A cluster that runs on its own (as one started by `ray start --head` would), told its address
HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # runs until the test closes its stdin
ray.shutdown()
"""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def sweep_file(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(SCENARIO)
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    return path


def sweep(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["simulate", "sweep", *args])
    return result.exit_code, result.output


def files(out: Path) -> dict[str, bytes]:
    """Every result file of a sweep but the plots, by its path in the report folder."""
    found = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("metrics.json")}
    return found | {name: (out / name).read_bytes() for name in COMPARED}


def test_a_sweep_on_a_running_cluster_at_an_address(sweep_file: Path, tmp_path: Path) -> None:
    """The cluster's workers do not have this code on their path (no PYTHONPATH, another
    directory): the driver ships it with the job, and the results match the process pool."""
    # a throwaway loopback cluster: no token to share between its processes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=head_env,
        cwd=tmp_path,
    )
    try:
        assert head.stdout is not None
        address = head.stdout.readline().strip()
        assert address, "the Ray head did not start"
        on_ray = tmp_path / "ray"
        command = "from marketplace.cli.main import main; main()"
        args = ["simulate", "sweep", str(sweep_file), "--out", str(on_ray), "--ray", address]
        done = subprocess.run(
            [sys.executable, "-c", command, *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    finally:
        assert head.stdin is not None and head.stdout is not None
        head.stdin.close()
        head.wait(60)
        head.stdout.close()
    local = tmp_path / "local"
    code, output = sweep(str(sweep_file), "--out", str(local), "--json")
    assert code == 0, output
    assert files(on_ray) == files(local)


def test_a_ray_sweep_matches_the_process_pool_byte_for_byte(
    ray_cluster: None, sweep_file: Path, tmp_path: Path
) -> None:
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    code, output = sweep(str(sweep_file), "--out", str(local), "--json")
    assert code == 0, output
    code, output = sweep(str(sweep_file), "--out", str(on_ray), "--ray", "--json")
    assert code == 0, output
    assert len(json.loads(output)["runs"]) == 8
    expected = files(local)
    assert len([name for name in expected if name.endswith("metrics.json")]) == 8
    assert files(on_ray) == expected


def test_the_ray_task_runs_in_another_process(ray_cluster: None) -> None:
    """The tasks really leave this process (Ray workers), rather than running inline."""
    import ray

    from simulator.ray_pool import _run_scenario
    from simulator.scenario import load_scenario

    where = ray.remote(lambda: os.getpid())
    assert ray.get(where.remote()) != os.getpid()
    summary = ray.get(ray.remote(_run_scenario).remote(load_scenario(None, {}), 1))
    assert sum(summary["jobs"]["arrived"].values()) > 0


def test_without_ray_the_flag_says_how_to_get_it(sweep_file: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # import ray -> ImportError, as if not installed
        "from marketplace.cli.main import main; main()\n"
    )
    args = ["simulate", "sweep", str(sweep_file), "--out", str(tmp_path / "o"), "--ray"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: Ray is not installed: pip install 'gpumarket[ray]' (or pip install 'ray[default]')"
    ]
    assert not (tmp_path / "o").exists()
