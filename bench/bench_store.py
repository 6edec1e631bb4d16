"""The marketplace on PostgreSQL against SQLite, and how fast a standby takes over.

    python bench/bench_store.py [--providers 200] [--workers 2] [--bids-per-order 20]
                                [--orders 100] [--kills 5]

Everything runs on this machine over loopback, with a throwaway PostgreSQL (Debian's binaries,
initdb + pg_ctl in a temp dir, as tests/pgcluster.py starts it for the tests).

1. throughput, same run, same load: `market serve` on SQLite (market.db in a data dir), then on
   PostgreSQL; --workers processes of signed bids as bench_market.py sends them (its workers).
   bids/s each, and the ratio PostgreSQL ÷ SQLite.
2. takeover: two `market serve` on one PostgreSQL database; --kills times, SIGKILL the leader and
   time until the standby answers a signed write (a fund) — the market serving again; the
   killed one is restarted as the next standby. Seconds p50 / max.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.pgcluster

from bench_market import (  # bench/ is on sys.path when run as python bench/NAME.py
    DEPOSIT,
    collect,
    cpu_seconds,
    percentile,
    summarize,
    wait_for_file,
    worker_main,
)

from marketplace.api.client import TenantClient
from marketplace.core import money
from marketplace.core.errors import MarketError
from marketplace.identity import Key
from marketplace.polling import wait_until
from marketplace.server.testing import gpu_sdl
from tests.pgcluster import PgCluster


def start_market(data_dir: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = data_dir.with_suffix(".port")
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable, "-c", "from marketplace.cli.main import main; main()",
            "market", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
            "--port-file", str(port_file), "--log-level", "warning", *args,
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, wait_for_file(port_file, proc)


def throughput(address: str, admin: Key, pid: int, args: Any) -> tuple[float, float]:
    """bids/s and server CPU µs per bid, with fresh workers against `address`."""
    ctx = mp.get_context("spawn")
    outbox = ctx.Queue()
    inboxes = [ctx.Queue() for _ in range(args.workers)]
    share = args.providers // args.workers
    procs = [
        ctx.Process(target=worker_main, args=(address, share, i, inboxes[i], outbox), daemon=True)
        for i in range(args.workers)
    ]
    try:
        for p in procs:
            p.start()
        collect(outbox, "ready", args.workers)
        tenant_key = Key.generate()
        with TenantClient(address, admin) as funder:
            funder.fund(tenant_key.address, 10**7 * money.MICRO)
        with TenantClient(address, tenant_key) as tenant:
            sdl = gpu_sdl(bid_window="5m", price=1_000_000)
            orders = [
                tenant.create_deployment(sdl, DEPOSIT).order_ids[0] for _ in range(args.orders)
            ]
        per_worker = max(1, args.bids_per_order // args.workers)
        cpu0 = cpu_seconds(pid)
        for inbox in inboxes:
            inbox.put(("bid", (orders, per_worker)))
        ok, seconds, errors = summarize(collect(outbox, "bid", args.workers))
        cpu = cpu_seconds(pid) - cpu0
        if errors:
            print(f"  errors: {errors}")
        return ok / seconds, cpu * 1e6 / max(ok, 1)
    finally:
        for inbox in inboxes:
            inbox.put(("stop", None))
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()


def compare(cluster: PgCluster, tmp: Path, args: Any) -> None:
    results: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    for round_ in range(args.rounds):
        for engine in results:
            data_dir = tmp / f"{engine}-{round_}"
            store = ["--store", cluster.create_database()] if engine == "postgresql" else []
            proc, address = start_market(data_dir, *store)
            try:
                admin = Key.from_pem((data_dir / "admin.pem").read_bytes())
                bids_per_s, cpu_us = throughput(address, admin, proc.pid, args)
            finally:
                proc.terminate()
                proc.wait(30)
            results[engine].append(bids_per_s)
            print(f"  {engine:10} {bids_per_s:8,.0f} bids/s   server CPU {cpu_us:,.0f} µs per bid")
    sqlite, pg = (max(results[e]) for e in ("sqlite", "postgresql"))
    print(f"throughput: SQLite {sqlite:,.0f} bids/s, PostgreSQL {pg:,.0f} bids/s (best of "
          f"{args.rounds}): PostgreSQL ÷ SQLite = {pg / sqlite:.2f}")  # fmt: skip


def serving(address: str, admin: Key) -> bool:
    """A signed write succeeds: the market serves (a standby refuses it UNAVAILABLE)."""
    try:
        with TenantClient(address, admin, timeout_s=2) as client:
            client.fund(Key.generate().address, 1)
    except MarketError:
        return False
    return True


def takeover(cluster: PgCluster, tmp: Path, args: Any) -> None:
    url = cluster.create_database()
    lease = ["--store", url, "--leader-lease", str(args.lease)]
    first_dir = tmp / "leader-a"
    servers = {first_dir: start_market(first_dir, *lease)}
    admin_key = first_dir / "admin.pem"
    second_dir = tmp / "leader-b"
    servers[second_dir] = start_market(second_dir, *lease, "--admin-key", str(admin_key))
    admin = Key.from_pem(admin_key.read_bytes())
    seconds: list[float] = []
    try:
        for _ in range(args.kills):
            leader = next(d for d, (_, a) in servers.items() if serving(a, admin))
            proc, _ = servers[leader]
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            proc.wait(10)
            (standby_address,) = [a for d, (_, a) in servers.items() if d != leader]
            wait_until(partial(serving, standby_address, admin), 60, "the standby", interval=0.02)
            seconds.append(time.monotonic() - killed)
            servers[leader] = start_market(leader, *lease, "--admin-key", str(admin_key))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    print(f"takeover: leader SIGKILL → standby serving a signed write, {len(seconds)} kills "
          f"(lease {args.lease} s): p50 {percentile(seconds, 0.5):.2f} s, "
          f"max {max(seconds):.2f} s  [{' '.join(f'{s:.2f}' for s in seconds)}]")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bids-per-order", type=int, default=20)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1, help="throughput runs per engine")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lease", type=float, default=3.0, help="--leader-lease of the servers")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    with PgCluster.start() as cluster:
        print(f"PostgreSQL {cluster.bin.parent.name} on 127.0.0.1:{cluster.port}; "
              f"{args.providers} providers in {args.workers} processes, "
              f"{args.orders} orders × {args.bids_per_order} bids")  # fmt: skip
        compare(cluster, tmp, args)
        takeover(cluster, tmp, args)


if __name__ == "__main__":
    main()
