"""The archive: where the market reads the records it no longer holds in memory (a port).

MarketService keeps in memory only what can still change: open deployments with their orders,
bids and leases, accounts and providers. Once a deployment has closed and the store has its
final records (MarketService.committed), they leave memory, and so do the SDL and the signed
request of every deployment once stored. Reads of such records (a closed deployment, its orders,
bids, leases, declines and events; a manifest) come through this port. The server's SQLite
store implements it (server/store.py); the simulator, which never reads a closed record back,
passes NullArchive.

Ledger entries leave memory once stored too (the ledger is history): listing them, and the
audit's replay, read the stored ones here and add those still in memory, which follow them.

Every method answers from what is stored, and the callers (reads.py) prefer a record they still
hold in memory: a stored copy of an open record may be older than the one in memory. Lists hold
closed records only, and the callers merge them with the ones in memory.
"""

from __future__ import annotations

from typing import Protocol

from marketplace.core.ledger import Replay
from marketplace.core.state import (
    Bid,
    Decline,
    Deployment,
    DeploymentEvent,
    Lease,
    LedgerEntry,
    Order,
)


class Archive(Protocol):
    def deployment(self, deployment_id: str) -> Deployment | None:
        """The stored deployment (its sdl and tenant_request empty: see manifest())."""
        ...

    def closed_deployments(self, owner: str | None) -> list[Deployment]:
        """Closed deployments (of `owner` when given)."""
        ...

    def order(self, order_id: str) -> Order | None: ...

    def closed_orders(self, deployment_id: str | None) -> list[Order]:
        """Closed orders (of `deployment_id` when given)."""
        ...

    def bid(self, bid_id: str) -> Bid | None: ...

    def bids(self, order_id: str) -> list[Bid]: ...

    def lease(self, lease_id: str) -> Lease | None: ...

    def closed_leases(
        self, tenant: str | None, provider: str | None, deployment_id: str | None
    ) -> list[Lease]:
        """Closed leases, narrowed by each of tenant, provider and deployment when given."""
        ...

    def declines(self, order_id: str) -> list[Decline]:
        """The order's declines, oldest first."""
        ...

    # A listing's page needs only the first records of it: these answer in the listing's
    # order (deployments by number; orders and leases by creation time, then id), at most
    # `limit`, so a page's cost follows its position, not the whole history (server/offloop.py).
    def first_closed_deployments(self, owner: str, limit: int) -> list[Deployment]:
        """The owner's first closed deployments."""
        ...

    def first_closed_orders_of(self, party: str, limit: int) -> list[Order]:
        """The first closed orders of `party`'s deployments or that `party` bid on."""
        ...

    def first_closed_leases_of(self, party: str, limit: int) -> list[Lease]:
        """The first closed leases with `party` as tenant or provider."""
        ...

    def first_ledger(self, key: str, before_id: int, limit: int) -> list[LedgerEntry]:
        """ledger()'s entries, the first `limit` of them (oldest first)."""
        ...

    def deployment_events(self, deployment_id: str) -> list[DeploymentEvent]:
        """The deployment's events by seq, naming records by id (records not attached)."""
        ...

    def manifest(self, deployment_id: str) -> tuple[bytes, bytes]:
        """The deployment's SDL and its tenant's signed request, as stored."""
        ...

    def ledger(self, key: str, before_id: int, limit: int | None) -> list[LedgerEntry]:
        """Stored entries with id < `before_id`, by id, those moving money from or to `key`
        when it is not "": the last `limit` of them when given."""
        ...

    def ledger_replay(self, before_id: int) -> Replay:
        """The replay of the stored entries with id < `before_id`."""
        ...


class NullArchive:
    """An archive that holds nothing: for a market that never reads closed records back."""

    def deployment(self, deployment_id: str) -> Deployment | None:
        return None

    def closed_deployments(self, owner: str | None) -> list[Deployment]:
        return []

    def order(self, order_id: str) -> Order | None:
        return None

    def closed_orders(self, deployment_id: str | None) -> list[Order]:
        return []

    def bid(self, bid_id: str) -> Bid | None:
        return None

    def bids(self, order_id: str) -> list[Bid]:
        return []

    def lease(self, lease_id: str) -> Lease | None:
        return None

    def closed_leases(
        self, tenant: str | None, provider: str | None, deployment_id: str | None
    ) -> list[Lease]:
        return []

    def declines(self, order_id: str) -> list[Decline]:
        return []

    def first_closed_deployments(self, owner: str, limit: int) -> list[Deployment]:
        return []

    def first_closed_orders_of(self, party: str, limit: int) -> list[Order]:
        return []

    def first_closed_leases_of(self, party: str, limit: int) -> list[Lease]:
        return []

    def first_ledger(self, key: str, before_id: int, limit: int) -> list[LedgerEntry]:
        return []

    def deployment_events(self, deployment_id: str) -> list[DeploymentEvent]:
        return []

    def manifest(self, deployment_id: str) -> tuple[bytes, bytes]:
        return b"", b""

    def ledger(self, key: str, before_id: int, limit: int | None) -> list[LedgerEntry]:
        return []

    def ledger_replay(self, before_id: int) -> Replay:
        return Replay()
