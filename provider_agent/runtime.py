"""The Docker runtime: the only module that imports the docker SDK.

Containers are created, started and removed explicitly (never `containers.run`, which leaves a
created container behind when start fails, and pulls silently). Every container and network the
agent makes carries its labels, so a restarted agent finds and re-adopts them. GPUs are requested
by UUID (`DeviceRequest(device_ids=[...])`); `count=N` would mean "GPUs 0..N-1", not "N free GPUs".

Everything here blocks: the supervisor calls it from worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import posixpath
import socket
import struct
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import docker.types
import requests.exceptions

from provider_agent.container import (
    LABEL,
    LABEL_GPUS,
    LABEL_LEASE,
    LABEL_PROVIDER,
    LABEL_REPLICA,
    LABEL_SERVICE,
    LABEL_SPEC,
    ContainerSpec,
    ContainerState,
    FileRead,
    LogLine,
    RuntimeFailure,
    VolumeMount,
    VolumeState,
    container_name,
    labels_of,
    network_name,
    volume_labels,
    volume_name,
    volume_state,
)
from provider_agent.registry import RegistryAuth, image_registry

log = logging.getLogger(__name__)


def create_kwargs(spec: ContainerSpec, provider: str) -> dict[str, Any]:
    """The keyword arguments for `containers.create` (pure: unit-testable without Docker)."""
    env = dict(spec.env)
    # Pin GPU visibility to exactly what was allocated: a CUDA image's baked-in
    # NVIDIA_VISIBLE_DEVICES=all must not expose every GPU where nvidia is the default runtime.
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(spec.gpu_uuids) if spec.gpu_uuids else "void"
    labels = labels_of(spec, provider)
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": container_name(provider, spec.lease_id, spec.service, spec.replica),
        "labels": labels,
        "environment": env,
        "detach": True,
        "nano_cpus": spec.cpu_millis * 1_000_000,
        "mem_limit": spec.memory_bytes,
        "memswap_limit": spec.memory_bytes,  # equal to memory: no swap
        "pids_limit": spec.pids_limit,
        "shm_size": spec.shm_bytes,
        "cap_drop": ["ALL"],  # then add back the chosen set: the same on any engine's defaults
        "cap_add": list(spec.capabilities),
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "init": True,  # PID 1 forwards SIGTERM, so stop() does not wait out its timeout
        "restart_policy": {"Name": "no"},  # the supervisor restarts, so it sees every exit
        "ports": published_ports(spec),
        "hostname": spec.service[:63],
    }
    if spec.volumes:
        kwargs["mounts"] = [
            _mount(spec, v, provider) for v in spec.volumes if v.persistent or v.is_ram
        ]
    if spec.command:
        kwargs["entrypoint"] = list(spec.command)
    if spec.args:
        kwargs["command"] = list(spec.args)
    if spec.gpu_uuids:
        kwargs["device_requests"] = [
            docker.types.DeviceRequest(device_ids=list(spec.gpu_uuids), capabilities=[["gpu"]])
        ]
    if spec.network:
        kwargs["network"] = spec.network
        kwargs["networking_config"] = {spec.network: {"Aliases": [spec.service]}}
    return kwargs


DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def _probe_unix_socket(host: str) -> None:
    """Raise OSError when a unix:// engine socket does not take a connection. The Docker SDK
    leaks its socket on that failure (a ResourceWarning at some later garbage collection), so
    the common case of no engine is answered here, with the socket closed."""
    if not host.startswith("unix://"):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(10)
        probe.connect(host.removeprefix("unix://"))


def _first_line(exc: BaseException) -> str:
    """The library's own words, kept to one line."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _mount(spec: ContainerSpec, volume: VolumeMount, provider: str) -> docker.types.Mount:
    """A ram volume is a tmpfs capped at its size (the kernel enforces it); a persistent one is
    the replica's own named volume."""
    if volume.is_ram:
        return docker.types.Mount(
            volume.mount,
            None,
            type="tmpfs",
            read_only=volume.read_only,
            tmpfs_size=volume.size_bytes,
        )
    return docker.types.Mount(
        volume.mount, volume_name(spec, volume, provider), type="volume", read_only=volume.read_only
    )


def published_ports(spec: ContainerSpec) -> dict[str, tuple[str, int | None] | int | None]:
    """Docker's `ports` for the spec: each TCP and UDP port on a random free host port (None),
    bound to `publish_ip` only; a wildcard address binds every interface (v4 and v6)."""
    everywhere = spec.publish_ip in ("", "0.0.0.0", "::")
    tcp, udp = dict(spec.host_ports), dict(spec.host_udp_ports)  # pinned (update in place)

    def binding(host_port: int | None) -> tuple[str, int | None] | int | None:
        return host_port if everywhere else (spec.publish_ip, host_port)

    ports = {f"{p}/tcp": binding(tcp.get(p)) for p in spec.ports}
    ports.update({f"{p}/udp": binding(udp.get(p)) for p in spec.udp_ports})
    return ports


def _published(attrs: dict[str, Any], proto: str) -> tuple[tuple[int, int], ...]:
    """(container port, host port) of one protocol, one binding per port (the first: v4 and v6
    bindings of a wildcard publish share the host port)."""
    found: dict[int, int] = {}
    for key, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        port, _, kind = key.partition("/")
        for b in bindings or []:
            if kind == proto and b.get("HostPort"):
                found.setdefault(int(port), int(b["HostPort"]))
    return tuple(sorted(found.items()))


def _parse_time(text: str | None) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    # Docker: 2026-11-23T12:00:00.123456789Z (nanoseconds; fromisoformat takes 6 digits)
    main, _, frac = text.rstrip("Z").partition(".")
    iso = f"{main}.{(frac + '000000')[:6]}+00:00"
    return datetime.fromisoformat(iso).timestamp()


def _state(attrs: dict[str, Any]) -> ContainerState:
    labels = attrs["Config"].get("Labels") or {}
    st = attrs["State"]
    status = st.get("Status", "unknown")
    return ContainerState(
        id=attrs["Id"],
        name=attrs["Name"].lstrip("/"),
        status=status,
        lease_id=labels.get(LABEL_LEASE, ""),
        service=labels.get(LABEL_SERVICE, ""),
        replica=int(labels.get(LABEL_REPLICA, "0") or 0),
        exit_code=st.get("ExitCode") if status in ("exited", "dead") else None,
        oom_killed=bool(st.get("OOMKilled")),
        error=st.get("Error") or "",
        ports=_published(attrs, "tcp"),
        udp_ports=_published(attrs, "udp"),
        gpu_uuids=tuple(u for u in labels.get(LABEL_GPUS, "").split(",") if u),
        finished_at=_parse_time(st.get("FinishedAt")),
        labels=tuple(sorted(labels.items())),
        cpu_millis=int(attrs.get("HostConfig", {}).get("NanoCpus") or 0) // 1_000_000,
        memory_bytes=int(attrs.get("HostConfig", {}).get("Memory") or 0),
    )


@dataclass
class DockerRuntime:
    """Lease containers on one Docker engine, owned by one provider (by label)."""

    provider: str
    client: docker.DockerClient = field(default_factory=lambda: docker.from_env(timeout=120))
    _pulls: dict[str, threading.Lock] = field(default_factory=dict)

    @classmethod
    def connect(cls, provider: str) -> DockerRuntime:
        """Raises RuntimeFailure when no engine answers."""
        where = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        client: docker.DockerClient | None = None
        try:
            _probe_unix_socket(where)
            client = docker.from_env(timeout=120)
            client.ping()
        except (
            OSError,
            docker.errors.DockerException,
            requests.exceptions.RequestException,
        ) as exc:
            if client is not None:
                client.close()
            raise RuntimeFailure(
                f"no Docker engine answers at {where}: start it (`sudo systemctl start docker`, "
                f"or `sudo dockerd &`), then run the agent again ({_first_line(exc)})"
            ) from exc
        return cls(provider, client)

    def close(self) -> None:
        self.client.close()

    # --- images ---------------------------------------------------------------------------------
    def has_image(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def ensure_image(
        self,
        ref: str,
        progress: Callable[[str], None] = log.info,
        auth: RegistryAuth | None = None,
    ) -> None:
        """Pull `ref` when it is missing, and whenever a login is given for it or it was once
        pulled with one: a private image stays on the host after its lease, and a lease without
        the right credentials must not run it from the cache (a tag on the engine remembers it
        across agent restarts). Raises RuntimeFailure with the engine's reason (the password
        masked)."""
        if self._cached(ref, auth):
            return
        lock = self._pulls.setdefault(ref, threading.Lock())
        with lock:  # two leases needing one image pull it once
            if self._cached(ref, auth):
                return
            self._pull(ref, progress, auth)
            if auth is not None:
                self._mark_private(ref)

    def _cached(self, ref: str, auth: RegistryAuth | None) -> bool:
        return auth is None and self.has_image(ref) and not self.has_image(private_mark(ref))

    def _mark_private(self, ref: str) -> None:
        """Remember on the engine (so a restarted agent knows too) that `ref` needed a login."""
        repo, tag = _split_ref(private_mark(ref))
        try:
            self.client.images.get(ref).tag(repo, tag)
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"pull {ref}: cannot mark it private: {exc.explanation}") from None

    def _pull(self, ref: str, progress: Callable[[str], None], auth: RegistryAuth | None) -> None:
        repo, tag = _split_ref(ref)
        progress(f"pulling {ref}" + (f" as {auth.username} on {auth.registry}" if auth else ""))
        auth_config = auth.auth_config() if auth else None
        try:
            events = self.client.api.pull(
                repo, tag=tag, stream=True, decode=True, auth_config=auth_config
            )
            for event in events:
                if "error" in event:
                    raise RuntimeFailure(pull_failure(ref, str(event["error"]), auth))
                if event.get("status") and "progress" not in event:
                    progress(f"{ref}: {event['status']}")
        # `from None`: the engine's exception would carry what it was sent into a traceback
        except docker.errors.APIError as exc:
            raise RuntimeFailure(pull_failure(ref, str(exc.explanation or exc), auth)) from None
        except requests.exceptions.RequestException as exc:
            raise RuntimeFailure(pull_failure(ref, str(exc), auth)) from None
        if not self.has_image(ref):
            raise RuntimeFailure(f"pull {ref} finished but the image is not there")

    # --- networks -------------------------------------------------------------------------------
    def ensure_network(self, lease_id: str) -> str:
        """The lease's bridge network: the one labelled this provider's and this lease's (made
        before an upgrade, it may have an older name), else a new one. A network of the name
        that is not this lease's is refused, not joined: the tenant's services would share it."""
        if mine := self._networks(lease_id):
            return str(mine[0].name)
        name = network_name(self.provider, lease_id)
        if self.client.networks.list(names=[name]):
            raise RuntimeFailure(
                f"network {name} exists but is not this lease's ({lease_id}): refusing to join "
                "it; remove it (docker network rm) if it is a leftover"
            )
        labels = {LABEL_PROVIDER: self.provider, LABEL_LEASE: lease_id}
        self.client.networks.create(name, driver="bridge", labels=labels)
        return name

    def remove_network(self, lease_id: str) -> None:
        for net in self._networks(lease_id):
            with contextlib.suppress(docker.errors.NotFound):
                net.remove()

    def _networks(self, lease_id: str) -> list[Any]:
        labels = [f"{LABEL_PROVIDER}={self.provider}", f"{LABEL_LEASE}={lease_id}"]
        return list(self.client.networks.list(filters={"label": labels}))

    # --- containers -----------------------------------------------------------------------------
    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the container; an old one of the same name is removed first."""
        kwargs = create_kwargs(spec, self.provider)
        self._remove_by_name(kwargs["name"])
        try:
            for volume in spec.named_volumes:
                self._ensure_volume(spec, volume)
            container = self.client.containers.create(**kwargs)
        except docker.errors.ImageNotFound as exc:
            raise RuntimeFailure(f"image {spec.image} is not on this host") from exc
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"create failed: {exc.explanation or exc}") from exc
        return str(container.id)

    def start(self, container_id: str) -> ContainerState:
        """Start a created container; on failure remove it (no leaked `Created` containers)."""
        try:
            self.client.api.start(container_id)
        except docker.errors.APIError as exc:
            self.remove(container_id)
            raise RuntimeFailure(f"start failed: {exc.explanation or exc}") from exc
        return self.inspect(container_id)

    def launch(self, spec: ContainerSpec) -> ContainerState:
        return self.start(self.create(spec))

    def inspect(self, container_id: str) -> ContainerState:
        return _state(self.client.api.inspect_container(container_id))

    def rename(self, container_id: str, name: str) -> None:
        try:
            self.client.api.rename(container_id, name)
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"rename failed: {exc.explanation or exc}") from exc

    def wait(self, container_id: str) -> ContainerState:
        """Block until the container exits; its final state (exit code, OOM kill)."""
        while True:
            try:
                self.client.api.wait(container_id, timeout=None)
                break
            except requests.exceptions.ConnectionError:
                continue  # docker-py reports a read timeout this way (docker-py#1966)
            except docker.errors.NotFound:
                break
        state = self.inspect(container_id)
        # dockerd may handle the exit before the kernel's OOM notification (cgroup v1 eventfd)
        # and set OOMKilled a moment later: look again before calling a SIGKILL a plain kill.
        deadline = time.monotonic() + 2.0
        while state.exit_code == 137 and not state.oom_killed and time.monotonic() < deadline:
            time.sleep(0.05)
            state = self.inspect(container_id)
        return state

    def logs(
        self, container_id: str, stream: str = "stdout", since: float | None = None
    ) -> Iterator[LogLine]:
        """Follow one stream of a container's logs (blocking) until it exits, line by line."""
        kwargs: dict[str, Any] = {"stdout": stream == "stdout", "stderr": stream == "stderr"}
        if since is not None:
            kwargs["since"] = since
        chunks = self.client.api.logs(
            container_id, stream=True, follow=True, timestamps=True, **kwargs
        )
        buffer = b""
        for chunk in chunks:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                yield _log_line(raw, stream)
        if buffer:
            yield _log_line(buffer, stream)

    def stop(self, container_id: str, grace_s: int = 10) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.stop(container_id, timeout=grace_s)

    def remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise

    # --- volumes --------------------------------------------------------------------------------
    def _ensure_volume(self, spec: ContainerSpec, volume: VolumeMount) -> None:
        """The replica's named volume, made once with its labels (a restart reuses it)."""
        name = volume_name(spec, volume, self.provider)
        labels = volume_labels(spec, volume, self.provider)
        try:
            found = self.client.api.inspect_volume(name)
        except docker.errors.NotFound:
            self.client.api.create_volume(name, driver="local", labels=labels)
            return
        has = found.get("Labels") or {}
        if any(has.get(k) != labels[k] for k in (LABEL_PROVIDER, LABEL_LEASE)):  # another's data
            raise RuntimeFailure(
                f"volume {name} exists but is not this lease's ({spec.lease_id}): refusing to "
                "mount it; remove it (docker volume rm) if it is a leftover"
            )

    def volumes(self, lease_id: str | None = None) -> list[VolumeState]:
        labels = [f"{LABEL_PROVIDER}={self.provider}"]
        if lease_id is not None:
            labels.append(f"{LABEL_LEASE}={lease_id}")
        found = self.client.api.volumes(filters={"label": labels}).get("Volumes") or []
        return sorted(
            (volume_state(v["Name"], v.get("Labels") or {}) for v in found), key=lambda v: v.name
        )

    def remove_volume(self, name: str) -> None:
        try:
            self.client.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # 409: a container still uses it
            raise RuntimeFailure(f"remove volume {name}: {exc.explanation or exc}") from exc

    def volume_usage(self, name: str) -> int | None:
        """Bytes under the volume's directory, walked like `du` (Docker's local driver sets no
        size limit on overlay or ext4, so this is how an outgrown volume is noticed). Where the
        agent cannot read the engine's directory, the engine's own count (`docker system df`)."""
        try:
            mountpoint = self.client.api.inspect_volume(name)["Mountpoint"]
        except docker.errors.NotFound:
            return None
        used = _tree_bytes(mountpoint)
        if used is not None:
            return used
        for v in self.client.df().get("Volumes") or []:
            if v.get("Name") == name:
                size = (v.get("UsageData") or {}).get("Size", -1)
                return int(size) if size >= 0 else None
        return None

    def scratch_usage(self, container_id: str) -> int | None:
        """The container's writable layer (`SizeRw`): overlay2 on ext4 caps it nowhere."""
        found = self.client.api.containers(all=True, filters={"id": container_id}, size=True)
        size = found[0].get("SizeRw") if found else None
        return int(size) if isinstance(size, int) and size >= 0 else None

    def _remove_by_name(self, name: str) -> None:
        """A leftover of ours with this name goes; another's is refused, never removed."""
        for c in self.client.api.containers(all=True, filters={"name": f"^/{name}$"}):
            if (c.get("Labels") or {}).get(LABEL_PROVIDER) != self.provider:
                raise RuntimeFailure(
                    f"container {name} exists but is not this provider's: refusing to remove it"
                )
            self.remove(c["Id"])

    def owned(self, lease_id: str | None = None) -> list[ContainerState]:
        """Every container of this provider (or of one lease), running or not."""
        labels = [f"{LABEL_PROVIDER}={self.provider}"]
        if lease_id is not None:
            labels.append(f"{LABEL_LEASE}={lease_id}")
        found = self.client.api.containers(all=True, filters={"label": labels})
        states = []
        for c in found:
            try:
                states.append(self.inspect(c["Id"]))
            except docker.errors.NotFound:
                continue  # removed between list and inspect
        return states

    # --- shells and file copies (provider_agent/shell.py) -------------------------------------
    def exec(
        self, container_id: str, command: Sequence[str], tty: bool, rows: int = 0, cols: int = 0
    ) -> DockerExec:
        try:
            created = self.client.api.exec_create(
                container_id,
                list(command),
                stdin=True,
                stdout=True,
                stderr=True,
                tty=tty,
                environment={"TERM": "xterm"} if tty else None,
            )
            exec_id = str(created["Id"])
            raw = self.client.api.exec_start(exec_id, tty=tty, socket=True)
        except docker.errors.APIError as exc:
            raise RuntimeFailure(
                f"exec {' '.join(command)[:80]}: {exc.explanation or exc}"
            ) from None
        # a unix socket's SocketIO: the socket under it, read and written directly
        sock = getattr(raw, "_sock", None)
        if not isinstance(sock, socket.socket):
            raise RuntimeFailure("exec: the engine's connection is not a socket (unix or tcp)")
        session = DockerExec(self.client, exec_id, sock, raw, tty)
        if tty and rows > 0 and cols > 0:
            session.resize(rows, cols)
        return session

    def read_file(self, container_id: str, path: str, chunk_bytes: int) -> FileRead:
        """The engine's archive of `path` (what `docker cp` reads), unpacked as it streams."""
        try:
            chunks, info = self.client.api.get_archive(container_id, path, chunk_size=chunk_bytes)
        except docker.errors.NotFound:
            raise RuntimeFailure(f"{path}: no such file in the container") from None
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"{path}: {exc.explanation or exc}") from None
        mode = int(info.get("mode", 0))
        if mode & (1 << 31):  # Go's os.ModeDir
            raise RuntimeFailure(f"{path} is a directory: cp copies one file (tar it first)")
        if mode & ((1 << 27) | (1 << 26) | (1 << 25) | (1 << 24)):  # symlink, device, pipe, socket
            raise RuntimeFailure(f"{path} is not a regular file (a link? copy what it points to)")
        size, body = _first_file(_TarStream(chunks))
        if body is None:
            raise RuntimeFailure(f"{path} is not a regular file")
        return FileRead(size, body)

    def write_file(self, container_id: str, path: str, size: int, chunks: Iterable[bytes]) -> None:
        """One file as a tar stream into the engine (what `docker cp` writes), sent as it comes."""
        directory, name = posixpath.split(path)
        if not name:
            raise RuntimeFailure(f"{path}: name the file to write, not a directory")
        try:
            done = self.client.api.put_archive(
                container_id, directory or "/", _tar_stream(name, size, chunks)
            )
        except docker.errors.NotFound:
            raise RuntimeFailure(f"{directory}: no such directory in the container") from None
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"{path}: {exc.explanation or exc}") from None
        except requests.exceptions.RequestException as exc:
            raise RuntimeFailure(f"{path}: the copy was cut off ({exc})") from None
        if not done:
            raise RuntimeFailure(f"{path}: the engine refused the file")


class DockerExec:
    """One `docker exec` on its hijacked connection. Without a TTY the engine multiplexes
    stdout and stderr: each piece has an 8-byte header (stream, 0, 0, 0, length big-endian)."""

    def __init__(
        self,
        client: docker.DockerClient,
        exec_id: str,
        sock: socket.socket,
        keep: object,
        tty: bool,
    ) -> None:
        self.client = client
        self.exec_id = exec_id
        self.sock = sock
        self._keep = keep  # the response object owns the connection: keep it alive
        self.tty = tty
        self._buffer = b""

    def read(self) -> tuple[str, bytes]:
        if self.tty:
            data = self._recv()
            return ("stdout", data) if data else ("", b"")
        header = self._exactly(8)
        if len(header) < 8:
            return "", b""
        kind, length = header[0], struct.unpack(">I", header[4:])[0]
        body = self._exactly(length)
        return ("stderr" if kind == 2 else "stdout"), body

    def _recv(self) -> bytes:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def _exactly(self, count: int) -> bytes:
        parts = [self._buffer[:count]]
        have = len(parts[0])
        self._buffer = self._buffer[count:]
        while have < count:
            try:
                data = self.sock.recv(max(65536, count - have))
            except OSError:
                data = b""
            if not data:
                break
            need = count - have
            parts.append(data[:need])
            self._buffer = data[need:]
            have += min(len(data), need)
        return b"".join(parts)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def resize(self, rows: int, cols: int) -> None:
        if self.tty and rows > 0 and cols > 0:
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.exec_resize(self.exec_id, height=rows, width=cols)

    def exit_code(self) -> int:
        deadline = time.monotonic() + 5.0
        while True:
            info = self.client.api.exec_inspect(self.exec_id)
            if not info.get("Running") or time.monotonic() > deadline:
                code = info.get("ExitCode")
                return int(code) if code is not None else -1
            time.sleep(0.01)  # the engine notes the exit a moment after the output ends

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        close = getattr(self._keep, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


class _TarStream:
    """Bytes of a tar archive as they arrive in chunks, taken block by block. (tarfile's stream
    mode copies every byte several times over and reads ~4x slower than the engine sends.)"""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()  # deleting from its front is cheap (CPython keeps an offset)

    def take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise RuntimeFailure("the engine's archive ended early")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def pieces(self, count: int) -> Iterator[bytes]:
        """The next `count` bytes as they come, without copying whole chunks again."""
        if self._buffer and count > 0:
            first = bytes(self._buffer[:count])
            del self._buffer[: len(first)]
            count -= len(first)
            yield first
        while count > 0:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise RuntimeFailure("the engine's archive ended early")
            if len(chunk) > count:
                self._buffer += chunk[count:]
                chunk = chunk[:count]
            count -= len(chunk)
            yield chunk
        for _ in self._chunks:  # the archive's padding and end: read, so the engine's
            pass  # connection goes back to the pool instead of staying open


def _first_file(stream: _TarStream) -> tuple[int, Iterator[bytes] | None]:
    """The size and bytes of the archive's first member, None for bytes if it is no regular
    file. PAX and GNU long-name headers before it are read (a PAX `size` counts)."""
    pax_size: int | None = None
    while True:
        block = stream.take(tarfile.BLOCKSIZE)
        if not block.strip(b"\0"):
            return 0, None  # the end: an empty archive
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise RuntimeFailure(f"the engine's archive is not a tar: {exc}") from None
        padded = info.size + (-info.size) % tarfile.BLOCKSIZE
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME):
            extra = stream.take(padded)
            if info.type == tarfile.XHDTYPE:
                pax_size = _pax_size(extra[: info.size]) or pax_size
            continue
        if not info.isfile():
            return 0, None
        size = pax_size if pax_size is not None else info.size
        return size, stream.pieces(size)


def _pax_size(records: bytes) -> int | None:
    for line in records.split(b"\n"):
        _, _, record = line.partition(b" ")
        key, _, value = record.partition(b"=")
        if key == b"size" and value.isdigit():
            return int(value)
    return None


def _tar_stream(name: str, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A tar archive of one file, `size` bytes from `chunks`: header, data, padding, end. Raises
    (and so aborts the upload) when the chunks add up to more or fewer bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    pending = iter(chunks)
    first = next(pending, b"")  # nothing reaches the engine (no file) before a first good byte
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    for chunk in itertools.chain((first,), pending):
        sent += len(chunk)
        if sent > size:
            raise RuntimeFailure(f"more than the {size:,} bytes announced")
        yield chunk
    if sent != size:
        raise RuntimeFailure(f"{sent:,} of the {size:,} bytes announced arrived")
    yield b"\0" * ((-size) % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def _tree_bytes(root: str) -> int | None:
    """Disk bytes used under `root` (allocated blocks, hard links once); None if unreadable."""
    try:
        os.stat(root)
    except OSError:
        return None
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed while walking, or a directory the agent may not read
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def private_mark(ref: str) -> str:
    """The engine-side tag that says `ref` was pulled with a login."""
    return f"gpumarket-private/{hashlib.sha256(ref.encode()).hexdigest()[:24]}:login"


_DENIED = ("no basic auth credentials", "unauthorized", "authentication required", "denied")


def pull_failure(ref: str, reason: str, auth: RegistryAuth | None) -> str:
    """What the tenant reads when a pull fails: a refused login says so and whose it was."""
    if auth is not None:
        reason = auth.scrub(reason)
    if not any(marker in reason.lower() for marker in _DENIED):
        return f"pull {ref} failed: {reason}"
    registry = image_registry(ref)
    why = (
        f"the registry refused the SDL's credentials for user {auth.username}"
        if auth
        else f"the SDL gives no credentials for it (services.*.credentials.host: {registry})"
    )
    return (
        f"pull {ref} failed: pull access denied / authentication required for {registry}: "
        f"{why} ({reason})"
    )


def _split_ref(ref: str) -> tuple[str, str]:
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def _log_line(raw: bytes, stream: str) -> LogLine:
    text = raw.decode("utf-8", errors="replace")
    stamp, _, rest = text.partition(" ")
    when = _parse_time(stamp)
    if when is None:
        return LogLine(0.0, stream, text)
    return LogLine(when, stream, rest.rstrip("\r"))


if TYPE_CHECKING:
    from provider_agent.container import ContainerRuntime

    _IS_A_RUNTIME: type[ContainerRuntime] = DockerRuntime

__all__ = [
    "LABEL",
    "LABEL_GPUS",
    "LABEL_LEASE",
    "LABEL_PROVIDER",
    "LABEL_REPLICA",
    "LABEL_SERVICE",
    "LABEL_SPEC",
    "ContainerSpec",
    "ContainerState",
    "DockerRuntime",
    "LogLine",
    "RuntimeFailure",
    "VolumeMount",
    "container_name",
    "create_kwargs",
    "labels_of",
    "network_name",
    "published_ports",
]
