"""The spot tier on the whole system as separate processes: `gpumarket market serve`, one
`gpumarket provider run` agent with room for one job (a CPU provider offering one CPU: these
machines have no GPU runtime for Docker; the rule is the same for GPUs, tests/core/test_spot.py),
real gRPC, real Docker.

A spot job takes the only slot; an on-demand job for the same slot comes: the provider bids on
it naming the spot lease, wins, and the market closes the spot lease `preempted`, billed to that
moment. The agent stops the spot container with SIGTERM and its grace period (the container
traps TERM, saves, and exits 0: not SIGKILLed), and only then starts the on-demand container.
The spot group is ordered again (restart: on-failure).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import MarketClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.demo_stack import GPUMARKET, Stack, wait_for_market
from marketplace.core import money
from provider_agent.container import LABEL_LEASE, LABEL_PROVIDER
from tests.helpers import EXAMPLES, funded_tenant

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FUNDS = 50_000_000
SPOT_PERCENT = 50
GRACE_S = 20  # the agent's preempt_grace_s: far more than the trap needs, so exit 0 proves it ran
SDL = """\
version: "2.0"
services:
  job:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: [{script!r}]
profiles:
  compute:
    job:
      resources:
        cpu: {{units: 1}}
        memory: {{size: 64Mi}}
        storage: {{size: 100Mi}}
  placement:
    anywhere:
      pricing:
        job: {{denom: uact, amount: 3000}}
deployment:
  job:
    anywhere: {{profile: job, count: 1}}
gpumarket:
  kind: training
  restart: on-failure
  auction: {{bid_window: 1s}}
"""
# a job that saves its work on the notice and exits 0 (SIGKILL would make it 137)
SPOT_JOB = (
    "trap 'echo notice: saving; sleep 1; echo saved; exit 0' TERM; echo started; "
    "while :; do sleep 1 & wait $!; done"
)
ON_DEMAND_JOB = "echo on-demand started; while :; do sleep 1 & wait $!; done"


class DockerEvents:
    """`docker events` for one provider's containers, read in a thread: (action, attributes)
    in the engine's order (create, start, kill, die, ...)."""

    def __init__(self, provider: str) -> None:
        self.events: list[tuple[str, dict[str, str]]] = []
        self._proc = subprocess.Popen(
            [
                *("docker", "events", "--format", "{{json .}}"),
                *("--filter", "type=container", "--filter", f"label={LABEL_PROVIDER}={provider}"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            event = json.loads(line)
            action = str(event.get("Action", "")).split(":")[0]  # "exec_start: sh" and the like
            attributes = {str(k): str(v) for k, v in event["Actor"]["Attributes"].items()}
            with self._lock:
                self.events.append((action, attributes))

    def of(self, lease_id: str) -> list[tuple[str, dict[str, str]]]:
        """The events of the lease's containers, in order."""
        with self._lock:
            return [(a, attrs) for a, attrs in self.events if attrs.get(LABEL_LEASE) == lease_id]

    def index(self, lease_id: str, action: str) -> int | None:
        """Where the first `action` of the lease's containers is in the whole stream."""
        with self._lock:
            for i, (a, attrs) in enumerate(self.events):
                if a == action and attrs.get(LABEL_LEASE) == lease_id:
                    return i
        return None

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(heartbeat_timeout_s=5.0, root=tmp_path / "stack", keep_root=True)
    try:
        s.start_market()
        s.add_provider(
            "cpu",
            EXAMPLES / "provider-cpu.toml",
            resources={"cpu": 1},  # one job's worth
            pricing={"spot_percent": SPOT_PERCENT, "spot_floor": "0.30"},  # floor: per GPU-hour
            runtime={"preempt_grace_s": GRACE_S},
        )
        s.start_provider("cpu")
        s.wait_providers_online(["cpu"])
        yield s
    finally:
        s.close()
        print(s.logs())  # shown by pytest when the test failed


def deploy(client: TenantClient, script: str, spot: bool) -> str:
    text = SDL.format(script=script) + ("  tier: spot\n" if spot else "")
    return str(client.create_deployment(text.encode(), 5_000_000).id)


def running_lease(client: TenantClient, deployment_id: str) -> pb.Lease | None:
    ids = client.get_deployment(deployment_id).lease_ids
    lease = client.get_lease(ids[-1]) if ids else None
    return lease if lease is not None and lease.state == pb.LEASE_RUNNING else None


def cli(stack: Stack, key_file: Path, *args: str) -> str:
    done = subprocess.run(
        [*GPUMARKET, *args, "--market", stack.address, "--key", str(key_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_on_demand_order_preempts_a_spot_lease_with_notice_and_exact_billing(
    stack: Stack, tmp_path: Path
) -> None:
    client = funded_tenant(stack.address, stack.admin_key(), FUNDS)
    assert client.key is not None
    key_file = tmp_path / "tenant.pem"
    key_file.write_bytes(client.key.to_pem())
    provider = stack.providers["cpu"].address
    docker = DockerEvents(provider)
    try:
        spot_dep = deploy(client, SPOT_JOB, spot=True)
        spot = wait_for_market(lambda: running_lease(client, spot_dep), 60, "the spot job to run")
        assert "spot" in cli(stack, key_file, "status", spot_dep)

        demand_dep = deploy(client, ON_DEMAND_JOB, spot=False)
        demand = wait_for_market(
            lambda: running_lease(client, demand_dep), 60, "the on-demand job to run"
        )
        assert demand.provider == provider
        # the same job on-demand and spot: the spot bid was spot_percent of the price (the
        # floor is per GPU-hour: this job has none)
        assert spot.price_per_hour == demand.price_per_hour * SPOT_PERCENT // 100 > 0
        [bid] = client.list_bids(demand.order_id)
        assert tuple(bid.offer.preempts) == ()  # other tenants' lease ids are not shown

        preempted = client.get_lease(spot.id)
        assert preempted.state == pb.LEASE_CLOSED and preempted.close_reason == pb.PREEMPTED
        # billed exactly to the moment it was pre-empted (the award of the on-demand lease)
        assert preempted.billed_until_ms == preempted.closed_at_ms <= demand.created_at_ms
        billed_ms = preempted.billed_until_ms - preempted.running_at_ms
        assert preempted.paid == money.accrued(preempted.price_per_hour, billed_ms) > 0
        with MarketClient(stack.address, stack.admin_key()) as market:
            entries = [e for e in market.ledger() if e.lease_id == spot.id]
            paid = sum(e.amount for e in entries if e.credit == f"acct:{provider}")
            assert paid == preempted.paid
            report = market.audit()
            assert report.balanced and not report.problems

        # the container had its notice: SIGTERM (15), then it exited 0 from its trap, and
        # the on-demand container started only after it was gone
        def spot_died() -> list[tuple[str, dict[str, str]]] | None:
            seen = docker.of(spot.id)
            return seen if any(action == "die" for action, _ in seen) else None

        seen = wait_for_market(spot_died, 30, "the spot container to stop")
        kills = [attrs.get("signal") for action, attrs in seen if action == "kill"]
        assert kills and kills[0] == "15", seen
        [died] = [attrs for action, attrs in seen if action == "die"]
        assert died.get("exitCode") == "0", seen
        start = wait_for_market(
            lambda: docker.index(demand.id, "start"), 30, "the on-demand container's start"
        )
        spot_die = docker.index(spot.id, "die")
        assert spot_die is not None and spot_die < start

        # the tenant sees why, in `gpumarket events` and the lease's status
        events = cli(stack, key_file, "events", spot_dep)
        assert "lease_preempted" in events and "pre-empted (spot)" in events
        assert "preempted" in cli(stack, key_file, "status", spot.id)
        # restart: on-failure: the spot group is ordered again (no room here now)
        wait_for_market(
            lambda: f"{spot_dep}/1/2" in client.get_deployment(spot_dep).order_ids,
            10,
            "the spot group's re-order",
        )
    finally:
        docker.close()


def test_a_spot_lease_re_adopted_after_an_agent_restart_is_still_preempted(
    stack: Stack, tmp_path: Path
) -> None:
    """The agent restarts (SIGTERM: it drains and leaves its containers) with a spot lease
    running; the new process re-adopts it as spot (its containers' labels), so an on-demand
    order for the slot still pre-empts it by the same rules: notice, grace, exit 0, then the
    on-demand container. `gpumarket status` shows the tier (and --json)."""
    client = funded_tenant(stack.address, stack.admin_key(), FUNDS)
    assert client.key is not None
    key_file = tmp_path / "tenant.pem"
    key_file.write_bytes(client.key.to_pem())
    agent = stack.providers["cpu"]
    docker = DockerEvents(agent.address)
    try:
        spot_dep = deploy(client, SPOT_JOB, spot=True)
        spot = wait_for_market(lambda: running_lease(client, spot_dep), 60, "the spot job to run")
        assert spot.tier == "spot"
        table = cli(stack, key_file, "status", spot.id)
        assert "spot" in table.splitlines()[1], table  # the lease's row: its TIER column
        shown = json.loads(cli(stack, key_file, "status", spot.id, "--json"))
        assert shown["tier"] == "spot", shown

        assert agent.proc is not None
        agent.proc.stop(grace_s=30)  # SIGTERM: the containers stay for re-adoption
        log_before = agent.proc.log_path.read_text(errors="replace")
        restarted = stack.start_provider("cpu")
        stack.wait_providers_online(["cpu"])

        def re_adopted() -> bool:
            text = restarted.log_path.read_text(errors="replace")[len(log_before) :]
            return f"re-adopted running spot lease {spot.id}" in text

        wait_for_market(re_adopted, 60, "the restarted agent to re-adopt the spot lease")
        assert running_lease(client, spot_dep) is not None  # still running, not restarted
        assert docker.index(spot.id, "kill") is None

        demand_dep = deploy(client, ON_DEMAND_JOB, spot=False)
        demand = wait_for_market(
            lambda: running_lease(client, demand_dep), 90, "the on-demand job to pre-empt"
        )
        assert demand.provider == agent.address and demand.tier == "on-demand"
        preempted = client.get_lease(spot.id)
        assert preempted.state == pb.LEASE_CLOSED and preempted.close_reason == pb.PREEMPTED
        assert preempted.billed_until_ms == preempted.closed_at_ms <= demand.created_at_ms

        def spot_died() -> list[tuple[str, dict[str, str]]] | None:
            seen = docker.of(spot.id)
            return seen if any(action == "die" for action, _ in seen) else None

        seen = wait_for_market(spot_died, 30, "the spot container to stop")
        kills = [attrs.get("signal") for action, attrs in seen if action == "kill"]
        assert kills and kills[0] == "15", seen  # the notice, then its grace period
        [died] = [attrs for action, attrs in seen if action == "die"]
        assert died.get("exitCode") == "0", seen
        start = wait_for_market(
            lambda: docker.index(demand.id, "start"), 30, "the on-demand container's start"
        )
        spot_die = docker.index(spot.id, "die")
        assert spot_die is not None and spot_die < start
        with MarketClient(stack.address, stack.admin_key()) as market:
            report = market.audit()
            assert report.balanced and not report.problems
    finally:
        docker.close()


def test_a_preempting_bid_won_after_the_agent_was_killed_stops_the_spot_lease_first(
    stack: Stack, tmp_path: Path
) -> None:
    """The agent bids on an on-demand order naming its spot lease, and is SIGKILLed before the
    auction closes: the bid's names die with it. The restarted agent learns of the win and of
    the pre-emption from the market; it stops the spot lease (notice, grace) before it starts
    the on-demand lease, whose room that lease held, so the on-demand lease runs."""
    client = funded_tenant(stack.address, stack.admin_key(), FUNDS)
    agent = stack.providers["cpu"]
    docker = DockerEvents(agent.address)
    try:
        spot_dep = deploy(client, SPOT_JOB, spot=True)
        spot = wait_for_market(lambda: running_lease(client, spot_dep), 60, "the spot job to run")
        assert agent.proc is not None
        log_before = agent.proc.log_path.read_text(errors="replace")
        text = SDL.format(script=ON_DEMAND_JOB).replace("bid_window: 1s", "bid_window: 8s")
        demand_dep = str(client.create_deployment(text.encode(), 5_000_000).id)
        order_id = client.get_deployment(demand_dep).order_ids[0]

        def bid_placed() -> bool:
            assert agent.proc is not None
            new = agent.proc.log_path.read_text(errors="replace")[len(log_before) :]
            return f"/h on {order_id} (" in new

        wait_for_market(bid_placed, 30, "the agent's pre-empting bid")
        stack.kill_provider("cpu")  # SIGKILL: no withdrawal, no goodbye
        stack.start_provider("cpu")

        demand = wait_for_market(
            lambda: running_lease(client, demand_dep), 90, "the on-demand lease to run"
        )
        assert demand.provider == agent.address
        preempted = client.get_lease(spot.id)
        assert preempted.state == pb.LEASE_CLOSED and preempted.close_reason == pb.PREEMPTED

        def spot_died() -> list[tuple[str, dict[str, str]]] | None:
            seen = docker.of(spot.id)
            return seen if any(action == "die" for action, _ in seen) else None

        seen = wait_for_market(spot_died, 30, "the spot container to stop")
        kills = [attrs.get("signal") for action, attrs in seen if action == "kill"]
        assert kills and kills[0] == "15", seen
        start = docker.index(demand.id, "start")
        spot_die = docker.index(spot.id, "die")
        assert start is not None and spot_die is not None and spot_die < start
    finally:
        docker.close()
