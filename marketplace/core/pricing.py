"""How a provider prices a group it can serve: pure, exact, integer micro-units per hour.

Two strategies, as in Akash's bid engine (bidengine/pricing.go, shellscript.go):

* `ScalePricing`: a price per GPU-hour by model (the term Akash's `scale` lacks, which pushes every
  GPU provider there to a script), per CPU-hour, per GiB-hour of memory and of storage, plus a
  start fee; clamped to a floor and a ceiling. Sums are exact (fractions.Fraction, never float)
  and the total is rounded up once, in the provider's favour, to whole micro-units.
* a script: an operator's command reads the order as JSON on stdin and prints a price. Spawning it
  is the agent's job (provider_agent/pricing_script.py); the pure parts live here:
  `script_request` (what it reads) and `parse_script_price` (what it may print).

The price is for the whole group (all replicas), per hour: what PlaceBid carries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Protocol

from marketplace.core.gpus import GpuVariant
from marketplace.core.matching import Allocation
from marketplace.core.money import MICRO
from marketplace.core.resources import GroupSpec, ResourceUnit

GIB = 1 << 30
DEFAULT_GPU = "*"  # key of the GPU price used for models without their own


class PricingError(ValueError):
    """The pricing configuration or a script's answer is unusable; the message says why."""


class Pricing(Protocol):
    """A pricing strategy (Akash's BidPricingStrategy). It may block (a script): the agent's
    bidder calls it in a thread."""

    def price(self, group: GroupSpec, allocation: Allocation, tenant: str) -> int:
        """Micro-units per hour for hosting `tenant`'s `group` with the resources in
        `allocation`. Raises PricingError when it will not price it."""
        ...


def unit_variant(allocation: Allocation, i: int) -> GpuVariant | None:
    variants = allocation.unit_variants
    return variants[i] if i < len(variants) else None


def gpu_price_keys(v: GpuVariant) -> tuple[str, ...]:
    """Lookup order of the reference price script: model.ram.interface, model.ram, model, *."""
    return (
        f"{v.model}.{v.ram_gib}Gi.{v.interface}",
        f"{v.model}.{v.ram_gib}Gi",
        v.model,
        DEFAULT_GPU,
    )


@dataclass(frozen=True)
class ScalePricing:
    """Prices in micro-units per hour. `gpu_hour` maps "h100", "a100.80Gi", "a100.80Gi.sxm" or
    "*" (any other model) to a price per GPU-hour; a GPU model with no price is not served."""

    gpu_hour: tuple[tuple[str, int], ...] = ()
    cpu_hour: int = 0  # per CPU (1000 millicores)
    memory_gib_hour: int = 0
    storage_gib_hour: int = 0
    start_fee: int = 0  # added once to every bid's hourly price (image pull, setup)
    floor: int = 0  # the lowest hourly price this provider bids
    ceiling: int | None = None  # the highest; a higher computed price is capped here
    _gpu: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        named = {
            "cpu_hour": self.cpu_hour,
            "memory_gib_hour": self.memory_gib_hour,
            "storage_gib_hour": self.storage_gib_hour,
            "start_fee": self.start_fee,
            "floor": self.floor,
            **{f"gpu_hour.{k}": v for k, v in self.gpu_hour},
        }
        if self.ceiling is not None:
            named["ceiling"] = self.ceiling
        for name, value in named.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise PricingError(f"{name} must be whole micro-units, got {value!r}")
            if value < 0:
                raise PricingError(f"{name} must not be negative, got {value}")
        if not any(v for k, v in named.items() if k not in ("floor", "ceiling")):
            raise PricingError("every price is zero: set at least one of gpu_hour, cpu_hour, ...")
        if self.ceiling is not None and self.ceiling < self.floor:
            raise PricingError(f"ceiling {self.ceiling} is below floor {self.floor}")
        object.__setattr__(self, "_gpu", dict(self.gpu_hour))

    def gpu_price(self, variant: GpuVariant) -> int | None:
        """Price per hour of one GPU of this variant, or None when this provider sets none."""
        for key in gpu_price_keys(variant):
            if key in self._gpu:
                return self._gpu[key]
        return None

    def price(self, group: GroupSpec, allocation: Allocation, tenant: str = "") -> int:
        """The same for every tenant. Raises PricingError when a GPU model allocated has no
        price here."""
        total = Fraction(self.start_fee)
        for i, unit in enumerate(group.resources):
            total += self._replica_price(unit, unit_variant(allocation, i)) * unit.count
        price = _ceil(total)
        price = max(price, self.floor)
        return price if self.ceiling is None else min(price, self.ceiling)

    def _replica_price(self, unit: ResourceUnit, variant: GpuVariant | None) -> Fraction:
        total = Fraction(unit.cpu_millis * self.cpu_hour, 1000)
        total += Fraction(unit.memory_bytes * self.memory_gib_hour, GIB)
        storage = sum(v.size_bytes for v in unit.storage if v.storage_class != "ram")
        total += Fraction(storage * self.storage_gib_hour, GIB)
        if unit.gpu.units and variant is not None:
            per_gpu = self.gpu_price(variant)
            if per_gpu is None:
                raise PricingError(f"no price set for GPU {variant.label}")
            total += per_gpu * unit.gpu.units
        return total


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def check_price(group: GroupSpec, price: int) -> str | None:
    """Why `price` cannot be bid on `group` (None if it can)."""
    if price <= 0:
        return "price is zero"
    limit = group.max_price_per_hour
    if price > limit:  # every group has a maximum (MarketService refuses one of 0)
        return f"price {price} is above the order's maximum {limit} per hour"
    return None


# --- the script strategy's pure half ---------------------------------------------------------


def script_request(group: GroupSpec, allocation: Allocation, tenant: str) -> dict[str, Any]:
    """What a price script reads on stdin: Akash's shape, with the *allocated* GPU models (so a
    wildcard request arrives as the concrete model) and our per-hour micro-unit maximum."""
    resources = []
    for i, unit in enumerate(group.resources):
        variant = unit_variant(allocation, i)
        gpu_model = []
        if variant is not None and unit.gpu.units:
            gpu_model = [
                {
                    "model": variant.model,
                    "ram": f"{variant.ram_gib}Gi",
                    "interface": variant.interface,
                }
            ]
        resources.append(
            {
                "services": list(unit.services),
                "count": unit.count,
                "cpu": unit.cpu_millis,
                "memory": unit.memory_bytes,
                "storage": [
                    {"class": v.storage_class or "default", "size": v.size_bytes}
                    for v in unit.storage
                ],
                "gpu": {
                    "units": unit.gpu.units,
                    "models": gpu_model,
                },
                "endpoint_quantity": len(unit.ports),
            }
        )
    return {
        "tenant": tenant,
        "group": group.name,
        "resources": resources,
        "price": {"denom": group.denom, "max_per_hour": group.max_price_per_hour},
        "price_precision": 6,
    }


def script_input(group: GroupSpec, allocation: Allocation, tenant: str) -> bytes:
    return json.dumps(script_request(group, allocation, tenant), sort_keys=True).encode()


_PRICE_RE = re.compile(r"^\d+(\.\d+)?u?$")


def parse_script_price(stdout: str) -> int:
    """A script's answer: its last non-empty line, "2.5" (units per hour) or "2500000u" (micro).
    Raises PricingError for anything else (empty, negative, words, more than 6 decimals)."""
    lines = [line.strip() for line in stdout.strip().splitlines() if line.strip()]
    if not lines:
        raise PricingError("price script printed nothing")
    text = lines[-1]
    if not _PRICE_RE.match(text):
        raise PricingError(
            f"price script printed {text[:40]!r}, not a price such as 2.5 or 2500000u"
        )
    if text.endswith("u"):
        return int(text[:-1])
    try:
        amount = Decimal(text) * MICRO
    except InvalidOperation as exc:  # pragma: no cover - the regex already checked
        raise PricingError(f"price script printed {text!r}") from exc
    if amount != amount.to_integral_value():
        raise PricingError(f"price script printed {text!r}: finer than a micro-unit")
    return int(amount)
