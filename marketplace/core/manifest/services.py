"""services: and endpoints: — images, commands, env, exposed ports (accept, to, http_options),
storage mounts, registry credentials, permissions and TEE."""

from __future__ import annotations

import posixpath
import re

from marketplace.core.job_env import ENV_PREFIX
from marketplace.core.limits import shown
from marketplace.core.manifest.context import (
    ParseContext,
    Problem,
    field,
    integer,
    mapping,
    sequence,
    strict_bool,
    text,
)
from marketplace.core.manifest.model import (
    Credentials,
    Endpoint,
    Expose,
    ExposeTo,
    HttpOptions,
    Service,
    StorageMount,
)
from marketplace.core.manifest.yaml_lines import Path

HTTP_NEXT_CASES = ("error", "timeout", "500", "502", "503", "504", "403", "404", "429", "off")
PERMISSIONS = ("deployment", "logs", "events")
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
# Docker's image reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest].
# An image the runtime cannot pull would be found out only after the auction, by a failed lease.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,  # Go's \w, as Docker reads a tag
)
_IMAGE_CHARS = 512  # Docker: a name of at most 255, a tag of 128, a sha512 digest of 135
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_ENDPOINT_NAME = re.compile(r"^[a-z]+[-_0-9a-z]+$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9*]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?\.)*"
    r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$"
)


def read_endpoints(ctx: ParseContext, top: dict[object, object]) -> dict[str, Endpoint]:
    result: dict[str, Endpoint] = {}
    for name, spec in field(top, "endpoints", ()).items():
        path: Path = ("endpoints", str(name))
        if not isinstance(name, str) or not _ENDPOINT_NAME.fullmatch(name):
            raise Problem(path, f"invalid endpoint name {shown(name)} (lowercase letters, -, _)")
        spec_map = mapping(spec, path, null_ok=False)
        ctx.unexpected(spec_map, ("kind",), path)
        kind = spec_map.get("kind")
        if kind != "ip":
            raise Problem((*path, "kind"), f"endpoint kind must be 'ip', got {shown(kind)}")
        result[name] = Endpoint(name)
    return result


def read_services(
    ctx: ParseContext, value: object, endpoints: dict[str, Endpoint]
) -> dict[str, Service | None]:
    services_map = mapping(value, ("services",))
    if not services_map:
        raise Problem(("services",), "no services defined")
    result: dict[str, Service | None] = {}
    for name, spec in services_map.items():
        path: Path = ("services", str(name))
        result[str(name)] = ctx.collect(read_service, ctx, name, spec, path, endpoints)
    hosts: dict[str, str] = {}  # hostname → the service that first accepts it
    for service in result.values():
        if service is None:
            continue
        for index, expose in enumerate(service.expose):
            for host in expose.accept:
                # Akash refuses a hostname twice anywhere (one ingress rule per name): twice in
                # one service, to two of its ports, was taken here and left to the ingress
                if host in hosts:
                    other = hosts[host]
                    where = "again" if other == service.name else f"by service {shown(other)}"
                    ctx.errors.append(
                        Problem(
                            ("services", service.name, "expose", index, "accept"),
                            f"hostname {shown(host)} is also accepted {where}",
                        )
                    )
                hosts[host] = hosts.get(host, service.name)
    return result


def read_service(
    ctx: ParseContext, name: object, value: object, path: Path, endpoints: dict[str, Endpoint]
) -> Service:
    if not isinstance(name, str) or len(name) > 63 or not _SERVICE_NAME.fullmatch(name):
        raise Problem(path, f"invalid service name {shown(name)} (lowercase DNS label)")
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, _SERVICE_KEYS, path)
    image = spec.get("image")
    if image is None or (isinstance(image, str) and not image.strip()):
        raise Problem((*path, "image"), "image is required")
    image = text(image, (*path, "image"))
    if len(image) > _IMAGE_CHARS or not _IMAGE.fullmatch(image):
        raise Problem(
            (*path, "image"),
            f"invalid image reference {shown(image)} (a Docker image such as nginx:1.27, "
            "ghcr.io/org/app:v1 or app@sha256:…)",
        )
    params = field(spec, "params", path)
    ctx.unexpected(params, ("storage", "permissions", "tee"), (*path, "params"))
    read_dependencies(ctx, spec, path)
    return Service(
        name=name,
        image=image,
        command=ctx.strings(spec.get("command"), (*path, "command")),
        args=ctx.strings(spec.get("args"), (*path, "args")),
        env=read_env(ctx, spec.get("env"), (*path, "env")),
        expose=read_exposes(ctx, spec.get("expose"), (*path, "expose"), endpoints),
        storage=read_mounts(ctx, params, (*path, "params")),
        credentials=read_credentials(ctx, spec, path),
        permissions=read_permissions(ctx, params, (*path, "params")),
        tee=read_tee(ctx, params, (*path, "params")),
    )


def read_dependencies(ctx: ParseContext, spec: dict[object, object], path: Path) -> None:
    """`dependencies: [{service: NAME}]`: checked for shape; Akash documents it as a no-op and
    so does gpumarket (services of a group start together)."""
    dpath = (*path, "dependencies")
    for index, item in enumerate(sequence(spec.get("dependencies", []), dpath)):
        entry = mapping(item, (*dpath, index), null_ok=False)
        ctx.unexpected(entry, ("service",), (*dpath, index))
        if "service" in entry:
            text(entry["service"], (*dpath, index, "service"))


def read_env(ctx: ParseContext, value: object, path: Path) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        raise Problem(path, "env must be a list of KEY=VALUE strings, not a mapping")
    result = []
    for index, item in enumerate(ctx.strings(value, path)):
        key, sep, val = item.partition("=")
        if not _ENV_NAME.fullmatch(key):  # what Akash's provider checks (k8s IsEnvVarName)
            raise Problem(
                (*path, index),
                f"invalid environment variable name {shown(key)} in {shown(item)} "
                "(KEY=VALUE; a KEY of letters, digits, '_', '-' and '.', not starting with a digit)",
            )
        if not sep:
            ctx.warn((*path, index), f"environment entry {shown(item)} has no '='; value is empty")
        if key.startswith(ENV_PREFIX):
            ctx.warn(
                (*path, index),
                f"{shown(key)}: GPUMARKET_* variables are set by the provider (yours is replaced)",
            )
        result.append((key, val))
    return tuple(result)


def read_exposes(
    ctx: ParseContext, value: object, path: Path, endpoints: dict[str, Endpoint]
) -> tuple[Expose, ...]:
    result = []
    seen: set[tuple[str, int, str]] = set()
    for index, item in enumerate(sequence(value, path, allow_none=True, what="a list or null")):
        expose = read_expose(ctx, item, (*path, index), endpoints)
        for to in expose.to:
            if to.ip is None:
                continue
            key = (to.ip, expose.as_port, expose.proto)
            if key in seen:
                raise Problem(
                    (*path, index),
                    f"port {expose.as_port}/{expose.proto} is exposed twice on IP {shown(to.ip)}",
                )
            seen.add(key)
        result.append(expose)
    return tuple(result)


def read_expose(
    ctx: ParseContext, value: object, path: Path, endpoints: dict[str, Endpoint]
) -> Expose:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("port", "as", "proto", "accept", "to", "http_options"), path)
    if "port" not in spec:
        raise Problem((*path, "port"), "port is required")
    port = integer(spec["port"], (*path, "port"), 1, 65535)
    as_port = port if "as" not in spec else integer(spec["as"], (*path, "as"), 1, 65535)
    proto = "tcp"
    if "proto" in spec:
        if spec["proto"] not in ("tcp", "udp", "TCP", "UDP"):
            raise Problem((*path, "proto"), f"invalid protocol {shown(spec['proto'])} (tcp|udp)")
        proto = str(spec["proto"]).lower()
    accept = []
    for i, host in enumerate(sequence(spec.get("accept", []), (*path, "accept"))):
        if not isinstance(host, str) or not _HOSTNAME.fullmatch(host):
            raise Problem((*path, "accept", i), f"invalid hostname {shown(host)}")
        accept.append(host.lower())
    targets = []
    for i, target in enumerate(sequence(spec.get("to", []), (*path, "to"))):
        targets.append(read_expose_to(ctx, target, (*path, "to", i), endpoints))
    return Expose(
        port=port,
        as_port=as_port,
        proto=proto,
        accept=tuple(accept),
        to=tuple(targets),
        http_options=read_http_options(ctx, spec, path),
    )


def read_expose_to(
    ctx: ParseContext, value: object, path: Path, endpoints: dict[str, Endpoint]
) -> ExposeTo:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("service", "global", "ip"), path)
    service = None
    if "service" in spec:
        service = text(spec["service"], (*path, "service"))
    global_ = strict_bool(spec.get("global", False), (*path, "global"))
    ip = None
    if "ip" in spec:
        ip = text(spec["ip"], (*path, "ip"))
        if not ip:
            raise Problem((*path, "ip"), "ip must name an endpoint")
        if not global_:
            raise Problem(
                (*path, "ip"), "if an IP is declared the directive must be declared as global"
            )
        if ip not in endpoints:
            raise Problem((*path, "ip"), f"unknown endpoint {shown(ip)}")
    return ExposeTo(service=service, global_=global_, ip=ip)


_HTTP_OPTIONS = (
    "max_body_size",
    "read_timeout",
    "send_timeout",
    "next_tries",
    "next_timeout",
    "next_cases",
    "proxy_buffer_size",
)


def read_http_options(ctx: ParseContext, expose: dict[object, object], parent: Path) -> HttpOptions:
    if "http_options" not in expose:
        return HttpOptions()
    path = (*parent, "http_options")
    spec = field(expose, "http_options", parent)
    ctx.unexpected(spec, _HTTP_OPTIONS, path)
    defaults = HttpOptions()

    def bounded(key: str, default: int, high: int) -> int:
        if key not in spec:
            return default
        return integer(spec[key], (*path, key), 0, high)

    cases = defaults.next_cases
    if "next_cases" in spec:
        cases = next_cases(ctx, spec["next_cases"], (*path, "next_cases"))
        for i, case in enumerate(cases):
            if case not in HTTP_NEXT_CASES:
                raise Problem((*path, "next_cases", i), f"invalid next case {shown(case)}")
        if "off" in cases and len(cases) > 1:
            raise Problem((*path, "next_cases"), "'off' must be the only next case")
    if "proxy_buffer_size" in spec:
        integer(spec["proxy_buffer_size"], (*path, "proxy_buffer_size"), 0, 1_048_576)
    return HttpOptions(
        max_body_size=bounded("max_body_size", defaults.max_body_size, 104_857_600),
        read_timeout_ms=bounded("read_timeout", defaults.read_timeout_ms, 60_000),
        send_timeout_ms=bounded("send_timeout", defaults.send_timeout_ms, 60_000),
        next_tries=bounded("next_tries", defaults.next_tries, 2**31 - 1),
        next_timeout_ms=bounded("next_timeout", defaults.next_timeout_ms, 2**31 - 1),
        next_cases=tuple(cases),
    )


def next_cases(ctx: ParseContext, value: object, path: Path) -> tuple[str, ...]:
    """The cases as written: YAML 1.1 reads an unquoted `off` as false, Akash's (1.2) as "off"."""
    cases = []
    for index, item in enumerate(sequence(value, path)):
        case = ctx.raw((*path, index), item) if isinstance(item, bool) else item
        cases.append(text(case, (*path, index)))
    return tuple(cases)


def read_mounts(
    ctx: ParseContext, params: dict[object, object], parent: Path
) -> tuple[StorageMount, ...]:
    result = []
    seen: set[str] = set()
    path = (*parent, "storage")
    for volume, spec in field(params, "storage", parent).items():
        vpath = (*path, str(volume))
        spec_map = mapping(spec, vpath, null_ok=False)
        ctx.unexpected(spec_map, ("mount", "readOnly"), vpath)
        if "mount" not in spec_map:
            mount_text = ""
        else:
            mount_text = text(spec_map["mount"], (*vpath, "mount"))
            if not mount_text.startswith("/"):
                raise Problem((*vpath, "mount"), f"mount path {shown(mount_text)} is not absolute")
            # "/data", "/data/" and "/x/../data" are one mount point to the runtime
            point = posixpath.normpath(mount_text)
            if point in ("/", "//"):
                raise Problem((*vpath, "mount"), "a volume cannot be mounted over / itself")
            if point in seen:
                raise Problem((*vpath, "mount"), f"duplicated mount point {shown(mount_text)}")
            seen.add(point)
        read_only = strict_bool(spec_map.get("readOnly", False), (*vpath, "readOnly"))
        result.append(StorageMount(str(volume), mount_text, read_only))
    return tuple(result)


def read_credentials(
    ctx: ParseContext, service: dict[object, object], parent: Path
) -> Credentials | None:
    if "credentials" not in service:
        return None
    path = (*parent, "credentials")
    spec = field(service, "credentials", parent)
    ctx.unexpected(spec, ("host", "username", "password", "email"), path)
    fields: dict[str, str] = {}
    for key in ("host", "username", "password"):
        if not spec.get(key):
            raise Problem((*path, key), f"credentials missing {key}")
        fields[key] = text(spec[key], (*path, key))
    if len(fields["password"]) < 6:
        raise Problem((*path, "password"), "credentials password is shorter than 6 characters")
    email = None
    if "email" in spec:
        email = text(spec["email"], (*path, "email"))
        if len(email) < 5:
            raise Problem((*path, "email"), "credentials email is shorter than 5 characters")
    return Credentials(email=email, **fields)


def read_permissions(
    ctx: ParseContext, params: dict[object, object], path: Path
) -> tuple[str, ...]:
    if "permissions" not in params:
        return ()
    spec = field(params, "permissions", path)
    ctx.unexpected(spec, ("read",), (*path, "permissions"))
    if "read" not in spec:
        return ()
    rpath = (*path, "permissions", "read")
    read = ctx.strings(sequence(spec["read"], rpath), rpath)
    for i, item in enumerate(read):
        if item not in PERMISSIONS:
            raise Problem((*path, "permissions", "read", i), f"invalid permission {shown(item)}")
    return read


def read_tee(ctx: ParseContext, params: dict[object, object], parent: Path) -> str | None:
    if "tee" not in params:
        return None
    value, path = params["tee"], (*parent, "tee")
    if value not in ("cpu", "cpu-gpu"):
        raise Problem(path, f"invalid tee type {shown(value)} (cpu|cpu-gpu)")
    return str(value)


def check_endpoints_used(
    ctx: ParseContext, endpoints: dict[str, Endpoint], services: dict[str, Service | None]
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
            ctx.errors.append(
                Problem(("endpoints", name), f"endpoint {shown(name)} declared but never used")
            )
