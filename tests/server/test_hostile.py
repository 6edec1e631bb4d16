"""Hostile inputs against a real marketplace: alias bombs, amounts at int64's edge, huge strings.

The first test runs `gpumarket market serve` as a real process (so its memory can be read from
/proc) with a three-second heartbeat timeout, a provider heartbeating a running lease, and a gRPC
health probe, while attacker processes send hostile manifests from a funded and an unfunded key.
The server must refuse each one (INVALID_ARGUMENT), answer every health check, keep the
provider's lease, and stay within 100 MiB of the memory it had before the attack. The bombs are
parsed off the event loop, so nothing waits behind them: health checks stay within a slack of the
same run's baseline (timed before the attack, on the same loaded box), not under a fixed number
of milliseconds, which measured the box (tests assert behaviour; bench/ times).

The others run the server in-process (marketplace.server.testing.ServerThread): money that would
pass int64 or a zero price cap, and the red team's 900 KB host URIs and decline reasons.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import limits, money
from marketplace.core.errors import FailedPrecondition, InvalidArgument, MarketError
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from tests.helpers import funded_tenant, registered_provider, wait_until
from tests.server.market_process import MarketProcess

MIB = 1024 * 1024
BASELINE_S = 1.5  # health checks timed before the attack
# health check latency under attack, above the same run's baseline (as tests/server/test_loop.py;
# measured with 4 CPU hogs on 2 cores: p99 +100-180 ms with the bombs parsed off the loop,
# +200-490 ms or the lease lost with them parsed on it)
MEDIAN_SLACK_MS = 60.0
P99_SLACK_MS = 300.0


class Repeat(threading.Thread):
    """Runs `step` until stopped; keeps what it raised."""

    def __init__(self, step: Callable[[], None], pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.step, self.pause = step, pause
        self.stopping = threading.Event()
        self.failures: list[BaseException] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except BaseException as exc:
                self.failures.append(exc)
            self.stopping.wait(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def running_lease(server: MarketProcess) -> tuple[ProviderClient, str]:
    """A provider with a running lease (a tenant deployed, it bid, won and reported running)."""
    tenant = funded_tenant(server.address, server.admin, 100 * money.MICRO)
    provider = registered_provider(server.address, "honest")
    dep = tenant.create_deployment(gpu_sdl(bid_window="200ms"), money.MICRO)
    bid = provider.place_bid(dep.order_ids[0], 1_000)
    wait_until(lambda: _has_lease(tenant, bid.id), 10, "the lease", interval=0.05)
    provider.report_status(pb.LeaseStatusReport(lease_id=bid.id, state=pb.LEASE_RUNNING))
    return provider, bid.id


@pytest.mark.slow
def test_alias_bombs_neither_stall_the_server_nor_grow_its_memory(tmp_path: Path) -> None:
    # a server stalled for seconds would cost the honest provider its lease; 1 s was lost now
    # and then to a starved heartbeat thread on a loaded box, bombs parsed off the loop or not
    server = MarketProcess.start(tmp_path / "market", "--heartbeat-timeout", "3")
    try:
        provider, lease_id = running_lease(server)
        heartbeats = Repeat(lambda: _heartbeat(provider, lease_id), pause=0.2)
        heartbeats.start()
        funded = funded_tenant(server.address, server.admin, 10 * money.MICRO)
        assert funded.key is not None
        keys = [funded.key.to_pem().decode(), ""]  # "": an attacker with a fresh, unfunded key
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            # the baseline: health checks beside the heartbeats, on this box, now (a measuring
            # window, which also lets the server do everything once before memory is read)
            baseline = _probed(health, lambda: time.sleep(BASELINE_S))
            before = server.memory_mib("VmHWM")
            refused, latencies = _attacked(server.address, keys * 2, health)
            # measured again once if it looks slow: a loaded box has hiccups of hundreds of ms
            # that hit p99 once; a bomb parsed on the loop holds every check behind it each time
            if not _prompt(latencies, baseline):
                refused, latencies = _attacked(server.address, keys * 2, health)
        heartbeats.stop()
        after = server.memory_mib("VmHWM")

        seen = (
            f"health p50 {_ms(latencies, 50):.1f} ms p99 {_ms(latencies, 99):.1f} ms "
            f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} checks under attack; "
            f"baseline p50 {_ms(baseline, 50):.1f} ms p99 {_ms(baseline, 99):.1f} ms"
        )
        assert _prompt(latencies, baseline), f"health checks waited behind the bombs: {seen}"
        assert not heartbeats.failures, f"a heartbeat failed: {heartbeats.failures[0]!r}"
        assert after - before < 100, f"peak memory grew {after - before:.0f} MiB"
        assert provider.key is not None
        lease = TenantClient(server.address, provider.key).get_lease(lease_id)  # its own lease
        assert lease.state == pb.LEASE_RUNNING, "the provider lost its lease during the attack"
        assert MarketClient(server.address, server.admin).audit().balanced
        print(
            f"\n{len(refused)} bombs refused (median {statistics.median(refused):.1f} ms each), "
            f"{seen}; VmHWM {before:.0f} → {after:.0f} MiB"
        )
    finally:
        server.stop()


def _probed(health: health_pb2_grpc.HealthStub, meanwhile: Callable[[], object]) -> list[float]:
    """Health check latencies (seconds), one check every 20 ms while `meanwhile()` runs; each
    check must be answered SERVING."""
    latencies: list[float] = []
    probe = Repeat(lambda: _probe(health, latencies), pause=0.02)
    probe.start()
    try:
        meanwhile()
    finally:
        probe.stop()
    assert not probe.failures, f"a health check went unanswered: {probe.failures[0]!r}"
    assert len(latencies) >= 10, f"only {len(latencies)} health checks"
    return latencies


def _attacked(
    address: str, keys: list[str], health: health_pb2_grpc.HealthStub
) -> tuple[list[float], list[float]]:
    """One attacker process per key (PEM, or "" for a fresh one) sends bombs for 4 s while the
    health checks run. Returns each refusal's and each health check's time."""
    # the attackers run in processes of their own, so that the probe measures the server,
    # not this process's GIL
    attackers = [
        subprocess.Popen([sys.executable, "-c", ATTACKER, address, key, "4.0"], stdout=PIPE)
        for key in keys
    ]
    for attacker in attackers:  # started (imports done, bombs built): measure from here
        assert attacker.stdout is not None and attacker.stdout.readline() == b"ready\n"
    outcomes: list[str] = []
    latencies = _probed(
        health, lambda: outcomes.extend(a.communicate(timeout=120)[0].decode() for a in attackers)
    )
    refused = [float(ms) for out in outcomes for ms in out.split()]
    assert all(a.returncode == 0 for a in attackers), "a bomb was not refused cleanly"
    assert len(refused) >= 20, f"only {len(refused)} bombs were sent"
    return refused, latencies


def _prompt(latencies: list[float], baseline: list[float]) -> bool:
    """Whether health checks under attack stayed within a slack of the baseline's."""
    return (
        _ms(latencies, 50) <= _ms(baseline, 50) + MEDIAN_SLACK_MS
        and _ms(latencies, 99) <= _ms(baseline, 99) + P99_SLACK_MS
    )


def _ms(latencies: list[float], q: int) -> float:
    """The q-th percentile of `latencies` (seconds), in milliseconds."""
    return statistics.quantiles(latencies, n=100)[q - 1] * 1000


def _heartbeat(provider: ProviderClient, lease_id: str) -> None:
    reply = provider.heartbeat([lease_id])
    assert list(reply.unknown_lease_ids) == [], "the market dropped the lease"


def _probe(health: health_pb2_grpc.HealthStub, latencies: list[float]) -> None:
    started = time.perf_counter()
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    latencies.append(time.perf_counter() - started)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# An attacker process: argv = address, key PEM ("" for a fresh unfunded key), seconds. Sends
# every hostile manifest in turn until the time is up; prints each refusal's milliseconds; exits
# 1 if any was not refused with INVALID_ARGUMENT naming the manifest.
ATTACKER = """
import sys, time
from marketplace.api.client import TenantClient
from marketplace.core.errors import InvalidArgument
from marketplace.identity import Key
from tests.core.test_manifest_hostile import HOSTILE

address, pem, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
key = Key.from_pem(pem.encode()) if pem else Key.generate()
bombs = [make().encode() for make in HOSTILE.values()]
with TenantClient(address, key) as client:
    client.get_account()  # connected
    print("ready", flush=True)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for bomb in bombs:
            started = time.perf_counter()
            try:
                client.create_deployment(bomb, 1_000_000)
                sys.exit("a bomb was accepted")
            except InvalidArgument as exc:
                if "manifest" not in str(exc):
                    sys.exit(f"refused for another reason: {exc}")
            print(f"{(time.perf_counter() - started) * 1000:.2f}", flush=True)
"""


# --- in-process server: money and strings ------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ServerThread(tmp_path_factory.mktemp("market")) as running:
        yield running


def status_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The gRPC status a raw call ends with."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    return error.code(), error.details() or ""


def test_a_bid_at_int64_max_is_refused_and_cannot_drain_the_escrow(server: ServerThread) -> None:
    tenant = funded_tenant(server.address, server.admin, 100 * money.MICRO)
    dep = tenant.create_deployment(gpu_sdl(bid_window="200ms"), 50 * money.MICRO)
    greedy = registered_provider(server.address, "greedy")
    with pytest.raises(InvalidArgument, match="over the maximum of 1,000,000,000,000,000"):
        greedy.place_bid(dep.order_ids[0], 2**63 - 1)
    with pytest.raises(FailedPrecondition, match="above the tenant's maximum"):
        greedy.place_bid(dep.order_ids[0], 10**15)
    assert tenant.get_deployment(dep.id).escrow_balance == 50 * money.MICRO


def test_a_price_that_converts_to_zero_per_hour_is_refused(server: ServerThread) -> None:
    tenant = funded_tenant(server.address, server.admin, 10 * money.MICRO)
    sdl = gpu_sdl().replace(b"amount: 5000}", b"amount: 0.001}")
    with pytest.raises(InvalidArgument, match="under 1 micro-unit per hour"):
        tenant.create_deployment(sdl, money.MICRO)
    assert tenant.list_deployments(owner=tenant.key.address) == []  # type: ignore[union-attr]


def test_amounts_past_the_maximum_are_invalid_arguments(server: ServerThread) -> None:
    admin = TenantClient(server.address, server.admin)
    target = Key.generate().address
    with grpc.insecure_channel(server.address) as channel:  # raw, to see the status itself
        fund = pb_grpc.TenantStub(channel).Fund
        code, details = status_of(
            lambda: fund(
                seal(
                    server.admin,
                    pb.FundAccount(address=target, amount=2**63 - 1),
                    market=server.admin.address,
                )
            )
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "over the maximum of 1,000,000,000,000,000,000 micro-units" in details
    tenant = funded_tenant(server.address, server.admin, 10 * money.MICRO)
    dep = tenant.create_deployment(gpu_sdl(), money.MICRO)
    with pytest.raises(InvalidArgument, match="over the maximum"):
        tenant.deposit(dep.id, 2**63 - 1)
    assert admin.get_account(target).balance == 0


def test_minting_past_the_limit_is_refused_and_the_server_carries_on(tmp_path: Path) -> None:
    with ServerThread(tmp_path / "market") as server:
        admin = TenantClient(server.address, server.admin)
        rich, late = Key.generate().address, Key.generate().address
        admin.fund(rich, limits.MAX_AMOUNT)
        for _ in range(3):  # before: the store overflowed int64 and the server stopped
            with pytest.raises(FailedPrecondition, match="past the market's limit"):
                admin.fund(late, limits.MAX_AMOUNT)
        assert admin.get_account(rich).balance == limits.MAX_AMOUNT
        report = MarketClient(server.address, server.admin).audit()
        assert report.balanced and report.total_minted == limits.MAX_AMOUNT


@pytest.mark.parametrize("address", ["gm1bogus", "gm1\x00root", "", "GM1" + "A" * 32])
def test_the_faucet_pays_only_real_addresses(server: ServerThread, address: str) -> None:
    admin = TenantClient(server.address, server.admin)
    with pytest.raises(InvalidArgument, match="is not an account address"):
        admin.fund(address, money.MICRO)
    assert admin.get_account(address).balance == 0


def test_huge_strings_fail_at_entry_and_listings_keep_working(server: ServerThread) -> None:
    tenant = funded_tenant(server.address, server.admin, 10 * money.MICRO)
    dep = tenant.create_deployment(gpu_sdl(bid_window="5m"), money.MICRO)
    order_id = dep.order_ids[0]
    honest = registered_provider(server.address, "honest-strings")
    honest.decline_order(order_id, "no H100 free until tomorrow")
    huge = "h" * 900_000
    for i in range(5):  # a handful of new keys, as the red team did
        attacker = ProviderClient(server.address, Key.generate())
        registration = provider_registration(f"attacker{i}")
        registration.host_uri = f"https://{huge}"
        with pytest.raises(
            InvalidArgument, match="host_uri is 900,008 characters; the limit is 512"
        ):
            attacker.register(registration)
        registration = provider_registration(f"attacker{i}")
        registration.attributes.append(pb.Attribute(key="note", value=huge))
        with pytest.raises(InvalidArgument, match="attribute value"):
            attacker.register(registration)
        attacker.register(provider_registration(f"attacker{i}"))  # a fair registration is fine
        with pytest.raises(InvalidArgument, match="decline reason is 900,000 characters"):
            attacker.decline_order(order_id, huge)
        with pytest.raises(InvalidArgument, match="control character"):
            attacker.decline_order(order_id, "\x1b]0;owned\x07 no")
    providers = MarketClient(server.address).list_providers()
    assert all(len(p.host_uri) <= 512 for p in providers)
    assert sum(p.ByteSize() for p in providers) < 64 * 1024
    explanation = tenant.explain_order(order_id)
    assert [d.reason for d in explanation.declines] == ["no H100 free until tomorrow"]
    assert explanation.ByteSize() < 16 * 1024


def test_log_lines_are_stored_display_safe(server: ServerThread) -> None:
    tenant = funded_tenant(server.address, server.admin, 10 * money.MICRO)
    provider = registered_provider(server.address, "logger")
    dep = tenant.create_deployment(gpu_sdl(bid_window="200ms"), money.MICRO)
    bid = provider.place_bid(dep.order_ids[0], 1_000)
    wait_until(lambda: _has_lease(tenant, bid.id), 10, "the lease", interval=0.05)
    line = pb.LogLine(stream="stdout", line="\x1b[31mred\x1b[0m\x1b]52;c;cGF3bmVk\x07 done")
    provider.report_logs(bid.id, [line])
    with pytest.raises(InvalidArgument, match="use one of stdout, stderr, system"):
        provider.report_logs(bid.id, [pb.LogLine(stream="x" * 10_000, line="hi")])
    (stored,) = tenant.stream_logs(bid.id)
    assert stored.line == "\\x1b[31mred\\x1b[0m\\x1b]52;c;cGF3bmVk\\x07 done"


def _has_lease(tenant: TenantClient, lease_id: str) -> bool:
    try:
        return tenant.get_lease(lease_id).id == lease_id
    except MarketError:
        return False
