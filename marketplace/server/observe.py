"""What an operator sees of the running market: its events as log lines, its figures as metrics.

MarketObserver is told every command's Changes once they are durable (MarketApp.observers), so
it never says what a crash could take back. It derives everything from the core's typed events
(events.py) and the records a Changes carries, and keeps the core free of logging:

- log lines at info: provider registered / back online / lost (from the providers' records:
  the core emits no provider events), deployment created / closed, order opened / reopened / no
  eligible bid, lease created / running / closed (with its reason), failover (a lease lost with
  its provider and its group ordered again), escrow ran dry; at debug: bids and declines;
- figures: gauges kept up to date from the records that changed (never a scan of the state on
  a scrape), counters from the events and the ledger entries.

Nothing secret is logged: ids, addresses, prices, reasons; never a signature, an SDL or its
env, a registry credential, nor a tenant's log line. Text a client chose (a provider's region, a
decline reason) is escaped and cut by the formatter (logs.py).

Observability bundles it with the request interceptor and the /metrics server for serve.py.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from marketplace.core import gpus
from marketplace.core.clock import Clock
from marketplace.core.events import DeploymentEventKind
from marketplace.core.state import (
    Changes,
    CloseReason,
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Lease,
    LeaseState,
    LedgerEntry,
    MarketState,
    Order,
    OrderState,
    ProviderRecord,
)
from marketplace.server.interceptors import ObservingInterceptor, RequestFigures
from marketplace.server.logs import FieldValue, fields
from marketplace.server.metrics import MetricsServer, Registry

log = logging.getLogger("gpumarket.market")

_ESCROW = "escrow:"
_LIVE_LEASE_STATES = (LeaseState.PENDING, LeaseState.RUNNING)


class MarketFigures:
    """The market's metrics, in the server's registry."""

    def __init__(self, registry: Registry) -> None:
        gauge, counter = registry.gauge, registry.counter
        self.start_time = gauge(
            "gpumarket_start_time_seconds", "When this server started (Unix time, seconds)."
        )
        self.providers_online = gauge(
            "gpumarket_providers_online", "Providers registered and heartbeating."
        )
        self.gpus_online = gauge(
            "gpumarket_gpus_online",
            "Healthy GPUs of online providers, by canonical model (names not in the registry: "
            "other).",
            ("model",),
        )
        self.orders_open = gauge("gpumarket_orders_open", "Orders taking bids.")
        self.deployments_active = gauge("gpumarket_deployments_active", "Deployments not closed.")
        self.leases = gauge(
            "gpumarket_leases",
            "Leases not closed, by state (pending: won, workload not reported running yet).",
            ("state",),
        )
        self.leases_closed = counter(
            "gpumarket_leases_closed_total", "Leases closed, by reason.", ("reason",)
        )
        self.bids = counter("gpumarket_bids_total", "Eligible bids placed.")
        self.awards = counter(
            "gpumarket_awards_total", "Bids that won a lease (at a window's close or accepted)."
        )
        self.no_winner = counter(
            "gpumarket_auctions_without_winner_total",
            "Bid windows that closed with no eligible bid (the order stays open).",
        )
        self.failovers = counter(
            "gpumarket_failovers_total",
            "Leases lost with their provider whose group was ordered again.",
        )
        self.providers_lost = counter(
            "gpumarket_providers_lost_total", "Providers that went silent past the timeout."
        )
        self.escrow_held = gauge(
            "gpumarket_escrow_held_microunits", "Money in the escrow of active deployments."
        )
        self.escrow_deposited = counter(
            "gpumarket_escrow_deposited_microunits_total", "Money paid into escrows by tenants."
        )
        self.escrow_paid = counter(
            "gpumarket_escrow_paid_microunits_total", "Money paid from escrows to providers."
        )
        self.escrow_refunded = counter(
            "gpumarket_escrow_refunded_microunits_total",
            "Money refunded from escrows to tenants when their deployment closed.",
        )
        for state in _LIVE_LEASE_STATES:
            self.leases.set(0, (state.value,))


def gpu_label(model: str) -> str:
    """A label value from the registry's few names: a provider cannot mint label values."""
    return model if gpus.is_known(model) else "other"


@dataclass(slots=True)
class _Seen:
    """What the observer last saw of a provider."""

    online: bool
    gpus: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Batch:
    """What one command's changes hold, for the lines that need more than one event."""

    deployments: dict[str, Deployment]
    dry: set[str] = field(default_factory=set)  # deployments whose leases closed for funds


class MarketObserver:
    """Log lines and figures from each durable Changes (see the module's docstring)."""

    def __init__(self, figures: MarketFigures, state: MarketState, clock: Clock) -> None:
        self.figures = figures
        self.clock = clock
        # each kept with its sum, so a command costs what it changed, never a scan of them all
        self._providers: dict[str, _Seen] = {}
        self._online = 0  # providers online
        self._gpus_online: Counter[str] = Counter()  # model → GPUs of online providers
        self._open_orders: set[str] = set()
        self._escrows: dict[str, int] = {}  # active deployment → its escrow
        self._held = 0  # Σ _escrows
        self._leases: dict[str, LeaseState] = {}  # leases not closed
        self._lease_states: Counter[LeaseState] = Counter()  # Σ _leases by state
        # deployment → gseq → the group's lease that closed, until the group is ordered again
        # or its deployment closes (a re-order may come in a later command than the close);
        # by deployment, so a close forgets its groups without a scan of every deployment's
        self._closed_groups: dict[str, dict[int, Lease]] = {}
        self._seed(state)
        figures.start_time.set(round(time.time(), 3))

    def _seed(self, state: MarketState) -> None:
        """What the loaded state holds (once, at start)."""
        for prov in state.providers.values():
            self._see_provider(prov)
        for order in state.orders.values():
            self._see_order(order)
        for dep in state.deployments.values():
            self._see_deployment(dep)
        for lease in state.leases.values():
            self._see_lease(lease)
        self._set_gauges()

    # --- a command's changes -------------------------------------------------------------------
    def __call__(self, changes: Changes) -> None:
        now_ms = self.clock.now_ms()
        for prov in changes.providers:
            self._provider(prov, now_ms)
        batch = _Batch({d.id: d for d in changes.deployments})
        for event in changes.deployment_events:
            self._event(event, batch)
        for order in changes.orders:
            self._see_order(order)
        for dep in changes.deployments:
            self._see_deployment(dep)
        for lease in changes.leases:
            self._see_lease(lease)
        for entry in changes.ledger:
            self._money(entry)
        if changes.providers or changes.orders or changes.deployments or changes.leases:
            self._set_gauges()  # (a bid alone moves none of them: most commands under load)

    def _set_gauges(self) -> None:
        f = self.figures
        f.providers_online.set(self._online)
        f.gpus_online.replace({(model,): n for model, n in self._gpus_online.items() if n})
        f.orders_open.set(len(self._open_orders))
        f.deployments_active.set(len(self._escrows))
        f.escrow_held.set(self._held)
        for state in _LIVE_LEASE_STATES:
            f.leases.set(self._lease_states[state], (state.value,))

    # --- the records' latest state -------------------------------------------------------------
    def _see_provider(self, prov: ProviderRecord) -> _Seen | None:
        """Note `prov` as it is now; returns what was seen of it before (None: never)."""
        before = self._providers.get(prov.address)
        if before is not None and before.online:
            self._gpus_online.subtract(before.gpus)
            self._online -= 1
        seen = self._providers[prov.address] = _seen(prov)
        if seen.online:
            self._gpus_online.update(seen.gpus)
            self._online += 1
        return before

    def _see_order(self, order: Order) -> None:
        if order.state == OrderState.OPEN:
            self._open_orders.add(order.id)
        else:
            self._open_orders.discard(order.id)

    def _see_deployment(self, dep: Deployment) -> None:
        self._held -= self._escrows.pop(dep.id, 0)
        if dep.state == DeploymentState.ACTIVE:
            self._escrows[dep.id] = dep.escrow
            self._held += dep.escrow

    def _see_lease(self, lease: Lease) -> None:
        before = self._leases.pop(lease.id, None)
        if before is not None:
            self._lease_states[before] -= 1
        if lease.state != LeaseState.CLOSED:
            self._leases[lease.id] = lease.state
            self._lease_states[lease.state] += 1

    # --- providers -----------------------------------------------------------------------------
    def _provider(self, prov: ProviderRecord, now_ms: int) -> None:
        before = self._see_provider(prov)
        seen = self._providers[prov.address]
        if before is None:
            _info(
                "provider registered",
                provider=prov.address,
                region=prov.region,
                gpus=sum(seen.gpus.values()),
                models=",".join(sorted(seen.gpus)),
                version=prov.version,
            )
        elif prov.online and not before.online:
            _info("provider back online", provider=prov.address, gpus=sum(seen.gpus.values()))
        elif before.online and not prov.online:
            self.figures.providers_lost.inc()
            _info(
                "provider lost",
                provider=prov.address,
                silent_s=round((now_ms - prov.last_heartbeat_ms) / 1000, 1),
            )

    # --- deployment events ---------------------------------------------------------------------
    def _event(self, event: DeploymentEvent, batch: _Batch) -> None:
        kind, dep_id, f = event.kind, event.deployment_id, self.figures
        order, lease = event.order, event.lease
        if kind == DeploymentEventKind.DEPLOYMENT_CREATED:
            dep = batch.deployments.get(dep_id)
            _info(
                "deployment created",
                deployment=dep_id,
                tenant=dep.owner if dep else None,
                groups=len(dep.groups) if dep else None,
                deposit=dep.deposited if dep else None,
            )
        elif kind == DeploymentEventKind.ORDER_OPENED and order is not None:
            window_ms = order.closes_at_ms - order.created_at_ms
            _info("order opened", order=order.id, deployment=dep_id, bid_window_ms=window_ms)
        elif kind == DeploymentEventKind.ORDER_REOPENED and order is not None:
            self._reopened(event)
        elif kind == DeploymentEventKind.BID_PLACED and event.bid is not None:
            f.bids.inc()
            bid = event.bid
            _debug(
                "bid placed", order=bid.order_id, provider=bid.provider, price=bid.price_per_hour
            )
        elif kind == DeploymentEventKind.BID_DECLINED:
            _debug("bid declined", order=event.order_id, reason=event.message)
        elif kind == DeploymentEventKind.NO_ELIGIBLE_BID:
            f.no_winner.inc()
            _info("no eligible bid", order=event.order_id, deployment=dep_id, why=event.message)
        elif kind == DeploymentEventKind.LEASE_CREATED and lease is not None:
            f.awards.inc()
            _info(
                "lease created",
                lease=lease.id,
                order=lease.order_id,
                deployment=dep_id,
                provider=lease.provider,
                price=lease.price_per_hour,
            )
        elif kind == DeploymentEventKind.LEASE_RUNNING and lease is not None:
            _info("lease running", lease=lease.id, deployment=dep_id, provider=lease.provider)
        elif kind == DeploymentEventKind.LEASE_CLOSED and lease is not None:
            self._lease_closed(lease, event, batch)
        elif kind == DeploymentEventKind.ORDER_CLOSED:
            _debug("order closed", order=event.order_id, deployment=dep_id, why=event.message)
        elif kind == DeploymentEventKind.DEPLOYMENT_CLOSED:
            if dep_id in batch.dry:
                _info("escrow ran dry", deployment=dep_id)
            _info("deployment closed", deployment=dep_id, why=event.message)
            self._closed_groups.pop(dep_id, None)

    def _lease_closed(self, lease: Lease, event: DeploymentEvent, batch: _Batch) -> None:
        reason = lease.close_reason
        self.figures.leases_closed.inc(1, (reason.value or "unknown",))
        if event.order is not None:
            self._closed_groups.setdefault(lease.deployment_id, {})[event.order.gseq] = lease
        if reason == CloseReason.INSUFFICIENT_FUNDS:
            batch.dry.add(lease.deployment_id)
        _info(
            "lease closed",
            lease=lease.id,
            deployment=lease.deployment_id,
            provider=lease.provider,
            reason=reason.value,
            paid=lease.paid,
        )

    def _reopened(self, event: DeploymentEvent) -> None:
        """A group ordered again: a failover when its lease was lost with its provider."""
        order = event.order
        assert order is not None
        groups = self._closed_groups.get(event.deployment_id, {})
        closed = groups.pop(order.gseq, None)
        if not groups:
            self._closed_groups.pop(event.deployment_id, None)
        if closed is None or closed.close_reason != CloseReason.PROVIDER_LOST:
            _info(
                "order reopened",
                order=order.id,
                deployment=event.deployment_id,
                lease=closed.id if closed else None,
                after=closed.close_reason.value if closed else None,
            )
            return
        self.figures.failovers.inc()
        _info(
            "failover",
            deployment=event.deployment_id,
            lease=closed.id,
            provider=closed.provider,
            reason=closed.close_reason.value,
            order=order.id,
        )

    # --- money ---------------------------------------------------------------------------------
    def _money(self, entry: LedgerEntry) -> None:
        f = self.figures
        if entry.credit.startswith(_ESCROW):
            f.escrow_deposited.inc(entry.amount)
        elif entry.debit.startswith(_ESCROW):
            # from an escrow: for a lease, a payment; otherwise the rest back to its tenant
            (f.escrow_paid if entry.lease_id else f.escrow_refunded).inc(entry.amount)


def _seen(prov: ProviderRecord) -> _Seen:
    return _Seen(prov.online, Counter(gpu_label(d.variant.model) for d in prov.capacity.gpus))


def _info(message: str, **values: FieldValue) -> None:
    log.info(message, extra=fields(**values))


def _debug(message: str, **values: FieldValue) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(message, extra=fields(**values))


class Observability:
    """The market's logs and metrics, for one server: the interceptor to install, the observer
    to subscribe, and (with a metrics address) the /metrics server."""

    def __init__(self, state: MarketState, clock: Clock) -> None:
        self.registry = Registry()
        self.observer = MarketObserver(MarketFigures(self.registry), state, clock)
        self.interceptor = ObservingInterceptor(RequestFigures(self.registry))
        self.metrics_server: MetricsServer | None = None

    def serve_metrics(self, host: str, port: int) -> str:
        """Serve /metrics on HOST:PORT (port 0: any); returns the bound HOST:PORT."""
        self.metrics_server = MetricsServer(self.registry, host, port)
        self.metrics_server.start()
        return self.metrics_server.address

    def close(self) -> None:
        self.interceptor.throttle.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
