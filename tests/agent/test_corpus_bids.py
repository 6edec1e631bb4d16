"""Over the whole SDL sample (issue 11's closing check): with a provider that offers the common
storage classes, the sample's GPU models and placement attributes, and a market that maps
Akash's auditor to a local one that signed the provider, every schema-valid SDL is bid on or
declined only for capacity, GPU model or price. The agent's own decision path decides
(Quoter.evaluate) and the real core market checks the bid (scripts/sdl_bids.py, which prints
the counts); the one named exception is an SDL the provider declines, with its reason, for a
feature no gpumarket provider offers (leased IPs).

Fields a provider cannot honour travel with the order (GroupSpec.needs) and are declined at bid
time with the reason, against the real marketplace and agent: accept hostnames without an
ingress, leased IPs, lease log access, a reclamation window, another CPU architecture."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import grpc.aio
import pytest

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.manifest import parse_manifest
from marketplace.identity import Key
from provider_agent.config import parse_config
from provider_agent.inventory import host_arch, needs_refusal, provider_features
from tests.agent.test_agent import running_agent
from tests.agent.test_e2e import Tenant, eventually, job, marketplace
from tests.helpers import CORPUS_SDL, REPO

ALLOWED = {"bid", "declined: capacity", "declined: GPU model", "declined: price"}
# Named exceptions: a feature this provider does not offer, declined with this reason.
LEASED_IP_FILES = {
    "Sentinel-dVPN-node__deploy.yml",
    "cjdns-pkt__deploy.yaml",
    "metal-validator__deploy.yaml",
}
LEASED_IP_REASON = "leased IP endpoints are not offered by this provider"
# expose ... accept: (global)
ACCEPT_FILES = {"bitcoin-knots-mempool-ui__deploy-mempool.yaml", "vaultwarden__deploy.yaml"}
NO_INGRESS = "accept hostnames need an HTTP ingress ([ingress] listen)"


def sdl_bids() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdl_bids", REPO / "scripts" / "sdl_bids.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdl_bids"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_every_schema_valid_sdl_is_bid_on_or_declined_for_capacity_model_or_price(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = sdl_bids().verdicts(CORPUS_SDL)
    assert len({v.file for v in found}) == 100
    leased_ip = [v for v in found if v.file in LEASED_IP_FILES and not v.bid]
    assert {v.file for v in leased_ip} == LEASED_IP_FILES
    for verdict in leased_ip:
        assert verdict.reason == LEASED_IP_REASON, verdict
    rest = [v for v in found if v not in leased_ip]
    counts = Counter(v.kind for v in rest)
    with capsys.disabled():
        print(f"\nSDL sample, bids of a well-equipped provider: {dict(counts)}")
        print(f"  named exception, leased IPs not offered: {len(leased_ip)}")
    assert set(counts) <= ALLOWED, [(v.file, v.reason) for v in rest if v.kind not in ALLOWED]
    assert counts["bid"] >= 95


def test_without_an_ingress_the_provider_declines_exactly_the_sdls_with_accept_hostnames() -> None:
    module = sdl_bids()
    config = {k: v for k, v in module.CONFIG.items() if k != "ingress"}
    vars(module)["CONFIG"] = config  # the same provider, with no [ingress]
    found = module.verdicts(CORPUS_SDL)
    no_ingress = {v.file for v in found if v.reason.startswith(NO_INGRESS)}
    assert no_ingress == ACCEPT_FILES
    for name in ACCEPT_FILES:
        manifest = parse_manifest((CORPUS_SDL / name).read_bytes(), name)
        assert any(e.accept for s in manifest.services.values() for e in s.expose)


# --- fields a provider cannot honour: declined at bid time, the reason shown to the tenant ---

ARCH = host_arch()
OTHER_ARCH = "arm64" if ARCH == "amd64" else "amd64"


def with_field(field: str) -> str:
    """The e2e job using one field a provider without it must decline."""
    text = job("sleep 600")
    expose = (
        "    expose:\n      - port: 80\n        as: 80\n        to:\n          - global: true\n"
    )
    edits = {
        "accept": (
            "    args:",
            expose + "        accept: [shop.example.com]\n    args:",
        ),
        "leased-ip": (
            "    args:",
            expose.replace("true\n", "true\n            ip: myip\n") + "    args:",
        ),
        "permissions": (
            "    args:",
            "    params:\n      permissions:\n        read: [logs]\n    args:",
        ),
        "arch": ("cpu: {units: 1}", f"cpu: {{units: 1, attributes: {{arch: {OTHER_ARCH}}}}}"),
    }
    old, new = edits[field]
    text = text.replace(old, new)
    if field == "leased-ip":
        text += "endpoints:\n  myip:\n    kind: ip\n"
    return text


REFUSALS = {
    "accept": NO_INGRESS,
    "leased-ip": LEASED_IP_REASON,
    "permissions": "params.permissions (the lease's logs inside its containers) is not offered",
    "arch": f"CPU architecture {OTHER_ARCH} is needed; this provider is {ARCH}",
}


@pytest.mark.parametrize("field", sorted(REFUSALS))
def test_each_field_a_provider_lacks_is_a_need_it_declines(field: str) -> None:
    group = parse_manifest(with_field(field).encode()).groups[0]
    assert group.needs
    without = provider_features(parse_config({}))
    refusal = needs_refusal(group, without)
    assert refusal is not None and refusal.startswith(REFUSALS[field])
    if field in ("accept", "arch"):  # what an ingress / a host of that architecture honours
        ingress = {"listen": "127.0.0.1:8080", "domain": "ingress.example"}
        equipped = provider_features(parse_config({"ingress": ingress}), arch=OTHER_ARCH)
        assert needs_refusal(group, equipped) is None
    reclaim = parse_manifest(job("sleep 1") + "reclamation:\n  min_window: 1h\n").groups[0]
    assert needs_refusal(reclaim, without) == (
        "a reclamation window (reclamation.min_window) is not offered by this provider"
    )


def test_the_agent_declines_accept_hosts_without_an_ingress_and_why_shows_it(
    tmp_path: Path,
) -> None:
    """Real marketplace (gRPC, SQLite), real agent with no [ingress]: an order with accept
    hostnames and one with a leased IP are declined, each with its reason in ExplainOrder."""

    async def scenario() -> None:
        admin = Key.generate()
        async with (
            marketplace(tmp_path, admin) as port,
            running_agent(tmp_path, port) as (agent, _runtime, _said),
        ):
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            for field in ("accept", "leased-ip"):
                dep = await tenant.deploy(with_field(field))

                async def declines(order_id: str = dep.order_ids[0]) -> list[pb.Decline] | None:
                    request = tenant.signed(pb.GetRequest(id=order_id))  # a fresh nonce each
                    answer = await tenant.stub.ExplainOrder(request)
                    return list(answer.declines) or None

                [decline] = await eventually(declines)
                assert decline.provider == agent.key.address
                assert decline.reason.startswith(REFUSALS[field])
            await channel.close(grace=None)

    asyncio.run(scenario())
