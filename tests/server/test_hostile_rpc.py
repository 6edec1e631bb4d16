"""Every RPC of every service, hostile: a sweep driven by the proto's descriptors.

One real `gpumarket market serve` process (tests/server/market_process.py) holds a victim (a
tenant with a running lease on a provider's box, and an auction in its bid window) and an
attacker who owns records of its own (a tenant with a lease, a provider). Then every method the
proto names (unary, server-streaming, client-streaming and bidi) gets, as raw bytes on the wire:
garbage; an empty request; a payload of another message type; unsigned, forged, misdirected
(another market), stale and replayed envelopes; the victim's records named by an outsider; huge
strings, repeated fields past every limit, deeply nested and oversized payloads; and numbers at
their types' extremes in every numeric field, field by field and as hypothesis draws them from
the descriptor. Streams also get messages after a refusal, a half-closed stream and a flood.

Each answer must be a deliberate status (DELIBERATE; never UNKNOWN or INTERNAL) with a one-line
message; after each method the server log holds no traceback, health answers SERVING, and the
victim's records and balance are as before; at the end a normal deploy, bid and lease still
work and the ledger audit balances.

A method the table below does not know fails test_the_table_names_every_rpc: a new rpc is swept
from the day it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.api.client import MarketClient, ProviderClient, TenantClient
from marketplace.api.envelope import message_type, seal
from marketplace.api.status import MAX_DETAILS_BYTES
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import money
from marketplace.core.clock import Clock, SystemClock
from marketplace.core.errors import InvalidArgument
from marketplace.core.events import DeploymentEventKind
from marketplace.identity import Key
from marketplace.server.serve import MAX_MESSAGE_BYTES
from marketplace.server.testing import gpu_sdl, h100_inventory, provider_registration
from tests.server.market_process import MarketProcess

# The statuses a refusal may end with: each one a decision of the server, none a crash.
DELIBERATE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
# A refusal's message is one line, and short: never the hostile input echoed back whole.
MAX_DETAILS = MAX_DETAILS_BYTES

# The payload each SignedRequest rpc opens (the proto says it in comments only).
SIGNED_PAYLOAD: dict[str, type[Message]] = {
    "Tenant/GetAccount": pb.GetAccountRequest,
    "Tenant/Fund": pb.FundAccount,
    "Tenant/CreateDeployment": pb.CreateDeployment,
    "Tenant/GetDeployment": pb.GetRequest,
    "Tenant/ListDeployments": pb.ListRequest,
    "Tenant/CloseDeployment": pb.CloseDeployment,
    "Tenant/Deposit": pb.DepositEscrow,
    "Tenant/GetOrder": pb.GetRequest,
    "Tenant/ListOrders": pb.ListRequest,
    "Tenant/ListBids": pb.ListBidsRequest,
    "Tenant/ExplainOrder": pb.GetRequest,
    "Tenant/AcceptBid": pb.AcceptBid,
    "Tenant/GetLease": pb.GetRequest,
    "Tenant/ListLeases": pb.ListRequest,
    "Tenant/CloseLease": pb.CloseLease,
    "Tenant/WatchDeployment": pb.WatchDeploymentRequest,
    "Tenant/StreamLogs": pb.StreamLogsRequest,
    "Tenant/UpdateDeployment": pb.UpdateDeployment,
    "Provider/Register": pb.RegisterProvider,
    "Provider/Heartbeat": pb.Heartbeat,
    "Provider/WatchOrders": pb.WatchOrders,
    "Provider/PlaceBid": pb.PlaceBid,
    "Provider/WithdrawBid": pb.WithdrawBid,
    "Provider/DeclineOrder": pb.DeclineOrder,
    "Provider/GetManifest": pb.GetManifest,
    "Provider/ReportLeaseStatus": pb.LeaseStatusReport,
    "Provider/ReportLogs": pb.LogBatch,
    "Provider/CloseLease": pb.CloseLease,
    "Provider/Sessions": pb.SessionsOpen,
    "Provider/ReportTelemetry": pb.TelemetryReport,
    "Provider/GetProviderStatus": pb.ProviderStatusRequest,
    "Market/Audit": pb.AuditRequest,
    "Market/ListLedger": pb.ListRequest,
    "Market/PriceAdvice": pb.PriceAdviceRequest,
    "Auditor/SignProviderAttributes": pb.SignProviderAttributes,
    "Auditor/RevokeProviderAttributes": pb.RevokeProviderAttributes,
}
# Client-streaming rpcs whose first frame carries a SignedRequest (ShellFrame.open) of this type.
OPENED_BY_FRAME: dict[str, type[Message]] = {
    "Tenant/Shell": pb.ShellOpen,
    "Provider/SessionIO": pb.SessionAccept,
}
CHANNEL = "Provider/Channel"  # ProviderMessages, each naming a Provider rpc and its request
VICTIM_LOG_LINE = "victim's secret: hunter2"  # only the victim (and its provider) may read it
# Who signs a method's requests in the attacker's own name: its role there.
ADMIN_METHODS = frozenset({"Tenant/Fund", "Market/Audit"})


def all_methods() -> list[MethodDescriptor]:
    return [m for service in pb.DESCRIPTOR.services_by_name.values() for m in service.methods]


def rpc(method: MethodDescriptor) -> str:
    return f"{method.containing_service.name}/{method.name}"


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


METHODS = {rpc(m): m for m in all_methods()}
PUBLIC = sorted(
    name
    for name, m in METHODS.items()
    if m.input_type.full_name != pb.SignedRequest.DESCRIPTOR.full_name and not m.client_streaming
)


def test_the_table_names_every_rpc() -> None:
    known = {*SIGNED_PAYLOAD, *OPENED_BY_FRAME, CHANNEL, *PUBLIC}
    assert set(METHODS) == known, f"new rpcs to add to SIGNED_PAYLOAD: {set(METHODS) - known}"
    for name in SIGNED_PAYLOAD:
        assert METHODS[name].input_type.full_name == pb.SignedRequest.DESCRIPTOR.full_name


# --- the market under attack ------------------------------------------------------------------


@dataclass
class World:
    server: MarketProcess
    keys: dict[str, Key]
    market_id: str
    ids: dict[str, str] = field(default_factory=dict)  # victim's and attacker's record ids

    def key_for(self, name: str, own: bool) -> Key:
        """The key that signs `name` in the attacker's own right (own) or as an outsider."""
        if own and name in ADMIN_METHODS:
            return self.keys["admin"]
        provider_side = name.startswith("Provider/") or name.startswith("Auditor/")
        return self.keys["q" if provider_side else "mallory"]

    def victim_view(self) -> tuple[object, ...]:
        """What the victim would notice: its balance, deployments, lease, bid, logs and box."""
        alice = TenantClient(self.server.address, self.keys["alice"])
        as_p = TenantClient(self.server.address, self.keys["p"])
        deps = tuple(
            (d.id, d.state, d.deposited, d.version, d.auto_top_up, tuple(d.lease_ids))
            for d in alice.list_deployments()
        )
        lease = alice.get_lease(self.ids["lease"])
        bids = tuple((b.id, b.state, b.price_per_hour) for b in as_p.list_bids(self.ids["order"]))
        logs = tuple(line.line for line in alice.stream_logs(self.ids["lease"]))
        box = ProviderClient(self.server.address, self.keys["p"]).status()
        listed = MarketClient(self.server.address).list_providers()
        (p,) = [
            (x.host_uri, x.region, len(x.attributes))
            for x in listed
            if x.address == self.ids["provider"]
        ]
        return (
            p,
            alice.get_account().balance,
            deps,
            (lease.state, lease.price_per_hour, lease.provider),
            bids,
            logs,
            len(box.gpus),
        )


def _lease_of(tenant: TenantClient, dep_id: str) -> str:
    for event in tenant.watch_deployment(dep_id):
        if event.kind == DeploymentEventKind.LEASE_CREATED:
            return str(event.lease_id)
    raise AssertionError(f"no lease for {dep_id}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    keys = {name: Key.generate() for name in ("alice", "mallory", "p", "q")}
    # the victim's provider does not heartbeat during the sweep: its lease must not time out;
    # q is an auditor too, so that its signed attributes reach the checks behind the envelope
    server = MarketProcess.start(
        tmp_path_factory.mktemp("hostile") / "market",
        "--heartbeat-timeout",
        "3600",
        "--auditor",
        keys["q"].address,
    )
    try:
        keys["admin"] = server.admin
        w = World(server, keys, server.admin.address)
        faucet = TenantClient(server.address, server.admin)
        for name in ("alice", "mallory"):
            faucet.fund(keys[name].address, 100 * money.MICRO)
        for name in ("p", "q"):
            ProviderClient(server.address, keys[name]).register(provider_registration(name))
        alice = TenantClient(server.address, keys["alice"])
        mallory = TenantClient(server.address, keys["mallory"])
        p = ProviderClient(server.address, keys["p"])
        q = ProviderClient(server.address, keys["q"])
        for tenant, provider, who in ((alice, p, ""), (mallory, q, "own_")):
            dep = tenant.create_deployment(gpu_sdl(bid_window="300ms"), money.MICRO)
            provider.place_bid(dep.order_ids[0], 500_000)
            lease = _lease_of(tenant, dep.id)
            provider.report_status(pb.LeaseStatusReport(lease_id=lease, state=pb.LEASE_RUNNING))
            line = VICTIM_LOG_LINE if who == "" else "step 1"
            provider.report_logs(lease, [pb.LogLine(line=line)])
            w.ids[who + "dep"], w.ids[who + "lease"] = dep.id, lease
        # manual: no winner is picked for 10 minutes, far past the sweep, so the auction's
        # close never reads as a change to the victim
        manual = gpu_sdl(bid_window="5m", extra=", manual: true")
        sealed = alice.create_deployment(manual, money.MICRO)
        w.ids["order"] = sealed.order_ids[0]
        w.ids["bid"] = p.place_bid(w.ids["order"], 400_000).id
        w.ids["tenant"], w.ids["provider"] = keys["alice"].address, keys["p"].address
        w.ids["own_tenant"], w.ids["own_provider"] = keys["mallory"].address, keys["q"].address
        own = mallory.create_deployment(gpu_sdl(bid_window="5m"), money.MICRO)
        w.ids["own_order"] = own.order_ids[0]
        w.ids["own_bid"] = q.place_bid(w.ids["own_order"], 400_000).id
        w.ids["own_open_dep"] = own.id  # in its bid window: UpdateDeployment's
        w.ids["own_unbid_order"] = mallory.create_deployment(
            gpu_sdl(bid_window="5m"), money.MICRO
        ).order_ids[0]  # PlaceBid's
        yield w
    finally:
        server.stop()


# --- calls on the wire ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    replies: int = 0
    body: bytes = b""  # the replies' bytes, one after the other


STREAM_WAIT_S = 1.0  # a server stream that stays open (a watch) is cut by the client then
UNARY_WAIT_S = 20.0  # generous: under load a refusal may take a while, never this long


def call(channel: grpc.Channel, method: MethodDescriptor, body: bytes, wait_s: float) -> Outcome:
    """Send `body` as the request's bytes; the status it ends with, and what came back."""
    p = path(method)
    try:
        if method.client_streaming:
            stream = channel.stream_stream(p, request_serializer=None, response_deserializer=None)(
                iter([body]), timeout=wait_s
            )
            replies = list(stream)
            return Outcome(grpc.StatusCode.OK, "", len(replies), b"".join(replies))
        if method.server_streaming:
            stream = channel.unary_stream(p, request_serializer=None, response_deserializer=None)(
                body, timeout=wait_s
            )
            replies = []
            try:
                replies.extend(stream)
            except grpc.RpcError as exc:  # a watch's open end: what came before it counts
                cut = isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                if not (cut and replies):
                    raise
            return Outcome(grpc.StatusCode.OK, "", len(replies), b"".join(replies))
        reply = channel.unary_unary(p, request_serializer=None, response_deserializer=None)(
            body, timeout=wait_s
        )
        return Outcome(grpc.StatusCode.OK, "", 1, reply)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return Outcome(exc.code(), exc.details() or "")


def assert_deliberate(
    case: str,
    outcome: Outcome,
    *,
    expect: grpc.StatusCode | None = None,
    streaming: bool = False,
) -> None:
    code, details = outcome.code, outcome.details
    if expect is not None:
        assert code == expect, f"{case}: {code.name} ({details!r}), not {expect.name}"
    if code == grpc.StatusCode.OK:
        return
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and streaming:
        return  # the client's own deadline: a watch that legitimately stays open, silent
    assert code in DELIBERATE, f"{case}: {code.name} {details!r}"
    assert details and "\n" not in details, f"{case}: {code.name} message {details!r}"
    size = len(details.encode())
    assert size <= MAX_DETAILS, f"{case}: {code.name} message of {size:,} bytes"


# --- requests: generated from the descriptor -----------------------------------------------------

INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.CPPTYPE_ENUM: (-(2**31), 2**31 - 1),
}
HUGE = "h" * 200_000  # past every string limit, well under the message limit
WIDE = "\u2603" * 70_000  # 210 KB of 3-byte characters: 9 bytes each once percent-encoded
PAST_LIMIT = 10_001  # items: past every repeated field's limit (limits.py: at most 10,000)


def descriptor_of(message: Message | type[Message]) -> Descriptor:
    """A message's descriptor (the stubs type it as either protobuf implementation's)."""
    return cast(Descriptor, message.DESCRIPTOR)


def submessage(f: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    assert f.message_type is not None, f.full_name
    return f.message_type


def is_map(f: FieldDescriptor) -> bool:
    return bool(submessage(f).GetOptions().map_entry)


def leaf_field(descriptor: Descriptor, names: tuple[str, ...]) -> FieldDescriptor:
    """The field at `names` (field names from `descriptor` down)."""
    for name in names[:-1]:
        descriptor = submessage(descriptor.fields_by_name[name])
    return descriptor.fields_by_name[names[-1]]


def is_repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def extremes(f: FieldDescriptor) -> list[object]:
    if f.cpp_type in INT_RANGES:
        low, high = INT_RANGES[f.cpp_type]
        edges = {low, low + 1, -1, 0, 1, high - 1, high}
        return [v for v in sorted(edges) if low <= v <= high]
    if f.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return [float("nan"), float("inf"), -float("inf"), -1.0, 1e308]
    return []


def numeric_paths(
    descriptor: Descriptor, prefix: tuple[str, ...] = (), depth: int = 0
) -> Iterator[tuple[str, ...]]:
    """Every numeric field, nested ones too (by field names from the top)."""
    for f in descriptor.fields:
        if extremes(f):
            yield (*prefix, f.name)
        elif f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and depth < 3:
            yield from numeric_paths(submessage(f), (*prefix, f.name), depth + 1)


def set_path(message: Message, names: tuple[str, ...], value: object) -> None:
    """Set the field at `names` (in every element of a repeated message on the way; a list
    that is empty gets one)."""
    head, *rest = names
    f = descriptor_of(message).fields_by_name[head]
    if not rest:
        if is_repeated(f):
            getattr(message, head).append(value)
        else:
            setattr(message, head, value)
        return
    if is_map(f):
        return
    if is_repeated(f):
        items = getattr(message, head)
        for child in list(items) or [items.add()]:
            set_path(child, tuple(rest), value)
    else:
        set_path(getattr(message, head), tuple(rest), value)


def fill_strings(message: Message, value: Callable[[FieldDescriptor], str], depth: int = 0) -> None:
    """Every string field set to value(field): top-level ones, and those of submessages
    already set (to three levels)."""
    for f in descriptor_of(message).fields:
        if f.cpp_type == FieldDescriptor.CPPTYPE_STRING and f.type == FieldDescriptor.TYPE_STRING:
            if is_repeated(f):
                getattr(message, f.name).append(value(f))
            else:
                setattr(message, f.name, value(f))
        elif f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and depth < 3:
            if is_map(f):
                continue
            if is_repeated(f):
                for child in getattr(message, f.name):
                    fill_strings(child, value, depth + 1)
            elif message.HasField(f.name):
                fill_strings(getattr(message, f.name), value, depth + 1)


def past_limits(message: Message, depth: int = 0) -> Message:
    """Every repeated field (in submessages already set too) made PAST_LIMIT items long, with
    copies of its first item (a default one, a short string, a 1 for an empty list)."""
    for f in descriptor_of(message).fields:
        if f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and not is_repeated(f):
            if depth < 3 and message.HasField(f.name):
                past_limits(getattr(message, f.name), depth + 1)
            continue
        if not is_repeated(f):
            continue
        items = getattr(message, f.name)
        if f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            if is_map(f):
                for i in range(PAST_LIMIT):
                    items[str(i)]
                continue
            first = items[0] if len(items) else items.add()
            for _ in range(PAST_LIMIT - len(items)):
                items.add().CopyFrom(first)
            continue
        if f.cpp_type == FieldDescriptor.CPPTYPE_STRING:
            fill: object = items[0] if len(items) else "x"
        elif f.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
            fill = True
        elif f.cpp_type in INT_RANGES:
            fill = 1
        else:
            fill = 1.0
        items.extend([fill] * (PAST_LIMIT - len(items)))
    return message


def nested_unknown_fields(depth: int) -> bytes:
    """A payload of `depth` length-delimited unknown fields, one inside the next."""
    body = b""
    for _ in range(depth):
        body = b"\xfa\x3e" + _varint(len(body)) + body  # field 999, wire type 2
    return body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def messages(
    descriptor: Descriptor, text: st.SearchStrategy[str], depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with any field set to anything its type allows."""
    cls = pb_class(descriptor)
    strategies: dict[str, st.SearchStrategy[object]] = {}
    for f in descriptor.fields:
        one = scalar(f, text, depth)
        if one is None:
            continue
        strategies[f.name] = st.lists(one, max_size=3) if is_repeated(f) else one

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        chosen = (
            draw(st.lists(st.sampled_from(sorted(strategies)), unique=True)) if strategies else []
        )
        for name in chosen:
            value = draw(strategies[name])
            f = descriptor.fields_by_name[name]
            if f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                target = getattr(message, name)
                if is_repeated(f):
                    for item in value:  # type: ignore[attr-defined]
                        target.add().CopyFrom(item)
                else:
                    target.CopyFrom(value)
            elif is_repeated(f):
                getattr(message, name).extend(value)
            else:
                setattr(message, name, value)
        return message

    return build()


def scalar(
    f: FieldDescriptor, text: st.SearchStrategy[str], depth: int
) -> st.SearchStrategy[object] | None:
    if f.cpp_type in INT_RANGES:
        low, high = INT_RANGES[f.cpp_type]
        return st.sampled_from(extremes(f)) | st.integers(low, high)
    if f.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return st.floats(
            allow_nan=True, width=32 if f.cpp_type == FieldDescriptor.CPPTYPE_FLOAT else 64
        )
    if f.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if f.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return text
    if is_map(f) or depth >= 3:
        return None
    return messages(submessage(f), text, depth + 1)


def pb_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


# --- the sweep -----------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    body: bytes
    expect: grpc.StatusCode | None = None  # None: any deliberate status (or OK)
    outsider: bool = False  # an answer must not carry what only the victim may read


def signed(
    key: Key,
    message_class: type[Message],
    payload: bytes,
    market: str,
    clock: Clock | None = None,
) -> pb.SignedRequest:
    """`payload` signed as a `message_class` (whatever its bytes are)."""
    now = (clock or SystemClock()).now_ms()
    sig = key.sign(market, message_type(message_class), payload, now)
    return pb.SignedRequest(
        payload=payload,
        public_key=sig.public_key,
        signature=sig.signature,
        nonce=sig.nonce,
        timestamp_ms=sig.timestamp_ms,
        market_id=sig.market,
    )


class OffsetClock:
    def __init__(self, offset_ms: int) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return SystemClock().now_ms() + self.offset_ms


ID_FIELDS = {
    "lease_id": "lease",
    "deployment_id": "dep",
    "order_id": "order",
    "bid_id": "bid",
    "id": "dep",
    "address": "tenant",
    "owner": "tenant",
    "provider": "provider",
}


def ids_of(w: World, own: bool) -> Callable[[FieldDescriptor], str]:
    """Each string field named as an id gets the attacker's own record (own) or the victim's."""
    prefix = "own_" if own else ""

    def value(f: FieldDescriptor) -> str:
        kind = ID_FIELDS.get(f.name)
        if kind is None:
            return ""
        if own and kind in ("tenant", "provider"):
            return w.keys["mallory" if kind == "tenant" else "q"].address
        return w.ids.get(prefix + kind, w.ids.get(kind, ""))

    return value


def raw_cases() -> list[Case]:
    """What reaches the server before any signature: for every method, signed or not."""
    oversized = b"\x0a" + _varint(2 * 1024 * 1024) + b"x" * (2 * 1024 * 1024)
    groups = b"\xfb\x3e" * 200 + b"\xfc\x3e" * 200  # field 999 as nested groups, 200 deep
    return [
        Case("garbage bytes", b"\xff\xff\xff\x01garbage", grpc.StatusCode.INVALID_ARGUMENT),
        Case("truncated field", b"\x0a\x80\x80\x01", grpc.StatusCode.INVALID_ARGUMENT),
        Case("nested 200 deep", groups, grpc.StatusCode.INVALID_ARGUMENT),
        Case("2 MiB", oversized, grpc.StatusCode.RESOURCE_EXHAUSTED),
        Case("empty", b""),
    ]


def payload_class(name: str) -> type[Message]:
    """The message a method's SignedRequest carries (in a stream's opening frame too)."""
    return SIGNED_PAYLOAD.get(name) or OPENED_BY_FRAME[name]


def envelope_cases(w: World, name: str) -> list[Case]:
    """Envelopes that must not open: each is UNAUTHENTICATED."""
    cls = payload_class(name)
    key = w.key_for(name, own=True)
    payload = message_for(w, cls, own=True).SerializeToString()
    other = pb.Ack if cls is not pb.Ack else pb.GetRequest
    forged = signed(key, cls, payload, w.market_id)
    forged.signature = bytes([forged.signature[0] ^ 1]) + forged.signature[1:]
    impostor = signed(Key.generate(), cls, payload, w.market_id)
    impostor.public_key = w.keys["alice"].public_key
    at_edges = [
        signed(key, cls, payload, w.market_id, OffsetClock(-3600_000)),
        signed(key, cls, payload, w.market_id, OffsetClock(3600_000)),
    ]
    for extreme in (-(2**63), 2**63 - 1):
        edge = signed(key, cls, payload, w.market_id)
        edge.timestamp_ms = extreme
        at_edges.append(edge)
    refused = {
        "unsigned": pb.SignedRequest(payload=payload, market_id=w.market_id),
        "empty SignedRequest": pb.SignedRequest(),
        "bad signature": forged,
        "another key's public key": impostor,
        "payload of another type": seal(key, other(), market=w.market_id),
        "signed for another market": signed(key, cls, payload, Key.generate().address),
        "signed for a 200 KB market name": signed(key, cls, payload, HUGE),
        "signed for no market": signed(key, cls, payload, ""),
        "an hour old": at_edges[0],
        "an hour ahead": at_edges[1],
        "timestamp int64 min": at_edges[2],
        "timestamp int64 max": at_edges[3],
        "a 1000-byte public key": pb.SignedRequest(payload=payload, public_key=b"k" * 1000),
    }
    return [
        Case(label, r.SerializeToString(), grpc.StatusCode.UNAUTHENTICATED)
        for label, r in refused.items()
    ]


def message_for(w: World, cls: type[Message], own: bool) -> Message:
    message = cls()
    fill_strings(message, ids_of(w, own))
    return message


def inventory(name: str) -> pb.Inventory:
    """An H100 box's inventory: one GPU named as NVML names it, one by model and VRAM only."""
    inv = h100_inventory(name)
    inv.gpus[1].ClearField("name")
    return inv


def baseline(w: World, name: str) -> Message:
    """A request the attacker may rightly send, on its own records: the numbers of the sweep
    are set into it, so that each one reaches the checks behind the envelope."""
    own_dep, own_lease = w.ids["own_dep"], w.ids["own_lease"]
    q, mallory = w.keys["q"].address, w.keys["mallory"].address
    now = SystemClock().now_ms()
    valid: dict[str, Callable[[], Message]] = {
        "Provider/Register": lambda: pb.RegisterProvider(
            host_uri="https://q.example", region="eu", inventory=inventory("q"), version="t"
        ),
        "Provider/Heartbeat": lambda: pb.Heartbeat(
            running_lease_ids=[own_lease], inventory=inventory("q")
        ),
        "Provider/PlaceBid": lambda: pb.PlaceBid(
            order_id=w.ids["own_unbid_order"],
            price_per_hour=400_000,
            offer=pb.BidOffer(gpu_models=["h100"], price_per_gpu_hour=400_000, region="eu"),
        ),
        "Provider/ReportLeaseStatus": lambda: pb.LeaseStatusReport(
            lease_id=own_lease,
            state=pb.LEASE_RUNNING,
            endpoints=[pb.Endpoint(service="train", port=8080, host="q.example", proto="TCP")],
        ),
        "Provider/ReportLogs": lambda: pb.LogBatch(
            lease_id=own_lease, lines=[pb.LogLine(stream="stdout", line="step 1")]
        ),
        "Provider/ReportTelemetry": lambda: pb.TelemetryReport(
            read_at_ms=now,
            gpus=[
                pb.GpuTelemetry(
                    index=0,
                    uuid="GPU-q-0",
                    model="h100",
                    healthy=True,
                    temperature_c=50,
                    power_w=300,
                    utilization_pct=90,
                    memory_used_mib=1000,
                    memory_mib=81559,
                )
            ],
        ),
        "Tenant/CreateDeployment": lambda: pb.CreateDeployment(
            sdl=gpu_sdl(bid_window="5m"), deposit=money.MICRO
        ),
        "Tenant/Deposit": lambda: pb.DepositEscrow(deployment_id=own_dep, amount=money.MICRO),
        "Tenant/Fund": lambda: pb.FundAccount(address=mallory, amount=1000),
        "Tenant/UpdateDeployment": lambda: pb.UpdateDeployment(
            deployment_id=w.ids["own_open_dep"], sdl=gpu_sdl(bid_window="5m"), version=2
        ),
        "Tenant/StreamLogs": lambda: pb.StreamLogsRequest(lease_id=own_lease),
        "Tenant/WatchDeployment": lambda: pb.WatchDeploymentRequest(
            deployment_id=own_dep, history_only=True
        ),
        "Auditor/SignProviderAttributes": lambda: pb.SignProviderAttributes(
            provider=q,
            auditor=q,
            attributes=[pb.Attribute(key="tier", value="gold")],
            expires_at_ms=now + 3600_000,
        ),
        "Market/PriceAdvice": lambda: pb.PriceAdviceRequest(provider=q),
        "Tenant/Shell": lambda: pb.ShellOpen(lease_id=own_lease, command=["ls"]),
        "Provider/SessionIO": lambda: pb.SessionAccept(session_id="0" * 32, lease_id=own_lease),
    }
    make = valid.get(name)
    return make() if make is not None else message_for(w, payload_class(name), own=True)


def victims(record: str) -> Callable[[FieldDescriptor], str]:
    """Every id-like string field names `record`; other strings stay empty."""
    return lambda f: record if f.name in ID_FIELDS else ""


def payload_cases(w: World, name: str) -> list[Case]:
    """Envelopes that open: hostile payloads, signed by the attacker (own) or naming the victim."""
    cls = payload_class(name)
    own, outsider = w.key_for(name, own=True), w.key_for(name, own=False)
    cases: list[Case] = []

    def add(label: str, key: Key, payload: bytes, expect: grpc.StatusCode | None = None) -> None:
        request = signed(key, cls, payload, w.market_id)
        outsider = "victim" in label
        cases.append(Case(label, request.SerializeToString(), expect, outsider))

    add(
        "another type's payload signed as this one",
        own,
        pb.LogBatch(lease_id="x", lines=[pb.LogLine(line="y")]).SerializeToString(),
    )
    add("undecodable payload", own, b"\xff\xff\xff\x01", grpc.StatusCode.INVALID_ARGUMENT)
    add(
        "payload nested 200 deep",
        own,
        b"\xfb\x3e" * 200 + b"\xfc\x3e" * 200,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    for kind in ("dep", "order", "bid", "lease", "tenant", "provider"):
        victim = cls()
        fill_strings(victim, victims(w.ids[kind]))
        add(f"outsider names the victim's {kind}", outsider, victim.SerializeToString())
    add(
        "the victim's ids, every field",
        outsider,
        message_for(w, cls, own=False).SerializeToString(),
    )
    huge = baseline(w, name)
    fill_strings(huge, lambda f: HUGE)
    add("200 KB in every string", own, huge.SerializeToString())
    wide = baseline(w, name)
    fill_strings(wide, lambda f: WIDE)
    add("200 KB of snowmen in every string", own, wide.SerializeToString())
    add(
        "repeated fields past their limits", own, past_limits(baseline(w, name)).SerializeToString()
    )
    for names in numeric_paths(descriptor_of(cls)):
        for value in extremes(leaf_field(descriptor_of(cls), names)):
            message = baseline(w, name)
            set_path(message, names, value)
            add(f"{'.'.join(names)} = {value}", own, message.SerializeToString())
    return cases


@dataclass
class Sweep:
    world: World
    channel: grpc.Channel
    method: MethodDescriptor
    sent: int = 0

    def send(self, case: Case) -> Outcome:
        streaming = self.method.server_streaming
        # a refusal is awaited generously; a watch that may stay open, briefly
        wait_s = STREAM_WAIT_S if streaming and case.expect is None else UNARY_WAIT_S
        outcome = call(self.channel, self.method, case.body, wait_s)
        self.sent += 1
        label = f"{rpc(self.method)}: {case.label}"
        assert_deliberate(label, outcome, expect=case.expect, streaming=streaming)
        if case.outsider:
            for secret in (VICTIM_LOG_LINE.encode(), self.world.ids["lease"].encode()):
                assert secret not in outcome.body, f"{label}: the answer leaks {secret!r}"
        return outcome


@pytest.fixture
def sweep(world: World, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Sweep]]:
    """A sweep of one method; afterwards: no traceback, health, the victim as it was."""
    log_from = len(world.server.output())
    before = world.victim_view()
    with grpc.insecure_channel(
        world.server.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        made: list[Sweep] = []

        def make(name: str) -> Sweep:
            made.append(Sweep(world, channel, METHODS[name]))
            return made[-1]

        yield make
        assert serving(channel), "the server stopped answering health"
    log = world.server.output()[log_from:]
    assert "Traceback" not in log, log[-4000:]
    assert world.victim_view() == before, "the victim's records changed"
    audit = MarketClient(world.server.address, world.keys["admin"]).audit()
    assert audit.balanced, f"the ledger no longer balances: {audit}"


def serving(channel: grpc.Channel) -> bool:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_raw_bytes(name: str, sweep: Callable[[str], Sweep]) -> None:
    s = sweep(name)
    for case in raw_cases():
        if METHODS[name].client_streaming:
            continue  # a frame of its own: test_streams
        s.send(case)


@pytest.mark.parametrize("name", sorted(SIGNED_PAYLOAD))
def test_envelopes(name: str, sweep: Callable[[str], Sweep], world: World) -> None:
    s = sweep(name)
    for case in envelope_cases(world, name):
        s.send(case)
    # resent: the second send of the very same bytes, whatever the first one got: a command's
    # is answered as the first (server/once.py), a read's refused as a replay; deliberate either way
    request = signed(
        world.key_for(name, own=True),
        SIGNED_PAYLOAD[name],
        message_for(world, SIGNED_PAYLOAD[name], own=True).SerializeToString(),
        world.market_id,
    ).SerializeToString()
    s.send(Case("first send", request))
    s.send(Case("resent", request))


@pytest.mark.parametrize("name", sorted(SIGNED_PAYLOAD))
def test_payloads(name: str, sweep: Callable[[str], Sweep], world: World) -> None:
    s = sweep(name)
    for case in payload_cases(world, name):
        s.send(case)


def text_for(w: World) -> st.SearchStrategy[str]:
    """Strings a hostile client would send: real ids (its own and the victim's), empty ones,
    control characters, long ones."""
    return (
        st.sampled_from([*sorted(set(w.ids.values())), ""])
        | st.text(max_size=12)
        | st.just(HUGE[:5000])
    )


@pytest.mark.parametrize("name", sorted(SIGNED_PAYLOAD))
def test_drawn_payloads(name: str, sweep: Callable[[str], Sweep], world: World) -> None:
    """Hypothesis draws whole messages from the descriptor, signed by the attacker."""
    s = sweep(name)
    cls = SIGNED_PAYLOAD[name]
    key = world.key_for(name, own=True)

    @settings(
        max_examples=15,
        derandomize=True,  # the same draws on every run: a CI failure is one to reproduce
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(messages(descriptor_of(cls), text_for(world)))
    def attack(message: Message) -> None:
        payload = message.SerializeToString()
        s.send(
            Case(
                f"{message!r:.300}", signed(key, cls, payload, world.market_id).SerializeToString()
            )
        )

    attack()


@pytest.mark.parametrize("name", PUBLIC)
def test_drawn_public_requests(name: str, sweep: Callable[[str], Sweep], world: World) -> None:
    s = sweep(name)
    method = METHODS[name]
    request_type = method.input_type
    assert request_type is not None

    @settings(
        max_examples=25,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(messages(request_type, text_for(world)))
    def attack(message: Message) -> None:
        s.send(Case(f"{message!r:.300}", message.SerializeToString()))

    attack()
    for names in numeric_paths(request_type):
        for value in extremes(leaf_field(request_type, names)):
            message = pb_class(request_type)()
            set_path(message, names, value)
            s.send(Case(f"{'.'.join(names)} = {value}", message.SerializeToString()))
    huge = pb_class(request_type)()
    fill_strings(huge, lambda f: HUGE)
    s.send(Case("200 KB in every string", huge.SerializeToString()))
    s.send(
        Case(
            "repeated fields past their limits",
            past_limits(pb_class(request_type)()).SerializeToString(),
        )
    )


# --- streams: Channel, Shell, SessionIO -----------------------------------------------------------

# A relayed session whose provider has no Sessions stream open ends UNAVAILABLE (relay.py): the
# tenant may try again once the agent is back. Deliberate too, for those two rpcs.
RELAY_DELIBERATE = DELIBERATE | {grpc.StatusCode.UNAVAILABLE}
_CODES = {code.value[0]: code for code in grpc.StatusCode}
STREAM_WAIT_LONG_S = 60.0


def stream_call(
    channel: grpc.Channel, name: str, frames: Iterable[bytes], timeout: float = STREAM_WAIT_LONG_S
) -> tuple[Outcome, list[bytes]]:
    """Send raw frames and half-close: the replies and the status the stream ends with."""
    replies: list[bytes] = []
    call_ = channel.stream_stream(
        path(METHODS[name]), request_serializer=None, response_deserializer=None
    )(iter(frames), timeout=timeout)
    try:
        replies.extend(call_)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return Outcome(exc.code(), exc.details() or "", len(replies)), replies
    return Outcome(grpc.StatusCode.OK, "", len(replies)), replies


def frame(open_request: bytes) -> bytes:
    return pb.ShellFrame(open=pb.SignedRequest.FromString(open_request)).SerializeToString()


def opening_cases(w: World, name: str) -> list[Case]:
    """The envelope and payload cases of a relayed session's opening (ShellOpen, SessionAccept)."""
    return [*envelope_cases(w, name), *payload_cases(w, name)]


@pytest.mark.parametrize("name", sorted(OPENED_BY_FRAME))
def test_relayed_sessions(name: str, sweep: Callable[[str], Sweep], world: World) -> None:
    s = sweep(name)
    channel = s.channel
    cases = [
        Case("garbage first frame", b"\xff\xff\xff\x01", grpc.StatusCode.INVALID_ARGUMENT),
        Case(
            "a first frame without its opening",
            pb.ShellFrame(stdin=b"ls\n").SerializeToString(),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for case in cases:
        outcome, _ = stream_call(channel, name, [case.body], timeout=20)
        assert_deliberate(f"{name}: {case.label}", outcome, expect=case.expect)
    outcome, _ = stream_call(channel, name, [], timeout=20)
    assert_deliberate(
        f"{name}: half-closed at once", outcome, expect=grpc.StatusCode.INVALID_ARGUMENT
    )
    for case in opening_cases(world, name):
        body = frame(case.body)
        # frames after the opening (a refusal's too): stdin, a resize, EOF, then 200 of a flood
        after = [
            pb.ShellFrame(stdin=b"x" * 1024).SerializeToString(),
            pb.ShellFrame(rows=2**32 - 1, cols=2**32 - 1).SerializeToString(),
            pb.ShellFrame(stdin_closed=True).SerializeToString(),
            *[pb.ShellFrame(stdin=b"y").SerializeToString()] * 200,
        ]
        outcome, _ = stream_call(channel, name, [body, *after], timeout=30)
        label = f"{name}: {case.label}"
        if case.expect is not None:
            assert outcome.code == case.expect, f"{label}: {outcome}"
        assert outcome.code in RELAY_DELIBERATE, f"{label}: {outcome}"
        assert outcome.details and "\n" not in outcome.details, f"{label}: {outcome}"
        assert len(outcome.details.encode()) <= MAX_DETAILS, label


CHANNEL_COMMANDS = (
    "Register",
    "Heartbeat",
    "PlaceBid",
    "WithdrawBid",
    "DeclineOrder",
    "GetManifest",
    "ReportLeaseStatus",
    "ReportLogs",
    "CloseLease",
    "ReportTelemetry",
)


def channel_answers(replies: list[bytes]) -> dict[int, pb.ChannelAnswer]:
    answers = {}
    for raw in replies:
        message = pb.MarketMessage.FromString(raw)
        if message.HasField("answer"):
            answers[message.answer.seq] = message.answer
    return answers


def assert_answers(label: str, sent: dict[int, Case], answers: dict[int, pb.ChannelAnswer]) -> None:
    assert set(answers) == set(sent), f"{label}: unanswered {sorted(set(sent) - set(answers))[:5]}"
    for seq, case in sent.items():
        answer = answers[seq]
        code = _CODES.get(answer.code)
        case_label = f"{label} #{seq} {case.label}"
        assert code is not None, f"{case_label}: code {answer.code}"
        assert_deliberate(case_label, Outcome(code, answer.message), expect=case.expect)


def test_channel_every_command(sweep: Callable[[str], Sweep], world: World) -> None:
    """Each Provider command's envelope and payload cases, over one Channel stream of q's:
    each one answered, the stream up after every refusal, then closed by its sender."""
    s = sweep(CHANNEL)
    sent: dict[int, Case] = {}
    messages_: list[bytes] = []
    too_big: list[bytes] = []
    for command in CHANNEL_COMMANDS:
        for case in [
            *envelope_cases(world, f"Provider/{command}"),
            *payload_cases(world, f"Provider/{command}"),
        ]:
            seq = len(sent) + 1
            request = pb.SignedRequest.FromString(case.body)
            message = pb.ProviderMessage(
                seq=seq, method=command, request=request
            ).SerializeToString()
            if len(message) > MAX_MESSAGE_BYTES:  # gRPC ends the stream: its own case below
                too_big.append(message)
                continue
            sent[seq] = case
            messages_.append(message)
    for label, method in (
        ("no such command", "Nope"),
        ("a 200 KB command name", HUGE),
        ("no command", ""),
    ):
        seq = len(sent) + 1
        sent[seq] = Case(label, b"", grpc.StatusCode.INVALID_ARGUMENT)
        heartbeat = signed(world.keys["q"], pb.Heartbeat, b"", world.market_id)
        messages_.append(
            pb.ProviderMessage(seq=seq, method=method, request=heartbeat).SerializeToString()
        )
    outcome, replies = stream_call(s.channel, CHANNEL, messages_, timeout=120)
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert_answers("Channel", sent, channel_answers(replies))
    for message in too_big[:3]:
        outcome, _ = stream_call(s.channel, CHANNEL, [message], timeout=20)
        assert_deliberate("Channel: past the message limit", outcome)
        assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome


def test_channel_floods_and_strangers(sweep: Callable[[str], Sweep], world: World) -> None:
    """A flood of refused and accepted messages on one stream; another key's messages after the
    stream is bound; garbage after all that; then a stream closed before its first message."""
    s = sweep(CHANNEL)
    q, p = world.keys["q"], world.keys["p"]
    sent: dict[int, Case] = {}
    messages_: list[bytes] = []

    def add(case: Case, method: str, request: pb.SignedRequest) -> None:
        seq = len(sent) + 1
        sent[seq] = case
        messages_.append(
            pb.ProviderMessage(seq=seq, method=method, request=request).SerializeToString()
        )

    beat = pb.Heartbeat(running_lease_ids=[world.ids["own_lease"]]).SerializeToString()
    add(
        Case("q's heartbeat binds the stream", b"", grpc.StatusCode.OK),
        "Heartbeat",
        signed(q, pb.Heartbeat, beat, world.market_id),
    )
    close = pb.CloseLease(lease_id=world.ids["lease"]).SerializeToString()
    add(
        Case("p (the victim) on q's stream", b"", grpc.StatusCode.PERMISSION_DENIED),
        "CloseLease",
        signed(p, pb.CloseLease, close, world.market_id),
    )
    for i in range(1500):
        forged = signed(q, pb.Heartbeat, beat, world.market_id)
        forged.signature = bytes(64)
        add(Case(f"forged #{i}", b"", grpc.StatusCode.UNAUTHENTICATED), "Heartbeat", forged)
        if i % 3 == 0:
            add(
                Case(f"heartbeat #{i}", b"", grpc.StatusCode.OK),
                "Heartbeat",
                signed(q, pb.Heartbeat, beat, world.market_id),
            )
    outcome, replies = stream_call(s.channel, CHANNEL, messages_, timeout=120)
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert_answers("Channel flood", sent, channel_answers(replies))

    outcome, replies = stream_call(s.channel, CHANNEL, [], timeout=20)
    assert outcome.code == grpc.StatusCode.OK and replies == [], "a stream closed at once"
    good = pb.ProviderMessage(
        seq=1, method="Heartbeat", request=signed(q, pb.Heartbeat, beat, world.market_id)
    )
    outcome, replies = stream_call(
        s.channel, CHANNEL, [good.SerializeToString(), b"\xff\xff\xff\x01"], timeout=20
    )
    assert_deliberate(
        "Channel: garbage after a good message", outcome, expect=grpc.StatusCode.INVALID_ARGUMENT
    )


def test_unknown_methods_are_unimplemented(sweep: Callable[[str], Sweep], world: World) -> None:
    s = sweep("Market/Info")
    for method in ("/marketplace.api.v1.Tenant/Nope", "/nope.Nope/Info", "/" + "x" * 5000):
        try:
            s.channel.unary_unary(method, request_serializer=None, response_deserializer=None)(
                b"", timeout=UNARY_WAIT_S
            )
            outcome = Outcome(grpc.StatusCode.OK, "")
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            outcome = Outcome(exc.code(), exc.details() or "")
        assert outcome.code == grpc.StatusCode.UNIMPLEMENTED, (method[:40], outcome)


def test_health_and_reflection_refuse_garbage(sweep: Callable[[str], Sweep], world: World) -> None:
    """The services beside the market's (grpc's own health and reflection) pass the same
    request parser: garbage is INVALID_ARGUMENT there too, with no traceback."""
    s = sweep("Market/Info")
    check = "/grpc.health.v1.Health/Check"
    reply = s.channel.unary_unary(check, request_serializer=None, response_deserializer=None)
    for body in (b"\xff\xff\xff\x01", b"\x0a\x80\x80\x01"):
        with pytest.raises(grpc.RpcError) as caught:
            reply(body, timeout=UNARY_WAIT_S)
        error = caught.value
        assert isinstance(error, grpc.Call)
        outcome = Outcome(error.code(), error.details() or "")
        assert_deliberate("Health/Check garbage", outcome, expect=grpc.StatusCode.INVALID_ARGUMENT)
    reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    stream = s.channel.stream_stream(
        reflection, request_serializer=None, response_deserializer=None
    )
    try:
        list(stream(iter([b"\xff\xff\xff\x01"]), timeout=UNARY_WAIT_S))
        outcome = Outcome(grpc.StatusCode.OK, "")
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        outcome = Outcome(exc.code(), exc.details() or "")
    assert_deliberate("reflection garbage", outcome, expect=grpc.StatusCode.INVALID_ARGUMENT)


def test_a_reading_from_the_future_cannot_freeze_telemetry(world: World) -> None:
    """A report dated past the market's clock (int64's edge, a year ahead) is refused: kept,
    it would have hidden every real reading after it, and `provider status` could not print
    its date."""
    q = ProviderClient(world.server.address, world.keys["q"])
    now = SystemClock().now_ms()
    reading = pb.GpuTelemetry(index=0, uuid="GPU-q-0", model="h100", healthy=True)
    for ahead in (2**63 - 1 - now, 365 * 24 * 3600_000):
        with pytest.raises(InvalidArgument, match="ahead of the marketplace's clock"):
            q.report_telemetry(pb.TelemetryReport(gpus=[reading], read_at_ms=now + ahead))
    q.report_telemetry(pb.TelemetryReport(gpus=[reading], read_at_ms=now))
    assert q.status().read_at_ms == now


def test_the_market_still_works_and_balances(world: World) -> None:
    """After the sweep (this test runs last): the victim's own request resent is answered and
    applied once, a new tenant deploys, a provider bids and wins, and the ledger audit balances."""
    address, admin = world.server.address, world.keys["admin"]
    alice = world.keys["alice"]
    deposit = seal(
        alice,
        pb.DepositEscrow(deployment_id=world.ids["dep"], amount=money.MICRO),
        market=world.market_id,
    )
    with grpc.insecure_channel(address) as channel:
        send = channel.unary_unary(
            path(METHODS["Tenant/Deposit"]), request_serializer=None, response_deserializer=None
        )
        send(deposit.SerializeToString(), timeout=UNARY_WAIT_S)
        balance = TenantClient(address, alice).get_account().balance
        for _ in range(3):
            outcome = call(
                channel, METHODS["Tenant/Deposit"], deposit.SerializeToString(), UNARY_WAIT_S
            )
            assert_deliberate("the victim's deposit resent", outcome, expect=grpc.StatusCode.OK)
        assert TenantClient(address, alice).get_account().balance == balance

    tenant_key, provider_key = Key.generate(), Key.generate()
    TenantClient(address, admin).fund(tenant_key.address, 10 * money.MICRO)
    tenant, provider = TenantClient(address, tenant_key), ProviderClient(address, provider_key)
    provider.register(provider_registration("late"))
    dep = tenant.create_deployment(gpu_sdl(bid_window="300ms"), money.MICRO)
    bid = provider.place_bid(dep.order_ids[0], 500_000)
    assert _lease_of(tenant, dep.id) == bid.id
    report = MarketClient(address, admin).audit()
    assert report.balanced, report
    assert "Traceback" not in world.server.output()
