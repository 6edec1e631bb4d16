"""What a parsed manifest is: frozen dataclasses for the services, their exposed ports, storage
mounts and credentials, the deployment entries, and the Manifest that holds them with one
GroupSpec per placement group."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from marketplace.core.errors import NotFound
from marketplace.core.limits import shown
from marketplace.core.resources import GroupSpec, JobSettings


@dataclass(frozen=True)
class HttpOptions:
    max_body_size: int = 1_048_576
    read_timeout_ms: int = 60_000
    send_timeout_ms: int = 60_000
    next_tries: int = 3
    next_timeout_ms: int = 0
    next_cases: tuple[str, ...] = ("error", "timeout")


@dataclass(frozen=True)
class ExposeTo:
    service: str | None = None
    global_: bool = False
    ip: str | None = None  # an endpoint name from the top-level `endpoints:`


@dataclass(frozen=True)
class Expose:
    port: int  # the container's port
    as_port: int  # the port others reach it on
    proto: str = "tcp"  # "tcp" | "udp"
    accept: tuple[str, ...] = ()
    to: tuple[ExposeTo, ...] = ()
    http_options: HttpOptions = field(default_factory=HttpOptions)

    @property
    def is_global(self) -> bool:
        return any(t.global_ for t in self.to)


@dataclass(frozen=True)
class StorageMount:
    volume: str
    mount: str
    read_only: bool = False


@dataclass(frozen=True)
class Credentials:
    """A private registry's login (SDL `credentials`). The password stays out of repr(), so
    no log line, traceback or error that shows a Service shows it."""

    host: str
    username: str
    password: str = field(repr=False)
    email: str | None = None


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    expose: tuple[Expose, ...] = ()
    storage: tuple[StorageMount, ...] = ()  # params.storage
    credentials: Credentials | None = None
    permissions: tuple[str, ...] = ()  # params.permissions.read
    tee: str | None = None  # params.tee: "cpu" | "cpu-gpu"

    @property
    def global_ports(self) -> tuple[int, ...]:
        return tuple(sorted({e.port for e in self.expose if e.is_global}))


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: str = "ip"


@dataclass(frozen=True)
class ServiceDeployment:
    """One deployment entry: `count` replicas of `service` in group `placement`."""

    service: str
    placement: str
    profile: str
    count: int


@dataclass(frozen=True)
class Replica:
    """One container to run for a group. Its GPUs are slot `slot` of unit `unit_index`:
    allocation.unit_gpus[unit_index][slot * units : (slot + 1) * units]."""

    service: Service
    index: int  # replica number within its service, from 0
    unit_index: int  # position in GroupSpec.resources
    slot: int  # replica number within the ResourceUnit (v2.1 units hold several services)


@dataclass(frozen=True)
class Manifest:
    version: str  # "2.0", "2.1" or "2.2" (the grammar used)
    services: Mapping[str, Service] = field(hash=False)
    groups: tuple[GroupSpec, ...]
    job: JobSettings
    warnings: tuple[str, ...]
    sdl_sha256: bytes
    endpoints: tuple[Endpoint, ...] = ()
    deployments: tuple[ServiceDeployment, ...] = ()
    reclamation_min_window_ms: int | None = None
    # GPU requests no model in the registry can meet, one located line each (also in warnings):
    # deploy refuses such a manifest unless forced (support.refuse_unmatchable)
    unmatchable: tuple[str, ...] = ()

    def group(self, name: str) -> GroupSpec:
        for group in self.groups:
            if group.name == name:
                return group
        raise NotFound(f"manifest has no placement group {shown(name)}")

    def workloads(self, group: str) -> tuple[tuple[Service, int], ...]:
        """What to run for a group: each service with its replica count, in deployment order."""
        self.group(group)
        return tuple(
            (self.services[d.service], d.count) for d in self.deployments if d.placement == group
        )

    def replicas(self, group: str) -> tuple[Replica, ...]:
        """Every container a provider runs for `group`, in unit order, each with its GPU slot."""
        spec = self.group(group)
        counts = {d.service: d.count for d in self.deployments if d.placement == group}
        result = []
        for unit_index, unit in enumerate(spec.resources):
            slot = 0
            for name in unit.services:
                for index in range(counts[name]):
                    result.append(Replica(self.services[name], index, unit_index, slot))
                    slot += 1
        return tuple(result)
