"""The pure bid decision shared by the agent and the simulator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marketplace.core.bidding import BidDecision, BidPolicy, decide, with_price
from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import parse_manifest
from marketplace.core.matching import Allocation, Capacity, GpuDevice
from marketplace.core.pricing import Pricing, PricingError, ScalePricing
from marketplace.core.resources import GroupSpec, PlacementRequirements
from tests.helpers import EXAMPLES

GIB = 1 << 30
H100 = GpuVariant("h100", 80, "sxm")
FREE = Capacity(64_000, 512 * GIB, 4096 * GIB, tuple(GpuDevice(f"GPU-{i}", H100) for i in range(2)))
PRICES = ScalePricing(gpu_hour=(("h100", 1_500_000),), cpu_hour=10_000, memory_gib_hour=1_000)
ANY_TENANT = BidPolicy()
ATTRS = {"region": "eu-west", "capabilities/gpu/vendor/nvidia/model/h100": "true"}


def training_group() -> GroupSpec:
    manifest = parse_manifest(Path(EXAMPLES / "training-h100.yaml").read_bytes())
    return manifest.groups[0]


def run(
    group: GroupSpec | None = None,
    *,
    free: Capacity = FREE,
    policy: BidPolicy = ANY_TENANT,
    pricing: Pricing | None = PRICES,
    running_leases: int = 0,
    closes_at_ms: int | None = None,
) -> BidDecision:
    return decide(
        group or training_group(),
        "gm1tenant",
        ATTRS,
        free,
        policy,
        pricing,
        1_000,
        running_leases=running_leases,
        closes_at_ms=closes_at_ms,
    )


def test_bids_on_a_group_it_can_serve_with_the_gpu_it_reserved() -> None:
    d = run()
    assert d.bid, d.reason
    assert d.allocation is not None and d.allocation.gpu_uuids == ("GPU-0",)
    assert d.price_per_hour == 1_500_000 + 4 * 10_000 + 16 * 1_000
    assert d.reason == "1× h100 80Gi sxm"


def test_declines_when_no_gpu_is_free_and_says_so() -> None:
    d = run(free=Capacity(64_000, 512 * GIB, 4096 * GIB))
    assert not d.bid
    assert "provider has no GPU free" in d.reason


def test_declines_a_price_above_the_orders_maximum() -> None:
    d = run(pricing=ScalePricing(gpu_hour=(("h100", 10**12),)))
    assert not d.bid and "above the order's maximum" in d.reason


def test_placement_mismatch_is_the_reason() -> None:
    g = training_group()
    g = GroupSpec(g.name, PlacementRequirements(attributes=(("region", "us-east"),)), g.resources)
    d = run(g)
    assert not d.bid and "placement needs region=us-east" in d.reason


def test_tenant_lists_and_lease_limit() -> None:
    assert "deny list" in run(policy=BidPolicy(deny_tenants=frozenset({"gm1tenant"}))).reason
    assert "allow list" in run(policy=BidPolicy(allow_tenants=frozenset({"gm1other"}))).reason
    assert run(policy=BidPolicy(allow_tenants=frozenset({"gm1tenant"}))).bid
    assert "limit of 2" in run(policy=BidPolicy(max_leases=2), running_leases=2).reason


def test_closed_window_is_not_bid_on() -> None:
    assert run(closes_at_ms=1_000).reason == "the bid window has closed"
    assert run(closes_at_ms=1_001).bid


def test_without_pricing_it_reserves_then_with_price_finishes() -> None:
    d = run(pricing=None)
    assert d.bid and d.price_per_hour == 0 and d.allocation is not None
    done = with_price(d, training_group(), 1_234)
    assert done.bid and done.price_per_hour == 1_234
    assert not with_price(d, training_group(), 0).bid


@dataclass(frozen=True)
class PerTenantPricing:
    """A strategy that charges by tenant (as a price script may): the decision passes it on."""

    prices: dict[str, int]

    def price(self, group: GroupSpec, allocation: Allocation, tenant: str) -> int:
        if tenant not in self.prices:
            raise PricingError(f"no price for {tenant}")
        return self.prices[tenant]


def test_the_tenant_reaches_the_pricing_strategy() -> None:
    assert run(pricing=PerTenantPricing({"gm1tenant": 1_234})).price_per_hour == 1_234
    refused = run(pricing=PerTenantPricing({}))
    assert not refused.bid and refused.reason == "no price for gm1tenant"
    assert refused.allocation is not None  # what it would have used, for the caller to release
