"""profiles.compute: CPU, memory, storage volumes and GPUs (models checked against the registry)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketplace.core import gpus, units
from marketplace.core.limits import clipped, shown
from marketplace.core.manifest.context import (
    ParseContext,
    Problem,
    boolean,
    field,
    mapping,
    quantity,
    sequence,
    text,
)
from marketplace.core.manifest.limits import (
    ATTRIBUTE_KEY,
    CPU_MAX_MILLIS,
    CPU_MIN_MILLIS,
    GPU_MAX_UNITS,
    MEMORY_MAX,
    MEMORY_MIN,
    VOLUME_MAX,
    VOLUME_MIN,
)
from marketplace.core.manifest.yaml_lines import Path
from marketplace.core.resources import GpuOption, GpuRequest, Volume

_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")
_ARCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
STORAGE_CLASSES = ("default", "beta1", "beta2", "beta3", "ram")


@dataclass
class Compute:
    """A compute profile, read: what each replica placed with it gets."""

    cpu_millis: int
    memory_bytes: int
    storage: tuple[Volume, ...]
    gpu: GpuRequest
    arch: str | None = None  # cpu.attributes.arch: the CPU architecture each replica needs


def read_compute_profiles(ctx: ParseContext, value: object) -> dict[str, Compute | None]:
    path: Path = ("profiles", "compute")
    result: dict[str, Compute | None] = {}
    for name, spec in mapping(value, path, null_ok=False).items():
        ppath = (*path, str(name))
        result[str(name)] = ctx.collect(read_compute, ctx, spec, ppath)
    return result


def read_compute(ctx: ParseContext, value: object, path: Path) -> Compute:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("resources",), path)
    if "resources" not in spec:
        raise Problem((*path, "resources"), "resources is required")
    rpath = (*path, "resources")
    res = mapping(spec["resources"], rpath, null_ok=False)
    ctx.unexpected(res, ("cpu", "memory", "storage", "gpu"), rpath)
    if "storage" not in res:
        raise Problem((*rpath, "storage"), "storage is required (the container's disk)")
    return Compute(
        cpu_millis=read_cpu(ctx, res.get("cpu"), (*rpath, "cpu")),
        memory_bytes=read_memory(ctx, res.get("memory"), (*rpath, "memory")),
        storage=read_storage(ctx, res["storage"], (*rpath, "storage")),
        gpu=read_gpu(ctx, res, rpath),
        arch=read_arch(res.get("cpu")),
    )


def read_arch(cpu: object) -> str | None:
    """cpu.attributes.arch (read_cpu has checked it), as GroupSpec.needs carries it."""
    attrs = cpu.get("attributes") if isinstance(cpu, dict) else None
    arch = attrs.get("arch") if isinstance(attrs, dict) else None
    return str(arch) if arch is not None else None


def read_cpu(ctx: ParseContext, value: object, path: Path) -> int:
    spec = mapping(value, path, what="cpu")
    ctx.unexpected(spec, ("units", "attributes"), path)
    if spec.get("units") is None:
        raise Problem((*path, "units"), "cpu units are required")
    millis = quantity(
        units.parse_cpu, as_written(ctx, spec["units"], (*path, "units")), (*path, "units")
    )
    if not CPU_MIN_MILLIS <= millis <= CPU_MAX_MILLIS:
        raise Problem(
            (*path, "units"),
            f"invalid unit CPU: {units.format_cpu(millis)} is outside 10m..384",
        )
    attrs = field(spec, "attributes", path)
    for key in attrs:
        if key != "arch":
            raise Problem(
                (*path, "attributes", str(key)), f"unsupported cpu attribute {shown(key)}"
            )
    if "arch" in attrs:  # it becomes a need every provider is shown: a name, not any value
        apath = (*path, "attributes", "arch")
        arch = text(attrs["arch"], apath, "an architecture name (amd64, arm64)")
        if not _ARCH.fullmatch(arch):
            raise Problem(apath, f"invalid CPU architecture {shown(arch)} (e.g. amd64, arm64)")
    return millis


def as_written(ctx: ParseContext, value: object, path: Path) -> object:
    """A number as the file writes it: Akash reads CPU and GPU units from the text (ParseFloat,
    ParseUint), so `010` is 10 and `0x10` or `1_0` no number, where YAML's integer rules
    would read 8, 16 and 10."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ctx.raw(path, value)
    return value


def read_memory(ctx: ParseContext, value: object, path: Path) -> int:
    spec = mapping(value, path, what="memory")
    ctx.unexpected(spec, ("size",), path)
    if spec.get("size") is None:
        raise Problem((*path, "size"), "memory size is required")
    size = quantity(units.parse_size, text(spec["size"], (*path, "size")), (*path, "size"))
    if not MEMORY_MIN <= size <= MEMORY_MAX:
        raise Problem(
            (*path, "size"),
            f"invalid unit memory: {units.format_size(size)} is outside 1Mi..2Ti",
        )
    return size


def read_storage(ctx: ParseContext, value: object, path: Path) -> tuple[Volume, ...]:
    if isinstance(value, dict):
        entries: list[tuple[Path, object]] = [(path, value)]
    else:
        items = sequence(value, path, what="a storage mapping or a list of them")
        entries = [((*path, i), item) for i, item in enumerate(items)]
    volumes: list[Volume] = []
    for vpath, item in entries:
        volume = read_volume(ctx, item, vpath)
        if any(v.name == volume.name for v in volumes):
            raise Problem(vpath, f"duplicated volume name {shown(volume.name)}")
        volumes.append(volume)
    return tuple(volumes)


def read_volume(ctx: ParseContext, value: object, path: Path) -> Volume:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("name", "size", "attributes"), path)
    name = "default" if "name" not in spec else text(spec["name"], (*path, "name"))
    if not _VOLUME_NAME.fullmatch(name):  # every provider is shown it, and mounts by it
        raise Problem(
            (*path, "name"), f"invalid volume name {shown(name)} (1-63 letters, digits, - _ .)"
        )
    if spec.get("size") is None:
        raise Problem((*path, "size"), "storage size is required")
    size = quantity(units.parse_size, text(spec["size"], (*path, "size")), (*path, "size"))
    if not VOLUME_MIN <= size <= VOLUME_MAX:
        raise Problem(
            (*path, "size"),
            f"invalid unit storage: {units.format_size(size)} is outside 5Mi..32Ti",
        )
    apath = (*path, "attributes")
    attrs = field(spec, "attributes", path)
    for key in attrs:
        if key not in ("persistent", "class"):
            raise Problem((*apath, str(key)), f"unsupported storage attribute {shown(key)}")
    if attrs:
        check_storage_attributes(attrs, apath)
    persistent = boolean(attrs.get("persistent", False), (*apath, "persistent"))
    storage_class = attrs.get("class")
    if storage_class is not None:
        storage_class = text(storage_class, (*apath, "class"))
        if storage_class not in STORAGE_CLASSES:
            raise Problem(
                (*apath, "class"),
                f"invalid value for attribute class {shown(storage_class)} "
                f"(one of {', '.join(STORAGE_CLASSES)})",
            )
        if storage_class == "ram" and persistent:
            raise Problem((*apath, "persistent"), "ram storage class cannot be persistent")
        if storage_class != "ram" and not persistent:
            raise Problem((*apath, "class"), "ephemeral storage should not set attribute class")
    elif persistent:
        storage_class = "default"
    return Volume(name=name, size_bytes=size, persistent=persistent, storage_class=storage_class)


def check_storage_attributes(attrs: dict[object, object], path: Path) -> None:
    """Akash's schema: given attributes name both class and persistent, and a class other than
    ram is persistent: true (a ram volume is never persistent; that is checked with the class)."""
    for key in ("class", "persistent"):
        if key not in attrs:
            hint = "persistent: false" if attrs.get("class") == "ram" else "class: beta3"
            raise Problem((*path, key), f"storage attributes need {key} too (e.g. {hint})")
    text(attrs["class"], (*path, "class"))
    persistent = attrs["persistent"]
    if isinstance(persistent, dict | list) or persistent is None:
        raise Problem(
            (*path, "persistent"), f"expected true or false, got {units.type_name(persistent)}"
        )
    if attrs["class"] != "ram" and persistent not in (True, "true"):
        boolean(persistent, (*path, "persistent"))  # a word that is no boolean says so first
        raise Problem((*path, "class"), "ephemeral storage should not set attribute class")


def read_gpu(ctx: ParseContext, resources: dict[object, object], parent: Path) -> GpuRequest:
    if "gpu" not in resources:
        return GpuRequest()
    path = (*parent, "gpu")
    spec = mapping(resources["gpu"], path, what="a mapping for gpu", null_ok=False)
    for key in spec:
        if key not in ("units", "attributes"):
            raise Problem(
                (*path, str(key)), f"unsupported field ({clipped(str(key))}) for GPU resource"
            )
    count = gpu_units(as_written(ctx, spec.get("units", 0), (*path, "units")), (*path, "units"))
    attrs = spec.get("attributes")
    if count == 0:
        if "attributes" in spec:
            raise Problem((*path, "attributes"), "attributes cannot be present if units == 0")
        return GpuRequest()
    if count > GPU_MAX_UNITS:
        raise Problem((*path, "units"), f"invalid unit GPU: {count} is outside 0..24")
    if "attributes" not in spec:
        raise Problem((*path, "attributes"), "GPU attributes must be present if units > 0")
    return GpuRequest(units=count, options=read_gpu_options(ctx, attrs, (*path, "attributes")))


def read_gpu_options(ctx: ParseContext, value: object, path: Path) -> tuple[GpuOption, ...]:
    attrs = mapping(value, path, null_ok=False)
    for key in attrs:
        if key != "vendor":
            raise Problem(
                (*path, str(key)), f"unsupported attribute ({clipped(str(key))}) for GPU resource"
            )
    vendors = field(attrs, "vendor", path)
    if not vendors:
        raise Problem((*path, "vendor"), "invalid GPU attributes. at least one vendor must be set")
    options: list[GpuOption] = []
    for vendor, models in vendors.items():
        vpath = (*path, "vendor", str(vendor))
        if vendor != "nvidia":
            raise Problem(vpath, f"unsupported GPU vendor {shown(vendor)} (only nvidia)")
        entries = sequence(models, vpath, allow_none=True)
        if not entries:
            options.append(GpuOption("*"))
        for i, entry in enumerate(entries):
            option = read_gpu_option(ctx, entry, (*vpath, i))
            if option in options:
                raise Problem((*vpath, i), "attributes cannot have duplicate keys")
            options.append(option)
    return tuple(options)


def read_gpu_option(ctx: ParseContext, value: object, path: Path) -> GpuOption:
    spec = mapping(value, path, null_ok=False)
    ctx.unexpected(spec, ("model", "ram", "interface"), path)
    if spec.get("model") is None:
        raise Problem((*path, "model"), "GPU model is required (or leave the list empty)")
    written = text(spec["model"], (*path, "model")).strip()
    model = written.lower()
    if not model or not ATTRIBUTE_KEY.fullmatch(f"m/{model}"):
        raise Problem((*path, "model"), f"invalid GPU model {shown(written)}")
    ram = None
    if "ram" in spec:
        ram = quantity(units.parse_gpu_ram, text(spec["ram"], (*path, "ram")), (*path, "ram"))
    interface = None
    if "interface" in spec:
        interface = text(spec["interface"], (*path, "interface"))
        if interface not in ("pcie", "sxm"):
            raise Problem(
                (*path, "interface"), f'invalid GPU interface {interface}. expected "pcie|sxm"'
            )
    if model != "*":
        check_model(ctx, written, model, ram, interface, (*path, "model"))
    return GpuOption(model=model, ram_gib=ram, interface=interface)


def check_model(
    ctx: ParseContext, written: str, model: str, ram: int | None, interface: str | None, path: Path
) -> None:
    if not gpus.is_known(model):
        hint = gpus.suggestions(written)
        mean = f"; did you mean {' or '.join(hint)}?" if hint else ""
        ctx.cannot_match(
            path, f"unknown GPU model {shown(written)}{mean} (no provider will match it)"
        )
        return
    if written != model:
        ctx.warn(path, f"GPU model {shown(written)} read as {shown(model)}")
    if not any(
        (ram is None or v.ram_gib == ram) and (interface is None or v.interface == interface)
        for v in gpus.variants(model)
    ):
        known = ", ".join(f"{v.ram_gib}Gi {v.interface}" for v in gpus.variants(model))
        ctx.cannot_match(path, f"no known {model} has that ram/interface (known: {known})")


def gpu_units(value: object, path: Path) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,12}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem(path, f"GPU units must be a whole number, got {shown(value)}")
    if value < 0:
        raise Problem(path, "invalid: negative value not allowed")
    if value > 10**9:
        raise Problem(path, f"invalid unit GPU: {shown(value)} is outside 0..24")
    return value
