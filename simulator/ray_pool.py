"""Sweep runs as Ray tasks: the only module that imports ray (an optional extra,
`pip install 'gpumarket[ray]'`).

    runner = ray_runner("auto")      # a running cluster (`ray start --head` on this machine)
    runner = ray_runner("10.0.0.5:6379")  # or ray://HOST:10001 through Ray Client
    runner = ray_runner(LOCAL)       # a throwaway cluster on this machine, shut down after

Each run is one task. The driver loads each run's scenario (so the workers need no copy of the
sweep's files) and writes every file itself (so they need no shared disk); a task returns only
the run's summary, which the driver turns into the same bytes as a local process pool would.
On a cluster that was already running, the driver ships its own `simulator` and `marketplace`
packages with the job (runtime_env py_modules), so the workers run this code, not whatever
version the nodes have installed; the nodes need gpumarket's dependencies (simpy, PyYAML, ...).
A cluster with Ray's token authentication on needs its token where this runs, as for any
other Ray driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from simulator.report import Summary
from simulator.scenario import Scenario, load_scenario
from simulator.sweep import Runner, RunSpec

LOCAL = "local"  # --ray without an address: start a local cluster for this sweep
INSTALL_HINT = "Ray is not installed: pip install 'gpumarket[ray]' (or pip install 'ray[default]')"


class RayMissing(RuntimeError):
    """`--ray` asked for, ray not importable."""


class RayUnreachable(RuntimeError):
    """No Ray cluster answers at the address given."""


def _ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


def _run_scenario(scenario: Scenario, seed: int) -> Summary:
    """The task body: one run's summary (what simulator.sweep.run_one does, minus the load)."""
    from simulator.engine import run_scenario
    from simulator.report import summarize

    return summarize(run_scenario(scenario, seed))


def _code_packages() -> list[str]:
    """The package folders a remote cluster's workers import this code from."""
    import marketplace
    import simulator

    return [str(Path(m.__file__ or "").parent) for m in (simulator, marketplace)]


@contextlib.contextmanager
def connected(address: str, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, connected: to the cluster at `address`, to a local one started here (LOCAL), or
    to whatever the caller already connected to (left connected afterwards)."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    if address == LOCAL:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(
                address=address,
                runtime_env={"py_modules": _code_packages()},
                log_to_driver=False,
            )
        except (ConnectionError, ValueError) as exc:  # what ray.init raises for an address
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RayUnreachable(f"cannot use the Ray cluster at {address}: {message}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_runner(ray: ModuleType) -> Runner:
    """A sweep runner (simulator.sweep.Runner) submitting each run as a task on `ray`."""
    task = ray.remote(num_cpus=1, max_retries=2)(_run_scenario)

    def run(specs: list[RunSpec], _workers: int) -> Iterator[tuple[int, Summary]]:
        refs = {
            task.remote(load_scenario(scenario, overrides), seed): n
            for n, scenario, overrides, seed in specs
        }
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield refs[ref], ray.get(ref)
        finally:
            for ref in pending:  # stopped early (an error, ^C): leave nothing running
                ray.cancel(ref, force=True)

    return run
