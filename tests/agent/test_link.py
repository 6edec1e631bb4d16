"""Wire conversions on the agent side: orders and feed events in (as core types), inventory
and offers out."""

from __future__ import annotations

import grpc
import pytest

from marketplace.api.convert import (
    group_from_proto,
    lease_manifest_from_proto,
    offer_to_proto,
    provider_event_from_proto,
)
from marketplace.api.envelope import seal
from marketplace.api.status import ERROR_KEY, error_from_rpc
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import errors
from marketplace.core.bidding import BidPolicy, decide
from marketplace.core.provider_feed import BidLost, LeaseClosed, LeaseWon, OrderClosed, OrderOpened
from marketplace.core.resources import GpuOption
from marketplace.identity import Key
from provider_agent.agent import read_inventory
from provider_agent.bidder import offer_for
from provider_agent.config import load_config
from provider_agent.link import inventory_pb, manifest_problem
from tests.agent.supervision import sdl
from tests.helpers import EXAMPLES

MARKET = "gm1market"  # the id of the marketplace the manifests were deployed on


def order_spec() -> pb.GroupSpec:
    return pb.GroupSpec(
        name="anywhere",
        denom="uact",
        requirements=pb.PlacementRequirements(
            attributes=[pb.Attribute(key="region", value="eu-west")]
        ),
        resources=[
            pb.ResourceUnit(
                service="trainer",
                count=1,
                cpu_millis=4000,
                memory_bytes=16 << 30,
                storage=[pb.StorageSpec(name="default", bytes=10 << 30)],
                gpu=pb.GpuSpec(units=1, attributes=["vendor/nvidia/model/h100/ram/80Gi"]),
                max_price_per_hour=2_000_000,
            )
        ],
    )


def test_an_order_from_the_wire_is_bid_on_with_the_inventory() -> None:
    cfg = load_config(EXAMPLES / "provider-h100-replay.toml")
    inv = read_inventory(cfg)
    group = group_from_proto(order_spec())
    assert group.resources[0].gpu.options == (GpuOption("h100", 80),)
    d = decide(group, "gm1t", dict(inv.attributes), inv.total, BidPolicy(), cfg.pricing.scale, 0)
    assert d.bid, d.reason
    offer = offer_to_proto(offer_for(d, inv))
    assert list(offer.gpu_uuids) == ["GPU-ec74fc0e-388d-22e5-9031-c553a0c26378"]
    assert list(offer.gpu_models) == ["h100-80gb-sxm"]
    assert offer.driver_version == "580.159.04" and offer.cuda_version == "13.0"
    assert offer.price_per_gpu_hour == d.price_per_hour
    wire = inventory_pb(inv)
    assert wire.gpus[0].model == "h100" and wire.gpus[0].healthy
    assert wire.gpus[0].memory_mib == 81559 and wire.gpus[0].compute_capability == "9.0"


def wire_order(order_id: str = "D1/1/1") -> pb.Order:
    return pb.Order(
        id=order_id,
        deployment_id="D1",
        owner="gm1tenant",
        state=pb.ORDER_OPEN,
        spec=order_spec(),
        closes_at_ms=5_000,
        job_kind="training",
    )


def wire_lease() -> pb.Lease:
    return pb.Lease(
        id="D1/1/1/gm1prov",
        order_id="D1/1/1",
        tenant="gm1tenant",
        provider="gm1prov",
        price_per_hour=900_000,
        state=pb.LEASE_PENDING,
    )


def test_feed_events_arrive_as_core_records() -> None:
    opened = provider_event_from_proto(
        pb.ProviderEvent(seq=7, time_ms=1, order_opened=wire_order())
    )
    assert isinstance(opened, OrderOpened) and opened.seq == 7
    order = opened.order
    assert (order.id, order.owner, order.gseq, order.oseq) == ("D1/1/1", "gm1tenant", 1, 1)
    assert order.closes_at_ms == 5_000 and order.group.max_price_per_hour == 2_000_000
    assert provider_event_from_proto(pb.ProviderEvent(seq=8, order_closed="D1/1/1")) == OrderClosed(
        8, 0, "D1/1/1"
    )
    won = provider_event_from_proto(pb.ProviderEvent(seq=9, lease_won=wire_lease()))
    assert isinstance(won, LeaseWon)
    assert (won.lease.tenant, won.lease.price_per_hour) == ("gm1tenant", 900_000)
    assert isinstance(
        provider_event_from_proto(pb.ProviderEvent(lease_closed=wire_lease())), LeaseClosed
    )
    lost = provider_event_from_proto(
        pb.ProviderEvent(bid_lost=pb.Bid(id="D1/1/1/gm1prov", order_id="D1/1/1"))
    )
    assert isinstance(lost, BidLost) and lost.bid.order_id == "D1/1/1"
    assert provider_event_from_proto(pb.ProviderEvent(seq=10)) is None  # a kind we do not know


@pytest.mark.parametrize(
    ("code", "metadata", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, (), errors.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, (), errors.Unavailable),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, (), errors.Unavailable),
        (grpc.StatusCode.NOT_FOUND, (), errors.NotFound),
        (grpc.StatusCode.FAILED_PRECONDITION, ((ERROR_KEY, "Ineligible"),), errors.Ineligible),
        (grpc.StatusCode.INTERNAL, (), errors.MarketError),
    ],
)
def test_a_failed_call_is_the_core_error_its_status_stands_for(
    code: grpc.StatusCode, metadata: tuple[tuple[str, str], ...], error: type[Exception]
) -> None:
    raised = error_from_rpc(code, "why", metadata)
    assert type(raised) is error
    # only the transport's transient statuses are worth trying again
    assert isinstance(raised, errors.Unavailable) == (error is errors.Unavailable)


def signed_manifest(signer: Key, sdl: bytes, served: bytes | None = None) -> pb.Manifest:
    request = seal(signer, pb.CreateDeployment(sdl=sdl, deposit=1), market=MARKET)
    return pb.Manifest(
        lease_id="D1/1/1/gm1prov",
        group_name="here",
        sdl=sdl if served is None else served,
        tenant_request=request,
    )


def test_a_manifest_runs_only_as_its_tenant_signed_it() -> None:
    tenant, other = Key.generate(), Key.generate()
    text = sdl("echo hi")
    good = signed_manifest(tenant, text)
    assert manifest_problem(good, tenant.address, MARKET) is None
    job = lease_manifest_from_proto(good)
    assert job.group.name == "here" and job.manifest.group("here") == job.group
    assert "not by the lease's tenant" in (manifest_problem(good, other.address, MARKET) or "")
    altered = signed_manifest(tenant, text, served=text.replace(b"echo hi", b"rm -rf /"))
    assert manifest_problem(altered, tenant.address, MARKET) == (
        "the manifest's bytes differ from what the tenant signed"
    )
    assert manifest_problem(pb.Manifest(sdl=text), tenant.address, MARKET) == (
        "the manifest carries no tenant signature"
    )
    # deployed on another marketplace: a marketplace cannot pass on a job signed elsewhere
    assert "signed for another marketplace" in (
        manifest_problem(good, tenant.address, "gm1elsewhere") or ""
    )
