"""Random sequences of market commands keep the books balanced and every record legal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVarTuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import MarketError
from marketplace.core.gpus import GpuVariant
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.resources import (
    AuctionSettings,
    GpuOption,
    GpuRequest,
    GroupSpec,
    JobKind,
    JobSettings,
    Payment,
    PlacementRequirements,
    ResourceUnit,
    RestartPolicy,
)
from marketplace.core.state import (
    BidState,
    CloseReason,
    DeploymentState,
    LeaseState,
    OrderState,
)

ADMIN = "admin"
TENANTS = ("t1", "t2")
PROVIDERS = ("p1", "p2", "p3")
GIB = 1024**3
VARIANTS = (GpuVariant("h100", 80, "sxm"), GpuVariant("a100", 80, "sxm"))

Args = TypeVarTuple("Args")

prices = st.integers(min_value=1, max_value=20 * money.MICRO)


def group(name: str, gpus: int, model: str, max_price: int) -> GroupSpec:
    unit = ResourceUnit(
        services=(name,),
        count=1,
        cpu_millis=1000,
        memory_bytes=GIB,
        gpu=GpuRequest(gpus, (GpuOption(model),)),
        max_price_per_hour=max_price,
    )
    return GroupSpec(name, PlacementRequirements(), (unit,))


class MarketMachine(RuleBasedStateMachine):
    config = MarketConfig(admin_address=ADMIN, manifest_timeout_ms=120_000)

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(0)
        self.market = MarketService(self.clock, self.config)
        for i, address in enumerate(PROVIDERS):
            devices = tuple(GpuDevice(f"{address}-{n}", VARIANTS[i % 2]) for n in range(4))
            self.market.register_provider(
                address, f"https://{address}", {}, Capacity(16_000, 64 * GIB, 1000 * GIB, devices)
            )
        for tenant in TENANTS:
            self.market.fund(ADMIN, tenant, 200 * money.MICRO)
        self.silent: set[str] = set()

    def attempt(self, call: Callable[[*Args], object], *args: *Args) -> None:
        with contextlib.suppress(MarketError):  # refusals are fine; invariants hold either way
            call(*args)

    # ---- tenants --------------------------------------------------------------------------
    @rule(tenant=st.sampled_from(TENANTS), amount=st.integers(1, 500 * money.MICRO))
    def fund(self, tenant: str, amount: int) -> None:
        self.market.fund(ADMIN, tenant, amount)

    @rule(
        tenant=st.sampled_from(TENANTS),
        groups=st.lists(
            st.tuples(st.integers(0, 3), st.sampled_from(["h100", "a100", "*"]), prices),
            min_size=1,
            max_size=2,
        ),
        deposit=st.integers(1, 50 * money.MICRO),
        payment=st.sampled_from(list(Payment)),
        manual=st.booleans(),
        restart=st.sampled_from(list(RestartPolicy)),
        kind=st.sampled_from(list(JobKind)),
        max_runtime=st.none() | st.integers(1, 3_600_000),
    )
    def deploy(
        self,
        tenant: str,
        groups: list[tuple[int, str, int]],
        deposit: int,
        payment: Payment,
        manual: bool,
        restart: RestartPolicy,
        kind: JobKind,
        max_runtime: int | None,
    ) -> None:
        specs = [group(f"g{i}", n, m, p) for i, (n, m, p) in enumerate(groups)]
        job = JobSettings(
            kind=kind,
            max_runtime_ms=max_runtime,
            restart_policy=restart,
            auction=AuctionSettings(bid_window_ms=5_000, payment=payment, manual=manual),
        )
        self.attempt(
            lambda: self.market.create_deployment(tenant, specs, job, b"", b"", b"", deposit)
        )

    @precondition(lambda self: self.market.state.deployments)
    @rule(data=st.data(), amount=st.integers(1, 20 * money.MICRO))
    def deposit(self, data: st.DataObject, amount: int) -> None:
        dep = data.draw(st.sampled_from(sorted(self.market.state.deployments)))
        owner = self.market.state.deployments[dep].owner
        self.attempt(lambda: self.market.deposit(owner, dep, amount))

    @precondition(lambda self: self.market.state.deployments)
    @rule(data=st.data())
    def close_deployment(self, data: st.DataObject) -> None:
        dep = data.draw(st.sampled_from(sorted(self.market.state.deployments)))
        owner = data.draw(st.sampled_from([self.market.state.deployments[dep].owner, "t9"]))
        self.attempt(lambda: self.market.close_deployment(owner, dep))

    @precondition(lambda self: self.market.state.bids)
    @rule(data=st.data())
    def accept(self, data: st.DataObject) -> None:
        bid = self.market.state.bids[data.draw(st.sampled_from(sorted(self.market.state.bids)))]
        owner = self.market.state.orders[bid.order_id].owner
        self.attempt(lambda: self.market.accept_bid(owner, bid.id))

    # ---- providers ------------------------------------------------------------------------
    @precondition(lambda self: self.market.list_orders(open_only=True))
    @rule(data=st.data(), provider=st.sampled_from(PROVIDERS))
    def bid(self, data: st.DataObject, provider: str) -> None:
        orders = sorted(o.id for o in self.market.list_orders(open_only=True))
        order_id = data.draw(st.sampled_from(orders))
        maximum = self.market.get_order(order_id).group.max_price_per_hour
        price = data.draw(st.integers(1, maximum + maximum // 5 + 1))  # mostly under the max
        self.attempt(lambda: self.market.place_bid(provider, order_id, price))

    @precondition(lambda self: self.market.list_orders(open_only=True))
    @rule(data=st.data())
    def auction_round(self, data: st.DataObject) -> None:
        """Every provider bids on every open order, then the windows close."""
        for order in sorted(self.market.list_orders(open_only=True), key=lambda o: o.id):
            for provider in PROVIDERS:
                price = data.draw(st.integers(1, order.group.max_price_per_hour + 1))
                self.attempt(self.market.place_bid, provider, order.id, price)
        self.advance(6_000)
        for lease in list(self.market.state.leases.values()):
            if lease.state == LeaseState.PENDING and data.draw(st.booleans()):
                self.market.report_status(lease.provider, lease.id, True)

    @precondition(lambda self: self.market.state.bids)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        bid = self.market.state.bids[data.draw(st.sampled_from(sorted(self.market.state.bids)))]
        self.attempt(lambda: self.market.withdraw_bid(bid.provider, bid.id))

    @precondition(lambda self: self.market.state.leases)
    @rule(data=st.data(), what=st.sampled_from(["running", "exit0", "exit1", "oom", "close"]))
    def report(self, data: st.DataObject, what: str) -> None:
        lease = self.market.state.leases[
            data.draw(st.sampled_from(sorted(self.market.state.leases)))
        ]
        m, p = self.market, lease.provider
        if what == "running":
            self.attempt(lambda: m.report_status(p, lease.id, True))
        elif what == "close":
            actor = data.draw(st.sampled_from([lease.tenant, lease.provider]))
            self.attempt(lambda: m.close_lease(actor, lease.id))
        else:
            code = 0 if what == "exit0" else 1
            self.attempt(lambda: m.report_status(p, lease.id, False, True, code, what == "oom"))

    @rule(provider=st.sampled_from(PROVIDERS), silent=st.booleans())
    def set_silent(self, provider: str, silent: bool) -> None:
        (self.silent.add if silent else self.silent.discard)(provider)

    @rule(ms=st.integers(1, 40_000))
    def advance(self, ms: int) -> None:
        """Time passes; the providers that are not silent heartbeat every 10 s."""
        while ms > 0:
            step = min(ms, 10_000)
            self.clock.advance(step)
            ms -= step
            for address in PROVIDERS:
                if address not in self.silent:
                    running = [
                        x.id for x in self.market.list_leases(provider=address, open_only=True)
                    ]
                    self.market.heartbeat(address, running)
            self.market.tick()

    @rule(hours=st.integers(1, 3))
    def run_for_hours(self, hours: int) -> None:
        """Hours pass with heartbeats every 25 s: jobs hit max runtime, escrows run dry."""
        for _ in range(hours * 144):
            self.clock.advance(25_000)
            for address in PROVIDERS:
                if address not in self.silent:
                    running = [
                        x.id for x in self.market.list_leases(provider=address, open_only=True)
                    ]
                    self.market.heartbeat(address, running)
        self.market.tick()

    @rule(hours=st.integers(1, 5))
    def long_outage(self, hours: int) -> None:
        """Everyone goes silent for hours: escrows run dry, providers are lost."""
        self.clock.advance(hours * 3_600_000)
        self.market.tick()

    @rule()
    def settle_all(self) -> None:
        self.market.settle_all()

    # ---- invariants -----------------------------------------------------------------------
    @invariant()
    def books_balance(self) -> None:
        report = self.market.audit()
        assert report.balanced, report.problems

    @invariant()
    def records_are_legal(self) -> None:
        m, s, now = self.market, self.market.state, self.clock.now_ms()
        open_leases_per_order: dict[str, int] = {}
        held: dict[str, set[str]] = {}
        for lease in s.leases.values():
            assert lease.billed_until_ms <= now
            owed = money.accrued(lease.price_per_hour, lease.billed_until_ms - lease.running_at_ms)
            owed = owed if lease.started else 0
            assert lease.paid <= owed
            order = s.orders[lease.order_id]
            if lease.state == LeaseState.CLOSED:
                assert lease.close_reason != CloseReason.NONE
                if lease.close_reason != CloseReason.INSUFFICIENT_FUNDS:
                    assert lease.paid == owed  # settled exactly at close
            else:
                open_leases_per_order[order.id] = open_leases_per_order.get(order.id, 0) + 1
                assert order.state == OrderState.ACTIVE
                assert s.deployments[lease.deployment_id].state == DeploymentState.ACTIVE
                uuids = held.setdefault(lease.provider, set())
                assert not uuids & set(lease.gpu_uuids), "a GPU leased twice"
                uuids.update(lease.gpu_uuids)
        assert all(n == 1 for n in open_leases_per_order.values())
        for bid in s.bids.values():
            if bid.state == BidState.OPEN:
                assert s.orders[bid.order_id].state == OrderState.OPEN
        assert {o.id for o in m.list_orders(open_only=True)} == {
            o.id for o in s.orders.values() if o.state == OrderState.OPEN
        }
        for dep in s.deployments.values():
            if dep.state == DeploymentState.CLOSED:
                assert dep.escrow == 0
                assert all(s.orders[o].state == OrderState.CLOSED for o in dep.order_ids)
        nxt = m.next_deadline_ms()
        assert nxt is None or nxt >= now  # every command ticks first: nothing overdue


MarketMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMarketProperties = MarketMachine.TestCase


class SimulatorConfigMachine(MarketMachine):
    """The same rules with the simulator's settings: no journal, events, ledger or closed records."""

    config = MarketConfig(
        admin_address=ADMIN,
        manifest_timeout_ms=120_000,
        journal=False,
        record_events=False,
        keep_ledger=False,
        retain_closed=False,
    )


SimulatorConfigMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSimulatorConfigProperties = SimulatorConfigMachine.TestCase
