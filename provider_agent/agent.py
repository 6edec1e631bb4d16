"""The provider daemon: one asyncio process.

  start:  read the GPUs (print them, or say plainly there are none), connect to Docker, re-adopt
          containers left running by a previous agent, serve metrics;
  loop:   register, heartbeat, watch orders (reconnect with backoff, resume from the last token),
          one task per open order: decide (marketplace/core/bidding.py), reserve, price, bid or
          decline with a reason; on a win fetch the manifest and run the lease; on loss, expiry,
          close or withdrawal release the reservation;
  SIGTERM: stop bidding, heartbeat draining=true, leave containers running for re-adoption.

Blocking work (NVML, Docker, price scripts) runs in threads; the loop only coordinates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import click

from marketplace.core.bidding import BidDecision, decide, with_price
from marketplace.core.clock import SystemClock
from marketplace.core.errors import MarketError
from marketplace.core.manifest import parse_manifest
from marketplace.core.matching import Allocation, allocate
from marketplace.core.money import format_amount
from marketplace.core.pricing import PricingError
from marketplace.core.resources import GroupSpec
from marketplace.identity import Key, config_dir, load_key, load_or_create_key
from provider_agent.config import AgentConfig
from provider_agent.inventory import Inventory, Reservations, build_inventory
from provider_agent.metrics import AgentCounters, MetricsServer, render
from provider_agent.nvml import GpuMonitor, HostGpus, open_monitor
from provider_agent.pricing_script import run_price_script
from provider_agent.runtime import DockerRuntime, LogLine, RuntimeFailure
from provider_agent.supervisor import LeaseSupervisor, StatusReport

log = logging.getLogger("provider_agent")
ORDER_GRACE_MS = 60_000  # keep a bid's reservation this long past the window before giving up


def state_dir(cfg: AgentConfig) -> Path:
    path = cfg.provider.state_dir or (config_dir() / "provider")
    path.mkdir(parents=True, exist_ok=True)
    return path


def monitor_for(cfg: AgentConfig) -> GpuMonitor:
    g = cfg.gpu
    return open_monitor(g.backend, g.replay_file, g.replay_load, g.xid_quarantine_s)


def read_inventory(cfg: AgentConfig) -> Inventory:
    """One NVML reading (no event thread) turned into what this box offers."""
    monitor = monitor_for(cfg)
    try:
        host = monitor.start(watch_xids=False)
    finally:
        monitor.close()
    return build_inventory(host, cfg, state_dir(cfg))


def quote_group(
    cfg: AgentConfig,
    inv: Inventory,
    group: GroupSpec,
    tenant: str,
    reservations: Reservations | None = None,
    running_leases: int = 0,
    closes_at_ms: int | None = None,
) -> BidDecision:
    """The bid decision for one group, priced by the configured strategy."""
    free = (reservations or Reservations()).free(inv.total)
    scale = cfg.pricing.scale if cfg.pricing.strategy == "scale" else None
    if cfg.pricing.strategy == "scale" and scale is None:
        return BidDecision(False, reason="no prices configured: set [pricing.scale] in the config")
    decision = decide(
        group,
        tenant,
        dict(inv.attributes),
        free,
        cfg.policy,
        scale,
        SystemClock().now_ms(),
        running_leases=running_leases,
        closes_at_ms=closes_at_ms,
    )
    if cfg.pricing.strategy != "script" or not decision.bid:
        return decision
    assert decision.allocation is not None
    try:
        price = run_price_script(
            cfg.pricing.script_command,
            group,
            decision.allocation,
            tenant,
            cfg.pricing.script_timeout_s,
        )
    except PricingError as exc:
        return replace(decision, bid=False, reason=str(exc))
    return with_price(decision, group, price)


def gpu_lines(host: HostGpus, inv: Inventory) -> list[str]:
    lines = []
    for g in inv.gpus:
        i = g.reading.info
        mem = f"{i.memory_mib} MiB" if i.memory_mib else "? MiB"
        state = "offered" if g.offered else f"not offered: {g.why_not}"
        lines.append(f"GPU {i.index}: {i.name} {i.uuid} {mem} CC {i.compute_capability} ({state})")
    if host.driver_version:
        lines.append(f"driver {host.driver_version}, CUDA {host.cuda_version}")
    return lines


class Backoff:
    """Exponential backoff with ±20 % jitter, reset after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.current = initial

    def next(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 1.6, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.initial


class Agent:
    def __init__(self, cfg: AgentConfig, key: Key, say: Callable[[str], None] = click.echo) -> None:
        from provider_agent.link import MarketLink

        self.cfg = cfg
        self.key = key
        self.say = say
        self.state = state_dir(cfg)
        self.counters = AgentCounters()
        self.reservations = Reservations()
        self.link = MarketLink(cfg.marketplace.address, key, cfg.marketplace.call_timeout_s)
        self.monitor = monitor_for(cfg)
        self.inventory: Inventory | None = None
        self.runtime: DockerRuntime | None = None
        self.supervisor: LeaseSupervisor | None = None
        self.metrics: MetricsServer | None = None
        self.draining = False
        self.connected = asyncio.Event()
        self.resume_token = self._load_token()
        self.heartbeat_s = 10.0
        self._orders: dict[str, asyncio.Task[None]] = {}
        self._open_bids: dict[str, str] = {}  # order id -> bid id, while the outcome is unknown
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- state on disk --------------------------------------------------------------------------
    def _token_path(self) -> Path:
        return self.state / "resume-token"

    def _load_token(self) -> int:
        try:
            return int(self._token_path().read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _save_token(self) -> None:
        tmp = self._token_path().with_suffix(".tmp")
        tmp.write_text(str(self.resume_token))
        os.replace(tmp, self._token_path())

    # --- startup --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host = await asyncio.to_thread(self.monitor.start)
        self.inventory = build_inventory(host, self.cfg, self.state)
        self.say(f"provider {self.key.address}")
        for line in gpu_lines(host, self.inventory):
            self.say(line)
        self.say(self.inventory.summary)
        self.runtime = await asyncio.to_thread(DockerRuntime.connect, self.key.address)
        self.supervisor = LeaseSupervisor(
            self.runtime,
            self.cfg.runtime,
            report=self._from_thread("status"),
            ship_logs=lambda lease, lines: self._from_thread("logs")((lease, lines)),
            public_host=self._public_host(),
            state_dir=self.state,
        )
        adopted = await asyncio.to_thread(self.supervisor.adopt)
        for lease_id in adopted:
            self._hold_adopted(lease_id)
            self.say(f"re-adopted running lease {lease_id}")
        self.counters.leases_running = len(self.supervisor.running_leases())
        if self.cfg.metrics.enabled:
            m = self.cfg.metrics
            self.metrics = MetricsServer(m.bind, m.port, self._metrics_text)
            self.say(f"metrics on http://{m.bind}:{self.metrics.port}/metrics")

    def _public_host(self) -> str:
        uri = self.cfg.provider.host_uri
        host = urlparse(uri if "//" in uri else f"//{uri}").hostname if uri else None
        return host or "127.0.0.1"

    def _hold_adopted(self, lease_id: str) -> None:
        assert self.supervisor is not None
        states = self.supervisor.containers(lease_id)
        uuids = tuple(u for s in states for u in s.gpu_uuids)
        self.reservations.hold(
            f"lease:{lease_id}",
            Allocation(
                gpu_uuids=uuids,
                cpu_millis=sum(s.cpu_millis for s in states),
                memory_bytes=sum(s.memory_bytes for s in states),
                storage_bytes=0,
                gpu_models=(),
            ),
        )

    def _metrics_text(self) -> str:
        return render(self.monitor.status, self.counters)

    # --- main loop --------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        try:
            await self.start()
        except RuntimeFailure as exc:
            self.say(f"Error: {exc}")
            return 1
        workers = [
            asyncio.create_task(self._market_loop(), name="market"),
            asyncio.create_task(self._poll_loop(), name="nvml-poll"),
            asyncio.create_task(self._send_loop(), name="outbox"),
        ]
        await stop.wait()
        await self.shutdown(workers)
        return 0

    async def shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        """Stop bidding, tell the marketplace we drain, leave containers for re-adoption."""
        self.draining = True
        self.say("draining: no more bids; running containers are left for re-adoption")
        for task in list(self._orders.values()):
            task.cancel()
        if self.connected.is_set():
            with contextlib.suppress(Exception):
                await self.link.heartbeat(self.inventory, self._running(), draining=True)
            # a bid won after we are gone would leave a tenant waiting for a manifest timeout
            for order_id, bid_id in list(self._open_bids.items()):
                with contextlib.suppress(Exception):
                    await self.link.withdraw_bid(bid_id)
                    self.say(f"withdrew bid on {order_id}")
        if self.supervisor is not None:
            await asyncio.to_thread(self.supervisor.close)
        await self._drain_outbox(timeout=3.0)
        for task in workers + list(self._tasks):
            task.cancel()
        await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
        if self.metrics is not None:
            self.metrics.close()
        await asyncio.to_thread(self.monitor.close)
        await self.link.close()
        if self.runtime is not None:
            self.runtime.close()

    def _running(self) -> list[str]:
        return self.supervisor.running_leases() if self.supervisor else []

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _poll_loop(self) -> None:
        """Re-read GPU health; say when a GPU stops or starts being offered."""
        before = (
            {g.reading.info.uuid: g.offered for g in self.inventory.gpus} if self.inventory else {}
        )
        while True:
            await asyncio.sleep(self.cfg.gpu.poll_interval_s)
            host = await asyncio.to_thread(self.monitor.poll)
            self.inventory = build_inventory(host, self.cfg, self.state)
            for g in self.inventory.gpus:
                uuid = g.reading.info.uuid
                if before.get(uuid, True) != g.offered:
                    self.say(
                        f"GPU {g.reading.info.index} {uuid}: "
                        + ("offered again" if g.offered else f"no longer offered: {g.why_not}")
                    )
                before[uuid] = g.offered

    async def _market_loop(self) -> None:
        from provider_agent.link import LinkError

        backoff = Backoff(maximum=self.cfg.marketplace.reconnect_max_s)
        first = True
        while not self.draining:
            heartbeat: asyncio.Task[None] | None = None
            try:
                assert self.inventory is not None
                resp = await self.link.register(
                    self.inventory, self.cfg.provider.host_uri, self.cfg.provider.region
                )
                if resp.heartbeat_interval_ms:
                    self.heartbeat_s = resp.heartbeat_interval_ms / 1000
                self.connected.set()
                self.say(f"registered with the marketplace at {self.link.address}")
                heartbeat = asyncio.create_task(self._heartbeat_loop())
                async for event in self.link.watch(self.resume_token):
                    backoff.reset()
                    await self._on_event(event)
                    if event.seq:
                        self.resume_token = event.seq
                        self._save_token()
                reason = "order stream ended"
            except LinkError as exc:
                reason = str(exc)
            finally:
                self.connected.clear()
                if heartbeat is not None:
                    heartbeat.cancel()
            if self.draining:
                break
            delay = backoff.next()
            if not first:
                self.counters.add("stream_reconnects")
            first = False
            self.say(f"marketplace unreachable ({reason}); retrying in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _heartbeat_loop(self) -> None:
        from provider_agent.link import LinkError

        while True:
            try:
                resp = await self.link.heartbeat(self.inventory, self._running(), self.draining)
                for lease_id in resp.unknown_lease_ids:
                    if lease_id in self._running():
                        self.say(f"lease {lease_id}: closed at the marketplace; stopping it")
                        self._spawn(self._stop_lease(lease_id), f"stop-{lease_id}")
            except LinkError as exc:
                log.warning("heartbeat failed: %s", exc)
                if exc.code == "NOT_FOUND":  # the marketplace lost our registration: register again
                    with contextlib.suppress(LinkError):
                        assert self.inventory is not None
                        await self.link.register(
                            self.inventory, self.cfg.provider.host_uri, self.cfg.provider.region
                        )
                        self.say("registered again with the marketplace")
            await asyncio.sleep(self.heartbeat_s)

    # --- events -----------------------------------------------------------------------------------
    async def _on_event(self, event: object) -> None:
        kind = event.WhichOneof("event")  # type: ignore[attr-defined]
        if kind == "order_opened":
            order = event.order_opened  # type: ignore[attr-defined]
            if not self.draining and order.id not in self._orders:
                task = self._spawn(self._bid(order), f"order-{order.id}")
                self._orders[order.id] = task
                task.add_done_callback(lambda _t, oid=order.id: self._orders.pop(oid, None))
        elif kind == "order_closed":
            self._release_order(event.order_closed)  # type: ignore[attr-defined]
        elif kind == "bid_lost":
            bid = event.bid_lost  # type: ignore[attr-defined]
            self.counters.add("bids_lost")
            if self._release_order(bid.order_id):
                self.say(f"bid on {bid.order_id} lost; reservation released")
        elif kind == "lease_won":
            lease = event.lease_won  # type: ignore[attr-defined]
            if lease.id in self._running():
                return  # replayed event for a lease we already run
            self.counters.add("bids_won")
            self._open_bids.pop(lease.order_id, None)
            self.reservations.move(f"order:{lease.order_id}", f"lease:{lease.id}")
            price = format_amount(lease.price_per_hour)
            self.say(f"won {lease.order_id} at {price}/h: lease {lease.id}")
            self._spawn(self._start_lease(lease), f"lease-{lease.id}")
        elif kind == "lease_closed":
            lease = event.lease_closed  # type: ignore[attr-defined]
            self._spawn(self._stop_lease(lease.id), f"stop-{lease.id}")

    def _release_order(self, order_id: str) -> bool:
        self._open_bids.pop(order_id, None)
        task = self._orders.pop(order_id, None)
        if task is not None and not task.done():
            task.cancel()
        return self.reservations.release(f"order:{order_id}")

    async def _bid(self, order: object) -> None:
        from provider_agent.link import LinkError, group_from_proto

        o = order  # pb.Order
        assert self.inventory is not None
        group = group_from_proto(o.spec)  # type: ignore[attr-defined]
        order_id: str = o.id  # type: ignore[attr-defined]
        closes = o.closes_at_ms or None  # type: ignore[attr-defined]
        scale = self.cfg.pricing.scale if self.cfg.pricing.strategy == "scale" else None
        decision = decide(
            group,
            o.owner,  # type: ignore[attr-defined]
            dict(self.inventory.attributes),
            self.reservations.free(self.inventory.total),
            self.cfg.policy,
            scale,
            SystemClock().now_ms(),
            running_leases=len(self._running()),
            closes_at_ms=closes,
        )
        if decision.bid and decision.allocation is not None:
            # reserve before pricing: no other order may take these GPUs meanwhile
            self.reservations.hold(f"order:{order_id}", decision.allocation)
            if self.cfg.pricing.strategy == "script":
                decision = await self._script_price(group, o.owner, decision)  # type: ignore[attr-defined]
        try:
            if not decision.bid:
                self.reservations.release(f"order:{order_id}")
                self.counters.add("orders_declined")
                self.say(f"decline {order_id}: {decision.reason}")
                await self.link.decline(order_id, decision.reason)
                return
            bid = await self._place_bid(order_id, decision, closes)
            self._open_bids[order_id] = bid.id
        except LinkError as exc:
            self.reservations.release(f"order:{order_id}")
            self.say(f"bid on {order_id} not placed: {exc.details or exc.code}")
            return
        self.counters.add("bids_placed")
        price = format_amount(decision.price_per_hour, group.denom)
        self.say(f"bid {price}/h on {order_id} ({decision.reason})")
        # Safety net: if no outcome ever arrives, free the reservation after the window.
        wait_ms = (closes - SystemClock().now_ms()) if closes else 300_000
        await asyncio.sleep(max(wait_ms + ORDER_GRACE_MS, 0) / 1000)
        self._open_bids.pop(order_id, None)
        if self.reservations.release(f"order:{order_id}"):
            self.say(f"bid on {order_id} expired without an outcome; reservation released")

    async def _place_bid(
        self, order_id: str, decision: BidDecision, closes_at_ms: int | None
    ) -> object:
        """Place the bid, retrying while the marketplace is briefly away (e.g. restarting).

        The order was already read off the stream, so a reconnect will not offer it again:
        giving up on the first UNAVAILABLE would lose it. Retry until its window (plus grace)
        has passed; a refusal (not transient) is final at once."""
        from provider_agent.link import LinkError

        backoff = Backoff(maximum=5.0)
        deadline_ms = (closes_at_ms or SystemClock().now_ms()) + ORDER_GRACE_MS
        while True:
            try:
                return await self.link.place_bid(order_id, decision, self.inventory)
            except LinkError as exc:
                late = SystemClock().now_ms() + backoff.current * 1000 > deadline_ms
                if not exc.transient or self.draining or late:
                    raise
                if backoff.current == backoff.initial:
                    self.say(f"bid on {order_id}: marketplace away ({exc.code}); retrying")
                await asyncio.sleep(backoff.next())

    async def _script_price(
        self, group: GroupSpec, tenant: str, decision: BidDecision
    ) -> BidDecision:
        assert decision.allocation is not None
        try:
            price = await asyncio.to_thread(
                run_price_script,
                self.cfg.pricing.script_command,
                group,
                decision.allocation,
                tenant,
                self.cfg.pricing.script_timeout_s,
            )
        except PricingError as exc:
            return replace(decision, bid=False, reason=str(exc))
        return with_price(decision, group, price)

    async def _start_lease(self, lease: object) -> None:
        from provider_agent.link import LinkError, manifest_problem

        lease_id: str = lease.id  # type: ignore[attr-defined]
        assert self.supervisor is not None and self.inventory is not None
        try:
            m = await self.link.get_manifest(lease_id)
            if problem := manifest_problem(m, lease.tenant):  # type: ignore[attr-defined]
                raise MarketError(f"refused: {problem}")
            manifest = parse_manifest(m.sdl, f"lease {lease_id}")
            group = manifest.group(m.group_name)
        except (LinkError, MarketError) as exc:
            self.say(f"lease {lease_id}: cannot get its manifest: {exc}")
            await self._outbox.put(
                ("status", StatusReport(lease_id, False, True, -1, message=f"manifest: {exc}"))
            )
            return
        allocation = self.reservations.held(f"lease:{lease_id}")
        if allocation is None:  # e.g. the agent restarted between bid and win
            got = allocate(group, self.reservations.free(self.inventory.total))
            if isinstance(got, str):
                await self._outbox.put(
                    ("status", StatusReport(lease_id, False, True, -1, message=got))
                )
                return
            allocation = got
            self.reservations.hold(f"lease:{lease_id}", allocation)
        self.say(
            f"lease {lease_id}: starting {', '.join(s for s, _ in _services(manifest, group))}"
        )
        report = await asyncio.to_thread(
            self.supervisor.start_lease, lease_id, manifest, group, allocation
        )
        if report.running:
            ports = ", ".join(e.uri for e in report.endpoints)
            self.say(f"lease {lease_id}: running" + (f" at {ports}" if ports else ""))

    async def _stop_lease(self, lease_id: str) -> None:
        assert self.supervisor is not None
        await asyncio.to_thread(self.supervisor.stop_lease, lease_id)
        self.reservations.release(f"lease:{lease_id}")
        self.counters.leases_running = len(self._running())
        self.say(f"lease {lease_id}: closed; containers removed")

    # --- reports from worker threads ----------------------------------------------------------
    def _from_thread(self, kind: str):  # type: ignore[no-untyped-def]
        def put(item: object) -> None:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._outbox.put_nowait, (kind, item))

        return put

    async def _send_loop(self) -> None:
        """Sends lease statuses and logs in order; retries while the marketplace is away."""
        from provider_agent.link import LinkError

        while True:
            kind, item = await self._outbox.get()
            backoff = Backoff(maximum=self.cfg.marketplace.reconnect_max_s)
            while True:
                try:
                    await self._send(kind, item)
                    break
                except LinkError as exc:
                    if not exc.transient:
                        log.warning("marketplace refused a %s report: %s", kind, exc)
                        break
                    await asyncio.sleep(backoff.next())
            self._outbox.task_done()

    async def _send(self, kind: str, item: object) -> None:
        if kind == "logs":
            lease_id, lines = item  # type: ignore[misc]
            await self.link.report_logs(lease_id, lines)
            return
        report: StatusReport = item  # type: ignore[assignment]
        self.counters.leases_running = len(self._running())
        if report.exited:
            self.reservations.release(f"lease:{report.lease_id}")
            self.say(f"lease {report.lease_id}: {report.message}")
        await self.link.report_status(report)

    async def _drain_outbox(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), timeout)


def _services(manifest: object, group: GroupSpec) -> list[tuple[str, int]]:
    return [(s, u.count) for u in group.resources for s in u.services]


def _load_key(cfg: AgentConfig) -> Key:
    name = cfg.provider.key
    if "/" in name or name.endswith(".pem"):
        return load_key(name)
    return load_or_create_key(name)


def run_agent(cfg: AgentConfig) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        key = _load_key(cfg)
    except (MarketError, OSError, ValueError) as exc:
        click.echo(f"Error: provider.key: {exc}", err=True)
        return 78
    return asyncio.run(_main(cfg, key))


async def _main(cfg: AgentConfig, key: Key) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = Agent(cfg, key, say=lambda text: click.echo(f"{time.strftime('%H:%M:%S')} {text}"))
    code = await agent.run(stop)
    sys.stdout.flush()
    return code


__all__ = ["Agent", "LogLine", "quote_group", "read_inventory", "run_agent"]
