"""The market's records: plain mutable slotted dataclasses keyed by string ids, held in MarketState.

MarketService (market.py) is the only writer. The server persists these records as they are
(every field is a str/int/bool/float, an enum (StrEnum), a frozen resources.* value, a
matching.Capacity, or a list/tuple/dict of those) and hands a loaded MarketState back at start;
the simulator keeps them in memory only. Indexes (open orders, leases per provider, deadlines)
are NOT part of the state: MarketService rebuilds them from the records. Events (their kinds
are in events.py) name records by id and also carry them; only the ids are stored, and the
journal (journal.py) attaches the records again to a loaded state's events.

Ledger convention: a LedgerEntry moves `amount` FROM `debit` (its balance goes down) TO `credit`
(its balance goes up), as on a bank statement. Account keys: "acct:<address>" (tenants and
providers alike), "escrow:<deployment id>", and "mint" (the faucet's source, the only key that
goes negative: its balance is minus the total minted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.matching import Capacity
from marketplace.core.resources import (
    AuctionSettings,
    GangSettings,
    GroupSpec,
    JobKind,
    JobSettings,
    Tier,
)

MINT = "mint"


def acct_key(address: str) -> str:
    return f"acct:{address}"


def escrow_key(deployment_id: str) -> str:
    return f"escrow:{deployment_id}"


class DeploymentState(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class OrderState(StrEnum):
    OPEN = "open"  # taking bids
    ACTIVE = "active"  # a lease was created from it
    CLOSED = "closed"


class BidState(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"  # the order closed without choosing this bid (no auction ran)


class LeaseState(StrEnum):
    PENDING = "pending"  # won; the provider is fetching the manifest / starting containers
    RUNNING = "running"  # the provider reported the workload running
    CLOSED = "closed"


class CloseReason(StrEnum):
    NONE = ""
    TENANT = "tenant"
    PROVIDER = "provider"
    COMPLETED = "completed"  # the workload exited 0
    FAILED = "failed"  # exited non-zero, OOM-killed, or could not start
    INSUFFICIENT_FUNDS = "insufficient_funds"  # the escrow ran dry
    PROVIDER_LOST = "provider_lost"  # the provider went silent past the heartbeat timeout
    MANIFEST_TIMEOUT = "manifest_timeout"  # the provider never started the workload
    DEPLOYMENT_CLOSED = "deployment_closed"  # the tenant closed the whole deployment
    GANG_STOPPED = "gang_stopped"  # another node of its gang was lost (core/gang.py)
    PREEMPTED = "preempted"  # a spot lease evicted for an on-demand order (core/spot.py)


@dataclass(slots=True)
class Account:
    address: str
    balance: int = 0  # spendable micro-units


@dataclass(slots=True)
class Deployment:
    id: str  # "D<n>"
    owner: str
    state: DeploymentState
    groups: tuple[GroupSpec, ...]
    job: JobSettings
    # sdl and tenant_request (opaque: the tenant's serialized signed request, for end-to-end
    # checks) are held until the server stored them (empty afterwards: archive.manifest()).
    # Both may hold a registry password (SDL `credentials`): never in repr().
    sdl: bytes = field(repr=False)
    sdl_sha256: bytes
    tenant_request: bytes = field(repr=False)
    deposited: int  # total ever deposited
    escrow: int  # what the escrow account holds now (settled payments already left it)
    created_at_ms: int
    closed_at_ms: int = 0
    group_orders: list[str] = field(default_factory=list)  # gseq-1 → that group's current order id
    order_ids: list[str] = field(default_factory=list)  # every order ever opened, in order
    lease_ids: list[str] = field(default_factory=list)  # every lease ever created, in order
    # per group (gseq-1), see market.py's "Failed starts": leases in a row that failed to start
    # or failed quickly, and when a delayed re-order is due (0: none)
    failed_starts: list[int] = field(default_factory=list)
    reorder_at_ms: list[int] = field(default_factory=list)
    # escrow.py: an escrow_low event was sent for the current crossing (cleared once above it);
    # the auto top-up's step, its cap over the deployment's life, and what it moved so far
    escrow_low: bool = False
    auto_top_up: int = 0
    auto_top_up_max: int = 0
    auto_topped_up: int = 0
    # update in place (manifest/update.py): 1 for the SDL it was created with, +1 per update;
    # sdl and tenant_request are then the current version's (the signed UpdateDeployment)
    version: int = 1


@dataclass(slots=True)
class Order:
    id: str  # "<deployment>/<gseq>/<oseq>"
    deployment_id: str
    owner: str
    gseq: int
    oseq: int
    group: GroupSpec
    auction: AuctionSettings
    state: OrderState
    created_at_ms: int
    closes_at_ms: int  # end of the bid window
    job_kind: JobKind
    lease_id: str = ""  # the lease created from it, if any
    excluded_provider: str = ""  # failed to start the group's last lease: no bid in this window
    tier: Tier = Tier.ON_DEMAND  # the deployment's: spot orders' leases are pre-emptible
    # the deployment's gang, when the order is one of its nodes (node gseq-1): on the order, so
    # a provider knows from the feed alone that it bids for one node of several (core/gang.py)
    gang: GangSettings | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """What a provider says it will run the order on (informational, and for price statistics)."""

    gpu_models: tuple[str, ...] = ()
    gpu_uuids: tuple[str, ...] = ()
    driver_version: str = ""
    cuda_version: str = ""
    price_per_gpu_hour: int = 0
    region: str = ""
    # spot leases of this provider it stops to make room, should the bid win (core/spot.py)
    preempts: tuple[str, ...] = ()


@dataclass(slots=True)
class Bid:
    id: str  # "<order id>/<provider address>"
    order_id: str
    provider: str
    price_per_hour: int
    state: BidState
    created_at_ms: int
    reliability: float  # the provider's score when the bid was placed
    offer: Offer = field(default_factory=Offer)
    seq: int = 0  # global arrival order: "earlier bid" in the tie-break, even within one ms


@dataclass(frozen=True, slots=True)
class Endpoint:
    service: str
    port: int
    host: str = ""
    external_port: int = 0
    proto: str = "tcp"
    uri: str = ""


@dataclass(slots=True)
class Lease:
    id: str  # the winning bid's id
    order_id: str
    deployment_id: str
    tenant: str
    provider: str
    price_per_hour: int  # what the tenant pays (first- or second-price)
    state: LeaseState
    created_at_ms: int
    bid_price_per_hour: int = 0  # the winner's own bid
    close_reason: CloseReason = CloseReason.NONE
    running_at_ms: int = 0
    closed_at_ms: int = 0
    billed_until_ms: int = 0  # billing has been settled up to here; stops at close/last heartbeat
    paid: int = 0  # settled to the provider so far
    exit_code: int = 0
    message: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    started: bool = False  # reported running at least once: billing runs from running_at_ms
    # what it holds of the provider's capacity (from matching.allocate at award time)
    gpu_uuids: tuple[str, ...] = ()
    gpu_models: tuple[str, ...] = ()
    cpu_millis: int = 0
    memory_bytes: int = 0
    storage_bytes: int = 0
    # update in place: the deployment version the provider reported running (0: none yet),
    # and the last version it failed to run (it then runs `version` again)
    version: int = 0
    failed_version: int = 0
    # its order's (the deployment's) tier: a spot lease may be pre-empted (core/spot.py); on the
    # lease too, so its provider knows it from the lease alone, after a restart as well
    tier: Tier = Tier.ON_DEMAND


@dataclass(slots=True)
class ProviderRecord:
    address: str
    host_uri: str
    attributes: dict[str, str]
    capacity: Capacity  # the provider's total resources, GPU devices included
    region: str
    version: str
    registered_at_ms: int
    last_heartbeat_ms: int
    online: bool = True
    draining: bool = False
    # history, for reliability (reliability.py)
    uptime_ms: int = 0  # summed online time, credited at each heartbeat
    downtime_ms: int = 0  # summed time between going offline and coming back
    leases_ok: int = 0  # closed completed / by tenant / by deployment close after running
    leases_lost: int = 0  # closed provider_lost
    failed_starts: int = 0  # closed manifest_timeout, or failed before reporting running
    leases_failed: int = 0  # workload failed after running (counted, not held against it)


@dataclass(frozen=True, slots=True)
class Decline:
    order_id: str
    provider: str
    reason: str
    time_ms: int
    by_marketplace: bool  # True: the marketplace refused the provider's bid as ineligible


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """Moves `amount` (> 0) FROM `debit` TO `credit` (see the module docstring)."""

    id: int
    time_ms: int
    debit: str
    credit: str
    amount: int
    memo: str
    lease_id: str = ""


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """Something that happened to a deployment (kinds: events.py). It names records by id and
    carries them (the live records, not copies); the store keeps only the ids, and a loaded
    market attaches the records again (journal.py)."""

    seq: int
    time_ms: int
    deployment_id: str
    kind: DeploymentEventKind
    order_id: str = ""
    bid_id: str = ""
    lease_id: str = ""
    message: str = ""
    # the records named above; what the event says is its ids (equality and repr ignore these)
    order: Order | None = field(default=None, compare=False, repr=False)
    bid: Bid | None = field(default=None, compare=False, repr=False)
    lease: Lease | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_records(
        cls,
        seq: int,
        time_ms: int,
        deployment_id: str,
        kind: DeploymentEventKind,
        *,
        order: Order | None = None,
        bid: Bid | None = None,
        lease: Lease | None = None,
        message: str = "",
    ) -> DeploymentEvent:
        """The event carrying these records, naming each by its id."""
        return cls(
            seq,
            time_ms,
            deployment_id,
            kind,
            order_id="" if order is None else order.id,
            bid_id="" if bid is None else bid.id,
            lease_id="" if lease is None else lease.id,
            message=message,
            order=order,
            bid=bid,
            lease=lease,
        )


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """What one provider (or, with provider "", every provider) is told; kinds: events.py.
    Carries the records it names, as DeploymentEvent does."""

    seq: int
    time_ms: int
    provider: str  # "" = broadcast to every provider
    kind: ProviderEventKind
    order_id: str = ""
    bid_id: str = ""
    lease_id: str = ""
    # the records named above; what the event says is its ids (equality and repr ignore these)
    order: Order | None = field(default=None, compare=False, repr=False)
    bid: Bid | None = field(default=None, compare=False, repr=False)
    lease: Lease | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_records(
        cls,
        seq: int,
        time_ms: int,
        provider: str,
        kind: ProviderEventKind,
        *,
        order: Order,
        bid: Bid | None = None,
        lease: Lease | None = None,
    ) -> ProviderEvent:
        """The event about `order` carrying these records, naming each by its id."""
        return cls(
            seq,
            time_ms,
            provider,
            kind,
            order_id=order.id,
            bid_id="" if bid is None else bid.id,
            lease_id="" if lease is None else lease.id,
            order=order,
            bid=bid,
            lease=lease,
        )


# The fields of an event that hold records: never stored (the ids are), attached again on load.
EVENT_RECORD_FIELDS = ("order", "bid", "lease")


@dataclass(slots=True)
class MarketState:
    """The market state held in memory: everything that can still change, i.e. all but the
    records of closed deployments once stored (those are in the archive, archive.py). Loaded
    by the server from SQLite; empty for a fresh market."""

    accounts: dict[str, Account] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    bids: dict[str, Bid] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    providers: dict[str, ProviderRecord] = field(default_factory=dict)
    declines: dict[str, list[Decline]] = field(default_factory=dict)  # order id → declines
    ledger: list[LedgerEntry] = field(default_factory=list)  # empty when config.keep_ledger=False
    deployment_events: list[DeploymentEvent] = field(default_factory=list)  # by seq
    provider_events: list[ProviderEvent] = field(default_factory=list)  # by seq
    total_minted: int = 0
    next_deployment: int = 1
    next_ledger_id: int = 1
    next_event_seq: int = 1  # shared by deployment and provider events
    next_bid_seq: int = 1


@dataclass(slots=True)
class Changes:
    """What changed since the last drain: write it in one transaction."""

    accounts: list[Account] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    bids: list[Bid] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    providers: list[ProviderRecord] = field(default_factory=list)
    declines: list[Decline] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    deployment_events: list[DeploymentEvent] = field(default_factory=list)
    provider_events: list[ProviderEvent] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # MarketState's next_* and total_minted

    def __bool__(self) -> bool:
        return any(
            (
                self.accounts,
                self.deployments,
                self.orders,
                self.bids,
                self.leases,
                self.providers,
                self.declines,
                self.ledger,
                self.deployment_events,
                self.provider_events,
            )
        )


@dataclass(frozen=True, slots=True)
class AuditReport:
    balanced: bool
    entries: int
    total_minted: int
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderExplanation:
    order: Order
    bids: tuple[Bid, ...]
    declines: tuple[Decline, ...]
    summary: str  # one line a person can act on


@dataclass(frozen=True, slots=True)
class PriceStat:
    gpu_model: str
    samples: int
    p10: int  # micro-units per GPU-hour
    median: int
    p90: int
