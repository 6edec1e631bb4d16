"""What the market announces: the kinds of deployment and provider events, documented here only.

The event records themselves (DeploymentEvent, ProviderEvent) live with the other records in
state.py; MarketService emits them (market.py), the journal keeps them (journal.py), and
api/convert.py alone carries them to the wire, where a kind travels as its string value.
docs/events.md holds a copy of the tables below; a test keeps the two equal and checks that
every kind is emitted.

An event names records by id and carries those records as well (the live record, not a copy),
so a listener never has to look one up.

Deployment events: Tenant.WatchDeployment, for the deployment's owner.

| kind                 | when                                                             | carries                       |
| -------------------- | ---------------------------------------------------------------- | ----------------------------- |
| `deployment_created` | the tenant created the deployment (its deposit is in escrow)     | -                             |
| `order_opened`       | a placement group's first order opened for bids                  | order                         |
| `order_reopened`     | a group is ordered again after its lease closed (restart policy) | order                         |
| `reorders_stopped`   | a group's leases failed to start too often in a row: no re-order | order; message: why           |
| `bid_placed`         | a provider placed an eligible bid                                | order; bid once window closed |
| `bid_declined`       | a provider declined the order, or the market refused its bid     | order; message: why           |
| `no_eligible_bid`    | the bid window closed without a winner; the order stays open     | order; message: why           |
| `lease_created`      | a bid won (at the auction's close, or the tenant accepted it)    | order, lease                  |
| `lease_running`      | the provider reported the lease's workload running               | lease                         |
| `lease_closed`       | the lease closed                                                 | order, lease; message: reason |
| `order_closed`       | an order closed unleased: with its deployment, or a manual lapse | order; message: why           |
| `escrow_low`         | the escrow lasts at most the market's threshold at current rates | message: time left, top-up    |
| `escrow_topped_up`   | money entered the escrow: a deposit, or the auto top-up          | message: how much, from where |
| `deployment_closed`  | the deployment closed; nothing follows                           | message: why                  |
| `deployment_updated` | the tenant updated the deployment in place (a new SDL version)   | message: version, changes     |
| `update_running`     | the provider reported the lease running the new version          | lease; message: version       |
| `update_failed`      | the new version could not start; the provider runs the old again | lease; message: why           |
| `lease_preempted`    | a spot lease gave way to an on-demand order; `lease_closed` next | lease; message: by which one  |

Sealed bids: while an order's bid window is open, `bid_placed` carries the order but no bid
and no bid_id (message "sealed bid"): one event per bid, so the tenant can count them, but
neither bidder nor price. Sent after the window closed (replayed too), it carries the bid. The
rule is marketplace/core/visibility.py's.

Provider events: Provider.WatchOrders; broadcast to every provider, or to one.

| kind           | to        | when                                             | carries            |
| -------------- | --------- | ------------------------------------------------ | ------------------ |
| `order_opened` | every one | an order opened for bids                         | order              |
| `order_closed` | every one | an order stopped taking bids (leased or closed)  | order              |
| `lease_won`    | winner    | its bid won: fetch the manifest and start        | order, bid, lease  |
| `bid_lost`     | loser     | another bid won the order                        | order, bid         |
| `lease_closed` | provider  | its lease closed: stop the workload              | order, lease       |
| `lease_updated`| provider  | its lease's SDL changed: fetch it, replace them  | order, lease       |
"""

from __future__ import annotations

from enum import StrEnum


class DeploymentEventKind(StrEnum):
    """What happened to a deployment (see the module's table)."""

    DEPLOYMENT_CREATED = "deployment_created"
    ORDER_OPENED = "order_opened"
    ORDER_REOPENED = "order_reopened"
    REORDERS_STOPPED = "reorders_stopped"
    BID_PLACED = "bid_placed"
    BID_DECLINED = "bid_declined"
    NO_ELIGIBLE_BID = "no_eligible_bid"
    LEASE_CREATED = "lease_created"
    LEASE_RUNNING = "lease_running"
    LEASE_CLOSED = "lease_closed"
    ORDER_CLOSED = "order_closed"
    ESCROW_LOW = "escrow_low"
    ESCROW_TOPPED_UP = "escrow_topped_up"
    DEPLOYMENT_CLOSED = "deployment_closed"
    DEPLOYMENT_UPDATED = "deployment_updated"
    UPDATE_RUNNING = "update_running"
    UPDATE_FAILED = "update_failed"
    LEASE_PREEMPTED = "lease_preempted"  # core/spot.py


class ProviderEventKind(StrEnum):
    """What a provider is told (see the module's table)."""

    ORDER_OPENED = "order_opened"
    ORDER_CLOSED = "order_closed"
    LEASE_WON = "lease_won"
    BID_LOST = "bid_lost"
    LEASE_CLOSED = "lease_closed"
    LEASE_UPDATED = "lease_updated"
