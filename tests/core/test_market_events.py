"""Event kinds: one enum per stream (core/events.py), documented once, every kind emitted, and
every event carrying the records it names."""

from __future__ import annotations

import dataclasses
import re

import pytest

from marketplace.core import events, money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import Ineligible
from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.resources import Tier
from marketplace.core.state import (
    EVENT_RECORD_FIELDS,
    DeploymentEvent,
    Offer,
    ProviderEvent,
)
from tests.core.test_market import ADMIN, TENANT, capacity, deploy, gpu_group, job
from tests.core.test_update import updated_once
from tests.helpers import REPO

DOCS = REPO / "docs" / "events.md"
PROTO = REPO / "proto" / "marketplace" / "api" / "v1" / "market.proto"


def doc_tables() -> str:
    """The tables in events.py's docstring, from the first heading on."""
    doc = events.__doc__ or ""
    return doc[doc.index("Deployment events:") :].rstrip()


def kinds_in(table_text: str, heading: str) -> list[str]:
    section = table_text.split(heading, 1)[1].split("\n\n")[1]
    return re.findall(r"^\| `(\w+)`", section, flags=re.MULTILINE)


def test_the_docstring_tables_list_exactly_the_enum_members_in_order() -> None:
    tables = doc_tables()
    assert kinds_in(tables, "Deployment events:") == [k.value for k in DeploymentEventKind]
    assert kinds_in(tables, "Provider events:") == [k.value for k in ProviderEventKind]


def test_docs_events_md_holds_the_same_tables() -> None:
    assert doc_tables() in DOCS.read_text(), (
        "docs/events.md must hold the tables of marketplace/core/events.py's docstring verbatim"
    )


def test_the_proto_names_no_kinds_of_its_own() -> None:
    # the proto points at events.py instead of keeping a third list that could drift
    comment = next(line for line in PROTO.read_text().splitlines() if "string kind = 4;" in line)
    assert "events.py" in comment
    assert not any(kind.value in comment for kind in DeploymentEventKind)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


def run_through_every_kind(market: MarketService, clock: ManualClock) -> list[str]:
    """Drive one deployment through a refused bid, a window with no winner, a late award, a
    failed run and its re-order, a contested auction, another failure (its re-order waits),
    and a close by the tenant while its third order is open; and another deployment whose
    leases fail to start until the market stops ordering its group again."""
    market.fund(ADMIN, TENANT, 1_000 * money.MICRO)
    for name in ("p1", "p2"):
        market.register_provider(name, f"https://{name}", {}, capacity(prefix=name))
    dep_id = deploy(market)
    first = f"{dep_id}/1/1"
    with pytest.raises(Ineligible):
        market.place_bid("p1", first, 10**12)  # above the maximum: declined
    clock.advance(5_000)
    market.tick()  # the window closes with no eligible bid
    market.place_bid("p1", first, 2 * money.MICRO)
    market.tick()  # a late bid is awarded at once
    fail(market, "p1", f"{first}/p1")  # re-ordered (on-failure)
    second = f"{dep_id}/1/2"
    market.place_bid("p1", second, 3 * money.MICRO)
    market.place_bid("p2", second, 2 * money.MICRO)
    clock.advance(5_000)
    market.tick()  # p2 wins, p1 loses
    fail(market, "p2", f"{second}/p2")
    clock.advance(5_000)  # the second failed start in a row: re-ordered after 5 s
    market.tick()
    market.close_deployment(TENANT, dep_id)  # its third order is still open
    return [
        dep_id,
        never_starts(market, clock),
        runs_low(market),
        updated_once(market, clock),
        preempted_once(market, clock),
    ]


def preempted_once(market: MarketService, clock: ManualClock) -> str:
    """A spot lease on a one-GPU provider gives way to an on-demand order (lease_preempted)."""
    market.register_provider("s1", "https://s1", {}, capacity(n=1, prefix="s1"))
    spot_job = dataclasses.replace(job(), tier=Tier.SPOT)
    dep_id = market.create_deployment(
        TENANT, [gpu_group()], spot_job, b"sdl", b"h" * 32, b"req", 100 * money.MICRO
    ).id
    market.place_bid("s1", f"{dep_id}/1/1", money.MICRO)
    clock.advance(5_000)
    market.tick()
    order_id = f"{deploy(market)}/1/1"
    market.place_bid("s1", order_id, 2 * money.MICRO, Offer(preempts=(f"{dep_id}/1/1/s1",)))
    clock.advance(5_000)
    market.tick()
    return dep_id


def runs_low(market: MarketService) -> str:
    """A lease starts on an escrow that lasts under the market's threshold (escrow_low), and
    its auto top-up moves money in (escrow_topped_up)."""
    dep_id = market.create_deployment(
        TENANT, [gpu_group()], job(), b"sdl", b"h" * 32, b"req", 2 * money.MICRO, money.MICRO
    ).id
    market.place_bid("p1", f"{dep_id}/1/1", 10 * money.MICRO)
    market.accept_bid(TENANT, f"{dep_id}/1/1/p1")
    market.report_status("p1", f"{dep_id}/1/1/p1", running=True)
    return dep_id


def never_starts(market: MarketService, clock: ManualClock) -> str:
    """Each lease fails before it runs, until the group is not ordered again."""
    dep_id = deploy(market)
    for oseq in range(1, market.config.max_failed_starts + 1):
        clock.advance(25_000)  # past the backoff (at most 20 s here), within the heartbeat timeout
        for name in ("p1", "p2"):
            market.heartbeat(name)
        order_id = f"{dep_id}/1/{oseq}"
        market.place_bid("p2" if oseq % 2 else "p1", order_id, 2 * money.MICRO)
        clock.advance(5_000)
        market.tick()
        [lease] = [x for x in market.list_leases(deployment_id=dep_id) if x.order_id == order_id]
        market.report_status(lease.provider, lease.id, False, exited=True, exit_code=-1)
    return dep_id


def fail(market: MarketService, provider: str, lease_id: str) -> None:
    market.report_status(provider, lease_id, running=True)
    market.report_status(provider, lease_id, running=False, exited=True, exit_code=1)


def test_every_kind_is_emitted(clock: ManualClock) -> None:
    market = MarketService(clock, MarketConfig(admin_address=ADMIN))
    dep_ids = run_through_every_kind(market, clock)
    emitted = {e.kind for dep_id in dep_ids for e in market.deployment_events_after(dep_id)}
    assert emitted == set(DeploymentEventKind)
    told = {e.kind for name in ("p1", "p2") for e in market.provider_events_after(name)}
    assert told == set(ProviderEventKind)


def assert_carries_what_it_names(
    market: MarketService, event: DeploymentEvent | ProviderEvent
) -> None:
    st = market.state
    assert event.order is (st.orders[event.order_id] if event.order_id else None)
    assert event.bid is (st.bids[event.bid_id] if event.bid_id else None)
    assert event.lease is (st.leases[event.lease_id] if event.lease_id else None)


def test_events_carry_the_records_they_name(clock: ManualClock) -> None:
    market = MarketService(clock, MarketConfig(admin_address=ADMIN))
    dep_id, *_ = run_through_every_kind(market, clock)
    told: list[DeploymentEvent | ProviderEvent] = [
        *market.deployment_events_after(dep_id),
        *market.provider_events_after("p1"),
    ]
    for event in told:
        assert_carries_what_it_names(market, event)
    [no_winner] = [
        e
        for e in market.deployment_events_after(dep_id)
        if e.kind == DeploymentEventKind.NO_ELIGIBLE_BID
    ]
    assert no_winner.message.startswith("no eligible bid: 1 provider(s) declined: price")


def test_a_loaded_market_attaches_the_records_again(clock: ManualClock) -> None:
    market = MarketService(clock, MarketConfig(admin_address=ADMIN))
    dep_id, *_ = run_through_every_kind(market, clock)
    # what the store keeps of an event: its ids, not its records
    assert EVENT_RECORD_FIELDS == ("order", "bid", "lease")
    st = market.state
    state = dataclasses.replace(
        st,
        deployment_events=[
            dataclasses.replace(e, order=None, bid=None, lease=None) for e in st.deployment_events
        ],
        provider_events=[
            dataclasses.replace(e, order=None, bid=None, lease=None) for e in st.provider_events
        ],
    )
    again = MarketService(clock, market.config, state)
    loaded = again.deployment_events_after(dep_id)
    assert loaded == market.deployment_events_after(dep_id)
    told: list[DeploymentEvent | ProviderEvent] = [*loaded, *again.provider_events_after("p2")]
    for event in told:
        assert_carries_what_it_names(again, event)


def test_the_simulator_config_records_no_events(clock: ManualClock) -> None:
    config = MarketConfig(admin_address=ADMIN, journal=False, record_events=False)
    market = MarketService(clock, config)
    run_through_every_kind(market, clock)
    assert not market.state.deployment_events and not market.state.provider_events
    assert not market.drain_changes()
