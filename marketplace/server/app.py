"""The marketplace's running core: MarketService plus durability, deadlines, events and logs.

Everything here runs on one asyncio event loop, so MarketService (synchronous, not thread-safe)
sees one command at a time. A command runs like this:

1. call the core (it raises a MarketError, or returns a record);
2. turn the answer into its reply message at once (records go on changing afterwards);
3. drain the core's changes into SQLite rows and queue them for the committer;
4. wait until the committer has written them: nothing is acknowledged before it is durable.

The committer writes everything queued since its last write in one transaction, on a thread,
so commands arriving during an fsync share the next one (group commit). Events go out to
watchers only after the transaction holding them committed, so no one ever sees an event a
crash could take back. The ticker calls MarketService.tick() at next_deadline_ms().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeAlias, TypeVar

from marketplace.api import convert
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import limits
from marketplace.core.clock import Clock, SystemClock
from marketplace.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    MarketError,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from marketplace.core.events import DeploymentEventKind
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.provider_audit import InventoryHistory
from marketplace.core.state import Changes, DeploymentEvent, LeaseState, ProviderEvent
from marketplace.identity import ReplayGuard
from marketplace.server.relay import Relay
from marketplace.server.store_api import (
    Batch,
    Deposed,
    MarketStore,
    StoredLogLine,
    attestations_batch,
    changes_batch,
    inventory_reports_batch,
    logs_batch,
    nonces_batch,
)

log = logging.getLogger("gpumarket.market")

T = TypeVar("T")
R = TypeVar("R")
Item = TypeVar("Item")

# What a log stream's watcher receives: new lines, then "closed" once the lease closed.
LogItem: TypeAlias = StoredLogLine | Literal["closed"]

WATCH_QUEUE_LIMIT = 20_000  # events buffered for one slow watcher before it is cut off
MAX_LOG_LINES_PER_BATCH = limits.MAX_LOG_LINES_PER_BATCH
MAX_LOG_LINE_CHARS = limits.MAX_LOG_LINE_CHARS


class WatcherOverflow(Exception):
    """A watcher fell too far behind; it should reconnect with its resume token."""


@dataclass(eq=False)
class Watcher(Generic[Item]):
    """One open stream's inbox. None wakes a stream that fell behind, so it can end."""

    queue: asyncio.Queue[Item | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    def put(self, item: Item) -> None:
        if self.queue.qsize() >= WATCH_QUEUE_LIMIT:
            self.overflowed = True
            self.queue.put_nowait(None)  # wakes the stream so it can end
            return
        self.queue.put_nowait(item)

    async def get(self) -> Item | None:
        item = await self.queue.get()
        if self.overflowed:
            raise WatcherOverflow("too far behind: reconnect with your resume token")
        return item


Reply_co = TypeVar("Reply_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Submitted(Generic[Reply_co]):
    """A command that ran: its reply or refusal, and the write that makes it durable."""

    outcome: Reply_co | MarketError
    waiter: asyncio.Future[None] | None

    def durable(self) -> bool:
        return self.waiter is None or self.waiter.done()

    async def result(self) -> Reply_co:
        """The reply once durable (a refusal is raised then, as run() does)."""
        if self.waiter is not None and not self.waiter.done():
            await asyncio.shield(self.waiter)
        elif self.waiter is not None:
            self.waiter.result()  # raises what stopped the write
        if isinstance(self.outcome, MarketError):
            raise self.outcome
        return self.outcome


class MarketApp:
    def __init__(
        self,
        store: MarketStore,
        config: MarketConfig,
        clock: Clock | None = None,
        restart_grace_ms: int | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock or SystemClock()
        self.guard = self._load_guard()
        self.market = self._load()
        # every distinct inventory a provider reported, for `auditor verify` (provider_audit.py)
        self.inventory = InventoryHistory()
        self.inventory.restore(store.inventory_reports())
        self._restart_grace_ms = (
            config.heartbeat_timeout_ms if restart_grace_ms is None else restart_grace_ms
        )
        self._grant_restart_grace(self._restart_grace_ms)
        self.committed_seq = self.market.state.next_event_seq - 1
        # the last log line number of recently logging leases (bounded; others: the store's)
        self._log_seq: OrderedDict[str, int] = OrderedDict()
        # queued for the next transaction
        self._pending = Batch()
        self._pending_events: list[ProviderEvent | DeploymentEvent] = []
        self._pending_logs: list[StoredLogLine] = []
        self._pending_seq = self.committed_seq
        self._pending_drains = 0  # MarketService.drains when the pending batch was last added to
        self._pending_future: asyncio.Future[None] | None = None
        self._latest_future: asyncio.Future[None] | None = None
        self._wake_committer: asyncio.Event | None = None
        self._deadline_moved: asyncio.Event | None = None
        self._ticker_target: int | None = None
        self._recovering: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None
        # open streams
        self.provider_watchers: dict[str, set[Watcher[pb.ProviderEvent]]] = {}
        # deployment watchers get core events (a stream converts its own); provider events are
        # converted once here, as many providers watch the same broadcasts
        self.deployment_watchers: dict[str, set[Watcher[DeploymentEvent]]] = {}
        self.log_watchers: dict[str, set[Watcher[LogItem]]] = {}
        # told each command's changes once they are durable (logs and metrics: observe.py)
        self.observers: list[Callable[[Changes], None]] = []
        self._pending_changes: list[Changes] = []
        # tenant shells and copies, relayed over the providers' session streams (relay.py)
        self.relay = Relay(self)

    @property
    def market_id(self) -> str:
        """What every request signed for this marketplace names: its admin key's address."""
        return self.config.admin_address

    def _load_guard(self) -> ReplayGuard:
        """The replay guard, with the nonces accepted before a restart that are still fresh."""
        guard = ReplayGuard(self.clock)
        for seen in self.store.nonces_since(guard.cutoff_ms()):
            guard.remember(seen)
        return guard

    def _load(self) -> MarketService:
        # the store is also the market's archive: closed records are read back from it
        state = self.store.load(provider_events=self.config.provider_event_retention)
        market = MarketService(self.clock, self.config, state, self.store)
        market.attestations.restore(self.store.attestations())
        return market

    def _grant_restart_grace(self, grace_ms: int) -> None:
        """After a restart, give every provider marked online a full heartbeat timeout from now
        before declaring it lost: the marketplace, not the providers, was away. Billing of a
        provider that really died still stops at its last heartbeat (the core's rule)."""
        now = self.clock.now_ms()
        for prov in self.market.state.providers.values():
            # also those whose deadline falls within the grace: lost moments after the restart,
            # before their agents could reconnect, they would be the market's absence again
            deadline = prov.last_heartbeat_ms + self.config.heartbeat_timeout_ms
            if prov.online and deadline < now + grace_ms:
                self.market.grant_heartbeat_grace(prov.address, now + grace_ms)

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        # the grace again, from now: the server serves from here, and what came between loading
        # and serving (binding, a loaded box) must not eat into the time agents have to come back
        self._grant_restart_grace(self._restart_grace_ms)
        self._wake_committer = asyncio.Event()
        self._deadline_moved = asyncio.Event()
        self._recovering = asyncio.Event()
        self._recovering.set()  # set = not recovering
        self._tasks = [
            asyncio.create_task(self._committer(), name="committer"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]

    async def stop(self) -> None:
        """Write what is queued, then stop the background tasks."""
        with contextlib.suppress(Exception):
            await self.flush()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def flush(self) -> None:
        """Wait until everything queued so far is on disk."""
        if self._latest_future is not None and not self._latest_future.done():
            await asyncio.shield(self._latest_future)

    # --- commands ------------------------------------------------------------------------------
    async def run(self, command: Callable[[], T], reply: Callable[[T], R]) -> R:
        """Run one core command and return its reply once its changes are durable.

        A MarketError is raised again after the changes the core made before raising (due
        deadlines, a recorded decline) are durable too.
        """
        await self.ready()
        return await self.submit(command, reply).result()

    async def ready(self) -> None:
        """Return once the market takes commands (not while it reloads after a failure)."""
        assert self._recovering is not None
        if not self._recovering.is_set():
            await self._recovering.wait()

    def ready_now(self) -> bool:
        return self._recovering is not None and self._recovering.is_set()

    def submit(self, command: Callable[[], T], reply: Callable[[T], R]) -> Submitted[R]:
        """run() without the waiting: the command runs now (call after ready()); what it
        answers is to be had from the result once durable. Commands submitted one after another
        become durable (and answer) in that order: a stream pipelines them."""
        outcome: R | MarketError
        try:
            outcome = reply(command())
        except MarketError as exc:
            outcome = exc
        except Exception:
            log.exception("internal error in a market command; reloading the committed state")
            self.market.drain_changes()  # partial changes of a failed command: never written
            assert self._recovering is not None
            self._recovering.clear()
            self._enqueue(Batch(), [], [])
            raise
        changes = self.market.drain_changes()
        self._note_deadline()
        waiter = self._enqueue_changes(changes)
        if waiter is None and (self.guard.has_durable() or self._audit_rows_pending()):
            # a refused command: its nonce is spent; or only attestations/inventories changed
            waiter = self._enqueue(Batch(), [], [])
        return Submitted(outcome, waiter)

    async def append_logs(self, signer: str, batch: pb.LogBatch) -> int:
        """Store log lines a lease's provider sent; returns how many were kept."""
        return await self.submit_logs(signer, batch).result()

    def submit_logs(self, signer: str, batch: pb.LogBatch) -> Submitted[int]:
        """append_logs() without the waiting (see submit())."""
        lease = self.market.get_lease(batch.lease_id)
        if lease.provider != signer:
            raise PermissionDenied(f"lease {batch.lease_id} is not yours")
        if len(batch.lines) > MAX_LOG_LINES_PER_BATCH:
            raise InvalidArgument(
                f"{len(batch.lines)} log lines in one batch; send at most {MAX_LOG_LINES_PER_BATCH}"
            )
        now = self.clock.now_ms()
        for line in batch.lines:
            if line.stream and line.stream not in limits.LOG_STREAMS:
                streams = ", ".join(limits.LOG_STREAMS)
                raise InvalidArgument(
                    f"log stream {limits.shown(line.stream)}: use one of {streams}"
                )
            if line.time_ms:  # 0: not said, stamped now
                created = lease.created_at_ms
                limits.check_time("log line time_ms", line.time_ms, now, created, "its lease")
        seq = self._last_log_seq(lease.id)
        lines = []
        for line in batch.lines:
            seq += 1
            lines.append(
                StoredLogLine(
                    lease.id,
                    seq,
                    line.time_ms or now,
                    line.stream or "stdout",
                    limits.escape_log_line(line.line),  # control characters as visible text
                )
            )
        self._log_seq[lease.id] = seq
        if len(self._log_seq) > limits.LOG_SEQS_CACHED:
            self._log_seq.popitem(last=False)  # the least recently logging lease
        return Submitted(len(lines), self._enqueue(logs_batch(lines), [], lines))

    def _last_log_seq(self, lease_id: str) -> int:
        """The number of the lease's last log line: held, queued, or stored."""
        if lease_id in self._log_seq:
            self._log_seq.move_to_end(lease_id)
            return self._log_seq[lease_id]
        queued = [line.seq for line in self._pending_logs if line.lease_id == lease_id]
        stored = self.store.logs(lease_id, tail=1)
        return max([*queued, *(line.seq for line in stored), 0])

    def _audit_rows_pending(self) -> bool:
        return self.market.attestations.has_changes() or self.inventory.has_changes()

    # --- committing ----------------------------------------------------------------------------
    def _enqueue_changes(self, changes: Changes) -> asyncio.Future[None] | None:
        events: list[ProviderEvent | DeploymentEvent] = [
            *changes.deployment_events,
            *changes.provider_events,
        ]
        if changes:
            self._pending_changes.append(changes)
            return self._enqueue(changes_batch(changes), events, [])
        # nothing new from this command, but it may have read what is not yet durable
        return (
            self._latest_future if self._latest_future and not self._latest_future.done() else None
        )

    def _enqueue(
        self,
        batch: Batch,
        events: list[ProviderEvent | DeploymentEvent],
        lines: list[StoredLogLine],
    ) -> asyncio.Future[None]:
        if self._pending_future is None:
            self._pending_future = asyncio.get_running_loop().create_future()
            self._latest_future = self._pending_future
        if self._audit_rows_pending():  # rarely: a bid changes neither
            self._pending.extend(attestations_batch(self.market.attestations.take_changed()))
            self._pending.extend(inventory_reports_batch(self.inventory.take_changed()))
        self._pending.extend(batch)
        self._pending_events.extend(events)
        self._pending_logs.extend(lines)
        self._pending_seq = self.market.state.next_event_seq - 1
        self._pending_drains = self.market.drains
        assert self._wake_committer is not None
        self._wake_committer.set()
        return self._pending_future

    async def _committer(self) -> None:
        assert self._wake_committer is not None and self._recovering is not None
        while True:
            await self._wake_committer.wait()
            self._wake_committer.clear()
            if self._pending_future is None:
                continue
            batch, events, lines, future = (
                self._pending,
                self._pending_events,
                self._pending_logs,
                self._pending_future,
            )
            seq, drains = self._pending_seq, self._pending_drains
            committed, self._pending_changes = self._pending_changes, []
            self._pending, self._pending_events, self._pending_logs = Batch(), [], []
            self._pending_future = None
            # every nonce accepted so far goes in this transaction: with the commands it
            # authorised, or before them (one insert and one clean-up per transaction)
            guard = self.guard
            batch.extend(
                nonces_batch(guard.take_durable(), guard.cutoff_ms(), guard.take_settled())
            )
            try:
                await asyncio.to_thread(self.store.write, batch)
            except Exception as exc:  # the disk refused: memory is ahead of it, so stop
                self.failure = exc
                future.set_exception(self._write_refused(exc))
                future.exception()  # retrieved: waiters get it through shield
                if self.on_fatal is not None:
                    self.on_fatal(exc)
                return
            self.committed_seq = max(self.committed_seq, seq)
            if self._recovering.is_set():  # stored: what closed leaves memory (the core's rule)
                self.market.committed(drains)
            future.set_result(None)
            self._publish(events, lines)
            self._tell_observers(committed)
            if not self._recovering.is_set() and self._pending_future is None:
                self.market = self._load()
                self.committed_seq = self.market.state.next_event_seq - 1
                self._recovering.set()

    @staticmethod
    def _write_refused(exc: Exception) -> MarketError:
        """Log why a write failed, and what the commands waiting on it are told."""
        if isinstance(exc, Deposed):  # fenced: another server leads the shared store now
            log.error("deposed, stepping down: %s; this server commits nothing more", exc)
            return Unavailable(f"standby: not the leader ({exc})")
        log.exception("cannot write the market's state; stopping")
        return FailedPrecondition(f"the marketplace cannot store: {exc}")

    # --- deadlines -----------------------------------------------------------------------------
    def _note_deadline(self) -> None:
        deadline = self.market.next_deadline_ms()
        if deadline is not None and (self._ticker_target is None or deadline < self._ticker_target):
            assert self._deadline_moved is not None
            self._deadline_moved.set()

    async def _ticker(self) -> None:
        assert self._deadline_moved is not None
        while True:
            deadline = self.market.next_deadline_ms()
            self._ticker_target = deadline
            now = self.clock.now_ms()
            if deadline is not None and deadline <= now:
                try:
                    await self.run(self.market.tick, lambda _: None)
                except Exception:
                    log.exception("tick failed")
                continue
            timeout = None if deadline is None else (deadline - now) / 1000
            self._deadline_moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deadline_moved.wait(), timeout)

    # --- events --------------------------------------------------------------------------------
    def _publish(
        self, events: list[ProviderEvent | DeploymentEvent], lines: list[StoredLogLine]
    ) -> None:
        for event in events:
            if isinstance(event, ProviderEvent):
                self._publish_provider_event(event)
            else:
                self._publish_deployment_event(event)
        for line in lines:
            for w in self.log_watchers.get(line.lease_id, ()):
                w.put(line)

    def _tell_observers(self, committed: list[Changes]) -> None:
        for changes in committed:
            for observer in self.observers:
                try:
                    observer(changes)
                except Exception:  # an observer's fault must not stop the committer
                    log.exception("an observer of the market's changes failed")

    def _publish_deployment_event(self, event: DeploymentEvent) -> None:
        for w in self.deployment_watchers.get(event.deployment_id, ()):
            w.put(event)
        if event.kind == DeploymentEventKind.LEASE_CLOSED and event.lease_id:
            for log_watcher in self.log_watchers.get(event.lease_id, ()):
                log_watcher.put("closed")

    def _publish_provider_event(self, event: ProviderEvent) -> None:
        if event.provider:
            targets = self.provider_watchers.get(event.provider, ())
            if not targets:
                return
            message = convert.provider_event_to_proto(event)
            for w in targets:
                w.put(message)
            return
        if not self.provider_watchers:
            return
        message = convert.provider_event_to_proto(event)
        for watchers in self.provider_watchers.values():
            for w in watchers:
                w.put(message)

    def provider_snapshot(self, address: str) -> list[pb.ProviderEvent]:
        """For a watcher with no resume token: every open order, and its own open leases."""
        return [convert.provider_event_to_proto(e) for e in self.market.provider_snapshot(address)]

    def provider_leases(self, address: str) -> list[pb.ProviderEvent]:
        """A provider's open leases (lease_won, lease_updated; seq 0): what it reconciles with."""
        return [convert.provider_event_to_proto(e) for e in self.market.provider_leases(address)]

    def provider_backlog(
        self, address: str, after_seq: int, upto_seq: int
    ) -> list[pb.ProviderEvent]:
        if not self.market.provider_log_covers(after_seq):  # the token is older than the log
            snapshot = self.provider_snapshot(address)
            if snapshot:
                snapshot[-1].seq = upto_seq  # resuming from here misses nothing
            return snapshot
        out: list[pb.ProviderEvent] = []
        seq = after_seq
        while True:
            chunk = self.market.provider_events_after(address, seq, 1000)
            for event in chunk:
                if event.seq > upto_seq:
                    return out
                out.append(convert.provider_event_to_proto(event))
            if len(chunk) < 1000:
                return out
            seq = chunk[-1].seq

    def lease_closed(self, lease_id: str) -> bool:
        try:
            return self.market.get_lease(lease_id).state == LeaseState.CLOSED
        except NotFound:
            return True

    @staticmethod
    def subscribe(table: dict[str, set[Watcher[Item]]], key: str) -> Watcher[Item]:
        watcher: Watcher[Item] = Watcher()
        table.setdefault(key, set()).add(watcher)
        return watcher

    @staticmethod
    def unsubscribe(table: dict[str, set[Watcher[Item]]], key: str, watcher: Watcher[Item]) -> None:
        watchers = table.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del table[key]
