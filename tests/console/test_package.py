"""The console's assets ship in the wheel (`pip install .`): the page needs no checkout, no
build step and no network."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from marketplace.console.server import load_assets
from tests.helpers import REPO

STATIC = REPO / "marketplace" / "console" / "static"
SOURCES = ("pyproject.toml", "README.md", "marketplace", "provider_agent", "simulator")


def test_every_static_file_is_served() -> None:
    assets = load_assets()
    assert set(assets) == {p.name for p in STATIC.iterdir()}
    for name, (body, _) in assets.items():
        assert body == (STATIC / name).read_bytes()


@pytest.mark.slow
def test_the_wheel_carries_the_console_assets(tmp_path: Path) -> None:
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=junk)
        else:
            shutil.copy2(path, src / name)
    # no build isolation and no index: nothing is downloaded (the machine may be offline)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            "-q",
        ],
        check=True,
        timeout=300,
    )
    [wheel] = wheels.glob("gpumarket-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for asset in STATIC.iterdir():
            shipped = archive.read(f"marketplace/console/static/{asset.name}")
            assert shipped == asset.read_bytes(), asset.name
