"""What `gpumarket demo` deploys and runs, shipped in the package: an installed gpumarket has no
checkout, so no examples/ or scripts/ beside it. These are copies of examples/inference.yaml,
examples/training.yaml, examples/provider-h100-replay.toml, examples/provider-cpu.toml and
scripts/docker-up.sh (which builds the demo's image); tests/system/test_wheel.py checks that they
are identical to those and that a wheel carries them. Read them with demo_file(), never by path
from the checkout."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

MANIFESTS = ("inference.yaml", "training.yaml")
PROVIDER_CONFIGS = ("provider-h100-replay.toml", "provider-cpu.toml")
DOCKER_UP = "docker-up.sh"
SHIPPED = (*MANIFESTS, *PROVIDER_CONFIGS, DOCKER_UP)


def demo_file(name: str) -> Traversable:
    """One of the SHIPPED files, as installed with the package."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped with the demo (one of {', '.join(SHIPPED)})")
    return files(__name__) / name
