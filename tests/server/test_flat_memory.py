"""Memory stays flat under deployments that open and close (issue 13): what grew with every
closed deployment after closed records left memory (issue 10) is bounded now. A real server
(in-process, real SQLite file, real gRPC) runs many open/lease/log/close cycles with the bounds
made small, and each named structure stays within its bound while every read still answers
right: the provider event log (a resume token older than it gets a snapshot), the price points
behind Market.Stats, the last log line numbers (others come from the store), the deadline
heap's stale entries, and the replay guard's nonces (bounded by the clock-skew window).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import limits, market
from marketplace.core.clock import ManualClock
from marketplace.core.config import MarketConfig
from marketplace.identity import Key, ReplayGuard, Signature
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.helpers import registered_provider

RETENTION = 30  # provider events kept in memory (trimmed at twice as many)
PRICES = 20
LOG_SEQS = 8
STALE = 16
MANUAL = gpu_sdl(extra=", manual: true")


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    monkeypatch.setattr(limits, "PRICE_POINTS_KEPT", PRICES)
    monkeypatch.setattr(limits, "LOG_SEQS_CACHED", LOG_SEQS)
    monkeypatch.setattr(market, "STALE_DEADLINES_SLACK", STALE)
    with ServerThread(tmp_path / "m", MarketConfig(provider_event_retention=RETENTION)) as running:
        yield running


class Parties:
    def __init__(self, server: ServerThread) -> None:
        self.tenant = TenantClient(server.address, Key.generate())
        assert self.tenant.key is not None
        with TenantClient(server.address, server.admin) as admin:
            admin.fund(self.tenant.key.address, 10**12)
        self.provider: ProviderClient = registered_provider(server.address, "p1")
        self.leases: list[str] = []

    def cycle(self) -> None:
        """Deploy, bid, accept, log, close, log late (as an agent flushing its last lines)."""
        dep = self.tenant.create_deployment(MANUAL, 10**6)
        bid = self.provider.place_bid(dep.order_ids[0], 500_000)
        lease = self.tenant.accept_bid(bid.id)
        self.provider.report_logs(lease.id, [pb.LogLine(line="up")])
        self.tenant.close_deployment(dep.id)
        self.provider.report_logs(lease.id, [pb.LogLine(line="late")])
        self.provider.heartbeat()
        self.leases.append(lease.id)


def sizes(server: ServerThread) -> dict[str, int]:
    def measure() -> dict[str, int]:
        app = server.app
        st = app.market.state
        return {
            "provider events": len(st.provider_events),
            "price points": len(app.market._prices),
            "log seqs": len(app._log_seq),
            "deadline heap": len(app.market._heap),
            "open records": len(st.deployments) + len(st.orders) + len(st.leases) + len(st.bids),
            "deployment events": len(st.deployment_events),
        }

    return server.call(measure)


BOUNDS = {
    "provider events": 2 * RETENTION,
    "price points": 2 * PRICES,
    "log seqs": LOG_SEQS,
    "deadline heap": 2 * 1 + STALE + 1,  # the provider's heartbeat deadline is the live one
    "open records": 0,
    "deployment events": 0,
}


def test_a_long_run_of_open_and_close_keeps_the_named_structures_bounded(
    server: ServerThread,
) -> None:
    parties = Parties(server)
    seen: list[dict[str, int]] = []
    for _round in range(2):
        for _ in range(40):
            parties.cycle()
        seen.append(sizes(server))
    for name, bound in BOUNDS.items():
        assert all(s[name] <= bound for s in seen), (name, bound, seen)
    # with room to grow: it would have (4+ provider events, 1 price, 1 log seq a deployment)
    assert seen[-1]["provider events"] >= RETENTION and seen[-1]["price points"] >= PRICES

    # reads still answer right: stats over the newest prices; the first lease's log, whose
    # number left memory long ago, goes on from its stored last line without a duplicate
    with MarketClient(server.address) as client:
        (stat,) = client.stats().gpu_prices
        assert PRICES <= stat.samples <= 2 * PRICES and stat.median == 500_000
    first = parties.leases[0]
    parties.provider.report_logs(first, [pb.LogLine(line="later still")])
    lines = list(parties.tenant.stream_logs(first))
    assert [(line.seq, line.line) for line in lines] == [
        (1, "up"),
        (2, "late"),
        (3, "later still"),
    ]


def test_a_resume_token_older_than_the_event_log_gets_a_snapshot(server: ServerThread) -> None:
    """The provider event log keeps the newest events only; a provider resuming from before
    them is sent what a fresh watcher gets (every open order, its open leases), not a gap."""
    parties = Parties(server)
    tenant, provider = parties.tenant, parties.provider
    still_open = [tenant.create_deployment(MANUAL, 10**6) for _ in range(3)]
    first_seq = next(iter(provider.watch_orders())).seq  # a token from back then
    for _ in range(2 * RETENTION):  # enough events to trim the log past the token
        parties.cycle()
    assert not server.call(lambda: server.app.market.provider_log_covers(first_seq))
    events = provider.watch_orders(resume_token=first_seq)
    opened = [next(events) for _ in still_open]
    assert [e.order_opened.id for e in opened] == [d.order_ids[0] for d in still_open]
    assert opened[-1].seq == server.app.committed_seq  # resuming from here misses nothing


def test_the_replay_guard_holds_the_nonces_of_the_skew_window_only() -> None:
    clock = ManualClock(1_700_000_000_000)
    guard = ReplayGuard(clock, max_skew_ms=60_000)
    key = Key.generate().public_key
    for n in range(1_000):
        guard.check(Signature(key, b"sig", n.to_bytes(16, "big"), clock.now_ms(), "m"))
    clock.advance(61_000)
    guard.check(Signature(key, b"sig", b"fresh".ljust(16), clock.now_ms(), "m"))
    assert len(guard._seen) == 1
