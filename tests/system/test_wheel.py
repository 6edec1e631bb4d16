"""`pip install . && gpumarket demo` works: the installed package carries what its commands read.

The wheel is built from a copy of the package sources (no checkout beside it), installed into a
fresh virtual environment, and run from an empty temporary directory with no PYTHONPATH, so a
file read from the checkout (examples/, scripts/) would be missing, as on a user's machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from marketplace.cli.demo_files import DOCKER_UP, SHIPPED, demo_file
from marketplace.cli.examples import names
from marketplace.cli.main import cli
from tests.helpers import EXAMPLES, REPO

# what a wheel is built from: the package sources, nothing else of the checkout
SOURCES = ("pyproject.toml", "README.md", "marketplace", "provider_agent", "simulator")


def checkout_copy(name: str) -> Path:
    """Where the checkout keeps the file the package ships as `name`."""
    return REPO / "scripts" / name if name == DOCKER_UP else EXAMPLES / name


def test_the_shipped_demo_files_are_the_checkouts() -> None:
    """examples/ and scripts/ stay for users; the package holds no copy of them: the demo's
    manifests and configs are the shipped examples, its docker-up.sh a link to scripts/."""
    demo_files = REPO / "marketplace" / "cli" / "demo_files"
    assert sorted(p.name for p in demo_files.iterdir() if not p.name.startswith("_")) == [DOCKER_UP]
    link = demo_files / DOCKER_UP
    assert link.is_symlink() and link.resolve() == checkout_copy(DOCKER_UP).resolve()
    for name in SHIPPED:
        assert demo_file(name).read_bytes() == checkout_copy(name).read_bytes(), name


def _without_checkout() -> dict[str, str]:
    """The environment without PYTHONPATH (which may point at a checkout)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@dataclass(frozen=True)
class Installed:
    venv: Path
    cwd: Path  # an empty directory: nothing of the checkout is reachable from it

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=self.cwd,
            env=_without_checkout(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, code: str) -> str:
        done = self.run(str(self.venv / "bin" / "python"), "-c", code)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def gpumarket(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "gpumarket"), *args, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    # the build backend, from this interpreter (no build isolation: nothing is downloaded)
    pytest.importorskip("setuptools", minversion="68")
    root = tmp_path_factory.mktemp("wheel")
    src, wheels, venv, cwd = (root / d for d in ("src", "wheels", "venv", "cwd"))
    src.mkdir()
    cwd.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=junk)
        else:
            shutil.copy2(path, src / name)
    pip = (sys.executable, "-m", "pip")
    # no build isolation and no index: nothing is downloaded (the machine may be offline)
    build = (*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(wheels))
    subprocess.run([*build, "-q"], check=True, timeout=300)
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300
    )
    [wheel] = wheels.glob("gpumarket-*.whl")
    # --force-reinstall: a gpumarket in the system site-packages (an editable install of a
    # checkout) must not count as installed already
    install = (str(venv / "bin" / "pip"), "install", "--no-deps", "--no-index", "--force-reinstall")
    subprocess.run([*install, "-q", str(wheel)], check=True, timeout=300, env=_without_checkout())
    yield Installed(venv, cwd)


@pytest.mark.slow
def test_the_wheel_carries_what_the_commands_read(installed: Installed) -> None:
    # the package comes from the wheel, not from the checkout
    where = installed.python("import marketplace; print(marketplace.__file__)").strip()
    assert Path(where).is_relative_to(installed.venv), where
    # every file the demo reads loads from the installed package, identical to the checkout's
    for name in SHIPPED:
        shipped = installed.python(
            "import sys; from marketplace.cli.demo_files import demo_file; "
            f"sys.stdout.buffer.write(demo_file({name!r}).read_bytes())"
        )
        assert shipped == checkout_copy(name).read_text(), name
    done = installed.gpumarket("demo", "--help")
    assert done.returncode == 0 and "Run the whole market here" in done.stdout, done.stderr
    # the README's quick start: the simulator on its built-in scenario
    done = installed.gpumarket("simulate", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "balanced" in done.stdout and (installed.cwd / "sim-out").is_dir()


@pytest.mark.slow
@pytest.mark.docker
def test_the_installed_demo_runs_through(installed: Installed) -> None:
    done = installed.gpumarket("demo", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "books balanced" in done.stdout


@pytest.mark.slow
@pytest.mark.docker
def test_the_installed_package_builds_the_demo_image(installed: Installed) -> None:
    """The image build (the shipped docker-up.sh) runs from the installed package; under
    another image name, so the one the other tests use is left alone."""
    import docker

    image = f"gpumarket/wheel-test:{uuid.uuid4().hex[:8]}"
    try:
        out = installed.python(
            "from marketplace.cli.demo_stack import ensure_image; "
            f"print(ensure_image(print, {image!r}))"
        )
        assert out.strip().splitlines()[-1] == "None", out
    finally:
        client = docker.from_env()
        try:
            client.images.remove(image, force=True)
        except docker.errors.ImageNotFound:
            pass
        finally:
            client.close()


# what the installed commands read from the package, beside the demo's files: (package, file)
PACKAGE_DATA = {
    ("marketplace.api.v1", "market.proto"): REPO / "proto" / "marketplace" / "api" / "v1",
    ("simulator.scenarios", "default.yaml"): REPO / "simulator" / "scenarios",
    ("simulator.data", "machine_mix.json"): REPO / "simulator" / "data",
    ("provider_agent.fixtures", "h100_nvml.json"): REPO / "provider_agent" / "fixtures",
    ("provider_agent.fixtures", "h100x8_nvml.json"): REPO / "provider_agent" / "fixtures",
    ("marketplace.core.data", "gpus.json"): REPO / "marketplace" / "core" / "data",
    ("marketplace.console", "static/index.html"): REPO / "marketplace" / "console",
}


@pytest.mark.slow
def test_the_wheel_carries_its_package_data(installed: Installed) -> None:
    """The wire protocol (for clients in other languages), the built-in scenario, the NVML
    recordings README's provider.toml names (builtin:...), the GPU table and the console's page:
    each read from the installed package, the checkout's bytes."""
    for (package, name), checkout_dir in PACKAGE_DATA.items():
        shipped = installed.python(
            "import sys, importlib.resources as r; "
            f"sys.stdout.write(r.files({package!r}).joinpath({name!r}).read_text())"
        )
        assert shipped == (checkout_dir / name).read_text(), f"{package}: {name}"
    # README's provider.toml (the replayed H100) loads from the installed package, anywhere
    config = installed.cwd / "provider.toml"
    config.write_text('[gpu]\nbackend = "replay"\nreplay_file = "builtin:h100_nvml.json"\n')
    done = installed.gpumarket("provider", "inventory", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    [gpu] = json.loads(done.stdout)["gpus"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"


def test_every_checkout_example_is_shipped_as_a_link_to_it() -> None:
    """marketplace/cli/examples holds a link to each file of examples/, so `gpumarket example`
    can never serve a stale copy, and a new example is shipped from the day it exists."""
    shipped = REPO / "marketplace" / "cli" / "examples"
    assert names() == sorted(p.name for p in EXAMPLES.iterdir())
    for name in names():
        link = shipped / name
        assert link.is_symlink() and link.resolve() == (EXAMPLES / name).resolve(), name


@pytest.mark.slow
def test_readme_examples_are_had_without_a_checkout(installed: Installed) -> None:
    """README's commands name examples/...: `gpumarket example --all examples` writes them from
    the installed package (the checkout's bytes), and README's commands then run as written."""
    done = installed.gpumarket("example", "--all", "examples")
    assert done.returncode == 0, done.stderr
    for path in EXAMPLES.iterdir():
        assert (installed.cwd / "examples" / path.name).read_bytes() == path.read_bytes(), path
    printed = installed.gpumarket("example", "training.yaml")
    assert printed.stdout == (EXAMPLES / "training.yaml").read_text()
    for command in (
        ("manifest", "validate", "examples/inference.yaml"),
        ("provider", "inventory", "--config", "examples/provider-h100-replay.toml"),
        (
            "simulate",
            "run",
            "examples/scenario-small.yaml",
            "--set",
            "providers.count=10",
            "--no-plots",
            "--out",
            "sim-small",
        ),
    ):
        done = installed.gpumarket(*command, timeout=300)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"


def test_an_unknown_example_is_one_line_naming_the_known_ones() -> None:
    result = CliRunner().invoke(cli, ["example", "nope.yaml"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: no example 'nope.yaml': `gpumarket example` lists")
    assert "training.yaml" in result.output and len(result.output.splitlines()) == 1
