"""A provider's own status (issue 15): its GPUs' telemetry and its declines by kind, against a
real marketplace (real gRPC on port 0, real SQLite), with readings from the agent's NVML
adapter over the replayed H100 recordings (the same seam a GPU host reads through)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from marketplace.api.client import ProviderClient, ServiceClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.main import cli
from marketplace.core import gpus as gpu_registry
from marketplace.core.clock import SystemClock
from marketplace.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from marketplace.core.limits import MAX_GPUS
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from provider_agent.inventory import Inventory, OfferedGpu
from provider_agent.link import telemetry_pb
from provider_agent.nvml import GpuMonitor, HostGpus, open_monitor
from tests.helpers import FIXTURES_NVML

# readings are dated from now: the market refuses one from more than a day ago
NOW = SystemClock().now_ms()

UNDER_LOAD = FIXTURES_NVML / "h100_nvml_under_load.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ServerThread(tmp_path_factory.mktemp("market")) as running:
        yield running


def provider(server: ServerThread, name: str) -> ProviderClient:
    client = ProviderClient(server.address, Key.generate())
    client.register(provider_registration(name))
    return client


def address(client: ServiceClient) -> str:
    assert client.key is not None
    return client.key.address


def inventory_of(host: HostGpus) -> Inventory:
    gpus = tuple(
        OfferedGpu(g, gpu_registry.from_nvml(g.info.name, g.info.memory_mib), g.healthy)
        for g in host.gpus
    )
    return Inventory(host, gpus, 8000, 2**34, 2**36, ())


@pytest.fixture
def monitor() -> Iterator[GpuMonitor]:
    """The agent's NVML adapter over the H100 recording, cycling its under-load series."""
    gpus = open_monitor("replay", FIXTURES_NVML / "h100_nvml.json", replay_load=True)
    gpus.start(watch_xids=False)
    yield gpus
    gpus.close()


def load_series() -> list[dict[str, int]]:
    return json.loads(UNDER_LOAD.read_text())["samples"]


def test_the_latest_nvml_reading_is_kept_and_read_back_by_its_provider(
    server: ServerThread, monitor: GpuMonitor
) -> None:
    p = provider(server, "p")
    temps = {s["temp_c"] for s in load_series()}
    powers = {round(s["power_mw"] / 1000) for s in load_series()}
    seen = []
    for n in range(6):
        host = monitor.poll()
        p.report_telemetry(
            pb.TelemetryReport(gpus=telemetry_pb(inventory_of(host)), read_at_ms=NOW + n)
        )
        status = p.status()
        assert status.provider == address(p) and status.read_at_ms == NOW + n
        (gpu,) = status.gpus  # one GPU in the recording: one reading, the newest
        assert gpu.model == "h100" and gpu.healthy and gpu.memory_mib > 70_000
        assert gpu.temperature_c in temps and gpu.power_w in powers
        assert 0 <= gpu.utilization_pct <= 100 and gpu.HasField("memory_used_mib")
        assert gpu.xid_count == 0 and not gpu.HasField("last_xid")
        seen.append((gpu.temperature_c, gpu.utilization_pct))
    assert len(set(seen)) > 1  # the series moved, and the market followed it
    assert status.received_at_ms > 0


def test_an_xid_is_counted_and_shown_until_its_quarantine_ends(
    server: ServerThread, monitor: GpuMonitor
) -> None:
    p = provider(server, "x")
    monitor.record_xid(0, 79)  # fallen off the bus
    monitor.record_xid(0, 48)  # double-bit ECC
    report = telemetry_pb(inventory_of(monitor.poll()))
    p.report_telemetry(pb.TelemetryReport(gpus=report, read_at_ms=NOW + 1))
    (gpu,) = p.status().gpus
    assert gpu.xid_count == 2 and gpu.last_xid == 48 and not gpu.healthy


def test_another_key_is_refused_and_an_unregistered_one_is_not_found(server: ServerThread) -> None:
    p, q = provider(server, "p2"), provider(server, "q2")
    p.report_telemetry(
        pb.TelemetryReport(gpus=[pb.GpuTelemetry(index=0, temperature_c=71)], read_at_ms=NOW + 5)
    )
    with pytest.raises(PermissionDenied, match="readable by that provider only"):
        q.status(address(p))
    with pytest.raises(PermissionDenied):
        ProviderClient(server.address, Key.generate()).status(address(p))
    with pytest.raises(PermissionDenied):  # the admin's too: an operator's hardware is its own
        ProviderClient(server.address, server.admin).status(address(p))
    stranger = ProviderClient(server.address, Key.generate())
    with pytest.raises(NotFound):
        stranger.report_telemetry(pb.TelemetryReport(gpus=[pb.GpuTelemetry(index=0)]))
    with pytest.raises(NotFound):
        stranger.status()
    assert p.status().gpus[0].temperature_c == 71  # nothing of it changed


@pytest.mark.parametrize(
    ("gpu", "problem"),
    [
        (pb.GpuTelemetry(index=0, temperature_c=900), "temperature_c 900 is outside"),
        (pb.GpuTelemetry(index=0, power_w=-3), "power_w -3 is outside"),
        (pb.GpuTelemetry(index=0, utilization_pct=101), "utilization_pct 101"),
        (pb.GpuTelemetry(index=MAX_GPUS), "index"),
        (pb.GpuTelemetry(index=0, uuid="GPU-\x1b[31m"), "control character"),
        (pb.GpuTelemetry(index=0, health_reason="x" * 600), "gpu health reason"),
    ],
)
def test_a_reading_out_of_bounds_is_refused_and_changes_nothing(
    server: ServerThread, gpu: pb.GpuTelemetry, problem: str
) -> None:
    p = provider(server, "b")
    p.report_telemetry(pb.TelemetryReport(gpus=[pb.GpuTelemetry(index=0, power_w=300)]))
    with pytest.raises(InvalidArgument, match=problem):
        p.report_telemetry(pb.TelemetryReport(gpus=[gpu], read_at_ms=NOW + 9))
    assert p.status().gpus[0].power_w == 300


def test_too_many_gpus_or_a_gpu_twice_is_refused(server: ServerThread) -> None:
    p = provider(server, "m")
    many = [pb.GpuTelemetry(index=i % MAX_GPUS) for i in range(MAX_GPUS + 1)]
    with pytest.raises(InvalidArgument, match="the limit is"):
        p.report_telemetry(pb.TelemetryReport(gpus=many))
    twice = [pb.GpuTelemetry(index=1), pb.GpuTelemetry(index=1)]
    with pytest.raises(InvalidArgument, match="twice"):
        p.report_telemetry(pb.TelemetryReport(gpus=twice))
    assert not p.status().gpus


def test_memory_stays_flat_one_reading_per_provider(server: ServerThread) -> None:
    p = provider(server, "flat")
    gpus = [pb.GpuTelemetry(index=i, temperature_c=40 + i) for i in range(8)]
    for n in range(200):
        p.report_telemetry(pb.TelemetryReport(gpus=gpus, read_at_ms=NOW + n))
    status = p.status()
    assert len(status.gpus) == 8 and status.read_at_ms == NOW + 199
    # an older reading (a late resend) does not replace the newer one
    p.report_telemetry(pb.TelemetryReport(gpus=gpus[:1], read_at_ms=NOW + 3))
    assert len(p.status().gpus) == 8


def test_declines_are_counted_by_kind_for_their_provider_only(server: ServerThread) -> None:
    p, q = provider(server, "dp"), provider(server, "dq")
    tenant = TenantClient(server.address, Key.generate())
    TenantClient(server.address, server.admin).fund(address(tenant), 10**9)
    orders = [tenant.create_deployment(gpu_sdl("60s", 5000), 10**7).order_ids[0] for _ in range(4)]
    p.decline_order(orders[0], "price 9.000000/h is above the order's maximum 0.005000 per hour")
    p.decline_order(orders[1], "needs 2× h100 80Gi (one model for all replicas), provider has 1")
    p.decline_order(orders[2], "needs 2× h100 80Gi (one model for all replicas), provider has 1")
    with pytest.raises(FailedPrecondition, match="above the tenant's maximum"):
        p.place_bid(orders[3], 10**14)  # the market refuses it: a decline by the marketplace
    q.decline_order(orders[0], "busy")

    kinds = {d.kind: d for d in p.status().declines}
    assert kinds["gpu"].by_provider == 2 and kinds["gpu"].by_marketplace == 0
    assert kinds["price"].by_provider == 1 and kinds["price"].by_marketplace == 1
    assert "above the tenant's maximum" in kinds["price"].last_reason
    assert p.status().declines[0].kind == "gpu"  # most frequent first (a tie: by name)
    assert {d.kind: d.by_provider for d in q.status().declines} == {"other": 1}
    with pytest.raises(PermissionDenied):
        q.status(address(p))


def test_a_reading_outlives_no_restart_but_the_nonce_does(tmp_path: Path) -> None:
    """Telemetry is memory only (the next heartbeat brings it back); its signed report is
    never accepted twice, across a restart too."""
    with ServerThread(tmp_path / "m") as first:
        key = Key.generate()
        p = ProviderClient(first.address, key)
        p.register(provider_registration("r"))
        report = pb.TelemetryReport(gpus=[pb.GpuTelemetry(index=0, temperature_c=55)])
        signed = p._seal(report)
        p._unary("ReportTelemetry", signed, pb.Ack)
        admin = first.admin
    with ServerThread(tmp_path / "m") as second:
        assert second.admin.address == admin.address
        p = ProviderClient(second.address, key)
        assert not p.status().gpus
        assert p._unary("ReportTelemetry", signed, pb.Ack).ok  # a resend: answered, not applied
        assert not p.status().gpus


def test_provider_status_on_the_cli(server: ServerThread, tmp_path: Path) -> None:
    """`gpumarket provider status`: the agent config's key reads its own status."""
    key = Key.generate()
    pem = tmp_path / "p.pem"
    pem.write_bytes(key.to_pem())
    config = tmp_path / "provider.toml"
    config.write_text(
        f'[provider]\nkey = "{pem}"\n[marketplace]\naddress = "{server.address}"\n'
        '[gpu]\nbackend = "none"\n'
    )
    p = ProviderClient(server.address, key)
    p.register(provider_registration("cli"))
    runner = CliRunner()
    empty = runner.invoke(cli, ["provider", "status", "--config", str(config)])
    assert empty.exit_code == 0, empty.output
    assert "no GPU telemetry yet" in empty.output and "no orders declined" in empty.output

    p.report_telemetry(
        pb.TelemetryReport(
            gpus=[pb.GpuTelemetry(index=0, model="h100", healthy=True, temperature_c=47)],
            read_at_ms=NOW + 1,
        )
    )
    tenant = TenantClient(server.address, Key.generate())
    TenantClient(server.address, server.admin).fund(address(tenant), 10**9)
    order = tenant.create_deployment(gpu_sdl("60s", 5000), 10**7).order_ids[0]
    p.decline_order(order, "needs 2× h100 80Gi, provider has 1× h100 80Gi free")
    table = runner.invoke(cli, ["provider", "status", "--config", str(config)])
    assert table.exit_code == 0, table.output
    assert "47 C" in table.output and "healthy" in table.output
    assert "gpu" in table.output and "needs 2× h100" in table.output
    data = json.loads(
        runner.invoke(cli, ["provider", "status", "--config", str(config), "--json"]).output
    )
    assert data["gpus"][0]["temperature_c"] == 47 and data["gpus"][0]["power_w"] is None
    assert data["declines_since_ms"] > 0 and data["declines"][0]["count"] == 1
    assert data["declines"][0]["kind"] == "gpu"

    config.write_text(  # a key the market does not know: one line, no traceback
        config.read_text().replace(str(pem), str(tmp_path / "missing.pem"))
    )
    missing = runner.invoke(cli, ["provider", "status", "--config", str(config)])
    assert missing.exit_code == 1 and "Error: no key file" in missing.output
    assert "Traceback" not in missing.output
