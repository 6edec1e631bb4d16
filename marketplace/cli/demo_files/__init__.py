"""What `gpumarket demo` deploys and runs, shipped in the package: an installed gpumarket has no
checkout, so no examples/ or scripts/ beside it. Its manifests and provider configs are the
shipped examples (marketplace/cli/examples: links to examples/); docker-up.sh here, which builds
the demo's image, is a link to scripts/docker-up.sh. One copy of each, so never a stale one (a
wheel carries the linked files' contents; tests/system/test_wheel.py checks both). Read them
with demo_file(), never by path from the checkout."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from marketplace.cli.examples import example_file

MANIFESTS = ("inference.yaml", "training.yaml")
PROVIDER_CONFIGS = ("provider-h100-replay.toml", "provider-cpu.toml")
DOCKER_UP = "docker-up.sh"
SHIPPED = (*MANIFESTS, *PROVIDER_CONFIGS, DOCKER_UP)


def demo_file(name: str) -> Traversable:
    """One of the SHIPPED files, as installed with the package."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped with the demo (one of {', '.join(SHIPPED)})")
    if name == DOCKER_UP:
        return files(__name__) / name
    example = example_file(name)
    assert example is not None, f"examples/{name} is gone: the demo needs it"
    return example
