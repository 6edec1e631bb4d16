"""Fixtures for every test: an isolated config dir, and the opt-out that skips Docker tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SHARED


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite reads the project's shared fixtures and corpus (NVML recordings, real SDLs,
    Akash's schema, traces), which are not in the checkout: without them, say so in one line
    instead of a collection error per module."""
    if not (SHARED / "fixtures").is_dir() or not (SHARED / "corpus").is_dir():
        pytest.exit(
            f"the tests read the shared fixtures and corpus from {SHARED}, which is missing: "
            "put the project's shared/ beside the checkout, or set GPUMARKET_SHARED=/path/to/shared",
            returncode=4,
        )


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own config dir, so no test touches the user's keys."""
    home = tmp_path_factory.mktemp("gpumarket-home")
    monkeypatch.setenv("GPUMARKET_HOME", str(home))
    return home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only an explicit opt-out skips Docker tests; CI never sets it, so they always run there.
    if os.environ.get("GPUMARKET_SKIP_DOCKER") == "1" and not os.environ.get("CI"):
        skip = pytest.mark.skip(reason="GPUMARKET_SKIP_DOCKER=1")
        for item in items:
            if "docker" in item.keywords:
                item.add_marker(skip)
