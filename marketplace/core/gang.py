"""Gang leases: a training deployment's N nodes (`gpumarket: gang:`, manifest/gang.py) are won
all or none, ranked by predicted cost per useful GPU-hour, run with a rendezvous, and stopped and
re-auctioned together, as the simulator's training jobs are (simulator/engine/jobs.py).

- Award: when a gang order's bid window closes, every node must hold an eligible bid from a
  distinct provider whose declared link meets the gang's floor; otherwise none is leased and the
  orders stay open (a later bid closes the gang's auction again). Winners pay their own bids.
- Ranking: a synchronous job runs at the speed of its slowest link, so the gang's winners are the
  set with the least total price ÷ utilization, the utilization that core/allreduce.py predicts
  for the gang's gradient size and sync interval over the bidders' links. A cheap slow link loses
  to a dearer fast one when it would idle the GPUs.
- Loss: when one node's lease closes (provider lost, workload failed, closed by either side,
  manifest timeout), the others close `gang_stopped`, billed to that moment; if the restart
  policy re-orders the lost node, every node is ordered again and the gang is re-auctioned.
- Rendezvous: node g (order g) is RANK g−1 of WORLD_SIZE nodes; MASTER_ADDR is the host of rank
  0's provider (its registered host_uri) and MASTER_PORT the gang's port, which rank 0's provider
  publishes on that host (provider_agent/rendezvous.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from marketplace.core import auction
from marketplace.core.allreduce import Link, sync_seconds, utilization
from marketplace.core.errors import InvalidArgument
from marketplace.core.events import DeploymentEventKind
from marketplace.core.limits import whole_number
from marketplace.core.resources import GangSettings
from marketplace.core.state import (
    Bid,
    BidState,
    CloseReason,
    Deployment,
    DeploymentState,
    Lease,
    LeaseState,
    Order,
    OrderState,
    ProviderRecord,
)

if TYPE_CHECKING:
    from marketplace.core import matching
    from marketplace.core.market import MarketService

# Provider attributes declaring its link (provider_agent/inventory.py sets them from [network]).
UP_MBPS = "network/up-mbps"
DOWN_MBPS = "network/down-mbps"

RANK = "RANK"
WORLD_SIZE = "WORLD_SIZE"
MASTER_ADDR = "MASTER_ADDR"
MASTER_PORT = "MASTER_PORT"
GANG_ID = "GPUMARKET_GANG_ID"


def provider_link(prov: ProviderRecord) -> Link | None:
    """The link a provider declares, or None when it declares none (or nonsense)."""
    return declared_link(prov.attributes, prov.region)


def declared_link(attributes: Mapping[str, str], region: str = "") -> Link | None:
    """The link these provider attributes declare (UP_MBPS, DOWN_MBPS), or None."""
    try:
        up = float(attributes[UP_MBPS])
        down = float(attributes[DOWN_MBPS])
    except (KeyError, ValueError):
        return None
    if not (math.isfinite(up) and math.isfinite(down)) or up <= 0 or down <= 0:
        return None
    return Link(up, down, region)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible bid for one node of a gang."""

    node: int  # 0-based: the rank
    bid: Bid
    link: Link | None
    allocation: matching.Allocation | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    winners: tuple[Candidate, ...]  # one per node, by rank
    total_price: int  # per hour, all nodes
    utilization: float  # predicted, 0..1
    cost_per_useful_hour: float  # total_price / utilization


def predicted_utilization(
    gang: GangSettings, links: Sequence[Link | None], cross_region_factor: float = 1.0
) -> float:
    """The fraction of wall time the gang's GPUs compute (0 when a link is undeclared)."""
    if any(link is None for link in links):
        return 0.0
    known = [link for link in links if link is not None]
    sync_s = sync_seconds(known, gang.gradient_bytes, cross_region_factor)
    return utilization(gang.sync_interval_ms / 1000, sync_s)


def link_problem(prov: ProviderRecord, gang: GangSettings | None) -> str:
    """Why `prov` cannot hold a node of `gang` for its link ("" when it can, or no gang)."""
    return link_shortfall(provider_link(prov), gang)


def link_shortfall(link: Link | None, gang: GangSettings | None) -> str:
    """Why a provider with `link` cannot hold a node of `gang` ("" when it can, or no gang):
    the market's rule at the award, and a provider agent's before it bids."""
    if gang is None or gang.min_bandwidth_mbps <= 0:
        return ""
    if link_speed(link) >= gang.min_bandwidth_mbps:
        return ""
    declared = "declares no link" if link is None else f"link {link_speed(link):g} Mbps"
    return f"{declared}; the gang needs {gang.min_bandwidth_mbps:g} Mbps"


def link_speed(link: Link | None) -> float:
    return 0.0 if link is None else min(link.up_mbps, link.down_mbps)


def choose(
    gang: GangSettings,
    candidates: Sequence[Candidate],
    cross_region_factor: float = 1.0,
) -> Choice | None:
    """The gang's winners: one candidate per node, each from a distinct provider, with the least
    predicted cost per useful hour; None when some node cannot be filled. For each link speed
    among the candidates (the ring's possible bottlenecks), the cheapest assignment using only
    links at least that fast is priced; the best of those wins. Deterministic: ties go to the
    lower total price, then the faster bottleneck."""
    best: Choice | None = None
    best_key: tuple[float, int, float] | None = None
    for floor in sorted({link_speed(c.link) for c in candidates}, reverse=True):
        winners = cheapest(gang.nodes, [c for c in candidates if link_speed(c.link) >= floor])
        if winners is None:
            continue
        total = sum(c.bid.price_per_hour for c in winners)
        used = predicted_utilization(gang, [c.link for c in winners], cross_region_factor)
        cost = total / used if used > 0 else math.inf
        key = (cost, total, -floor)
        if best_key is None or key < best_key:
            best_key = key
            best = Choice(winners, total, used, cost)
    return best


def cheapest(nodes: int, candidates: Sequence[Candidate]) -> tuple[Candidate, ...] | None:
    """One node each for the best-ranked providers (auction.rank's order: price, reliability,
    arrival, address): each provider in turn takes a node, moving those placed before it to
    another node they bid on when that frees one (an augmenting path), so a provider bidding on
    every node never blocks a gang that others could complete."""
    mine: dict[str, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: auction.rank_key(c.bid)):
        mine.setdefault(c.bid.provider, []).append(c)
    holder: dict[int, Candidate] = {}
    for provider in mine:  # best first (dicts keep insertion order)
        _place(mine, holder, provider, set())
        if len(holder) == nodes:
            return tuple(holder[n] for n in range(nodes))
    return None


def _place(
    mine: dict[str, list[Candidate]], holder: dict[int, Candidate], provider: str, tried: set[int]
) -> bool:
    """Give `provider` a node, moving the holder of one it bid on elsewhere if that frees it
    (an augmenting path). A function of its own, not a closure: a recursive closure is a
    reference cycle, left for the cyclic GC after every award (the simulator runs without)."""
    for c in mine[provider]:
        if c.node in tried:
            continue
        tried.add(c.node)
        held = holder.get(c.node)
        if held is None or _place(mine, holder, held.bid.provider, tried):
            holder[c.node] = c
            return True
    return False


# ==== the market's side ========================================================================
def gang_orders(market: MarketService, dep: Deployment) -> list[Order]:
    return [market.state.orders[order_id] for order_id in dep.group_orders]


def close_window(market: MarketService, dep: Deployment, gang: GangSettings, at_ms: int) -> None:
    """A gang order's bid window closed: lease every node, or none."""
    orders = gang_orders(market, dep)
    if len(orders) != gang.nodes or any(o.state != OrderState.OPEN for o in orders):
        return  # a node is still waiting to be ordered again (backoff): its opening retries
    if any(o.closes_at_ms > at_ms for o in orders):
        return  # that order's own window closes the gang's auction
    candidates: list[Candidate] = []
    lacking: list[int] = []
    for node, order in enumerate(orders):
        found = _eligible(market, gang, node, order)
        if not found:
            lacking.append(node)
        candidates.extend(found)
    picked = None if lacking else choose(gang, candidates)
    if picked is None:
        if market.journal.recording:
            why = (
                f"rank {', '.join(map(str, lacking))} has no eligible bid"
                if lacking
                else "no set of distinct providers can hold every node"
            )
            for order in orders:
                market.journal.deployment_event(
                    dep.id,
                    DeploymentEventKind.NO_ELIGIBLE_BID,
                    at_ms,
                    order=order,
                    message=f"gang of {gang.nodes}: {why}; no node is leased",
                )
        return
    for c, order in zip(picked.winners, orders, strict=True):
        assert c.allocation is not None
        market._create_lease(order, c.bid, c.bid.price_per_hour, c.allocation, at_ms)


def _eligible(
    market: MarketService, gang: GangSettings, node: int, order: Order
) -> list[Candidate]:
    found = []
    bids = market._order_bids.get(order.id, {}).values()
    open_bids = [b for b in bids if b.state == BidState.OPEN]
    for bid in auction.rank(open_bids):
        prov = market.state.providers[bid.provider]
        verdict = market._check(prov, order, bid.price_per_hour, bid.offer)
        if isinstance(verdict, str):
            market._decline(order, bid.provider, f"at auction close: {verdict}", True)
            continue
        short = link_problem(prov, gang)
        if short:
            market._decline(order, bid.provider, f"at auction close: {short}", True)
            continue
        found.append(Candidate(node, bid, provider_link(prov), verdict))
    return found


def stop_others(market: MarketService, dep: Deployment, lost: Lease, reason: CloseReason) -> None:
    """One node's lease closed (and the market re-ordered it, or not, by its own rule, with its
    backoff): close the rest of the gang now, and when the lost node is ordered again, order
    every other node again too. The gang's auction waits until every node's order is open.
    (This module is the market's own: it calls MarketService's private steps.)"""
    now = market.clock.now_ms()
    lost_order = market.state.orders[lost.order_id]
    message = f"gang stopped: rank {lost_order.gseq - 1} (lease {lost.id}) closed ({reason.value})"
    stopped: list[Order] = []
    for lease in list(market._dep_leases.get(dep.id, {}).values()):
        if lease.id == lost.id or lease.state == LeaseState.CLOSED:
            continue
        stopped.append(market.state.orders[lease.order_id])
        lease.message = message  # over its last status ("running"): why it stopped
        market._close_lease(lease, CloseReason.GANG_STOPPED, now, now, message, finishing=True)
    g = lost_order.gseq - 1
    again = market.state.orders[dep.group_orders[g]].state == OrderState.OPEN or (
        g < len(dep.reorder_at_ms) and dep.reorder_at_ms[g] > 0
    )
    if dep.state != DeploymentState.ACTIVE or not again:
        return  # the lost node is not ordered again (policy, or its failed starts): nor the rest
    for order in stopped:
        market._open_order(dep, order.gseq, order.oseq + 1, now)


# ==== the rendezvous ===========================================================================
@dataclass(frozen=True, slots=True)
class Rendezvous:
    """What one node needs to find the others (torch.distributed's env:// variables)."""

    gang_id: str  # the deployment id
    rank: int
    world_size: int
    master_addr: str
    master_port: int

    def environment(self) -> tuple[tuple[str, str], ...]:
        return (
            (RANK, str(self.rank)),
            (WORLD_SIZE, str(self.world_size)),
            (MASTER_ADDR, self.master_addr),
            (MASTER_PORT, str(self.master_port)),
            (GANG_ID, self.gang_id),
        )


def host_of(host_uri: str) -> str:
    """The host part of a provider's host_uri ("203.0.113.7", "https://gpu1.example:8443")."""
    if not host_uri:
        return ""
    return urlparse(host_uri if "//" in host_uri else f"//{host_uri}").hostname or ""


def rendezvous(market: MarketService, lease: Lease) -> Rendezvous | None:
    """The lease's place in its gang, or None when it is not a gang's."""
    dep = market.state.deployments.get(lease.deployment_id)
    if dep is None or dep.job.gang is None:
        return None
    order = market.state.orders[lease.order_id]
    first = market.state.orders.get(dep.group_orders[0]) if dep.group_orders else None
    master = market.state.leases.get(first.lease_id) if first is not None else None
    prov = market.state.providers.get(master.provider) if master is not None else None
    return Rendezvous(
        gang_id=dep.id,
        rank=order.gseq - 1,
        world_size=dep.job.gang.nodes,
        master_addr=(host_of(prov.host_uri) or "127.0.0.1") if prov is not None else "",
        master_port=dep.job.gang.port,
    )


def node_rendezvous(lease_id: str, gang: GangSettings, master_addr: str) -> Rendezvous:
    """A provider's view: rank, world size and port from what the tenant signed (the lease id's
    group and the SDL's gang), only rank 0's host from the market."""
    parts = lease_id.split("/")
    gseq = whole_number(parts[1]) if len(parts) >= 3 else None
    if gseq is None:
        raise ValueError(f"lease id {lease_id!r} has no group sequence (D<n>/<group>/<order>/...)")
    rank = gseq - 1
    if not 0 <= rank < gang.nodes:
        raise ValueError(f"lease {lease_id} is no node of a gang of {gang.nodes}")
    return Rendezvous(parts[0], rank, gang.nodes, master_addr, gang.port)


def check_groups(groups: Sequence[object], gang: GangSettings | None) -> None:
    """A gang deployment has one group per node (the parser orders its group `nodes` times)."""
    if gang is not None and len(groups) != gang.nodes:
        raise InvalidArgument(
            f"a gang of {gang.nodes} nodes needs {gang.nodes} groups, not {len(groups)}"
        )
