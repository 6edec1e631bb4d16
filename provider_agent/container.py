"""What a lease's containers are, whichever runtime runs them: the `ContainerRuntime` protocol
the supervisor drives, and the plain records it passes (specs, states, log lines).

Two implementations: `runtime.DockerRuntime` (the real one, the only module that imports the
docker SDK) and `memory_runtime.MemoryRuntime` (containers as records in memory, for dry runs and
for testing the supervisor's rules in milliseconds). Every method may block: the supervisor calls
them from worker threads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from provider_agent.registry import RegistryAuth

LABEL = "io.gpumarket"
LABEL_PROVIDER = f"{LABEL}.provider"
LABEL_LEASE = f"{LABEL}.lease"
LABEL_SERVICE = f"{LABEL}.service"
LABEL_REPLICA = f"{LABEL}.replica"
LABEL_GPUS = f"{LABEL}.gpus"
LABEL_SPEC = f"{LABEL}.spec-sha256"
LABEL_VOLUME = f"{LABEL}.volume"
LABEL_SIZE = f"{LABEL}.size-bytes"
LABEL_SCRATCH = f"{LABEL}.scratch-bytes"

# Docker's default capability set (moby oci/caps/defaults.go), less what is dangerous on a
# shared host and no ordinary image needs: NET_RAW (raw sockets: ARP and ICMP spoofing of the
# other leases on the bridge; Kubernetes' "baseline" Pod Security drops it too), MKNOD (device
# nodes) and AUDIT_WRITE (writes into the host's audit log). What is kept is what images'
# entrypoints use: chown and su/gosu (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID, SETUID,
# SETPCAP), binding a port below 1024, signalling their children, chroot (sshd privilege
# separation) and setcap in package scripts (inert under no-new-privileges).
DOCKER_DEFAULT_CAPABILITIES = (
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
)
DROPPED_CAPABILITIES = ("AUDIT_WRITE", "MKNOD", "NET_RAW")
DEFAULT_CAPABILITIES = tuple(
    c for c in DOCKER_DEFAULT_CAPABILITIES if c not in DROPPED_CAPABILITIES
)


class RuntimeFailure(Exception):
    """A container could not be pulled, created or started; the message says why, for the tenant."""


class ConfigFailure(RuntimeFailure):
    """The config asks this host for what it cannot have (an address that is not its own): only
    a config change helps, so the agent exits 78 (EX_CONFIG), which its systemd unit does not
    restart in a loop. The message names the key to change."""


@dataclass(frozen=True)
class VolumeMount:
    """One `params.storage` mount of a replica. Persistent volumes are named volumes of their
    own (one per lease, service, replica and volume, as Akash gives each replica its claim);
    class `ram` is a tmpfs of `size_bytes`. Ephemeral disk volumes are no mount at all: they are
    the container's scratch space."""

    volume: str  # the SDL's volume name
    mount: str  # absolute path in the container
    size_bytes: int
    read_only: bool = False
    persistent: bool = False
    storage_class: str | None = None

    @property
    def is_ram(self) -> bool:
        return self.storage_class == "ram"


@dataclass(frozen=True)
class VolumeState:
    """A named volume this provider made, found again by its labels."""

    name: str
    lease_id: str
    service: str
    replica: int
    volume: str
    size_bytes: int


@dataclass(frozen=True)
class ContainerSpec:
    """One replica of one service of a lease, as the runtime will create it."""

    lease_id: str
    service: str
    image: str
    replica: int = 0
    command: tuple[str, ...] = ()  # entrypoint override (SDL `command`)
    args: tuple[str, ...] = ()  # SDL `args`
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()  # container TCP ports to publish on random host ports
    udp_ports: tuple[int, ...] = ()  # container UDP ports (SDL `proto: udp`), published as UDP
    publish_ip: str = "127.0.0.1"  # host address ports bind to; "0.0.0.0": every interface
    cpu_millis: int = 1000
    memory_bytes: int = 512 << 20
    gpu_uuids: tuple[str, ...] = ()
    shm_bytes: int = 64 << 20
    pids_limit: int = 1024
    network: str | None = None  # per-lease bridge network; services find each other by name
    extra_labels: tuple[tuple[str, str], ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    scratch_bytes: int = 0  # ephemeral disk volumes: the container's own layer may use this much
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES  # all others are dropped

    # Only for the pull of `image` (never a label, never in the digest): the SDL's credentials
    # when they name this image's registry.
    registry_auth: RegistryAuth | None = field(default=None, repr=False, compare=False)
    # (container port, host port) to publish on these host ports rather than random ones: an
    # update in place keeps the tenant's endpoints (not in the digest: where, not what, it runs)
    host_ports: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    host_udp_ports: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    @property
    def named_volumes(self) -> tuple[VolumeMount, ...]:
        """The mounts that are volumes of their own (persistent, not ram)."""
        return tuple(v for v in self.volumes if v.persistent and not v.is_ram)

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    status: str  # created | running | exited | dead | ...
    lease_id: str
    service: str
    replica: int
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    ports: tuple[tuple[int, int], ...] = ()  # TCP (container port, host port)
    udp_ports: tuple[tuple[int, int], ...] = ()  # UDP (container port, host port)
    gpu_uuids: tuple[str, ...] = ()
    finished_at: float | None = None
    labels: tuple[tuple[str, str], ...] = ()
    cpu_millis: int = 0
    memory_bytes: int = 0

    def label(self, key: str, default: str = "") -> str:
        return dict(self.labels).get(key, default)

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")


@dataclass(frozen=True)
class LogLine:
    time: float  # unix seconds, as the engine stamped it
    stream: str  # stdout | stderr
    text: str


class ExecSession(Protocol):
    """A command running inside a container (`docker exec`): its stdin, its output, its exit.
    Every method may block; one thread reads while another writes."""

    def read(self) -> tuple[str, bytes]:
        """The next piece of output: ("stdout" | "stderr", bytes), as it comes (a TTY's is all
        "stdout"); ("", b"") once the command closed its output."""
        ...

    def write(self, data: bytes) -> None: ...

    def close_stdin(self) -> None:
        """EOF on the command's stdin (its output goes on)."""
        ...

    def resize(self, rows: int, cols: int) -> None:
        """The TTY's new size (no-op without a TTY)."""
        ...

    def exit_code(self) -> int:
        """The command's exit status, once its output ended."""
        ...

    def close(self) -> None:
        """Drop the connection (a command still running gets SIGHUP through its TTY)."""
        ...


@dataclass(frozen=True)
class FileRead:
    """A regular file being read out of a container: its size, then its bytes."""

    size: int
    chunks: Iterator[bytes]


def lease_tag(provider: str, lease_id: str) -> str:
    """What names a lease's containers, network and volumes on the engine: the provider is in
    it, so two agents on one engine (one key on two markets) never name anything alike."""
    return hashlib.sha1(f"{provider}\n{lease_id}".encode()).hexdigest()[:10]


def container_name(provider: str, lease_id: str, service: str, replica: int) -> str:
    """A short, valid, stable name: gm-<provider and lease hash>-<service>-<replica>."""
    safe = re.sub(r"[^a-zA-Z0-9_.-]", "-", service)[:40]
    return f"gm-{lease_tag(provider, lease_id)}-{safe}-{replica}"


def labels_of(spec: ContainerSpec, provider: str) -> dict[str, str]:
    """What a container carries so that a restarted agent finds it and knows what it is."""
    return {
        LABEL_PROVIDER: provider,
        LABEL_LEASE: spec.lease_id,
        LABEL_SERVICE: spec.service,
        LABEL_REPLICA: str(spec.replica),
        LABEL_GPUS: ",".join(spec.gpu_uuids),
        LABEL_SPEC: spec.digest,
        LABEL_SCRATCH: str(spec.scratch_bytes),
        **dict(spec.extra_labels),
    }


def network_name(provider: str, lease_id: str) -> str:
    return f"gm-{lease_tag(provider, lease_id)}"


def volume_name(spec: ContainerSpec, volume: VolumeMount, provider: str) -> str:
    """gm-<provider and lease hash>-<service>-<replica>-<volume>: stable, so a restarted
    container (and a re-adopted one) finds the same data; the provider is in the hash, so two
    agents on one engine never share a name (the engine would hand one the other's volume)."""
    safe = re.sub(r"[^a-zA-Z0-9_.-]", "-", volume.volume)[:40]
    return f"{container_name(provider, spec.lease_id, spec.service, spec.replica)}-{safe}"


def volume_labels(spec: ContainerSpec, volume: VolumeMount, provider: str) -> dict[str, str]:
    """A volume carries its provider and lease (as containers do), so a restarted agent finds
    it and removes it once the lease is gone."""
    return {
        LABEL_PROVIDER: provider,
        LABEL_LEASE: spec.lease_id,
        LABEL_SERVICE: spec.service,
        LABEL_REPLICA: str(spec.replica),
        LABEL_VOLUME: volume.volume,
        LABEL_SIZE: str(volume.size_bytes),
    }


def volume_state(name: str, labels: dict[str, str]) -> VolumeState:
    return VolumeState(
        name=name,
        lease_id=labels.get(LABEL_LEASE, ""),
        service=labels.get(LABEL_SERVICE, ""),
        replica=int(labels.get(LABEL_REPLICA, "0") or 0),
        volume=labels.get(LABEL_VOLUME, ""),
        size_bytes=int(labels.get(LABEL_SIZE, "0") or 0),
    )


class ContainerRuntime(Protocol):
    """Lease containers on one host, owned by one provider (found again by their labels)."""

    def ensure_image(
        self, ref: str, progress: Callable[[str], None], auth: RegistryAuth | None = None
    ) -> None:
        """Make `ref` available, pulling it when missing (with `auth`, the registry checks it
        even when the image is here). Raises RuntimeFailure with the reason, never a password."""
        ...

    def ensure_network(self, lease_id: str) -> str:
        """The lease's own network (created once); its name."""
        ...

    def remove_network(self, lease_id: str) -> None: ...

    def launch(self, spec: ContainerSpec) -> ContainerState:
        """Create and start one container. Raises RuntimeFailure; leaves nothing behind then."""
        ...

    def start(self, container_id: str) -> ContainerState:
        """Start a created or exited container again. Raises RuntimeFailure."""
        ...

    def inspect(self, container_id: str) -> ContainerState: ...

    def rename(self, container_id: str, name: str) -> None:
        """Give a container another name (an update in place sets the old one aside, so the new
        one takes its name, and restores it if the new one fails). Raises RuntimeFailure."""
        ...

    def wait(self, container_id: str) -> ContainerState:
        """Block until the container exits; its final state (exit code, OOM kill)."""
        ...

    def logs(
        self, container_id: str, stream: str = "stdout", since: float | None = None
    ) -> Iterator[LogLine]:
        """Follow one stream (stdout | stderr) from `since` (unix seconds) until the container
        exits, line by line."""
        ...

    def stop(self, container_id: str, grace_s: int = 10) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def owned(self, lease_id: str | None = None) -> list[ContainerState]:
        """Every container of this provider (or of one lease), running or not."""
        ...

    def volumes(self, lease_id: str | None = None) -> list[VolumeState]:
        """Every named volume of this provider (or of one lease). `launch` makes them."""
        ...

    def remove_volume(self, name: str) -> None:
        """Remove a volume and its data (its containers must be gone)."""
        ...

    def volume_usage(self, name: str) -> int | None:
        """Bytes of data in a volume now; None when it cannot be measured."""
        ...

    def scratch_usage(self, container_id: str) -> int | None:
        """Bytes the container wrote to its own layer (scratch space); None if unknown."""
        ...

    def exec(
        self, container_id: str, command: Sequence[str], tty: bool, rows: int = 0, cols: int = 0
    ) -> ExecSession:
        """Run `command` in a running container, with a TTY of rows×cols or with stdout and
        stderr apart. Raises RuntimeFailure when it cannot start."""
        ...

    def read_file(self, container_id: str, path: str, chunk_bytes: int) -> FileRead:
        """A regular file's size and bytes. Raises RuntimeFailure (missing, a directory...)."""
        ...

    def write_file(self, container_id: str, path: str, size: int, chunks: Iterable[bytes]) -> None:
        """Write exactly `size` bytes from `chunks` to `path` (its directory must exist).
        Raises RuntimeFailure; an iterator that raises aborts the write."""
        ...

    def close(self) -> None: ...
