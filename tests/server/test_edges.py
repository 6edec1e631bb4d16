"""Hostile edges of the wire against a real marketplace (marketplace.server.testing.ServerThread,
real gRPC): values a client can put in a well-formed, well-signed request that the server must
refuse with INVALID_ARGUMENT naming the field, never an INTERNAL error (a traceback)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.cli.main import cli
from marketplace.core import money
from marketplace.core.clock import SystemClock
from marketplace.core.errors import MarketError
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from provider_agent.config import EX_CONFIG, load_config
from tests.helpers import funded_tenant, registered_provider, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ServerThread(tmp_path_factory.mktemp("market")) as running:
        yield running


def refusal(server: ServerThread, method: Callable[..., object], key: Key, msg: Message) -> str:
    """The details of the INVALID_ARGUMENT a raw signed call ends with."""
    with pytest.raises(grpc.RpcError) as caught:
        method(seal(key, msg, market=server.admin.address), timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    details = error.details() or ""
    assert "\n" not in details
    return details


def running_lease(server: ServerThread) -> tuple[Key, str]:
    """A provider's key and the lease it won and reported running."""
    tenant = funded_tenant(server.address, server.admin, 100 * money.MICRO)
    provider = registered_provider(server.address, "edges")
    dep = tenant.create_deployment(gpu_sdl(bid_window="200ms"), money.MICRO)
    bid = provider.place_bid(dep.order_ids[0], 1_000)
    wait_until(lambda: _has_lease(tenant, bid.id), 10, "the lease", interval=0.05)
    provider.report_status(pb.LeaseStatusReport(lease_id=bid.id, state=pb.LEASE_RUNNING))
    assert provider.key is not None
    return provider.key, bid.id


def _has_lease(tenant: object, lease_id: str) -> bool:
    try:
        return tenant.get_lease(lease_id).id == lease_id  # type: ignore[attr-defined]
    except MarketError:
        return False


# --- 1: unknown enum values and malformed fields ------------------------------------------------


def test_a_page_token_of_non_ascii_digits_is_invalid_not_internal(server: ServerThread) -> None:
    # 'p1:²' passed str.isdigit() and then int() raised: INTERNAL, a traceback in the log
    token = base64.urlsafe_b64encode("p1:²".encode()).decode()
    with grpc.insecure_channel(server.address) as channel:
        details = refusal(
            server,
            pb_grpc.TenantStub(channel).ListDeployments,
            Key.generate(),
            pb.ListRequest(page_token=token),
        )
    assert details.startswith("bad page_token")


def test_a_lease_status_of_an_unknown_state_is_refused_naming_it(server: ServerThread) -> None:
    key, lease_id = running_lease(server)
    with grpc.insecure_channel(server.address) as channel:
        details = refusal(
            server,
            pb_grpc.ProviderStub(channel).ReportLeaseStatus,
            key,
            pb.LeaseStatusReport(lease_id=lease_id, state=99),  # type: ignore[arg-type]
        )
    assert details.startswith("state 99 is not a lease state this marketplace knows")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["market", "serve", "--listen", "127.0.0.1:²"], "use HOST:PORT, e.g. 127.0.0.1:7420"),
        (["console", "--listen", "127.0.0.1:²"], "use HOST:PORT, e.g. 127.0.0.1:7480"),
    ],
)
def test_a_port_of_non_ascii_digits_is_one_line_not_a_traceback(
    args: list[str], said: str, tmp_path: Path
) -> None:
    if args[0] == "market":
        args = [*args, "--data-dir", str(tmp_path / "market")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output == f"Error: --listen '127.0.0.1:²': {said}\n"


# --- 2: times and counters a provider stamps -----------------------------------------------------


@pytest.mark.parametrize(
    ("time_ms", "said"),
    [
        (1, r"log line time_ms is [\d,]+ s before its lease; at most 300 s"),
        (2**63 - 1, r"log line time_ms is [\d,]+ s ahead of the marketplace's clock"),
        (-(2**63), "log line time_ms is .* s before its lease"),
    ],
)
def test_a_log_line_dated_far_from_its_lease_is_refused(
    server: ServerThread, time_ms: int, said: str
) -> None:
    key, lease_id = running_lease(server)
    batch = pb.LogBatch(
        lease_id=lease_id,
        lines=[pb.LogLine(line="fine"), pb.LogLine(line="dated", time_ms=time_ms)],
    )
    with grpc.insecure_channel(server.address) as channel:
        details = refusal(server, pb_grpc.ProviderStub(channel).ReportLogs, key, batch)
    assert re.match(said, details), details
    provider = ProviderClient(server.address, key)
    now = SystemClock().now_ms()
    provider.report_logs(lease_id, [pb.LogLine(line="on time", time_ms=now)])
    (line,) = TenantClient(server.address, key).stream_logs(lease_id)  # nothing of the refused
    assert (line.line, line.time_ms) == ("on time", now)


def test_a_telemetry_reading_from_long_ago_is_refused(server: ServerThread) -> None:
    provider = registered_provider(server.address, "old-readings")
    assert provider.key is not None
    report = pb.TelemetryReport(gpus=[pb.GpuTelemetry(index=0, model="h100")], read_at_ms=1)
    with grpc.insecure_channel(server.address) as channel:
        details = refusal(
            server, pb_grpc.ProviderStub(channel).ReportTelemetry, provider.key, report
        )
    assert re.match(r"read_at_ms is [\d,]+ s before a day ago", details), details


def test_an_endpoint_port_past_65535_is_refused(server: ServerThread) -> None:
    key, lease_id = running_lease(server)
    for name in ("port", "external_port"):
        endpoint = pb.Endpoint(service="web", port=80, host="127.0.0.1", external_port=8080)
        setattr(endpoint, name, 2**32 - 1)
        report = pb.LeaseStatusReport(
            lease_id=lease_id, state=pb.LEASE_RUNNING, endpoints=[endpoint]
        )
        with grpc.insecure_channel(server.address) as channel:
            details = refusal(server, pb_grpc.ProviderStub(channel).ReportLeaseStatus, key, report)
        assert details == f"endpoint {name} 4294967295 is outside 0..65535"


# --- 3: attribute keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("", "attribute key '' is empty"),
        (" \t ", r"attribute key ' \t ' is empty"),
        (" region", "attribute key ' region' has spaces around it"),
        ("k" * 129, "attribute key is 129 characters; the limit is 128"),
    ],
)
def test_a_blank_or_overlong_attribute_key_is_refused_naming_it(
    server: ServerThread, key: str, said: str
) -> None:
    registration = provider_registration("blank-key")
    registration.attributes.append(pb.Attribute(key=key, value="x"))
    signed = registered_provider(server.address, "to-verify").key
    assert signed is not None
    verify = pb.VerifyProviderRequest(
        provider=signed.address, attributes=[pb.Attribute(key=key, value="x")]
    )
    with grpc.insecure_channel(server.address) as channel:
        registered = refusal(
            server, pb_grpc.ProviderStub(channel).Register, Key.generate(), registration
        )
        with pytest.raises(grpc.RpcError) as caught:  # what an auditor checks before signing
            pb_grpc.AuditorStub(channel).VerifyProvider(verify, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert registered == said and caught.value.details() == said


def test_the_auditor_cli_refuses_a_blank_key_in_one_line(server: ServerThread) -> None:
    result = CliRunner().invoke(
        cli, ["auditor", "sign", "gm1x", " =v", "--market", server.address, "--skip-verify"]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output == "Error: attribute key ' ' is empty\n"


# --- 4: plaintext off loopback -------------------------------------------------------------------


def test_the_cli_refuses_plaintext_off_loopback_unless_told(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.0.0.0 is not a loopback address, yet Linux delivers a connection to it to this machine:
    # a real market off loopback, as the check sees it
    port = server.address.rpartition(":")[2]
    remote = f"127.0.0.1:{port},0.0.0.0:{port}"
    runner = CliRunner()
    refused = runner.invoke(cli, ["providers", "--market", remote])
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    assert refused.output == (
        f"Error: refusing plaintext to 0.0.0.0:{port} (not this machine): pass the marketplace's"
        " CA with --tls-ca CA.pem [env GPUMARKET_TLS_CA], or --insecure [env GPUMARKET_INSECURE=1]"
        " to send it readable on purpose\n"
    )
    told = runner.invoke(cli, ["providers", "--market", f"0.0.0.0:{port}", "--insecure"])
    assert told.exit_code == 0, told.output
    monkeypatch.setenv("GPUMARKET_INSECURE", "1")
    assert runner.invoke(cli, ["providers", "--market", f"0.0.0.0:{port}"]).exit_code == 0
    monkeypatch.delenv("GPUMARKET_INSECURE")
    assert runner.invoke(cli, ["providers", "--market", server.address]).exit_code == 0


def test_the_agent_config_refuses_plaintext_off_loopback_unless_told(tmp_path: Path) -> None:
    config = tmp_path / "provider.toml"
    config.write_text('[marketplace]\naddress = "10.0.0.1:7420"\n[gpu]\nbackend = "none"\n')
    result = CliRunner().invoke(cli, ["provider", "inventory", "--config", str(config)])
    assert result.exit_code == EX_CONFIG
    assert result.output == (
        f"Error: {config}: marketplace.address: 10.0.0.1:7420 is not this machine and no TLS is "
        'set: set tls_ca = "CA.pem" (or tls = true for the system\'s roots), or insecure = true '
        "to talk plaintext on purpose\n"
    )
    for opt_in in ("insecure = true", "tls = true"):
        config.write_text(f'[marketplace]\naddress = "10.0.0.1:7420"\n{opt_in}\n')
        assert load_config(config).marketplace.address == "10.0.0.1:7420"


# --- 5: amounts finer than a micro-unit ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["account", "fund", "me", "0.0000001"],
            "amount: '0.0000001' is not a whole number of micro-units",
        ),
        (
            ["account", "fund", "me", "1.0000005"],
            "amount: '1.0000005' is not a whole number of micro-units",
        ),
        (["account", "fund", "me", "0"], "amount must be positive, got 0"),
        (["account", "fund", "me", "0.0000000u"], "amount must be positive, got 0"),
        (["deposit", "D1", "0.0000001"], "deposit: '0.0000001' is not a whole number"),
        (["deploy", "job.yaml", "--deposit", "0.5u"], "--deposit: '0.5u' is not a whole number"),
    ],
)
def test_an_amount_finer_than_a_micro_unit_or_not_positive_is_refused_naming_it(
    server: ServerThread, tmp_path: Path, args: list[str], said: str
) -> None:
    (tmp_path / "job.yaml").write_bytes(gpu_sdl())
    admin = tmp_path / "admin.pem"
    admin.write_bytes(server.admin.to_pem())
    extra = ["--admin-key", str(admin)] if args[0] == "account" else []
    args = [str(tmp_path / a) if a.endswith(".yaml") else a for a in args]
    minted = MarketClient(server.address, server.admin).audit().total_minted
    result = CliRunner(env={"GPUMARKET_HOME": str(tmp_path)}).invoke(
        cli, [*args, *extra, "--market", server.address]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.splitlines()[-1].startswith(f"Error: {said}")
    assert MarketClient(server.address, server.admin).audit().total_minted == minted
