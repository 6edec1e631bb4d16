"""Funds, events, short ids and `deploy --timeout` through the CLI against a real marketplace
(in-process grpc.aio server on port 0, SQLite): see tests/server/test_escrow_process.py for the
escrow running low on a separate `market serve`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.ids import matching, normalize
from marketplace.cli.wait import WAIT_TIMED_OUT
from marketplace.core.errors import PermissionDenied
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.helpers import wait_until
from tests.server.test_cli_tenant import admin_pem, funded, ok, provider, run, sdl, server

__all__ = ["admin_pem", "sdl", "server"]  # fixtures


def balanced(server: ServerThread) -> None:
    report = server.call(server.app.market.audit)
    assert report.balanced, report.problems


def manual_with_two_bids(server: ServerThread, admin_pem: Path, tmp_path: Path) -> list[pb.Bid]:
    """D1, a manual auction, with bids from two providers."""
    funded(server, admin_pem)
    manual = tmp_path / "manual.yaml"
    manual.write_bytes(gpu_sdl(bid_window="300ms", extra=", manual: true"))
    ok(server, "deploy", str(manual), "--deposit", "5", "--no-wait")
    return [provider(server, name).place_bid("D1/1/1", 600_000) for name in ("a", "b")]


def test_short_ids_resolve_across_commands(
    server: ServerThread, admin_pem: Path, tmp_path: Path
) -> None:
    bids = manual_with_two_bids(server, admin_pem, tmp_path)
    wait_until(lambda: "0.600000 act" in ok(server, "bids", "1/1/1"), 10, "the window to close")
    ambiguous = run(server, "accept", "D1/1/1")
    assert ambiguous.exit_code == 1
    assert f"'D1/1/1' matches 2 bids: {bids[0].id}, {bids[1].id}; type more of it" in (
        ambiguous.output
    )
    chosen = bids[1]
    prefix = f"d1/1/1/{chosen.provider[:8]}"
    assert f"lease {chosen.id}: 0.600000 act/h" in ok(server, "accept", prefix)
    assert "D1/1/1" in ok(server, "why", "1/1/1")
    assert chosen.id in ok(server, "status", "D1/1/1")  # the order, and its lease
    assert json.loads(ok(server, "status", "1/1", "--json"))["id"] == chosen.id  # one lease
    assert json.loads(ok(server, "status", prefix, "--json"))["id"] == chosen.id
    ok(server, "logs", "D1")  # the deployment's one lease
    unknown = run(server, "logs", "D1/1/2")
    assert unknown.exit_code == 1 and "no lease of yours matches 'D1/1/2'" in unknown.output
    assert "Traceback" not in unknown.output
    assert "deployment D7 not found" in run(server, "status", "7").output
    # another key's records are not among the candidates
    others = run(server, "logs", "D1", "--key", "bob")
    assert others.exit_code == 1 and "no lease of yours matches 'D1'" in others.output
    assert f"lease {chosen.id} closed" in ok(server, "close", "1/1/1")
    assert (
        "deployment D1 is closed already" in run(server, "close", "d1").output
    )  # its lease was all


def test_the_prefix_rules() -> None:
    assert [normalize(t) for t in ("2", "d2", " D2/1/ ", "x")] == ["D2", "D2", "D2/1", "x"]
    ids = ["D1", "D10", "D1/1/1/abc", "D1/1/10/abd", "D10/1/1/abc"]
    assert matching("D1", ids[:2]) == ["D1"]  # numbers are whole: D1 is not D10
    assert matching("D1/1/1", ids[2:]) == ["D1/1/1/abc"]
    assert matching("D1/1/1/ab", ids[2:]) == ["D1/1/1/abc"]
    assert matching("D1/1", ids[2:]) == ["D1/1/1/abc", "D1/1/10/abd"]
    assert matching("D1/1/1/abd", ids[2:]) == []


def test_deposit_tops_up_and_refuses_too_little(
    server: ServerThread, admin_pem: Path, sdl: Path
) -> None:
    funded(server, admin_pem)
    ok(server, "deploy", str(sdl), "--deposit", "5", "--no-wait")
    out = ok(server, "deposit", "1", "2")
    assert "deployment D1: deposited 2.000000 act; escrow 7.000000 act of 7.000000 act" in out
    shown = json.loads(ok(server, "deposit", "D1", "100000u", "--json"))
    assert shown["deposited"] == 7_100_000
    # nothing runs yet: judged at the group's maximum, 2.942619 act/h (5000 uact a block)
    small = run(server, "deposit", "D1", "0.01")
    assert small.exit_code == 1
    assert (
        "Error: deposit 0.010000 act buys 12 s at 2.942618 act/h; at least 1 minute is needed "
        "(0.049044 act)"
    ) in small.output
    for amount, said in [
        ("0", "deposit must be positive"),
        ("-1", "deposit must be positive, got -1000000"),
        ("10000000000000", "is over the maximum"),
        ("lots", "not an amount"),
    ]:
        refused = run(server, "deposit", "D1", "--", amount)
        assert refused.exit_code != 0 and said in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert json.loads(ok(server, "status", "D1", "--json"))["deployment"]["deposited"] == 7_100_000
    events = ok(server, "events", "D1")
    assert events.count("escrow_topped_up") == 2
    assert "deposit: 2.000000 act from your account" in events
    balanced(server)


def test_an_outsider_may_not_deposit(server: ServerThread, admin_pem: Path, sdl: Path) -> None:
    funded(server, admin_pem)
    ok(server, "deploy", str(sdl), "--deposit", "5", "--no-wait")
    outsider = TenantClient(server.address, server.admin)  # any other key: the admin's
    before = outsider.get_account()
    with outsider, pytest.raises(PermissionDenied, match="D1 is not yours"):
        outsider.deposit("D1", 1_000_000)
    refused = run(server, "deposit", "D1", "1", "--key", "bob")
    assert refused.exit_code == 1 and "deployment D1 is not yours" in refused.output
    with TenantClient(server.address, server.admin) as again:
        assert again.get_account() == before
    assert json.loads(ok(server, "status", "D1", "--json"))["deployment"]["deposited"] == 5_000_000
    balanced(server)


def test_auto_top_up_is_set_at_deploy_and_shown(
    server: ServerThread, admin_pem: Path, sdl: Path
) -> None:
    funded(server, admin_pem)
    ok(server, "deploy", str(sdl), "--deposit", "5", "--no-wait", "--auto-top-up", "2/max 6")
    shown = ok(server, "status", "D1")
    assert "auto top-up 2.000000 act when low; moved 0.000000 act of at most 6.000000 act" in shown
    ok(server, "deploy", str(sdl), "--deposit", "5", "--no-wait", "--auto-top-up", "1")
    assert json.loads(ok(server, "status", "D2", "--json"))["deployment"]["auto_top_up_max"] == (
        10_000_000
    )
    bad = run(server, "deploy", str(sdl), "--deposit", "5", "--auto-top-up", "2/max 1")
    assert bad.exit_code == 1 and "below its step" in bad.output


def test_deploy_timeout_says_no_provider_is_online(
    server: ServerThread, admin_pem: Path, sdl: Path
) -> None:
    funded(server, admin_pem)
    result = run(server, "deploy", str(sdl), "--deposit", "5", "--timeout", "1s")
    assert result.exit_code == WAIT_TIMED_OUT, result.output
    assert f"no provider is online at {server.address}" in result.output
    assert "Error: deployment D1: not every group runs after 1s; it stays open" in result.output
    assert "Traceback" not in result.output
    provider(server, "silent")  # online, but never bids
    again = run(server, "deploy", str(sdl), "--deposit", "5", "--timeout", "1s")
    assert again.exit_code == WAIT_TIMED_OUT and "no provider is online" not in again.output
    bad = run(server, "deploy", str(sdl), "--deposit", "5", "--timeout", "soon")
    assert bad.exit_code == 1 and "--timeout: invalid duration 'soon'" in bad.output


def test_events_lists_the_markets_record(
    server: ServerThread, admin_pem: Path, tmp_path: Path
) -> None:
    bids = manual_with_two_bids(server, admin_pem, tmp_path)
    wait_until(lambda: "0.600000 act" in ok(server, "bids", "D1/1/1"), 10, "the window to close")
    ok(server, "accept", bids[0].id)
    ok(server, "deploy", str(tmp_path / "manual.yaml"), "--deposit", "5", "--no-wait")
    ok(server, "close", "D2")
    lines = ok(server, "events", "D1").splitlines()
    kinds = [line.split()[3] for line in lines]
    assert kinds[:2] == ["deployment_created", "order_opened"]
    assert kinds.count("bid_placed") == 2 and kinds[-1] == "lease_created"
    assert lines[0].split()[2] == "D1" and lines[0][4] == "-"  # 2026-11-30 19:03:36, UTC
    assert f"won by {bids[0].provider[:14]}" in lines[-1]
    every = ok(server, "events").splitlines()
    assert [line.split()[2] for line in every].count("D2") == 4  # created, opened, closed x2
    assert every[-1].split()[3] == "deployment_closed"
    records = [json.loads(line) for line in ok(server, "events", "D2", "--json").splitlines()]
    assert [r["kind"] for r in records][-1] == "deployment_closed"
    assert records[0]["time"].endswith(" UTC")
    # following a closed deployment ends at once
    assert "nothing to follow" in run(server, "events", "D2", "-f").output
    assert "D1" not in ok(server, "events", "--key", "bob")  # another key's are not listed
