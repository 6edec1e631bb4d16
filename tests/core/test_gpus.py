"""The canonical GPU registry: Akash names, NVML names, suggestions."""

from __future__ import annotations

import json

import pytest

from marketplace.core import gpus
from marketplace.core.gpus import GpuVariant
from marketplace.core.resources import GpuOption
from tests.helpers import FIXTURES_NVML, SHARED


def test_the_h100_fixture_device_is_an_h100_80gi_sxm() -> None:
    recording = json.loads((FIXTURES_NVML / "h100_nvml.json").read_text())
    text = json.dumps(recording)
    assert "NVIDIA H100 80GB HBM3" in text
    assert gpus.from_nvml("NVIDIA H100 80GB HBM3", 81559) == GpuVariant("h100", 80, "sxm")


@pytest.mark.parametrize(
    ("name", "mib", "variant"),
    [
        ("NVIDIA A100-SXM4-80GB", 81920, GpuVariant("a100", 80, "sxm")),
        ("NVIDIA A100-PCIE-40GB", 40536, GpuVariant("a100", 40, "pcie")),
        ("NVIDIA A100 80GB PCIe", 81920, GpuVariant("a100", 80, "pcie")),
        ("NVIDIA H100 PCIe", 81559, GpuVariant("h100", 80, "pcie")),
        ("NVIDIA H200", 143771, GpuVariant("h200", 141, "sxm")),
        ("NVIDIA GeForce RTX 4090", 24564, GpuVariant("rtx4090", 24, "pcie")),
        ("NVIDIA GeForce RTX 3090 Ti", 24564, GpuVariant("rtx3090ti", 24, "pcie")),
        ("NVIDIA GeForce RTX 4070 SUPER", 12282, GpuVariant("rtx4070s", 12, "pcie")),
        ("NVIDIA RTX A6000", 49140, GpuVariant("rtxa6000", 48, "pcie")),
        ("NVIDIA L40S", 46068, GpuVariant("l40s", 48, "pcie")),
        ("NVIDIA L4", 23034, GpuVariant("l4", 24, "pcie")),
        ("NVIDIA A10", 23028, GpuVariant("a10", 24, "pcie")),
        ("Tesla T4", 15360, GpuVariant("t4", 16, "pcie")),
        ("Tesla V100-SXM2-16GB", 16160, GpuVariant("v100", 16, "sxm")),
        ("NVIDIA B200", 183359, GpuVariant("b200", 180, "sxm")),
        ("NVIDIA RTX 6000 Ada Generation", 49140, GpuVariant("rtx6000ada", 48, "pcie")),
        ("NVIDIA H100 80GB HBM3", None, GpuVariant("h100", 80, "sxm")),
    ],
)
def test_nvml_names(name: str, mib: int | None, variant: GpuVariant) -> None:
    assert gpus.from_nvml(name, mib) == variant
    assert gpus.is_known(variant.model)


def test_unreadable_names_give_none_and_new_cards_keep_a_name() -> None:
    assert gpus.from_nvml("") is None
    assert gpus.from_nvml("MIG 1g.10gb", 9984) is None
    new = gpus.from_nvml("NVIDIA Zeta 9000", 65536)
    assert new == GpuVariant("zeta9000", 64, "pcie")
    assert not gpus.is_known("zeta9000")


def test_registry_is_built_from_akash_gpus_json_plus_extras() -> None:
    akash = json.loads((SHARED / "corpus" / "akash" / "gpus.json").read_text())
    names = {d["name"] for d in akash["10de"]["devices"].values()}
    assert names <= set(gpus.models())
    assert {"l40s", "l4", "a10", "b200"} <= set(gpus.models())
    assert GpuVariant("h200", 141, "sxm") in gpus.variants("h200")
    assert GpuVariant("h100", 80, "sxm") in gpus.variants("h100")
    assert GpuVariant("h100", 80, "pcie") in gpus.variants("h100")
    assert gpus.variants("nope") == []
    assert not gpus.is_known("mi100")  # AMD: the SDL only speaks nvidia


def test_attribute_keys_follow_akash_capabilities() -> None:
    keys = GpuVariant("h100", 80, "sxm").attribute_keys
    assert "capabilities/gpu/vendor/nvidia/model/h100" in keys
    assert "capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi" in keys
    assert "capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi/interface/sxm" in keys


@pytest.mark.parametrize(
    ("option", "ok"),
    [
        (GpuOption("*"), True),
        (GpuOption("h100"), True),
        (GpuOption("h100", 80), True),
        (GpuOption("h100", 80, "sxm"), True),
        (GpuOption("h100", 80, "SXM5"), True),  # any SXM* counts as sxm
        (GpuOption("h100", None, "pcie"), False),
        (GpuOption("h100", 94), False),
        (GpuOption("a100", 80), False),
        (GpuOption("*", 40), False),
    ],
)
def test_variant_matches_option(option: GpuOption, ok: bool) -> None:
    assert GpuVariant("h100", 80, "sxm").matches(option) is ok


def test_suggestions_for_unknown_names() -> None:
    assert gpus.suggestions("a100-80gb") == ["a100 (ram 80Gi)"]
    assert "rtx4090" in gpus.suggestions("4090")
    assert gpus.closest("rtx-4090")[0] == "rtx4090"
    assert gpus.closest("qqqqqq") == []
