"""The market's event loop under heavy reads: does a health check or a bid wait behind them?

    python bench/bench_loop.py [--deployments 3000] [--seconds 3] [--hammers 2] [--only NAME,...]

Builds a market with a long history (--deployments closed deployments of one tenant, each with
its order, two bids, a lease, events and ledger entries, made through the app's command path and
committed to SQLite: tests/server/big_market.py), restarts it as a real `gpumarket market serve`
process on that data dir, then for each read whose work grows with that history (ListDeployments,
ListOrders, ListLeases, ListLedger, Audit, PriceAdvice, Stats, GetPriceHistory, WatchDeployment
of a closed deployment) runs --hammers threads calling it back to back for --seconds while a
gRPC health check (every 20 ms) and a small signed bid (placed and withdrawn, every 50 ms) are
timed. Prints p50/p99 of both, and p99 as a ratio to the same run's unloaded baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from marketplace.api.client import ProviderClient, TenantClient
from marketplace.server.testing import ServerThread
from tests.server.big_market import (
    BigMarket,
    Latency,
    build_history,
    heavy_reads,
    open_order,
    under_load,
)
from tests.server.market_process import MarketProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--hammers", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated read names")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "market"
        with ServerThread(data) as building:
            built = build_history(building, args.deployments)
        server = MarketProcess.start(data)
        try:
            run(server, built, args)
        finally:
            server.stop()


def run(server: MarketProcess, built: BigMarket, args: argparse.Namespace) -> None:
    address = server.address
    assert built.tenant.key is not None and built.providers[0].key is not None
    big = BigMarket(
        TenantClient(address, built.tenant.key),
        [ProviderClient(address, p.key) for p in built.providers if p.key is not None],
        built.closed,
    )
    order_id = open_order(big)
    bidder = big.providers[1]
    reads = heavy_reads(address, server.admin, big)
    wanted = [n for n in args.only.split(",") if n] or list(reads)
    print(
        f"{big.closed:,} closed deployments; {args.hammers} threads per read, {args.seconds} s each"
    )
    base = under_load(address, bidder, order_id, None, args.seconds)
    show("(no load)", base, base)
    for name in wanted:
        show(
            name,
            under_load(address, bidder, order_id, reads[name], args.seconds, args.hammers),
            base,
        )


def show(name: str, got: Latency, base: Latency) -> None:
    print(
        f"{name:<24} health p50 {got.health_p50:6.1f} p99 {got.health_p99:7.1f} ms "
        f"(x{got.health_p99 / max(base.health_p99, 0.1):5.1f})  "
        f"bid p50 {got.bid_p50:6.1f} p99 {got.bid_p99:7.1f} ms "
        f"(x{got.bid_p99 / max(base.bid_p99, 0.1):5.1f})  reads {got.reads:5d}",
        flush=True,
    )


if __name__ == "__main__":
    main()
