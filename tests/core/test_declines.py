"""Decline reasons by kind (core/declines.py): the reasons the core and the agent write."""

from __future__ import annotations

import pytest

from marketplace.core.declines import KINDS, DeclineTally, decline_kind
from marketplace.core.state import Decline


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("the bid window has closed", "window closed"),
        ("tenant gm1abc is on this provider's deny list", "tenant policy"),
        ("provider is at its limit of 4 concurrent leases", "lease limit"),
        ("provider is offline (no heartbeat)", "offline"),
        ("at auction close: provider is draining", "offline"),
        ("provider reliability 0.41 is below the required 0.90", "reliability"),
        ("placement needs region=eu; provider has region=us", "placement"),
        ("needs 2× h100 80Gi (one model for all replicas), provider has 1× h100 80Gi free", "gpu"),
        ("needs 64 CPU, 8 free", "capacity"),
        ("needs 1Ti memory, 64Gi free", "capacity"),
        ("price 9.000000/h is above the tenant's maximum 0.005000/h", "price"),
        ("no prices configured: set [pricing.scale] in the config", "price"),
        ("busy", "other"),
    ],
)
def test_each_reason_has_its_kind(reason: str, kind: str) -> None:
    assert decline_kind(reason) == kind
    assert kind in KINDS


def test_the_tally_counts_per_provider_and_who_declined() -> None:
    tally = DeclineTally(since_ms=0)
    tally.add(
        [
            Decline("o1", "p", "needs 2× a100 80Gi", 5, False),
            Decline("o2", "p", "needs 2× a100 80Gi again", 7, False),
            Decline("o3", "p", "price 2/h is above the tenant's maximum 1/h", 6, True),
            Decline("o3", "q", "busy", 6, False),
        ]
    )
    gpu, price = tally.of("p")
    assert (gpu.kind, gpu.by_provider, gpu.by_marketplace, gpu.last_ms) == ("gpu", 2, 0, 7)
    assert gpu.last_reason == "needs 2× a100 80Gi again"
    assert (price.kind, price.by_provider, price.by_marketplace) == ("price", 0, 1)
    assert [k.kind for k in tally.of("q")] == ["other"]
    assert tally.of("nobody") == []
