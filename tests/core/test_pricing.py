"""Pricing strategies: exact integer micro-units, validated scales, script input/output."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.core.gpus import GpuVariant
from marketplace.core.matching import Allocation, Capacity, GpuDevice, allocate
from marketplace.core.pricing import (
    PricingError,
    ScalePricing,
    check_price,
    parse_script_price,
    script_input,
)
from marketplace.core.resources import (
    GpuOption,
    GpuRequest,
    GroupSpec,
    PlacementRequirements,
    ResourceUnit,
    Volume,
)

GIB = 1 << 30
H100 = GpuVariant("h100", 80, "sxm")
A100 = GpuVariant("a100", 40, "pcie")


def group(gpus: int = 1, count: int = 1, model: str = "h100", max_price: int = 0) -> GroupSpec:
    unit = ResourceUnit(
        services=("job",),
        count=count,
        cpu_millis=4000,
        memory_bytes=16 * GIB,
        storage=(Volume("data", 100 * GIB),),
        gpu=GpuRequest(gpus, (GpuOption(model),) if gpus else ()),
        max_price_per_hour=max_price,
    )
    return GroupSpec("g", PlacementRequirements(), (unit,))


def alloc(g: GroupSpec, devices: list[GpuVariant]) -> Allocation:
    free = Capacity(
        64_000,
        512 * GIB,
        4096 * GIB,
        tuple(GpuDevice(f"GPU-{i}", v) for i, v in enumerate(devices)),
    )
    result = allocate(g, free)
    assert isinstance(result, Allocation), result
    return result


PRICES = ScalePricing(
    gpu_hour=(("h100", 2_500_000), ("a100.40Gi", 1_000_000)),
    cpu_hour=10_000,
    memory_gib_hour=5_000,
    storage_gib_hour=100,
    start_fee=50_000,
)


def test_scale_price_is_the_exact_sum() -> None:
    g = group(gpus=2, count=2)
    price = PRICES.price(g, alloc(g, [H100] * 4))
    per_replica = 2 * 2_500_000 + 4 * 10_000 + 16 * 5_000 + 100 * 100
    assert price == 50_000 + 2 * per_replica


def test_gpu_price_lookup_falls_back_model_ram_interface_then_model_then_any() -> None:
    p = ScalePricing(gpu_hour=(("a100.40Gi.pcie", 7), ("a100", 5), ("*", 3)))
    assert p.gpu_price(A100) == 7
    assert p.gpu_price(GpuVariant("a100", 80, "sxm")) == 5
    assert p.gpu_price(H100) == 3
    assert ScalePricing(cpu_hour=1).gpu_price(H100) is None


def test_a_gpu_model_without_a_price_is_not_served() -> None:
    g = group(model="*")
    with pytest.raises(PricingError, match="no price set for GPU rtx4090"):
        ScalePricing(gpu_hour=(("h100", 1),)).price(
            g, alloc(g, [GpuVariant("rtx4090", 24, "pcie")])
        )


def test_fractions_round_up_once_never_through_float() -> None:
    p = ScalePricing(cpu_hour=1, memory_gib_hour=1)
    unit = ResourceUnit(("s",), 3, cpu_millis=333, memory_bytes=GIB // 3)
    g = GroupSpec("g", PlacementRequirements(), (unit,))
    # 3 × (0.333 + 0.333...) = 1.999 + 1 → exact sum 1.999 + 1.0 → ceil = 2 (not 3, not 1)
    assert p.price(g, alloc(g, [])) == 2


def test_floor_and_ceiling_clamp() -> None:
    g = group(gpus=0)
    cheap = ScalePricing(cpu_hour=1, floor=1_000)
    assert cheap.price(g, alloc(g, [])) == 1_000
    dear = ScalePricing(cpu_hour=10**9, ceiling=5_000_000)
    assert dear.price(g, alloc(g, [])) == 5_000_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "every price is zero"),
        ({"cpu_hour": -1}, "cpu_hour must not be negative"),
        ({"gpu_hour": (("h100", -5),)}, "gpu_hour.h100 must not be negative"),
        ({"cpu_hour": 1.5}, "whole micro-units"),
        ({"cpu_hour": 1, "floor": 10, "ceiling": 5}, "below floor"),
    ],
)
def test_invalid_scales_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PricingError, match=message):
        ScalePricing(**kwargs)  # type: ignore[arg-type]


def test_check_price_against_the_orders_maximum() -> None:
    g = group(max_price=1_000)
    assert check_price(g, 1_000) is None
    assert "above the order's maximum 1000" in (check_price(g, 1_001) or "")
    assert check_price(g, 0) == "price is zero"


@given(
    cpu=st.integers(0, 10**7),
    mem=st.integers(0, 10**7),
    gpu=st.integers(0, 10**8),
    count=st.integers(1, 8),
)
def test_price_grows_with_replicas_and_is_an_int(cpu: int, mem: int, gpu: int, count: int) -> None:
    if not (cpu or mem or gpu):
        return
    p = ScalePricing(gpu_hour=(("h100", gpu),), cpu_hour=cpu, memory_gib_hour=mem)
    one, many = group(count=1), group(count=count)
    a = p.price(one, alloc(one, [H100] * 8))
    b = p.price(many, alloc(many, [H100] * 8))
    assert isinstance(b, int) and b >= a


def test_script_input_names_the_allocated_model_for_a_wildcard() -> None:
    g = group(model="*", max_price=9)
    data = json.loads(script_input(g, alloc(g, [H100]), "gm1tenant"))
    assert data["tenant"] == "gm1tenant"
    assert data["resources"][0]["gpu"] == {
        "units": 1,
        "models": [{"model": "h100", "ram": "80Gi", "interface": "sxm"}],
    }
    assert data["price"] == {"denom": "uact", "max_per_hour": 9}


@pytest.mark.parametrize(
    ("out", "micro"),
    [("2.5\n", 2_500_000), ("debug\n3\n", 3_000_000), ("1234u", 1234), ("0.000001", 1)],
)
def test_script_price_parses(out: str, micro: int) -> None:
    assert parse_script_price(out) == micro


@pytest.mark.parametrize("out", ["", "  \n", "-1", "cheap", "1.0000001", "1e3"])
def test_script_bad_answers_are_refused(out: str) -> None:
    with pytest.raises(PricingError):
        parse_script_price(out)
