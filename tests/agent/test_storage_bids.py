"""Storage classes at bid time, against the real marketplace (gRPC on a real socket, SQLite in
tmp) with the agent's containers on the in-memory runtime: a provider publishes its classes as
Akash capability attributes, declines an order for a class it lacks with the reason the tenant's
`gpumarket why` shows, and runs one for a class it has with the volume made."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc.aio
import pytest

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.manifest import parse_manifest
from marketplace.identity import Key
from provider_agent.config import parse_config
from provider_agent.inventory import storage_attributes, storage_refusal
from tests.agent.test_agent import running_agent
from tests.agent.test_e2e import Tenant, _async, eventually, job, marketplace


def with_volume(attributes: str) -> str:
    """The e2e job with a 1Gi volume of these attributes mounted at /data."""
    text = job("sleep 600").replace(
        "        storage: {size: 100Mi}\n",
        "        storage:\n          - size: 100Mi\n"
        f"          - name: data\n            size: 1Gi\n            attributes: {attributes}\n",
    )
    return text.replace(
        "    args:", "    params:\n      storage:\n        data: {mount: /data}\n    args:"
    )


def test_storage_classes_become_akash_capability_attributes() -> None:
    attrs = storage_attributes(parse_config({}).resources.storage_classes)
    assert attrs == {
        "capabilities/storage/1/class": "beta2",
        "capabilities/storage/1/persistent": "true",
        "capabilities/storage/2/class": "ram",
        "capabilities/storage/2/persistent": "false",
    }


@pytest.mark.parametrize(
    ("attributes", "classes", "refusal"),
    [
        ("{persistent: true, class: beta3}", ("beta2", "ram"), "storage class beta3 not offered"),
        ("{persistent: true, class: beta3}", ("beta3",), None),
        # class default: any persistent class
        ("{persistent: true, class: default}", ("beta2",), None),
        ("{persistent: true, class: default}", ("ram",), "persistent storage not offered"),
        ("{class: ram, persistent: false}", ("beta2",), "storage class ram not offered"),
        ("{class: ram, persistent: false}", ("ram",), None),
        ("{}", (), None),  # scratch space asks for no class
    ],
)
def test_each_volume_needs_a_class_the_provider_offers(
    attributes: str, classes: tuple[str, ...], refusal: str | None
) -> None:
    group = parse_manifest(with_volume(attributes).encode()).groups[0]
    got = storage_refusal(group, storage_attributes(classes))
    assert got == refusal if refusal is None else (got is not None and got.startswith(refusal))


def test_an_order_for_a_class_it_lacks_is_declined_and_why_shows_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        admin = Key.generate()
        async with (
            marketplace(tmp_path, admin) as port,
            running_agent(tmp_path, port) as (agent, runtime, said),
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            dep = await tenant.deploy(with_volume("{persistent: true, class: beta3}"))
            order_id = dep.order_ids[0]
            await eventually(lambda: _async(any(s.startswith(f"decline {order_id}") for s in said)))
            answer = await tenant.stub.ExplainOrder(tenant.signed(pb.GetRequest(id=order_id)))
            [decline] = answer.declines
            assert decline.provider == agent.key.address
            assert decline.reason.startswith("storage class beta3 not offered here")
            assert agent.reservations.keys() == []

            served = await tenant.deploy(with_volume("{persistent: true, class: beta2}"))
            lease = await eventually(lambda: tenant.lease(served.id, pb.LEASE_RUNNING), timeout=10)
            [volume] = runtime.volumes(lease.id)
            assert (volume.volume, volume.size_bytes) == ("data", 1 << 30)
            await channel.close(grace=None)

    asyncio.run(asyncio.wait_for(scenario(), 60))
