"""The escrow running low on a real `market serve` process (its own clock and billing ticks),
served with a 3 s escrow_low threshold and no minimum escrow so a deployment runs dry in
seconds: escrow_low comes before insufficient_funds; the auto top-up keeps a deployment running
past the moment it would have run dry, until its cap; the books balance; and `gpumarket events
-f` prints the events live and ends cleanly on Ctrl-C."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import NotFound
from marketplace.server.testing import gpu_sdl
from tests.helpers import funded_tenant, registered_provider, wait_until
from tests.server.market_process import MarketProcess

RATE = 3_600_000  # micro-units an hour: 1 a millisecond (6117 uact a block)
PRICE_PER_BLOCK = 6117
CLI = [sys.executable, "-c", "from marketplace.cli.main import main; main()"]


@pytest.fixture
def market(tmp_path: Path) -> Iterator[MarketProcess]:
    with MarketProcess.start(
        tmp_path / "market", "--escrow-low", "3s", "--min-escrow", "0"
    ) as running:
        yield running


def run_lease(provider: ProviderClient, order_id: str) -> str:
    """Bid the full price on the order and report the lease running once it is won."""
    assert provider.key is not None
    lease_id = f"{order_id}/{provider.key.address}"
    provider.place_bid(order_id, RATE)
    wait_until(lambda: _reported_running(provider, lease_id), 10, f"lease {lease_id} won")
    return lease_id


def _reported_running(provider: ProviderClient, lease_id: str) -> bool:
    try:
        provider.report_status(pb.LeaseStatusReport(lease_id=lease_id, state=pb.LEASE_RUNNING))
    except NotFound:
        return False  # the bid window has not closed yet
    return True


def all_events(tenant: TenantClient, dep_id: str) -> list[pb.DeploymentEvent]:
    """Every event up to the deployment's close (the watch ends there), bounded in time."""
    return list(tenant.watch_deployment(dep_id, timeout_s=40))


def test_escrow_low_comes_before_insufficient_funds_and_auto_top_up_postpones_it(
    market: MarketProcess, tmp_path: Path
) -> None:
    tenant = funded_tenant(market.address, market.admin, 1_000_000)
    provider = registered_provider(market.address, "p")
    sdl = gpu_sdl(price=PRICE_PER_BLOCK)
    plain = tenant.create_deployment(sdl, 6_000)  # 6 s at RATE: low at 3 s, dry at 6 s
    # 4 s more once, when low: low at 3 s, topped up to 10 s, low again at 7 s, dry at 10 s
    topped = tenant.create_deployment(sdl, 6_000, auto_top_up=4_000, auto_top_up_max=4_000)
    key = tmp_path / "tenant.pem"
    key.write_bytes(tenant.key.to_pem() if tenant.key else b"")
    follower = subprocess.Popen(
        [*CLI, "events", topped.id, "-f", "--market", market.address, "--key", str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = _lines_of(follower)
    run_lease(provider, f"{plain.id}/1/1")
    run_lease(provider, f"{topped.id}/1/1")

    said = all_events(tenant, plain.id)
    kinds = [e.kind for e in said]
    running = next(e for e in said if e.kind == "lease_running")
    low = next(e for e in said if e.kind == "escrow_low")
    closed = next(e for e in said if e.kind == "lease_closed")
    assert kinds.index("escrow_low") < kinds.index("lease_closed")
    assert closed.message == "insufficient_funds"
    assert low.time_ms - running.time_ms == pytest.approx(3_000, abs=50)
    assert closed.lease.closed_at_ms - running.time_ms == pytest.approx(6_000, abs=50)
    assert "lasts 3 s at 3.600000 act/h" in low.message
    dry_at = closed.lease.closed_at_ms

    said = all_events(tenant, topped.id)
    kinds = [e.kind for e in said]
    assert kinds.count("escrow_low") == 2 and kinds.count("escrow_topped_up") == 1
    first_low, second_low = (e for e in said if e.kind == "escrow_low")
    top_up = next(e for e in said if e.kind == "escrow_topped_up")
    assert top_up.message == "auto top-up: moved 0.004000 act from your account"
    assert second_low.time_ms > dry_at  # it ran on past where it would have run dry
    assert second_low.message.endswith("auto top-up: its cap is reached")
    closed = next(e for e in said if e.kind == "lease_closed")
    assert closed.message == "insufficient_funds"
    assert kinds.index("escrow_topped_up") < kinds.index("lease_closed")
    assert closed.lease.paid == 10_000
    assert first_low.time_ms < top_up.time_ms + 100

    # the follower printed the events as they came, and ended with the deployment
    assert "auto top-up: moved 0.004000 act" in wait_for_line(lines, "escrow_topped_up")
    wait_for_line(lines, "deployment_closed")
    _, err = follower.communicate(timeout=20)
    assert follower.returncode == 0 and "Traceback" not in err

    with MarketClient(market.address, market.admin) as admin:
        report = admin.audit()
    assert report.balanced, report.problems
    account = tenant.get_account()
    assert account.balance == 1_000_000 - 6_000 - 6_000 - 4_000


def test_events_follow_prints_live_and_ends_on_ctrl_c(
    market: MarketProcess, tmp_path: Path
) -> None:
    tenant = funded_tenant(market.address, market.admin, 10_000_000)
    provider = registered_provider(market.address, "p")
    dep = tenant.create_deployment(gpu_sdl(price=PRICE_PER_BLOCK), 5_000_000)
    key = tmp_path / "tenant.pem"
    key.write_bytes(tenant.key.to_pem() if tenant.key else b"")
    follower = subprocess.Popen(
        [*CLI, "events", "-f", "--market", market.address, "--key", str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = _lines_of(follower)
    wait_for_line(lines, "order_opened")  # the stored events first
    lease_id = run_lease(provider, f"{dep.id}/1/1")
    running = wait_for_line(lines, "lease_running")  # then the live ones
    assert f"lease {lease_id} running" in running and running.split()[2] == dep.id
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=20)
    assert follower.returncode == 0 and "Traceback" not in err, err


def _lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, as they come."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def wait_for_line(lines: queue.Queue[str], word: str, timeout_s: float = 20) -> str:
    """The first line (from now) naming `word`: awaited, not slept for."""
    while True:
        line = lines.get(timeout=timeout_s)
        if word in line.split():
            return line
