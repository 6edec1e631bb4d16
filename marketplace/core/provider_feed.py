"""What a provider hears from the market, as the provider's code holds it: one record type per
kind of order-feed event, each carrying exactly the records it needs, and the manifest of a
lease it won. api/convert.py decodes them from the wire; the agent never sees protobuf.

One class per ProviderEventKind (core/events.py documents the kinds); `seq` is the resume
token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from marketplace.core.gang import Rendezvous
from marketplace.core.manifest import Manifest
from marketplace.core.resources import GroupSpec
from marketplace.core.state import Bid, Lease, Order


@dataclass(frozen=True)
class OrderOpened:
    """An order opened for bids: decide, reserve, price, bid or decline."""

    seq: int
    time_ms: int
    order: Order


@dataclass(frozen=True)
class OrderClosed:
    """An order stopped taking bids (leased to someone or closed): release what it held."""

    seq: int
    time_ms: int
    order_id: str


@dataclass(frozen=True)
class LeaseWon:
    """This provider's bid won: fetch the manifest and start the lease."""

    seq: int
    time_ms: int
    lease: Lease


@dataclass(frozen=True)
class BidLost:
    """Another provider's bid won the order."""

    seq: int
    time_ms: int
    bid: Bid


@dataclass(frozen=True)
class LeaseClosed:
    """One of this provider's leases closed: stop its workload."""

    seq: int
    time_ms: int
    lease: Lease


@dataclass(frozen=True)
class LeaseUpdated:
    """The tenant updated one of this provider's leases in place: fetch its manifest again and
    replace the containers (core/updates.py)."""

    seq: int
    time_ms: int
    lease: Lease


FeedEvent: TypeAlias = OrderOpened | OrderClosed | LeaseWon | BidLost | LeaseClosed | LeaseUpdated


@dataclass(frozen=True)
class LeaseManifest:
    """What to run for a won lease: the tenant's manifest (its signature checked on the way in)
    and the placement group the lease is for."""

    lease_id: str
    manifest: Manifest
    group: GroupSpec
    version: int = 0  # the deployment version this manifest is (0: the market did not say)
    rendezvous: Rendezvous | None = None  # a gang's node: its rank and where rank 0 is
