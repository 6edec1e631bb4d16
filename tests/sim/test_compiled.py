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


@pytest.mark.timeout(1800)
def test_a_run_on_the_compiled_core_matches_the_golden_files(tmp_path: Path) -> None:
    """Builds the core with mypyc (a minute or more of C compiling) and runs every golden
    scenario on it in a fresh process."""
    build = tmp_path / "build"
    manifest = compiled.build(build)
    assert set(manifest["modules"]) == {compiled.module_name(s) for s in compiled.sources()}
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
