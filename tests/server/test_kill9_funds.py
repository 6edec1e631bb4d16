"""kill -9 during the tenant's money moves (deploy, deposit, close) loses no acknowledged one and
invents none: every tenant's money is where the acknowledged moves put it, to the micro unit.

test_restart.py kills the market while providers bid; this kills it while tenants move funds,
on the default store (a real SQLite file under a real `market serve`), twice in a row. No
provider is registered, so nothing accrues: each tenant's account plus its escrows always add up
to what it was funded, and a deployment's escrow is exactly what was put in, up to the moves in
flight at the kill (applied or not, but never half).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core import money
from marketplace.core.errors import MarketError
from marketplace.identity import Key
from marketplace.server.testing import gpu_sdl
from tests.helpers import wait_until
from tests.server.market_process import MarketProcess

pytestmark = pytest.mark.slow

FUNDED = 1_000 * money.MICRO
OPENING = money.MICRO  # each deployment's first deposit
TOP_UP = money.MICRO // 4
TENANTS = 3
KILLS = 2


@dataclass
class Moves:
    """What one tenant did: acknowledged moves, and the one in flight when the market died."""

    created: dict[str, int] = field(default_factory=dict)  # deployment -> acknowledged deposits
    closed: set[str] = field(default_factory=set)
    in_flight: tuple[str, str] | None = None  # (kind, deployment) of an unanswered move
    acknowledged: int = 0
    failure: MarketError | None = None  # refused while the market was up: a bug


def tenant_work(client: TenantClient, moves: Moves, stop: threading.Event) -> None:
    """deploy, top up twice, close every third: until the market stops answering."""
    while not stop.is_set():
        try:
            moves.in_flight = ("create", "")
            dep = client.create_deployment(gpu_sdl(bid_window="5m"), OPENING)
            moves.created[dep.id] = OPENING
            moves.acknowledged += 1
            for _ in range(2):
                moves.in_flight = ("deposit", dep.id)
                client.deposit(dep.id, TOP_UP)
                moves.created[dep.id] += TOP_UP
                moves.acknowledged += 1
            if len(moves.created) % 3 == 0:
                moves.in_flight = ("close", dep.id)
                client.close_deployment(dep.id)
                moves.closed.add(dep.id)
                moves.acknowledged += 1
            moves.in_flight = None
        except MarketError as exc:
            if not stop.is_set():
                moves.failure = exc
            return  # the market is gone: what was in flight stays recorded


def check_books(address: str, admin: Key, keys: list[Key], all_moves: list[Moves]) -> None:
    market = MarketClient(address, admin)
    assert market.audit().balanced
    for key, moves in zip(keys, all_moves, strict=True):
        client = TenantClient(address, key)
        deployments = {d.id: d for d in client.list_deployments(owner=key.address)}
        assert set(moves.created) <= set(deployments), "an acknowledged deployment was lost"
        unexplained = set(deployments) - set(moves.created)
        kind, pending = moves.in_flight or ("", "")
        # at most the one create that was in flight, unanswered, may have landed
        assert len(unexplained) <= (1 if kind == "create" else 0)
        held = 0
        for dep_id, dep in deployments.items():
            if dep_id in moves.closed:
                assert dep.state == pb.DEPLOYMENT_CLOSED
                assert dep.escrow_balance == 0  # refunded in full
                continue
            put_in = moves.created.get(dep_id, OPENING)
            maybe = TOP_UP if (kind == "deposit" and pending == dep_id) else 0
            if dep.state == pb.DEPLOYMENT_CLOSED:  # only the close that was in flight
                assert (kind, pending) == ("close", dep_id)
                assert dep.escrow_balance == 0
                continue
            assert put_in <= dep.escrow_balance <= put_in + maybe
            held += dep.escrow_balance
        assert client.get_account().balance + held == FUNDED, "money appeared or vanished"


def test_kill_9_during_deposits_and_closes_keeps_every_tenants_money(tmp_path: Path) -> None:
    data_dir = tmp_path / "market"
    server = MarketProcess.start(data_dir)
    keys = [Key.generate() for _ in range(TENANTS)]
    all_moves = [Moves() for _ in keys]
    try:
        for key in keys:
            TenantClient(server.address, server.admin).fund(key.address, FUNDED)
        for _ in range(KILLS):
            stop = threading.Event()
            workers = [
                threading.Thread(
                    target=tenant_work,
                    args=(TenantClient(server.address, key), moves, stop),
                    daemon=True,
                )
                for key, moves in zip(keys, all_moves, strict=True)
            ]
            start = sum(m.acknowledged for m in all_moves)
            for worker in workers:
                worker.start()

            def moved(start: int = start) -> bool:
                failed = any(m.failure for m in all_moves)
                return failed or sum(m.acknowledged for m in all_moves) >= start + 45

            wait_until(
                moved,
                60,
                "45 more acknowledged money moves",
                interval=0.01,
            )
            assert not [m.failure for m in all_moves if m.failure]
            stop.set()  # (checked between moves: each tenant is in the middle of one)
            server.kill9()
            for worker in workers:
                worker.join(30)
                assert not worker.is_alive()
            server = server.restart()
            check_books(server.address, server.admin, keys, all_moves)
            resync(server.address, keys, all_moves)
        # and the market carries on: a new deployment takes money as before
        client = TenantClient(server.address, keys[0])
        before = client.get_account().balance
        client.create_deployment(gpu_sdl(bid_window="5m"), OPENING)
        assert client.get_account().balance == before - OPENING
    finally:
        server.stop()


def resync(address: str, keys: list[Key], all_moves: list[Moves]) -> None:
    """After a check, adopt what the market holds (a move in flight may have landed)."""
    for key, moves in zip(keys, all_moves, strict=True):
        for dep in TenantClient(address, key).list_deployments(owner=key.address):
            if dep.state == pb.DEPLOYMENT_CLOSED:
                moves.closed.add(dep.id)
                moves.created.setdefault(dep.id, 0)
            else:
                moves.created[dep.id] = dep.escrow_balance
        moves.in_flight = None
