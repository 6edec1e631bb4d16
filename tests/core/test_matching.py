"""Placement and capacity matching: Akash's rules, with reasons a tenant can act on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketplace.core.gpus import GpuVariant
from marketplace.core.matching import (
    Allocation,
    Capacity,
    GpuDevice,
    allocate,
    key_matches,
    placement_mismatches,
)
from marketplace.core.resources import (
    GpuOption,
    GpuRequest,
    GroupSpec,
    PlacementRequirements,
    ResourceUnit,
    Volume,
)

GI = 1024**3
H100 = GpuVariant("h100", 80, "sxm")
H100_PCIE = GpuVariant("h100", 80, "pcie")
A100_40 = GpuVariant("a100", 40, "pcie")
A100_80 = GpuVariant("a100", 80, "sxm")
RTX4090 = GpuVariant("rtx4090", 24, "pcie")


def devices(variant: GpuVariant, n: int, prefix: str = "") -> tuple[GpuDevice, ...]:
    tag = prefix or variant.model
    return tuple(GpuDevice(f"GPU-{tag}-{i}", variant) for i in range(n))


def unit(
    gpus: int = 0, *options: GpuOption, count: int = 1, cpu: int = 1000, **kw: object
) -> ResourceUnit:
    return ResourceUnit(
        services=("svc",),
        count=count,
        cpu_millis=cpu,
        memory_bytes=kw.pop("memory", GI),  # type: ignore[arg-type]
        storage=kw.pop("storage", (Volume("default", GI),)),  # type: ignore[arg-type]
        gpu=GpuRequest(gpus, options),
    )


def group(*units: ResourceUnit) -> GroupSpec:
    return GroupSpec(name="g", requirements=PlacementRequirements(), resources=units)


def capacity(*gpus: GpuDevice, cpu: int = 64_000, memory: int = 256 * GI) -> Capacity:
    return Capacity(cpu_millis=cpu, memory_bytes=memory, storage_bytes=1024 * GI, gpus=gpus)


# --- placement ----------------------------------------------------------------------------------


def test_glob_keys_do_not_cross_slashes() -> None:
    assert key_matches("region", "region")
    assert key_matches("capabilities/gpu/*", "capabilities/gpu/vendor")
    assert not key_matches("capabilities/*", "capabilities/gpu/vendor")
    assert key_matches("reg?on", "region")
    assert key_matches("tier[12]", "tier1") and not key_matches("tier[12]", "tier3")


def test_attributes_must_be_a_subset_with_exact_values() -> None:
    req = PlacementRequirements(attributes=(("region", "us-west"), ("host", "akash")))
    assert placement_mismatches(req, {"region": "us-west", "host": "akash", "x": "y"}) == []
    reasons = placement_mismatches(req, {"region": "eu-central", "host": "akash"})
    assert reasons == ["placement needs region=us-west; provider has region=eu-central"]
    assert placement_mismatches(req, {"region": "us-west"}) == [
        "placement needs host=akash; provider has no host"
    ]


def test_glob_requirement_key_matches_any_provider_key() -> None:
    req = PlacementRequirements(attributes=(("capabilities/storage/*/class", "beta3"),))
    assert placement_mismatches(req, {"capabilities/storage/1/class": "beta3"}) == []
    assert placement_mismatches(req, {"capabilities/storage/1/class": "beta2"})


_KEYS = st.text(alphabet="ab/*?[]", min_size=1, max_size=5)


@given(
    st.lists(st.tuples(_KEYS, st.sampled_from("xy")), max_size=3),
    st.dictionaries(_KEYS, st.sampled_from("xy"), max_size=4),
)
def test_a_plain_key_matches_as_its_glob_would(
    required: list[tuple[str, str]], attributes: dict[str, str]
) -> None:
    """A requirement key without glob characters is looked up, not scanned: the same verdict."""
    req = PlacementRequirements(attributes=tuple(required))
    unmet = [
        (p, v)
        for p, v in required
        if not any(a == v and key_matches(p, k) for k, a in attributes.items())
    ]
    reasons = placement_mismatches(req, attributes)
    assert len(reasons) == len(unmet)
    assert all(
        r.startswith(f"placement needs {p}={v};") for r, (p, v) in zip(reasons, unmet, strict=True)
    )


AUDITOR_A, AUDITOR_B = "akash1aaa", "akash1bbb"


def test_signed_by_any_of() -> None:
    req = PlacementRequirements(
        attributes=(("region", "us-west"),), signed_by_any_of=(AUDITOR_A, AUDITOR_B)
    )
    attrs = {"region": "us-west"}
    assert placement_mismatches(req, attrs, {AUDITOR_B: {"region": "us-west"}}) == []
    (reason,) = placement_mismatches(req, attrs, {})
    assert "any of auditors akash1aaa, akash1bbb" in reason
    # signed, but not the required attributes
    assert placement_mismatches(req, attrs, {AUDITOR_A: {"region": "eu"}})


def test_signed_by_all_of_needs_every_auditor() -> None:
    req = PlacementRequirements(signed_by_all_of=(AUDITOR_A, AUDITOR_B))
    assert placement_mismatches(req, {}, {AUDITOR_A: {}, AUDITOR_B: {}}) == []
    (reason,) = placement_mismatches(req, {}, {AUDITOR_A: {}})
    assert AUDITOR_B in reason


def test_signed_by_without_attributes_needs_only_a_signature() -> None:
    req = PlacementRequirements(signed_by_any_of=(AUDITOR_A,))
    assert placement_mismatches(req, {}, {AUDITOR_A: {"tier": "1"}}) == []


# --- allocation ---------------------------------------------------------------------------------


def test_cpu_only_group_sums_units_times_count() -> None:
    spec = group(
        unit(
            cpu=2000,
            count=3,
            storage=(Volume("default", GI), Volume("shm", 2 * GI, storage_class="ram")),
        )
    )
    result = allocate(spec, capacity())
    assert isinstance(result, Allocation)
    assert result.cpu_millis == 6000
    assert result.memory_bytes == 3 * (GI + 2 * GI)  # ram volumes count as memory
    assert result.storage_bytes == 3 * GI
    assert result.gpu_uuids == ()


def test_not_enough_cpu_or_memory_says_how_much() -> None:
    assert allocate(group(unit(cpu=64_000)), capacity(cpu=32_000)) == "needs 64 CPU, 32 free"
    reason = allocate(group(unit(memory=512 * GI)), capacity(memory=256 * GI))
    assert reason == "needs 512Gi memory, 256Gi free"


def test_gpus_pick_one_variant_for_all_replicas() -> None:
    spec = group(unit(2, GpuOption("h100"), count=2))
    free = capacity(*devices(H100, 3, "s"), *devices(H100_PCIE, 4, "p"))
    result = allocate(spec, free)
    assert isinstance(result, Allocation)
    # 3 SXM devices cannot hold 4 GPUs, so all four come from the PCIe variant
    assert result.gpu_uuids == ("GPU-p-0", "GPU-p-1", "GPU-p-2", "GPU-p-3")
    assert result.gpu_models == ("h100",) * 4
    assert result.unit_variants == (H100_PCIE,)


def test_option_order_is_the_preference() -> None:
    spec = group(unit(1, GpuOption("a100", 80), GpuOption("h100")))
    result = allocate(spec, capacity(*devices(H100, 1), *devices(A100_80, 1)))
    assert isinstance(result, Allocation) and result.gpu_models == ("a100",)


def test_ram_and_interface_narrow_the_match() -> None:
    free = capacity(*devices(A100_40, 8))
    reason = allocate(group(unit(1, GpuOption("a100", 80))), free)
    assert (
        reason
        == "needs 1× a100 80Gi (one model for all replicas), provider has no matching GPU free (it has 8× a100 40Gi)"
    )
    assert isinstance(allocate(group(unit(1, GpuOption("a100", 40, "pcie"))), free), Allocation)
    assert isinstance(allocate(group(unit(1, GpuOption("a100", None, "sxm"))), free), str)


def test_wildcard_takes_any_gpu() -> None:
    result = allocate(group(unit(1, GpuOption("*"))), capacity(*devices(RTX4090, 1)))
    assert isinstance(result, Allocation) and result.gpu_models == ("rtx4090",)


def test_too_few_gpus_names_what_is_free() -> None:
    reason = allocate(group(unit(8, GpuOption("h100", 80))), capacity(*devices(H100, 1)))
    assert (
        reason == "needs 8× h100 80Gi (one model for all replicas), provider has 1× h100 80Gi free"
    )
    assert allocate(group(unit(1, GpuOption("h100"))), capacity()) == (
        "needs 1× h100 (one model for all replicas), provider has no GPU free"
    )


def test_units_do_not_share_devices() -> None:
    spec = group(unit(2, GpuOption("h100")), unit(2, GpuOption("*")))
    result = allocate(spec, capacity(*devices(H100, 2), *devices(RTX4090, 2)))
    assert isinstance(result, Allocation)
    assert result.unit_gpus == (("GPU-h100-0", "GPU-h100-1"), ("GPU-rtx4090-0", "GPU-rtx4090-1"))
    assert len(set(result.gpu_uuids)) == 4
    assert isinstance(allocate(spec, capacity(*devices(H100, 3))), str)


def test_manifest_group_against_an_h100_box() -> None:
    from marketplace.core.gpus import from_nvml
    from marketplace.core.manifest import parse_manifest
    from tests.helpers import BASE

    spec = parse_manifest(BASE).groups[0]  # 2 replicas × 2 GPUs of (h100 80Gi sxm | a100)
    h100 = from_nvml("NVIDIA H100 80GB HBM3", 81559)
    assert h100 is not None
    box = capacity(*(GpuDevice(f"GPU-{i}", h100) for i in range(8)))
    result = allocate(spec, box)
    assert isinstance(result, Allocation) and len(result.gpu_uuids) == 4
    assert (
        placement_mismatches(
            spec.requirements, {"region": "us-west"}, {"akash1auditor": {"region": "us-west"}}
        )
        == []
    )


def test_a_wildcard_unit_leaves_specific_devices_to_a_specific_unit() -> None:
    spec = group(unit(1, GpuOption("*")), unit(1, GpuOption("h100")))
    result = allocate(spec, capacity(*devices(H100, 1), *devices(RTX4090, 1)))
    assert isinstance(result, Allocation)
    assert result.unit_gpus == (("GPU-rtx4090-0",), ("GPU-h100-0",))
    assert result.gpu_models == ("rtx4090", "h100")


def test_an_empty_class_in_a_placement_key_matches_nothing_and_raises_nothing() -> None:
    # found by the hypothesis test above: "[]" compiled to a broken regex
    req = PlacementRequirements(attributes=(("[]", "x"), ("[^]", "x")))
    assert len(placement_mismatches(req, {"?": "x", "]": "x"})) == 2
