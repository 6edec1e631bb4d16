"""Wire ↔ core conversions round-trip (marketplace/api/convert.py), and error statuses map
both ways (marketplace/api/status.py)."""

from __future__ import annotations

import grpc
import pytest

from marketplace.api import convert, status
from marketplace.core import errors
from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import parse_manifest
from marketplace.core.matching import Capacity, GpuDevice
from marketplace.core.resources import JobKind
from marketplace.core.state import (
    Bid,
    BidState,
    CloseReason,
    Endpoint,
    Lease,
    LeaseState,
    Offer,
    Order,
    OrderState,
)
from marketplace.server.testing import gpu_sdl, h100_inventory


def test_group_spec_round_trips() -> None:
    group = parse_manifest(gpu_sdl()).groups[0]
    assert convert.group_from_proto(convert.group_to_proto(group)) == group


def test_order_bid_lease_round_trip() -> None:
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
    assert convert.order_from_proto(convert.order_to_proto(order)) == order
    bid = Bid("D1/1/2/p", "D1/1/2", "p", 5, BidState.WON, 11, 0.8, Offer(("h100",), ("GPU-1",)))
    assert convert.bid_from_proto(convert.bid_to_proto(bid)) == bid
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
    assert convert.lease_from_proto(convert.lease_to_proto(lease)) == lease


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
