"""Runs won leases as containers and watches them until they end.

For each lease: pull missing images (progress goes to the lease's own log), make a per-lease
network, create and start one container per service replica with the GPUs the bid reserved, report
RUNNING with the published endpoints, stream logs, and report the exit (code, OOM kill) once every
container is done. The manifest's restart policy is honoured locally: `never` reports the first
failure; `on-failure` restarts a failed container (and `always` any exited one) up to
`runtime.max_restarts` times before reporting.

Everything a restarted agent needs is on the containers' labels, so `adopt()` finds its running
containers, resumes their logs from a cursor kept on disk and watches them again: nothing is
started twice. Callbacks (`report`, `ship_logs`) are called from worker threads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from marketplace.core import units
from marketplace.core.gang import Rendezvous
from marketplace.core.job_env import with_lease_environment
from marketplace.core.limits import whole_number
from marketplace.core.manifest import Manifest, Service
from marketplace.core.manifest.model import HttpOptions
from marketplace.core.matching import Allocation
from marketplace.core.resources import (
    GroupSpec,
    JobKind,
    JobSettings,
    ResourceUnit,
    RestartPolicy,
    Tier,
)
from marketplace.core.state import Endpoint
from provider_agent.config import RuntimeSection
from provider_agent.container import (
    LABEL,
    LABEL_SCRATCH,
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    LogLine,
    RuntimeFailure,
    VolumeMount,
)
from provider_agent.ingress import AKASH_HTTP, Backend, IngressSite, lease_hostname
from provider_agent.network import backend_host
from provider_agent.registry import RegistryAuth, auth_for
from provider_agent.rendezvous import gang_specs

log = logging.getLogger(__name__)
LABEL_RESTART = f"{LABEL}.restart"
LABEL_RESTARTS = f"{LABEL}.restarts-left"
LABEL_HTTP = f"{LABEL}.http"  # the HTTP ports' http_options, JSON, as the ingress applies them
LABEL_INGRESS = f"{LABEL}.ingress"  # "80=a.example,b.example;8080=": ports the ingress serves
LABEL_VERSION = f"{LABEL}.version"  # the deployment version (update in place) it runs
# spot (core/spot.py): the lease's tier and when the market created it, so that a restarted agent
# still knows which of the leases it re-adopts it may pre-empt, newest first
LABEL_TIER = f"{LABEL}.tier"
LABEL_CREATED = f"{LABEL}.lease-created-ms"
# An updated container that is not running this long after its start failed to start: the old
# version is restored.
UPDATE_SETTLE_S = 2.0
PREVIOUS = "-previous"  # the name suffix of a container an update set aside
LOG_BATCH = 200
LOG_FLUSH_S = 0.2


@dataclass(frozen=True)
class StatusReport:
    lease_id: str
    running: bool
    exited: bool = False
    exit_code: int = 0
    oom_killed: bool = False
    message: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    version: int = 0  # the deployment version running (or, with update_failed, not running)
    update_failed: bool = False


@dataclass
class _Lease:
    lease_id: str
    restart: RestartPolicy
    containers: dict[str, ContainerState] = field(default_factory=dict)  # id -> last state
    restarts_left: dict[str, int] = field(default_factory=dict)  # container id -> restarts left
    specs: dict[str, ContainerSpec] = field(default_factory=dict)  # container id -> spec
    done: dict[str, ContainerState] = field(default_factory=dict)  # exited for good
    closing: bool = False
    reported_exit: bool = False
    version: int = 0  # the deployment version its containers run (0: not known)
    created_ms: int = 0  # when the market created the lease (0: not known), for tier_of()
    replaced: set[str] = field(default_factory=set)  # stopped by an update: not an exit
    busy: threading.Lock = field(default_factory=threading.Lock)  # a start or an update runs


class LogCursor:
    """Per container stream ("<id>:stdout"): how far its log was read, and how far the market
    has it. Only the second is on disk, written once the market acknowledged the lines, so a
    restarted agent resumes its logs from what the market has: nothing repeated that arrived,
    nothing lost that was still queued when the agent was killed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._delivered: dict[str, float] = {}  # on disk
        # in memory: where a dropped log stream resumes. Only a stream read here is delivered
        # (read first): once forgotten, a late acknowledgement does not bring it back
        self._read: dict[str, float] = {}
        self._lock = threading.Lock()
        self._dirty = False
        if path is not None and path.exists():
            try:
                self._delivered = {k: float(v) for k, v in json.loads(path.read_text()).items()}
            except (OSError, ValueError):
                log.warning("log cursor %s unreadable; resuming logs from the start", path)

    def get(self, container_id: str) -> float | None:
        with self._lock:
            return self._read.get(container_id, self._delivered.get(container_id))

    def advance(self, container_id: str, when: float) -> None:
        """The stream was read up to `when` (its lines are queued for the market)."""
        with self._lock:
            if when > self._read.get(container_id, 0.0):
                self._read[container_id] = when

    def delivered(self, marks: dict[str, float]) -> None:
        """The market acknowledged lines up to these times."""
        with self._lock:
            for key, when in marks.items():
                if key in self._read and when > self._delivered.get(key, 0.0):
                    self._delivered[key] = when
                    self._dirty = True

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._read.pop(container_id, None)
            self._dirty = self._delivered.pop(container_id, None) is not None or self._dirty

    def save(self) -> None:
        with self._lock:
            if self.path is None or not self._dirty:
                return
            data = json.dumps(self._delivered)
            self._dirty = False
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(data)
        os.replace(tmp, self.path)  # atomic: a kill -9 leaves the old or the new file


class LeaseSupervisor:
    def __init__(
        self,
        runtime: ContainerRuntime,
        settings: RuntimeSection,
        report: Callable[[StatusReport], None],
        # (lease id, lines, call once the market has them): the log cursor moves on then
        ship_logs: Callable[[str, list[LogLine], Callable[[], None]], None],
        public_host: str = "127.0.0.1",
        state_dir: Path | None = None,
        log_flush_s: float = LOG_FLUSH_S,
        publish_ip: str = "127.0.0.1",
        ingress: IngressSite | None = None,
    ) -> None:
        self.publish_ip = publish_ip  # the host address tenant ports bind to
        self.ingress = ingress  # None: no HTTP ingress on this provider
        self.runtime = runtime
        self.log_flush_s = log_flush_s  # how long a log line may wait in the buffer
        self.settings = settings
        self._report = report
        self._ship = ship_logs
        self.public_host = public_host
        self.cursor = LogCursor(None if state_dir is None else state_dir / "log-cursor.json")
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.RLock()
        self._replaced = threading.Condition(self._lock)  # an update's old containers stopped
        self.update_settle_s = UPDATE_SETTLE_S
        self._buffers: dict[str, list[tuple[str, LogLine]]] = {}  # (cursor key, line)
        self._followers: dict[str, list[threading.Thread]] = {}
        self._buf_lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="log-flush", daemon=True)
        self._flusher.start()
        self._outgrown: set[str] = set()  # volumes reported over their size (until back under)
        self._volume_checker = threading.Thread(
            target=self._volume_loop, name="volume-check", daemon=True
        )
        self._volume_checker.start()

    # --- queries ------------------------------------------------------------------------------
    def running_leases(self) -> list[str]:
        with self._lock:
            return [lid for lid, lease in self._leases.items() if not lease.reported_exit]

    def knows(self, lease_id: str) -> bool:
        """Whether the lease has containers here (starting, running, re-adopted, or exited and
        not yet removed): it must not be started again."""
        with self._lock:
            return lease_id in self._leases

    def containers(self, lease_id: str) -> list[ContainerState]:
        with self._lock:
            lease = self._leases.get(lease_id)
            return list(lease.containers.values()) if lease else []

    # --- starting -----------------------------------------------------------------------------
    def start_lease(
        self,
        lease_id: str,
        manifest: Manifest,
        group: GroupSpec,
        allocation: Allocation | None,
        version: int = 0,
        meeting: Rendezvous | None = None,
        created_ms: int = 0,
    ) -> StatusReport:
        """Pull, create and start every container of the lease (blocking). Reports and returns
        RUNNING with endpoints, or an exit with the reason it could not start. `version`: the
        deployment version the manifest is (reported with RUNNING); `meeting`: a gang node's
        rendezvous (provider_agent/rendezvous.py); `created_ms`: when the market created the
        lease (on its containers' labels, with the tier, for tier_of() after a restart)."""
        with self._lock:
            if lease_id in self._leases:
                return StatusReport(lease_id, running=True, message="already running")
            lease = _Lease(
                lease_id, manifest.job.restart_policy, version=version, created_ms=created_ms
            )
            self._leases[lease_id] = lease
        with lease.busy:
            return self._start(lease, manifest, group, allocation, meeting)

    def _start(
        self,
        lease: _Lease,
        manifest: Manifest,
        group: GroupSpec,
        allocation: Allocation | None,
        meeting: Rendezvous | None = None,
    ) -> StatusReport:
        lease_id = lease.lease_id
        try:
            specs = self._specs(
                lease_id, manifest, group, allocation, lease.version, lease.created_ms
            )
            specs = gang_specs(specs, meeting)
            for image, auth in _pulls(specs):
                self.runtime.ensure_image(
                    image, lambda text: self._system_log(lease_id, text), auth
                )
            # Services of one lease find each other by name on their own network; a lone
            # container needs none (the default bridge still publishes its ports).
            network = self.runtime.ensure_network(lease_id) if len(specs) > 1 else None
            for spec in specs:
                state = self.runtime.launch(_with_network(spec, network))
                self._track(lease, state, spec, self.settings.max_restarts)
            self._route(lease)
        except RuntimeFailure as exc:
            self._teardown(lease_id)
            report = StatusReport(lease_id, False, exited=True, exit_code=-1, message=str(exc))
            self._system_log(lease_id, f"lease failed to start: {exc}")
            self._flush(lease_id)
            with self._lock:
                lease.reported_exit = True
            self._report(report)
            return report
        report = StatusReport(
            lease_id,
            True,
            message="running",
            endpoints=self._endpoints(lease),
            version=lease.version,
        )
        self._report(report)
        with self._lock:
            watched = list(lease.containers.values())
        for state in watched:
            self._watch(lease_id, state)
        return report

    def _specs(
        self,
        lease_id: str,
        manifest: Manifest,
        group: GroupSpec,
        allocation: Allocation | None,
        version: int = 0,
        created_ms: int = 0,
    ) -> list[ContainerSpec]:
        job = manifest.job
        shm = (
            self.settings.training_shm_bytes
            if job.kind == JobKind.TRAINING
            else self.settings.shm_bytes
        )
        gpus_by_unit = list(allocation.unit_gpus) if allocation else []
        specs = []
        for r in manifest.replicas(group.name):
            unit = group.resources[r.unit_index]
            unit_gpus = gpus_by_unit[r.unit_index] if r.unit_index < len(gpus_by_unit) else ()
            n = unit.gpu.units
            service = r.service
            volumes = _mounts(service, unit)
            ram = sum(v.size_bytes for v in volumes if v.is_ram)
            specs.append(
                ContainerSpec(
                    lease_id=lease_id,
                    service=service.name,
                    image=service.image,
                    replica=r.index,
                    command=service.command,
                    args=service.args,
                    env=with_lease_environment(service.env, lease_id, job),
                    ports=_global_ports(service, "tcp"),
                    udp_ports=_global_ports(service, "udp"),
                    publish_ip=self.publish_ip,
                    cpu_millis=unit.cpu_millis,
                    # a tmpfs's pages count against the container's memory: the ram volumes
                    # come on top of the memory asked for (matching reserved both)
                    memory_bytes=unit.memory_bytes + ram,
                    gpu_uuids=tuple(unit_gpus[r.slot * n : (r.slot + 1) * n]),
                    shm_bytes=shm,
                    pids_limit=self.settings.pids_limit,
                    extra_labels=(
                        *_job_labels(job),
                        *_ingress_label(service),
                        *([(LABEL_VERSION, str(version))] if version else []),
                        *([(LABEL_CREATED, str(created_ms))] if created_ms else []),
                    ),
                    volumes=volumes,
                    scratch_bytes=_scratch_bytes(unit),
                    capabilities=self.settings.capabilities,
                    registry_auth=_registry_auth(service),
                )
            )
        return specs

    def _track(
        self, lease: _Lease, state: ContainerState, spec: ContainerSpec | None, left: int
    ) -> None:
        with self._lock:
            lease.containers[state.id] = state
            lease.restarts_left[state.id] = left
            if spec is not None:
                lease.specs[state.id] = spec

    def _endpoints(self, lease: _Lease) -> tuple[Endpoint, ...]:
        with self._lock:
            states = list(lease.containers.values())
        host = self.public_host
        direct = [
            Endpoint(s.service, port, host, host_port, "tcp", f"http://{host}:{host_port}")
            for s in states
            for port, host_port in s.ports
        ] + [
            Endpoint(s.service, port, host, host_port, "udp", f"udp://{host}:{host_port}")
            for s in states
            for port, host_port in s.udp_ports
        ]
        # direct ports first: tools that take endpoints[0] keep reaching what they reached
        return (*direct, *self._ingress_endpoints(lease.lease_id, states))

    # --- update in place ----------------------------------------------------------------------
    def update_lease(
        self,
        lease_id: str,
        manifest: Manifest,
        group: GroupSpec,
        allocation: Allocation | None,
        version: int,
        meeting: Rendezvous | None = None,
    ) -> StatusReport | None:
        """Replace the lease's containers with the manifest's `version` (blocking): the same
        names, GPUs, host ports, ingress names and persistent volumes, a new image, command,
        args or env. Pulls first (a missing image fails with the old version untouched); the
        old containers are stopped and set aside, the new ones started; one that is not running
        after update_settle_s fails the update and the old ones start again. Reports and returns
        the new version running or update_failed; None when there is nothing to update."""
        with self._lock:
            lease = self._leases.get(lease_id)
        if lease is None:
            return None
        with lease.busy:
            with self._lock:
                if lease.closing or lease.reported_exit or version <= lease.version:
                    return None
                old = sorted(lease.containers.values(), key=lambda c: (c.service, c.replica))
                old_specs = dict(lease.specs)  # empty for a re-adopted lease
            specs = self._specs(lease_id, manifest, group, allocation, version, lease.created_ms)
            specs = gang_specs(specs, meeting)
            specs = _pinned(specs, old)
            try:
                for image, auth in _pulls(specs):
                    self.runtime.ensure_image(
                        image, lambda text: self._system_log(lease_id, text), auth
                    )
            except RuntimeFailure as exc:
                return self._update_failed(lease, version, str(exc))
            try:
                self._set_aside(lease, old)
                failure = self._replace(lease, specs, manifest.job.restart_policy)
            except RuntimeFailure as exc:
                failure = str(exc)
            if failure is not None:
                try:
                    self._restore(lease, old, old_specs)
                except RuntimeFailure as exc:
                    return self._lost(
                        lease,
                        f"update failed ({failure}); the old version did not start again: {exc}",
                    )
                return self._update_failed(lease, version, failure)
            for state in old:
                self.runtime.remove(state.id)
                for stream in ("stdout", "stderr"):
                    self.cursor.forget(f"{state.id}:{stream}")
            lease.version = version
            self._route(lease)
            self._system_log(lease_id, f"version {version} running")
            report = StatusReport(
                lease_id,
                True,
                message=f"version {version} running",
                endpoints=self._endpoints(lease),
                version=version,
            )
            self._report(report)
            with self._lock:
                watched = list(lease.containers.values())
            for state in watched:
                self._watch(lease_id, state)
            if lease.closing:  # closed meanwhile: stop_lease may have missed the new ones
                self._teardown(lease_id)
            return report

    def _set_aside(self, lease: _Lease, old: list[ContainerState]) -> None:
        """Stop the old containers (their exits are the update's, not the lease's) and rename
        them, so the new ones take their names; wait until their watchers let them go."""
        with self._lock:
            lease.replaced.update(s.id for s in old if s.id not in lease.done)
        for state in old:
            self.runtime.stop(state.id, self.settings.stop_grace_s)
            self.runtime.rename(state.id, state.name + PREVIOUS)
        with self._lock:
            self._replaced.wait_for(lambda: not lease.replaced & {s.id for s in old}, timeout=30)
            lease.replaced.difference_update(s.id for s in old)
            lease.containers.clear()
            lease.restarts_left.clear()
            lease.specs.clear()
            lease.done.clear()

    def _replace(
        self, lease: _Lease, specs: list[ContainerSpec], restart: RestartPolicy
    ) -> str | None:
        """Start the new containers; why they failed, or None once all of them still run
        update_settle_s later."""
        network = self.runtime.ensure_network(lease.lease_id) if len(specs) > 1 else None
        started: list[ContainerState] = []
        try:
            for spec in specs:
                started.append(self.runtime.launch(_with_network(spec, network)))
                self._track(lease, started[-1], spec, self.settings.max_restarts)
        except RuntimeFailure as exc:
            return self._discard(lease, started, str(exc))
        self._stop.wait(self.update_settle_s)
        for state in started:
            now = self.runtime.inspect(state.id)
            if not now.running:
                return self._discard(lease, started, f"{now.service}: {_exit_text(now)}")
        lease.restart = restart
        return None

    def _discard(self, lease: _Lease, started: list[ContainerState], why: str) -> str:
        for state in started:
            self.runtime.remove(state.id)
        with self._lock:
            lease.containers.clear()
            lease.restarts_left.clear()
            lease.specs.clear()
        return why

    def _restore(
        self, lease: _Lease, old: list[ContainerState], specs: dict[str, ContainerSpec]
    ) -> None:
        """Run the old version again under its own names: from its spec on its own host ports
        (a restarted container would get new ones), or, re-adopted (no spec), restarted."""
        for state in old:
            spec = specs.get(state.id)
            if spec is not None:
                pinned = dataclasses.replace(
                    spec, host_ports=state.ports, host_udp_ports=state.udp_ports
                )
                again = self.runtime.launch(pinned)  # on the old one's volumes
                self.runtime.remove(state.id)
                self._track(lease, again, spec, self.settings.max_restarts)
                continue
            if self.runtime.inspect(state.id).name != state.name:
                self.runtime.rename(state.id, state.name)
            restarted = self.runtime.start(state.id)
            self._track(lease, restarted, None, self.settings.max_restarts)
        self._route(lease)
        with self._lock:
            watched = list(lease.containers.values())
        for state in watched:
            self._watch(lease.lease_id, state)

    def _lost(self, lease: _Lease, why: str) -> StatusReport:
        """Neither version runs: the lease has failed."""
        self._system_log(lease.lease_id, why)
        self._flush(lease.lease_id)
        with self._lock:
            lease.reported_exit = True
        report = StatusReport(lease.lease_id, False, exited=True, exit_code=-1, message=why)
        self._report(report)
        return report

    def _update_failed(self, lease: _Lease, version: int, why: str) -> StatusReport:
        self._system_log(lease.lease_id, f"update to version {version} failed: {why}")
        report = StatusReport(
            lease.lease_id,
            True,
            message=f"update failed: {why}",
            endpoints=self._endpoints(lease),
            version=version,
            update_failed=True,
        )
        self._report(report)
        return report

    # --- ingress ------------------------------------------------------------------------------
    def _ingress_endpoints(self, lease_id: str, states: list[ContainerState]) -> list[Endpoint]:
        """The lease's stable HTTP endpoints: its own hostname per port, and the accept hosts
        the ingress serves it on."""
        site = self.ingress
        if site is None:
            return []
        held = set(site.routes.hosts(lease_id))
        found = {
            (s.service, port, name): None
            for s in states
            for port, name in _hostnames(lease_id, s, site.domain)
            if name in held
        }
        return [
            Endpoint(service, port, name, site.public_port, "tcp", site.uri(name))
            for service, port, name in found
        ]

    def _route(self, lease: _Lease) -> None:
        """(Re-)register the lease's HTTP ports with the ingress, on their current host ports."""
        site = self.ingress
        if site is None:
            return
        with self._lock:
            states = list(lease.containers.values())
        routes: dict[str, list[Backend]] = {}
        backend = backend_host(self.publish_ip)
        for s in states:
            published = dict(s.ports)
            options = _http_options(s)
            for port, name in _hostnames(lease.lease_id, s, site.domain):
                if port in published:
                    route = Backend(backend, published[port], options.get(port, AKASH_HTTP))
                    routes.setdefault(name, []).append(route)
        for name in site.routes.set_lease(lease.lease_id, routes):
            self._system_log(lease.lease_id, f"ingress: {name} is served by another lease")

    def _unroute(self, lease_id: str) -> None:
        if self.ingress is not None:
            self.ingress.routes.drop_lease(lease_id)

    # --- re-adoption --------------------------------------------------------------------------
    def adopt(self) -> list[str]:
        """Find this provider's containers after a restart and watch them again. Returns the
        lease ids now supervised. Leaked `created` containers are removed; containers that exited
        while the agent was away are reported."""
        found = self._settle_interrupted_updates(self.runtime.owned())
        by_lease: dict[str, list[ContainerState]] = {}
        for state in found:
            if state.status == "created":
                self.runtime.remove(state.id)  # a start that never happened
                continue
            by_lease.setdefault(state.lease_id, []).append(state)
        self._remove_orphan_volumes(set(by_lease))
        for lease_id, states in by_lease.items():
            created = [int(v) for s in states if (v := s.label(LABEL_CREATED)).isdigit()]
            lease = _Lease(
                lease_id,
                _restart_of(states[0]),
                version=_version_of(states),
                created_ms=max(created, default=0),
            )
            with self._lock:
                if lease_id in self._leases:
                    continue
                self._leases[lease_id] = lease
            for state in states:
                self._track(lease, state, None, 0)
            self._route(lease)
            log.info("re-adopted lease %s (%d containers)", lease_id, len(states))
            for state in states:
                self._watch(lease_id, state)
        return sorted(by_lease)

    def _settle_interrupted_updates(self, found: list[ContainerState]) -> list[ContainerState]:
        """An agent that stopped mid-update left an old container set aside: it goes when the
        new one took its name, else it takes its name back (and is started again)."""
        names = {s.name for s in found}
        kept = []
        for state in found:
            base = state.name.removesuffix(PREVIOUS)
            if base == state.name:
                kept.append(state)
            elif base in names:
                self.runtime.remove(state.id)
            else:
                try:
                    self.runtime.rename(state.id, base)
                    kept.append(self.runtime.start(state.id))
                except RuntimeFailure as exc:
                    log.warning("could not start %s again: %s", base, exc)
        return kept

    def _remove_orphan_volumes(self, leases_with_containers: set[str]) -> None:
        """Volumes of a lease none of whose containers is left (a killed agent's teardown, or
        start, cut short) hold data nothing will mount again: remove them. The volumes of the
        leases adopted stay until those leases close."""
        for volume in self.runtime.volumes():
            if volume.lease_id in leases_with_containers:
                continue
            with self._lock:
                if volume.lease_id in self._leases:
                    continue  # started by this supervisor meanwhile
            try:
                self.runtime.remove_volume(volume.name)
                log.info("removed volume %s of closed lease %s", volume.name, volume.lease_id)
            except RuntimeFailure as exc:
                log.warning("could not remove leftover volume %s: %s", volume.name, exc)

    def tier_of(self, lease_id: str) -> tuple[Tier, int]:
        """A running lease's tier and when the market created it (0: not known), from its
        containers' labels: what a restarted agent knows of a lease it re-adopts."""
        states = self.containers(lease_id)
        with self._lock:
            lease = self._leases.get(lease_id)
        tiers = {s.label(LABEL_TIER) for s in states}
        tier = Tier.SPOT if tiers == {str(Tier.SPOT)} else Tier.ON_DEMAND
        return tier, lease.created_ms if lease is not None else 0

    def storage_bytes(self, lease_id: str) -> int:
        """The disk a running lease holds: its persistent volumes and its containers' scratch
        space, as their labels say (what a restarted agent reserves for an adopted lease)."""
        volumes = sum(v.size_bytes for v in self.runtime.volumes(lease_id))
        scratch = sum(int(s.label(LABEL_SCRATCH, "0") or 0) for s in self.containers(lease_id))
        return volumes + scratch

    def endpoints(self, lease_id: str) -> tuple[Endpoint, ...]:
        with self._lock:
            lease = self._leases.get(lease_id)
        return self._endpoints(lease) if lease else ()

    # --- watching -----------------------------------------------------------------------------
    def _watch(self, lease_id: str, state: ContainerState) -> None:
        followers = [
            threading.Thread(
                target=self._follow,
                args=(lease_id, state.id, stream),
                name=f"logs-{state.name}-{stream}",
                daemon=True,
            )
            for stream in ("stdout", "stderr")
        ]
        with self._lock:
            self._followers[state.id] = followers
        for thread in followers:
            thread.start()
        threading.Thread(
            target=self._wait, args=(lease_id, state.id), name=f"wait-{state.name}", daemon=True
        ).start()

    def _follow(self, lease_id: str, container_id: str, stream: str) -> None:
        key = f"{container_id}:{stream}"
        for attempt in range(3):  # a dropped connection resumes from the cursor, not the start
            since = self.cursor.get(key)
            try:
                for line in self.runtime.logs(
                    container_id, stream, since=None if since is None else since + 1e-6
                ):
                    if self._stop.is_set():
                        return  # closed: lines from here on are the next agent's to ship
                    self._emit(lease_id, key, line)
                return
            except Exception as exc:
                log.warning(
                    "log stream of %s broke (%s); attempt %d", container_id[:12], exc, attempt
                )
                if self._stop.wait(0.2):
                    return

    def _wait(self, lease_id: str, container_id: str) -> None:
        try:
            final = self.runtime.wait(container_id)
        except Exception as exc:
            log.warning("lost track of container %s: %s", container_id[:12], exc)
            return
        self._on_exit(lease_id, final)

    def _on_exit(self, lease_id: str, final: ContainerState) -> None:
        if self._stop.is_set():
            return  # closed: the agent is going away; the next one's adopt() sees this exit
        with self._lock:
            followers = self._followers.pop(final.id, [])
            replaced = self._leases.get(lease_id)
            if replaced is not None and final.id in replaced.replaced:
                replaced.replaced.discard(final.id)  # stopped by an update (update.py)
                self._replaced.notify_all()
                return
        for thread in followers:  # the exit report must come after the container's last lines
            thread.join(timeout=30)
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None or lease.closing:
                return
            left = lease.restarts_left.get(final.id, 0)
            failed = final.exit_code != 0 or final.oom_killed
            again = (lease.restart == RestartPolicy.ALWAYS) or (
                lease.restart == RestartPolicy.ON_FAILURE and failed
            )
        self.check_volumes(lease_id)  # what the container left on disk, before any restart
        what = _exit_text(final)
        if again and left > 0:
            self._system_log(lease_id, f"{final.service}: {what}; restarting ({left} left)")
            try:
                self.runtime.start(final.id)
            except RuntimeFailure as exc:
                self._system_log(lease_id, f"{final.service}: restart failed: {exc}")
            else:
                restarted = self.runtime.inspect(final.id)
                with self._lock:
                    lease.restarts_left[final.id] = left - 1
                    lease.containers[final.id] = restarted  # new host ports: route to them
                self._route(lease)
                self._watch(lease_id, restarted)
                return
        self._system_log(lease_id, f"{final.service}: {what}")
        with self._lock:
            lease.done[final.id] = final
            lease.containers[final.id] = final
            all_done = len(lease.done) == len(lease.containers)
            first_failure = next(
                (s for s in lease.done.values() if s.exit_code != 0 or s.oom_killed), None
            )
            if lease.reported_exit:
                return
            if first_failure is None and not all_done:
                return  # wait for the other containers
            lease.reported_exit = True
        self._unroute(lease_id)
        if first_failure is not None and not all_done:
            # one replica failed for good: the lease has failed; stop the rest
            for cid in list(lease.containers):
                if cid not in lease.done:
                    self.runtime.stop(cid, self.settings.stop_grace_s)
        self._flush(lease_id)
        result = first_failure or final
        self._report(
            StatusReport(
                lease_id,
                running=False,
                exited=True,
                exit_code=result.exit_code if result.exit_code is not None else -1,
                oom_killed=result.oom_killed,
                message=f"{result.service}: {_exit_text(result)}",
            )
        )

    # --- stopping -----------------------------------------------------------------------------
    def stop_lease(self, lease_id: str, grace_s: int | None = None) -> None:
        """The lease is closed: stop and remove its containers and network (blocking). Each
        container gets SIGTERM and `grace_s` (default stop_grace_s) before SIGKILL."""
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is not None:
                lease.closing = True
        self._flush(lease_id)
        self._teardown(lease_id, grace_s)
        with self._lock:
            self._leases.pop(lease_id, None)

    def _teardown(self, lease_id: str, grace_s: int | None = None) -> None:
        self._unroute(lease_id)
        for state in self.runtime.owned(lease_id):
            self.runtime.stop(state.id, grace_s or self.settings.stop_grace_s)
            self.runtime.remove(state.id)
            for stream in ("stdout", "stderr"):
                self.cursor.forget(f"{state.id}:{stream}")
            self._outgrown.discard(state.id)
        self.runtime.remove_network(lease_id)
        for volume in self.runtime.volumes(lease_id):  # the lease is over: so is its data
            try:
                self.runtime.remove_volume(volume.name)
            except RuntimeFailure as exc:  # an adopt() at the next start removes it then
                log.warning("could not remove volume %s: %s", volume.name, exc)
            self._outgrown.discard(volume.name)
        self.cursor.save()

    # --- volume sizes -------------------------------------------------------------------------
    def _volume_loop(self) -> None:
        while not self._stop.wait(self.settings.volume_check_s):
            for lease_id in self.running_leases():
                try:
                    self.check_volumes(lease_id)
                except Exception:
                    log.exception("measuring the volumes of %s failed", lease_id)

    def check_volumes(self, lease_id: str) -> None:
        """Report, in the lease's log, storage whose data outgrew its size: a persistent volume
        (the engine's local volumes have no cap) or a container's scratch space (overlay2 on
        ext4 has none either). A tmpfs needs no report: the kernel refuses the write."""
        for volume in self.runtime.volumes(lease_id):
            used = self.runtime.volume_usage(volume.name)
            what = f"{volume.service}: volume {volume.volume}"
            self._compare(lease_id, volume.name, what, used, volume.size_bytes)
        for state in self.runtime.owned(lease_id):
            size = int(state.label(LABEL_SCRATCH, "0") or 0)
            if size > 0:
                used = self.runtime.scratch_usage(state.id)
                what = f"{state.service}: scratch space"
                self._compare(lease_id, state.id, what, used, size)

    def _compare(self, lease_id: str, key: str, what: str, used: int | None, size: int) -> None:
        if used is None or size <= 0:
            return
        with self._lock:
            if used <= size:
                self._outgrown.discard(key)
                return
            if key in self._outgrown:
                return  # said once; said again only after it went back under
            self._outgrown.add(key)
        text = f"{what} uses {units.format_size(used)} of {units.format_size(size)}"
        self._system_log(lease_id, text)
        log.warning("lease %s: %s", lease_id, text)

    def close(self) -> None:
        """Stop watching (containers keep running, for re-adoption) and flush what is buffered."""
        self._stop.set()
        self._flusher.join(timeout=5)
        self._volume_checker.join(timeout=5)
        for lease_id in list(self._buffers):
            self._flush(lease_id)
        self.cursor.save()

    # --- logs ---------------------------------------------------------------------------------
    def _emit(self, lease_id: str, cursor_key: str, line: LogLine) -> None:
        if cursor_key:  # read before it can be shipped (LogCursor.delivered)
            self.cursor.advance(cursor_key, line.time)
        with self._buf_lock:
            self._buffers.setdefault(lease_id, []).append((cursor_key, line))
            big = len(self._buffers[lease_id]) >= LOG_BATCH
        if big:
            self._flush(lease_id)

    def _system_log(self, lease_id: str, text: str) -> None:
        self._emit(lease_id, "", LogLine(time.time(), "system", text))

    def _flush(self, lease_id: str) -> None:
        with self._buf_lock:
            queued = self._buffers.pop(lease_id, [])
        if not queued:
            return
        marks: dict[str, float] = {}
        for key, line in queued:
            if key:
                marks[key] = max(line.time, marks.get(key, 0.0))
        try:
            self._ship(lease_id, [line for _, line in queued], partial(self._delivered, marks))
        except Exception:
            log.exception("shipping logs of %s failed", lease_id)

    def _delivered(self, marks: dict[str, float]) -> None:
        self.cursor.delivered(marks)
        self.cursor.save()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.log_flush_s):
            for lease_id in list(self._buffers):
                self._flush(lease_id)


def _with_network(spec: ContainerSpec, network: str | None) -> ContainerSpec:
    from dataclasses import replace

    return replace(spec, network=network)


def _pinned(specs: list[ContainerSpec], old: list[ContainerState]) -> list[ContainerSpec]:
    """The new specs on what the old replicas hold: their host ports (the tenant's endpoints
    stay) and their GPUs."""
    held = {(s.service, s.replica): s for s in old}
    pinned = []
    for spec in specs:
        was = held.get((spec.service, spec.replica))
        if was is not None:
            spec = dataclasses.replace(
                spec,
                host_ports=was.ports,
                host_udp_ports=was.udp_ports,
                gpu_uuids=was.gpu_uuids or spec.gpu_uuids,
            )
        pinned.append(spec)
    return pinned


def _scratch_bytes(unit: ResourceUnit) -> int:
    """The unit's ephemeral disk volumes: what a replica may write to its own layer."""
    return sum(v.size_bytes for v in unit.storage if not v.persistent and v.storage_class is None)


def _mounts(service: Service, unit: ResourceUnit) -> tuple[VolumeMount, ...]:
    """The service's `params.storage` mounts with their volumes' size and class. An unmounted
    or ephemeral disk volume is scratch space in the container's own layer (no mount)."""
    volumes = {v.name: v for v in unit.storage}
    mounts = []
    for m in service.storage:
        volume = volumes.get(m.volume)
        if volume is None or not m.mount:
            continue  # the parser refuses such a manifest; nothing to mount
        mounts.append(
            VolumeMount(
                volume=m.volume,
                mount=m.mount,
                size_bytes=volume.size_bytes,
                read_only=m.read_only,
                persistent=volume.persistent,
                storage_class=volume.storage_class,
            )
        )
    return tuple(mounts)


def _global_ports(service: Service, proto: str) -> tuple[int, ...]:
    return tuple(sorted({e.port for e in service.expose if e.is_global and e.proto == proto}))


def _ingress_label(service: Service) -> tuple[tuple[str, str], ...]:
    """The service's HTTP ports (global TCP exposed as 80, or with accept hosts), on a label so
    a re-adopted container is routed again without its manifest."""
    http: dict[int, tuple[str, ...]] = {}
    for e in service.expose:
        if e.is_global and e.proto == "tcp" and (e.as_port == 80 or e.accept):
            http[e.port] = tuple(dict.fromkeys((*http.get(e.port, ()), *e.accept)))
    if not http:
        return ()
    text = ";".join(f"{port}={','.join(hosts)}" for port, hosts in sorted(http.items()))
    options = {
        str(e.port): dataclasses.astuple(e.http_options)
        for e in reversed(service.expose)
        if e.port in http and e.http_options != AKASH_HTTP
    }
    return ((LABEL_INGRESS, text), *([(LABEL_HTTP, json.dumps(options))] if options else []))


def _http_options(state: ContainerState) -> dict[int, HttpOptions]:
    """The http_options of the container's HTTP ports, from its label (defaults: absent)."""
    try:
        found = json.loads(state.label(LABEL_HTTP) or "{}")
        return {int(port): _options_of(values) for port, values in found.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def _options_of(values: list[object]) -> HttpOptions:
    size, read, send, tries, next_timeout, cases = values
    if not isinstance(cases, list):
        raise TypeError("next_cases is a list")
    size_, read_, send_, tries_, next_ = (
        int(str(v)) for v in (size, read, send, tries, next_timeout)
    )
    return HttpOptions(size_, read_, send_, tries_, next_, tuple(str(c) for c in cases))


def _ingress_ports(state: ContainerState) -> list[tuple[int, tuple[str, ...]]]:
    """(container port, accept hosts) the ingress serves for this container, from its label."""
    found = []
    for item in state.label(LABEL_INGRESS).split(";"):
        port, _, hosts = item.partition("=")
        if (number := whole_number(port, 5)) is not None:
            found.append((number, tuple(h for h in hosts.split(",") if h)))
    return found


def _hostnames(lease_id: str, state: ContainerState, domain: str) -> list[tuple[int, str]]:
    """(container port, hostname) the ingress serves this container on: the lease's own name
    per HTTP port, and its accept hosts, less any under the provider's domain (the lease names
    there are derived from lease ids, which are guessable: no tenant may claim another's)."""
    found = []
    for port, accept in _ingress_ports(state):
        found.append((port, lease_hostname(lease_id, state.service, port, domain)))
        found += [(port, h) for h in accept if h != domain and not h.endswith(f".{domain}")]
    return found


def _job_labels(job: JobSettings) -> tuple[tuple[str, str], ...]:
    return (
        (LABEL_RESTART, str(job.restart_policy)),
        (f"{LABEL}.kind", str(job.kind)),
        (LABEL_TIER, str(job.tier)),
    )


def _version_of(states: list[ContainerState]) -> int:
    """The deployment version a re-adopted lease runs, from its containers' labels."""
    found = [s.label(LABEL_VERSION) for s in states]
    return max((n for v in found if (n := whole_number(v)) is not None), default=0)


def _restart_of(state: ContainerState) -> RestartPolicy:
    try:
        return RestartPolicy(state.label(LABEL_RESTART, RestartPolicy.NEVER))
    except ValueError:
        return RestartPolicy.NEVER


def _exit_text(state: ContainerState) -> str:
    if state.oom_killed:
        return f"killed: out of memory (exit {state.exit_code})"
    if state.exit_code == 0:
        return "exited 0"
    return f"exited with code {state.exit_code}" + (f" ({state.error})" if state.error else "")


def _registry_auth(service: Service) -> RegistryAuth | None:
    """The service's SDL credentials, when they name its image's registry (Akash's rule)."""
    c = service.credentials
    return auth_for(service.image, c.host, c.username, c.password, c.email) if c else None


def _pulls(specs: list[ContainerSpec]) -> list[tuple[str, RegistryAuth | None]]:
    """Each image once, with the credentials of a service that gave some for it."""
    auths: dict[str, RegistryAuth | None] = {}
    for spec in specs:
        if auths.get(spec.image) is None:
            auths[spec.image] = spec.registry_auth
    return sorted(auths.items(), key=lambda pair: pair[0])
