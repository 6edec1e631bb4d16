"""Hot standby on PostgreSQL, with real processes: two `market serve` on one database, one leads
and the other stands by; SIGKILL the leader again and again while a tenant deploys and closes
and a provider bids; after each kill the standby leads within the bound, nothing acknowledged is
lost, a running lease carries on, and `gpumarket market audit` balances. A leader paused through
a takeover (SIGSTOP) wakes deposed and commits nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from google.protobuf.message import Message

from marketplace.api.client import MarketClient, MarketUnavailable, ProviderClient, TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core import money
from marketplace.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MarketError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from marketplace.core.events import DeploymentEventKind
from marketplace.identity import Key, signing_bytes
from marketplace.server.serve import ADMIN_KEY_FILE
from marketplace.server.standby import NOT_THE_LEADER
from marketplace.server.testing import gpu_sdl, provider_registration
from tests.helpers import wait_until
from tests.pgcluster import PgCluster
from tests.server.market_process import MarketProcess

pytestmark = pytest.mark.slow

TAKEOVER_BOUND_S = 5.0  # SIGKILL → the standby serving (its default lease is 3 s)
KILLS = 3
T = TypeVar("T")
# answers that are the market's rules, not a leader going away (which surfaces as MarketError)
REFUSALS = (AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unauthenticated)


@dataclass
class Pair:
    """Market servers on one PostgreSQL database; the first started leads."""

    servers: list[MarketProcess]
    url: str

    @property
    def admin_key(self) -> Path:
        return self.servers[0].data_dir / ADMIN_KEY_FILE

    def leader(self, timeout: float = TAKEOVER_BOUND_S + 5) -> MarketProcess:
        """The one server that answers SERVING (waits for one)."""

        def serving() -> MarketProcess | None:
            up = [s for s in self.servers if s.proc and s.proc.poll() is None and s.serving()]
            assert len(up) <= 1, "two servers serve at once"
            return up[0] if up else None

        return wait_until(serving, timeout, "a leader serving", interval=0.05)


@pytest.fixture
def pair(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[Pair]:
    """Two servers with a 1 s lease (a silent leader is replaced after it)."""
    url = pg_cluster.create_database()
    first = MarketProcess.start(tmp_path / "a", "--store", url, "--leader-lease", "1")
    key = str(first.data_dir / ADMIN_KEY_FILE)
    second = MarketProcess.start(
        tmp_path / "b", "--store", url, "--admin-key", key, "--leader-lease", "1"
    )
    servers = Pair([first, second], url)
    try:
        yield servers
    finally:
        for server in servers.servers:
            if server.proc is not None and server.proc.poll() is None:
                server.resume()  # a paused one cannot die of SIGKILL until it runs again
            server.__exit__(None, None, None)


def test_a_standby_refuses_calls_and_reports_not_serving(pair: Pair) -> None:
    leader, standby = pair.servers
    assert leader.serving() and not standby.serving()
    with grpc.insecure_channel(standby.address) as channel:
        info = channel.unary_unary(
            "/marketplace.api.v1.Market/Info",
            request_serializer=pb.MarketInfoRequest.SerializeToString,
            response_deserializer=pb.MarketInfo.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            info(pb.MarketInfoRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.value.details() == NOT_THE_LEADER
    # a client takes it as a market away (and tries its next address)
    with TenantClient(standby.address, Key.generate()) as client, pytest.raises(MarketUnavailable):
        client.get_account()
    assert "standing by" in standby.output()


@dataclass
class Workload:
    """A tenant deploying and closing, a provider bidding and heartbeating its running lease,
    on whichever server leads; every acknowledged step is recorded."""

    pair: Pair
    tenant: Key
    provider: Key
    lease_id: str
    deployments: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    bids: list[str] = field(default_factory=list)
    failures: int = 0
    last_failure: MarketError | None = None  # named when the workload stalls
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None  # what ended the loop before it was stopped

    def call(self, step: Callable[[TenantClient, ProviderClient], T]) -> T | None:
        """One step on the leader; None when it was refused as final (a closed order)."""
        while not self.stop.is_set():
            try:
                address = self.pair.leader().address
            except TimeoutError:  # a slow machine: keep looking
                continue
            with (
                TenantClient(address, self.tenant, timeout_s=5) as tenant,
                ProviderClient(address, self.provider, timeout_s=5) as provider,
            ):
                try:
                    return step(tenant, provider)
                except FailedPrecondition:
                    return None
                except REFUSALS:  # a rule said no: retrying cannot help, so the workload ends
                    raise
                except MarketError as exc:  # the leader went away: find the next one
                    self.failures += 1
                    self.last_failure = exc
        return None

    def run(self) -> None:
        try:
            self.loop()
        except BaseException as exc:
            self.error = exc
            raise

    def deployed(self, count: int) -> bool:
        """Whether `count` deployments were acknowledged; fails if the loop died."""
        assert self.error is None, f"the workload stopped: {self.error!r}"
        return len(self.deployments) >= count

    def loop(self) -> None:
        while not self.stop.is_set():
            dep = self.call(lambda t, _: t.create_deployment(gpu_sdl(bid_window="2s"), money.MICRO))
            if dep is None:
                return
            self.deployments.append(dep.id)
            order_id, dep_id = dep.order_ids[0], dep.id
            bid = self.call(bid_on(order_id, self.provider))
            if bid is not None:
                self.bids.append(bid.id)
            self.call(lambda _, p: p.heartbeat([self.lease_id]))
            if len(self.deployments) % 2 == 0:
                closed = self.call(close(dep_id))
                if closed is not None:
                    self.closed.append(closed.id)


def stands_by_again(server: MarketProcess) -> None:
    """A deposed leader steps down, says so, and stands by again on the same address."""
    wait_until(
        lambda: "standing by for the leader" in server.output(), 20, "the deposed one to step down"
    )
    assert "deposed, stepping down" in server.output()
    assert server.proc is not None and server.proc.poll() is None
    wait_until(lambda: server.output().count("standing by:") >= 1, 20, "it to stand by again")


def bid_on(order_id: str, bidder: Key) -> Callable[[TenantClient, ProviderClient], pb.Bid]:
    def place(tenant: TenantClient, provider: ProviderClient) -> pb.Bid:
        try:
            return provider.place_bid(order_id, 450_000)
        except AlreadyExists:  # a try whose answer died with the leader was committed: find it
            with TenantClient(tenant.address, bidder, timeout_s=5) as own:
                return next(b for b in own.list_bids(order_id) if b.provider == bidder.address)

    return place


def close(deployment_id: str) -> Callable[[TenantClient, ProviderClient], pb.Deployment]:
    return lambda tenant, _: tenant.close_deployment(deployment_id)


def closed(deployment: pb.Deployment) -> bool:
    return deployment.state == pb.DEPLOYMENT_CLOSED


def start_running_lease(address: str, admin: Key) -> tuple[Key, Key, str]:
    """A funded tenant, a registered provider, and a lease of theirs reported running."""
    tenant, provider_key = Key.generate(), Key.generate()
    with TenantClient(address, admin) as funder:
        funder.fund(tenant.address, 1_000 * money.MICRO)
    with (
        TenantClient(address, tenant) as alice,
        ProviderClient(address, provider_key) as provider,
    ):
        provider.register(provider_registration("p1", "eu"))
        dep = alice.create_deployment(gpu_sdl(bid_window="100ms"), money.MICRO)
        provider.place_bid(dep.order_ids[0], 450_000)
        created = next(
            e for e in alice.watch_deployment(dep.id) if e.kind == DeploymentEventKind.LEASE_CREATED
        )
        provider.report_status(
            pb.LeaseStatusReport(lease_id=created.lease_id, state=pb.LEASE_RUNNING)
        )
    return tenant, provider_key, created.lease_id


def audit_cli(address: str, admin_key: Path) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable, "-c", "from marketplace.cli.main import main; main()",
            "market", "audit", "--market", address, "--admin-key", str(admin_key), "--json",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_sigkill_the_leader_again_and_again_loses_nothing_acknowledged(pair: Pair) -> None:
    admin = Key.from_pem(pair.admin_key.read_bytes())
    tenant, provider, lease_id = start_running_lease(pair.leader().address, admin)
    work = Workload(pair, tenant, provider, lease_id)
    worker = threading.Thread(target=work.run, daemon=True)
    worker.start()
    takeovers: list[float] = []
    try:
        for _ in range(KILLS):
            wait_until(partial(work.deployed, len(work.deployments) + 3), 120, "3 deployments")
            leader = pair.leader()
            leader.kill9()
            killed = time.monotonic()
            pair.leader()
            takeovers.append(time.monotonic() - killed)
            leader.restart()  # back as a standby
            assert not leader.serving()
        wait_until(partial(work.deployed, len(work.deployments) + 3), 120, "deployments after")
    finally:
        work.stop.set()
        worker.join(30)
    assert max(takeovers) <= TAKEOVER_BOUND_S, takeovers

    address = pair.leader().address
    with TenantClient(address, tenant) as alice, MarketClient(address, admin) as market:
        stored = {d.id: d for d in alice.list_deployments(owner=tenant.address)}
        assert set(work.deployments) <= set(stored)
        assert all(closed(stored[d]) for d in work.closed)
        # the lease that ran before the first kill runs on, its provider heartbeating
        assert alice.get_lease(lease_id).state == pb.LEASE_RUNNING
        # sealed bids: each bidder reads its own; a closed deployment's, its owner. Closed is
        # what the store says: a close whose answer died with a leader is closed too (its retry
        # was told "closed already"), and the provider may not have bid on it (no GPU free)
        bids = {
            b.id
            for d in work.deployments
            for b in TenantClient(address, tenant if closed(stored[d]) else provider).list_bids(
                stored[d].order_ids[0]
            )
        }
        assert set(work.bids) <= bids
        assert market.audit().balanced
    report = audit_cli(address, pair.admin_key)
    assert report["balanced"] is True, report
    terms = [s.output().count("leading store=") for s in pair.servers]
    assert sum(terms) == KILLS + 1  # each kill: one takeover, and no one else led


def test_a_paused_leader_wakes_deposed_and_commits_nothing(pair: Pair) -> None:
    old, standby = pair.servers
    admin = Key.from_pem(pair.admin_key.read_bytes())
    with TenantClient(old.address, admin) as funder:
        funder.fund(Key.generate().address, money.MICRO)  # a write the old leader acknowledged
    tenant = Key.generate()
    old.pause()
    paused = time.monotonic()
    assert pair.leader() is standby
    took_over = time.monotonic() - paused
    with TenantClient(standby.address, admin) as funder:
        funder.fund(tenant.address, 10 * money.MICRO)

    # a deployment sent to the old leader, which handles it once it runs again
    refused: list[BaseException] = []

    def deploy_on_old() -> None:
        try:
            with TenantClient(old.address, tenant, timeout_s=20) as client:
                client.create_deployment(gpu_sdl(), money.MICRO)
        except MarketError as exc:
            refused.append(exc)

    sender = threading.Thread(target=deploy_on_old)
    sender.start()
    old.resume()
    sender.join(30)
    assert refused, "the deposed leader acknowledged a write"
    stands_by_again(old)
    with TenantClient(standby.address, tenant) as alice:
        assert alice.list_deployments(owner=tenant.address) == []
        assert alice.get_account().balance == 10 * money.MICRO
    assert took_over <= TAKEOVER_BOUND_S
    assert pair.leader() is standby


def test_a_leader_cut_off_from_the_database_steps_down(pair: Pair, pg_cluster: PgCluster) -> None:
    old, standby = pair.servers
    # the database drops every session of the leader, as a partition or a failing link would
    cut = time.monotonic()
    pg_cluster.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = 'gpumarket market serve pid {old.pid}'",
        pair.url.rpartition("/")[2],
    )
    wait_until(standby.serving, TAKEOVER_BOUND_S, "the standby serving", interval=0.05)
    assert time.monotonic() - cut <= TAKEOVER_BOUND_S
    # the old leader finds its lease gone at its next renewal (a third of the lease) and steps
    # down; until then it may still answer health, but it can commit nothing (fenced)
    stands_by_again(old)
    assert pair.leader() is standby
    with TenantClient(standby.address, Key.from_pem(pair.admin_key.read_bytes())) as admin:
        admin.fund(Key.generate().address, money.MICRO)  # the new leader writes


def test_the_database_crashing_loses_nothing_and_a_server_leads_after(
    pair: Pair, pg_cluster: PgCluster
) -> None:
    admin = Key.from_pem(pair.admin_key.read_bytes())
    funded = Key.generate()
    with TenantClient(pair.leader().address, admin) as funder:
        funder.fund(funded.address, 7 * money.MICRO)  # acknowledged: committed and flushed
    pg_cluster.crash_and_restart()
    # the leader lost its lease with its sessions and steps down; both stand by through the
    # outage, and one leads once the database is back
    old = pair.servers[0]
    stands_by_again(old)
    with TenantClient(pair.leader().address, funded) as tenant:
        assert tenant.get_account().balance == 7 * money.MICRO


def same_nonce_other_bytes(
    key: Key, envelope: pb.SignedRequest, other: Message
) -> pb.SignedRequest:
    """`other` signed by `key` under `envelope`'s nonce: a valid signature, a spent nonce."""
    changed = pb.SignedRequest()
    changed.CopyFrom(envelope)
    changed.payload = other.SerializeToString()
    data = signing_bytes(
        envelope.market_id,
        type(other).DESCRIPTOR.full_name,
        envelope.nonce,
        envelope.timestamp_ms,
        changed.payload,
    )
    changed.signature = key._private.sign(data)  # a client's bug: one nonce, two messages
    return changed


def test_a_command_resent_to_the_new_leader_gets_its_first_answer_and_applies_once(
    pair: Pair,
) -> None:
    """The leader commits commands and dies before answering (here: it answered, and the
    client resends the same sealed bytes anyway, as it would after UNAVAILABLE): the new
    leader answers each as the first time, applies none again, and refuses the same nonce on
    other bytes."""
    admin = Key.from_pem(pair.admin_key.read_bytes())
    old, standby = pair.servers
    market = admin.address
    tenant, provider = Key.generate(), Key.generate()
    with ProviderClient(old.address, provider) as client:
        client.register(provider_registration("p1", "eu"))

    fund = seal(
        admin, pb.FundAccount(address=tenant.address, amount=50 * money.MICRO), market=market
    )
    create = seal(
        tenant,
        pb.CreateDeployment(sdl=gpu_sdl(), deposit=2 * money.MICRO),
        market=market,
    )
    with grpc.insecure_channel(old.address) as channel:
        tenant_rpc = pb_grpc.TenantStub(channel)
        funded = tenant_rpc.Fund(fund, timeout=10)
        made = tenant_rpc.CreateDeployment(create, timeout=30)
        deposit = seal(
            tenant, pb.DepositEscrow(deployment_id=made.id, amount=money.MICRO), market=market
        )
        deposited = tenant_rpc.Deposit(deposit, timeout=10)
        missing = seal(tenant, pb.DepositEscrow(deployment_id="d-missing", amount=1), market=market)
        with pytest.raises(grpc.RpcError) as first_refusal:
            tenant_rpc.Deposit(missing, timeout=10)
        place = seal(
            provider, pb.PlaceBid(order_id=made.order_ids[0], price_per_hour=450_000), market=market
        )
        bid = pb_grpc.ProviderStub(channel).PlaceBid(place, timeout=10)
    old.kill9()
    assert pair.leader() is standby

    with grpc.insecure_channel(standby.address) as channel:
        tenant_rpc = pb_grpc.TenantStub(channel)
        assert tenant_rpc.Fund(fund, timeout=10).address == funded.address
        again = tenant_rpc.CreateDeployment(create, timeout=30)
        assert (again.id, list(again.order_ids)) == (made.id, list(made.order_ids))
        assert tenant_rpc.Deposit(deposit, timeout=10).id == deposited.id
        with pytest.raises(grpc.RpcError) as refusal:
            tenant_rpc.Deposit(missing, timeout=10)
        assert refusal.value.code() == first_refusal.value.code() == grpc.StatusCode.NOT_FOUND
        assert refusal.value.details() == first_refusal.value.details()
        assert pb_grpc.ProviderStub(channel).PlaceBid(place, timeout=10).id == bid.id
        twice = same_nonce_other_bytes(
            admin, fund, pb.FundAccount(address=tenant.address, amount=99 * money.MICRO)
        )
        with pytest.raises(grpc.RpcError) as forged:
            tenant_rpc.Fund(twice, timeout=10)
        assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "replayed" in (forged.value.details() or "")

    with TenantClient(standby.address, tenant) as client:
        assert [d.id for d in client.list_deployments()] == [made.id]  # one deployment
        # funded once (50), 2 deposited at creation and 1 after: each moved once
        assert client.get_account().balance == 47 * money.MICRO
    with TenantClient(standby.address, provider) as bidder:  # its own bids (sealed to others)
        assert [b.id for b in bidder.list_bids(made.order_ids[0])] == [bid.id]
    audit = audit_cli(standby.address, pair.admin_key)
    assert audit["balanced"] is True, audit


def test_sigterm_stops_a_standby_cleanly_and_a_leader_hands_over(pair: Pair) -> None:
    leader, standby = pair.servers
    stopped = time.monotonic()
    leader.stop()  # a clean stop gives the lease up
    assert leader.proc is not None and leader.proc.returncode == 0
    assert pair.leader() is standby
    assert time.monotonic() - stopped <= TAKEOVER_BOUND_S
    leader.restart()
    assert not leader.serving()
    assert "stopped while standing by" in leader.stop()
    assert leader.proc.returncode == 0
