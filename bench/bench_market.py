"""The marketplace server under load: signed bids over real gRPC from many provider processes.

    python bench/bench_market.py [--providers 1000] [--workers 4] [--bids-per-order 50]
                                 [--orders 200] [--latency-orders 150] [--rate BIDS_PER_S]
                                 [--paths stream,unary] [--in-flight 128] [--profile FILE]

Everything runs on this machine over loopback: `gpumarket market serve` as a subprocess (real
SQLite file in a temp dir), and --workers processes holding --providers provider identities
between them (grpc.aio, one channel per process, each provider heartbeating every 10 s; on the
stream path each provider has its own Provider.Channel stream, as an agent does).

For each path in --paths (stream: signed messages on the providers' Channel streams; unary:
one PlaceBid call per bid):
1. throughput: --orders orders with a long bid window; each gets --bids-per-order signed bids
   from random providers, sent as fast as the workers can (--in-flight per worker). bids/s, and
   the server's CPU per bid.
2. baseline, in the same run: the same workers send the same number of the same signed messages
   to a trivial grpc.aio echo server (a subprocess too) the same way: on the stream path over one
   bidi echo stream per provider, on the unary path as unary calls. The ratio bids/s ÷ echo/s
   says what the marketplace costs above raw gRPC on this machine now. Then the same to a
   second echo server that also checks each message's Ed25519 signature (as the market must,
   and nothing else): bids/s ÷ verifying echo/s says what the market costs above that floor.
3. award latency (first path only): orders arrive at rate/bids-per-order per second with a 1 s
   window, and their bids come in at once (--rate bids/s offered; by default half the measured
   throughput); latency = when an observer provider receives the order's close on its
   WatchOrders stream minus the order's closes_at (p50/p99).

--profile FILE runs the server under cProfile during the first path's throughput phase and
prints the 15 functions with the most own time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import pstats
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from marketplace.api.client import ProviderClient, TenantClient
from marketplace.api.envelope import seal, signature_of
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.identity import Key, verify_signature
from marketplace.polling import wait_until
from marketplace.server.serve import SERVER_OPTIONS
from marketplace.server.testing import gpu_sdl, provider_registration

IN_FLIGHT = 64  # registrations and heartbeats in flight per worker
STREAMS_PER_CONNECTION = 100
MAX_ECHO_STREAMS = 250  # per worker
ECHO_ROUNDS = 3
# a deposit that pays the bench orders' maximum price (~589 units/h) for the 10 minutes the market asks
DEPOSIT = 100 * money.MICRO
ECHO_METHOD = "/bench.Echo/Echo"
ECHO_STREAM_METHOD = "/bench.Echo/Stream"
CHANNEL_METHOD = "/marketplace.api.v1.Provider/Channel"


# --- processes -----------------------------------------------------------------------------


# The server under cProfile, switched on by SIGUSR1 and dumped by SIGUSR2 (bid phase only).
PROFILED_MAIN = """
import cProfile, signal, sys
from marketplace.cli.main import main
profile, path = cProfile.Profile(), sys.argv.pop(1)
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, lambda *_: (profile.disable(), profile.dump_stats(path)))
main()
"""


def start_market(
    data_dir: Path, profile: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port_file = data_dir / "port"
    launcher = ["-c", "from marketplace.cli.main import main; main()"]
    if profile is not None:
        launcher = ["-c", PROFILED_MAIN, str(profile)]
    proc = subprocess.Popen(
        [
            sys.executable,
            *launcher,
            "market",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir / "market"),
            "--port-file",
            str(port_file),
            "--log-level",  # a line per provider and deployment would bury the bench's output
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    return proc, wait_for_file(port_file, proc)


def wait_for_file(path: Path, proc: subprocess.Popen[bytes]) -> str:
    """The first line a starting server writes to `path` (its address)."""

    def written() -> str | None:
        if proc.poll() is not None:
            raise SystemExit("server did not start")
        return path.read_text().strip() if path.exists() else None

    try:
        return wait_until(written, 30, f"{path.name} to be written")
    except TimeoutError:
        raise SystemExit("server did not start") from None


def check_signature(request: pb.SignedRequest, method: str) -> None:
    """What the verifying echo adds: the Ed25519 check every market message gets (no replay
    guard, no parsing of the payload, no store)."""
    verify_signature(
        f"marketplace.api.v1.{method}", request.payload, signature_of(request), request.market_id
    )


def echo_server_main(port_file: str, verifying: bool = False) -> None:
    async def run() -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)  # as the market's

        async def echo(request: bytes, context: Any) -> bytes:
            if verifying:
                check_signature(pb.SignedRequest.FromString(request), "PlaceBid")
            return request

        async def echo_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
            await context.send_initial_metadata(())  # open at once, as the market's Channel
            async for request in requests:
                if verifying:
                    message = pb.ProviderMessage.FromString(request)
                    check_signature(message.request, message.method)
                yield request

        handler = grpc.method_handlers_generic_handler(
            "bench.Echo",
            {  # bytes in, bytes out
                "Echo": grpc.unary_unary_rpc_method_handler(echo),
                "Stream": grpc.stream_stream_rpc_method_handler(echo_stream),
            },
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        Path(port_file).write_text(f"127.0.0.1:{port}")
        await server.wait_for_termination()

    asyncio.run(run())


def start_echo(data_dir: Path, verifying: bool) -> tuple[subprocess.Popen[bytes], str]:
    port_file = data_dir / f"echo-port-{verifying}"
    code = f"import bench_market as b; b.echo_server_main({str(port_file)!r}, {verifying})"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    return proc, wait_for_file(port_file, proc)


# --- workers ---------------------------------------------------------------------------------


class BenchStream:
    """One two-way stream carrying ProviderMessages; answers matched to questions by seq."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        method: str,
        deserializer: Callable[[bytes], Any],
        seq_of: Callable[[Any], int],
    ) -> None:
        self.queue: asyncio.Queue[pb.ProviderMessage] = asyncio.Queue()
        open_stream = channel.stream_stream(
            method,
            request_serializer=pb.ProviderMessage.SerializeToString,
            response_deserializer=deserializer,
        )
        self.call = open_stream(self._requests())
        self.seq_of = seq_of
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.seq = 0
        self.reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[pb.ProviderMessage]:
        while True:
            yield await self.queue.get()

    async def _read(self) -> None:
        async for message in self.call:
            waiter = self.waiting.pop(self.seq_of(message), None)
            if waiter is not None:
                waiter.set_result(message)

    async def ask(self, method: str, request: pb.SignedRequest) -> Any:
        self.seq += 1
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[self.seq] = waiter
        self.queue.put_nowait(pb.ProviderMessage(seq=self.seq, method=method, request=request))
        return await waiter

    def close(self) -> None:
        self.call.cancel()
        self.reader.cancel()


def spread_channels(address: str, streams: int) -> list[grpc.aio.Channel]:
    """A connection of its own per STREAMS_PER_CONNECTION streams: one HTTP/2 connection
    carries a bounded number of streams at once (an agent has a connection of its own)."""
    own = (("grpc.use_local_subchannel_pool", 1),)  # not shared with the other channels
    return [
        grpc.aio.insecure_channel(address, options=own)
        for _ in range(0, streams, STREAMS_PER_CONNECTION)
    ]


def market_stream(channel: grpc.aio.Channel) -> BenchStream:
    return BenchStream(channel, CHANNEL_METHOD, pb.MarketMessage.FromString, lambda m: m.answer.seq)


def echo_stream(channel: grpc.aio.Channel) -> BenchStream:
    return BenchStream(channel, ECHO_STREAM_METHOD, pb.ProviderMessage.FromString, lambda m: m.seq)


class Worker:
    """One process: a share of the providers, one channel, bids on request."""

    def __init__(self, address: str, count: int, index: int, in_flight: int) -> None:
        self.address = address
        self.keys = [Key.generate() for _ in range(count)]
        self.index = index
        self.in_flight = in_flight
        self.rng = random.Random(index)
        self.streams: dict[bytes, BenchStream] = {}  # each provider's Channel, by public key

    async def setup(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = pb_grpc.ProviderStub(self.channel)
        info = await pb_grpc.MarketStub(self.channel).Info(pb.MarketInfoRequest(), timeout=30)
        self.market: str = info.market_id  # what every signature names
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def register(i: int, key: Key) -> None:
            async with sem:
                msg = provider_registration(f"w{self.index}p{i}")
                await self.stub.Register(seal(key, msg, market=self.market), timeout=30)

        await asyncio.gather(*(register(i, k) for i, k in enumerate(self.keys)))
        self.heartbeats = asyncio.create_task(self.heartbeat_forever())

    async def open_streams(self) -> None:
        """A Channel stream per provider, bound by a first heartbeat (heartbeats go on it)."""
        sem = asyncio.Semaphore(IN_FLIGHT)

        channels = spread_channels(self.address, len(self.keys))

        async def open_one(i: int, key: Key) -> None:
            async with sem:
                stream = market_stream(channels[i // STREAMS_PER_CONNECTION])
                answer = await stream.ask(
                    "Heartbeat", seal(key, pb.Heartbeat(), market=self.market)
                )
                assert answer.answer.code == 0, answer.answer.message
                self.streams[key.public_key] = stream

        await asyncio.gather(*(open_one(i, k) for i, k in enumerate(self.keys)))

    async def heartbeat_forever(self) -> None:
        while True:
            for key in self.keys:
                await asyncio.sleep(10 / len(self.keys))
                request = seal(key, pb.Heartbeat(), market=self.market)
                stream = self.streams.get(key.public_key)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    if stream is not None:
                        await stream.ask("Heartbeat", request)
                    else:
                        await self.stub.Heartbeat(request, timeout=10)

    def bids_for(self, orders: list[str], per_order: int) -> list[tuple[Key, str]]:
        out = []
        for order in orders:
            for key in self.rng.sample(self.keys, min(per_order, len(self.keys))):
                out.append((key, order))
        return out

    def _bid_request(self, key: Key, order: str) -> pb.SignedRequest:
        price = self.rng.randrange(100_000, 2_000_000)
        return seal(key, pb.PlaceBid(order_id=order, price_per_hour=price), market=self.market)

    async def bid_all(self, work: list[tuple[Key, str]], path: str) -> dict[str, Any]:
        sem = asyncio.Semaphore(self.in_flight)
        errors: dict[str, int] = {}
        done = 0

        async def bid(key: Key, order: str) -> None:
            nonlocal done
            async with sem:
                request = self._bid_request(key, order)
                if path == "stream":
                    answer = (await self.streams[key.public_key].ask("PlaceBid", request)).answer
                    if answer.code == 0:
                        done += 1
                    else:
                        name = grpc.StatusCode.UNKNOWN.name if not answer.error else answer.error
                        errors[name] = errors.get(name, 0) + 1
                    return
                try:
                    await self.stub.PlaceBid(request, timeout=60)
                    done += 1
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(bid(k, o) for k, o in work))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"ok": done, "errors": errors, "seconds": seconds, "cpu": cpu}

    async def echo_all(
        self, echo_address: str, work: list[tuple[Key, str]], path: str
    ) -> dict[str, Any]:
        channel = grpc.aio.insecure_channel(echo_address)
        echo = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)
        # at most MAX_ECHO_STREAMS streams (a provider's messages go to stream i % that): past
        # ~1,000 echo streams in one process the bench's echo streams stall (not understood)
        count = min(len(self.keys), MAX_ECHO_STREAMS) if path == "stream" else 0
        channels = spread_channels(echo_address, count)
        echoes = [echo_stream(channels[i // STREAMS_PER_CONNECTION]) for i in range(count)]
        streams = {k.public_key: echoes[i % count] for i, k in enumerate(self.keys) if count}
        opened = [  # before the clock starts, by a first echo, as the market's were
            e.ask("Heartbeat", seal(self.keys[0], pb.Heartbeat(), market=self.market))
            for e in echoes
        ]
        await asyncio.wait_for(asyncio.gather(*opened), 120)
        sem = asyncio.Semaphore(self.in_flight)

        async def call(key: Key, order: str) -> None:
            async with sem:
                request = self._bid_request(key, order)
                if path == "stream":
                    await streams[key.public_key].ask("PlaceBid", request)
                else:
                    await echo(request.SerializeToString(), timeout=60)

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(call(k, o) for k, o in work))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        for stream in echoes:
            stream.close()
        for c in (channel, *channels):
            await c.close(grace=None)
        return {"ok": len(work), "errors": {}, "seconds": seconds, "cpu": cpu}


def worker_main(
    address: str, count: int, index: int, in_flight: int, inbox: Any, outbox: Any
) -> None:
    async def run() -> None:
        worker = Worker(address, count, index, in_flight)
        await worker.setup()
        running: set[asyncio.Task[Any]] = set()
        outbox.put(("ready", index))
        loop = asyncio.get_running_loop()
        while True:
            command, args = await loop.run_in_executor(None, inbox.get)
            if command == "stop":
                return
            if command == "open":
                await worker.open_streams()
                outbox.put(("open", None))
            elif command == "bid":
                orders, per_order, path = args
                result = await worker.bid_all(worker.bids_for(orders, per_order), path)
                outbox.put(("bid", result))
            elif command == "echo":
                echo_address, orders, per_order, path = args
                work = worker.bids_for(orders, per_order)
                outbox.put(("echo", await worker.echo_all(echo_address, work, path)))
            elif command == "burst":  # latency phase: bid on each order as it comes
                order, per_order, path = args
                work = worker.bids_for([order], per_order)
                task = asyncio.create_task(worker.bid_all(work, path))
                running.add(task)
                task.add_done_callback(running.discard)

    asyncio.run(run())


# --- the run ---------------------------------------------------------------------------------


def collect(outboxes: Any, kind: str, n: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    while len(results) < n:
        got, result = outboxes.get(timeout=600)
        if got == kind:
            results.append(result)
    return results


def summarize(results: list[dict[str, Any]]) -> tuple[int, float, dict[str, int]]:
    """Messages answered, the slowest worker's seconds, errors by status."""
    ok = sum(r["ok"] for r in results)
    seconds = max(r["seconds"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return ok, seconds, errors


def clients_cpu_us(results: list[dict[str, Any]]) -> float:
    """The workers' own CPU per message answered (signing, gRPC client): the same work in every
    phase, and on this box it shares the cores with the server."""
    return sum(r["cpu"] for r in results) * 1e6 / max(1, sum(r["ok"] for r in results))


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time a process (or one of its threads) has used (Linux /proc)."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_profile(proc: subprocess.Popen[bytes], path: Path) -> None:
    """Stop the server's profiler, wait for its dump, print the top 15 by own time."""
    path.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR2)
    wait_until(lambda: path.exists() and path.stat().st_size > 0, 30, "the profile")
    time.sleep(0.2)  # dump_stats writes in one go; let it finish
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(15)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=1000, help="e.g. 100, 1000, 5000")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--bids-per-order", type=int, default=50)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--latency-orders", type=int, default=150)
    parser.add_argument(
        "--rate", type=int, default=0, help="bids/s offered in phase 3 (0: half the throughput)"
    )
    parser.add_argument(
        "--paths",
        default="stream,unary",
        help="comma-separated: stream (Provider.Channel), unary (PlaceBid calls)",
    )
    parser.add_argument(
        "--in-flight", type=int, default=128, help="bids (or echoes) in flight per worker"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile the server during the first path's throughput phase; write the stats "
        "here and print the top 15 functions by own time",
    )
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if not paths or set(paths) - {"stream", "unary"}:
        parser.error("--paths: stream and/or unary")
    per_worker_bids = max(1, args.bids_per_order // args.workers)

    tmp = Path(tempfile.mkdtemp(prefix="bench-market-"))
    market_proc, address = start_market(tmp, args.profile)
    echoes = {verifying: start_echo(tmp, verifying) for verifying in (False, True)}
    ctx = mp.get_context("spawn")
    outbox = ctx.Queue()
    inboxes = [ctx.Queue() for _ in range(args.workers)]
    share = args.providers // args.workers
    procs = [
        ctx.Process(
            target=worker_main,
            args=(address, share, i, args.in_flight, inboxes[i], outbox),
            daemon=True,
        )
        for i in range(args.workers)
    ]
    try:
        for p in procs:
            p.start()
        collect(outbox, "ready", args.workers)
        print(
            f"{args.providers} providers registered in {args.workers} processes; server {address}"
        )
        if "stream" in paths:
            for inbox in inboxes:
                inbox.put(("open", None))
            collect(outbox, "open", args.workers)
            print(f"{args.providers} Provider.Channel streams open")

        admin = TenantClient(address, Key.from_pem((tmp / "market" / "admin.pem").read_bytes()))
        tenant_key = Key.generate()
        admin.fund(tenant_key.address, 10**7 * money.MICRO)
        tenant = TenantClient(address, tenant_key)

        first_rate = 0.0
        for path in paths:
            bids_per_s = measure_throughput(
                path,
                tenant,
                inboxes,
                outbox,
                args,
                per_worker_bids,
                market_proc,
                profile=args.profile if path == paths[0] else None,
            )
            for verifying, (echo_proc, echo_address) in echoes.items():
                echo_per_s = measure_echo(
                    path, echo_address, inboxes, outbox, args, per_worker_bids, echo_proc, verifying
                )
                kind = "verifying echo" if verifying else "echo"
                print(
                    f"{path:>6} ratio: bids/s ÷ {path} {kind}/s (same run) = "
                    f"{bids_per_s / echo_per_s:.2f}"
                )
            first_rate = first_rate or bids_per_s

        # 3. award latency under a steady offered load, on the first path
        if args.rate <= 0:
            args.rate = max(50, int(first_rate / 2))
        latencies = measure_latency(address, tenant, inboxes, args, per_worker_bids, paths[0])
        print(
            f"{paths[0]:>6} award latency after window close ({len(latencies)} orders, "
            f"{args.rate} bids/s offered): p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
        )
    finally:
        for inbox in inboxes:
            inbox.put(("stop", None))
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        market_proc.terminate()
        for echo_proc, _ in echoes.values():
            echo_proc.kill()
        market_proc.wait(20)


def measure_throughput(
    path: str,
    tenant: TenantClient,
    inboxes: list[Any],
    outbox: Any,
    args: Any,
    per_worker_bids: int,
    market_proc: subprocess.Popen[bytes],
    profile: Path | None,
) -> float:
    """1. bids/s on `path`, with the server's CPU per bid."""
    sdl_long = gpu_sdl(bid_window="5m", price=1_000_000)  # open for the whole phase
    orders = [tenant.create_deployment(sdl_long, DEPOSIT).order_ids[0] for _ in range(args.orders)]
    cpu0 = cpu_seconds(market_proc.pid)
    loop0 = cpu_seconds(market_proc.pid, market_proc.pid)  # the main thread runs the loop
    if profile:
        market_proc.send_signal(signal.SIGUSR1)
    for inbox in inboxes:
        inbox.put(("bid", (orders, per_worker_bids, path)))
    results = collect(outbox, "bid", len(inboxes))
    ok, seconds, errors = summarize(results)
    market_cpu = cpu_seconds(market_proc.pid) - cpu0
    loop_cpu = cpu_seconds(market_proc.pid, market_proc.pid) - loop0
    if profile:
        print_profile(market_proc, profile)
    bids_per_s = ok / seconds
    print(
        f"{path:>6} throughput: {ok} bids in {seconds:.2f} s = {bids_per_s:,.0f} bids/s"
        f"  errors {errors}"
    )
    print(
        f"{path:>6}   server CPU {market_cpu * 1e6 / max(ok, 1):,.0f} µs per bid "
        f"(= {ok / max(market_cpu, 1e-9):,.0f} bids per server CPU-second), of which "
        f"{loop_cpu * 1e6 / max(ok, 1):,.0f} µs on its event loop's thread; "
        f"clients {clients_cpu_us(results):,.0f} µs per bid"
    )
    return bids_per_s


def measure_echo(
    path: str,
    echo_address: str,
    inboxes: list[Any],
    outbox: Any,
    args: Any,
    per_worker_bids: int,
    echo_proc: subprocess.Popen[bytes],
    verifying: bool,
) -> float:
    """2. the same messages, the same way, to an echo server: the same-run baseline (and to
    one that also checks each message's signature, as the market must)."""
    orders = [f"echo-{i}" for i in range(args.orders)]
    kind = "verifying echo" if verifying else "echo"
    rates, cpu_per_message, clients = [], [], []
    for _ in range(ECHO_ROUNDS):  # each round is short (~1 s): the median of a few is steadier
        cpu0 = cpu_seconds(echo_proc.pid)
        for inbox in inboxes:
            inbox.put(("echo", (echo_address, orders, per_worker_bids, path)))
        results = collect(outbox, "echo", len(inboxes))
        eok, eseconds, _ = summarize(results)
        clients.append(clients_cpu_us(results))
        cpu_per_message.append((cpu_seconds(echo_proc.pid) - cpu0) * 1e6 / max(eok, 1))
        rates.append(eok / eseconds)
    echo_per_s = statistics.median(rates)
    shown_rates = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"{path:>6} baseline ({kind}): median {echo_per_s:,.0f}/s of {shown_rates}")
    print(
        f"{path:>6}   {kind} server CPU {statistics.median(cpu_per_message):,.0f} µs per message"
        f" (stream opening included); clients {statistics.median(clients):,.0f} µs per message"
    )
    return echo_per_s


def measure_latency(
    address: str,
    tenant: TenantClient,
    inboxes: list[Any],
    args: Any,
    per_worker_bids: int,
    path: str,
) -> list[float]:
    observer = ProviderClient(address, Key.generate(), timeout_s=30)
    observer.register(pb.RegisterProvider(host_uri="observer", inventory=pb.Inventory()))
    closes_at: dict[str, int] = {}
    closed_seen: dict[str, float] = {}
    wanted: set[str] = set()
    all_closed = threading.Event()

    def watch() -> None:
        for event in observer.watch_orders(0):
            now_ms = time.time() * 1000
            kind = event.WhichOneof("event")
            if kind == "order_opened":
                closes_at[event.order_opened.id] = event.order_opened.closes_at_ms
            elif kind == "order_closed" and event.order_closed in wanted:
                closed_seen[event.order_closed] = now_ms
                if len(closed_seen) == args.latency_orders:
                    all_closed.set()
                    return

    threading.Thread(target=watch, daemon=True).start()
    sdl = gpu_sdl(bid_window="1s", price=1_000_000)
    interval = args.bids_per_order / args.rate
    next_at = time.perf_counter()
    for _ in range(args.latency_orders):
        order = tenant.create_deployment(sdl, DEPOSIT).order_ids[0]
        wanted.add(order)
        for inbox in inboxes:
            inbox.put(("burst", (order, per_worker_bids, path)))
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    if not all_closed.wait(120):
        print(f"warning: only {len(closed_seen)} of {args.latency_orders} orders closed")
    out = [closed_seen[o] - closes_at[o] for o in closed_seen if o in closes_at]
    if os.environ.get("BENCH_VERBOSE"):
        print(" ".join(f"{x:.0f}" for x in out))
    return out


if __name__ == "__main__":
    main()
