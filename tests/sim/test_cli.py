"""`gpumarket simulate`, end to end: reports, reproducibility, sweeps, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from marketplace.cli.main import cli
from tests.helpers import SHARED

TINY = """
name: tiny
duration_days: 0.25
providers: {count: 25, failures: {community_share: 1.0, community_factor: 2000}}
tenants: {count: 10, arrivals: {rate_per_hour: 10}}
report: {sample_minutes: 30}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def simulate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["simulate", *args])
    return result.exit_code, result.output


def test_scenario_runs_into_a_report_folder(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, output = simulate(str(tiny), "--seed", "3", "--out", str(out), "--json")
    assert code == 0, output
    result = json.loads(output)
    metrics = result["metrics"]
    assert metrics["seed"] == 3
    assert metrics["jobs"]["outcomes"].get("completed", 0) > 0
    assert metrics["market"]["auctions"] > 0
    assert metrics["ledger"]["balanced"] is True
    failures = metrics["failures"]
    assert failures["provider_failures"] > 0  # flaky community boxes fail...
    assert failures["leases_lost"] > 0  # ...the market notices and re-orders...
    assert failures["failovers"] > 0  # ...and another provider takes the group over
    assert json.loads((out / "metrics.json").read_text()) == metrics
    header = (out / "timeseries.csv").read_text().splitlines()[0]
    assert header.startswith("time_h,gpus_up,gpus_busy,utilization")
    for name in ("clearing_price", "utilization", "queue_wait_cdf", "provider_revenue", "failures"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_same_scenario_and_seed_give_identical_metrics(tiny: Path, tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for out, seed in zip(outs, ("5", "5", "6"), strict=True):
        code, output = simulate(str(tiny), "--seed", seed, "--out", str(out), "--no-plots")
        assert code == 0, output
    first, second, other = ((o / "metrics.json").read_bytes() for o in outs)
    assert first == second
    assert first != other


def test_human_output_is_a_summary_table(tiny: Path, tmp_path: Path) -> None:
    code, output = simulate(str(tiny), "--out", str(tmp_path / "r"), "--no-plots")
    assert code == 0, output
    for label in ("job outcomes", "auctions", "GPU utilization", "ledger", "report:"):
        assert label in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("providers:\n  cuont: 3\n", "providers.cuont: unknown key (did you mean 'count'?)"),
        ("market: {payment: third}\n", "market.payment: must be one of"),
        ("tenants: {arrivals: {rate_per_hour: -1}}\n", "tenants.arrivals.rate_per_hour: must be"),
        ("tenants: {training: {nodes: {0: 1}}}\n", "tenants.training.nodes: values must be >= 1"),
        ("duration_days: soon\n", "duration_days: expected a number"),
        ("[1, 2]\n", "a scenario must be a mapping"),
        # a hostile key is named by its first 128 characters, not echoed back whole
        (f"providers:\n  ? {'x' * 100_000}\n  : 3\n", f"providers.{'x' * 128}…: unknown key"),
    ],
)
def test_bad_scenarios_fail_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, output = simulate(str(path))
    assert code == 1
    assert message in output
    assert len(output.strip().splitlines()) == 1
    assert "Traceback" not in output


def test_sweep_runs_a_grid_in_parallel(tiny: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"name: t\nscenario: {tiny.name}\nseeds: [1]\nset: {{duration_days: 0.1}}\n"
        "grid:\n  providers.count: [10, 20]\n  market.payment: [first-price, second-price]\n"
        "workers: 2\n"
    )
    out = tmp_path / "sweep-out"
    code, output = simulate("sweep", str(sweep), "--out", str(out), "--json")
    assert code == 0, output
    result = json.loads(output)
    assert len(result["runs"]) == 4
    assert {(r["providers.count"], r["market.payment"]) for r in result["means"]} == {
        (10, "first-price"),
        (10, "second-price"),
        (20, "first-price"),
        (20, "second-price"),
    }
    assert (out / "sweep.csv").read_text().startswith("providers.count,market.payment,seeds,")
    assert (out / "sweep_price.png").read_bytes().startswith(b"\x89PNG")


def test_sweep_errors_name_the_key(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("grid:\n  providers.count: [10, -1]\n")
    code, output = simulate("sweep", str(sweep))
    assert code == 1
    assert "providers.count: must be >= 1, got -1" in output


def test_alibaba_v2023_trace_loads_its_gpu_tasks() -> None:
    from simulator.workload import load_trace

    trace = SHARED / "corpus/traces/alibaba-gpu-v2023/openb_pod_list_default.csv"
    if not trace.exists():
        pytest.skip("../shared traces not present")
    tasks = load_trace(trace, speedup=1.0, horizon_ms=10**15)
    assert len(tasks) == 7_064  # of 8,152 tasks, those asking for a GPU (simulation.md §7.5)
    assert tasks == sorted(tasks, key=lambda t: t.time_ms)


def test_simulator_loads_no_grpc_docker_or_nvml() -> None:
    import subprocess
    import sys

    code = (
        "import sys, simulator.cli, simulator.engine, simulator.report, simulator.sweep\n"
        "bad = [m for m in ('grpc', 'docker', 'pynvml') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metrics_do_not_depend_on_the_hash_seed(tiny: Path, tmp_path: Path) -> None:
    """Separate processes with different PYTHONHASHSEED (set iteration order) agree byte for
    byte: the run's only randomness is its own seeded RNG."""
    import os
    import subprocess
    import sys

    outs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"h{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from marketplace.cli.main import main; main()",
                "simulate",
                str(tiny),
                "--out",
                str(out),
                "--no-plots",
                "--json",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        outs.append((out / "metrics.json").read_bytes())
    assert outs[0] == outs[1]
