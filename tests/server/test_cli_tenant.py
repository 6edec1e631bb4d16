"""The tenant's commands against a real marketplace (in-process grpc.aio server on port 0)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from marketplace.api.client import ProviderClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.main import cli
from marketplace.cli.render import describe_event
from marketplace.core.events import DeploymentEventKind
from marketplace.core.state import Bid, BidState, DeploymentEvent, Endpoint, Lease, LeaseState
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, h100_inventory
from tests.helpers import wait_until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path / "market") as running:
        yield running


@pytest.fixture
def admin_pem(server: ServerThread, tmp_path: Path) -> Path:
    path = tmp_path / "admin.pem"
    path.write_bytes(server.admin.to_pem())
    return path


@pytest.fixture
def sdl(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_bytes(gpu_sdl(bid_window="1s"))  # room for the bidder thread on a busy box
    return path


def run(server: ServerThread, *args: str) -> Result:
    env = {"GPUMARKET_MARKET": server.address, "GPUMARKET_KEY": "alice"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def ok(server: ServerThread, *args: str) -> str:
    result = run(server, *args)
    assert result.exit_code == 0, result.output
    return result.output


def funded(server: ServerThread, admin_pem: Path, amount: str = "100") -> None:
    ok(server, "account", "fund", "me", amount, "--admin-key", str(admin_pem))


def provider(server: ServerThread, name: str = "p") -> ProviderClient:
    client = ProviderClient(server.address, Key.generate())
    client.register(
        pb.RegisterProvider(
            host_uri=f"https://{name}",
            attributes=[pb.Attribute(key="region", value="eu")],
            inventory=h100_inventory(name),
            region="eu",
        )
    )
    return client


def test_fund_and_show_account(server: ServerThread, admin_pem: Path) -> None:
    result = run(server, "account")
    assert "created key 'alice'" in result.output and "0.000000 act" in result.output
    assert "balance 12.500000 act" in ok(
        server, "account", "fund", "me", "12.5", "--admin-key", str(admin_pem)
    )
    shown = json.loads(ok(server, "account", "show", "--json"))
    assert shown["balance"] == 12_500_000


def test_fund_needs_the_admin_key(server: ServerThread, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(Key.generate().to_pem())
    result = run(server, "account", "fund", "me", "5", "--admin-key", str(other))
    assert result.exit_code == 1
    assert result.output.strip().endswith("only the marketplace's admin key may fund accounts")


def test_deploy_wait_follows_the_auction_to_running(
    server: ServerThread, admin_pem: Path, sdl: Path
) -> None:
    funded(server, admin_pem)
    prov = provider(server)

    def act_as_provider() -> None:
        for event in prov.watch_orders(0):
            kind = event.WhichOneof("event")
            if kind == "order_opened":
                prov.place_bid(event.order_opened.id, 800_000)
            elif kind == "lease_won":
                endpoint = pb.Endpoint(
                    service="train", port=8080, host="p.example", external_port=30080
                )
                prov.report_status(
                    pb.LeaseStatusReport(
                        lease_id=event.lease_won.id, state=pb.LEASE_RUNNING, endpoints=[endpoint]
                    )
                )
                return

    bidder = threading.Thread(target=act_as_provider, daemon=True)
    bidder.start()
    out = ok(server, "deploy", str(sdl), "--deposit", "5", "--wait")
    bidder.join(10)
    assert "deployment D1: 5.000000 act in escrow" in out
    # the bid is sealed while the window is open: counted, its price shown with the award
    assert "sealed bid on D1/1/1" in out and "bid  0.800000 act/h" not in out
    assert "won by" in out and "at 0.800000 act/h" in out
    assert "running: train: p.example:30080" in out

    status = ok(server, "status", "D1")
    assert "running" in status and "0.800000 act" in status
    assert "D1" in ok(server, "status")
    leases = json.loads(ok(server, "leases", "--json"))
    assert [x["state"] for x in leases] == ["LEASE_RUNNING"]

    lease_id = leases[0]["id"]
    prov.report_logs(lease_id, [pb.LogLine(line="hello"), pb.LogLine(stream="stderr", line="oops")])
    assert ok(server, "logs", lease_id).splitlines() == ["hello", "[stderr] oops"]
    assert "closed" in ok(server, "close", lease_id)
    assert "books balanced" in ok(server, "market", "audit", "--admin-key", str(admin_pem))
    stats = ok(server, "market", "stats")
    assert "h100" in stats and "0.800000 act" in stats


def test_bids_why_and_manual_accept(server: ServerThread, admin_pem: Path, tmp_path: Path) -> None:
    funded(server, admin_pem)
    manual = tmp_path / "manual.yaml"
    manual.write_bytes(gpu_sdl(bid_window="2s", extra=", manual: true"))
    ok(server, "deploy", str(manual), "--deposit", "1", "--no-wait")
    cheap, busy = provider(server, "cheap"), provider(server, "busy")
    bid = cheap.place_bid("D1/1/1", 600_000)
    busy.decline_order("D1/1/1", "no free H100")
    # sealed while the window is open: the tenant sees that there is a bid, not whose or at what
    if "sealed bid" in (during := ok(server, "why", "D1/1/1")):
        assert "0.600000" not in during and "cheap" not in during
        assert "(none)" in ok(server, "bids", "D1/1/1")
    wait_until(lambda: "0.600000 act" in ok(server, "bids", "D1/1/1"), 10, "the window to close")
    why = ok(server, "why", "D1/1/1")
    assert "waiting for you to accept" in why and "no free H100" in why
    assert "0.600000 act/h" in ok(server, "accept", bid.id)
    assert "closed" in ok(server, "close", "D1")
    assert "yes" in ok(server, "providers")


def test_a_bad_manifest_shows_each_problem(server: ServerThread, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "2.0"\nservices:\n  web: {image: nginx}\n')
    result = run(server, "deploy", str(bad), "--deposit", "1")
    assert result.exit_code == 1
    assert f"{bad}:1: deployment: deployment is required" in result.output
    assert "Traceback" not in result.output


def test_unreachable_marketplace_says_what_to_do(tmp_path: Path) -> None:
    env = {"GPUMARKET_MARKET": "127.0.0.1:1"}
    result = CliRunner().invoke(cli, ["status"], env=env, catch_exceptions=False)
    assert result.exit_code == 1
    assert "cannot reach the marketplace at 127.0.0.1:1" in result.output
    assert "gpumarket market serve" in result.output


def test_deployment_events_read_as_lines_from_the_records_they_carry() -> None:
    bid = Bid("D1/1/1/p", "D1/1/1", "p", 800_000, BidState.OPEN, 1, 0.8)
    lease = Lease(
        bid.id,
        bid.order_id,
        "D1",
        "alice",
        "p",
        800_000,
        LeaseState.RUNNING,
        2,
        endpoints=(Endpoint("train", 8080, "p.example", 30080),),
    )

    def line(kind: DeploymentEventKind, message: str = "") -> str:
        event = DeploymentEvent.from_records(
            1, 1, "D1", kind, bid=bid, lease=lease, message=message
        )
        return describe_event(event)

    assert line(DeploymentEventKind.BID_PLACED) == "  bid  0.800000 act/h from p (reliability 0.80)"
    assert line(DeploymentEventKind.NO_ELIGIBLE_BID, "no eligible bid: …") == (
        "  auction closed without a winner: no eligible bid: …"
    )
    assert line(DeploymentEventKind.LEASE_CREATED).startswith("lease D1/1/1/p: won by p at 0.8")
    assert line(DeploymentEventKind.LEASE_RUNNING) == (
        "lease D1/1/1/p running: train: p.example:30080 (tcp → 8080)"
    )
    assert line(DeploymentEventKind.DEPLOYMENT_CREATED) == ""


def test_close_says_what_was_paid_and_what_came_back(
    server: ServerThread, admin_pem: Path, sdl: Path
) -> None:
    """`close D1` tells the tenant the refund, and the numbers are the ledger's."""
    funded(server, admin_pem, "100")
    prov = provider(server)

    def act_as_provider() -> None:
        for event in prov.watch_orders(0):
            kind = event.WhichOneof("event")
            if kind == "order_opened":
                prov.place_bid(event.order_opened.id, 2_000_000)  # under the group maximum
            elif kind == "lease_won":
                report = pb.LeaseStatusReport(lease_id=event.lease_won.id, state=pb.LEASE_RUNNING)
                prov.report_status(report)
                return

    bidder = threading.Thread(target=act_as_provider, daemon=True)
    bidder.start()
    ok(server, "deploy", str(sdl), "--deposit", "50", "--wait")
    bidder.join(10)
    out = ok(server, "close", "D1")
    words = out.split()
    paid = float(words[words.index("paid") - 2])
    refunded = float(words[words.index("refunded") - 2])
    assert out.startswith("deployment D1 closed:"), out
    assert paid > 0 and refunded > 0 and round(paid + refunded, 6) == 50, out
    account = json.loads(ok(server, "account", "--json"))
    assert int(account["balance"]) == 100_000_000 - round(paid * 1_000_000), (out, account)
