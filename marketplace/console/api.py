"""The console's JSON documents and live feeds, built on the typed gRPC clients.

Everything the browser sees is a plain dict made here: amounts come as text ("12.500000 act")
beside their micro-units as a decimal string (JavaScript numbers lose integers past 2^53), times
as epoch milliseconds. The key signs here, in this process; no document carries it.

Live data: `Feed` is one open gRPC stream (WatchDeployment, StreamLogs) that another thread may
cancel (the browser went away); `MarketSampler` reads the public market (Stats, ListProviders)
every few seconds, and the clearing prices' history from the market's own record
(GetPriceHistory: the last hour, by the minute), so the chart does not start with the console.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message

from marketplace.api import convert
from marketplace.api.client import (
    MarketClient,
    ProviderClient,
    ServiceClient,
    TenantClient,
    translate,
)
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.errors import InvalidArgument, MarketError, NotFound
from marketplace.core.limits import MAX_AMOUNT, MAX_MANIFEST_BYTES, check_address
from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.core.manifest.support import refuse_unmatchable
from marketplace.core.money import format_amount, parse_amount
from marketplace.core.state import acct_key
from marketplace.identity import Key

Reply = TypeVar("Reply", bound=Message)
Json = str | int | float | bool | None | list["Json"] | dict[str, "Json"]
Doc = dict[str, Json]

HOUR_MS = 3_600_000
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}")
PROVIDER_ROWS = 100  # providers listed in the market view (the counts cover all of them)
HISTORY_BUCKET_MS = 60_000  # the price chart's points: one per minute of the last hour
VALIDATE_TIMEOUT_S = 5.0
RELIABILITY_BUCKETS = (
    (0.0, "<.5"),
    (0.5, ".5–.8"),
    (0.8, ".8–.9"),
    (0.9, ".9–.95"),
    (0.95, ".95–.99"),
    (0.99, "≥.99"),
)


def checked_id(value: str, what: str) -> str:
    """An id from the browser, refused unless it looks like one of the market's ids."""
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{what}: not a valid id")
    return value


def money(micro: int) -> Doc:
    return {"micro": str(micro), "text": format_amount(micro)}


def parse_money(text: str, what: str) -> int:
    try:
        micro = parse_amount(text)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if not 0 < micro <= MAX_AMOUNT:
        raise InvalidArgument(
            f"{what}: must be more than 0 and at most {format_amount(MAX_AMOUNT)}"
        )
    return micro


# --- documents -----------------------------------------------------------------------------


def endpoint_doc(e: pb.Endpoint) -> Doc:
    host = e.host or "127.0.0.1"
    port = e.external_port or e.port
    url = e.uri or (f"http://{host}:{port}" if e.proto in ("", "tcp", "http") else "")
    return {
        "service": e.service,
        "port": e.port,
        "host": host,
        "external_port": port,
        "proto": e.proto or "tcp",
        "url": url,
    }


def lease_doc(x: pb.Lease) -> Doc:
    return {
        "id": x.id,
        "order_id": x.order_id,
        "deployment_id": x.deployment_id,
        "provider": x.provider,
        "tenant": x.tenant,
        "state": convert.lease_state_name(x.state),
        "close_reason": convert.close_reason_name(x.close_reason) or "",
        "tier": x.tier or "on-demand",  # spot: pre-emptible (core/spot.py)
        "price_per_hour": money(x.price_per_hour),
        "paid": money(x.paid),
        "created_at_ms": x.created_at_ms,
        "running_at_ms": x.running_at_ms,
        "closed_at_ms": x.closed_at_ms,
        "exit_code": x.exit_code,
        "message": x.message,
        "endpoints": [endpoint_doc(e) for e in x.endpoints],
    }


def bid_doc(b: pb.Bid, winner: pb.Bid | None = None, manual: bool = False) -> Doc:
    return {
        "id": b.id,
        "provider": b.provider,
        "price_per_hour": money(b.price_per_hour),
        "state": convert.bid_state_name(b.state),
        "reliability": round(b.reliability, 4),
        "gpus": list(b.offer.gpu_models),
        "region": b.offer.region,
        "why": bid_reason(b, winner, manual),
    }


def bid_reason(b: pb.Bid, winner: pb.Bid | None, manual: bool = False) -> str:
    """Why the bid won or lost, in the auction's terms (price first, then reliability)."""
    if b.state == pb.BID_WON:
        return "won: you accepted it" if manual else "won: lowest eligible price (then reliability)"
    if b.state == pb.BID_LOST and winner is not None:
        if manual:
            return "lost: you accepted another bid"
        if winner.price_per_hour < b.price_per_hour:
            return f"lost: {format_amount(winner.price_per_hour)}/h won, lower than this bid"
        return "lost: same price; the winner ranked first on reliability, then time"
    if b.state == pb.BID_LOST:
        return "lost"
    if b.state == pb.BID_OPEN:
        return "open: yours to accept" if manual else "open: the bid window is still running"
    if b.state == pb.BID_WITHDRAWN:
        return "withdrawn by the provider"
    return "closed: the order closed before a winner"


def order_doc(o: pb.Order) -> Doc:
    return {
        "id": o.id,
        "state": convert.order_state_name(o.state),
        "group": o.spec.name,
        "max_price_per_hour": money(o.spec.max_price_per_hour),
        "closes_at_ms": o.closes_at_ms,
        "manual": o.auction.manual,
    }


def explanation_doc(answer: pb.OrderExplanation) -> Doc:
    winner = next((b for b in answer.bids if b.state == pb.BID_WON), None)
    return {
        **order_doc(answer.order),
        "summary": answer.summary,
        "bids": [bid_doc(b, winner, answer.order.auction.manual) for b in answer.bids],
        "declines": [
            {
                "provider": d.provider,
                "reason": d.reason,
                "time_ms": d.time_ms,
                "by": "marketplace" if d.by_marketplace else "provider",
            }
            for d in answer.declines
        ],
    }


def deployment_doc(d: pb.Deployment) -> Doc:
    return {
        "id": d.id,
        "state": convert.deployment_state_name(d.state),
        "job_kind": d.job_kind,
        "escrow": money(d.escrow_balance),
        "deposited": money(d.deposited),
        "created_at_ms": d.created_at_ms,
        "closed_at_ms": d.closed_at_ms,
        "orders": len(d.order_ids),
        "leases": len(d.lease_ids),
        "manual": d.auction.manual,
    }


def event_doc(e: pb.DeploymentEvent) -> Doc:
    return {
        "seq": e.seq,
        "time_ms": e.time_ms,
        "kind": e.kind,
        "order_id": e.order_id,
        "bid_id": e.bid_id,
        "lease_id": e.lease_id,
        "message": e.message,
        "bid": bid_doc(e.bid) if e.HasField("bid") else None,
        "lease": lease_doc(e.lease) if e.HasField("lease") else None,
    }


def log_doc(line: pb.LogLine) -> Doc:
    return {"seq": line.seq, "time_ms": line.time_ms, "stream": line.stream, "line": line.line}


def account_doc(a: pb.Account) -> Doc:
    return {"address": a.address, "balance": money(a.balance), "escrowed": money(a.escrowed)}


def time_left(escrow: int, leases: list[pb.Lease]) -> Doc:
    """How long the escrow lasts at the running leases' prices (None: nothing is billing)."""
    burn = sum(x.price_per_hour for x in leases if x.state != pb.LEASE_CLOSED)
    if burn <= 0:
        return {"burn_per_hour": money(0), "ms": None}
    return {"burn_per_hour": money(burn), "ms": escrow * HOUR_MS // burn}


# --- live feeds ----------------------------------------------------------------------------


class Feed(Generic[Reply]):
    """One server stream: iterate for its messages; cancel() from any thread ends it."""

    def __init__(self, client: ServiceClient, method: str, message: Message, reply: type[Reply]):
        if client.key is None:
            raise InvalidArgument("the console has no key to sign with")
        service = pb.DESCRIPTOR.services_by_name[client.SERVICE]
        path = f"/{service.full_name}/{service.methods_by_name[method].name}"
        signed = seal(client.key, message, market=client.market_id)
        self._address = client.address
        self._reply = reply
        self._call = client.channel.unary_stream(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply.FromString,
        )(signed)
        # grpc-stubs leaves Call.cancel unannotated; this names what it is
        self.cancel: Callable[[], object] = self._call.cancel

    def __iter__(self) -> Iterator[Reply]:
        try:
            for answer in self._call:
                if isinstance(answer, self._reply):
                    yield answer
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise translate(exc, self._address) from None


# --- the public market, sampled ----------------------------------------------------------


@dataclass
class MarketSampler:
    """Reads Stats and ListProviders every `interval_s` on its own thread; the newest market
    document and its version wait in `latest()`; `wait_newer` blocks until one changes."""

    client: MarketClient
    interval_s: float = 2.0
    history_every_s: float = 10.0
    _doc: Doc = field(default_factory=dict)
    # a reading's version; random from the start, so a page from an earlier console is never
    # taken as up to date by this one (the page names its version to the live feed)
    _version: int = field(default_factory=lambda: secrets.randbelow(1 << 40))
    _history: list[Json] = field(default_factory=list)
    _last_history_ms: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: str = ""
    _providers: dict[str, pb.ProviderInfo] = field(default_factory=dict)
    _boot: tuple[int, bytes] = (-1, b"")  # the page's data block, made once per version

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="market-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling; returns once no read is in flight (the channels may close then)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()  # a read in flight ends within the client's timeout

    def latest(self) -> tuple[int, Doc]:
        with self._changed:
            return self._version, self._doc

    def boot_block(self) -> bytes:
        """The newest reading as the page's data block (b"": none yet), serialized once per
        version however many pages load it."""
        with self._changed:
            version, doc = self._version, self._doc
            if self._boot[0] == version:
                return self._boot[1]
        block = b""
        if doc:
            # no "<" in the data, so nothing in it can end the block (or open a comment)
            versioned = {**doc, "version": version}  # the live feed goes on from it
            data = json.dumps(versioned, separators=(",", ":")).replace("<", "\\u003c").encode()
            block = b'<script type="application/json" id="boot-market">' + data + b"</script>\n"
        with self._changed:
            if self._version == version:
                self._boot = (version, block)
        return block

    def provider(self, address: str) -> pb.ProviderInfo | None:
        """The provider as the latest reading listed it (None: not listed, or no reading)."""
        with self._changed:
            return self._providers.get(address)

    def wait_newer(self, version: int, timeout_s: float) -> tuple[int, Doc]:
        with self._changed:
            self._changed.wait_for(
                lambda: self._version != version or self._stop.is_set(), timeout_s
            )
            return self._version, self._doc

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        try:
            doc = self._read()
            error = ""
        except MarketError as exc:
            doc, error = dict(self._doc), str(exc)
        doc["error"] = error
        with self._changed:
            if doc != self._doc:
                self._doc = doc
                self._version += 1
                self._changed.notify_all()

    def _read(self) -> Doc:
        now = int(time.time() * 1000)
        stats = self.client.stats(since_ms=now - HOUR_MS)
        providers = self.client.list_providers()
        with self._changed:
            self._providers = {p.address: p for p in providers}
        prices: dict[str, Json] = {s.model: price_doc(s) for s in stats.gpu_prices}
        leases_hour = sum(s.samples for s in stats.gpu_prices)
        if not self._history or now - self._last_history_ms >= self.history_every_s * 1000:
            answer = self.client.price_history(now - HOUR_MS, HISTORY_BUCKET_MS)
            self._history = history_points(answer)
            self._last_history_ms = now
        return {
            "providers_online": stats.providers_online,
            "providers_known": len(providers),
            "open_orders": stats.open_orders,
            "running_leases": stats.running_leases,
            "leases_last_hour": leases_hour,
            "prices": prices,
            "history": self._history,
            **provider_summary(providers),
        }


def price_doc(s: pb.GpuPriceStats) -> Doc:
    return {
        "p10": s.p10,
        "median": s.median,
        "p90": s.p90,
        "samples": s.samples,
        "median_text": format_amount(s.median),
    }


def history_points(answer: pb.PriceHistory) -> list[Json]:
    """The chart's points: each bucket's prices per model, and its GPU leases as a rate per
    hour."""
    per_hour = HOUR_MS // max(answer.bucket_ms, 1)
    return [
        {
            "t": b.start_ms,
            "prices": {s.model: price_doc(s) for s in b.gpu_prices},
            "leases_hour": sum(s.samples for s in b.gpu_prices) * per_hour,
        }
        for b in answer.buckets
    ]


def provider_summary(providers: list[pb.ProviderInfo]) -> Doc:
    """Online providers' GPUs by model and region, reliability buckets, the top rows."""
    online = [p for p in providers if p.online]
    by_model: dict[str, dict[str, int]] = {}
    by_region: dict[str, dict[str, int]] = {}
    buckets = [0] * len(RELIABILITY_BUCKETS)
    for p in online:
        models = set()
        for g in p.inventory.gpus:
            row = by_model.setdefault(g.model, {"providers": 0, "gpus": 0, "healthy": 0, "free": 0})
            row["gpus"] += 1
            row["healthy"] += g.healthy
            row["free"] += g.healthy and not g.allocated
            models.add(g.model)
        for model in models:
            by_model[model]["providers"] += 1
        region = by_region.setdefault(p.region or "-", {"providers": 0, "gpus": 0})
        region["providers"] += 1
        region["gpus"] += len(p.inventory.gpus)
        buckets[
            max(i for i, (low, _) in enumerate(RELIABILITY_BUCKETS) if p.reliability >= low)
        ] += 1
    top = sorted(online, key=lambda p: (-p.reliability, p.address))[:PROVIDER_ROWS]
    return {
        "gpus_by_model": [{"model": m, **v} for m, v in sorted(by_model.items())],
        "by_region": [{"region": r, **v} for r, v in sorted(by_region.items())],
        "reliability": [
            {"range": name, "providers": n}
            for (_, name), n in zip(RELIABILITY_BUCKETS, buckets, strict=True)
        ],
        "providers": [provider_row(p) for p in top],
    }


def provider_row(p: pb.ProviderInfo) -> Doc:
    models: dict[str, int] = {}
    for g in p.inventory.gpus:
        models[g.model] = models.get(g.model, 0) + 1
    return {
        "address": p.address,
        "region": p.region,
        "gpus": ", ".join(f"{n}× {m}" for m, n in sorted(models.items())) or "CPU only",
        "reliability": round(p.reliability, 4),
        "leases_running": p.leases_running,
        "last_heartbeat_ms": p.last_heartbeat_ms,
        "online": p.online,
    }


# --- the console's calls ------------------------------------------------------------------


class ConsoleApi:
    """What the browser may ask, each a JSON document, signed with the console's key."""

    def __init__(
        self,
        tenant: TenantClient,
        market: MarketClient,
        key: Key,
        reports_dir: Path | None = None,
        refresh_s: float = 2.0,
        provider: ProviderClient | None = None,
    ) -> None:
        self.tenant = tenant
        self.market = market
        self.key = key
        self.refresh_s = refresh_s
        # the provider's own reads (telemetry, declines by kind) go over the market's channel
        self.own = provider or ProviderClient(market.address, key, grpc_channel=market.channel)
        self.reports = Reports(reports_dir)
        self.sampler = MarketSampler(market, interval_s=refresh_s)
        self._validator = ThreadPoolExecutor(max_workers=2, thread_name_prefix="validate")

    def start(self) -> None:
        self.sampler.start()

    def close(self) -> None:
        self.sampler.stop()
        self._validator.shutdown(wait=False, cancel_futures=True)
        self.tenant.close()
        self.own.close()
        self.market.close()

    # reads

    def session(self) -> Doc:
        return {"address": self.key.address, "market": self.tenant.address}

    def account(self) -> Doc:
        return account_doc(self.tenant.get_account())

    def deployments(self) -> Doc:
        deps = self.tenant.list_deployments()
        return {"deployments": [deployment_doc(d) for d in reversed(deps)]}

    def deployment(self, deployment_id: str) -> Doc:
        dep = self.tenant.get_deployment(checked_id(deployment_id, "deployment"))
        leases = [self.tenant.get_lease(x) for x in dep.lease_ids]
        orders: list[Json] = [explanation_doc(self.tenant.explain_order(o)) for o in dep.order_ids]
        return {
            "deployment": deployment_doc(dep),
            "orders": orders,
            "leases": [lease_doc(x) for x in reversed(leases)],
            "time_left": time_left(dep.escrow_balance, leases),
        }

    def validate(self, sdl: str) -> Doc:
        """The manifest's problems as the CLI prints them, parsed on a worker thread with a
        deadline (a slow parse holds no request thread past it)."""
        raw = sdl.encode()
        if len(raw) > MAX_MANIFEST_BYTES:
            return {
                "ok": False,
                "errors": [{"line": 0, "text": "larger than 1 MiB; not a manifest"}],
                "warnings": [],
            }
        try:
            return self._validator.submit(check_manifest, raw).result(VALIDATE_TIMEOUT_S)
        except FutureTimeout:
            raise InvalidArgument("the manifest took too long to check") from None

    # actions (each moves money or ends work: the page asks for confirmation first)

    def deploy(self, sdl: str, deposit: str, force: bool) -> Doc:
        raw = sdl.encode()
        checked = self.validate(sdl)
        if not checked["ok"] and not (force and checked.get("forceable")):
            errors = checked["errors"]
            first = (
                errors[0]["text"]
                if isinstance(errors, list) and isinstance(errors[0], dict)
                else ""
            )
            raise InvalidArgument(f"not a valid manifest: {first}")
        dep = self.tenant.create_deployment(raw, parse_money(deposit, "deposit"), force=force)
        return {"deployment": deployment_doc(dep)}

    def deposit(self, deployment_id: str, amount: str) -> Doc:
        dep = self.tenant.deposit(
            checked_id(deployment_id, "deployment"), parse_money(amount, "amount")
        )
        return {"deployment": deployment_doc(dep)}

    def close_deployment(self, deployment_id: str) -> Doc:
        """Close it; the refund is what the account got back (the escrow's rest)."""
        before = self.tenant.get_account().balance
        dep = self.tenant.close_deployment(checked_id(deployment_id, "deployment"))
        after = self.tenant.get_account()
        return {
            "deployment": deployment_doc(dep),
            "refund": money(after.balance - before),
            "account": account_doc(after),
        }

    def accept(self, bid_id: str) -> Doc:
        return {"lease": lease_doc(self.tenant.accept_bid(checked_id(bid_id, "bid")))}

    # live

    def watch(self, deployment_id: str, after_seq: int) -> Feed[pb.DeploymentEvent]:
        req = pb.WatchDeploymentRequest(
            deployment_id=checked_id(deployment_id, "deployment"), after_seq=max(0, after_seq)
        )
        return Feed(self.tenant, "WatchDeployment", req, pb.DeploymentEvent)

    def logs(self, lease_id: str, after_seq: int) -> Feed[pb.LogLine]:
        req = pb.StreamLogsRequest(
            lease_id=checked_id(lease_id, "lease"), follow=True, after_seq=max(0, after_seq)
        )
        return Feed(self.tenant, "StreamLogs", req, pb.LogLine)

    # the provider's own view

    def provider(self, address: str = "") -> Doc:
        """The console key's provider: GPUs with health and telemetry, declines by kind,
        leases, earnings ({"provider": None} when the key is no provider's). Another
        provider's `address` is refused by the market (PERMISSION_DENIED: its telemetry and
        declines are its own)."""
        if address and address != self.key.address:
            self.own.status(check_address("provider", address))  # raises PermissionDenied
        me = self.sampler.provider(self.key.address) or next(
            (p for p in self.market.list_providers() if p.address == self.key.address), None
        )
        if me is None:
            return {"provider": None}
        status = self.own.status()
        leases = [x for x in self.tenant.list_leases() if x.provider == self.key.address]
        mine = acct_key(self.key.address)
        entries = self.market.ledger()  # the console key's own entries
        earned = [e for e in entries if e.credit == mine and e.lease_id]
        by_lease: dict[str, int] = {}
        for e in earned:
            by_lease[e.lease_id] = by_lease.get(e.lease_id, 0) + e.amount
        return {
            "provider": provider_row(me),
            "gpus": gpu_rows(me.inventory.gpus, status),
            "telemetry_at_ms": status.received_at_ms,
            "declines": decline_rows(status),
            "declines_since_ms": status.declines_since_ms,
            "leases": [{**lease_doc(x), "earned": money(by_lease.get(x.id, 0))} for x in leases],
            "earned": money(sum(by_lease.values())),
        }


def gpu_rows(devices: Iterable[pb.GpuDevice], status: pb.ProviderStatus) -> list[Json]:
    """Each registered GPU with its latest telemetry (None where the agent sent none)."""
    readings = {g.index: g for g in status.gpus}
    rows: list[Json] = []
    for g in devices:
        t = readings.get(g.index)

        def field_of(name: str, t: pb.GpuTelemetry | None = t) -> int | None:
            return getattr(t, name) if t is not None and t.HasField(name) else None

        rows.append(
            {
                "index": g.index,
                "model": g.model,
                "name": g.name,
                "memory_gib": g.memory_mib // 1024,
                "healthy": t.healthy if t is not None else g.healthy,
                "health_reason": (t.health_reason if t is not None else g.health_reason),
                "allocated": g.allocated,
                "temperature_c": field_of("temperature_c"),
                "power_w": field_of("power_w"),
                "utilization_pct": field_of("utilization_pct"),
                "memory_used_mib": field_of("memory_used_mib"),
                "xid_count": t.xid_count if t is not None else None,
                "last_xid": field_of("last_xid"),
            }
        )
    return rows


def decline_rows(status: pb.ProviderStatus) -> list[Json]:
    return [
        {
            "kind": d.kind,
            "count": d.by_provider + d.by_marketplace,
            "by_provider": d.by_provider,
            "by_marketplace": d.by_marketplace,
            "last_reason": d.last_reason,
            "last_ms": d.last_ms,
        }
        for d in status.declines
    ]


def check_manifest(raw: bytes) -> Doc:
    """Parse an SDL as `gpumarket manifest validate` does: each problem "sdl:LINE: path: msg"."""
    try:
        manifest = parse_manifest(raw, "sdl")
    except ManifestError as exc:
        return {
            "ok": False,
            "errors": [{"line": e.line, "text": e.location_message} for e in exc.errors],
            "warnings": [],
        }
    warnings: list[Json] = [str(w) for w in manifest.warnings]
    try:
        refuse_unmatchable(manifest, "tick “deploy anyway”")
    except InvalidArgument as exc:
        return {
            "ok": False,
            "forceable": True,
            "errors": [{"line": 0, "text": str(exc)}],
            "warnings": warnings,
        }
    return {"ok": True, "errors": [], "warnings": warnings, "groups": len(manifest.groups)}


# --- simulation reports -------------------------------------------------------------------


class Reports:
    """The simulator's report folders under `root` (each holds metrics.json and PNG plots).
    Names come from the listing, never joined from what the browser sent."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def runs(self) -> dict[str, Path]:
        if self.root is None or not self.root.is_dir():
            return {}
        found = {}
        for metrics in sorted(self.root.glob("*/metrics.json")) + sorted(
            self.root.glob("metrics.json")
        ):
            run = metrics.parent
            found[run.name if run != self.root else self.root.name] = run
        return found

    def listing(self) -> Doc:
        return {"root": str(self.root or ""), "runs": list(self.runs())}

    def _run(self, name: str) -> Path:
        run = self.runs().get(name)
        if run is None:
            raise NotFound(f"no simulation report named {name!r}")
        return run

    def report(self, name: str) -> Doc:
        run = self._run(name)
        try:
            metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"{name}: metrics.json is unreadable ({exc})") from None
        return {
            "name": name,
            "metrics": flatten(metrics),
            "plots": list[Json](sorted(p.name for p in run.glob("*.png"))),
        }

    def plot(self, name: str, plot: str) -> bytes:
        run = self._run(name)
        if plot not in {p.name for p in run.glob("*.png")}:
            raise NotFound(f"no plot {plot!r} in {name}")
        return (run / plot).read_bytes()


def flatten(value: object, prefix: str = "") -> dict[str, Json]:
    """{"a": {"b": 1}} → {"a.b": 1}: scalars kept, lists shown as short JSON."""
    if isinstance(value, dict):
        out: dict[str, Json] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, str | int | float | bool) or value is None:
        return {prefix: value}
    return {prefix: json.dumps(value)[:200]}
