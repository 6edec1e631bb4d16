"""What happens to each SDL field the parser accepts, once a provider runs the lease.

Every field is honoured, or declined by a provider that lacks what it needs (the provider says
why, and `gpumarket why` shows it), or refused by the parser, or, where gpumarket falls short of
Akash, marked `degraded` with what differs. Nothing is dropped without a word:
`gpumarket manifest validate` lists, for one manifest, every field it uses that a typical
provider may decline or runs differently (`notes`). tests/core/test_manifest_support.py holds
this table to the model: a new field in the manifest model without an entry here fails it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from marketplace.core.errors import InvalidArgument
from marketplace.core.manifest.model import Expose, Manifest, Service
from marketplace.core.resources import Need, ResourceUnit


class Support(StrEnum):
    HONOURED = "honoured"
    DECLINED = "declined"  # by a provider that lacks `note`, with that reason
    REFUSED = "refused"  # by the parser, before anything is deployed
    DEGRADED = "degraded"  # runs, but not as Akash runs it: `note` says how


@dataclass(frozen=True)
class FieldSupport:
    path: str  # SDL path: `*` any name, `[]` any item
    model: tuple[str, ...]  # the model fields it fills ("Service.env"); () if none
    support: Support
    note: str = ""  # DECLINED: what a provider must have; DEGRADED: what differs; else why
    used: Callable[[Manifest], bool] | None = None  # does this manifest use it (for notes)

    @property
    def verdict(self) -> str:
        if self.support is Support.DECLINED:
            return f"declined by providers that lack {self.note}"
        if self.support is Support.DEGRADED:
            return f"not honoured as written: {self.note}"
        return str(self.support)


@dataclass(frozen=True)
class Note:
    """One field of one manifest that a typical provider may decline or run differently."""

    path: str
    support: Support
    message: str


def _services(manifest: Manifest) -> Iterator[Service]:
    return iter(manifest.services.values())


def _units(manifest: Manifest) -> Iterator[ResourceUnit]:
    return (unit for group in manifest.groups for unit in group.resources)


def _any_expose(manifest: Manifest, test: Callable[[Expose], bool]) -> bool:
    return any(test(e) for s in _services(manifest) for e in s.expose)


def _class_used(manifest: Manifest) -> bool:
    return any(v.storage_class for u in _units(manifest) for v in u.storage)


def _gpu_used(manifest: Manifest) -> bool:
    return any(u.gpu.units for u in _units(manifest))


_H, _D, _R, _G = Support.HONOURED, Support.DECLINED, Support.REFUSED, Support.DEGRADED
SVC = "services.*"
EXP = "services.*.expose[]"
RES = "profiles.compute.*.resources"
PLACE = "profiles.placement.*"

TABLE: tuple[FieldSupport, ...] = (
    FieldSupport(
        "(the file)",
        ("Manifest.sdl_sha256", "Manifest.warnings"),
        _H,
        "its sha256 names the deployment; warnings are shown before deploy",
    ),
    FieldSupport("version", ("Manifest.version",), _H, '"2.0", "2.1", "2.2"; others refused'),
    FieldSupport("include", (), _R, "a manifest is one file"),
    FieldSupport("services.*", ("Manifest.services", "Service.name"), _H),
    FieldSupport(f"{SVC}.image", ("Service.image",), _H),
    FieldSupport(f"{SVC}.command", ("Service.command",), _H, "the container's entrypoint"),
    FieldSupport(f"{SVC}.args", ("Service.args",), _H),
    FieldSupport(f"{SVC}.env", ("Service.env",), _H),
    FieldSupport(
        f"{SVC}.credentials",
        (
            "Service.credentials",
            "Credentials.host",
            "Credentials.username",
            "Credentials.password",
            "Credentials.email",
        ),
        _H,
        "registry auth on pull, seen only by the winning provider",
    ),
    FieldSupport(f"{SVC}.expose", ("Service.expose", "Expose.to", "ResourceUnit.ports"), _H),
    FieldSupport(f"{SVC}.dependencies", (), _H, "a no-op, as Akash documents it"),
    FieldSupport(f"{EXP}.port", ("Expose.port",), _H),
    FieldSupport(f"{EXP}.as", ("Expose.as_port",), _H, "80 through the HTTP ingress"),
    FieldSupport(f"{EXP}.proto", ("Expose.proto",), _H, "UDP ports published as UDP"),
    FieldSupport(
        f"{EXP}.accept",
        ("Expose.accept",),
        _D,
        "an HTTP ingress ([ingress] listen) to route the hostnames (needs http-ingress)",
        lambda m: _any_expose(m, lambda e: bool(e.accept) and e.is_global),
    ),
    FieldSupport(f"{EXP}.to[].global", ("ExposeTo.global_",), _H, "only global ports publish"),
    FieldSupport(f"{EXP}.to[].service", ("ExposeTo.service",), _H, "one network per lease"),
    FieldSupport(
        f"{EXP}.to[].ip",
        ("ExposeTo.ip",),
        _D,
        "leased IP endpoints, which no gpumarket provider offers yet (needs leased-ip)",
        lambda m: _any_expose(m, lambda e: any(t.ip for t in e.to)),
    ),
    FieldSupport(
        f"{EXP}.http_options",
        (
            "Expose.http_options",
            "HttpOptions.max_body_size",
            "HttpOptions.read_timeout_ms",
            "HttpOptions.send_timeout_ms",
            "HttpOptions.next_tries",
            "HttpOptions.next_timeout_ms",
            "HttpOptions.next_cases",
        ),
        _H,
        "the provider's ingress applies them per request on the routed hosts, as Akash's does",
    ),
    FieldSupport(f"{SVC}.params.storage.*", ("Service.storage", "StorageMount.volume"), _H),
    FieldSupport(f"{SVC}.params.storage.*.mount", ("StorageMount.mount",), _H),
    FieldSupport(f"{SVC}.params.storage.*.readOnly", ("StorageMount.read_only",), _H),
    FieldSupport(
        f"{SVC}.params.permissions.read",
        ("Service.permissions",),
        _D,
        "access to the lease's logs from inside its containers, which no gpumarket provider "
        "offers yet (needs lease-log-access)",
        lambda m: any(s.permissions for s in _services(m)),
    ),
    FieldSupport(
        f"{SVC}.params.tee",
        ("Service.tee",),
        _D,
        "the placement attribute tee/type (a trusted execution environment)",
        lambda m: any(s.tee for s in _services(m)),
    ),
    FieldSupport(f"{RES}.cpu.units", ("ResourceUnit.cpu_millis",), _H),
    FieldSupport(
        f"{RES}.cpu.attributes.arch",
        (),
        _D,
        "that CPU architecture (amd64, arm64; needs cpu-arch/<arch>)",
        lambda m: any(n.startswith(Need.CPU_ARCH) for g in m.groups for n in g.needs),
    ),
    FieldSupport(f"{RES}.memory.size", ("ResourceUnit.memory_bytes",), _H),
    FieldSupport(f"{RES}.storage", ("ResourceUnit.storage",), _H),
    FieldSupport(f"{RES}.storage[].name", ("Volume.name",), _H),
    FieldSupport(f"{RES}.storage[].size", ("Volume.size_bytes",), _H),
    FieldSupport(f"{RES}.storage[].attributes.persistent", ("Volume.persistent",), _H),
    FieldSupport(
        f"{RES}.storage[].attributes.class",
        ("Volume.storage_class",),
        _D,
        "that storage class (e.g. beta3, ram) in their config",
        _class_used,
    ),
    FieldSupport(f"{RES}.gpu.units", ("GpuRequest.units", "ResourceUnit.gpu"), _H),
    FieldSupport(
        f"{RES}.gpu.attributes.vendor.nvidia[]",
        (
            "GpuRequest.options",
            "GpuOption.model",
            "GpuOption.ram_gib",
            "GpuOption.interface",
            "Manifest.unmatchable",
        ),
        _D,
        "a GPU of a listed model (ram, interface)",
        _gpu_used,
    ),
    FieldSupport(
        PLACE,
        (
            "Manifest.groups",
            "GroupSpec.name",
            "GroupSpec.requirements",
            "GroupSpec.resources",
            "GroupSpec.needs",
        ),
        _H,
        "one order, one provider, one lease per placement; the order names the provider "
        "features its fields need (GroupSpec.needs), so a provider lacking one declines",
    ),
    FieldSupport(
        f"{PLACE}.attributes",
        ("PlacementRequirements.attributes",),
        _D,
        "the attributes asked for",
        lambda m: any(g.requirements.attributes for g in m.groups),
    ),
    FieldSupport(
        f"{PLACE}.signedBy",
        ("PlacementRequirements.signed_by_all_of", "PlacementRequirements.signed_by_any_of"),
        _D,
        "attributes signed by the auditors named (or the local auditor a market maps them to)",
        lambda m: any(
            g.requirements.signed_by_all_of or g.requirements.signed_by_any_of for g in m.groups
        ),
    ),
    FieldSupport(
        f"{PLACE}.pricing",
        ("ResourceUnit.max_price_per_hour", "GroupSpec.denom"),
        _H,
        "a bid above it is never taken",
    ),
    FieldSupport(
        "deployment.*.*.profile",
        ("ServiceDeployment.profile", "ServiceDeployment.service", "ServiceDeployment.placement"),
        _H,
    ),
    FieldSupport("deployment.*.*.count", ("ServiceDeployment.count", "ResourceUnit.count"), _H),
    FieldSupport("deployment", ("Manifest.deployments", "ResourceUnit.services"), _H),
    FieldSupport(
        "endpoints.*.kind",
        ("Manifest.endpoints", "Endpoint.name", "Endpoint.kind"),
        _D,
        "leased IP endpoints (see expose to ip)",
        lambda m: bool(m.endpoints),
    ),
    FieldSupport(
        "reclamation.min_window",
        ("Manifest.reclamation_min_window_ms",),
        _D,
        "a reclamation window, which no gpumarket provider offers yet (needs reclamation-window)",
        lambda m: m.reclamation_min_window_ms is not None,
    ),
    FieldSupport("gpumarket", ("Manifest.job",), _H, "gpumarket's own optional settings"),
    FieldSupport("gpumarket.kind", ("JobSettings.kind",), _H),
    FieldSupport("gpumarket.max_runtime", ("JobSettings.max_runtime_ms",), _H),
    FieldSupport("gpumarket.restart", ("JobSettings.restart_policy",), _H),
    FieldSupport("gpumarket.checkpoint", ("JobSettings.checkpoint_uri",), _H),
    FieldSupport("gpumarket.gang", ("JobSettings.gang",), _H),
    FieldSupport("gpumarket.tier", ("JobSettings.tier",), _H),
    FieldSupport(
        "gpumarket.auction",
        (
            "JobSettings.auction",
            "AuctionSettings.bid_window_ms",
            "AuctionSettings.payment",
            "AuctionSettings.manual",
        ),
        _H,
    ),
    FieldSupport(
        "gpumarket.min_reliability",
        ("AuctionSettings.min_reliability",),
        _D,
        "the reliability asked for (the market keeps them out of the auction)",
        lambda m: m.job.auction.min_reliability > 0,
    ),
)


def notes(manifest: Manifest) -> tuple[Note, ...]:
    """The fields this manifest uses that a typical provider may decline or run differently."""
    return tuple(
        Note(entry.path, entry.support, entry.verdict)
        for entry in TABLE
        if entry.support in (Support.DECLINED, Support.DEGRADED)
        and entry.used is not None
        and entry.used(manifest)
    )


def refuse_unmatchable(manifest: Manifest, force_hint: str) -> None:
    """Refuse a manifest asking for a GPU no registry model can be (a typo such as a100-80gb):
    its order could never fill and would hold its escrow for nothing. `force_hint` says how to
    send it anyway (the CLI's --force, the API's force field)."""
    if not manifest.unmatchable:
        return
    more = len(manifest.unmatchable) - 1
    others = f" (and {more} more)" if more else ""
    raise InvalidArgument(
        f"{manifest.unmatchable[0]}{others}; no order is created, so no escrow is locked "
        f"({force_hint} to deploy it anyway)"
    )
