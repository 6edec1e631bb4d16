"""A provider's bid decision: pure, so the agent and the simulator's providers bid with one rule.

Follows Akash's bid engine (bidengine/order.go): policy (tenant lists, lease limit), placement
(`shouldBid`), reserve (`allocate`: CPU, memory, storage, concrete GPUs), price, and the price
check against the order's maximum. Every "no" carries a reason a tenant can act on; it goes to the
marketplace as a DeclineOrder. A decline is not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marketplace.core.matching import Allocation, Capacity, allocate, placement_mismatches
from marketplace.core.pricing import Pricing, PricingError, check_price
from marketplace.core.resources import GroupSpec


@dataclass(frozen=True)
class BidPolicy:
    max_leases: int = 0  # concurrent leases this provider takes on; 0 = no limit
    allow_tenants: frozenset[str] = frozenset()  # when set, only these tenants
    deny_tenants: frozenset[str] = frozenset()

    def refuses(self, tenant: str, running_leases: int) -> str | None:
        if tenant in self.deny_tenants:
            return f"tenant {tenant} is on this provider's deny list"
        if self.allow_tenants and tenant not in self.allow_tenants:
            return f"tenant {tenant} is not on this provider's allow list"
        if self.max_leases and running_leases >= self.max_leases:
            return f"provider is at its limit of {self.max_leases} concurrent leases"
        return None


@dataclass(frozen=True)
class BidDecision:
    bid: bool
    price_per_hour: int = 0
    allocation: Allocation | None = None
    reason: str = ""  # why not (or, for a bid, what was offered)
    preempts: tuple[str, ...] = ()  # spot leases the bid stops to make room (core/spot.py)


def decide(
    group: GroupSpec,
    tenant: str,
    provider_attrs: Mapping[str, str],
    free: Capacity,
    policy: BidPolicy,
    pricing: Pricing | None,
    now_ms: int,
    running_leases: int = 0,
    closes_at_ms: int | None = None,
    auditors: Mapping[str, Mapping[str, str]] | None = None,
) -> BidDecision:
    """Whether to bid on `group`, with what resources, at what price per hour.

    `pricing=None` stops after the reservation (bid=True, price 0): the caller reserves what
    `allocation` names, prices it and finishes with `with_price` (the agent's bidder, whose
    pricing may take seconds; the simulator, which memoizes prices).
    """
    if closes_at_ms is not None and now_ms >= closes_at_ms:
        return BidDecision(False, reason="the bid window has closed")
    refused = policy.refuses(tenant, running_leases)
    if refused:
        return BidDecision(False, reason=refused)
    mismatches = placement_mismatches(group.requirements, provider_attrs, auditors)
    if mismatches:
        return BidDecision(False, reason="; ".join(mismatches))
    allocation = allocate(group, free)
    if isinstance(allocation, str):
        return BidDecision(False, reason=allocation)
    if pricing is None:
        return BidDecision(True, 0, allocation, reason="awaiting price")
    try:
        price = pricing.price(group, allocation, tenant)
    except PricingError as exc:
        return BidDecision(False, allocation=allocation, reason=str(exc))
    return with_price(BidDecision(True, 0, allocation), group, price)


def with_price(decision: BidDecision, group: GroupSpec, price: int) -> BidDecision:
    """Finish a decision with a price: still a bid only if the price is positive and within the
    order's maximum."""
    if not decision.bid:
        return decision
    problem = check_price(group, price)
    # the constructor, not dataclasses.replace (several times slower): the simulator prices
    # most bids through here
    if problem:
        return BidDecision(False, price, decision.allocation, problem)
    return BidDecision(True, price, decision.allocation, offer_summary(decision.allocation))


def offer_summary(allocation: Allocation | None) -> str:
    """'2× h100 80Gi sxm', or 'CPU only'."""
    if allocation is None or not allocation.gpu_uuids:
        return "CPU only"
    parts = []
    for uuids, variant in zip(allocation.unit_gpus, allocation.unit_variants, strict=False):
        if uuids and variant is not None:
            parts.append(f"{len(uuids)}× {variant.label}")
    return ", ".join(parts)
