"""Who reads what, against a real marketplace (real gRPC on port 0, real SQLite).

One table holds every read RPC of the proto (a test checks that none is missing): its rightful
reader gets an answer, a stranger's signed read is refused (NOT_FOUND for someone else's record,
as if it did not exist; PERMISSION_DENIED where a role is needed; an empty list for listings),
and an unsigned read is refused UNAUTHENTICATED, unless the RPC is public. Then sealed bids
(item 6 of issue 10) and pagination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.message import Message

from marketplace.api.client import ANSWERED_ONCE, MarketClient, ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import money
from marketplace.core.errors import NotFound
from marketplace.core.events import DeploymentEventKind
from marketplace.identity import Key
from marketplace.server.paging import MAX_PAGE_SIZE, page
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from tests.helpers import wait_until

# Everything else in the three services changes the market (and was signed before issue 10).
WRITES = {
    "Fund",
    "CreateDeployment",
    "CloseDeployment",
    "Deposit",
    "AcceptBid",
    "CloseLease",
    "Register",
    "Heartbeat",
    "PlaceBid",
    "WithdrawBid",
    "DeclineOrder",
    "ReportLeaseStatus",
    "ReportLogs",
    "SignProviderAttributes",  # an auditor's, signed (tests/server/test_auditors.py)
    "RevokeProviderAttributes",
    "UpdateDeployment",  # the owner's (tests/server/test_update.py)
    # relayed sessions: each stream opens with a signed request whose nonce is durable, as a
    # command's (tests/system/test_shell.py); they run commands, they read no market record
    "Shell",
    "Sessions",
    "SessionIO",
    "Channel",  # the provider's stream: the rpcs above, one function each (test_channel.py)
    "ReportTelemetry",  # the agent's GPU readings (tests/server/test_provider_status.py)
}


@dataclass
class World:
    """A market with a running lease (D1) and an auction still in its bid window (D2)."""

    server: ServerThread
    keys: dict[str, Key]
    leased_dep: pb.Deployment
    lease: pb.Lease
    sealed_dep: pb.Deployment

    def tenant(self, who: str) -> TenantClient:
        return TenantClient(self.server.address, self.keys[who])

    def provider(self, who: str) -> ProviderClient:
        return ProviderClient(self.server.address, self.keys[who])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ServerThread(tmp_path_factory.mktemp("market")) as server:
        yield populated_world(server, gpu_sdl, "secret=hunter2")


def populated_world(
    server: ServerThread,
    sdl: Callable[..., bytes],
    log_line: str,
    losing_bid: int | None = None,
) -> World:
    """D1: leased to p (q bid `losing_bid` too, and lost), running, with `log_line` in its log;
    D2: in its bid window, bid on by p and q."""
    keys = {name: Key.generate() for name in ("alice", "mallory", "p", "q")}
    keys["admin"] = server.admin
    faucet = TenantClient(server.address, server.admin)
    for name in ("alice", "mallory"):
        faucet.fund(keys[name].address, 100 * money.MICRO)
    for name in ("p", "q"):
        ProviderClient(server.address, keys[name]).register(provider_registration(name))
    w = World(server, keys, pb.Deployment(), pb.Lease(), pb.Deployment())
    alice, p, q = w.tenant("alice"), w.provider("p"), w.provider("q")

    dep = alice.create_deployment(sdl(bid_window="300ms"), money.MICRO)
    p.place_bid(dep.order_ids[0], 500_000)
    if losing_bid is not None:
        q.place_bid(dep.order_ids[0], losing_bid)
    created = next(
        e for e in alice.watch_deployment(dep.id) if e.kind == DeploymentEventKind.LEASE_CREATED
    )
    endpoint = pb.Endpoint(service="train", port=8080, host="p.example", external_port=30080)
    p.report_status(
        pb.LeaseStatusReport(
            lease_id=created.lease_id, state=pb.LEASE_RUNNING, endpoints=[endpoint]
        )
    )
    p.report_logs(created.lease_id, [pb.LogLine(line=log_line)])
    w.lease = alice.get_lease(created.lease_id)
    w.leased_dep = alice.get_deployment(dep.id)

    w.sealed_dep = alice.create_deployment(sdl(bid_window="60s"), money.MICRO)
    p.place_bid(w.sealed_dep.order_ids[0], 400_000)
    q.place_bid(w.sealed_dep.order_ids[0], 450_000)
    return w


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    service: str
    method: str
    request: Callable[[World], Message]
    reply: type[Message]
    reader: str  # who may read it ("public": anyone, unsigned)
    stranger: grpc.StatusCode | None = None  # what mallory gets; None: an empty answer
    stream: bool = False
    shows: Callable[[list[Message], World], bool] = lambda replies, w: bool(replies)


def _order(w: World) -> str:
    return w.leased_dep.order_ids[0]


def _has(field: str) -> Callable[[list[Message], World], bool]:
    return lambda replies, w: bool(getattr(replies[0], field))


NOT_FOUND, DENIED = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED

READS = [
    Read(
        "Tenant",
        "GetAccount",
        lambda w: pb.GetAccountRequest(address=w.keys["alice"].address),
        pb.Account,
        "alice",
        DENIED,
        shows=lambda r, w: isinstance(r[0], pb.Account) and r[0].address == w.keys["alice"].address,
    ),
    Read(
        "Tenant",
        "GetDeployment",
        lambda w: pb.GetRequest(id=w.leased_dep.id),
        pb.Deployment,
        "alice",
        NOT_FOUND,
        shows=_has("groups"),
    ),
    Read(
        "Tenant",
        "ListDeployments",
        lambda w: pb.ListRequest(),
        pb.DeploymentList,
        "alice",
        shows=_has("deployments"),
    ),
    Read("Tenant", "GetOrder", lambda w: pb.GetRequest(id=_order(w)), pb.Order, "alice", NOT_FOUND),
    Read(
        "Tenant",
        "ListOrders",
        lambda w: pb.ListRequest(),
        pb.OrderList,
        "alice",
        shows=_has("orders"),
    ),
    Read(
        "Tenant",
        "ListBids",
        lambda w: pb.ListBidsRequest(order_id=_order(w)),
        pb.BidList,
        "alice",
        NOT_FOUND,
        shows=_has("bids"),
    ),
    Read(
        "Tenant",
        "ExplainOrder",
        lambda w: pb.GetRequest(id=_order(w)),
        pb.OrderExplanation,
        "alice",
        NOT_FOUND,
        shows=_has("summary"),
    ),
    Read(
        "Tenant",
        "GetLease",
        lambda w: pb.GetRequest(id=w.lease.id),
        pb.Lease,
        "alice",
        NOT_FOUND,
        shows=_has("endpoints"),
    ),
    Read(
        "Tenant",
        "ListLeases",
        lambda w: pb.ListRequest(),
        pb.LeaseList,
        "alice",
        shows=_has("leases"),
    ),
    Read(
        "Tenant",
        "WatchDeployment",
        lambda w: pb.WatchDeploymentRequest(deployment_id=w.leased_dep.id),
        pb.DeploymentEvent,
        "alice",
        NOT_FOUND,
        stream=True,
    ),
    Read(
        "Tenant",
        "StreamLogs",
        lambda w: pb.StreamLogsRequest(lease_id=w.lease.id),
        pb.LogLine,
        "alice",
        NOT_FOUND,
        stream=True,
        shows=lambda r, w: [x.line for x in r if isinstance(x, pb.LogLine)] == ["secret=hunter2"],
    ),
    Read(
        "Market",
        "Info",
        lambda w: pb.MarketInfoRequest(),
        pb.MarketInfo,
        "public",
        shows=_has("market_id"),
    ),
    Read(
        "Market",
        "ListProviders",
        lambda w: pb.ListRequest(),
        pb.ProviderList,
        "public",
        shows=_has("providers"),
    ),
    Read(
        "Market",
        "Stats",
        lambda w: pb.MarketStatsRequest(),
        pb.MarketStats,
        "public",
        shows=_has("gpu_prices"),
    ),
    Read(
        "Auditor",
        "ListAttestations",
        lambda w: pb.ListAttestationsRequest(provider=w.keys["p"].address),
        pb.AttestationList,
        "public",
        shows=lambda r, w: isinstance(r[0], pb.AttestationList),
    ),
    Read(
        "Auditor",
        "VerifyProvider",
        lambda w: pb.VerifyProviderRequest(provider=w.keys["p"].address),
        pb.ProviderFindings,
        "public",
        shows=_has("findings"),
    ),
    Read(
        "Market",
        "GetPriceHistory",
        lambda w: pb.PriceHistoryRequest(bucket_ms=60_000),
        pb.PriceHistory,
        "public",
        shows=_has("buckets"),
    ),
    Read(
        "Market",
        "Audit",
        lambda w: pb.AuditRequest(),
        pb.AuditReport,
        "admin",
        DENIED,
        shows=_has("balanced"),
    ),
    Read(
        "Market",
        "ListLedger",
        lambda w: pb.ListRequest(owner=w.keys["alice"].address),
        pb.LedgerPage,
        "alice",
        DENIED,
        shows=_has("entries"),
    ),
    Read(
        "Market",
        "PriceAdvice",  # a provider's own (tests/server/test_price_advice.py)
        lambda w: pb.PriceAdviceRequest(
            provider=w.keys["p"].address, since_ms=w.server.app.clock.now_ms() - 3_600_000
        ),
        pb.PriceAdviceReport,
        "p",
        DENIED,
        shows=_has("models"),
    ),
    Read(
        "Provider",
        "WatchOrders",
        lambda w: pb.WatchOrders(),
        pb.ProviderEvent,
        "q",
        NOT_FOUND,  # the feed is for registered providers
        stream=True,
    ),
    Read(
        "Provider",
        "GetManifest",
        lambda w: pb.GetManifest(lease_id=w.lease.id),
        pb.Manifest,
        "p",
        NOT_FOUND,
        shows=_has("sdl"),
    ),
    Read(
        "Provider",
        "GetProviderStatus",
        lambda w: pb.ProviderStatusRequest(provider=w.keys["p"].address),
        pb.ProviderStatus,
        "p",
        DENIED,  # a provider's telemetry and declines are its own
        shows=lambda r, w: (
            isinstance(r[0], pb.ProviderStatus) and r[0].provider == w.keys["p"].address
        ),
    ),
]


def _bytes(message: Message) -> bytes:
    return message.SerializeToString()


def call(w: World, read: Read, request: Message) -> list[Message]:
    """One read over the wire; a stream's first answer."""
    path = f"/marketplace.api.v1.{read.service}/{read.method}"
    with grpc.insecure_channel(w.server.address) as channel:
        if not read.stream:
            unary = channel.unary_unary(
                path,
                request_serializer=_bytes,
                response_deserializer=read.reply.FromString,
            )
            return [unary(request, timeout=10)]
        answers = channel.unary_stream(
            path,
            request_serializer=_bytes,
            response_deserializer=read.reply.FromString,
        )(request, timeout=10)
        out: list[Message] = []
        for answer in answers:
            out.append(answer)
            break  # the first answer is enough: some streams never end
        return out


def signed(w: World, who: str, read: Read) -> pb.SignedRequest:
    return seal(w.keys[who], read.request(w), market=w.server.admin.address)


def status_of(fn: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    assert isinstance(caught.value, grpc.Call)
    return caught.value.code()


def empty(reply: Message) -> bool:
    return all(not value for _, value in reply.ListFields())


def test_the_table_holds_every_read_of_the_proto() -> None:
    methods = {
        m.name for service in pb.DESCRIPTOR.services_by_name.values() for m in service.methods
    }
    assert {r.method for r in READS} == methods - WRITES


@pytest.mark.parametrize("read", READS, ids=lambda r: r.method)
def test_the_rightful_reader_can(world: World, read: Read) -> None:
    request = read.request(world) if read.reader == "public" else signed(world, read.reader, read)
    assert read.shows(call(world, read, request), world)


@pytest.mark.parametrize("read", [r for r in READS if r.reader != "public"], ids=lambda r: r.method)
def test_a_stranger_cannot(world: World, read: Read) -> None:
    request = signed(world, "mallory", read)
    if read.stranger is None:
        assert all(empty(reply) for reply in call(world, read, request))
    else:
        assert status_of(lambda: call(world, read, request)) == read.stranger


@pytest.mark.parametrize("read", [r for r in READS if r.reader != "public"], ids=lambda r: r.method)
def test_an_unsigned_read_is_refused(world: World, read: Read) -> None:
    unsigned = pb.SignedRequest(payload=read.request(world).SerializeToString())
    assert status_of(lambda: call(world, read, unsigned)) == grpc.StatusCode.UNAUTHENTICATED
    resigned = signed(world, read.reader, read)
    resigned.public_key = world.keys["mallory"].public_key  # someone else's signature
    assert status_of(lambda: call(world, read, resigned)) == grpc.StatusCode.UNAUTHENTICATED


def test_repeated_identical_reads_all_pass(world: World) -> None:
    alice = world.tenant("alice")
    assert [alice.get_lease(world.lease.id).id for _ in range(3)] == [world.lease.id] * 3


def test_a_provider_reads_open_orders_its_bids_and_its_leases_only(world: World) -> None:
    p, q = world.tenant("p"), world.tenant("q")
    open_order = world.sealed_dep.order_ids[0]
    assert q.get_order(open_order).id == open_order  # open: it may bid
    assert p.get_order(_order(world)).id == _order(world)  # leased, and p bid on it
    with pytest.raises(NotFound):
        q.get_order(_order(world))  # leased, and q never bid
    assert [x.id for x in p.list_leases()] == [world.lease.id]
    assert q.list_leases() == []
    with pytest.raises(NotFound):
        q.get_lease(world.lease.id)
    with pytest.raises(NotFound):
        q.get_deployment(world.leased_dep.id)
    assert {o.id for o in q.list_orders()} == {open_order}


def test_the_admin_reads_the_books_but_not_a_tenants_records(world: World) -> None:
    admin = MarketClient(world.server.address, world.server.admin)
    entries = admin.ledger()
    mine = MarketClient(world.server.address, world.keys["alice"]).ledger()
    assert mine and len(entries) > len(mine)
    assert admin.audit().balanced
    with pytest.raises(NotFound):
        TenantClient(world.server.address, world.server.admin).get_lease(world.lease.id)


# --- sealed bids ----------------------------------------------------------------------------------


def test_bids_are_sealed_while_the_window_is_open(world: World) -> None:
    order = world.sealed_dep.order_ids[0]
    alice, p, q = world.tenant("alice"), world.tenant("p"), world.tenant("q")
    assert alice.list_bids(order) == []
    assert [(b.provider, b.price_per_hour) for b in p.list_bids(order)] == [
        (world.keys["p"].address, 400_000)
    ]
    assert [b.provider for b in q.list_bids(order)] == [world.keys["q"].address]
    with pytest.raises(NotFound):
        world.tenant("mallory").list_bids(order)
    why = alice.explain_order(order)
    assert list(why.bids) == [] and "2 sealed bid(s)" in why.summary
    assert "0.4" not in why.summary and world.keys["p"].address not in why.summary
    placed = []
    for event in alice.watch_deployment(world.sealed_dep.id):
        if event.kind == DeploymentEventKind.BID_PLACED:
            placed.append(event)
            if len(placed) == 2:
                break
    assert [(e.HasField("bid"), e.bid_id, e.message) for e in placed] == [
        (False, "", "sealed bid")
    ] * 2


def test_after_the_window_the_tenant_sees_every_bid_a_provider_its_own(world: World) -> None:
    alice = world.tenant("alice")
    dep = alice.create_deployment(gpu_sdl(bid_window="1s", extra=", manual: true"), money.MICRO)
    order = dep.order_ids[0]
    world.provider("p").place_bid(order, 410_000)
    world.provider("q").place_bid(order, 420_000)
    wait_until(lambda: len(alice.list_bids(order)) == 2, 10, "the window to close")
    assert [b.price_per_hour for b in alice.list_bids(order)] == [410_000, 420_000]
    assert [b.price_per_hour for b in world.tenant("q").list_bids(order)] == [420_000]
    placed = _first_bids(alice, dep.id)  # sent after the close: they carry their bids
    assert sorted(e.bid.price_per_hour for e in placed) == [410_000, 420_000]
    alice.close_deployment(dep.id)


def _first_bids(alice: TenantClient, deployment_id: str) -> list[pb.DeploymentEvent]:
    placed = []
    for event in alice.watch_deployment(deployment_id):
        if event.kind == DeploymentEventKind.BID_PLACED:
            placed.append(event)
            if len(placed) == 2:
                return placed
    return placed


# --- pagination -----------------------------------------------------------------------------------


def test_listings_page_and_the_client_follows_the_pages(world: World) -> None:
    alice = world.tenant("alice")
    everything = [d.id for d in alice.list_deployments()]
    assert len(everything) >= 2
    alice.page_size = 1
    assert [d.id for d in alice.list_deployments()] == everything  # one page each
    assert [d.id for d in alice.list_deployments(limit=1)] == everything[:1]
    listing = next(r for r in READS if r.method == "ListDeployments")
    first = seal(
        world.keys["alice"], pb.ListRequest(page_size=1), market=world.server.admin.address
    )
    [reply] = call(world, listing, first)
    assert isinstance(reply, pb.DeploymentList)
    assert len(reply.deployments) == 1 and reply.next_page_token
    forged = seal(
        world.keys["alice"],
        pb.ListRequest(page_token="not-a-token"),  # a token the server never gave
        market=world.server.admin.address,
    )
    assert status_of(lambda: call(world, listing, forged)) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_page_is_at_most_a_thousand_and_a_hundred_by_default() -> None:
    items = list(range(2500))
    assert len(page(items, 5000, "")[0]) == MAX_PAGE_SIZE == 1000
    first, token = page(items, 0, "")
    assert first == list(range(100)) and token
    second, _ = page(items, 0, token)
    assert second == list(range(100, 200))
    assert page(items, 1000, page(items, 1000, page(items, 1000, "")[1])[1]) == (
        list(range(2000, 2500)),
        "",
    )


def test_the_client_resends_after_a_deadline_exactly_the_rpcs_answered_once() -> None:
    """Every unary write (and GetManifest, a provider's command) is answered once per sealed
    envelope (server/once.py), so the client sends it again when its deadline passes; a read is
    not: its nonce is spent."""
    streams = {"Shell", "Sessions", "SessionIO", "Channel"}
    assert (WRITES - streams) | {"GetManifest"} == ANSWERED_ONCE
