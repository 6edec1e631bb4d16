"""The provider daemon: one asyncio process.

  start:  offer no more CPU, memory or disk than the host has (provider_agent/host.py: a
          configured amount above it is lowered, with a warning); read the GPUs (print them,
          or say plainly there are none), re-adopt containers left running by a previous
          agent on the runtime it is given, serve metrics;
  loop:   register, heartbeat, watch orders (reconnect with backoff, resume from the last token);
          each watch starts with the market's list of our open leases, whatever the token: each
          one holds its room, and one with no containers here (won just before the agent was
          killed) is started; each open order goes to the bidder (provider_agent/bidder.py: one
          task per order, decide, reserve, price, bid or decline with a reason, release unless
          won); on a win fetch the manifest and run the lease;
  SIGTERM: stop bidding, heartbeat draining=true, leave containers running for re-adoption.

It sees only core types: provider_agent/link.py decodes the wire and raises core errors. The
composition root (`_main`) builds what reaches outside (the container runtime, the clock) and
hands them in. Blocking work (NVML, the runtime, price scripts) runs in threads; the loop only
coordinates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path

import click

from marketplace.core.clock import Clock, SystemClock
from marketplace.core.errors import MarketError, NotFound, Unavailable
from marketplace.core.matching import Allocation, Capacity, allocate
from marketplace.core.money import format_amount
from marketplace.core.provider_feed import (
    BidLost,
    FeedEvent,
    LeaseClosed,
    LeaseManifest,
    LeaseUpdated,
    LeaseWon,
    OrderClosed,
    OrderOpened,
)
from marketplace.core.resources import GroupSpec, Tier
from marketplace.core.state import CloseReason, Lease
from marketplace.identity import Key, config_dir, load_agent_key, load_key, load_or_create_key
from provider_agent.backoff import Backoff
from provider_agent.bidder import Bidder, Quoter
from provider_agent.config import EX_CONFIG, AgentConfig
from provider_agent.container import ConfigFailure, ContainerRuntime, LogLine, RuntimeFailure
from provider_agent.host import HostCapacity, fit_to_host, read_host
from provider_agent.ingress import Ingress, IngressLimits, IngressSite, RouteTable
from provider_agent.inventory import Inventory, Reservations, build_inventory
from provider_agent.link import MarketLink, TlsSettings
from provider_agent.metrics import AgentCounters, MetricsServer, render
from provider_agent.network import WILDCARDS, host_of_uri, publish_ip
from provider_agent.nvml import GpuMonitor, HostGpus, open_monitor
from provider_agent.runtime import DockerRuntime
from provider_agent.shell import ShellServer
from provider_agent.supervisor import LeaseSupervisor, StatusReport

log = logging.getLogger("provider_agent")


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


def fitted_to_host(cfg: AgentConfig, host: HostCapacity) -> tuple[AgentConfig, list[str]]:
    """`cfg` offering no more CPU, memory or disk than `host` has, and what was lowered."""
    resources, warnings = fit_to_host(cfg.resources, host)
    return replace(cfg, resources=resources), warnings


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


@dataclass(frozen=True)
class _Logs:
    """Log lines of one lease, on their way to the marketplace."""

    lease_id: str
    lines: tuple[LogLine, ...]
    delivered: Callable[[], None]  # the supervisor's log cursor moves on (a small file write)


def tls_settings(cfg: AgentConfig) -> TlsSettings | None:
    """The [marketplace] TLS keys as the link takes them; None: plaintext (loopback)."""
    m = cfg.marketplace
    if not m.uses_tls:
        return None
    cert = (m.tls_cert, m.tls_key) if m.tls_cert is not None and m.tls_key is not None else None
    return TlsSettings(ca=m.tls_ca, client_cert=cert)


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        key: Key,
        runtime: ContainerRuntime,
        clock: Clock,
        say: Callable[[str], None] = click.echo,
        host: HostCapacity | None = None,
    ) -> None:
        self.cfg = cfg
        self.host = host  # what the machine has; None: read it at start
        self.key = key
        self.runtime = runtime
        self.clock = clock
        self.say = say
        self.state = state_dir(cfg)
        self.counters = AgentCounters()
        self.reservations = Reservations()
        m = cfg.marketplace
        self.link = MarketLink(
            m.address, key, m.call_timeout_s, tls_settings(cfg), reconnect_max_s=m.reconnect_max_s
        )
        self.bidder = Bidder(
            Quoter.from_config(cfg, clock),
            self.link,
            self.reservations,
            inventory=self._inventory,
            running_leases=lambda: len(self._running()),
            counters=self.counters,
            say=say,
            limits=cfg.holds,
            auditors=lambda: self.link.audited,
        )
        self.monitor = monitor_for(cfg)
        # tenant shells and copies, asked for over a stream we open (no inbound port)
        self.shell = ShellServer(
            self.link, runtime, cfg.shell, self._running, cfg.marketplace.reconnect_max_s, say
        )
        self.inventory: Inventory | None = None
        self.supervisor: LeaseSupervisor | None = None
        self.metrics: MetricsServer | None = None
        self.ingress: Ingress | None = None
        self.draining = False
        self.connected = asyncio.Event()
        self.resume_token = self._load_token()
        self.heartbeat_s = 10.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stops: dict[str, asyncio.Task[None]] = {}  # leases being stopped, by id
        self._starting: set[str] = set()  # leases whose manifest is fetched or start runs
        self._preempting: set[str] = set()  # of those, the spot leases pre-empted
        self._outbox: asyncio.Queue[StatusReport | _Logs] = asyncio.Queue()
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
        machine = self.host
        if machine is None:
            machine = await asyncio.to_thread(read_host, self.state)
        self.cfg, warnings = fitted_to_host(self.cfg, machine)
        for warning in warnings:
            self.say(f"warning: {warning}")
        host = await asyncio.to_thread(self.monitor.start)
        self.inventory = build_inventory(host, self.cfg, self.state)
        self.say(f"provider {self.key.address}")
        for line in gpu_lines(host, self.inventory):
            self.say(line)
        self.say(self.inventory.summary)
        publish = publish_ip(self.cfg)
        self.supervisor = LeaseSupervisor(
            self.runtime,
            self.cfg.runtime,
            report=self._post,
            ship_logs=lambda lease, lines, done: self._post(_Logs(lease, tuple(lines), done)),
            public_host=self._public_host(publish),
            state_dir=self.state,
            publish_ip=publish,
            ingress=await self._start_ingress(),
        )
        adopted = await asyncio.to_thread(self.supervisor.adopt)
        for lease_id in adopted:
            self._hold_adopted(lease_id)
            tier, since_ms = self.supervisor.tier_of(lease_id)
            if tier == Tier.SPOT:  # pre-emptible as before the restart (its containers' labels)
                self.bidder.note_spot(lease_id, since_ms)
            self.say(f"re-adopted running {tier} lease {lease_id}")
        self.counters.leases_running = len(self.supervisor.running_leases())
        if self.cfg.metrics.enabled:
            m = self.cfg.metrics
            try:
                self.metrics = MetricsServer(m.bind, m.port, self._metrics_text)
            except OSError as exc:
                raise _bind_failure(
                    f"[metrics] {m.bind}:{m.port}",
                    exc,
                    "[metrics] bind",
                    "[metrics] port (0: any free port) or enabled = false",
                ) from None
            self.say(f"metrics on http://{m.bind}:{self.metrics.port}/metrics")

    def _public_host(self, publish: str) -> str:
        """The host tenants are told: host_uri's, else the publish address."""
        return host_of_uri(self.cfg.provider.host_uri) or (
            "127.0.0.1" if publish in WILDCARDS else publish
        )

    async def _start_ingress(self) -> IngressSite | None:
        """The HTTP ingress for every lease, when [ingress] listen is set. Raises RuntimeFailure
        when its port cannot be bound."""
        ic = self.cfg.ingress
        if not ic.enabled:
            return None
        routes = RouteTable()
        host, port = ic.listen_address
        limits = IngressLimits(idle_timeout_s=ic.idle_timeout_s, max_connections=ic.max_connections)
        self.ingress = Ingress(routes, host, port, limits)
        try:
            await self.ingress.start()
        except OSError as exc:
            what = f"[ingress] listen {ic.listen}"
            raise _bind_failure(what, exc, "[ingress] listen", "[ingress] listen") from None
        self.say(f"ingress on {ic.listen.rsplit(':', 1)[0]}:{self.ingress.port} for *.{ic.domain}")
        return IngressSite(routes, ic.domain, ic.public_port or self.ingress.port)

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
                storage_bytes=self.supervisor.storage_bytes(lease_id),
                gpu_models=(),
            ),
        )

    def _inventory(self) -> Inventory:
        assert self.inventory is not None, "read at start()"
        return self.inventory

    def _metrics_text(self) -> str:
        return render(self.monitor.status, self.counters)

    # --- main loop --------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        try:
            await self.start()
        except RuntimeFailure as exc:
            self.say(f"Error: {exc}")
            return EX_CONFIG if isinstance(exc, ConfigFailure) else 1
        workers = [
            asyncio.create_task(self._market_loop(), name="market"),
            asyncio.create_task(self._poll_loop(), name="nvml-poll"),
            asyncio.create_task(self._send_loop(), name="outbox"),
            asyncio.create_task(self.shell.run(), name="sessions"),
        ]
        await stop.wait()
        await self.shutdown(workers)
        return 0

    async def shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        """Stop bidding, tell the marketplace we drain, leave containers for re-adoption."""
        self.draining = True
        self.say("draining: no more bids; running containers are left for re-adoption")
        connected = self.connected.is_set()
        if connected:
            with contextlib.suppress(MarketError):
                await self.link.heartbeat(self.inventory, self._running(), draining=True)
        # a bid won after we are gone would leave a tenant waiting for a manifest timeout
        await self.bidder.stop(withdraw=connected)
        if self.supervisor is not None:
            await asyncio.to_thread(self.supervisor.close)
        await self._drain_outbox(timeout=3.0)
        await self.shell.close()
        for task in workers + list(self._tasks):
            task.cancel()
        await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
        if self.metrics is not None:
            self.metrics.close()
        if self.ingress is not None:
            await self.ingress.close()
        await asyncio.to_thread(self.monitor.close)
        await self.link.close()

    def _running(self) -> list[str]:
        return self.supervisor.running_leases() if self.supervisor else []

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
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

    async def _register(self) -> None:
        interval_ms = await self.link.register(
            self._inventory(), self.cfg.provider.host_uri, self.cfg.provider.region
        )
        if interval_ms:
            self.heartbeat_s = interval_ms / 1000

    async def _market_loop(self) -> None:
        backoff = Backoff(maximum=self.cfg.marketplace.reconnect_max_s)
        first = True
        while not self.draining:
            heartbeat: asyncio.Task[None] | None = None
            try:
                await self._register()
                self.connected.set()
                self.say(f"registered with the marketplace at {self.link.address}")
                heartbeat = asyncio.create_task(self._heartbeat_loop())
                async for event in self.link.watch(self.resume_token):
                    backoff.reset()
                    self._on_event(event)
                    if event.seq:
                        self.resume_token = event.seq
                        self._save_token()
                reason = "order stream ended"
            except MarketError as exc:
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
        while True:
            try:
                unknown = await self.link.heartbeat(self.inventory, self._running(), self.draining)
                await self._report_telemetry()
                for lease_id in unknown:
                    if lease_id in self._running():
                        if lease_id in self._stops:
                            continue  # being stopped already (e.g. pre-empted, with its grace)
                        self.say(f"lease {lease_id}: closed at the marketplace; stopping it")
                        self._stop_closed(lease_id, preempted=False)
            except NotFound as exc:  # the marketplace lost our registration: register again
                log.warning("heartbeat failed: %s", exc)
                with contextlib.suppress(MarketError):
                    await self._register()
                    self.say("registered again with the marketplace")
            except MarketError as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self.heartbeat_s)

    async def _report_telemetry(self) -> None:
        """The GPUs' newest readings, with each heartbeat (the poll loop re-reads them)."""
        if self.inventory is None or not self.inventory.gpus:
            return
        try:
            await self.link.report_telemetry(self.inventory, int(time.time() * 1000))
        except MarketError as exc:  # an older market without telemetry: heartbeats go on
            log.debug("telemetry report refused: %s", exc)

    # --- events -----------------------------------------------------------------------------------
    def _on_event(self, event: FeedEvent) -> None:
        match event:
            case OrderOpened(order=order):
                if not self.draining:
                    self.bidder.open(order)
            case OrderClosed(order_id=order_id):
                self.bidder.closed(order_id)
            case BidLost(bid=bid):
                self.bidder.lost(bid.order_id)
            case LeaseWon(lease=lease):
                self._on_lease(lease)
            case LeaseClosed(lease=lease):
                self._stop_closed(lease.id, lease.close_reason == CloseReason.PREEMPTED)
            case LeaseUpdated(lease=lease):
                if lease.id in self._running():
                    self._spawn(self._update_lease(lease), f"update-{lease.id}")

    def _on_lease(self, lease: Lease) -> None:
        """A lease of ours, won now or listed by the market at a (re)connect (the feed starts
        with every open lease of ours, whatever the resume token: one won just before the agent
        was killed, its event behind the saved token, is started all the same). Started once:
        one starting, or with containers here (re-adopted), is not started again."""
        if lease.id in self._starting or self._supervises(lease.id):
            self.bidder.note_tier(lease)  # a re-adopted lease: spot or not, say the market
            return
        preempted = self.bidder.won(lease)
        price = format_amount(lease.price_per_hour)
        self.say(f"won {lease.order_id} at {price}/h: lease {lease.id}")
        self._starting.add(lease.id)
        task = self._spawn(self._start_lease(lease, preempted), f"lease-{lease.id}")
        task.add_done_callback(lambda _: self._starting.discard(lease.id))

    def _supervises(self, lease_id: str) -> bool:
        return self.supervisor is not None and self.supervisor.knows(lease_id)

    def _stop_closed(self, lease_id: str, preempted: bool) -> asyncio.Task[None]:
        """Stop a closed lease (once); a pre-empted spot lease's containers get SIGTERM and
        preempt_grace_s to save their work before SIGKILL."""
        task = self._stops.get(lease_id)
        if task is not None:
            return task
        grace = None
        if preempted:
            grace = self.cfg.runtime.preempt_grace_s
            self.say(
                f"lease {lease_id}: pre-empted by an on-demand lease; SIGTERM, {grace} s grace"
            )
        task = self._spawn(self._stop_lease(lease_id, grace, preempted), f"stop-{lease_id}")
        self._stops[lease_id] = task
        if preempted:
            self._preempting.add(lease_id)
        task.add_done_callback(lambda _: self._stops.pop(lease_id, None))
        task.add_done_callback(lambda _: self._preempting.discard(lease_id))
        return task

    async def _start_lease(self, lease: Lease, preempted: tuple[str, ...] = ()) -> None:
        assert self.supervisor is not None
        # the spot leases our bid named stop first (core/spot.py), and any the market pre-empted
        # that are still stopping: after a restart the bid's names are not known here, and the
        # market closes the leases a winning bid pre-empts before it announces the win
        victims = [*preempted, *(v for v in sorted(self._preempting) if v not in preempted)]
        for victim in victims:
            if victim in self._stops or victim in self._running():
                # its failure to stop is the stop task's to log; this lease starts regardless
                await asyncio.gather(self._stop_closed(victim, True), return_exceptions=True)
        try:
            job = await self._manifest(lease)
        except MarketError as exc:
            self.say(f"lease {lease.id}: cannot get its manifest: {exc}")
            await self._outbox.put(
                StatusReport(lease.id, False, True, -1, message=f"manifest: {exc}")
            )
            return
        allocation = self._place(lease.id, job.group)
        if isinstance(allocation, str):
            self.bidder.start_failed(job.group, allocation)
            await self._outbox.put(StatusReport(lease.id, False, True, -1, message=allocation))
            return
        if victims:  # what the pre-empted leases held beyond this lease's needs is free now
            self.bidder.capacity_freed()
        self.say(f"lease {lease.id}: starting {', '.join(s for s, _ in _services(job.group))}")
        report = await asyncio.to_thread(
            self.supervisor.start_lease,
            lease.id,
            job.manifest,
            job.group,
            allocation,
            job.version,
            job.rendezvous,
            lease.created_at_ms,
        )
        if report.running:
            self.bidder.started(job.group)
            ports = ", ".join(e.uri for e in report.endpoints)
            self.say(f"lease {lease.id}: running" + (f" at {ports}" if ports else ""))
        else:
            self.bidder.start_failed(job.group, report.message)

    async def _manifest(self, lease: Lease) -> LeaseManifest:
        """The lease's manifest, asked for again (with backoff) while the marketplace is away
        or slow: a market restarting, or a standby taking over, is no reason to fail the
        tenant's lease. Raises what the market refused it with."""
        backoff = Backoff(initial=0.2, maximum=self.cfg.marketplace.reconnect_max_s)
        told = False
        while True:
            try:
                return await self.link.get_manifest(lease.id, lease.tenant)
            except Unavailable as exc:
                if not told:  # said once: it is asked until the market answers
                    self.say(f"lease {lease.id}: no manifest yet ({exc}); asking again")
                    told = True
                await asyncio.sleep(backoff.next())

    def _place(self, lease_id: str, group: GroupSpec) -> Allocation | str:
        """The lease's GPUs unit by unit, and what it holds. A won bid's reservation is that
        already; one held from the lease's record (won before a restart) names its GPUs but not
        their units, so the group is placed on them; with nothing held (an older market's
        lease), or should that fail, on what is free. Returns why not, when it fits nowhere."""
        key = f"lease:{lease_id}"
        held = self.reservations.held(key)
        if held is not None and (held.unit_gpus or not held.gpu_uuids):
            return held
        total = self._inventory().total
        got: Allocation | str = "nothing held"
        if held is not None:  # within what it holds
            mine = tuple(d for d in total.gpus if d.uuid in set(held.gpu_uuids))
            own = Capacity(held.cpu_millis, held.memory_bytes, held.storage_bytes, mine)
            got = allocate(group, own)
        if isinstance(got, str):
            got = allocate(group, self.reservations.free(total, ignoring=key))
        if not isinstance(got, str):
            self.reservations.hold(key, got)
        return got

    async def _update_lease(self, lease: Lease) -> None:
        """Fetch the lease's manifest again and run its new version (supervisor.update_lease)."""
        assert self.supervisor is not None
        try:
            job = await self._manifest(lease)
        except MarketError as exc:
            self.say(f"lease {lease.id}: cannot get its updated manifest: {exc}")
            return
        allocation = self.reservations.held(f"lease:{lease.id}")
        self.say(f"lease {lease.id}: updating to version {job.version}")
        report = await asyncio.to_thread(
            self.supervisor.update_lease,
            lease.id,
            job.manifest,
            job.group,
            allocation,
            job.version,
            job.rendezvous,
        )
        if report is not None:
            self.say(f"lease {lease.id}: {report.message}")

    async def _stop_lease(
        self, lease_id: str, grace_s: int | None = None, preempted: bool = False
    ) -> None:
        assert self.supervisor is not None
        await asyncio.to_thread(self.supervisor.stop_lease, lease_id, grace_s)
        self.reservations.release(f"lease:{lease_id}")
        self.bidder.lease_ended(lease_id)
        if not preempted:  # a pre-empted lease's room is the pre-empting lease's (it starts next)
            self.bidder.capacity_freed()
        self.counters.leases_running = len(self._running())
        self.say(f"lease {lease_id}: closed; containers removed")

    # --- reports from worker threads ----------------------------------------------------------
    def _post(self, item: StatusReport | _Logs) -> None:
        """Queue a report for the marketplace (called from the supervisor's threads)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, item)

    async def _send_loop(self) -> None:
        """Sends lease statuses and logs in order; retries while the marketplace is away."""
        while True:
            item = await self._outbox.get()
            backoff = Backoff(maximum=self.cfg.marketplace.reconnect_max_s)
            while True:
                try:
                    await self._send(item)
                    break
                except Unavailable:
                    await asyncio.sleep(backoff.next())
                except MarketError as exc:  # decided: sending it again would be refused again
                    kind = "logs" if isinstance(item, _Logs) else "status"
                    log.warning("marketplace refused a %s report: %s", kind, exc)
                    break
            if isinstance(item, _Logs):
                await asyncio.to_thread(item.delivered)
            self._outbox.task_done()

    async def _send(self, item: StatusReport | _Logs) -> None:
        if isinstance(item, _Logs):
            await self.link.report_logs(item.lease_id, item.lines)
            return
        self.counters.leases_running = len(self._running())
        if item.exited:
            self.reservations.release(f"lease:{item.lease_id}")
            self.say(f"lease {item.lease_id}: {item.message}")
        await self.link.report_status(item)
        if item.exited:  # the market counts the room free now too: orders waiting for it may bid
            self.bidder.capacity_freed()

    async def _drain_outbox(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), timeout)


def _services(group: GroupSpec) -> list[tuple[str, int]]:
    return [(s, u.count) for u in group.resources for s in u.services]


def provider_key(cfg: AgentConfig) -> Key:
    """The provider's key, as the config names it (an existing one: reads create none)."""
    name = cfg.provider.key
    if ("/" in name or name.endswith(".pem")) and not Path(name).is_file():
        raise NotFound(f"no key file {name} (the config's [provider] key)")
    return load_agent_key(name)


def _load_key(cfg: AgentConfig) -> Key:
    name = cfg.provider.key
    if "/" in name or name.endswith(".pem"):
        return load_key(name)
    return load_or_create_key(name)


def _bind_failure(what: str, exc: OSError, address_key: str, port_key: str) -> RuntimeFailure:
    """A port the config names could not be bound: an address this host lacks is the config's
    fault (exit 78); a port in use may free itself (exit 1, so a service manager retries)."""
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigFailure(f"{what}: not an address of this host; set {address_key}")
    return RuntimeFailure(f"{what}: {exc.strerror or exc}; set {port_key}")


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
    """The composition root: builds the runtime and the clock, and hands them to the agent."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def say(text: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {text}")

    try:
        runtime = await asyncio.to_thread(DockerRuntime.connect, key.address)
    except RuntimeFailure as exc:
        say(f"Error: {exc}")
        return 1
    try:
        code = await Agent(cfg, key, runtime, SystemClock(), say=say).run(stop)
    finally:
        runtime.close()
    sys.stdout.flush()
    return code


__all__ = ["Agent", "LogLine", "read_inventory", "run_agent"]
