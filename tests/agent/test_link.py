"""Wire conversions on the agent side: orders and feed events in (as core types), inventory
and offers out."""

from __future__ import annotations

from marketplace.api.convert import group_from_proto, offer_to_proto
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.bidding import BidPolicy, decide
from marketplace.core.resources import GpuOption
from provider_agent.agent import read_inventory
from provider_agent.bidder import offer_for
from provider_agent.config import load_config
from provider_agent.link import inventory_pb
from tests.helpers import EXAMPLES


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
