"""MarketConfig: the market's settings, shared by its command side (market.py) and read side
(reads.py). The server builds one from its flags; the simulator turns off what it need not keep."""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.core.limits import MAX_AMOUNT

# The longest bid window a manifest may ask for (gpumarket.auction.bid_window): a provider holds
# capacity for its bid while the window is open, so the window bounds that hold. Akash's
# providers give up on a bid after 5 minutes too.
MAX_BID_WINDOW_MS = 300_000


@dataclass(frozen=True)
class MarketConfig:
    heartbeat_timeout_ms: int = 30_000  # silent longer than this → offline, leases provider_lost
    heartbeat_interval_ms: int = 10_000  # what providers are told to use
    default_bid_window_ms: int = 5_000  # when a group's auction settings give none
    max_bids_per_order: int = 100  # open bids; withdrawn/lost ones do not count
    manifest_timeout_ms: int = 600_000  # a lease still pending after this closes manifest_timeout
    reliability_prior_ok: float = 4.0  # Beta prior: a new provider scores 4/(4+1) = 0.8
    reliability_prior_bad: float = 1.0
    admin_address: str = ""  # the faucet key: the only signer fund() accepts
    min_deposit: int = 1
    # the most money that may ever be minted (so no balance passes the store's int64); None is
    # no cap, for the simulator alone, whose books never reach a store
    mint_limit: int | None = MAX_AMOUNT
    denom: str = "uact"
    journal: bool = True  # mark changed records for drain_changes(); off for the simulator
    record_events: bool = True  # keep deployment/provider events; off for the simulator
    keep_ledger: bool = True  # keep every LedgerEntry in memory; balances are kept either way
    # keep a closed deployment's records until the server has stored them (committed());
    # off: they leave memory as it closes (the simulator, which stores nothing)
    retain_closed: bool = True
    # False: tick() never expires providers by itself; the caller reports silent ones with
    # provider_silent() (the simulator models liveness analytically instead of heartbeating)
    heartbeat_expiry: bool = True
    # provider events kept in memory for provider_events_after (the server persists all of them);
    # a provider resuming from an older token gets a fresh snapshot (open orders, its leases)
    provider_event_retention: int = 10_000
    # --- what an order may hold (market.py, "Reservations") ---
    max_bid_window_ms: int = MAX_BID_WINDOW_MS
    # a manual order closes (its bids lapse) this long after its bid window if no bid was accepted
    manual_accept_ms: int = 300_000
    # a deposit must pay every group's maximum price for this long (or for max_runtime if shorter):
    # as long as the longest reservation an order can make (window + manual acceptance)
    min_escrow_ms: int = MAX_BID_WINDOW_MS + 300_000
    # a deployment whose escrow lasts at most this long at its current rate gets escrow_low
    # (escrow.py); 0: never
    escrow_low_ms: int = 3_600_000
    # --- re-orders after failed starts (market.py, "Failed starts") ---
    quick_failure_ms: int = 60_000  # a lease that fails sooner after running "failed quickly"
    reorder_backoff_ms: int = 5_000  # wait before the 2nd re-order in a row; doubles each time
    reorder_backoff_max_ms: int = 300_000
    max_failed_starts: int = 5  # after this many in a row the group is not ordered again
    # --- auditors (attestations.py): whose signed provider attributes satisfy signedBy ---
    auditors: frozenset[str] = frozenset()  # trusted auditor addresses
    auditor_aliases: tuple[tuple[str, str], ...] = ()  # (foreign name in SDLs, local auditor)
