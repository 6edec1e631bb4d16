"""An observable marketplace: `market serve --log-format json --metrics-listen` as a real process.

A deployment goes through a lease, a provider lost and its failover, and a close (an escrow run
dry is driven in-process: see the last test); the JSON log lines say each with its fields,
/metrics counts it (parsed here, line by line),
and nothing secret reaches the log. A flood of forged requests is counted one by one but logged
in a bounded number of lines.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from marketplace.api.client import ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import InvalidArgument, PermissionDenied
from marketplace.core.events import DeploymentEventKind
from marketplace.core.market import MarketConfig
from marketplace.identity import Key
from marketplace.server.logs import JsonFormatter, TextFormatter, Throttle, fields, fields_of
from marketplace.server.metrics import Registry
from marketplace.server.observe import MarketFigures, MarketObserver
from marketplace.server.testing import gpu_sdl
from tests.core.test_market import ADMIN, deploy, gpu_group, market_with
from tests.helpers import funded_tenant, registered_provider, wait_until
from tests.server.market_process import MarketProcess, refused_start

UNITS = money.MICRO
SECRET_ENV = "hunter2-do-not-log"
TENANT_LINE = "tenant-private-output-line"
FLOOD = 500

# --- the server as an operator runs it ---------------------------------------------------------


class LoggedMarket(MarketProcess):
    """`market serve` with stdout and stderr (the log) in files of their own, read while it runs."""

    SEPARATE_LOG = True

    @classmethod
    def start_in(cls, root: Path, *args: str) -> LoggedMarket:
        root.mkdir(parents=True, exist_ok=True)
        market = cls(root / "market", args, "127.0.0.1:0")
        market.restart()
        return market

    def metrics_address(self) -> str:
        """HOST:PORT of /metrics, from the banner it prints on stdout once started."""
        banner = self.log_path
        return wait_until(
            lambda: next(
                iter(re.findall(r"^metrics: http://(\S+)/metrics$", banner.read_text(), re.M)), None
            ),
            10,
            "the metrics banner",
            interval=0.02,
        )

    def log_text(self) -> str:
        return self.stderr_path.read_text()

    def json_lines(self) -> list[dict[str, object]]:
        """Every line of the log, each of which must be one JSON object."""
        lines = []
        for raw in self.log_text().splitlines():
            line = json.loads(raw)
            assert isinstance(line, dict), raw
            assert {"time", "level", "logger", "message"} <= line.keys(), raw
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))
            lines.append(line)
        return lines

    def logged(self, message: str, **expected: object) -> list[dict[str, object]]:
        """The JSON lines with this message whose fields include `expected`."""
        return [
            line
            for line in self.json_lines()
            if line["message"] == message and all(line.get(k) == v for k, v in expected.items())
        ]

    def await_logged(self, message: str, **expected: object) -> dict[str, object]:
        return wait_until(
            lambda: next(iter(self.logged(message, **expected)), None),
            10,
            f"a {message!r} log line with {expected}",
            interval=0.05,
        )

    def stop_status(self) -> int:
        """SIGTERM, as an operator stops it; returns its exit status."""
        self.stop()
        assert self.proc is not None
        return self.proc.wait(20)


# --- /metrics, parsed ------------------------------------------------------------------------

_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\""
    r"(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\")*)\})?"
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Inf))"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    """One /metrics answer: every sample by (name, labels), and each family's TYPE."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def scrape(url: str) -> Scrape:
    """Fetch and parse, failing on any line that is not HELP, TYPE or a well-formed sample."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped, f"TYPE before HELP: {line}"
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            name = match["name"]
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"a sample before its TYPE: {line}"
            labels = frozenset(_LABEL.findall(match["labels"] or ""))
            assert (name, labels) not in samples, f"a sample twice: {line}"
            samples[(name, labels)] = float(match["value"].replace("Inf", "inf"))
    for name, kind in types.items():
        assert name.startswith("gpumarket_"), name
        assert name.endswith("_total") == (kind == "counter"), f"{name} is a {kind}"
    return Scrape(samples, types)


def scrape_until(url: str, ready: Callable[[Scrape], bool]) -> Scrape:
    """The first scrape that is `ready` (within 10 s)."""

    def scraped() -> Scrape | None:
        figures = scrape(url)
        return figures if ready(figures) else None

    return wait_until(scraped, 10, "the metrics to be ready", interval=0.05)


def check_histogram(scraped: Scrape, name: str, **labels: str) -> float:
    """Buckets cumulative and ending at +Inf == _count; returns the count."""
    buckets = sorted(
        (float(dict(ls)["le"]), v)
        for ls, v in scraped.series(f"{name}_bucket").items()
        if dict(ls).items() - {("le", dict(ls)["le"])} == labels.items()
    )
    assert buckets and buckets[-1][0] == math.inf
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"{name} buckets are not cumulative: {buckets}"
    assert scraped.get(f"{name}_count", **labels) == counts[-1]
    return counts[-1]


# --- a market's life -------------------------------------------------------------------------


def sdl(restart: str = "on-failure", bid_window: str = "300ms") -> bytes:
    """gpu_sdl with a restart policy and an env value that must never reach the log."""
    text = gpu_sdl(bid_window=bid_window).decode()
    text = text.replace("restart: never", f"restart: {restart}")
    text = text.replace(
        "    image: gpumarket/busybox:latest\n",
        f"    image: gpumarket/busybox:latest\n    env:\n      - API_TOKEN={SECRET_ENV}\n",
    )
    return text.encode()


class Heartbeats:
    """Keeps a provider's key heartbeating (its own channel) until stopped."""

    def __init__(self, address: str, key: Key, every_s: float = 0.15) -> None:
        self._client = ProviderClient(address, key)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self._client.heartbeat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def event(
    tenant: TenantClient, deployment_id: str, kind: DeploymentEventKind, order_id: str = ""
) -> pb.DeploymentEvent:
    """The first event of `kind` (for `order_id`, if given), replayed or live."""
    for seen in tenant.watch_deployment(deployment_id):
        if seen.kind == kind and (not order_id or seen.order_id == order_id):
            return seen
    raise AssertionError(f"{deployment_id} closed without {kind} {order_id}")


def key_of(client: ProviderClient | TenantClient) -> Key:
    assert client.key is not None
    return client.key


def running(provider: ProviderClient, lease_id: str) -> None:
    provider.report_status(pb.LeaseStatusReport(lease_id=lease_id, state=pb.LEASE_RUNNING))


@pytest.fixture
def market(tmp_path: Path) -> Iterator[LoggedMarket]:
    args = ("--log-format", "json", "--log-level", "debug", "--metrics-listen", "127.0.0.1:0")
    with LoggedMarket.start_in(tmp_path, *args, "--heartbeat-timeout", "2") as started:
        yield started


def test_a_markets_life_is_logged_with_its_fields_and_counted(market: LoggedMarket) -> None:
    started = market.await_logged("marketplace started", address=market.address)
    assert started["tls"] == "plaintext" and str(started["store"]).startswith("sqlite ")
    assert started["data_dir"] == str(market.root / "market")
    metrics_url = str(started["metrics"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", metrics_url)
    before = scrape(metrics_url)
    assert before.get("gpumarket_providers_online") == 0

    alice = funded_tenant(market.address, market.admin, 100 * UNITS)
    lost, spare = (registered_provider(market.address, n) for n in ("lost", "spare"))
    lost_beat, spare_beat = (Heartbeats(market.address, key_of(p)) for p in (lost, spare))
    try:
        dep, failed_over = failover(alice, lost, spare, lost_beat)
    finally:
        lost_beat.stop()
        spare_beat.stop()

    lost_at, spare_at = key_of(lost).address, key_of(spare).address
    for address in (lost_at, spare_at):
        assert market.logged("provider registered", provider=address, gpus=2, models="h100")
    assert market.logged("deployment created", deployment=dep, tenant=key_of(alice).address)
    assert market.logged("order opened", order=f"{dep}/1/1", deployment=dep)
    assert market.logged("lease created", lease=failed_over, order=f"{dep}/1/1", provider=lost_at)
    assert market.logged("lease running", lease=failed_over, provider=lost_at)
    assert market.logged("provider lost", provider=lost_at)
    assert market.logged("lease closed", lease=failed_over, reason="provider_lost")
    assert market.logged(
        "failover", deployment=dep, lease=failed_over, provider=lost_at, order=f"{dep}/1/2"
    )
    assert market.logged("lease created", order=f"{dep}/1/2", provider=spare_at)
    assert market.logged("lease closed", deployment=dep, reason="deployment_closed")
    assert market.logged("deployment closed", deployment=dep, why="closed by the tenant")
    # debug: each RPC and each bid
    assert market.logged("rpc", rpc="Provider/PlaceBid", code="OK")
    assert market.logged("bid placed", order=f"{dep}/1/1", provider=lost_at)

    figures = scrape(metrics_url)
    assert figures.get("gpumarket_providers_online") == 1  # the spare; the lost one is gone
    assert figures.get("gpumarket_gpus_online", model="h100") == 2
    assert figures.get("gpumarket_providers_lost_total") == 1
    assert figures.get("gpumarket_bids_total") == 3
    assert figures.get("gpumarket_awards_total") == 2
    assert figures.get("gpumarket_failovers_total") == 1
    assert figures.get("gpumarket_orders_open") == 0
    assert figures.get("gpumarket_deployments_active") == 0
    assert figures.get("gpumarket_leases", state="running") == 0
    for reason in ("provider_lost", "deployment_closed"):
        assert figures.get("gpumarket_leases_closed_total", reason=reason) == 1
    # every micro-unit that went into an escrow came out of it again, to a provider or back
    deposited = figures.get("gpumarket_escrow_deposited_microunits_total")
    paid = figures.get("gpumarket_escrow_paid_microunits_total")
    refunded = figures.get("gpumarket_escrow_refunded_microunits_total")
    assert deposited == 10 * UNITS
    assert refunded > 0  # (paid may be 0: both leases ran for moments)
    assert figures.get("gpumarket_escrow_held_microunits") == 0
    assert paid + refunded == deposited
    assert figures.get("gpumarket_requests_total", rpc="Provider/PlaceBid", code="OK") == 3
    assert (
        check_histogram(
            figures, "gpumarket_request_duration_seconds", rpc="Provider/PlaceBid", code="OK"
        )
        == 3
    )
    assert figures.get("gpumarket_requests_total", rpc="Provider/Heartbeat", code="OK") > 0

    refusals_are_logged_without_what_the_client_sent(market, dep)

    assert market.stop_status() == 0
    assert market.logged("marketplace stopped", address=market.address)
    log = market.log_text()
    for secret in (SECRET_ENV, TENANT_LINE, "signature"):
        assert secret not in log


def failover(
    alice: TenantClient, lost: ProviderClient, spare: ProviderClient, lost_beat: Heartbeats
) -> tuple[str, str]:
    """A lease on `lost`, which goes silent: the group is ordered again and `spare` runs it;
    then the tenant closes the deployment. Returns (deployment id, the lost lease's id)."""
    dep = alice.create_deployment(sdl(), deposit=10 * UNITS)
    first_order = dep.order_ids[0]
    lost.place_bid(first_order, 1_000_000)
    spare.place_bid(first_order, 2_000_000)
    lease_id = event(alice, dep.id, DeploymentEventKind.LEASE_CREATED).lease_id
    running(lost, lease_id)
    lost.report_logs(lease_id, [pb.LogLine(stream="stdout", line=TENANT_LINE)])
    lost_beat.stop()  # silent from now: lost after the 2 s timeout
    reopened = event(alice, dep.id, DeploymentEventKind.ORDER_REOPENED)
    spare.place_bid(reopened.order_id, 2_000_000)
    second = event(alice, dep.id, DeploymentEventKind.LEASE_CREATED, reopened.order_id)
    running(spare, second.lease_id)
    alice.close_deployment(dep.id)
    return dep.id, lease_id


# --- refusals --------------------------------------------------------------------------------


def refusals_are_logged_without_what_the_client_sent(market: LoggedMarket, dep: str) -> None:
    """A refused request is a warning naming the RPC, the code and the error; the details only
    where the server wrote them all: an invalid manifest's message may quote the manifest."""
    mallory = funded_tenant(market.address, market.admin, UNITS)
    with pytest.raises(PermissionDenied):
        mallory.close_deployment(dep)
    denied = market.await_logged("request refused", code="PERMISSION_DENIED")
    assert denied["level"] == "warning" and denied["rpc"] == "Tenant/CloseDeployment"
    assert denied["error"] == "PermissionDenied" and f"{dep} is not yours" in str(denied["details"])
    quoting = sdl().replace(f"API_TOKEN={SECRET_ENV}".encode(), f"={SECRET_ENV}".encode())
    with pytest.raises(InvalidArgument, match=SECRET_ENV):  # the tenant is told its own value
        mallory.create_deployment(quoting, deposit=UNITS)
    invalid = market.await_logged("request refused", code="INVALID_ARGUMENT")
    assert invalid["rpc"] == "Tenant/CreateDeployment" and invalid["error"] == "InvalidArgument"
    assert "details" not in invalid
    figures = scrape(str(market.logged("marketplace started")[0]["metrics"]))
    assert figures.get("gpumarket_requests_refused_total", code="INVALID_ARGUMENT") == 1
    assert figures.get("gpumarket_requests_refused_total", code="PERMISSION_DENIED") == 1


_TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z (?P<level>[A-Z]+) (?P<logger>\S+): (?P<rest>.*)")


def test_a_flood_of_forged_requests_is_counted_but_logged_in_few_lines(tmp_path: Path) -> None:
    args = ("--log-level", "warning", "--metrics-listen", "0")
    with LoggedMarket.start_in(tmp_path, *args) as market:
        url = f"http://{market.metrics_address()}/metrics"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url)  # a bare port: loopback
        victim, forger = Key.generate(), Key.generate()
        request = seal(
            forger,
            pb.CreateDeployment(sdl=gpu_sdl(), deposit=UNITS),
            market=market.admin.address,
        )
        request.public_key = victim.public_key  # claims to be the victim
        began = time.monotonic()
        with grpc.insecure_channel(market.address) as channel:
            stub = pb_grpc.TenantStub(channel)
            for _ in range(FLOOD):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.CreateDeployment(request, timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        seconds = time.monotonic() - began
        unauthenticated = {"rpc": "Tenant/CreateDeployment", "code": "UNAUTHENTICATED"}
        # a refusal is counted just after its status went out: the last may trail the client
        figures = scrape_until(
            url, lambda f: f.get("gpumarket_requests_total", **unauthenticated) >= FLOOD
        )
        assert figures.get("gpumarket_requests_total", **unauthenticated) == FLOOD
        assert figures.get("gpumarket_requests_refused_total", code="UNAUTHENTICATED") == FLOOD
        assert market.stop_status() == 0
        lines = [_TEXT_LINE.fullmatch(line) for line in market.log_text().splitlines()]

    assert all(lines), market.log_text()  # text format, one record a line
    assert {m["level"] for m in lines if m} == {"WARNING"}  # --log-level warning: no info
    said = [m["rest"] for m in lines if m and m["rest"].startswith("request refused ")]
    summaries = [m["rest"] for m in lines if m and m["rest"].startswith("suppressed ")]
    assert said and summaries
    assert all(
        s.startswith("request refused code=UNAUTHENTICATED rpc=Tenant/CreateDeployment ")
        for s in said
    ), said[0]
    assert all('details="bad signature' in s and " peer=ipv4:127.0.0.1:" in s for s in said)
    held_back = sum(int(s.rpartition(" suppressed=")[2]) for s in summaries)
    assert len(said) + held_back == FLOOD  # every refusal told, most of them in a sum
    assert len(said) + len(summaries) <= 6 * (math.ceil(seconds) + 2)


def test_streams_the_client_walks_away_from_are_counted_and_the_server_lives(
    tmp_path: Path,
) -> None:
    """A stream cancelled by its client ends after gRPC freed its call: measuring it must not
    touch its context then (reading the peer of a freed call crashed the server)."""
    cancelled = {"rpc": "Tenant/WatchDeployment", "code": "CANCELLED"}
    with LoggedMarket.start_in(tmp_path, "--log-level", "debug", "--metrics-listen", "0") as market:
        url = f"http://{market.metrics_address()}/metrics"
        alice = funded_tenant(market.address, market.admin, 10 * UNITS)
        dep = alice.create_deployment(gpu_sdl(bid_window="5m"), deposit=UNITS)
        for _ in range(WALKAWAYS):
            events = alice.watch_deployment(dep.id)
            assert isinstance(events, Generator)  # closing it cancels the stream
            next(events)  # the replayed deployment_created
            events.close()
        figures = scrape_until(
            url, lambda f: f.get("gpumarket_requests_total", **cancelled) >= WALKAWAYS
        )
        assert figures.get("gpumarket_requests_total", **cancelled) == WALKAWAYS
        assert market.proc is not None and market.proc.poll() is None
        assert market.stop_status() == 0


WALKAWAYS = 100


def test_a_bad_or_busy_metrics_address_is_refused_in_one_line(tmp_path: Path) -> None:
    code, lines = refused_start("--data-dir", str(tmp_path / "a"), "--metrics-listen", "99999")
    assert code == 1 and len(lines) == 1, lines
    assert "--metrics-listen '99999': use PORT or HOST:PORT" in lines[0]
    with LoggedMarket.start_in(tmp_path / "b", "--metrics-listen", "0") as first:
        taken = first.metrics_address()
        code, lines = refused_start("--data-dir", str(tmp_path / "c"), "--metrics-listen", taken)
        assert code == 1 and lines == [f"Error: --metrics-listen {taken} is already in use"]


# --- the formatters and the throttle, alone --------------------------------------------------


def record(message: str, **values: str | int | None) -> logging.LogRecord:
    logger = logging.getLogger("gpumarket.test")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, (), None, extra=fields(**values)
    )


def test_text_lines_cannot_be_forged_or_made_huge() -> None:
    forged = "eu\n2026-01-01T00:00:00.000Z ERROR gpumarket.market: provider lost"
    line = TextFormatter().format(record("provider registered", region=forged, gpus=2))
    assert "\n" not in line
    assert line.endswith(
        ' region="eu\\n2026-01-01T00:00:00.000Z ERROR gpumarket.market: provider lost" gpus=2'
    )
    huge = TextFormatter().format(record("x", reason="y" * 100_000))
    assert len(huge) < 400


def test_json_lines_keep_their_four_keys() -> None:
    line = json.loads(JsonFormatter().format(record("lease created", level="x", lease="L1")))
    assert line["message"] == "lease created" and line["lease"] == "L1"
    assert line["level"] == "info" and line["logger"] == "gpumarket.test"


def test_the_throttle_says_what_it_held_back() -> None:
    now = [0.0]
    stream = io.StringIO()
    logger = logging.getLogger("gpumarket.test.throttle")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    try:
        throttle = Throttle(logger, "code", limit=3, window_s=1.0, clock=lambda: now[0])
        for _ in range(10):
            throttle.warning("UNAUTHENTICATED", "request refused")
        now[0] = 1.5  # the next window: what the last one held back is said first
        throttle.warning("UNAUTHENTICATED", "request refused")
        throttle.close()
    finally:
        logger.removeHandler(handler)
    said = stream.getvalue().splitlines()
    assert [s.split(": ", 1)[1] for s in said] == [
        *["request refused code=UNAUTHENTICATED"] * 3,
        "suppressed 7 more like this code=UNAUTHENTICATED suppressed=7",
        "request refused code=UNAUTHENTICATED",
    ]


def test_an_escrow_run_dry_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A served market's minimum escrow (10 minutes at the maximum price) keeps any lease from
    running dry in a test's time, so the observer is driven here by the real core on a manual
    clock, with that rule off: each command's changes, as the app hands them over."""
    clock = ManualClock(0)
    market = market_with(clock, MarketConfig(admin_address=ADMIN, min_escrow_ms=0))
    observer = MarketObserver(MarketFigures(Registry()), market.state, clock)
    caplog.set_level(logging.INFO, logger="gpumarket")
    dep_id = deploy(market, deposit=5_000_000, group=gpu_group(max_price=10**10))
    market.place_bid("p1", f"{dep_id}/1/1", 3_600_000_000)  # 1,000 micro-units a ms
    clock.advance(5_000)
    market.tick()
    market.report_status("p1", f"{dep_id}/1/1/p1", True)
    observer(market.drain_changes())
    for _ in range(100):
        clock.advance(60)
        market.heartbeat("p1", [f"{dep_id}/1/1/p1"])
        observer(market.drain_changes())
    said = {(r.getMessage(), fields_of(r).get("deployment")) for r in caplog.records}
    assert ("escrow ran dry", dep_id) in said and ("deployment closed", dep_id) in said
    figures = observer.figures
    assert figures.leases_closed.value(("insufficient_funds",)) == 1
    assert figures.escrow_paid.value() == 5_000_000 and figures.escrow_refunded.value() == 0
