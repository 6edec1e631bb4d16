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
