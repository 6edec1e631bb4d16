"""Who may read what: the marketplace's read rules, as pure functions of a viewer and a record.

- A tenant reads its own account, deployments, orders, leases, their events and logs.
- A provider reads the open orders (it may bid on them), the orders it bid on, its own bids and
  leases (with their logs).
- Bids are sealed: while an order's bid window is open a bid shows to its bidder only. Once the
  window closed (or the order left the open state), the order's tenant sees every bid; a
  provider still sees only its own. During the window the tenant's `bid_placed` events carry
  the order but not the bid (no bidder, no price): one event per bid, so it can count them.
- The admin key (the marketplace's own) reads any account, the whole ledger and the audit.
- Public: providers, price statistics, the market's id (no rule needed here).

The server asks these before it answers; a record the viewer may not read answers as if it did
not exist (NotFound), a read that needs the admin role answers PermissionDenied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from marketplace.core.events import DeploymentEventKind
from marketplace.core.state import (
    Bid,
    Deployment,
    DeploymentEvent,
    Lease,
    Order,
    OrderExplanation,
    OrderState,
)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who signed a read: an address, and the roles the marketplace knows it by."""

    address: str
    admin: bool = False  # the marketplace's admin key
    provider: bool = False  # a registered provider


def sealed(order: Order, now_ms: int) -> bool:
    """True while the order's bids are hidden from all but their bidders."""
    return order.state == OrderState.OPEN and now_ms < order.closes_at_ms


def can_read_account(viewer: Viewer, address: str) -> bool:
    return viewer.admin or viewer.address == address


def can_read_ledger(viewer: Viewer, account: str) -> bool:
    """The whole ledger (account "") or another's entries: admin; your own: you."""
    return viewer.admin or (bool(account) and account == viewer.address)


def can_read_deployment(viewer: Viewer, dep: Deployment) -> bool:
    return viewer.address == dep.owner


def can_read_order(viewer: Viewer, order: Order, bid_on: bool) -> bool:
    """The tenant; any provider while it is open (it may bid); a provider that bid on it."""
    if viewer.address == order.owner or bid_on:
        return True
    return viewer.provider and order.state == OrderState.OPEN


def can_read_bid(viewer: Viewer, bid: Bid, order: Order, now_ms: int) -> bool:
    if viewer.address == bid.provider:
        return True
    return viewer.address == order.owner and not sealed(order, now_ms)


def can_read_lease(viewer: Viewer, lease: Lease) -> bool:
    """Its tenant and its provider (logs follow the lease)."""
    return viewer.address in (lease.tenant, lease.provider)


def event_for_tenant(event: DeploymentEvent, now_ms: int) -> DeploymentEvent:
    """The event as the deployment's owner may see it: a bid_placed of a sealed auction
    without its bid (who bid and at what price stays with the bidder until the window closes)."""
    if event.kind != DeploymentEventKind.BID_PLACED:
        return event
    if event.order is not None and not sealed(event.order, now_ms):
        return event
    return dataclasses.replace(event, bid_id="", bid=None, message="sealed bid")


def explanation_for(viewer: Viewer, why: OrderExplanation, now_ms: int) -> OrderExplanation:
    """ExplainOrder as `viewer` may see it: only the bids it may read; while the auction is
    sealed, a summary that counts the bids but names neither bidders nor prices."""
    bids = tuple(b for b in why.bids if can_read_bid(viewer, b, why.order, now_ms))
    if not sealed(why.order, now_ms) or len(bids) == len(why.bids):
        return dataclasses.replace(why, bids=bids)
    left = why.order.closes_at_ms - now_ms
    summary = f"{len(why.bids)} sealed bid(s) so far; the auction closes in {left} ms"
    return dataclasses.replace(why, bids=bids, summary=summary)
