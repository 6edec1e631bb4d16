"""Shell and cp through the marketplace, against Docker directly, in the same run (prints them;
no assertions).

A real stack (`market serve` and `provider run` as processes, a busybox lease running), then:

1. Keystroke round trip: one byte to an interactive `cat` in the lease's container and its echo
   back, p50/p99 over N bytes, (a) through the marketplace (tenant → market → agent → docker
   exec, and back) and (b) on a `docker exec` connection of our own (the engine's API, as the
   docker CLI uses it). Both without a TTY, so the echo is cat's, not a terminal's.
2. cp: a random file of M MB into the container and back out, MB/s, (a) `gpumarket cp`'s code in
   this process (b) `docker cp`; bytes checked equal both ways.

    python bench/bench_shell.py [--keystrokes 500] [--mb 100]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from marketplace.api.client import TenantClient  # noqa: E402
from marketplace.api.v1 import market_pb2 as pb  # noqa: E402
from marketplace.cli.demo_stack import Stack, wait_for_market  # noqa: E402
from marketplace.cli.shell import download, upload  # noqa: E402
from marketplace.identity import Key  # noqa: E402
from provider_agent.runtime import DockerRuntime  # noqa: E402

SDL = b"""
version: "2.0"
services:
  box:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: ["mkdir -p /data && exec sleep 3600"]
profiles:
  compute:
    box:
      resources:
        cpu: {units: 1}
        memory: {size: 512Mi}
        storage: {size: 2Gi}
  placement:
    here:
      pricing:
        box: {denom: uact, amount: 3000}
deployment:
  box:
    here: {profile: box, count: 1}
gpumarket:
  kind: service
  auction:
    bid_window: 1s
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start(root: Path) -> tuple[Stack, TenantClient, str]:
    stack = Stack(heartbeat_timeout_s=30.0, root=root)
    stack.start_market()
    stack.add_provider("cpu", REPO / "examples" / "provider-cpu.toml")
    stack.start_provider("cpu")
    stack.wait_providers_online(["cpu"])
    key = Key.generate()
    with TenantClient(stack.address, stack.admin_key()) as admin:
        admin.fund(key.address, 50_000_000)
    tenant = TenantClient(stack.address, key)
    dep = tenant.create_deployment(SDL, 5_000_000)

    def running() -> str | None:
        for lease_id in tenant.get_deployment(dep.id).lease_ids:
            if tenant.get_lease(lease_id).state == pb.LEASE_RUNNING:
                return lease_id
        return None

    return stack, tenant, wait_for_market(running, 60, "the lease to run")


# --- keystrokes ----------------------------------------------------------------------------------


def market_round_trips(tenant: TenantClient, lease_id: str, n: int) -> list[float]:
    frames: queue.Queue[pb.ShellFrame | None] = queue.Queue()

    def requests() -> Iterator[pb.ShellFrame]:
        while (frame := frames.get()) is not None:
            yield frame

    call = tenant.shell(pb.ShellOpen(lease_id=lease_id, command=["cat"]), requests())
    answers = iter(call)
    times = []
    try:
        next(f for f in answers if f.started)
        for i in range(n + 20):
            byte = bytes([97 + i % 26])
            begun = time.perf_counter()
            frames.put(pb.ShellFrame(stdin=byte))
            echoed = b""
            while not echoed:
                echoed = next(answers).stdout
            if echoed != byte:
                raise AssertionError(f"sent {byte!r}, cat echoed {echoed!r}")
            if i >= 20:  # warm-up
                times.append(time.perf_counter() - begun)
    finally:
        frames.put(None)
        call.cancel()
    return times


def docker_round_trips(runtime: DockerRuntime, container_id: str, n: int) -> list[float]:
    session = runtime.exec(container_id, ["cat"], tty=False)
    times = []
    try:
        for i in range(n + 20):
            byte = bytes([97 + i % 26])
            begun = time.perf_counter()
            session.write(byte)
            _, echoed = session.read()
            if echoed != byte:
                raise AssertionError(f"sent {byte!r}, cat echoed {echoed!r}")
            if i >= 20:
                times.append(time.perf_counter() - begun)
    finally:
        session.close()
    return times


# --- cp ------------------------------------------------------------------------------------------


def timed(work: Callable[[], object]) -> float:
    begun = time.perf_counter()
    work()
    return time.perf_counter() - begun


def docker_cp(*args: str) -> None:
    subprocess.run(["docker", "cp", *args], check=True, capture_output=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bench_cp(
    tenant: TenantClient, lease_id: str, container: str, mb: int, work: Path
) -> dict[str, float]:
    source = work / "random.bin"
    source.write_bytes(os.urandom(mb * 1024 * 1024))
    want = digest(source)
    most = 16 * 1024**3
    seconds = {
        "market up": timed(lambda: upload(tenant, source, lease_id, "", "/data/ours.bin", most)),
        "market down": timed(
            lambda: download(tenant, lease_id, "", "/data/ours.bin", work / "ours.bin", most)
        ),
        "docker up": timed(lambda: docker_cp(str(source), f"{container}:/data/theirs.bin")),
        "docker down": timed(lambda: docker_cp(f"{container}:/data/theirs.bin", str(work))),
    }
    assert digest(work / "ours.bin") == want, "the marketplace's copy differs"
    assert digest(work / "theirs.bin") == want, "docker cp's copy differs"
    return {name: mb / s for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=500)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shell-") as tmp:
        stack, tenant, lease_id = start(Path(tmp) / "stack")
        try:
            provider = stack.providers["cpu"].address
            runtime = DockerRuntime.connect(provider)
            container = next(s.id for s in runtime.owned(lease_id) if s.running)
            ours = market_round_trips(tenant, lease_id, args.keystrokes)
            theirs = docker_round_trips(runtime, container, args.keystrokes)
            print(f"keystroke round trip, {args.keystrokes} bytes to `cat` and back (ms)")
            print(f"{'':24}{'p50':>8}{'p99':>8}{'mean':>8}")
            for name, times in (("through the market", ours), ("docker exec directly", theirs)):
                ms = [t * 1000 for t in times]
                print(f"{name:24}{pct(ms, 50):8.2f}{pct(ms, 99):8.2f}{statistics.mean(ms):8.2f}")
            print(
                f"ratio market/docker: p50 {pct(ours, 50) / pct(theirs, 50):.2f}x, "
                f"p99 {pct(ours, 99) / pct(theirs, 99):.2f}x"
            )
            rates = bench_cp(tenant, lease_id, container, args.mb, Path(tmp))
            print(f"\ncp of {args.mb} MB (MB/s)")
            print(f"{'':24}{'in':>8}{'out':>8}")
            print(f"{'gpumarket cp':24}{rates['market up']:8.1f}{rates['market down']:8.1f}")
            print(f"{'docker cp':24}{rates['docker up']:8.1f}{rates['docker down']:8.1f}")
            print(
                f"ratio gpumarket/docker: in {rates['market up'] / rates['docker up']:.2f}, "
                f"out {rates['market down'] / rates['docker down']:.2f}"
            )
            runtime.close()
        finally:
            tenant.close()
            stack.close()


if __name__ == "__main__":
    main()
