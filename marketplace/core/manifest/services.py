"""services: and endpoints: — images, commands, env, exposed ports (accept, to, http_options),
storage mounts, registry credentials, permissions and TEE."""

from __future__ import annotations

import re

from marketplace.core.limits import shown
from marketplace.core.manifest.context import (
    ParseContext,
    Problem,
    boolean,
    integer,
    mapping,
    sequence,
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
_ENDPOINT_NAME = re.compile(r"^[a-z]+[-_0-9a-z]+$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9*]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?\.)*"
    r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$"
)


def read_endpoints(ctx: ParseContext, value: object) -> dict[str, Endpoint]:
    result: dict[str, Endpoint] = {}
    for name, spec in mapping(value, ("endpoints",), allow_none=True).items():
        path: Path = ("endpoints", str(name))
        if not isinstance(name, str) or not _ENDPOINT_NAME.match(name):
            raise Problem(path, f"invalid endpoint name {shown(name)} (lowercase letters, -, _)")
        spec_map = mapping(spec, path)
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
    hosts: dict[str, str] = {}
    for service in result.values():
        if service is None:
            continue
        for expose in service.expose:
            for host in expose.accept:
                if host in hosts and hosts[host] != service.name:
                    ctx.errors.append(
                        Problem(
                            ("services", service.name, "expose"),
                            f"hostname {shown(host)} is also accepted by service {shown(hosts[host])}",
                        )
                    )
                hosts[host] = service.name
    return result


def read_service(
    ctx: ParseContext, name: object, value: object, path: Path, endpoints: dict[str, Endpoint]
) -> Service:
    if not isinstance(name, str) or len(name) > 63 or not _SERVICE_NAME.match(name):
        raise Problem(path, f"invalid service name {shown(name)} (lowercase DNS label)")
    spec = mapping(value, path)
    for key in spec:
        if key not in _SERVICE_KEYS:
            ctx.warn((*path, str(key)), f"unknown key {shown(str(key))} ignored (as Akash does)")
    image = spec.get("image")
    if image is None or (isinstance(image, str) and not image.strip()):
        raise Problem((*path, "image"), "image is required")
    image = ctx.raw((*path, "image"), image)
    params = mapping(spec.get("params"), (*path, "params"), allow_none=True)
    for key in params:
        if key not in ("storage", "permissions", "tee"):
            ctx.warn((*path, "params", str(key)), f"unknown key {shown(str(key))} ignored")
    return Service(
        name=name,
        image=image,
        command=ctx.strings(spec.get("command"), (*path, "command")),
        args=ctx.strings(spec.get("args"), (*path, "args")),
        env=read_env(ctx, spec.get("env"), (*path, "env")),
        expose=read_exposes(ctx, spec.get("expose"), (*path, "expose"), endpoints),
        storage=read_mounts(ctx, params.get("storage"), (*path, "params", "storage")),
        credentials=read_credentials(ctx, spec.get("credentials"), (*path, "credentials")),
        permissions=read_permissions(ctx, params.get("permissions"), (*path, "params")),
        tee=read_tee(ctx, params.get("tee"), (*path, "params", "tee")),
    )


def read_env(ctx: ParseContext, value: object, path: Path) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        raise Problem(path, "env must be a list of KEY=VALUE strings, not a mapping")
    result = []
    for index, item in enumerate(ctx.strings(value, path)):
        key, sep, val = item.partition("=")
        if not key.strip():
            raise Problem((*path, index), f"invalid environment entry {shown(item)} (KEY=VALUE)")
        if not sep:
            ctx.warn((*path, index), f"environment entry {shown(item)} has no '='; value is empty")
        result.append((key, val))
    return tuple(result)


def read_exposes(
    ctx: ParseContext, value: object, path: Path, endpoints: dict[str, Endpoint]
) -> tuple[Expose, ...]:
    result = []
    seen: set[tuple[str, int, str]] = set()
    for index, item in enumerate(sequence(value, path, allow_none=True)):
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
    spec = mapping(value, path)
    known = ("port", "as", "proto", "accept", "to", "http_options")
    for key in spec:
        if key not in known:
            ctx.warn((*path, str(key)), f"unknown key {shown(str(key))} ignored")
    if "port" not in spec:
        raise Problem((*path, "port"), "port is required")
    port = integer(spec["port"], (*path, "port"), 1, 65535)
    as_port = port if spec.get("as") is None else integer(spec["as"], (*path, "as"), 1, 65535)
    proto = "tcp"
    if spec.get("proto") is not None:
        proto = str(spec["proto"]).lower()
        if proto not in ("tcp", "udp"):
            raise Problem((*path, "proto"), f"invalid protocol {shown(spec['proto'])} (tcp|udp)")
    accept = []
    for i, host in enumerate(sequence(spec.get("accept"), (*path, "accept"), True)):
        if not isinstance(host, str) or not _HOSTNAME.match(host):
            raise Problem((*path, "accept", i), f"invalid hostname {shown(host)}")
        accept.append(host.lower())
    targets = []
    for i, target in enumerate(sequence(spec.get("to"), (*path, "to"), allow_none=True)):
        targets.append(read_expose_to(ctx, target, (*path, "to", i), endpoints))
    return Expose(
        port=port,
        as_port=as_port,
        proto=proto,
        accept=tuple(accept),
        to=tuple(targets),
        http_options=read_http_options(ctx, spec.get("http_options"), (*path, "http_options")),
    )


def read_expose_to(
    ctx: ParseContext, value: object, path: Path, endpoints: dict[str, Endpoint]
) -> ExposeTo:
    spec = mapping(value, path)
    for key in spec:
        if key not in ("service", "global", "ip"):
            ctx.warn((*path, str(key)), f"unknown key {shown(str(key))} ignored")
    service = spec.get("service")
    if service is not None:
        service = ctx.raw((*path, "service"), service)
    global_ = boolean(spec.get("global", False), (*path, "global"))
    ip = spec.get("ip")
    if ip is not None:
        ip = ctx.raw((*path, "ip"), ip)
        if not global_:
            raise Problem(
                (*path, "ip"), "if an IP is declared the directive must be declared as global"
            )
        if ip not in endpoints:
            raise Problem((*path, "ip"), f"unknown endpoint {shown(ip)}")
    return ExposeTo(service=service, global_=global_, ip=ip)


def read_http_options(ctx: ParseContext, value: object, path: Path) -> HttpOptions:
    if value is None:
        return HttpOptions()
    spec = mapping(value, path)
    defaults = HttpOptions()

    def bounded(key: str, default: int, high: int) -> int:
        if spec.get(key) is None:
            return default
        return integer(spec[key], (*path, key), 0, high)

    cases = defaults.next_cases
    if spec.get("next_cases") is not None:
        cases = ctx.strings(spec["next_cases"], (*path, "next_cases"))
        for i, case in enumerate(cases):
            if case not in HTTP_NEXT_CASES:
                raise Problem((*path, "next_cases", i), f"invalid next case {shown(case)}")
        if "off" in cases and len(cases) > 1:
            raise Problem((*path, "next_cases"), "'off' must be the only next case")
    for key in spec:
        known = ("max_body_size", "read_timeout", "send_timeout", "next_tries")
        if key not in (*known, "next_timeout", "next_cases", "proxy_buffer_size"):
            ctx.warn((*path, str(key)), f"unknown key {shown(str(key))} ignored")
    if spec.get("proxy_buffer_size") is not None:
        integer(spec["proxy_buffer_size"], (*path, "proxy_buffer_size"), 0, 1_048_576)
    return HttpOptions(
        max_body_size=bounded("max_body_size", defaults.max_body_size, 104_857_600),
        read_timeout_ms=bounded("read_timeout", defaults.read_timeout_ms, 60_000),
        send_timeout_ms=bounded("send_timeout", defaults.send_timeout_ms, 60_000),
        next_tries=bounded("next_tries", defaults.next_tries, 2**31 - 1),
        next_timeout_ms=bounded("next_timeout", defaults.next_timeout_ms, 2**31 - 1),
        next_cases=tuple(cases),
    )


def read_mounts(ctx: ParseContext, value: object, path: Path) -> tuple[StorageMount, ...]:
    result = []
    seen: set[str] = set()
    for volume, spec in mapping(value, path, allow_none=True).items():
        vpath = (*path, str(volume))
        spec_map = mapping(spec, vpath, allow_none=True)
        mount = spec_map.get("mount")
        if mount is None:
            mount_text = ""
        else:
            mount_text = ctx.raw((*vpath, "mount"), mount)
            if not mount_text.startswith("/"):
                raise Problem((*vpath, "mount"), f"mount path {shown(mount_text)} is not absolute")
            if mount_text in seen:
                raise Problem((*vpath, "mount"), f"duplicated mount point {shown(mount_text)}")
            seen.add(mount_text)
        read_only = boolean(spec_map.get("readOnly", False), (*vpath, "readOnly"))
        result.append(StorageMount(str(volume), mount_text, read_only))
    return tuple(result)


def read_credentials(ctx: ParseContext, value: object, path: Path) -> Credentials | None:
    if value is None:
        return None
    spec = mapping(value, path)
    fields: dict[str, str] = {}
    for key in ("host", "username", "password"):
        if not spec.get(key):
            raise Problem((*path, key), f"credentials missing {key}")
        fields[key] = ctx.raw((*path, key), spec[key])
    if len(fields["password"]) < 6:
        raise Problem((*path, "password"), "credentials password is shorter than 6 characters")
    email = ctx.raw((*path, "email"), spec["email"]) if spec.get("email") else None
    return Credentials(email=email, **fields)


def read_permissions(ctx: ParseContext, params_value: object, path: Path) -> tuple[str, ...]:
    if params_value is None:
        return ()
    spec = mapping(params_value, (*path, "permissions"))
    read = ctx.strings(spec.get("read"), (*path, "permissions", "read"))
    for i, item in enumerate(read):
        if item not in PERMISSIONS:
            raise Problem((*path, "permissions", "read", i), f"invalid permission {shown(item)}")
    return read


def read_tee(ctx: ParseContext, value: object, path: Path) -> str | None:
    if value is None:
        return None
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
