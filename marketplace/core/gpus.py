"""The canonical GPU registry: one name per model, shared by manifests, NVML and matching.

Built from Akash's own registry (data/gpus.json, a copy of akash-network/provider-configs
devices/pcie/gpus.json @ 2d04f4fe, Apache-2.0), so a model is called what Akash calls it
("h100", "a100", "rtx4090"), plus the few data-centre models that file lacks (EXTRA_VARIANTS).

A variant is (model, VRAM in GiB, interface). Interfaces are normalised to "sxm" or "pcie":
Akash's registry says "SXM5"/"SXM4"/"PCIe", its SDL says "sxm"/"pcie".

`from_nvml` maps the device names NVML reports ("NVIDIA H100 80GB HBM3",
"NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090") onto the same variants, so a provider's
inventory and a tenant's manifest speak one vocabulary.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from marketplace.core.resources import GpuOption

VENDOR = "nvidia"
CAPABILITY_PREFIX = "capabilities/gpu/vendor/nvidia/model/"

# Models Akash's gpus.json does not list (yet), with their public VRAM and form factor.
# VRAM is the marketed size in GiB-ish units, the way Akash writes it (H200: 141Gi).
EXTRA_VARIANTS: tuple[tuple[str, int, str], ...] = (
    ("l40s", 48, "pcie"),
    ("l40", 48, "pcie"),
    ("l4", 24, "pcie"),
    ("a10", 24, "pcie"),
    ("a10g", 24, "pcie"),  # AWS g5 instances
    ("a30", 24, "pcie"),
    ("a16", 16, "pcie"),
    ("a2", 16, "pcie"),
    ("h100nvl", 94, "pcie"),
    ("b200", 180, "sxm"),
    ("gh200", 96, "sxm"),
    ("rtxa4000", 16, "pcie"),
    ("rtxa5000", 24, "pcie"),
    ("rtx6000ada", 48, "pcie"),
    ("k80", 12, "pcie"),
)

# NVML names whose words do not spell the Akash model name. Checked before the generic rule.
_NVML_ALIASES: dict[str, str] = {
    "rtx pro 6000 blackwell workstation edition": "pro6000we",
    "rtx pro 6000 blackwell server edition": "pro6000se",
    "rtx pro 6000 blackwell max-q workstation edition": "pro6000mq",
    "rtx 4000 sff ada generation": "rtx4000sada",
    "rtx 4000 ada generation": "rtx4000ada",
    "rtx 6000 ada generation": "rtx6000ada",
    "rtx 2000 ada generation": "rtx2000eada",
    "a100-sxm-64gb": "a100",
}
_NOISE_WORDS = {"nvidia", "geforce", "tesla", "quadro", "graphics", "generation", "gpu"}
_MEMORY_WORD = re.compile(r"^(\d+)gb$")
_INTERFACE_WORD = re.compile(r"^(sxm\d*|pcie)$")
_HBM_WORD = re.compile(r"^hbm\d*e?$")
# NVML reports usable VRAM, a little under the marketed size (H100: 81559 MiB for "80GB",
# H200: 143771 MiB for "141GB"; GDDR cards with ECC on lose ~6%: T4 15360 MiB, L40S 46068 MiB),
# so a reading within this fraction of a known size of that model is that size.
_VRAM_TOLERANCE = 0.08


def normalize_interface(interface: str | None) -> str | None:
    """'SXM5' → 'sxm', 'PCIe' → 'pcie'; None stays None."""
    if interface is None:
        return None
    lowered = interface.strip().lower()
    return "sxm" if lowered.startswith("sxm") else lowered


@dataclass(frozen=True, order=True)
class GpuVariant:
    """One concrete kind of GPU: canonical model, VRAM in GiB, interface ("sxm" | "pcie")."""

    model: str
    ram_gib: int
    interface: str

    @property
    def label(self) -> str:
        """'h100 80Gi sxm', for people."""
        return f"{self.model} {self.ram_gib}Gi {self.interface}"

    @property
    def attribute_keys(self) -> tuple[str, ...]:
        """Akash provider capability keys this variant satisfies (each with value "true")."""
        base = CAPABILITY_PREFIX + self.model
        ram = f"{base}/ram/{self.ram_gib}Gi"
        return (
            base,
            ram,
            f"{ram}/interface/{self.interface}",
            f"{base}/interface/{self.interface}",
        )

    def matches(self, option: GpuOption) -> bool:
        """Akash's rule: model equal or '*', ram equal if given, interface equal if given."""
        if option.model != "*" and option.model != self.model:
            return False
        if option.ram_gib is not None and option.ram_gib != self.ram_gib:
            return False
        wanted = normalize_interface(option.interface)
        return wanted is None or wanted == normalize_interface(self.interface)


@cache
def _registry() -> dict[str, tuple[GpuVariant, ...]]:
    """model → its variants, sorted; loaded once from the packaged Akash registry."""
    text = resources.files("marketplace.core").joinpath("data/gpus.json").read_text("utf-8")
    found: set[GpuVariant] = set()
    for vendor in json.loads(text).values():
        if vendor.get("name") != VENDOR:
            continue  # the SDL only speaks nvidia; AMD entries would never match
        for device in vendor["devices"].values():
            ram = int(device["memory_size"].removesuffix("Gi"))
            interface = normalize_interface(device["interface"]) or "pcie"
            found.add(GpuVariant(device["name"], ram, interface))
    found.update(GpuVariant(*extra) for extra in EXTRA_VARIANTS)
    registry: dict[str, list[GpuVariant]] = {}
    for variant in sorted(found):
        registry.setdefault(variant.model, []).append(variant)
    return {model: tuple(items) for model, items in registry.items()}


def models() -> list[str]:
    """Every canonical model name, sorted."""
    return sorted(_registry())


def is_known(model: str) -> bool:
    return model in _registry()


def variants(model: str) -> list[GpuVariant]:
    """The known variants of a model ([] if unknown), sorted by VRAM then interface."""
    return list(_registry().get(model, ()))


def closest(name: str, n: int = 3) -> list[str]:
    """Known models whose names are nearest to `name` (difflib), best first."""
    return difflib.get_close_matches(name.lower(), models(), n=n, cutoff=0.5)


def suggestions(name: str, n: int = 3) -> list[str]:
    """What a tenant probably meant by an unknown model: 'a100-80gb' → ['a100 (ram 80Gi)']."""
    parsed = _parse_name(name)
    if parsed is not None and is_known(parsed[0]) and parsed[0] != name:
        model, ram, _ = parsed
        return [f"{model} (ram {ram}Gi)" if ram else model]
    return closest(name, n)


def _parse_name(name: str) -> tuple[str, int | None, str | None] | None:
    """Split a device name into (model key, VRAM GB from the name, interface from the name)."""
    lowered = name.strip().lower().removeprefix("nvidia ")
    if lowered in _NVML_ALIASES:
        return _NVML_ALIASES[lowered], _memory_in(lowered), _interface_in(lowered)
    words = [w for w in re.split(r"[\s_-]+", lowered) if w and w not in _NOISE_WORDS]
    ram = interface = None
    kept: list[str] = []
    for word in words:
        if m := _MEMORY_WORD.match(word):
            ram = int(m.group(1))
        elif _INTERFACE_WORD.match(word):
            interface = normalize_interface(word)
        elif _HBM_WORD.match(word):
            interface = interface or "sxm"  # "H100 80GB HBM3" is the SXM part; PCIe says PCIe
        elif word == "super":
            kept.append("s")
        else:
            kept.append(word)
    model = "".join(kept)
    if not model or not re.fullmatch(r"[a-z0-9.]+", model):
        return None
    return model, ram, interface


def _memory_in(text: str) -> int | None:
    match = re.search(r"(\d+)gb", text)
    return int(match.group(1)) if match else None


def _interface_in(text: str) -> str | None:
    match = re.search(r"sxm\d*|pcie", text)
    return normalize_interface(match.group(0)) if match else None


def _pick_ram(known: list[GpuVariant], name_gb: int | None, memory_mib: int | None) -> int | None:
    """VRAM in GiB: the known size nearest the NVML reading, else the name's, else the only one."""
    sizes = sorted({v.ram_gib for v in known})
    if memory_mib is not None and memory_mib > 0:
        gib = memory_mib / 1024
        near = min(sizes, key=lambda s: abs(s - gib), default=None)
        if near is not None and abs(near - gib) <= near * _VRAM_TOLERANCE:
            return near
        return round(gib)
    if name_gb is not None:
        return name_gb
    return sizes[0] if sizes else None  # ambiguous: the smallest, so we never over-promise


def from_nvml(name: str, memory_mib: int | None = None) -> GpuVariant | None:
    """An NVML device name (and total memory in MiB) as a canonical variant.

    "NVIDIA H100 80GB HBM3", 81559 → GpuVariant("h100", 80, "sxm"). A name we cannot read at all
    (empty, a MIG slice) gives None; a readable but unknown model keeps its derived name, so a
    new card can still be offered (is_known() tells the caller it is not in the registry).
    """
    if not isinstance(name, str) or name.strip().lower().startswith("mig "):
        return None
    parsed = _parse_name(name)
    if parsed is None:
        return None
    model, name_gb, name_interface = parsed
    known = variants(model)
    ram = _pick_ram(known, name_gb, memory_mib)
    if ram is None:
        return None
    same_ram = [v for v in known if v.ram_gib == ram]
    interfaces = sorted({v.interface for v in same_ram or known})
    if name_interface is not None:
        interface = name_interface
    elif len(interfaces) == 1:
        interface = interfaces[0]
    else:
        interface = "pcie"  # SXM parts say so (SXM4/HBM3) in their NVML names
    return GpuVariant(model, ram, interface)
