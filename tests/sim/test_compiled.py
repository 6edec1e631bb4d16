"""The compiled core (simulator/compiled.py) is an optional speed-up: by default the pure-Python
modules run; a build runs only when it matches the sources; and a run on it writes the same
results as the pure-Python reference (the golden files)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from marketplace.core import market, money
from simulator import compiled
from tests.helpers import REPO
from tests.sim.test_golden import FILES, GOLDEN, SCENARIOS


def test_the_pure_python_core_runs_by_default() -> None:
    assert not compiled.is_compiled(market)
    assert not any(type(f).__name__ == "_Finder" for f in sys.meta_path)


def fake_build(out: Path, source: str, sha256: str) -> None:
    """A build folder whose manifest names one module (no compiling needed to be refused)."""
    name = source.removesuffix(".py").replace("/", ".")
    extension = source.removesuffix(".py") + ".so"
    (out / extension).parent.mkdir(parents=True)
    (out / extension).write_bytes(b"")
    manifest = {
        "python": sys.implementation.cache_tag,
        "modules": {name: {"source": source, "sha256": sha256, "extension": extension}},
    }
    (out / compiled.MANIFEST).write_text(json.dumps(manifest), "utf-8")


def finders() -> int:
    return len(sys.meta_path)


def test_a_build_of_other_sources_is_refused(tmp_path: Path) -> None:
    fake_build(tmp_path, "marketplace/core/money.py", "0" * 64)
    before = finders()
    reason = compiled.activate(tmp_path)
    assert reason == f"marketplace/core/money.py changed since {tmp_path} was built: rebuild it"
    assert finders() == before


def test_a_build_is_refused_once_the_core_is_loaded(tmp_path: Path) -> None:
    source = "marketplace/core/money.py"
    fake_build(tmp_path, source, hashlib.sha256((REPO / source).read_bytes()).hexdigest())
    assert money.__name__ in sys.modules
    before = finders()
    reason = compiled.activate(tmp_path)
    assert reason == (
        "marketplace.core.money is imported already: activate before the market core loads"
    )
    assert finders() == before


def test_a_missing_build_is_refused(tmp_path: Path) -> None:
    assert compiled.activate(tmp_path / "nothing") == (
        f"no compiled build in {tmp_path / 'nothing'} (python -m simulator.compiled build)"
    )


def test_check_says_whether_a_build_matches(tmp_path: Path) -> None:
    fake_build(tmp_path, "marketplace/core/money.py", "0" * 64)
    done = subprocess.run(
        [sys.executable, "-m", "simulator.compiled", "check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert done.returncode == 1
    assert "changed since" in done.stdout


RUN_GOLDEN = """
import sys
from pathlib import Path
from simulator import compiled

build, out = Path(sys.argv[1]), Path(sys.argv[2])
refused = compiled.activate(build)
assert refused is None, refused
from marketplace.core import market, state
assert compiled.is_compiled(market) and compiled.is_compiled(state)
from tests.sim.test_golden import SCENARIOS, write_run
for name in SCENARIOS:
    write_run(name, out / name)
"""


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core built with mypyc (a minute or more of C compiling), once for this module."""
    folder = tmp_path_factory.mktemp("compiled") / "build"
    manifest = compiled.build(folder)
    assert set(manifest["modules"]) == {compiled.module_name(s) for s in compiled.sources()}
    return folder


@pytest.mark.timeout(1800)
def test_a_run_on_the_compiled_core_matches_the_golden_files(build: Path, tmp_path: Path) -> None:
    """Runs every golden scenario on the compiled core in a fresh process."""
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-c", RUN_GOLDEN, str(build), str(out)],
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    for name in SCENARIOS:
        for file in FILES:
            got = (out / name / file).read_text(encoding="utf-8")
            want = (GOLDEN / name / file).read_text(encoding="utf-8")
            assert got == want, f"compiled: {name}/{file} differs from the golden file"


# ---- gpumarket simulate --compiled DIR / GPUMARKET_COMPILED=DIR -------------------------------
GOLDEN_RUN = "second-price"  # the smallest golden scenario


def gpumarket(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`gpumarket ARGS` as a user runs it: its own process (the core not loaded yet)."""
    environment = {k: v for k, v in os.environ.items() if k != "GPUMARKET_COMPILED"}
    return subprocess.run(
        [sys.executable, "-c", "from marketplace.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**environment, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=600,
    )


def simulate_golden(
    tmp_path: Path, out: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`gpumarket simulate ... --json` on the golden scenario into tmp_path/out."""
    data, seed = SCENARIOS[GOLDEN_RUN]
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data), "utf-8")
    folder = str(tmp_path / out)
    run = ("simulate", str(scenario), "--seed", str(seed), "--out", folder, "--no-plots", "--json")
    done = gpumarket(tmp_path, *run, *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for file in FILES:
        got = (tmp_path / out / file).read_text(encoding="utf-8")
        want = (GOLDEN / GOLDEN_RUN / file).read_text(encoding="utf-8")
        assert got == want, f"{out}: {file} differs from the golden file"
    return done


def test_simulate_without_a_build_says_why_in_one_line_and_runs_pure_python(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-build"
    done = simulate_golden(tmp_path, "flag", "--compiled", str(missing))
    assert done.stderr.splitlines() == [
        f"compiled core not used: no compiled build in {missing} "
        "(python -m simulator.compiled build); running the pure-Python core"
    ]
    assert json.loads(done.stdout)["core_compiled"] is False


def test_simulate_with_a_stale_build_says_why_in_one_line_and_runs_pure_python(
    tmp_path: Path,
) -> None:
    stale = tmp_path / "stale"
    fake_build(stale, "marketplace/core/money.py", "0" * 64)  # built from other sources
    done = simulate_golden(tmp_path, "env", env={"GPUMARKET_COMPILED": str(stale)})
    assert done.stderr.splitlines() == [
        f"compiled core not used: marketplace/core/money.py changed since {stale} was built: "
        "rebuild it; running the pure-Python core"
    ]
    assert json.loads(done.stdout)["core_compiled"] is False


@pytest.mark.timeout(1800)
def test_simulate_on_a_build_is_byte_identical(build: Path, tmp_path: Path) -> None:
    """The flag and the variable both run the compiled core (nothing of the core is loaded
    before the command puts it in place) and write the golden files byte for byte."""
    for out, args, env in (
        ("flag", ("--compiled", str(build)), None),
        ("env", (), {"GPUMARKET_COMPILED": str(build)}),
    ):
        done = simulate_golden(tmp_path, out, *args, env=env)
        assert done.stderr == ""
        assert json.loads(done.stdout)["core_compiled"] is True


@pytest.mark.timeout(1800)
def test_a_sweep_on_a_build_matches_the_pure_python_sweep(build: Path, tmp_path: Path) -> None:
    """The sweep's worker processes run the compiled core too: same rows as pure Python."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: t\nseeds: [1, 2]\nset: {duration_days: 0.1, providers.count: 20, "
        "tenants.count: 10}\ngrid:\n  market.payment: [first-price, second-price]\nworkers: 2\n",
        "utf-8",
    )
    runs = {}
    for name, args in (("pure", ()), ("compiled", ("--compiled", str(build)))):
        done = gpumarket(
            tmp_path,
            "simulate",
            "sweep",
            str(sweep),
            "--out",
            str(tmp_path / name),
            "--json",
            *args,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        result = json.loads(done.stdout)
        assert result["core_compiled"] is (name == "compiled")
        runs[name] = result["runs"]
    assert runs["compiled"] == runs["pure"]
