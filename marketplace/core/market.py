"""MarketService: the market's application service. Pure, synchronous, in memory; a Clock is passed in.

Every command validates first and mutates only after every check passed, so a command that
raises leaves the state untouched. Mutated records are marked; drain_changes() hands them (and
new ledger entries, events and declines) to the server, which writes them in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from marketplace.core.clock import Clock
from marketplace.core.resources import GroupSpec, JobSettings
from marketplace.core.state import (
    Account,
    AuditReport,
    Bid,
    Changes,
    Deployment,
    DeploymentEvent,
    Endpoint,
    Lease,
    MarketState,
    Offer,
    Order,
    OrderExplanation,
    PriceStat,
    ProviderEvent,
    ProviderRecord,
)


@dataclass(frozen=True)
class MarketConfig:
    heartbeat_timeout_ms: int = 30_000  # silent longer than this → offline, leases provider_lost
    heartbeat_interval_ms: int = 10_000  # what providers are told to use
    default_bid_window_ms: int = 5_000  # when a group's auction settings give none
    max_bids_per_order: int = 100
    manifest_timeout_ms: int = 600_000  # a lease still pending after this closes manifest_timeout
    reliability_prior_ok: float = 4.0  # Beta prior: a new provider scores 4/(4+1) = 0.8
    reliability_prior_bad: float = 1.0
    admin_address: str = ""  # the faucet key: the only signer fund() accepts
    min_deposit: int = 0
    denom: str = "uact"
    journal: bool = True  # mark changed records for drain_changes(); off for the simulator
    record_events: bool = True  # keep deployment/provider events; off for the simulator
    keep_ledger: bool = True  # keep every LedgerEntry in memory; balances are kept either way
    retain_closed: bool = True  # keep records of closed deployments; off to bound sim memory


class MarketService:
    def __init__(
        self, clock: Clock, config: MarketConfig | None = None, state: MarketState | None = None
    ) -> None:
        self.clock = clock
        self.config = config or MarketConfig()
        self.state = state or MarketState()

    # ---- accounts -----------------------------------------------------------------------
    def fund(self, signer: str, address: str, amount: int) -> Account:
        """Mint `amount` into `address` (faucet). Only config.admin_address may."""
        raise NotImplementedError

    def get_account(self, address: str) -> Account:
        """The account (a zero-balance one if it never received anything)."""
        raise NotImplementedError

    def escrowed(self, address: str) -> int:
        """What `address` holds in the escrows of its open deployments."""
        raise NotImplementedError

    # ---- deployments --------------------------------------------------------------------
    def create_deployment(
        self,
        owner: str,
        groups: Sequence[GroupSpec],
        job: JobSettings,
        sdl: bytes,
        sdl_sha256: bytes,
        tenant_request: bytes,
        deposit: int,
    ) -> Deployment:
        """Move `deposit` from the owner's account into the deployment's escrow and open one order
        per group, with the bid window from job.auction."""
        raise NotImplementedError

    def close_deployment(self, owner: str, deployment_id: str) -> Deployment:
        """Close its orders and leases (deployment_closed), settle, refund the escrow's rest."""
        raise NotImplementedError

    def deposit(self, owner: str, deployment_id: str, amount: int) -> Deployment:
        """Top up the escrow from the owner's account."""
        raise NotImplementedError

    def escrow_available(self, deployment_id: str) -> int:
        """Escrow left after what its open leases have accrued but not yet settled."""
        raise NotImplementedError

    def accept_bid(self, owner: str, bid_id: str) -> Lease:
        """Manual mode: the tenant picks any open, still-eligible bid; it is paid its own price."""
        raise NotImplementedError

    # ---- leases -------------------------------------------------------------------------
    def close_lease(self, actor: str, lease_id: str, message: str = "") -> Lease:
        """Tenant or provider closes a lease; settles; re-orders per the restart policy."""
        raise NotImplementedError

    def manifest_for(self, provider: str, lease_id: str) -> tuple[Deployment, GroupSpec]:
        """The deployment and group a lease runs; only the lease's provider may ask."""
        raise NotImplementedError

    def report_status(
        self,
        provider: str,
        lease_id: str,
        running: bool,
        exited: bool = False,
        exit_code: int = 0,
        oom_killed: bool = False,
        endpoints: Iterable[Endpoint] = (),
        message: str = "",
    ) -> Lease:
        """The provider reports a lease running, or exited: exit 0 → completed, else failed
        (re-ordered per the restart policy)."""
        raise NotImplementedError

    def settle(self, lease_id: str) -> Lease:
        """Pay the provider what the lease has accrued up to now (or its billing stop)."""
        raise NotImplementedError

    def settle_all(self) -> None:
        """settle() every open lease."""
        raise NotImplementedError

    # ---- providers ----------------------------------------------------------------------
    def register_provider(
        self,
        address: str,
        host_uri: str,
        attributes: dict[str, str],
        capacity: object,
        region: str = "",
        version: str = "",
    ) -> ProviderRecord:
        """Register or update a provider (capacity: matching.Capacity); it is online from now."""
        raise NotImplementedError

    def heartbeat(
        self,
        address: str,
        running_lease_ids: Iterable[str] = (),
        capacity: object | None = None,
        draining: bool = False,
    ) -> list[str]:
        """Provider is alive. Returns the lease ids among `running_lease_ids` it must stop
        (unknown or closed)."""
        raise NotImplementedError

    def place_bid(
        self, provider: str, order_id: str, price_per_hour: int, offer: Offer | None = None
    ) -> Bid:
        """Bid on an open order. Ineligible → a Decline(by_marketplace=True) is recorded and
        Ineligible(reason) raised."""
        raise NotImplementedError

    def withdraw_bid(self, provider: str, bid_id: str) -> Bid:
        raise NotImplementedError

    def decline_order(self, provider: str, order_id: str, reason: str) -> None:
        """The provider says why it will not bid (shown to the tenant by explain_order)."""
        raise NotImplementedError

    # ---- time ---------------------------------------------------------------------------
    def tick(self) -> None:
        """Do everything due by now: award closed bid windows, mark silent providers offline,
        close leases whose escrow ran dry or whose job hit max runtime or manifest timeout."""
        raise NotImplementedError

    def next_deadline_ms(self) -> int | None:
        """When tick() next has work; None when nothing is scheduled."""
        raise NotImplementedError

    # ---- journal ------------------------------------------------------------------------
    def drain_changes(self) -> Changes:
        """Records changed, and ledger entries/events/declines added, since the last drain."""
        raise NotImplementedError

    # ---- reads --------------------------------------------------------------------------
    def get_deployment(self, deployment_id: str) -> Deployment:
        raise NotImplementedError

    def list_deployments(
        self, owner: str | None = None, open_only: bool = False
    ) -> list[Deployment]:
        raise NotImplementedError

    def get_order(self, order_id: str) -> Order:
        raise NotImplementedError

    def list_orders(self, open_only: bool = False, deployment_id: str | None = None) -> list[Order]:
        raise NotImplementedError

    def list_bids(self, order_id: str) -> list[Bid]:
        raise NotImplementedError

    def get_bid(self, bid_id: str) -> Bid:
        raise NotImplementedError

    def explain_order(self, order_id: str) -> OrderExplanation:
        """The order, its bids, every decline with its reason, and a one-line summary."""
        raise NotImplementedError

    def get_lease(self, lease_id: str) -> Lease:
        raise NotImplementedError

    def list_leases(
        self,
        owner: str | None = None,
        provider: str | None = None,
        open_only: bool = False,
        deployment_id: str | None = None,
    ) -> list[Lease]:
        raise NotImplementedError

    def get_provider(self, address: str) -> ProviderRecord:
        raise NotImplementedError

    def list_providers(self) -> list[ProviderRecord]:
        raise NotImplementedError

    def provider_events_after(
        self, address: str, seq: int = 0, limit: int = 1000
    ) -> list[ProviderEvent]:
        """Events for `address` (and broadcasts) with seq > `seq`, oldest first."""
        raise NotImplementedError

    def deployment_events_after(self, deployment_id: str, seq: int = 0) -> list[DeploymentEvent]:
        raise NotImplementedError

    def price_stats(self, since_ms: int = 0) -> list[PriceStat]:
        """Per GPU model: p10/median/p90 of leases' price per GPU-hour, leases created since."""
        raise NotImplementedError

    def audit(self) -> AuditReport:
        """Ledger vs balances: Σ accounts + escrows == total minted, no negative balance, every
        entry > 0, and (when the ledger is kept) replaying it gives every balance."""
        raise NotImplementedError

    def reliability(self, address: str) -> float:
        """The provider's score in [0, 1] from its history (reliability.py)."""
        raise NotImplementedError
