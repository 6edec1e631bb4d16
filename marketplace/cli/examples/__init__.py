"""The checkout's examples/ (manifests, provider configs, scenarios, a systemd unit), shipped in
the package so that a `pip install .` user has what README names: `gpumarket example` lists,
prints or writes them. Each file here is a link to examples/, so the two never differ (the
wheel carries the linked files' contents; tests/system/test_wheel.py checks it)."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def names() -> list[str]:
    """Every shipped example, by file name."""
    return sorted(f.name for f in files(__name__).iterdir() if not f.name.startswith(("_", ".")))


def example_file(name: str) -> Traversable | None:
    """The example called `name` as installed, or None when there is none."""
    return files(__name__) / name if name in names() else None
