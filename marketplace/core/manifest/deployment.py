"""deployment: which service runs where, how many times, with which profile; then the groups
(one per placement: its resource units, requirements and price), checked against the limits."""

from __future__ import annotations

from marketplace.core import units
from marketplace.core.limits import MAX_GROUPS, MAX_PRICE_PER_HOUR, check_group_texts, shown
from marketplace.core.manifest.compute import Compute
from marketplace.core.manifest.context import (
    ParseContext,
    Problem,
    integer,
    mapping,
    market_bound,
    text,
)
from marketplace.core.manifest.limits import (
    CPU_MAX_MILLIS,
    GPU_MAX_UNITS,
    GROUP_FACTOR,
    MEMORY_MAX,
    PRICE_MAX,
    VOLUME_MAX,
)
from marketplace.core.manifest.model import Service, ServiceDeployment
from marketplace.core.manifest.placement import Placement
from marketplace.core.manifest.yaml_lines import Path
from marketplace.core.money import DENOMS, per_block_to_per_hour
from marketplace.core.resources import (
    GroupSpec,
    Need,
    PlacementRequirements,
    ResourceUnit,
    cpu_arch,
)


def read_deployment(
    ctx: ParseContext,
    value: object,
    services: dict[str, Service | None],
    compute: dict[str, Compute | None],
    placements: dict[str, Placement | None],
) -> list[ServiceDeployment]:
    result: list[ServiceDeployment] = []
    for service, spec in mapping(value, ("deployment",), null_ok=False).items():
        spath: Path = ("deployment", str(service))
        if str(service) not in services:
            ctx.errors.append(Problem(spath, f"no service profile named {shown(service)}"))
            continue
        for placement, entry in mapping(spec, spath, null_ok=False).items():
            epath = (*spath, str(placement))
            item = ctx.collect(
                read_deploy_entry,
                ctx,
                str(service),
                str(placement),
                entry,
                epath,
                compute,
                placements,
            )
            if item is not None:
                result.append(item)
    if not result and not ctx.errors:
        raise Problem(("deployment",), "nothing to deploy")
    deployed = {d.service for d in result}
    for name in services:
        if name not in deployed and not ctx.errors:
            ctx.warn(("services", name), f"service {shown(name)} is not deployed anywhere")
    return sorted(result, key=lambda d: (d.placement, d.service))


def read_deploy_entry(
    ctx: ParseContext,
    service: str,
    placement: str,
    value: object,
    path: Path,
    compute: dict[str, Compute | None],
    placements: dict[str, Placement | None],
) -> ServiceDeployment:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("profile", "count"), path)
    if spec.get("profile") is None:
        raise Problem((*path, "profile"), "profile is required")
    profile = text(spec["profile"], (*path, "profile"))
    if spec.get("count") is None:
        raise Problem((*path, "count"), "count is required")
    count = integer(spec["count"], (*path, "count"), 1, 2**31 - 1)
    if placement not in placements:
        raise Problem(path, f"no placement profile named {shown(placement)}")
    if profile not in compute:
        raise Problem(
            (*path, "profile"), f"{service}.{placement}: no compute profile named {shown(profile)}"
        )
    chosen = placements[placement]
    if chosen is not None and profile not in chosen.pricing:
        raise Problem(
            ("profiles", "placement", placement, "pricing"),
            f"no pricing for profile {shown(profile)}",
        )
    return ServiceDeployment(service, placement, profile, count)


def build_groups(
    ctx: ParseContext,
    version: str,
    deployments: list[ServiceDeployment],
    services: dict[str, Service | None],
    compute: dict[str, Compute | None],
    placements: dict[str, Placement | None],
) -> tuple[GroupSpec, ...]:
    for d in deployments:
        ctx.collect(check_mounts, ctx, version, d, services, compute)
    if ctx.errors:
        return ()
    denom = choose_denom(ctx, deployments, placements)
    names = sorted({d.placement for d in deployments})
    if len(names) > MAX_GROUPS:
        raise Problem(("deployment",), f"{len(names)} placement groups; the limit is {MAX_GROUPS}")
    groups = []
    for name in names:
        mine = [d for d in deployments if d.placement == name]
        group = ctx.collect(
            build_group, ctx, version, name, mine, services, compute, placements, denom
        )
        if group is not None:
            groups.append(group)
    return tuple(groups)


def choose_denom(
    ctx: ParseContext,
    deployments: list[ServiceDeployment],
    placements: dict[str, Placement | None],
) -> str:
    """The one denomination every group pays in (Akash: all groups share one): of those priced
    for every deployed profile, uact if offered (SDL 2.2 may offer several), else the legacy one."""
    common: set[str] | None = None
    for name in sorted({d.placement for d in deployments}):
        placement = placements[name]
        if placement is None:
            continue
        offered = set(DENOMS)
        for d in deployments:
            if d.placement == name:
                offered &= set(placement.pricing[d.profile])
        if not offered:
            path = ("profiles", "placement", name, "pricing")
            raise Problem(path, "inconsistent group denomination")
        common = offered if common is None else common & offered
    if common is None:
        return "uact"
    if not common:
        raise Problem(("profiles", "placement"), "inconsistent group denomination")
    denom = next(d for d in DENOMS if d in common)
    if denom != "uact":
        ctx.warn(("profiles", "placement"), f"{denom} is legacy (Akash now takes only uact)")
    return denom


def check_mounts(
    ctx: ParseContext,
    version: str,
    deployment: ServiceDeployment,
    services: dict[str, Service | None],
    compute: dict[str, Compute | None],
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
            raise Problem(
                (*spath, mount.volume),
                f"service {shown(service.name)} references to no-existing compute volume named "
                f"{shown(mount.volume)}",
            )
        if version != "2.0" and mount.read_only and volume.storage_class == "ram":
            raise Problem(
                (*spath, mount.volume, "readOnly"),
                'readOnly=true is not allowed for storage class "ram"',
            )
    for volume in profile.storage:
        if volume.persistent and not (volume.name in mounted and mounted[volume.name].mount):
            raise Problem(
                ("profiles", "compute", deployment.profile, "resources", "storage"),
                f"compute.storage.{volume.name} has persistent=true which requires "
                f"service.{service.name}.params.storage.{volume.name} to have mount",
            )


def build_group(
    ctx: ParseContext,
    version: str,
    name: str,
    mine: list[ServiceDeployment],
    services: dict[str, Service | None],
    compute: dict[str, Compute | None],
    placements: dict[str, Placement | None],
    denom: str,
) -> GroupSpec:
    placement = placements[name]
    path: Path = ("profiles", "placement", name)
    if placement is None:
        raise Problem(path, "placement profile is invalid")
    requirements = placement.requirements
    tee_types = {s.tee for d in mine if (s := services[d.service]) and s.tee}
    if len(tee_types) > 1:
        raise Problem(path, "conflicting tee types")
    if tee_types:
        tee = tee_types.pop()
        attributes = tuple(sorted((*requirements.attributes, ("tee/type", tee))))
        requirements = PlacementRequirements(
            attributes, requirements.signed_by_all_of, requirements.signed_by_any_of
        )
    resources = resource_units(ctx, version, mine, services, compute, placement, denom)
    needs = group_needs(mine, services, compute)
    group = GroupSpec(
        name=name, requirements=requirements, resources=resources, denom=denom, needs=needs
    )
    check_group_totals(ctx, group, placement, mine, path)
    # the market's own checks of a group (Market.create_deployment), so validate agrees with it
    market_bound(path, check_group_texts, group)
    if not 1 <= group.max_price_per_hour <= MAX_PRICE_PER_HOUR:
        raise Problem(
            (*path, "pricing"),
            f"group maximum price {group.max_price_per_hour:,} "
            f"per hour is outside 1..{MAX_PRICE_PER_HOUR:,} micro-units",
        )
    return group


def group_needs(
    mine: list[ServiceDeployment],
    services: dict[str, Service | None],
    compute: dict[str, Compute | None],
) -> tuple[str, ...]:
    """What a provider must offer to run these deployments beyond resources and attributes
    (support.TABLE's declined fields): leased IPs, an HTTP ingress for accept hostnames, lease
    log access, a CPU architecture."""
    needs: set[str] = set()
    for d in mine:
        service, profile = services[d.service], compute[d.profile]
        if profile is not None and profile.arch:
            needs.add(f"{Need.CPU_ARCH}{cpu_arch(profile.arch)}")
        if service is None:
            continue
        exposes = service.expose
        if any(t.ip for e in exposes for t in e.to):
            needs.add(Need.LEASED_IP.value)
        if any(e.accept and e.is_global for e in exposes):
            needs.add(Need.HTTP_INGRESS.value)
        if service.permissions:
            needs.add(Need.LOG_ACCESS.value)
    return tuple(sorted(needs))


def resource_units(
    ctx: ParseContext,
    version: str,
    mine: list[ServiceDeployment],
    services: dict[str, Service | None],
    compute: dict[str, Compute | None],
    placement: Placement,
    denom: str,
) -> tuple[ResourceUnit, ...]:
    # v2.0: one unit per service; v2.1 and v2.2: services sharing a compute profile share a unit.
    buckets: dict[str, list[ServiceDeployment]] = {}
    for d in mine:
        key = d.profile if version != "2.0" else d.service
        buckets.setdefault(key, []).append(d)
    result = []
    for bucket in buckets.values():
        profile = compute[bucket[0].profile]
        assert profile is not None  # groups() only runs without errors
        ports = sorted({p for d in bucket for p in _ports(services[d.service])})
        amount = placement.pricing[bucket[0].profile][denom]
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
                raise Problem(
                    ("services", d.service, "params", "tee"), "tee cpu-gpu needs GPU units"
                )
    return tuple(result)


def check_group_totals(
    ctx: ParseContext,
    group: GroupSpec,
    placement: Placement,
    mine: list[ServiceDeployment],
    path: Path,
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
            raise Problem(
                path,
                f"group {shown(group.name)} asks for {fmt(total)} {label} in total; "
                f"the most one group may ask for is {fmt(per_unit * GROUP_FACTOR)}",
            )
    price = sum(placement.pricing[d.profile][group.denom] * d.count for d in mine)
    if price > PRICE_MAX * GROUP_FACTOR:
        raise Problem((*path, "pricing"), f"group price {price} is over the maximum")


def _ports(service: Service | None) -> tuple[int, ...]:
    return service.global_ports if service else ()
