"""Inputs are bounded at command entry (marketplace/core/limits.py): every string the market
stores or echoes, every list, every amount. A refused command changes nothing."""

from __future__ import annotations

import pytest

from marketplace.core import limits, money, pricing
from marketplace.core.clock import ManualClock
from marketplace.core.errors import FailedPrecondition, InvalidArgument
from marketplace.core.gpus import GpuVariant
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.resources import (
    GpuOption,
    GpuRequest,
    GroupSpec,
    JobSettings,
    PlacementRequirements,
    ResourceUnit,
)
from marketplace.core.state import Endpoint, LeaseState, Offer
from marketplace.identity import Key

ADMIN = "admin"
TENANT = "tenant"
H100 = GpuVariant("h100", 80, "sxm")
HUGE = "x" * 900_000  # what the red team registered with


def capacity(prefix: str = "GPU", gpus: int = 2) -> Capacity:
    devices = tuple(GpuDevice(f"{prefix}-{i}", H100) for i in range(gpus))
    return Capacity(64_000, 512 * 1024**3, 4000 * 1024**3, devices)


def group(max_price: int = 10 * money.MICRO) -> GroupSpec:
    unit = ResourceUnit(
        services=("train",),
        count=1,
        cpu_millis=4000,
        memory_bytes=16 * 1024**3,
        gpu=GpuRequest(1, (GpuOption("h100"),)),
        max_price_per_hour=max_price,
    )
    return GroupSpec("dc", PlacementRequirements(), (unit,))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


@pytest.fixture
def market(clock: ManualClock) -> MarketService:
    m = MarketService(clock, MarketConfig(admin_address=ADMIN))
    m.fund(ADMIN, TENANT, 1_000 * money.MICRO)
    m.register_provider("p1", "https://p1", {"region": "eu"}, capacity("p1"))
    return m


def deploy(market: MarketService, max_price: int = 10 * money.MICRO) -> str:
    dep = market.create_deployment(
        TENANT, [group(max_price)], JobSettings(), b"", b"h" * 32, b"", 100 * money.MICRO
    )
    return dep.order_ids[0]


def refused(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(InvalidArgument) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return str(caught.value)


# --- strings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("host_uri", {"host_uri": HUGE}),
        ("region", {"region": HUGE}),
        ("version", {"version": HUGE}),
        ("attribute value", {"attributes": {"region": HUGE}}),
        ("attribute key", {"attributes": {HUGE: "eu"}}),
        ("attributes", {"attributes": {f"k{i}": "v" for i in range(1000)}}),
        ("gpu uuid", {"capacity": capacity(HUGE)}),
        ("gpu uuids", {"capacity": capacity(gpus=10_000)}),
    ],
)
def test_registration_with_huge_strings_is_refused_and_changes_nothing(
    market: MarketService, field: str, kwargs: dict[str, object]
) -> None:
    args: dict[str, object] = {
        "address": "mallory",
        "host_uri": "https://m",
        "attributes": {},
        "capacity": capacity("m"),
    }
    args.update(kwargs)
    message = refused(market.register_provider, **args)
    assert field in message and "limit" in message
    assert len(message) < 200
    assert "mallory" not in {p.address for p in market.list_providers()}
    assert [p.address for p in market.list_providers()] == ["p1"]


@pytest.mark.parametrize(
    ("variant", "says"),
    [
        (GpuVariant("h100", 2**53, "sxm"), "VRAM 9007199254740992 GiB is outside 0..16,384"),
        (GpuVariant("h100", -1, "sxm"), "VRAM -1 GiB is outside 0..16,384"),
        (GpuVariant("h" * 65, 80, "sxm"), "gpu model is 65 characters; the limit is 64"),
        (GpuVariant("h100", 80, "s\x1bxm"), "gpu interface holds a control character"),
    ],
)
def test_a_gpu_the_market_cannot_echo_is_refused_by_register_and_heartbeat(
    market: MarketService, variant: GpuVariant, says: str
) -> None:
    """ListProviders writes each GPU's VRAM as MiB in an int64: a device at int64's edge
    (memory_mib 2^63-1 read as 2^53 GiB) would have broken it for every reader."""
    odd = Capacity(64_000, 1024**3, 1024**3, (GpuDevice("GPU-odd", variant),))
    assert says in refused(market.register_provider, "p2", "https://p2", {}, odd)
    assert says in refused(market.heartbeat, "p1", [], odd)
    assert "p2" not in {p.address for p in market.list_providers()}


@pytest.mark.parametrize("text", ["a\x00b", "evil\x1b]0;pwned\x07", "two\nlines", "\u2028", "\x9b"])
def test_control_characters_are_refused(market: MarketService, text: str) -> None:
    message = refused(market.register_provider, "p2", text, {}, capacity("p2"))
    assert "host_uri holds a control character" in message
    # a tab is text
    market.register_provider("p2", "https://p2\tmirror", {}, capacity("p2"))


def test_decline_reasons_and_messages_are_bounded(
    market: MarketService, clock: ManualClock
) -> None:
    order_id = deploy(market)
    assert "decline reason is 900,000 characters; the limit is 1,024" in refused(
        market.decline_order, "p1", order_id, HUGE
    )
    assert market.explain_order(order_id).declines == ()
    market.decline_order("p1", order_id, "no h100 free\tright now")
    bid = market.place_bid("p1", order_id, money.MICRO)
    clock.advance(10_000)
    market.tick()
    lease = market.get_lease(bid.id)
    assert "lease message" in refused(market.report_status, "p1", lease.id, True, message=HUGE)
    endpoints = [Endpoint("train", 80, host=HUGE)]
    assert "endpoint host" in refused(
        market.report_status, "p1", lease.id, True, endpoints=endpoints
    )
    assert lease.state == LeaseState.PENDING
    assert "close message" in refused(market.close_lease, TENANT, lease.id, HUGE)
    assert lease.state == LeaseState.PENDING


def test_bid_offers_are_bounded(market: MarketService) -> None:
    order_id = deploy(market)
    offer = Offer(gpu_models=("h100",) * 1000)
    assert "gpu models; the limit is 256" in refused(
        market.place_bid, "p1", order_id, money.MICRO, offer
    )
    assert "driver version" in refused(
        market.place_bid, "p1", order_id, money.MICRO, Offer(driver_version=HUGE)
    )
    assert market.list_bids(order_id) == []


def test_heartbeat_lists_are_bounded(market: MarketService) -> None:
    ids = [f"L{i}" for i in range(limits.MAX_RUNNING_IDS + 1)]
    assert "ids; the limit is 10,000" in refused(market.heartbeat, "p1", ids)
    assert "id holds a control" in refused(market.heartbeat, "p1", ["L\x00"])


# --- addresses ---------------------------------------------------------------------------------


def test_addresses_are_what_keys_derive() -> None:
    for _ in range(20):
        assert limits.is_address(Key.generate().address)
    good = Key.generate().address
    for bad in ("gm1bogus", "", "gm1" + "a" * 31, "gm1" + "a" * 33, good.upper(), good + "\x00"):
        assert not limits.is_address(bad), bad
    assert not limits.is_address("gm1" + "1" * 32)  # 1 is not base32
    with pytest.raises(InvalidArgument) as caught:
        limits.check_address("fund: address", "gm1bogus")
    message = str(caught.value)
    assert message.startswith("fund: address: 'gm1bogus' is not an account address")


def test_the_faucet_refuses_names_with_control_characters(market: MarketService) -> None:
    assert "address holds a control character" in refused(market.fund, ADMIN, "a\x00b", 5)
    assert market.state.accounts.keys() == {TENANT}


# --- money -------------------------------------------------------------------------------------


def test_a_group_without_a_maximum_is_refused(market: MarketService) -> None:
    assert "maximum price is 0 per hour" in refused(deploy, market, 0)
    assert "over the limit" in refused(deploy, market, limits.MAX_PRICE_PER_HOUR + 1)
    assert market.list_deployments() == []


def test_the_cap_always_applies(market: MarketService) -> None:
    order_id = deploy(market, max_price=1)
    with pytest.raises(FailedPrecondition, match="above the tenant's maximum"):
        market.place_bid("p1", order_id, 2)
    assert pricing.check_price(group(1), 2) is not None
    assert pricing.check_price(group(1), 1) is None


def test_a_bid_at_int64_max_is_refused_as_an_invalid_argument(market: MarketService) -> None:
    order_id = deploy(market)
    message = refused(market.place_bid, "p1", order_id, 2**63 - 1)
    assert "price_per_hour 9,223,372,036,854,775,807 is over the maximum of" in message
    assert market.list_bids(order_id) == []
    assert market.explain_order(order_id).declines == ()


def test_amounts_are_bounded(market: MarketService) -> None:
    assert "over the maximum" in refused(market.fund, ADMIN, TENANT, limits.MAX_AMOUNT + 1)
    dep = market.create_deployment(
        TENANT, [group()], JobSettings(), b"", b"", b"", 2_000_000
    )  # 10 minutes at 10 act/h
    assert "over the maximum" in refused(market.deposit, TENANT, dep.id, 2**63 - 1)
    too_much = limits.MAX_AMOUNT + 1
    assert "over the maximum" in refused(
        market.create_deployment, TENANT, [group()], JobSettings(), b"", b"", b"", too_much
    )


def test_minting_stops_at_the_limit_and_the_books_balance() -> None:
    market = MarketService(
        ManualClock(0), MarketConfig(admin_address=ADMIN, mint_limit=limits.MAX_AMOUNT)
    )
    market.fund(ADMIN, "a", limits.MAX_AMOUNT - 5)
    with pytest.raises(FailedPrecondition, match="past the market's limit"):
        market.fund(ADMIN, "b", 6)
    market.fund(ADMIN, "b", 5)
    assert market.state.total_minted == limits.MAX_AMOUNT < 2**63
    assert market.audit().balanced
    assert "b" in market.state.accounts and market.get_account("b").balance == 5


def test_the_simulator_may_mint_without_a_limit_on_purpose() -> None:
    market = MarketService(ManualClock(0), MarketConfig(admin_address=ADMIN, mint_limit=None))
    for tenant in ("a", "b", "c"):
        market.fund(ADMIN, tenant, limits.MAX_AMOUNT)
    assert market.state.total_minted == 3 * limits.MAX_AMOUNT


# --- logs --------------------------------------------------------------------------------------


def test_log_lines_keep_their_text_but_not_their_escape_sequences() -> None:
    assert limits.escape_log_line("\x1b[31mred\x1b[0m\tok") == "\\x1b[31mred\\x1b[0m\tok"
    assert limits.escape_log_line("bell\x07 nul\x00 csi\x9b") == "bell\\x07 nul\\x00 csi\\x9b"
    assert len(limits.escape_log_line("\x00" * 10**6)) == limits.MAX_LOG_LINE_CHARS


def test_senders_can_make_free_text_fit() -> None:
    text = limits.display_safe("line one\nline two\x1b[0m" + "x" * 5000, "decline reason")
    assert len(text) == 1024 and "\n" not in text and "\x1b" not in text
    assert limits.check_text("decline reason", text) == text


def test_group_names_and_requirements_are_bounded(market: MarketService) -> None:
    base = group()
    named = GroupSpec(HUGE, base.requirements, base.resources)
    assert "group name" in refused(
        market.create_deployment, TENANT, [named], JobSettings(), b"", b"", b"", 10
    )
    wanting = GroupSpec("dc", PlacementRequirements(attributes=(("region", HUGE),)), base.resources)
    assert "attribute value" in refused(
        market.create_deployment, TENANT, [wanting], JobSettings(), b"", b"", b"", 10
    )
    many = [group()] * (limits.MAX_GROUPS + 1)
    assert "groups; the limit is 256" in refused(
        market.create_deployment, TENANT, many, JobSettings(), b"", b"", b"", 10
    )
    assert market.list_deployments() == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("", None),
        ("²", None),
        ("٣", None),
        ("-1", None),
        (" 1", None),
        ("9" * 18, 10**18 - 1),
        ("9" * 19, None),
        ("9" * 5000, None),
    ],
)
def test_whole_number_takes_ascii_digits_only_and_never_raises(
    text: str, value: int | None
) -> None:
    assert limits.whole_number(text) == value
