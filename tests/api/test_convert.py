"""Wire ↔ core conversions round-trip (marketplace/api/convert.py), and error statuses map
both ways (marketplace/api/status.py)."""

from __future__ import annotations

import dataclasses
import re

import grpc
import pytest

from marketplace.api import convert, status
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import errors
from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import parse_manifest
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.provider_feed import (
    BidLost,
    LeaseClosed,
    LeaseUpdated,
    LeaseWon,
    OrderClosed,
    OrderOpened,
)
from marketplace.core.resources import GangSettings, JobKind
from marketplace.core.state import (
    Bid,
    BidState,
    CloseReason,
    DeploymentEvent,
    Endpoint,
    Lease,
    LeaseState,
    Offer,
    Order,
    OrderState,
    ProviderEvent,
)
from marketplace.server.testing import gpu_sdl, h100_inventory


def test_group_spec_round_trips() -> None:
    group = parse_manifest(gpu_sdl()).groups[0]
    assert convert.group_from_proto(convert.group_to_proto(group)) == group


def records() -> tuple[Order, Bid, Lease]:
    group = parse_manifest(gpu_sdl()).groups[0]
    order = Order(
        "D1/1/2",
        "D1",
        "alice",
        1,
        2,
        group,
        parse_manifest(gpu_sdl()).job.auction,
        OrderState.OPEN,
        10,
        20,
        JobKind.TRAINING,
    )
    bid = Bid("D1/1/2/p", "D1/1/2", "p", 5, BidState.WON, 11, 0.8, Offer(("h100",), ("GPU-1",)))
    lease = Lease(
        "D1/1/2/p",
        "D1/1/2",
        "D1",
        "alice",
        "p",
        5,
        LeaseState.CLOSED,
        12,
        close_reason=CloseReason.PROVIDER_LOST,
        running_at_ms=13,
        closed_at_ms=14,
        billed_until_ms=13,
        paid=1,
        exit_code=0,
        message="gone",
        endpoints=(Endpoint("web", 80, "h", 30080, "tcp", ""),),
        started=True,
    )
    return order, bid, lease


def test_order_bid_lease_round_trip() -> None:
    order, bid, lease = records()
    assert convert.order_from_proto(convert.order_to_proto(order)) == order
    assert convert.bid_from_proto(convert.bid_to_proto(bid)) == bid
    assert convert.lease_from_proto(convert.lease_to_proto(lease)) == lease


@pytest.mark.parametrize("kind", list(DeploymentEventKind))
def test_deployment_events_round_trip_with_their_records(kind: DeploymentEventKind) -> None:
    order, bid, lease = records()
    event = DeploymentEvent.from_records(
        7, 99, "D1", kind, order=order, bid=bid, lease=lease, message="why"
    )
    wire = convert.deployment_event_to_proto(event)
    assert wire.kind == kind.value  # a string on the wire
    back = convert.deployment_event_from_proto(wire)
    assert back == event  # equal ids, kind and message
    assert back is not None and (back.bid, back.lease) == (bid, lease)
    assert back.order is None  # the wire carries the order's id only


def test_a_deployment_event_of_an_unknown_kind_decodes_to_none() -> None:
    wire = pb.DeploymentEvent(seq=1, deployment_id="D1", kind="a_kind_from_a_newer_market")
    assert convert.deployment_event_from_proto(wire) is None


def test_provider_events_put_their_record_in_the_oneof() -> None:
    order, bid, lease = records()
    expected = {
        ProviderEventKind.ORDER_OPENED: convert.order_to_proto(order),
        ProviderEventKind.ORDER_CLOSED: order.id,
        ProviderEventKind.LEASE_WON: convert.lease_to_proto(lease),
        ProviderEventKind.BID_LOST: convert.bid_to_proto(bid),
        ProviderEventKind.LEASE_CLOSED: convert.lease_to_proto(lease),
        ProviderEventKind.LEASE_UPDATED: convert.lease_to_proto(lease),
    }
    for kind, payload in expected.items():
        event = ProviderEvent.from_records(3, 4, "p", kind, order=order, bid=bid, lease=lease)
        wire = convert.provider_event_to_proto(event)
        assert (wire.seq, wire.time_ms, wire.WhichOneof("event")) == (3, 4, kind.value)
        assert getattr(wire, kind.value) == payload


def test_every_provider_event_kind_decodes_to_its_feed_record() -> None:
    order, bid, lease = records()
    feed_class = {
        ProviderEventKind.ORDER_OPENED: OrderOpened,
        ProviderEventKind.ORDER_CLOSED: OrderClosed,
        ProviderEventKind.LEASE_WON: LeaseWon,
        ProviderEventKind.BID_LOST: BidLost,
        ProviderEventKind.LEASE_CLOSED: LeaseClosed,
        ProviderEventKind.LEASE_UPDATED: LeaseUpdated,
    }
    assert set(feed_class) == set(ProviderEventKind)
    for kind, cls in feed_class.items():
        event = ProviderEvent.from_records(3, 4, "p", kind, order=order, bid=bid, lease=lease)
        decoded = convert.provider_event_from_proto(convert.provider_event_to_proto(event))
        assert decoded is not None and isinstance(decoded, cls)
        assert (decoded.seq, decoded.time_ms) == (3, 4)
    assert convert.provider_event_from_proto(pb.ProviderEvent(seq=1)) is None


def test_inventory_becomes_capacity_of_healthy_gpus() -> None:
    inventory = h100_inventory("x", gpus=3)
    inventory.gpus[1].healthy = False
    capacity = convert.capacity_from_proto(inventory)
    h100 = GpuVariant("h100", 80, "sxm")
    assert capacity.gpus == (GpuDevice("GPU-x-0", h100), GpuDevice("GPU-x-2", h100))
    again = convert.capacity_from_proto(convert.capacity_to_proto(capacity))
    assert again == Capacity(
        capacity.cpu_millis, capacity.memory_bytes, capacity.storage_bytes, capacity.gpus
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.InsufficientFunds("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Ineligible("x"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_status_both_ways(error: errors.MarketError, code: grpc.StatusCode) -> None:
    assert status.status_of(error) == code
    back = status.error_from_status(code, "x", [(status.ERROR_KEY, status.error_name(error))])
    assert type(back) is type(error) and str(back) == "x"


def test_transport_statuses_are_not_market_errors() -> None:
    assert status.error_from_status(grpc.StatusCode.UNAVAILABLE, "down") is None


def test_an_attribute_key_given_twice_is_refused_not_overwritten() -> None:
    twice = [pb.Attribute(key="region", value="eu"), pb.Attribute(key="region", value="us")]
    with pytest.raises(errors.InvalidArgument, match="attribute key 'region' is given twice"):
        convert.attributes_from_proto(twice)
    assert convert.attributes_from_proto(twice[:1]) == {"region": "eu"}


def test_a_gang_node_order_and_what_a_lease_holds_round_trip() -> None:
    """A provider learns from the order alone which gang it is a node of (and its size and link
    floor), and from the lease alone what room it holds."""
    order, _bid, lease = records()
    gang = GangSettings(3, 1000.0, 29501, 2_000_000_000, 60_000)
    node = dataclasses.replace(order, id="D1/2/1", gseq=2, oseq=1, gang=gang)
    wire = convert.order_to_proto(node)
    assert (wire.gang.id, wire.gang.node, wire.gang.nodes) == ("D1", 1, 3)
    assert wire.gang.min_bandwidth_mbps == 1000.0
    assert convert.order_from_proto(wire) == node
    assert not convert.order_to_proto(order).HasField("gang")
    holding = dataclasses.replace(
        lease, gpu_uuids=("GPU-1",), gpu_models=("h100",), cpu_millis=500, memory_bytes=7
    )
    assert convert.lease_from_proto(convert.lease_to_proto(holding)) == holding


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("nodes", 1, "order.gang.nodes"),
        ("nodes", 10_000, "order.gang.nodes"),
        ("node", 2, "order.gang.node"),
        ("id", "D9", "order.gang.id"),
        ("min_bandwidth_mbps", float("nan"), "order.gang.min_bandwidth_mbps"),
        ("min_bandwidth_mbps", -1.0, "order.gang.min_bandwidth_mbps"),
    ],
)
def test_a_gang_that_disagrees_with_its_order_is_refused_naming_the_field(
    field: str, value: object, says: str
) -> None:
    order, _bid, _lease = records()
    wire = convert.order_to_proto(dataclasses.replace(order, gang=GangSettings(3)))
    setattr(wire.gang, field, value)
    with pytest.raises(errors.InvalidArgument, match=re.escape(says)):
        convert.order_from_proto(wire)


def test_a_lease_holding_too_much_is_refused_naming_the_field() -> None:
    _order, _bid, lease = records()
    wire = convert.lease_to_proto(lease)
    wire.gpu_uuids.extend(f"GPU-{n}" for n in range(300))
    with pytest.raises(errors.InvalidArgument, match=r"lease\.gpu_uuids"):
        convert.lease_from_proto(wire)
    wire = convert.lease_to_proto(lease)
    wire.memory_bytes = -1
    with pytest.raises(errors.InvalidArgument, match=r"lease\.memory_bytes"):
        convert.lease_from_proto(wire)


def test_an_order_of_a_job_kind_this_version_does_not_know_is_refused_naming_the_field() -> None:
    order, _, _ = records()
    wire = convert.order_to_proto(order)
    wire.job_kind = "quantum-annealing"  # a newer market's kind
    with pytest.raises(errors.InvalidArgument) as caught:
        convert.order_from_proto(wire)
    message = str(caught.value)
    assert "order D1/1/2: job_kind 'quantum-annealing' is not one this version" in message
    assert "(training, inference, service)" in message
    with pytest.raises(errors.InvalidArgument, match="job_kind"):  # as the agent's feed reads it
        convert.provider_event_from_proto(pb.ProviderEvent(seq=3, order_opened=wire))


@pytest.mark.parametrize(
    "order_id", ["D1/x/1", "D1/1", "D1/²/1", pytest.param("D1/1/" + "9" * 5000, id="5000-digits")]
)
def test_an_order_id_without_its_sequences_is_refused_naming_it(order_id: str) -> None:
    order, _, _ = records()
    wire = convert.order_to_proto(order)
    wire.id = order_id
    with pytest.raises(errors.InvalidArgument, match=r"order id .* is not D<n>/<group>/<order>"):
        convert.order_from_proto(wire)


def test_a_gpu_key_with_a_digit_int_refuses_reads_as_any_ram() -> None:
    # '²'.isdigit() is True and int('²') a ValueError: the key decoded to a crash before
    option = convert.gpu_option_from_key("vendor/nvidia/model/h100/ram/²Gi")
    assert (option.model, option.ram_gib) == ("h100", None)
    assert convert.gpu_option_from_key("vendor/nvidia/model/h100/ram/80Gi").ram_gib == 80
