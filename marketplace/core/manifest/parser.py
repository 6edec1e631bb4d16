"""Akash SDL text → Manifest: the entry point and the top level (version, sections in order).

Each section has its own module (services, compute, placement, deployment, extensions), all
reading through one ParseContext, which collects every problem it can go on past.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from types import MappingProxyType

from marketplace.core import units
from marketplace.core.limits import MAX_MANIFEST_BYTES, shown
from marketplace.core.manifest.compute import read_compute_profiles
from marketplace.core.manifest.context import ParseContext, Problem, dotted, mapping, text
from marketplace.core.manifest.deployment import build_groups, read_deployment
from marketplace.core.manifest.errors import ManifestError
from marketplace.core.manifest.extensions import read_job, read_reclamation
from marketplace.core.manifest.gang import gang_groups
from marketplace.core.manifest.model import Endpoint, Manifest
from marketplace.core.manifest.placement import read_placements
from marketplace.core.manifest.services import (
    check_endpoints_used,
    read_endpoints,
    read_services,
)
from marketplace.core.manifest.yaml_lines import duplicate_keys, load_yaml
from marketplace.core.resources import JobSettings, Need

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


def parse_manifest(data: str | bytes, source: str = "<manifest>") -> Manifest:
    """Parse and validate an Akash SDL. Raises ManifestError (one line each), nothing else."""
    try:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    except (UnicodeError, TypeError, ValueError) as exc:
        raise ManifestError(f"cannot read manifest: {exc}", source=source) from None
    if len(raw) > MAX_MANIFEST_BYTES:  # every caller's bound, so that `validate` says what the
        raise ManifestError(  # market would say, before any of it is decoded
            f"manifest too large: {len(raw):,} bytes; the limit is {MAX_MANIFEST_BYTES:,} (1 MiB)",
            source=source,
        )
    node, tree, lines = load_yaml(raw, source)
    ctx = ParseContext(node, source, lines)
    try:
        return read_manifest(ctx, tree, hashlib.sha256(raw).digest())
    except ManifestError:
        raise
    except Problem as problem:
        ctx.errors.append(problem)
        raise ctx.combined() from None
    except RecursionError:
        raise ManifestError("manifest is nested too deeply", source=source) from None
    except Exception as exc:  # a parser bug must still be one line, never a traceback
        raise ManifestError(
            f"internal parser error ({type(exc).__name__}: {exc})", source=source
        ) from None


def read_manifest(ctx: ParseContext, tree: object, sha: bytes) -> Manifest:
    """The whole SDL, section by section; raises the problems collected on the way."""
    if tree is None:
        raise Problem((), "empty manifest")
    if not isinstance(tree, dict):
        got = units.type_name(tree)
        raise Problem(
            (),
            f"expected a mapping (version, services, profiles, deployment) for the manifest, got {got}",
        )
    top = tree
    for key in top:
        if str(key) not in _TOP_KEYS:
            raise Problem((str(key),), f"unexpected field {shown(str(key))}")
    for node, path in duplicate_keys(ctx.root):
        raise ManifestError(
            f"mapping key {shown(path[-1])} already defined",
            path=dotted(path),
            line=ctx.lines.of(node.start_mark),
            source=ctx.source,
        )
    version = read_version(ctx, top)
    missing = [key for key in ("services", "profiles", "deployment") if key not in top]
    if missing:
        ctx.errors.extend(Problem((key,), f"{key} is required") for key in missing)
        raise ctx.combined()
    if "include" in top:
        raise Problem(("include",), "include is not supported; put everything in one file")
    endpoints = ctx.collect(read_endpoints, ctx, top) or {}
    services = read_services(ctx, top.get("services"), endpoints)
    profiles = mapping(top["profiles"], ("profiles",), what="a mapping", null_ok=False)
    ctx.unexpected(profiles, ("compute", "placement"), ("profiles",))
    for key in ("compute", "placement"):
        if key not in profiles:
            raise Problem(("profiles", key), f"profiles.{key} is required")
    compute = read_compute_profiles(ctx, profiles["compute"])
    placements = read_placements(ctx, profiles["placement"], version)
    deployments = read_deployment(ctx, top.get("deployment"), services, compute, placements)
    job = ctx.collect(read_job, ctx, top.get("gpumarket")) or JobSettings()
    reclamation = ctx.collect(read_reclamation, ctx, top)
    groups = build_groups(ctx, version, deployments, services, compute, placements)
    if reclamation is not None:  # every group's provider must give notice before reclaiming
        groups = tuple(
            replace(g, needs=tuple(sorted({*g.needs, Need.RECLAMATION.value}))) for g in groups
        )
    if job.gang is not None and groups:
        groups = ctx.collect(gang_groups, job.gang, groups) or groups
    check_endpoints_used(ctx, endpoints, services)
    if ctx.errors:
        raise ctx.combined()
    return Manifest(
        version=version,
        services=MappingProxyType({n: s for n, s in services.items() if s is not None}),
        groups=groups,
        job=job,
        warnings=tuple(ctx.warnings),
        sdl_sha256=sha,
        endpoints=tuple(Endpoint(name) for name in sorted(endpoints)),
        deployments=tuple(deployments),
        reclamation_min_window_ms=reclamation,
        unmatchable=tuple(ctx.unmatchable),
    )


# The grammars this parser reads. Akash's schema lists "2.0" and "2.1"; its Go parser also
# reads "2.2" (multi-denom pricing, chain-sdk go/sdl/v2_2.go), and so do we. Anything else is
# refused: a version is never read as the nearest known one.
VERSIONS = ("2.0", "2.1", "2.2")


def read_version(ctx: ParseContext, top: dict[object, object]) -> str:
    if "version" not in top or top["version"] is None:
        raise Problem(("version",), "no version found")
    written = top["version"]
    version = ctx.raw(("version",), written)
    allowed = ", ".join(f'"{v}"' for v in VERSIONS[:-1]) + f' or "{VERSIONS[-1]}"'
    if version not in VERSIONS:
        raise Problem(("version",), f"unsupported version {shown(version)} (use {allowed})")
    text(written, ("version",), f'a quoted version ("{version}")')
    return version
