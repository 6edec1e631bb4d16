"""Provider agent figures (prints them; no assertions).

1. Award-to-container-running latency: from the moment the agent has a won lease's manifest to
   the RUNNING report (image present locally: create + start + inspect + network), p50/p99 over
   N leases, against a same-run baseline of a bare DockerRuntime.launch (create + start only).
2. The idle agent daemon (`gpumarket provider run`, 8 replayed H100s, NVML polled once a
   second), connected to a real marketplace and heartbeating (not backing off): CPU share and
   resident memory, sampled from /proc over a window.

    python bench/bench_agent.py [--leases 30] [--idle-seconds 30]
    python bench/bench_agent.py --only idle --idle-seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from marketplace.core.manifest import parse_manifest  # noqa: E402
from marketplace.core.matching import Allocation, Capacity, allocate  # noqa: E402
from provider_agent.config import RuntimeSection  # noqa: E402
from provider_agent.runtime import LABEL_PROVIDER, ContainerSpec, DockerRuntime  # noqa: E402
from provider_agent.supervisor import LeaseSupervisor, StatusReport  # noqa: E402

SDL = b"""
version: "2.0"
services:
  job:
    image: gpumarket/busybox:latest
    command: ["sleep", "300"]
profiles:
  compute:
    job:
      resources:
        cpu: {units: 0.5}
        memory: {size: 64Mi}
        storage: {size: 100Mi}
  placement:
    here:
      pricing:
        job: {denom: uact, amount: 100}
deployment:
  job:
    here: {profile: job, count: 1}
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cleanup(rt: DockerRuntime) -> None:
    label: dict[str, str | list[str] | bool] = {"label": f"{LABEL_PROVIDER}={rt.provider}"}
    for c in rt.client.containers.list(all=True, filters=label):
        c.remove(force=True)
    for n in rt.client.networks.list(filters=label):
        n.remove()


def bench_latency(n: int) -> None:
    rt = DockerRuntime.connect(f"bench-{uuid.uuid4().hex[:6]}")
    running = threading.Event()

    def report(r: StatusReport) -> None:
        if r.running:
            running.set()

    sup = LeaseSupervisor(rt, RuntimeSection(stop_grace_s=1), report, lambda _l, _x, _d: None)
    manifest = parse_manifest(SDL)
    group = manifest.groups[0]
    alloc = allocate(group, Capacity(8000, 8 << 30, 100 << 30))
    assert isinstance(alloc, Allocation)
    agent_s, bare_s = [], []
    try:
        for i in range(n):
            lease = f"Dbench{i}/1/1/p"
            running.clear()
            t0 = time.perf_counter()
            sup.start_lease(lease, manifest, group, alloc)
            running.wait(30)
            agent_s.append(time.perf_counter() - t0)
            sup.stop_lease(lease)
            spec = ContainerSpec(
                lease_id=f"Dbare{i}",
                service="job",
                image="gpumarket/busybox:latest",
                command=("sleep", "300"),
            )
            t0 = time.perf_counter()
            state = rt.launch(spec)
            bare_s.append(time.perf_counter() - t0)
            rt.remove(state.id)
    finally:
        sup.close()
        cleanup(rt)
        rt.close()
    a50, a99 = pct(agent_s, 50) * 1000, pct(agent_s, 99) * 1000
    b50, b99 = pct(bare_s, 50) * 1000, pct(bare_s, 99) * 1000
    print(f"award→running latency over {n} leases (local image):")
    print(
        f"  agent (create + start + inspect + report):         p50 {a50:.0f} ms, p99 {a99:.0f} ms"
    )
    print(
        f"  baseline bare create+start:                          p50 {b50:.0f} ms, p99 {b99:.0f} ms"
    )
    print(
        f"  ratio agent/baseline p50: {a50 / b50:.2f}x   (mean agent {statistics.mean(agent_s) * 1000:.0f} ms)"
    )


MARKET_JOB = SDL.replace(
    b"    here: {profile: job, count: 1}\n",
    b"    here: {profile: job, count: 1}\ngpumarket:\n  auction: {bid_window: 1s}\n",
)


async def _market_latency(n: int, tmp: Path) -> list[float]:
    import grpc.aio

    from marketplace.api.envelope import seal
    from marketplace.api.v1 import market_pb2 as pb
    from marketplace.api.v1 import market_pb2_grpc as pb_grpc
    from marketplace.core.clock import SystemClock
    from marketplace.core.market import MarketConfig
    from marketplace.identity import Key
    from marketplace.server.app import MarketApp
    from marketplace.server.servicers import add_servicers
    from marketplace.server.store import Store
    from provider_agent.agent import Agent
    from provider_agent.config import parse_config

    admin, tenant_key, provider_key = Key.generate(), Key.generate(), Key.generate()
    app = MarketApp(Store(tmp / "market.db"), MarketConfig(admin_address=admin.address))
    await app.start()
    server = grpc.aio.server()
    add_servicers(server, app)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    cfg = parse_config(
        {
            "provider": {"state_dir": str(tmp / "agent")},
            "marketplace": {"address": f"127.0.0.1:{port}"},
            "gpu": {"backend": "replay", "replay_file": "builtin:h100_nvml.json"},
            "resources": {"cpu": 64, "memory": "64Gi", "storage": "1Ti"},
            "pricing": {"scale": {"cpu_hour": "0.01"}},
            "metrics": {"enabled": False},
        }
    )
    said: list[str] = []
    runtime = DockerRuntime.connect(provider_key.address)
    agent = Agent(cfg, provider_key, runtime, SystemClock(), say=said.append)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.TenantStub(channel)
    market = admin.address  # the marketplace's id
    await stub.Fund(
        seal(admin, pb.FundAccount(address=tenant_key.address, amount=10**12), market=market)
    )
    while not any("registered" in s for s in said):
        await asyncio.sleep(0.05)
    latencies = []
    try:
        for _ in range(n):
            dep = await stub.CreateDeployment(
                seal(tenant_key, pb.CreateDeployment(sdl=MARKET_JOB, deposit=10**9), market=market)
            )
            lease = None
            while lease is None or lease.state != pb.LEASE_RUNNING:
                await asyncio.sleep(0.02)
                d = await stub.GetDeployment(
                    seal(tenant_key, pb.GetRequest(id=dep.id), market=market)
                )
                if d.lease_ids:
                    lease = await stub.GetLease(
                        seal(tenant_key, pb.GetRequest(id=d.lease_ids[0]), market=market)
                    )
            latencies.append((lease.running_at_ms - lease.created_at_ms) / 1000)
            await stub.CloseDeployment(
                seal(tenant_key, pb.CloseDeployment(deployment_id=dep.id), market=market)
            )
    finally:
        stop.set()
        await task
        await channel.close(grace=None)
        await server.stop(grace=None)
        await app.stop()
        cleanup(runtime)
        runtime.close()
    return latencies


def bench_market_latency(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        values = asyncio.run(_market_latency(n, Path(tmp)))
    p50, p99 = pct(values, 50) * 1000, pct(values, 99) * 1000
    print(f"award→running through the marketplace over {n} leases (lease created_at → running_at,")
    print("  marketplace clock: lease_won event, GetManifest, create + start, ReportLeaseStatus):")
    print(f"  p50 {p50:.0f} ms, p99 {p99:.0f} ms")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


IDLE_CONFIG = """
[provider]
key = "bench"
region = "eu"
host_uri = "https://127.0.0.1"
[marketplace]
address = "{address}"
[gpu]
backend = "replay"
replay_file = "builtin:h100x8_nvml.json"
replay_load = true
poll_interval_s = 1.0
[pricing.scale]
cpu_hour = "0.01"
[metrics]
port = 0
"""


def bench_idle(seconds: float) -> None:
    """The agent connected to a real marketplace (in this process, on a real SQLite file),
    registered, watching its order stream and heartbeating at the interval the market asks
    (10 s), with 8 replayed H100s under load: its CPU share and RSS over the window. The
    figure is taken only while it stays connected: the market must see its heartbeats
    advance, and the agent must not report the market unreachable."""
    from marketplace.api.client import MarketClient
    from marketplace.server.testing import ServerThread

    with tempfile.TemporaryDirectory() as home, ServerThread(Path(home) / "market") as market:
        cfg = Path(home) / "provider.toml"
        cfg.write_text(IDLE_CONFIG.format(address=market.address))
        env = {**os.environ, "GPUMARKET_HOME": home, "PYTHONUNBUFFERED": "1"}
        command = "from marketplace.cli.main import main; main()"
        proc = subprocess.Popen(
            [sys.executable, "-c", command, "provider", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        said: list[str] = []
        while "registered with the marketplace" not in (line := proc.stdout.readline()):
            if not line:
                raise SystemExit("agent did not register:\n" + "".join(said))
            said.append(line)
        offered = next((x.split(" ", 1)[1].strip() for x in said if "offering" in x), "?")
        reader = threading.Thread(target=lambda: said.extend(proc.stdout or ()), daemon=True)
        reader.start()
        with MarketClient(market.address) as client:

            def last_heartbeat_ms() -> int:
                (provider,) = client.list_providers()
                return provider.last_heartbeat_ms

            time.sleep(3)  # let startup (imports, registration, the first NVML reads) settle
            said_before = len(said)
            beat0 = last_heartbeat_ms()
            cpu0, t0 = proc_cpu_seconds(proc.pid), time.monotonic()
            rss = []
            while time.monotonic() - t0 < seconds:
                time.sleep(1)
                rss.append(proc_rss_mb(proc.pid))
            cpu1, t1 = proc_cpu_seconds(proc.pid), time.monotonic()
            beat1 = last_heartbeat_ms()
        proc.terminate()
        proc.wait(30)
        reader.join(5)
    away = [x for x in said[said_before:] if "unreachable" in x]
    share = (cpu1 - cpu0) / (t1 - t0) * 100
    print(f"idle agent daemon over {t1 - t0:.0f} s, connected and heartbeating (8 replayed H100s")
    print(f"  under load, NVML polled every 1 s; {offered.strip()}; Docker connected):")
    print(
        f"  CPU share {share:.2f}% of one core   RSS max {max(rss):.1f} MB, last {rss[-1]:.1f} MB"
    )
    print(
        f"  the market's record of its last heartbeat moved {(beat1 - beat0) / 1000:.1f} s over the "
        f"window ({'connected' if beat1 > beat0 and not away else 'NOT connected'})"
    )
    print(f"  agent exit status on SIGTERM: {proc.returncode}")
    if beat1 <= beat0 or away:
        raise SystemExit(f"the agent was not connected and heartbeating throughout: {away}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leases", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--only", choices=("latency", "market", "idle"), help="One part only.")
    args = parser.parse_args()
    if args.only in (None, "latency"):
        bench_latency(args.leases)
    if args.only in (None, "market"):
        bench_market_latency(args.leases)
    if args.only in (None, "idle"):
        bench_idle(args.idle_seconds)


if __name__ == "__main__":
    main()
