"""Auditors against a real marketplace (gRPC on port 0, SQLite): a signed attribute lets a
provider bid on a signedBy order; forged, untrusted, expired and revoked signatures never do;
signatures survive a kill -9; `gpumarket auditor sign/list/verify/revoke` on the command line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner, Result

from marketplace import identity
from marketplace.api.client import AuditorClient, MarketClient, ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.cli.main import cli
from marketplace.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from marketplace.core.market import MarketConfig
from marketplace.identity import Key, verify_signature
from marketplace.server.testing import ServerThread, gpu_sdl, h100_inventory
from tests.agent.test_agent import running_agent
from tests.agent.test_e2e import _async, eventually, job
from tests.helpers import funded_tenant, registered_provider
from tests.server.market_process import MarketProcess

AKASH_AUDITOR = "akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63"
DAY_MS = 86_400_000
AUDITOR = Key.generate()


def signed_by_sdl(auditor: str = AKASH_AUDITOR) -> bytes:
    """gpu_sdl's H100 job in region eu, as awesome-akash writes it: signedBy anyOf an auditor."""
    sdl = gpu_sdl(bid_window="60s").decode()
    placement = "      attributes: {region: eu}\n"
    assert placement in sdl
    signed = f"{placement}      signedBy:\n        anyOf:\n          - {auditor}\n"
    return sdl.replace(placement, signed).encode()


def config(auditor: str) -> MarketConfig:
    """A market that trusts `auditor` and reads Akash's auditor in SDLs as it."""
    return MarketConfig(auditors=frozenset({auditor}), auditor_aliases=((AKASH_AUDITOR, auditor),))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path / "market", config(AUDITOR.address)) as running:
        yield running


def order_of(tenant: TenantClient, sdl: bytes) -> str:
    dep = tenant.create_deployment(sdl, 100_000_000)
    return f"{dep.id}/1/1"


def address_of(client: ProviderClient) -> str:
    assert client.key is not None
    return client.key.address


def now_ms(server: ServerThread) -> int:
    return MarketClient(server.address).info().server_time_ms


def raw_call(server: ServerThread, method: str, request: pb.SignedRequest) -> grpc.StatusCode:
    """The status of one Auditor call, as a client of any language sees it."""
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AuditorStub(channel)
        try:
            getattr(stub, method)(request, timeout=10)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            return exc.code()
    return grpc.StatusCode.OK


def sign_request(
    server: ServerThread, key: Key, provider: str, auditor: str = ""
) -> pb.SignedRequest:
    msg = pb.SignProviderAttributes(
        provider=provider,
        auditor=auditor or key.address,
        attributes=[pb.Attribute(key="region", value="eu")],
        expires_at_ms=now_ms(server) + DAY_MS,
    )
    return seal(key, msg, market=server.admin.address)


def test_a_signed_attribute_lets_the_provider_bid_on_a_signed_by_order(
    server: ServerThread,
) -> None:
    tenant = funded_tenant(server.address, server.admin, 1_000_000_000)
    provider = registered_provider(server.address, "p1")
    address = address_of(provider)
    first = order_of(tenant, signed_by_sdl())
    with pytest.raises(FailedPrecondition, match=f"any of auditors {AKASH_AUDITOR}"):
        provider.place_bid(first, 1_000)

    auditor = AuditorClient(server.address, AUDITOR)
    answer = auditor.sign(address, {"region": "eu"}, now_ms(server) + DAY_MS)
    (att,) = answer.attestations
    assert att.valid and att.trusted and list(att.names) == [AUDITOR.address, AKASH_AUDITOR]
    # the proof is the auditor's own signature, checkable by anyone
    proof = att.proof
    signer = verify_signature(
        "marketplace.api.v1.SignProviderAttributes",
        proof.payload,
        identity.Signature(
            proof.public_key, proof.signature, proof.nonce, proof.timestamp_ms, proof.market_id
        ),
        server.admin.address,
    )
    assert signer == AUDITOR.address

    assert provider.place_bid(first, 1_000).provider == address
    second = order_of(tenant, signed_by_sdl(AUDITOR.address))  # the local name works too
    assert provider.place_bid(second, 1_000).provider == address
    # the provider's agent learns what counts for it at every heartbeat
    audited = provider.heartbeat().audited
    assert {a.name for a in audited.auditors} == {AUDITOR.address, AKASH_AUDITOR}


def test_a_forged_attestation_is_unauthenticated(server: ServerThread) -> None:
    provider = address_of(registered_provider(server.address, "p1"))
    tampered = sign_request(server, AUDITOR, provider)
    msg = pb.SignProviderAttributes()
    msg.ParseFromString(tampered.payload)
    msg.attributes[0].value = "us"  # the bytes differ from what the auditor signed
    tampered.payload = msg.SerializeToString()
    assert raw_call(server, "SignProviderAttributes", tampered) == grpc.StatusCode.UNAUTHENTICATED

    # another key's signature presented as the auditor's: its own key, the auditor's name
    impostor = sign_request(server, Key.generate(), provider, auditor=AUDITOR.address)
    assert raw_call(server, "SignProviderAttributes", impostor) == grpc.StatusCode.UNAUTHENTICATED
    # the auditor's public key on another key's signature
    swapped = sign_request(server, Key.generate(), provider, auditor=AUDITOR.address)
    swapped.public_key = AUDITOR.public_key
    assert raw_call(server, "SignProviderAttributes", swapped) == grpc.StatusCode.UNAUTHENTICATED
    assert not AuditorClient(server.address).list(provider).attestations


def test_an_untrusted_auditors_attestation_is_refused_and_not_stored(
    server: ServerThread,
) -> None:
    provider = address_of(registered_provider(server.address, "p1"))
    stranger = Key.generate()
    request = sign_request(server, stranger, provider)
    assert raw_call(server, "SignProviderAttributes", request) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(PermissionDenied, match="not an auditor this marketplace trusts"):
        AuditorClient(server.address, stranger).sign(provider, {"region": "eu"}, now_ms(server) + 1)
    assert not AuditorClient(server.address).list(provider).attestations


def test_expired_and_revoked_signatures_do_not_satisfy(server: ServerThread) -> None:
    tenant = funded_tenant(server.address, server.admin, 1_000_000_000)
    provider = registered_provider(server.address, "p1")
    address = address_of(provider)
    auditor = AuditorClient(server.address, AUDITOR)
    with pytest.raises(InvalidArgument, match="already expired"):
        auditor.sign(address, {"region": "eu"}, now_ms(server) - 1)

    expires = now_ms(server) + 1_500
    auditor.sign(address, {"region": "eu"}, expires)
    assert provider.place_bid(order_of(tenant, signed_by_sdl()), 1_000)
    time.sleep(max(0.0, (expires - now_ms(server)) / 1000) + 0.05)
    (att,) = auditor.list(address).attestations
    assert not att.valid and att.trusted
    with pytest.raises(FailedPrecondition, match="any of auditors"):
        provider.place_bid(order_of(tenant, signed_by_sdl()), 1_000)

    auditor.sign(address, {"region": "eu"}, now_ms(server) + DAY_MS)
    assert provider.place_bid(order_of(tenant, signed_by_sdl()), 1_000)
    (att,) = auditor.revoke(address, ["region"]).attestations
    assert att.revoked_at_ms and not att.valid
    with pytest.raises(FailedPrecondition, match="any of auditors"):
        provider.place_bid(order_of(tenant, signed_by_sdl()), 1_000)


def test_attestations_survive_a_kill_9(tmp_path: Path) -> None:
    args = ("--auditor", AUDITOR.address, "--auditor-alias", f"{AKASH_AUDITOR}={AUDITOR.address}")
    data_dir = tmp_path / "market"
    with MarketProcess.start(data_dir, *args) as market:
        provider = ProviderClient(market.address, Key.generate())
        provider.register(pb.RegisterProvider(host_uri="https://p", inventory=h100_inventory("p")))
        address = address_of(provider)
        server_now = MarketClient(market.address).info().server_time_ms
        AuditorClient(market.address, AUDITOR).sign(address, {"tier": "1"}, server_now + DAY_MS)
        market.kill9()
    with MarketProcess.start(data_dir, *args) as market:
        (att,) = AuditorClient(market.address).list(address).attestations
        assert (att.key, att.value, att.valid) == ("tier", "1", True)
        assert att.proof.public_key == AUDITOR.public_key
        # the inventory history survived too: verify sees the registration
        findings = AuditorClient(market.address).verify(address).findings
        assert any(f.check == "gpu-stable" and f.ok for f in findings)
    # a market that no longer trusts the auditor keeps the record but does not count it
    with MarketProcess.start(data_dir) as market:
        (att,) = AuditorClient(market.address).list(address).attestations
        assert not att.trusted and not att.valid


def test_verify_finds_what_does_not_hold(server: ServerThread) -> None:
    honest = registered_provider(server.address, "honest")
    address = address_of(honest)
    auditor = AuditorClient(server.address)
    findings = auditor.verify(address, {"region": "eu"})
    assert findings.ok, findings

    # what the auditor means to sign must be what the provider declares
    wrong = auditor.verify(address, {"region": "us"})
    assert not wrong.ok and any(f.check == "to-sign" and not f.ok for f in wrong.findings)

    # the same GPUs registered by a second provider
    copycat = ProviderClient(server.address, Key.generate())
    copycat.register(pb.RegisterProvider(host_uri="https://c", inventory=h100_inventory("honest")))
    twice = auditor.verify(address_of(copycat))
    assert any(f.check == "gpu-uuid" and not f.ok for f in twice.findings)

    # a re-registration with other UUIDs, and an A100 reported as an H100
    inventory = h100_inventory("other")
    inventory.gpus[1].name = "NVIDIA A100-SXM4-80GB"
    honest.register(pb.RegisterProvider(host_uri="https://h", inventory=inventory))
    changed = auditor.verify(address)
    failed = {f.check for f in changed.findings if not f.ok}
    assert {"gpu-stable", "gpu-model"} <= failed, changed


def test_the_agent_bids_on_a_signed_by_order_once_an_auditor_signed(tmp_path: Path) -> None:
    """The provider agent's own bid decision sees the market's view of its signatures."""
    settings = dataclasses.replace(config(AUDITOR.address), heartbeat_interval_ms=300)
    placement = "    here:\n"
    sdl = job("true").replace(
        placement, f"{placement}      signedBy:\n        anyOf: [{AKASH_AUDITOR}]\n"
    )
    assert AKASH_AUDITOR in sdl
    with ServerThread(tmp_path / "market", settings) as server:
        tenant = funded_tenant(server.address, server.admin, 1_000_000_000)
        port = int(server.address.rpartition(":")[2])

        async def scenario() -> None:
            async with running_agent(tmp_path, port) as (agent, _runtime, said):
                first = order_of(tenant, sdl.encode())
                declined = await eventually(
                    lambda: _async(
                        next((s for s in said if s.startswith(f"decline {first}")), None)
                    )
                )
                assert f"any of auditors {AKASH_AUDITOR}" in declined
                auditor = AuditorClient(server.address, AUDITOR)
                auditor.sign(agent.key.address, {"tier": "audited"}, now_ms(server) + DAY_MS)
                await eventually(lambda: _async(AKASH_AUDITOR in agent.link.audited))
                second = order_of(tenant, sdl.encode())
                await eventually(
                    lambda: _async(any(s.startswith("bid ") and second in s for s in said))
                )

        asyncio.run(asyncio.wait_for(scenario(), 60))


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[tuple[ServerThread, Key]]:
    auditor = identity.create_key("auditor")  # in this test's GPUMARKET_HOME
    with ServerThread(tmp_path / "market", config(auditor.address)) as running:
        yield running, auditor


def run(server: ServerThread, *args: str) -> Result:
    env = {"GPUMARKET_MARKET": server.address, "GPUMARKET_KEY": "auditor"}
    return CliRunner().invoke(cli, ["auditor", *args], env=env, catch_exceptions=False)


def test_cli_sign_list_verify_revoke(cli_server: tuple[ServerThread, Key]) -> None:
    server, auditor = cli_server
    provider = address_of(registered_provider(server.address, "p1"))

    verified = run(server, "verify", provider, "region=eu")
    assert verified.exit_code == 0, verified.output
    assert "every check holds" in verified.output

    refused = run(server, "sign", provider, "region=us")
    assert refused.exit_code == 1 and "not signed" in refused.output and "FAIL" in refused.output

    signed = run(server, "sign", provider, "region=eu", "--expires", "30d")
    assert signed.exit_code == 0, signed.output
    assert f"signed region=eu for {provider}" in signed.output

    listed = run(server, "list", provider)
    assert listed.exit_code == 0, listed.output
    assert "region=eu" in listed.output and "valid" in listed.output
    assert f"signedBy {AKASH_AUDITOR} means {auditor.address}" in listed.output
    shown = json.loads(run(server, "list", provider, "--json").output)
    assert shown["attestations"][0]["auditor"] == auditor.address

    assert run(server, "revoke", provider).exit_code == 0
    assert "revoked" in run(server, "list", provider).output

    bad = run(server, "sign", provider, "region")
    assert bad.exit_code == 1 and "KEY=VALUE" in bad.output and "Traceback" not in bad.output
    unknown = run(server, "verify", "gm1" + "a" * 32)
    assert unknown.exit_code == 1 and "is not registered" in unknown.output
