"""Update in place over real gRPC (port 0) and a real SQLite file: the owner's signed update
becomes the next version, its provider hears of it and fetches it, an outsider and a change of
what was bought are refused with nothing changed, and a restarted market keeps the version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from marketplace.api import convert
from marketplace.api.client import ProviderClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.main import cli
from marketplace.cli.render import describe_event
from marketplace.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from marketplace.core.events import DeploymentEventKind
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl
from provider_agent.link import manifest_problem
from tests.server.test_flow import address, provider, tenant, wait_for

V2 = gpu_sdl().replace(b"busybox:latest", b"busybox:v2")


def leased(server: ServerThread) -> tuple[TenantClient, ProviderClient, pb.Deployment, str]:
    """alice's deployment, its lease running version 1 on `p`."""
    alice, p = tenant(server), provider(server, "p")
    dep = alice.create_deployment(gpu_sdl(), deposit=10_000_000)
    p.place_bid(dep.order_ids[0], 1_000_000)
    lease_id = wait_for(alice, dep.id, DeploymentEventKind.LEASE_CREATED).lease_id
    p.report_status(pb.LeaseStatusReport(lease_id=lease_id, state=pb.LEASE_RUNNING, version=1))
    return alice, p, dep, lease_id


def test_the_owner_updates_and_the_provider_fetches_the_new_version(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "market") as server:
        alice, p, dep, lease_id = leased(server)
        token = max(e.seq for e in _feed_until(p, 0, "lease_won"))
        result = alice.update_deployment(dep.id, V2, 2)
        assert result.deployment.version == 2
        assert list(result.changes) == [
            "train: image gpumarket/busybox:latest → gpumarket/busybox:v2"
        ]
        [told] = _feed_until(p, token, "lease_updated")[-1:]
        assert told.lease_updated.id == lease_id

        manifest = p.get_manifest(lease_id)
        assert (manifest.sdl, manifest.version) == (V2, 2)
        signed = pb.UpdateDeployment.FromString(manifest.tenant_request.payload)
        assert (signed.deployment_id, signed.sdl) == (dep.id, V2)
        tenant_address = alice.key.address if alice.key else ""
        assert manifest_problem(manifest, tenant_address, p.market_id) is None  # the agent's check
        replayed = pb.Manifest()  # a market serving that signed update as another version
        replayed.CopyFrom(manifest)
        replayed.version = 3
        problem = manifest_problem(replayed, tenant_address, p.market_id)
        assert problem == "the tenant signed that update for another deployment or version"

        p.report_status(pb.LeaseStatusReport(lease_id=lease_id, state=pb.LEASE_RUNNING, version=2))
        assert wait_for(alice, dep.id, DeploymentEventKind.UPDATE_RUNNING).lease.version == 2
        assert alice.get_lease(lease_id).version == 2
        with pytest.raises(InvalidArgument):  # a version that was never sent
            p.report_status(
                pb.LeaseStatusReport(lease_id=lease_id, state=pb.LEASE_RUNNING, version=7)
            )

    with ServerThread(tmp_path / "market") as again:  # the same SQLite file
        p_again = ProviderClient(again.address, p.key)
        manifest = p_again.get_manifest(lease_id)
        assert (manifest.sdl, manifest.version) == (V2, 2)
        alice_again = TenantClient(again.address, alice.key)
        assert alice_again.get_deployment(dep.id).version == 2
        assert alice_again.get_lease(lease_id).version == 2


def test_an_outsider_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "market") as server:
        alice, p, dep, lease_id = leased(server)
        mallory = TenantClient(server.address, Key.generate())
        with pytest.raises(PermissionDenied, match="not yours"):
            mallory.update_deployment(dep.id, V2, 2)
        assert alice.get_deployment(dep.id).version == 1
        assert p.get_manifest(lease_id).sdl == gpu_sdl()
        alice.update_deployment(dep.id, V2, 2)  # the owner's, on version 1: the first update
        updated = wait_for(alice, dep.id, DeploymentEventKind.DEPLOYMENT_UPDATED)
        assert updated.message.startswith("version 2: ")


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"cpu: {units: 1}", b"cpu: {units: 2}", "train: resources (cpu) cannot change in place"),
        (b"amount: 5000", b"amount: 6000", "train: pricing cannot change in place"),
        (b"region: eu", b"region: us", "placement dc: attributes and signedBy"),
        (b"count: 1", b"count: 2", "train: count cannot change in place"),
        (b"- port: 8080", b"- port: 9090", "train: exposed ports cannot change in place"),
    ],
)
def test_a_change_of_what_was_bought_is_refused_with_the_field(
    tmp_path: Path, old: bytes, new: bytes, reason: str
) -> None:
    with ServerThread(tmp_path / "market") as server:
        alice, p, dep, lease_id = leased(server)
        assert old in V2
        with pytest.raises(FailedPrecondition, match=re.escape(f"update refused: {reason}")):
            alice.update_deployment(dep.id, V2.replace(old, new), 2)
        assert alice.get_deployment(dep.id).version == 1
        assert p.get_manifest(lease_id).sdl == gpu_sdl()


def test_no_change_a_bad_sdl_and_a_closed_deployment_are_refused(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "market") as server:
        alice, _, dep, _ = leased(server)
        for wrong in (1, 3):  # an update makes the next version, no other
            with pytest.raises(FailedPrecondition, match="an update makes version 2, not"):
                alice.update_deployment(dep.id, V2, wrong)
        with pytest.raises(FailedPrecondition, match="changes nothing"):
            alice.update_deployment(dep.id, gpu_sdl(), 2)
        with pytest.raises(InvalidArgument, match="manifest"):
            alice.update_deployment(dep.id, b"version: '2.0'\nservices: [", 2)
        alice.close_deployment(dep.id)
        with pytest.raises(FailedPrecondition, match="closed"):
            alice.update_deployment(dep.id, V2, 2)
        assert alice.get_deployment(dep.id).version == 1


def _feed_until(p: ProviderClient, token: int, kind: str) -> list[pb.ProviderEvent]:
    """The provider's feed after `token`, up to and with the first event of `kind`."""
    seen = []
    for event in p.watch_orders(token):
        seen.append(event)
        if event.WhichOneof("event") == kind:
            return seen
    raise AssertionError(f"the feed ended without {kind}")


def test_the_provider_alone_may_report_versions(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "market") as server:
        alice, p, _, lease_id = leased(server)
        other = provider(server, "other")
        with pytest.raises(PermissionDenied):
            other.report_status(
                pb.LeaseStatusReport(lease_id=lease_id, state=pb.LEASE_RUNNING, version=1)
            )
        assert address(p) == alice.get_lease(lease_id).provider


def test_the_cli_says_what_changes_and_refuses_in_one_line(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "market") as server:
        alice, _, dep, _ = leased(server)
        assert alice.key is not None
        key = tmp_path / "alice.pem"
        key.write_bytes(alice.key.to_pem())
        bigger, v2 = tmp_path / "bigger.yaml", tmp_path / "v2.yaml"
        bigger.write_bytes(V2.replace(b"cpu: {units: 1}", b"cpu: {units: 2}"))
        v2.write_bytes(V2)

        def update(path: Path) -> Result:
            short = dep.id.removeprefix("D")  # a short id: `update 1` for D1
            args = ["update", short, str(path), "--market", server.address, "--key", str(key)]
            return CliRunner().invoke(cli, args, catch_exceptions=False)

        refused = update(bigger)
        assert refused.exit_code == 1
        assert refused.output == (
            "Error: update refused: train: resources (cpu) cannot change in place\n"
        )
        done = update(v2)
        assert done.exit_code == 0, done.output
        assert done.output.splitlines() == [
            f"deployment {dep.id}: version 2",
            "  train: image gpumarket/busybox:latest → gpumarket/busybox:v2",
        ]
        args = ["status", dep.id, "--market", server.address, "--key", str(key)]
        status = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert "version 2" in status.output.splitlines()[0]
        updated = wait_for(alice, dep.id, DeploymentEventKind.DEPLOYMENT_UPDATED)
        event = convert.deployment_event_from_proto(updated)
        assert event is not None
        change = done.output.splitlines()[1].strip()
        assert describe_event(event) == f"deployment {dep.id} updated to version 2: {change}"
