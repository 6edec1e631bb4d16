"""What this host really has, so a provider never offers what it cannot run.

A provider configured with more than its host has (`[resources] cpu = 8` on a 2-CPU box) wins
leases that cannot start: Docker refuses `--cpus 4` there, the lease fails and is ordered again.
At start the agent compares each configured amount with the host's (CPUs from os.cpu_count,
memory from /proc/meminfo, free disk under the Docker root or the agent's data dir; GPUs come
from NVML and need no check) and offers at most the host's, with a warning naming the key.

It clamps rather than refuses: what it then offers is exactly what the host can run, so the
provider keeps serving, and the warning repeats at every start until the config is fixed. A
refusal (exit 78) would turn a config copied from a bigger box into an outage.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from provider_agent.config import ResourcesSection

DOCKER_ROOT = Path("/var/lib/docker")


@dataclass(frozen=True)
class HostCapacity:
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int  # free disk where containers and their data go


def read_host(data_dir: Path) -> HostCapacity:
    """This machine's CPUs, memory and free disk (the Docker root's if there is one, else the
    data dir's)."""
    probe = DOCKER_ROOT if DOCKER_ROOT.is_dir() else data_dir
    while not probe.exists():
        probe = probe.parent
    return HostCapacity(
        cpu_millis=(os.cpu_count() or 1) * 1000,
        memory_bytes=_memory_total(),
        storage_bytes=shutil.disk_usage(probe).free,
    )


def _memory_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def fit_to_host(
    resources: ResourcesSection, host: HostCapacity
) -> tuple[ResourcesSection, list[str]]:
    """`resources` with every configured amount above the host's lowered to it, and one warning
    per amount lowered. Amounts left to the agent (None) are read from the host already."""
    warnings: list[str] = []

    def fit(key: str, configured: int | None, available: int, unit: str, scale: int) -> int | None:
        if configured is None or configured <= available:
            return configured
        warnings.append(
            f"resources.{key} is {configured / scale:.4g} {unit} but this host has "
            f"{available / scale:.4g}: offering {available / scale:.4g} {unit}"
        )
        return available

    gib = 1 << 30
    fitted = replace(
        resources,
        cpu_millis=fit("cpu", resources.cpu_millis, host.cpu_millis, "CPU", 1000),
        memory_bytes=fit("memory", resources.memory_bytes, host.memory_bytes, "GiB", gib),
        storage_bytes=fit("storage", resources.storage_bytes, host.storage_bytes, "GiB", gib),
    )
    return fitted, warnings
