"""Marketplace soak: does memory stay flat under deployments that open and close?

    python bench/bench_soak.py                              # 10,000 closed deployments
    python bench/bench_soak.py --deployments 100000 --report-every 10000
    python bench/bench_soak.py --deployments 2000 --report-every 500 --json

`gpumarket market serve` runs as a subprocess on a real SQLite file (temp dir). --workers
threads, each a tenant with its own provider (2 H100s), loop: create a deployment (manual
auction), the provider bids, the tenant accepts (a lease), the tenant closes it; each
provider heartbeats every --heartbeat-s seconds. Every signed request is a real one (fresh
nonce, verified, committed to SQLite before its reply).

Prints the server's resident memory (VmRSS, from /proc) after a warm-up (--warmup closed
deployments: caches and the allocator settle), then every --report-every closed deployments,
with the growth since the warm-up per 1,000 deployments, the peak (VmHWM) and the rate. Flat
memory: the growth per 1,000 tends to 0 as the run goes on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from marketplace.api.client import ProviderClient, TenantClient
from marketplace.core import money
from marketplace.identity import Key
from marketplace.polling import wait_until
from marketplace.server.testing import gpu_sdl, provider_registration

SDL = gpu_sdl(extra=", manual: true")  # the tenant accepts the bid itself: no bid-window wait
PRICE = 500_000


def start_market(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = root / "port"
    command = "from marketplace.cli.main import main; main()"
    serve = ["market", "serve", "--listen", "127.0.0.1:0", "--log-level", "warning"]
    where = ["--data-dir", str(root / "market"), "--port-file", str(port_file)]
    proc = subprocess.Popen(
        [sys.executable, "-c", command, *serve, *where],
        stdout=subprocess.DEVNULL,
    )

    def written() -> str | None:
        if proc.poll() is not None:
            raise SystemExit("the marketplace did not start")
        return port_file.read_text().strip() if port_file.exists() else None

    return proc, wait_until(written, 60, "the marketplace to listen")


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of process `pid`, in MiB."""
    found: dict[str, float] = {}
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = row.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


class Worker:
    """One tenant and its provider, opening and closing deployments one after another."""

    def __init__(self, address: str, admin: Key, name: str, heartbeat_s: float) -> None:
        self.tenant = TenantClient(address, Key.generate())
        with TenantClient(address, admin) as funder:
            assert self.tenant.key is not None
            funder.fund(self.tenant.key.address, 10**15)
        self.provider = ProviderClient(address, Key.generate())
        self.provider.register(provider_registration(name, "eu"))
        self.heartbeat_s = heartbeat_s
        self.last_beat = time.monotonic()

    def cycle(self) -> None:
        dep = self.tenant.create_deployment(SDL, money.MICRO)
        bid = self.provider.place_bid(dep.order_ids[0], PRICE)
        self.tenant.accept_bid(bid.id)
        self.tenant.close_deployment(dep.id)
        if time.monotonic() - self.last_beat > self.heartbeat_s:
            self.provider.heartbeat()
            self.last_beat = time.monotonic()


class Soak:
    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.closed = 0
        self.lock = threading.Lock()
        self.failure: BaseException | None = None

    def run(self, until: int) -> None:
        """Close deployments (all workers at once) until `until` are closed in all."""

        def loop(worker: Worker) -> None:
            try:
                while True:
                    with self.lock:
                        if self.closed >= until or self.failure is not None:
                            return
                        self.closed += 1
                    worker.cycle()
            except BaseException as exc:  # reported by the main thread
                self.failure = exc

        threads = [threading.Thread(target=loop, args=(w,)) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.failure is not None:
            raise self.failure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--report-every", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--heartbeat-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_market(Path(tmp))
        admin = Key.from_pem((Path(tmp) / "market" / "admin.pem").read_bytes())
        try:
            workers = [
                Worker(address, admin, f"p{i}", args.heartbeat_s) for i in range(args.workers)
            ]
            soak = Soak(workers)
            started = time.perf_counter()
            soak.run(args.warmup)
            base = memory_mib(proc.pid)
            rows.append(_row(args.warmup, base, base, started))
            _show(rows[-1], args.json)
            marks = range(args.warmup + args.report_every, args.deployments + 1, args.report_every)
            for mark in [*marks, *([] if args.deployments in marks else [args.deployments])]:
                soak.run(mark)
                rows.append(_row(mark, memory_mib(proc.pid), base, started))
                _show(rows[-1], args.json)
        finally:
            proc.terminate()
            proc.wait(30)
    if args.json:
        print(json.dumps({"workers": args.workers, "rows": rows}, indent=2))


def _row(
    closed: int, mem: dict[str, float], base: dict[str, float], started: float
) -> dict[str, float]:
    wall = time.perf_counter() - started
    grown = mem["VmRSS"] - base["VmRSS"]
    return {
        "closed_deployments": closed,
        "rss_mib": round(mem["VmRSS"], 1),
        "peak_rss_mib": round(mem["VmHWM"], 1),
        "grown_since_warmup_mib": round(grown, 1),
        "wall_s": round(wall, 1),
        "deployments_per_s": round(closed / wall, 1),
    }


def _show(row: dict[str, float], quiet: bool) -> None:
    if quiet:
        return
    print(
        f"{int(row['closed_deployments']):>8,} closed: RSS {row['rss_mib']:7.1f} MiB "
        f"(+{row['grown_since_warmup_mib']:.1f} since warm-up), peak {row['peak_rss_mib']:.1f} "
        f"MiB; {row['deployments_per_s']:.0f} deployments/s, {row['wall_s']:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
