"""A container runtime that keeps its containers as records in memory: nothing is executed.

It keeps the promises of `container.ContainerRuntime` the way the Docker runtime does (labels,
statuses, published ports, exit codes, followed logs, restarts, removal), so the lease supervisor
runs on it unchanged. Use it for a dry run of a provider on a box without Docker, and to test the
supervisor's rules in milliseconds.

A container runs from `start` until something ends it: `stop`/`remove` (as the engine would), or
`finish` (its process exited: an exit code, maybe an OOM kill). `write` puts a line in its log.
Those two stand in for what a real workload does by itself. Thread-safe: the supervisor calls it
from many worker threads, and `wait`/`logs` block like the engine's.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from provider_agent.container import (
    ContainerSpec,
    ContainerState,
    ExecSession,
    FileRead,
    LogLine,
    RuntimeFailure,
    VolumeState,
    container_name,
    labels_of,
    network_name,
    volume_labels,
    volume_name,
    volume_state,
)
from provider_agent.registry import RegistryAuth

FIRST_HOST_PORT = 32768  # where an engine's ephemeral port range starts
EXIT_STOPPED = 143  # SIGTERM through the container's init, as `docker stop` ends a process
NO_PROCESSES = (
    "shell and cp are not supported on the in-memory runtime: its containers run no processes "
    "(run the agent on Docker)"
)
EXIT_KILLED = 137  # SIGKILL: a forced removal, or the kernel's OOM killer


@dataclass
class _Container:
    state: ContainerState
    image: str
    spec: ContainerSpec
    log: list[LogLine] = field(default_factory=list)
    removed: bool = False
    scratch_used: int = 0


class MemoryRuntime:
    """Lease containers of one provider, held in memory.

    `images` are present from the start; any other image is pulled on demand unless it is in
    `unpullable`. `gpus` lists the GPU UUIDs this host has (None: whatever a spec asks for)."""

    def __init__(
        self,
        provider: str,
        images: Iterable[str] = (),
        unpullable: Iterable[str] = (),
        gpus: Iterable[str] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self._images = set(images)
        self._unpullable = frozenset(unpullable)
        self._gpus = None if gpus is None else frozenset(gpus)
        self._now = now
        self._containers: dict[str, _Container] = {}
        self._networks: set[str] = set()
        self._volumes: dict[str, VolumeState] = {}
        self._usage: dict[str, int] = {}  # volume name -> bytes its data uses
        self._refused: dict[str | None, str] = {}  # image (None: any) -> why starts fail
        self._ids = itertools.count(1)
        self._ports = itertools.count(FIRST_HOST_PORT)
        self._changed = threading.Condition()

    # --- images and networks ------------------------------------------------------------------
    def ensure_image(
        self,
        ref: str,
        progress: Callable[[str], None] = lambda _text: None,
        auth: RegistryAuth | None = None,  # no registry here: any credentials will do
    ) -> None:
        with self._changed:
            if ref in self._images:
                return
            progress(f"pulling {ref}")
            if ref in self._unpullable:
                raise RuntimeFailure(f"pull {ref} failed: not found in any registry")
            self._images.add(ref)

    def images(self) -> set[str]:
        with self._changed:
            return set(self._images)

    def ensure_network(self, lease_id: str) -> str:
        name = network_name(self.provider, lease_id)
        with self._changed:
            self._networks.add(name)
        return name

    def remove_network(self, lease_id: str) -> None:
        with self._changed:
            self._networks.discard(network_name(self.provider, lease_id))

    def networks(self) -> set[str]:
        with self._changed:
            return set(self._networks)

    # --- containers ---------------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; an old one of the same name is removed first."""
        name = container_name(self.provider, spec.lease_id, spec.service, spec.replica)
        with self._changed:
            if spec.image not in self._images:
                raise RuntimeFailure(f"image {spec.image} is not on this host")
            for old in [c for c in self._live() if c.state.name == name]:
                self._drop(old)
            container_id = f"{next(self._ids):012x}"
            state = ContainerState(
                id=container_id,
                name=name,
                status="created",
                lease_id=spec.lease_id,
                service=spec.service,
                replica=spec.replica,
                ports=_published(spec.ports, dict(spec.host_ports), self._ports),
                udp_ports=_published(spec.udp_ports, dict(spec.host_udp_ports), self._ports),
                gpu_uuids=spec.gpu_uuids,
                labels=tuple(sorted(labels_of(spec, self.provider).items())),
                cpu_millis=spec.cpu_millis,
                memory_bytes=spec.memory_bytes,
            )
            for volume in spec.named_volumes:  # made once; a restart or a re-create reuses it
                name = volume_name(spec, volume, self.provider)
                labels = volume_labels(spec, volume, self.provider)
                self._volumes.setdefault(name, volume_state(name, labels))
            self._containers[container_id] = _Container(state, spec.image, spec)
        return container_id

    def start(self, container_id: str) -> ContainerState:
        """Start a created or exited container; a failed start removes it, as Docker's does."""
        with self._changed:
            container = self._get(container_id)
            why = self._refused.get(container.image) or self._refused.get(None)
            missing = [u for u in container.state.gpu_uuids if not self._has_gpu(u)]
            if why is None and missing:
                why = f"no GPU {missing[0]} on this host"
            if why is not None:
                self._drop(container)
                raise RuntimeFailure(f"start failed: {why}")
            container.state = replace(
                container.state, status="running", exit_code=None, oom_killed=False, error=""
            )
            self._changed.notify_all()
            return container.state

    def launch(self, spec: ContainerSpec) -> ContainerState:
        return self.start(self.create(spec))

    def inspect(self, container_id: str) -> ContainerState:
        with self._changed:
            return self._get(container_id).state

    def rename(self, container_id: str, name: str) -> None:
        with self._changed:
            container = self._get(container_id)
            if any(c.state.name == name for c in self._live() if c is not container):
                raise RuntimeFailure(f"rename failed: the name {name} is in use")
            container.state = replace(container.state, name=name)

    def wait(self, container_id: str) -> ContainerState:
        with self._changed:
            container = self._get(container_id)
            self._changed.wait_for(lambda: _ended(container))
            return self._get(container_id).state

    def logs(
        self, container_id: str, stream: str = "stdout", since: float | None = None
    ) -> Iterator[LogLine]:
        """Follow one stream: the lines so far (from `since`), then new ones until it exits."""
        with self._changed:
            container = self._get(container_id)
        seen = 0

        def more_or_ended() -> bool:
            return len(container.log) > seen or _ended(container)

        while True:
            with self._changed:
                self._changed.wait_for(more_or_ended)
                lines, seen = container.log[seen:], len(container.log)
                ended = _ended(container)
            for line in lines:
                if line.stream == stream and (since is None or line.time >= since):
                    yield line
            if ended and not lines:
                return

    def stop(self, container_id: str, grace_s: int = 10) -> None:
        with self._changed:
            container = self._containers.get(container_id)
            if container is not None and container.state.running:
                self._exit(container, EXIT_STOPPED, oom_killed=False)

    def remove(self, container_id: str) -> None:
        with self._changed:
            container = self._containers.get(container_id)
            if container is not None:
                self._drop(container)

    def owned(self, lease_id: str | None = None) -> list[ContainerState]:
        with self._changed:
            return [
                c.state for c in self._live() if lease_id is None or c.state.lease_id == lease_id
            ]

    def volumes(self, lease_id: str | None = None) -> list[VolumeState]:
        with self._changed:
            return sorted(
                (v for v in self._volumes.values() if lease_id is None or v.lease_id == lease_id),
                key=lambda v: v.name,
            )

    def remove_volume(self, name: str) -> None:
        with self._changed:
            users = [
                c.state.name for c in self._live() if name in _volume_names(c.spec, self.provider)
            ]
            if users:  # as the engine refuses: "volume is in use"
                raise RuntimeFailure(f"volume {name} is in use by {', '.join(users)}")
            self._volumes.pop(name, None)
            self._usage.pop(name, None)

    def volume_usage(self, name: str) -> int | None:
        with self._changed:
            return self._usage.get(name, 0) if name in self._volumes else None

    def scratch_usage(self, container_id: str) -> int | None:
        with self._changed:
            container = self._containers.get(container_id)
            return None if container is None else container.scratch_used

    def spec_of(self, container_id: str) -> ContainerSpec:
        """What the container was created from (its mounts, capabilities)."""
        with self._changed:
            return self._get(container_id).spec

    # --- shells and file copies: nothing runs here, so there is nothing to reach -------------
    def exec(
        self, container_id: str, command: Sequence[str], tty: bool, rows: int = 0, cols: int = 0
    ) -> ExecSession:
        raise RuntimeFailure(NO_PROCESSES)

    def read_file(self, container_id: str, path: str, chunk_bytes: int) -> FileRead:
        raise RuntimeFailure(NO_PROCESSES)

    def write_file(self, container_id: str, path: str, size: int, chunks: Iterable[bytes]) -> None:
        raise RuntimeFailure(NO_PROCESSES)

    def close(self) -> None:
        """Nothing to let go of: the containers stay, as they would on an engine."""

    # --- what a workload does by itself ---------------------------------------------------------
    def write(self, container_id: str, text: str, stream: str = "stdout") -> None:
        """The container prints `text` on `stream`."""
        with self._changed:
            container = self._get(container_id)
            last = container.log[-1].time if container.log else 0.0
            # strictly increasing stamps, so a log cursor never skips or repeats a line
            container.log.append(LogLine(max(self._now(), last + 0.001), stream, text))
            self._changed.notify_all()

    def finish(self, container_id: str, exit_code: int = 0, oom_killed: bool = False) -> None:
        """The container's process exits with `exit_code` (killed by the OOM killer if asked)."""
        with self._changed:
            container = self._get(container_id)
            if not container.state.running:
                raise RuntimeFailure(f"container {container_id} is not running")
            self._exit(container, EXIT_KILLED if oom_killed else exit_code, oom_killed)

    def fill_volume(self, name: str, used_bytes: int) -> None:
        """The workload's data in volume `name` now takes `used_bytes`."""
        with self._changed:
            if name not in self._volumes:
                raise RuntimeFailure(f"no such volume: {name}")
            self._usage[name] = used_bytes

    def fill_scratch(self, container_id: str, used_bytes: int) -> None:
        """The workload's files in its own layer now take `used_bytes`."""
        with self._changed:
            self._get(container_id).scratch_used = used_bytes

    def refuse_starts(self, why: str, image: str | None = None) -> None:
        """From now on starting a container (of `image`, or any) fails with `why`."""
        with self._changed:
            self._refused[image] = why

    def allow_starts(self) -> None:
        with self._changed:
            self._refused.clear()

    # --- internals (callers hold the lock) ------------------------------------------------------
    def _live(self) -> list[_Container]:
        return [c for c in self._containers.values() if not c.removed]

    def _get(self, container_id: str) -> _Container:
        container = self._containers.get(container_id)
        if container is None or container.removed:
            raise RuntimeFailure(f"no such container: {container_id}")
        return container

    def _has_gpu(self, uuid: str) -> bool:
        return self._gpus is None or uuid in self._gpus

    def _exit(self, container: _Container, exit_code: int, oom_killed: bool) -> None:
        container.state = replace(
            container.state,
            status="exited",
            exit_code=exit_code,
            oom_killed=oom_killed,
            finished_at=self._now(),
        )
        self._changed.notify_all()

    def _drop(self, container: _Container) -> None:
        if container.state.running:
            self._exit(container, EXIT_KILLED, oom_killed=False)
        container.removed = True
        del self._containers[container.state.id]
        self._changed.notify_all()


def _published(
    ports: tuple[int, ...], pinned: dict[int, int], fresh: Iterator[int]
) -> tuple[tuple[int, int], ...]:
    """(container port, host port): the pinned host port, else the next free one."""
    return tuple((port, pinned.get(port) or next(fresh)) for port in ports)


def _volume_names(spec: ContainerSpec, provider: str) -> set[str]:
    return {volume_name(spec, v, provider) for v in spec.named_volumes}


def _ended(container: _Container) -> bool:
    return container.removed or not container.state.running


if TYPE_CHECKING:
    from provider_agent.container import ContainerRuntime

    _IS_A_RUNTIME: type[ContainerRuntime] = MemoryRuntime
