"""Akash SDL (v2.0 and v2.1) → typed, validated deployments.

`parse_manifest(text, source)` reads an SDL the way Akash's Go parser does
(akash-network/chain-sdk go/sdl; ../shared/reference/akash.md §3) and returns a frozen
`Manifest`: the services to run, one `GroupSpec` per placement profile (one order, one
provider, one lease each) and gpumarket's own optional settings (the top-level `gpumarket:` key;
docs/manifest.md).

Every problem is a `ManifestError` whose str() is one line, "FILE:LINE: field.path: message".
Lines come from YAML's node tree, walked alongside the data; when a field is missing the line
is that of the nearest enclosing node. Where the parser can go on, it collects every problem
(`ManifestError.errors`) so a user fixes a file in one pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

import yaml

from marketplace.core import gpus, units
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.money import DENOMS, per_block_to_per_hour
from marketplace.core.resources import (
    AuctionSettings,
    GpuOption,
    GpuRequest,
    GroupSpec,
    JobKind,
    JobSettings,
    Payment,
    PlacementRequirements,
    ResourceUnit,
    RestartPolicy,
    Volume,
)

# Limits from akash-network/chain-sdk go/node/deployment/v1beta4/validation_config.go.
CPU_MIN_MILLIS = 10
CPU_MAX_MILLIS = 384_000
GPU_MAX_UNITS = 24
MEMORY_MIN = units.MI
MEMORY_MAX = 2 * units.TI
VOLUME_MIN = 5 * units.MI
VOLUME_MAX = 32 * units.TI
PRICE_MAX = Decimal(10_000_000)  # per unit, in denom units per block
GROUP_FACTOR = 50  # a group's totals may reach 50× the per-unit maximum
STORAGE_CLASSES = ("default", "beta1", "beta2", "beta3", "ram")
HTTP_NEXT_CASES = ("error", "timeout", "500", "502", "503", "504", "403", "404", "429", "off")
PERMISSIONS = ("deployment", "logs", "events")

_TOP_KEYS = (
    "version",
    "include",
    "services",
    "profiles",
    "deployment",
    "endpoints",
    "reclamation",
    "gpumarket",
)
_SERVICE_KEYS = (
    "image",
    "command",
    "args",
    "env",
    "expose",
    "params",
    "credentials",
    "dependencies",
)
_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_ENDPOINT_NAME = re.compile(r"^[a-z]+[-_0-9a-z]+$")
_ATTRIBUTE_KEY = re.compile(r"^([a-zA-Z][\w/.\-]{1,126}[\w*]?)$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9*]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?\.)*"
    r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$"
)
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_RECLAMATION = re.compile(r"^[1-9][0-9]*(s|m|h)$")

Path = tuple[str | int, ...]
# libyaml's loader when PyYAML was built with it (5-10× faster); the same nodes, marks and errors.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_C_LOADER_MAX_DEPTH = 400


# ---------------------------------------------------------------------------------------------
# Errors


class ManifestError(InvalidArgument):
    """A manifest that cannot be used. str() is one line: 'FILE:LINE: path: message'."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        line: int = 1,
        source: str = "<manifest>",
        errors: tuple[ManifestError, ...] = (),
    ) -> None:
        self.message = _one_line(message)
        self.path = path
        self.line = line
        self.source = source
        self.errors: tuple[ManifestError, ...] = errors or (self,)
        super().__init__(self.location_message)

    @property
    def location_message(self) -> str:
        where = f"{self.source}:{self.line}: "
        return where + (f"{self.path}: " if self.path else "") + self.message


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Problem(Exception):
    """An error at a data path, turned into a ManifestError with a line once lines are known."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# ---------------------------------------------------------------------------------------------
# Result types


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
    host: str
    username: str
    password: str
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
    version: str  # "2.0" or "2.1" (the grammar used)
    services: Mapping[str, Service] = field(hash=False)
    groups: tuple[GroupSpec, ...]
    job: JobSettings
    warnings: tuple[str, ...]
    sdl_sha256: bytes
    endpoints: tuple[Endpoint, ...] = ()
    deployments: tuple[ServiceDeployment, ...] = ()
    reclamation_min_window_ms: int | None = None

    def group(self, name: str) -> GroupSpec:
        for group in self.groups:
            if group.name == name:
                return group
        raise NotFound(f"manifest has no placement group {name!r}")

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


# ---------------------------------------------------------------------------------------------
# YAML loading with lines


def _decode(raw: bytes, source: str) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM, as YAML allows; anything else is binary."""
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return raw.decode("utf-16")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "is this a binary file?",
            line=line,
            source=source,
        ) from None


def _load(raw: bytes, source: str) -> tuple[yaml.Node | None, Any]:
    text = _decode(raw, source)
    try:
        # libyaml recurses in C and crashes the process on absurdly deep nesting; only plainly
        # shallow text goes to it, the rest to the pure-Python loader (RecursionError is caught).
        loader = (
            _Loader(text) if _nesting_bound(text) <= _C_LOADER_MAX_DEPTH else yaml.SafeLoader(text)
        )
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = exc.problem or exc.context or "malformed"
        raise ManifestError(f"invalid YAML: {what}", line=line, source=source) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ManifestError(
            f"invalid YAML: unacceptable character {_char(exc.character)}",
            line=line,
            source=source,
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise ManifestError("invalid YAML: nested too deeply", source=source) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp out of range
        raise ManifestError(f"invalid YAML value: {exc}", source=source) from None
    return node, data


def _nesting_bound(text: str) -> int:
    """A cheap upper bound on YAML nesting depth: flow brackets plus, per line, indentation and
    block markers. Quotes are not understood, so the bound may be high, never low."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    block = max(
        (
            len(line)
            - len(line.lstrip(" "))
            + line.count("- ")
            + line.count(": ")
            + line.count("? ")
            for line in text.splitlines()
        ),
        default=0,
    )
    return deepest + block


def _char(character: Any) -> str:
    return f"#x{character:04x}" if isinstance(character, int) else repr(character)


def _node_at(root: yaml.Node | None, path: Path) -> yaml.Node | None:
    """The deepest node on `path` (the nearest existing ancestor when the field is missing)."""
    node = root
    for step in path:
        child = _child(node, step)
        if child is None:
            return node
        node = child
    return node


def _child(node: yaml.Node | None, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        found = None
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                found = value  # the last one wins, as in the data
        return found
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int):
        return node.value[step] if 0 <= step < len(node.value) else None
    return None


def _key_node(node: yaml.Node | None, step: str | int) -> yaml.Node | None:
    """The key node for `step` in a mapping (None in a list)."""
    if isinstance(node, yaml.MappingNode):
        found = None
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                found = key
        return found
    return None


def _duplicate_keys(root: yaml.Node | None) -> Iterator[tuple[yaml.Node, Path]]:
    """Keys defined twice in one mapping: Go's yaml.v3 refuses them, PyYAML keeps the last."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node | None, Path]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    continue
                if key.value in keys:
                    yield key, (*path, key.value)
                keys.add(key.value)
                stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, i)) for i, child in enumerate(node.value))


# ---------------------------------------------------------------------------------------------
# The parser


def parse_manifest(data: str | bytes, source: str = "<manifest>") -> Manifest:
    """Parse and validate an Akash SDL. Raises ManifestError (one line each), nothing else."""
    try:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    except (UnicodeError, TypeError, ValueError) as exc:
        raise ManifestError(f"cannot read manifest: {exc}", source=source) from None
    node, tree = _load(raw, source)
    parser = _Parser(node, source)
    try:
        return parser.parse(tree, hashlib.sha256(raw).digest())
    except ManifestError:
        raise
    except _Problem as problem:
        parser.errors.append(problem)
        raise parser.combined() from None
    except RecursionError:
        raise ManifestError("manifest is nested too deeply", source=source) from None
    except Exception as exc:  # a parser bug must still be one line, never a traceback
        raise ManifestError(
            f"internal parser error ({type(exc).__name__}: {exc})", source=source
        ) from None


@dataclass
class _Compute:
    cpu_millis: int
    memory_bytes: int
    storage: tuple[Volume, ...]
    gpu: GpuRequest


@dataclass
class _Placement:
    requirements: PlacementRequirements
    pricing: dict[str, tuple[str, Decimal]]


class _Parser:
    def __init__(self, root: yaml.Node | None, source: str) -> None:
        self.root = root
        self.source = source
        self.errors: list[_Problem] = []
        self.warnings: list[str] = []

    # --- error plumbing -----------------------------------------------------------------------

    def line(self, path: Path) -> int:
        """The line of the field's key (a missing field: of the key that should hold it)."""
        node, key = self.root, None
        for step in path:
            child = _child(node, step)
            if child is None:
                break
            key = _key_node(node, step)  # None for a list item: its own line is right
            node = child
        where = key if key is not None else node
        return where.start_mark.line + 1 if where is not None else 1

    def warn(self, path: Path, message: str) -> None:
        where = f"{self.source}:{self.line(path)}: "
        self.warnings.append(where + (f"{_dotted(path)}: " if path else "") + _one_line(message))

    def to_error(self, problem: _Problem) -> ManifestError:
        return ManifestError(
            problem.message,
            path=_dotted(problem.path),
            line=self.line(problem.path),
            source=self.source,
        )

    def combined(self) -> ManifestError:
        errors = tuple(self.to_error(p) for p in self.errors)
        first = errors[0]
        return ManifestError(
            first.message, path=first.path, line=first.line, source=self.source, errors=errors
        )

    def collect(self, func: Callable[[], Any]) -> Any:
        """Run one independent part; record its problem and go on (returns None on failure)."""
        try:
            return func()
        except _Problem as problem:
            self.errors.append(problem)
            return None

    def raw(self, path: Path, value: Any) -> str:
        """A scalar as written in the file: `model: 4000` is "4000", `host: yes` is "yes"."""
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, dict | list):
            raise _Problem(path, f"expected a string, got {units.type_name(value)}")
        node = _node_at(self.root, path) if _exact(self.root, path) else None
        if isinstance(node, yaml.ScalarNode):
            return node.value
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    # --- top level ----------------------------------------------------------------------------

    def parse(self, tree: Any, sha: bytes) -> Manifest:
        if tree is None:
            raise _Problem((), "empty manifest")
        top = _mapping(tree, ())
        for key in top:
            if str(key) not in _TOP_KEYS:
                raise _Problem((str(key),), f"unexpected field {str(key)!r}")
        for node, path in _duplicate_keys(self.root):
            raise ManifestError(
                f"mapping key {path[-1]!r} already defined",
                path=_dotted(path),
                line=node.start_mark.line + 1,
                source=self.source,
            )
        version = self.version(top)
        if top.get("include") is not None:
            raise _Problem(("include",), "include is not supported; put everything in one file")
        endpoints = self.collect(lambda: self.endpoints(top.get("endpoints"))) or {}
        services = self.services(top.get("services"), endpoints)
        profiles = _mapping(top.get("profiles"), ("profiles",), allow_none=True)
        compute = self.compute_profiles(profiles.get("compute"))
        placements = self.placements(profiles.get("placement"))
        for key in profiles:
            if key not in ("compute", "placement"):
                self.warn(("profiles", key), f"unknown key {key!r} ignored")
        deployments = self.deployment(top.get("deployment"), services, compute, placements)
        job = self.collect(lambda: self.job(top.get("gpumarket"))) or JobSettings()
        reclamation = self.collect(lambda: self.reclamation(top.get("reclamation")))
        groups = self.groups(version, deployments, services, compute, placements)
        self.check_endpoints_used(endpoints, services)
        if self.errors:
            raise self.combined()
        return Manifest(
            version=version,
            services=MappingProxyType({n: s for n, s in services.items() if s is not None}),
            groups=groups,
            job=job,
            warnings=tuple(self.warnings),
            sdl_sha256=sha,
            endpoints=tuple(Endpoint(name) for name in sorted(endpoints)),
            deployments=tuple(deployments),
            reclamation_min_window_ms=reclamation,
        )

    def version(self, top: dict[str, Any]) -> str:
        if "version" not in top or top["version"] is None:
            raise _Problem(("version",), "no version found")
        text = self.raw(("version",), top["version"]).strip()
        match = re.fullmatch(r"v?(\d{1,6})(?:\.(\d{1,6}))?(?:\.(\d{1,6}))?", text)
        if not match:
            raise _Problem(("version",), f'unsupported version {text!r} (use "2.0" or "2.1")')
        major, minor = int(match.group(1)), int(match.group(2) or 0)
        if (major, minor) == (2, 0):
            return "2.0"
        if (major, minor) < (2, 1):
            raise _Problem(("version",), f'unsupported version {text!r} (use "2.0" or "2.1")')
        if (major, minor) > (2, 1):
            self.warn(("version",), f"version {text} is newer than 2.1; read as 2.1")
        return "2.1"

    def endpoints(self, value: Any) -> dict[str, Endpoint]:
        result: dict[str, Endpoint] = {}
        for name, spec in _mapping(value, ("endpoints",), allow_none=True).items():
            path: Path = ("endpoints", str(name))
            if not isinstance(name, str) or not _ENDPOINT_NAME.match(name):
                raise _Problem(path, f"invalid endpoint name {name!r} (lowercase letters, -, _)")
            spec_map = _mapping(spec, path)
            kind = spec_map.get("kind")
            if kind != "ip":
                raise _Problem((*path, "kind"), f"endpoint kind must be 'ip', got {kind!r}")
            result[name] = Endpoint(name)
        return result

    # --- services -----------------------------------------------------------------------------

    def services(self, value: Any, endpoints: dict[str, Endpoint]) -> dict[str, Service | None]:
        services_map = _mapping(value, ("services",))
        if not services_map:
            raise _Problem(("services",), "no services defined")
        result: dict[str, Service | None] = {}
        for name, spec in services_map.items():
            path: Path = ("services", str(name))
            result[str(name)] = self.collect(
                lambda name=name, spec=spec, path=path: self.service(name, spec, path, endpoints)
            )
        hosts: dict[str, str] = {}
        for service in result.values():
            for expose in service.expose if service else ():
                for host in expose.accept:
                    if host in hosts and hosts[host] != service.name:
                        self.errors.append(
                            _Problem(
                                ("services", service.name, "expose"),
                                f"hostname {host!r} is also accepted by service {hosts[host]!r}",
                            )
                        )
                    hosts[host] = service.name
        return result

    def service(self, name: Any, value: Any, path: Path, endpoints: dict[str, Endpoint]) -> Service:
        if not isinstance(name, str) or len(name) > 63 or not _SERVICE_NAME.match(name):
            raise _Problem(path, f"invalid service name {name!r} (lowercase DNS label)")
        spec = _mapping(value, path)
        for key in spec:
            if key not in _SERVICE_KEYS:
                self.warn((*path, str(key)), f"unknown key {str(key)!r} ignored (as Akash does)")
        image = spec.get("image")
        if image is None or (isinstance(image, str) and not image.strip()):
            raise _Problem((*path, "image"), "image is required")
        image = self.raw((*path, "image"), image)
        params = _mapping(spec.get("params"), (*path, "params"), allow_none=True)
        for key in params:
            if key not in ("storage", "permissions", "tee"):
                self.warn((*path, "params", str(key)), f"unknown key {str(key)!r} ignored")
        return Service(
            name=name,
            image=image,
            command=self.strings(spec.get("command"), (*path, "command")),
            args=self.strings(spec.get("args"), (*path, "args")),
            env=self.env(spec.get("env"), (*path, "env")),
            expose=self.exposes(spec.get("expose"), (*path, "expose"), endpoints),
            storage=self.mounts(params.get("storage"), (*path, "params", "storage")),
            credentials=self.credentials(spec.get("credentials"), (*path, "credentials")),
            permissions=self.permissions(params.get("permissions"), (*path, "params")),
            tee=self.tee(params.get("tee"), (*path, "params", "tee")),
        )

    def strings(self, value: Any, path: Path) -> tuple[str, ...]:
        items = _sequence(value, path, allow_none=True)
        result = []
        for index, item in enumerate(items):
            if isinstance(item, dict | list) or item is None:
                got = units.type_name(item)
                raise _Problem((*path, index), f"expected a string, got {got}")
            result.append(self.raw((*path, index), item))
        return tuple(result)

    def env(self, value: Any, path: Path) -> tuple[tuple[str, str], ...]:
        if isinstance(value, dict):
            raise _Problem(path, "env must be a list of KEY=VALUE strings, not a mapping")
        result = []
        for index, item in enumerate(self.strings(value, path)):
            key, sep, val = item.partition("=")
            if not key.strip():
                raise _Problem((*path, index), f"invalid environment entry {item!r} (KEY=VALUE)")
            if not sep:
                self.warn((*path, index), f"environment entry {item!r} has no '='; value is empty")
            result.append((key, val))
        return tuple(result)

    def exposes(self, value: Any, path: Path, endpoints: dict[str, Endpoint]) -> tuple[Expose, ...]:
        result = []
        seen: set[tuple[str, int, str]] = set()
        for index, item in enumerate(_sequence(value, path, allow_none=True)):
            expose = self.expose(item, (*path, index), endpoints)
            for to in expose.to:
                if to.ip is None:
                    continue
                key = (to.ip, expose.as_port, expose.proto)
                if key in seen:
                    raise _Problem(
                        (*path, index),
                        f"port {expose.as_port}/{expose.proto} is exposed twice on IP {to.ip!r}",
                    )
                seen.add(key)
            result.append(expose)
        return tuple(result)

    def expose(self, value: Any, path: Path, endpoints: dict[str, Endpoint]) -> Expose:
        spec = _mapping(value, path)
        known = ("port", "as", "proto", "accept", "to", "http_options")
        for key in spec:
            if key not in known:
                self.warn((*path, str(key)), f"unknown key {str(key)!r} ignored")
        if "port" not in spec:
            raise _Problem((*path, "port"), "port is required")
        port = _integer(spec["port"], (*path, "port"), 1, 65535)
        as_port = port if spec.get("as") is None else _integer(spec["as"], (*path, "as"), 1, 65535)
        proto = "tcp"
        if spec.get("proto") is not None:
            proto = str(spec["proto"]).lower()
            if proto not in ("tcp", "udp"):
                raise _Problem((*path, "proto"), f"invalid protocol {spec['proto']!r} (tcp|udp)")
        accept = []
        for i, host in enumerate(_sequence(spec.get("accept"), (*path, "accept"), True)):
            if not isinstance(host, str) or not _HOSTNAME.match(host):
                raise _Problem((*path, "accept", i), f"invalid hostname {host!r}")
            accept.append(host.lower())
        targets = []
        for i, target in enumerate(_sequence(spec.get("to"), (*path, "to"), allow_none=True)):
            targets.append(self.expose_to(target, (*path, "to", i), endpoints))
        return Expose(
            port=port,
            as_port=as_port,
            proto=proto,
            accept=tuple(accept),
            to=tuple(targets),
            http_options=self.http_options(spec.get("http_options"), (*path, "http_options")),
        )

    def expose_to(self, value: Any, path: Path, endpoints: dict[str, Endpoint]) -> ExposeTo:
        spec = _mapping(value, path)
        for key in spec:
            if key not in ("service", "global", "ip"):
                self.warn((*path, str(key)), f"unknown key {str(key)!r} ignored")
        service = spec.get("service")
        if service is not None:
            service = self.raw((*path, "service"), service)
        global_ = _boolean(spec.get("global", False), (*path, "global"))
        ip = spec.get("ip")
        if ip is not None:
            ip = self.raw((*path, "ip"), ip)
            if not global_:
                raise _Problem(
                    (*path, "ip"), "if an IP is declared the directive must be declared as global"
                )
            if ip not in endpoints:
                raise _Problem((*path, "ip"), f"unknown endpoint {ip!r}")
        return ExposeTo(service=service, global_=global_, ip=ip)

    def http_options(self, value: Any, path: Path) -> HttpOptions:
        if value is None:
            return HttpOptions()
        spec = _mapping(value, path)
        defaults = HttpOptions()

        def bounded(key: str, default: int, high: int) -> int:
            if spec.get(key) is None:
                return default
            return _integer(spec[key], (*path, key), 0, high)

        cases = defaults.next_cases
        if spec.get("next_cases") is not None:
            cases = self.strings(spec["next_cases"], (*path, "next_cases"))
            for i, case in enumerate(cases):
                if case not in HTTP_NEXT_CASES:
                    raise _Problem((*path, "next_cases", i), f"invalid next case {case!r}")
            if "off" in cases and len(cases) > 1:
                raise _Problem((*path, "next_cases"), "'off' must be the only next case")
        for key in spec:
            known = ("max_body_size", "read_timeout", "send_timeout", "next_tries")
            if key not in (*known, "next_timeout", "next_cases", "proxy_buffer_size"):
                self.warn((*path, str(key)), f"unknown key {str(key)!r} ignored")
        if spec.get("proxy_buffer_size") is not None:
            _integer(spec["proxy_buffer_size"], (*path, "proxy_buffer_size"), 0, 1_048_576)
        return HttpOptions(
            max_body_size=bounded("max_body_size", defaults.max_body_size, 104_857_600),
            read_timeout_ms=bounded("read_timeout", defaults.read_timeout_ms, 60_000),
            send_timeout_ms=bounded("send_timeout", defaults.send_timeout_ms, 60_000),
            next_tries=bounded("next_tries", defaults.next_tries, 2**31 - 1),
            next_timeout_ms=bounded("next_timeout", defaults.next_timeout_ms, 2**31 - 1),
            next_cases=tuple(cases),
        )

    def mounts(self, value: Any, path: Path) -> tuple[StorageMount, ...]:
        result = []
        seen: set[str] = set()
        for volume, spec in _mapping(value, path, allow_none=True).items():
            vpath = (*path, str(volume))
            spec_map = _mapping(spec, vpath, allow_none=True)
            mount = spec_map.get("mount")
            if mount is None:
                mount_text = ""
            else:
                mount_text = self.raw((*vpath, "mount"), mount)
                if not mount_text.startswith("/"):
                    raise _Problem((*vpath, "mount"), f"mount path {mount_text!r} is not absolute")
                if mount_text in seen:
                    raise _Problem((*vpath, "mount"), f"duplicated mount point {mount_text!r}")
                seen.add(mount_text)
            read_only = _boolean(spec_map.get("readOnly", False), (*vpath, "readOnly"))
            result.append(StorageMount(str(volume), mount_text, read_only))
        return tuple(result)

    def credentials(self, value: Any, path: Path) -> Credentials | None:
        if value is None:
            return None
        spec = _mapping(value, path)
        fields: dict[str, str] = {}
        for key in ("host", "username", "password"):
            if not spec.get(key):
                raise _Problem((*path, key), f"credentials missing {key}")
            fields[key] = self.raw((*path, key), spec[key])
        if len(fields["password"]) < 6:
            raise _Problem((*path, "password"), "credentials password is shorter than 6 characters")
        email = self.raw((*path, "email"), spec["email"]) if spec.get("email") else None
        return Credentials(email=email, **fields)

    def permissions(self, params_value: Any, path: Path) -> tuple[str, ...]:
        if params_value is None:
            return ()
        spec = _mapping(params_value, (*path, "permissions"))
        read = self.strings(spec.get("read"), (*path, "permissions", "read"))
        for i, item in enumerate(read):
            if item not in PERMISSIONS:
                raise _Problem((*path, "permissions", "read", i), f"invalid permission {item!r}")
        return read

    def tee(self, value: Any, path: Path) -> str | None:
        if value is None:
            return None
        if value not in ("cpu", "cpu-gpu"):
            raise _Problem(path, f"invalid tee type {value!r} (cpu|cpu-gpu)")
        return str(value)

    # --- compute profiles ---------------------------------------------------------------------

    def compute_profiles(self, value: Any) -> dict[str, _Compute | None]:
        path: Path = ("profiles", "compute")
        result: dict[str, _Compute | None] = {}
        for name, spec in _mapping(value, path, allow_none=True).items():
            ppath = (*path, str(name))
            result[str(name)] = self.collect(
                lambda spec=spec, ppath=ppath: self.compute(spec, ppath)
            )
        return result

    def compute(self, value: Any, path: Path) -> _Compute:
        spec = _mapping(value, path)
        if "resources" not in spec:
            raise _Problem((*path, "resources"), "resources is required")
        rpath = (*path, "resources")
        res = _mapping(spec["resources"], rpath)
        for key in res:
            if key not in ("cpu", "memory", "storage", "gpu"):
                self.warn((*rpath, str(key)), f"unknown key {str(key)!r} ignored")
        storage: tuple[Volume, ...] = ()
        if res.get("storage") is None:
            self.warn((*rpath, "storage"), "no storage given; the container gets none")
        else:
            storage = self.storage(res["storage"], (*rpath, "storage"))
        return _Compute(
            cpu_millis=self.cpu(res.get("cpu"), (*rpath, "cpu")),
            memory_bytes=self.memory(res.get("memory"), (*rpath, "memory")),
            storage=storage,
            gpu=self.gpu(res.get("gpu"), (*rpath, "gpu")),
        )

    def cpu(self, value: Any, path: Path) -> int:
        spec = _mapping(value, path, what="cpu")
        if spec.get("units") is None:
            raise _Problem((*path, "units"), "cpu units are required")
        millis = _quantity(units.parse_cpu, spec["units"], (*path, "units"))
        if not CPU_MIN_MILLIS <= millis <= CPU_MAX_MILLIS:
            raise _Problem(
                (*path, "units"),
                f"invalid unit CPU: {units.format_cpu(millis)} is outside 10m..384",
            )
        attrs = _mapping(spec.get("attributes"), (*path, "attributes"), allow_none=True)
        for key in attrs:
            if key != "arch":
                raise _Problem(
                    (*path, "attributes", str(key)), f"unsupported cpu attribute {key!r}"
                )
        return millis

    def memory(self, value: Any, path: Path) -> int:
        spec = _mapping(value, path, what="memory")
        if spec.get("size") is None:
            raise _Problem((*path, "size"), "memory size is required")
        size = _quantity(units.parse_size, spec["size"], (*path, "size"))
        if not MEMORY_MIN <= size <= MEMORY_MAX:
            raise _Problem(
                (*path, "size"),
                f"invalid unit memory: {units.format_size(size)} is outside 1Mi..2Ti",
            )
        return size

    def storage(self, value: Any, path: Path) -> tuple[Volume, ...]:
        if isinstance(value, dict):
            entries: list[tuple[Path, Any]] = [(path, value)]
        else:
            items = _sequence(value, path, what="a storage mapping or a list of them")
            entries = [((*path, i), item) for i, item in enumerate(items)]
        volumes: list[Volume] = []
        for vpath, item in entries:
            volume = self.volume(item, vpath)
            if any(v.name == volume.name for v in volumes):
                raise _Problem(vpath, f"duplicated volume name {volume.name!r}")
            volumes.append(volume)
        return tuple(volumes)

    def volume(self, value: Any, path: Path) -> Volume:
        spec = _mapping(value, path)
        for key in spec:
            if key not in ("name", "size", "attributes"):
                self.warn((*path, str(key)), f"unknown key {str(key)!r} ignored")
        name = "default" if spec.get("name") is None else self.raw((*path, "name"), spec["name"])
        if spec.get("size") is None:
            raise _Problem((*path, "size"), "storage size is required")
        size = _quantity(units.parse_size, spec["size"], (*path, "size"))
        if not VOLUME_MIN <= size <= VOLUME_MAX:
            raise _Problem(
                (*path, "size"),
                f"invalid unit storage: {units.format_size(size)} is outside 5Mi..32Ti",
            )
        apath = (*path, "attributes")
        attrs = _mapping(spec.get("attributes"), apath, allow_none=True)
        for key in attrs:
            if key not in ("persistent", "class"):
                raise _Problem((*apath, str(key)), f"unsupported storage attribute {key!r}")
        persistent = _boolean(attrs.get("persistent", False), (*apath, "persistent"))
        storage_class = attrs.get("class")
        if storage_class is not None:
            storage_class = self.raw((*apath, "class"), storage_class)
            if storage_class not in STORAGE_CLASSES:
                raise _Problem(
                    (*apath, "class"),
                    f"invalid value for attribute class {storage_class!r} "
                    f"(one of {', '.join(STORAGE_CLASSES)})",
                )
            if storage_class == "ram" and persistent:
                raise _Problem((*apath, "persistent"), "ram storage class cannot be persistent")
            if storage_class != "ram" and not persistent:
                raise _Problem(
                    (*apath, "class"), "ephemeral storage should not set attribute class"
                )
        elif persistent:
            storage_class = "default"
        return Volume(
            name=name, size_bytes=size, persistent=persistent, storage_class=storage_class
        )

    def gpu(self, value: Any, path: Path) -> GpuRequest:
        if value is None:
            return GpuRequest()
        spec = _mapping(value, path, what="gpu")
        for key in spec:
            if key not in ("units", "attributes"):
                raise _Problem((*path, str(key)), f"unsupported field ({key}) for GPU resource")
        count = _gpu_units(spec.get("units", 0), (*path, "units"))
        attrs = spec.get("attributes")
        if count == 0:
            if attrs is not None:
                raise _Problem((*path, "attributes"), "attributes cannot be present if units == 0")
            return GpuRequest()
        if count > GPU_MAX_UNITS:
            raise _Problem((*path, "units"), f"invalid unit GPU: {count} is outside 0..24")
        if attrs is None:
            raise _Problem((*path, "attributes"), "GPU attributes must be present if units > 0")
        return GpuRequest(units=count, options=self.gpu_options(attrs, (*path, "attributes")))

    def gpu_options(self, value: Any, path: Path) -> tuple[GpuOption, ...]:
        attrs = _mapping(value, path)
        for key in attrs:
            if key != "vendor":
                raise _Problem((*path, str(key)), f"unsupported attribute ({key}) for GPU resource")
        vendors = _mapping(attrs.get("vendor"), (*path, "vendor"), allow_none=True)
        if not vendors:
            raise _Problem(
                (*path, "vendor"), "invalid GPU attributes. at least one vendor must be set"
            )
        options: list[GpuOption] = []
        for vendor, models in vendors.items():
            vpath = (*path, "vendor", str(vendor))
            if vendor != "nvidia":
                raise _Problem(vpath, f"unsupported GPU vendor {vendor!r} (only nvidia)")
            entries = _sequence(models, vpath, allow_none=True)
            if not entries:
                options.append(GpuOption("*"))
            for i, entry in enumerate(entries):
                option = self.gpu_option(entry, (*vpath, i))
                if option in options:
                    raise _Problem((*vpath, i), "attributes cannot have duplicate keys")
                options.append(option)
        return tuple(options)

    def gpu_option(self, value: Any, path: Path) -> GpuOption:
        spec = _mapping(value, path)
        for key in spec:
            if key not in ("model", "ram", "interface"):
                self.warn((*path, str(key)), f"unknown GPU key {str(key)!r} ignored")
        if spec.get("model") is None:
            raise _Problem((*path, "model"), "GPU model is required (or leave the list empty)")
        written = self.raw((*path, "model"), spec["model"]).strip()
        model = written.lower()
        if not model or not _ATTRIBUTE_KEY.match(f"m/{model}"):
            raise _Problem((*path, "model"), f"invalid GPU model {written!r}")
        ram = None
        if spec.get("ram") is not None:
            ram = _quantity(units.parse_gpu_ram, spec["ram"], (*path, "ram"))
        interface = None
        if spec.get("interface") is not None:
            interface = self.raw((*path, "interface"), spec["interface"])
            if interface not in ("pcie", "sxm"):
                raise _Problem(
                    (*path, "interface"), f'invalid GPU interface {interface}. expected "pcie|sxm"'
                )
        if model != "*":
            self.check_model(written, model, ram, interface, (*path, "model"))
        return GpuOption(model=model, ram_gib=ram, interface=interface)

    def check_model(
        self, written: str, model: str, ram: int | None, interface: str | None, path: Path
    ) -> None:
        if not gpus.is_known(model):
            hint = gpus.suggestions(written)
            mean = f"; did you mean {' or '.join(hint)}?" if hint else ""
            self.warn(path, f"unknown GPU model {written!r}{mean} (no provider will match it)")
            return
        if written != model:
            self.warn(path, f"GPU model {written!r} read as {model!r}")
        if not any(
            (ram is None or v.ram_gib == ram) and (interface is None or v.interface == interface)
            for v in gpus.variants(model)
        ):
            known = ", ".join(f"{v.ram_gib}Gi {v.interface}" for v in gpus.variants(model))
            self.warn(path, f"no known {model} has that ram/interface (known: {known})")

    # --- placement profiles -------------------------------------------------------------------

    def placements(self, value: Any) -> dict[str, _Placement | None]:
        path: Path = ("profiles", "placement")
        result: dict[str, _Placement | None] = {}
        for name, spec in _mapping(value, path, allow_none=True).items():
            ppath = (*path, str(name))
            result[str(name)] = self.collect(
                lambda spec=spec, ppath=ppath: self.placement(spec, ppath)
            )
        return result

    def placement(self, value: Any, path: Path) -> _Placement:
        spec = _mapping(value, path)
        for key in spec:
            if key not in ("attributes", "signedBy", "pricing"):
                self.warn((*path, str(key)), f"unknown key {str(key)!r} ignored")
        attributes = []
        apath = (*path, "attributes")
        for key, val in _mapping(spec.get("attributes"), apath, allow_none=True).items():
            key_text = str(key)
            if not _ATTRIBUTE_KEY.match(key_text):
                raise _Problem((*apath, str(key)), f"invalid attribute key {key_text!r}")
            if isinstance(val, dict | list) or val is None:
                got = units.type_name(val)
                raise _Problem((*apath, str(key)), f"attribute value must be a string, got {got}")
            attributes.append((key_text, self.raw((*apath, str(key)), val)))
        signed = _mapping(spec.get("signedBy"), (*path, "signedBy"), allow_none=True)
        for key in signed:
            if key not in ("allOf", "anyOf"):
                self.warn((*path, "signedBy", str(key)), f"unknown key {str(key)!r} ignored")
        all_of = self.strings(signed.get("allOf"), (*path, "signedBy", "allOf"))
        any_of = self.strings(signed.get("anyOf"), (*path, "signedBy", "anyOf"))
        pricing: dict[str, tuple[str, Decimal]] = {}
        ppath = (*path, "pricing")
        for profile, coin in _mapping(spec.get("pricing"), ppath, allow_none=True).items():
            pricing[str(profile)] = self.coin(coin, (*ppath, str(profile)))
        return _Placement(
            requirements=PlacementRequirements(
                attributes=tuple(sorted(attributes)),
                signed_by_all_of=all_of,
                signed_by_any_of=any_of,
            ),
            pricing=pricing,
        )

    def coin(self, value: Any, path: Path) -> tuple[str, Decimal]:
        spec = _mapping(value, path)
        denom = spec.get("denom")
        if denom is None:
            raise _Problem((*path, "denom"), "denom is required")
        denom = self.raw((*path, "denom"), denom)
        if denom not in DENOMS:
            raise _Problem((*path, "denom"), f"unsupported denom {denom!r} (use uact)")
        if denom != "uact":
            self.warn((*path, "denom"), f"{denom} is legacy (Akash now takes only uact)")
        if spec.get("amount") is None:
            raise _Problem((*path, "amount"), "amount is required")
        amount_value = spec["amount"]
        if isinstance(amount_value, bool) or not isinstance(amount_value, int | float | str):
            got = units.type_name(amount_value)
            raise _Problem((*path, "amount"), f"amount must be a decimal number, got {got}")
        text = self.raw((*path, "amount"), amount_value).strip()
        if not _DECIMAL.match(text):
            raise _Problem((*path, "amount"), f"invalid coin amount {text!r} (a decimal ≥ 0)")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise _Problem((*path, "amount"), f"invalid coin amount {text!r}") from None
        if amount == 0:
            raise _Problem((*path, "amount"), "invalid coin amount: amount is zero")
        if amount > PRICE_MAX:
            raise _Problem(
                (*path, "amount"), f"invalid price: {text} is over the maximum of 10000000"
            )
        return denom, amount

    # --- deployment and groups ----------------------------------------------------------------

    def deployment(
        self,
        value: Any,
        services: dict[str, Service | None],
        compute: dict[str, _Compute | None],
        placements: dict[str, _Placement | None],
    ) -> list[ServiceDeployment]:
        result: list[ServiceDeployment] = []
        for service, spec in _mapping(value, ("deployment",)).items():
            spath: Path = ("deployment", str(service))
            if str(service) not in services:
                self.errors.append(_Problem(spath, f"no service profile named {service!r}"))
                continue
            for placement, entry in _mapping(spec, spath).items():
                epath = (*spath, str(placement))
                item = self.collect(
                    lambda s=str(service), p=str(placement), e=entry, ep=epath: self.deploy_entry(
                        s, p, e, ep, compute, placements
                    )
                )
                if item is not None:
                    result.append(item)
        if not result and not self.errors:
            raise _Problem(("deployment",), "nothing to deploy")
        deployed = {d.service for d in result}
        for name in services:
            if name not in deployed and not self.errors:
                self.warn(("services", name), f"service {name!r} is not deployed anywhere")
        return sorted(result, key=lambda d: (d.placement, d.service))

    def deploy_entry(
        self,
        service: str,
        placement: str,
        value: Any,
        path: Path,
        compute: dict[str, _Compute | None],
        placements: dict[str, _Placement | None],
    ) -> ServiceDeployment:
        spec = _mapping(value, path)
        if spec.get("profile") is None:
            raise _Problem((*path, "profile"), "profile is required")
        profile = self.raw((*path, "profile"), spec["profile"])
        if spec.get("count") is None:
            raise _Problem((*path, "count"), "count is required")
        count = _integer(spec["count"], (*path, "count"), 1, 2**31 - 1)
        if placement not in placements:
            raise _Problem(path, f"no placement profile named {placement!r}")
        if profile not in compute:
            raise _Problem(
                (*path, "profile"), f"{service}.{placement}: no compute profile named {profile!r}"
            )
        chosen = placements[placement]
        if chosen is not None and profile not in chosen.pricing:
            raise _Problem(
                ("profiles", "placement", placement, "pricing"),
                f"no pricing for profile {profile!r}",
            )
        return ServiceDeployment(service, placement, profile, count)

    def groups(
        self,
        version: str,
        deployments: list[ServiceDeployment],
        services: dict[str, Service | None],
        compute: dict[str, _Compute | None],
        placements: dict[str, _Placement | None],
    ) -> tuple[GroupSpec, ...]:
        for d in deployments:
            self.collect(lambda d=d: self.check_mounts(version, d, services, compute))
        if self.errors:
            return ()
        denoms: set[str] = set()
        groups = []
        for name in sorted({d.placement for d in deployments}):
            mine = [d for d in deployments if d.placement == name]
            group = self.collect(
                lambda name=name, mine=mine: self.group(
                    version, name, mine, services, compute, placements
                )
            )
            if group is not None:
                groups.append(group)
                denoms.add(group.denom)
        if len(denoms) > 1:
            raise _Problem(("profiles", "placement"), "inconsistent group denomination")
        return tuple(groups)

    def check_mounts(
        self,
        version: str,
        deployment: ServiceDeployment,
        services: dict[str, Service | None],
        compute: dict[str, _Compute | None],
    ) -> None:
        service, profile = services[deployment.service], compute[deployment.profile]
        if service is None or profile is None:
            return
        volumes = {v.name: v for v in profile.storage}
        mounted = {m.volume: m for m in service.storage}
        spath: Path = ("services", service.name, "params", "storage")
        for mount in service.storage:
            volume = volumes.get(mount.volume)
            if volume is None:
                raise _Problem(
                    (*spath, mount.volume),
                    f"service {service.name!r} references to no-existing compute volume named "
                    f"{mount.volume!r}",
                )
            if version == "2.1" and mount.read_only and volume.storage_class == "ram":
                raise _Problem(
                    (*spath, mount.volume, "readOnly"),
                    'readOnly=true is not allowed for storage class "ram"',
                )
        for volume in profile.storage:
            if volume.persistent and not (volume.name in mounted and mounted[volume.name].mount):
                raise _Problem(
                    ("profiles", "compute", deployment.profile, "resources", "storage"),
                    f"compute.storage.{volume.name} has persistent=true which requires "
                    f"service.{service.name}.params.storage.{volume.name} to have mount",
                )

    def group(
        self,
        version: str,
        name: str,
        mine: list[ServiceDeployment],
        services: dict[str, Service | None],
        compute: dict[str, _Compute | None],
        placements: dict[str, _Placement | None],
    ) -> GroupSpec:
        placement = placements[name]
        path: Path = ("profiles", "placement", name)
        if placement is None:
            raise _Problem(path, "placement profile is invalid")
        requirements = placement.requirements
        tee_types = {s.tee for d in mine if (s := services[d.service]) and s.tee}
        if len(tee_types) > 1:
            raise _Problem(path, "conflicting tee types")
        if tee_types:
            tee = tee_types.pop()
            attributes = tuple(sorted((*requirements.attributes, ("tee/type", tee))))
            requirements = PlacementRequirements(
                attributes, requirements.signed_by_all_of, requirements.signed_by_any_of
            )
        denoms = {placement.pricing[d.profile][0] for d in mine}
        if len(denoms) > 1:
            raise _Problem((*path, "pricing"), "inconsistent group denomination")
        resources = self.resource_units(version, mine, services, compute, placement)
        group = GroupSpec(
            name=name, requirements=requirements, resources=resources, denom=denoms.pop()
        )
        self.check_group_totals(group, placement, mine, path)
        return group

    def resource_units(
        self,
        version: str,
        mine: list[ServiceDeployment],
        services: dict[str, Service | None],
        compute: dict[str, _Compute | None],
        placement: _Placement,
    ) -> tuple[ResourceUnit, ...]:
        # v2.0: one unit per service; v2.1: services sharing a compute profile share a unit.
        buckets: dict[str, list[ServiceDeployment]] = {}
        for d in mine:
            key = d.profile if version == "2.1" else d.service
            buckets.setdefault(key, []).append(d)
        result = []
        for bucket in buckets.values():
            profile = compute[bucket[0].profile]
            assert profile is not None  # groups() only runs without errors
            ports = sorted({p for d in bucket for p in _ports(services[d.service])})
            _, amount = placement.pricing[bucket[0].profile]
            result.append(
                ResourceUnit(
                    services=tuple(d.service for d in bucket),
                    count=sum(d.count for d in bucket),
                    cpu_millis=profile.cpu_millis,
                    memory_bytes=profile.memory_bytes,
                    storage=profile.storage,
                    gpu=profile.gpu,
                    max_price_per_hour=per_block_to_per_hour(amount),
                    ports=tuple(ports),
                )
            )
            for d in bucket:
                service = services[d.service]
                if service and service.tee == "cpu-gpu" and profile.gpu.units == 0:
                    raise _Problem(
                        ("services", d.service, "params", "tee"), "tee cpu-gpu needs GPU units"
                    )
        return tuple(result)

    def check_group_totals(
        self, group: GroupSpec, placement: _Placement, mine: list[ServiceDeployment], path: Path
    ) -> None:
        units_list = group.resources
        totals = (
            (
                "CPU",
                sum(u.cpu_millis * u.count for u in units_list),
                CPU_MAX_MILLIS,
                units.format_cpu,
            ),
            ("GPU", group.total_gpus, GPU_MAX_UNITS, str),
            (
                "memory",
                sum(u.memory_bytes * u.count for u in units_list),
                MEMORY_MAX,
                units.format_size,
            ),
            (
                "storage",
                sum(v.size_bytes * u.count for u in units_list for v in u.storage),
                VOLUME_MAX,
                units.format_size,
            ),
        )
        for label, total, per_unit, fmt in totals:
            if total > per_unit * GROUP_FACTOR:
                raise _Problem(
                    path,
                    f"group {group.name!r} asks for {fmt(total)} {label} in total; "
                    f"the most one group may ask for is {fmt(per_unit * GROUP_FACTOR)}",
                )
        price = sum(placement.pricing[d.profile][1] * d.count for d in mine)
        if price > PRICE_MAX * GROUP_FACTOR:
            raise _Problem((*path, "pricing"), f"group price {price} is over the maximum")

    def check_endpoints_used(
        self, endpoints: dict[str, Endpoint], services: dict[str, Service | None]
    ) -> None:
        used = {
            to.ip
            for service in services.values()
            if service
            for expose in service.expose
            for to in expose.to
            if to.ip
        }
        for name in endpoints:
            if name not in used:
                self.errors.append(
                    _Problem(("endpoints", name), f"endpoint {name!r} declared but never used")
                )

    # --- extensions -----------------------------------------------------------------------------

    def reclamation(self, value: Any) -> int | None:
        if value is None:
            return None
        path: Path = ("reclamation",)
        spec = _mapping(value, path)
        window = spec.get("min_window")
        if not isinstance(window, str) or not _RECLAMATION.match(window):
            raise _Problem((*path, "min_window"), "min_window must look like 1h, 24h or 720h")
        return units.parse_duration_ms(window)

    def job(self, value: Any) -> JobSettings:
        if value is None:
            return JobSettings()
        path: Path = ("gpumarket",)
        spec = _mapping(value, path)
        known = ("kind", "max_runtime", "restart", "auction", "min_reliability")
        for key in spec:
            if key not in known:
                raise _Problem(
                    (*path, str(key)), f"unknown key {key!r} (one of {', '.join(known)})"
                )
        kind = _choice(spec.get("kind"), (*path, "kind"), JobKind, JobKind.SERVICE)
        restart = _choice(
            spec.get("restart"), (*path, "restart"), RestartPolicy, RestartPolicy.ON_FAILURE
        )
        max_runtime = None
        if spec.get("max_runtime") is not None:
            max_runtime = _quantity(
                units.parse_duration_ms, spec["max_runtime"], (*path, "max_runtime")
            )
        auction = self.auction(spec.get("auction"), (*path, "auction"))
        if spec.get("min_reliability") is not None:
            reliability = spec["min_reliability"]
            rpath = (*path, "min_reliability")
            if isinstance(reliability, bool) or not isinstance(reliability, int | float):
                raise _Problem(rpath, "min_reliability must be a number between 0 and 1")
            if not 0 <= reliability <= 1:
                raise _Problem(rpath, f"min_reliability {reliability} is outside 0..1")
            auction = AuctionSettings(
                auction.bid_window_ms, auction.payment, auction.manual, float(reliability)
            )
        return JobSettings(
            kind=kind, max_runtime_ms=max_runtime, restart_policy=restart, auction=auction
        )

    def auction(self, value: Any, path: Path) -> AuctionSettings:
        defaults = AuctionSettings()
        if value is None:
            return defaults
        spec = _mapping(value, path)
        for key in spec:
            if key not in ("bid_window", "payment", "manual"):
                raise _Problem(
                    (*path, str(key)), f"unknown key {key!r} (one of bid_window, payment, manual)"
                )
        window = defaults.bid_window_ms
        if spec.get("bid_window") is not None:
            window = _quantity(units.parse_duration_ms, spec["bid_window"], (*path, "bid_window"))
            if window > 3_600_000:
                raise _Problem((*path, "bid_window"), "bid_window must be at most 1h")
        payment = _choice(spec.get("payment"), (*path, "payment"), Payment, defaults.payment)
        manual = _boolean(spec.get("manual", False), (*path, "manual"))
        return AuctionSettings(bid_window_ms=window, payment=payment, manual=manual)


# ---------------------------------------------------------------------------------------------
# Small typed readers


def _dotted(path: Path) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _exact(root: yaml.Node | None, path: Path) -> bool:
    """Whether `path` exists in the node tree (rather than stopping at an ancestor)."""
    node = root
    for step in path:
        node = _child(node, step)
        if node is None:
            return False
    return True


def _mapping(
    value: Any, path: Path, allow_none: bool = False, what: str = "a mapping"
) -> dict[Any, Any]:
    if value is None and allow_none:
        return {}
    if value is None and path and isinstance(path[-1], str):
        raise _Problem(path, f"{path[-1]} is required")
    if not isinstance(value, dict):
        raise _Problem(path, f"expected {what}, got {units.type_name(value)}")
    return value


def _sequence(value: Any, path: Path, allow_none: bool = False, what: str = "a list") -> list[Any]:
    if value is None and allow_none:
        return []
    if not isinstance(value, list):
        raise _Problem(path, f"expected {what}, got {units.type_name(value)}")
    return value


def _integer(value: Any, path: Path, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "" if value is None else f" {value!r:.40}"
        raise _Problem(path, f"expected a whole number, got {units.type_name(value)}{shown}")
    if not low <= value <= high:
        raise _Problem(path, f"{value} is outside {low}..{high}")
    return value


def _gpu_units(value: Any, path: Path) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,12}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(path, f"GPU units must be a whole number, got {value!r:.40}")
    if value < 0:
        raise _Problem(path, "invalid: negative value not allowed")
    if value > 10**9:
        raise _Problem(path, f"invalid unit GPU: {value} is outside 0..24")
    return value


def _boolean(value: Any, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "on", "y"):
            return True
        if lowered in ("false", "no", "off", "n"):
            return False
    raise _Problem(path, f"expected true or false, got {value!r:.40}")


def _quantity(parse: Callable[[Any], int], value: Any, path: Path) -> int:
    try:
        return parse(value)
    except ValueError as exc:
        raise _Problem(path, str(exc)) from None


def _choice(value: Any, path: Path, enum: Any, default: Any) -> Any:
    if value is None:
        return default
    try:
        return enum(value)
    except ValueError:
        options = "|".join(member.value for member in enum)
        raise _Problem(path, f"invalid value {value!r:.40} ({options})") from None


def _ports(service: Service | None) -> tuple[int, ...]:
    return service.global_ports if service else ()
