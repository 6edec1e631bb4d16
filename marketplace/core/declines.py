"""A provider's declines counted by kind, for the provider itself (issue 15).

A decline's reason is text a tenant can act on ("needs 2× h100 80Gi (one model for all
replicas), provider has 1× h100 80Gi free"); its kind is the family it belongs to ("gpu"), so an
operator sees at a glance why its box turns work down: its prices, its GPUs, its policy. The
rules below read the reasons the core (bidding.py, matching.py, pricing.py, market.py) and the
agent's bidder write; a reason none of them knows counts as "other".

DeclineTally counts every decline the market records (the server tells it each command's
changes once durable), per provider and kind: at most providers × len(KINDS) counters, flat
however long the market runs. It counts from the market's start, beginning with the declines
of the orders still open then (the closed ones are in the store's archive, not counted again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from marketplace.core.state import Decline

AT_CLOSE = "at auction close: "
# (kind, any of these words in the lower-cased reason), first match wins
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("window closed", ("bid window has closed",)),
    ("tenant policy", ("deny list", "allow list")),
    ("lease limit", ("concurrent leases",)),
    ("offline", ("is offline", "is draining")),
    ("failed start", ("failed to start",)),
    ("reliability", ("reliability",)),
    ("placement", ("placement needs", "auditor")),
    ("gpu", ("gpu", "×")),
    ("capacity", (" cpu", "memory", "storage", "capacity")),
    ("price", ("price",)),
    ("features", ("not supported", "needs feature", "unsupported")),
)
KINDS = (*(kind for kind, _ in RULES), "other")


def decline_kind(reason: str) -> str:
    """The family of a decline's reason (one of KINDS)."""
    text = reason.lower().removeprefix(AT_CLOSE)
    for kind, words in RULES:
        if any(word in text for word in words):
            return kind
    return "other"


@dataclass(slots=True)
class KindCount:
    kind: str
    by_provider: int = 0
    by_marketplace: int = 0
    last_reason: str = ""
    last_ms: int = 0


class DeclineTally:
    def __init__(self, since_ms: int) -> None:
        self.since_ms = since_ms
        self._counts: dict[str, dict[str, KindCount]] = {}

    def add(self, declines: Iterable[Decline]) -> None:
        for d in declines:
            kind = decline_kind(d.reason)
            row = self._counts.setdefault(d.provider, {}).setdefault(kind, KindCount(kind))
            if d.by_marketplace:
                row.by_marketplace += 1
            else:
                row.by_provider += 1
            if d.time_ms >= row.last_ms:
                row.last_reason, row.last_ms = d.reason, d.time_ms

    def of(self, provider: str) -> list[KindCount]:
        """The provider's counts, most frequent kind first."""
        rows = self._counts.get(provider, {}).values()
        return sorted(rows, key=lambda r: (-(r.by_provider + r.by_marketplace), r.kind))
