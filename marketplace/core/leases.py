"""State machines of deployments, orders, bids and leases: the only allowed transitions.

    Deployment  active → closed
    Order       open → active (a lease was created) | closed;  active → closed
    Bid         open → won | lost | withdrawn | closed;  won → closed (its lease closed)
    Lease       pending → running | closed;  running → closed

A closed object never changes state again; a group that must run again gets a NEW order
(oseq + 1), never a reopened one. `move` raises FailedPrecondition on anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from marketplace.core.errors import FailedPrecondition
from marketplace.core.state import BidState, DeploymentState, LeaseState, OrderState

S = TypeVar("S", DeploymentState, OrderState, BidState, LeaseState)

DEPLOYMENT_TRANSITIONS: dict[DeploymentState, frozenset[DeploymentState]] = {
    DeploymentState.ACTIVE: frozenset({DeploymentState.CLOSED}),
    DeploymentState.CLOSED: frozenset(),
}
ORDER_TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.OPEN: frozenset({OrderState.ACTIVE, OrderState.CLOSED}),
    OrderState.ACTIVE: frozenset({OrderState.CLOSED}),
    OrderState.CLOSED: frozenset(),
}
BID_TRANSITIONS: dict[BidState, frozenset[BidState]] = {
    BidState.OPEN: frozenset({BidState.WON, BidState.LOST, BidState.WITHDRAWN, BidState.CLOSED}),
    BidState.WON: frozenset({BidState.CLOSED}),
    BidState.LOST: frozenset(),
    BidState.WITHDRAWN: frozenset(),
    BidState.CLOSED: frozenset(),
}
LEASE_TRANSITIONS: dict[LeaseState, frozenset[LeaseState]] = {
    LeaseState.PENDING: frozenset({LeaseState.RUNNING, LeaseState.CLOSED}),
    LeaseState.RUNNING: frozenset({LeaseState.CLOSED}),
    LeaseState.CLOSED: frozenset(),
}


# Each state type → its own table above (a dict lookup: move() runs in the simulator's hot loop).
_TABLES: dict[type, Mapping[Any, frozenset[Any]]] = {
    DeploymentState: DEPLOYMENT_TRANSITIONS,
    OrderState: ORDER_TRANSITIONS,
    BidState: BID_TRANSITIONS,
    LeaseState: LEASE_TRANSITIONS,
}


class _Stateful(Protocol[S]):
    id: str
    state: S


def allowed(current: S, new: S) -> bool:
    return new in _TABLES[type(current)][current]


def move(record: _Stateful[S], new: S) -> None:
    """Set record.state to `new` if the table allows it, else raise FailedPrecondition."""
    current = record.state
    if not allowed(current, new):
        kind = type(record).__name__.lower()
        raise FailedPrecondition(f"{kind} {record.id} is {current}; it cannot become {new}")
    record.state = new
