"""A 2-node gang on the whole system: `gpumarket market serve`, two `gpumarket provider run`
agents, real gRPC, real Docker. Both nodes are leased together, each container gets its rank,
the world size and rank 0's address, and rank 1 reaches rank 0 through the port rank 0's
provider publishes (busybox `nc`). SIGKILLing one agent stops and re-auctions both nodes.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.demo_stack import IMAGE, Stack, ensure_image, wait_for_market
from tests.helpers import EXAMPLES, funded_tenant

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HEARTBEAT_TIMEOUT_S = 3.0
FUNDS = 20_000_000
DEPOSIT = 5_000_000
NODES = ("a", "b")


def bridge_gateway() -> str:
    """An address of this host that containers reach (Docker's default bridge gateway): the
    providers' public host in this test, as a real host's public address would be."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    config = json.loads(out)[0]
    # an engine restarted on a kept bridge may list no gateway: Docker gives it the subnet's first
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def gang_sdl(port: int) -> bytes:
    script = (
        'echo "rank $RANK of $WORLD_SIZE master $MASTER_ADDR:$MASTER_PORT gang $GPUMARKET_GANG_ID"; '
        'if [ "$RANK" = 0 ]; then '
        'while true; do echo "hello from rank 0" | nc -l -p "$MASTER_PORT"; done; '
        "else "
        'until nc -w 2 "$MASTER_ADDR" "$MASTER_PORT" </dev/null >/tmp/got 2>/dev/null '
        "&& grep -q hello /tmp/got; do sleep 0.3; done; "
        'echo "reached rank 0: $(cat /tmp/got)"; sleep 3600; fi'
    )
    return f"""version: "2.0"
services:
  node:
    image: {IMAGE}
    command: ["sh", "-c"]
    args: [{json.dumps(script)}]
profiles:
  compute:
    node:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 128Mi
        storage:
          size: 512Mi
  placement:
    anywhere:
      pricing:
        node:
          denom: uact
          amount: 5000
deployment:
  node:
    anywhere:
      profile: node
      count: 1
gpumarket:
  kind: training
  restart: on-failure
  auction:
    bid_window: 2s
  gang:
    nodes: 2
    min_bandwidth: 1Gbps
    port: {port}
""".encode()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    ensure_image(print)
    host = bridge_gateway()
    s = Stack(heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, root=tmp_path / "stack", keep_root=True)
    try:
        s.start_market()
        for name in NODES:
            s.add_provider(
                name,
                EXAMPLES / "provider-cpu.toml",
                provider={"host_uri": f"http://{host}"},
                network={"up_mbps": 10_000, "down_mbps": 10_000},
            )
            s.start_provider(name)
        s.wait_providers_online(list(NODES))
        yield s
    finally:
        s.close()
        print(s.logs())


def gang_leases(client: TenantClient, dep_id: str, oseq: int) -> list[pb.Lease] | None:
    """Both nodes' leases of the gang's `oseq`-th auction, by rank, once both run."""
    dep = client.get_deployment(dep_id)
    found = {}
    for lease_id in dep.lease_ids:
        _, gseq, order_seq, _ = lease_id.split("/", 3)
        if int(order_seq) == oseq:
            found[int(gseq) - 1] = client.get_lease(lease_id)
    if len(found) < 2 or any(x.state != pb.LEASE_RUNNING for x in found.values()):
        return None
    return [found[0], found[1]]


def reached(client: TenantClient, lease_id: str) -> list[str] | None:
    lines = [x.line for x in client.stream_logs(lease_id)]
    return lines if any(line.startswith("reached rank 0: hello") for line in lines) else None


def container_env(lease_id: str) -> dict[str, str]:
    found = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.gpumarket.lease={lease_id}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert found, f"no running container for {lease_id}"
    inspected = subprocess.run(
        ["docker", "inspect", "--format", "{{json .Config.Env}}", found[0]],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(item.partition("=")[::2] for item in json.loads(inspected))


def assert_rendezvous(
    stack: Stack, client: TenantClient, leases: list[pb.Lease], port: int
) -> None:
    master = bridge_gateway()
    assert leases[0].provider != leases[1].provider  # one node per provider
    for rank, lease in enumerate(leases):
        env = container_env(lease.id)
        assert env["RANK"] == str(rank)
        assert env["WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == master
        assert env["MASTER_PORT"] == str(port)
        assert env["GPUMARKET_GANG_ID"] == lease.id.split("/")[0]
    # rank 1 (on the other provider) connected to rank 0 at MASTER_ADDR:MASTER_PORT
    lines = wait_for_market(lambda: reached(client, leases[1].id), 30, "rank 1 to reach rank 0")
    assert f"rank 1 of 2 master {master}:{port}" in " ".join(lines)


def test_a_two_node_gang_starts_together_meets_and_is_reauctioned_when_a_node_dies(
    stack: Stack,
) -> None:
    client = funded_tenant(stack.address, stack.admin_key(), FUNDS)
    port = free_port()
    dep = client.create_deployment(gang_sdl(port), DEPOSIT)
    assert len(dep.order_ids) == 2  # one order per node
    first = wait_for_market(lambda: gang_leases(client, dep.id, 1), 45, "both nodes to run")
    assert abs(first[0].created_at_ms - first[1].created_at_ms) == 0  # awarded together
    assert_rendezvous(stack, client, first, port)

    # rank 1's agent dies: its lease is lost, rank 0's is stopped with it, both re-auctioned
    victim = stack.provider_by_address(first[1].provider)
    stack.kill_provider(victim.name)

    def stopped() -> list[pb.Lease] | None:
        leases = [client.get_lease(x.id) for x in first]
        return leases if all(x.state == pb.LEASE_CLOSED for x in leases) else None

    gang_stopped, lost = wait_for_market(stopped, HEARTBEAT_TIMEOUT_S + 15, "the gang to stop")
    assert lost.close_reason == pb.PROVIDER_LOST
    assert gang_stopped.close_reason == pb.GANG_STOPPED
    assert gang_stopped.message.startswith("gang stopped: rank 1 ")
    assert gang_stopped.billed_until_ms == gang_stopped.closed_at_ms  # billed to that moment
    for gseq in (1, 2):
        assert client.get_order(f"{dep.id}/{gseq}/2").state == pb.ORDER_OPEN

    # with one provider left, no node is leased (a gang's nodes need distinct providers);
    # once the agent is back, the whole gang is won again and meets again
    stack.start_provider(victim.name)
    again = wait_for_market(lambda: gang_leases(client, dep.id, 2), 60, "the gang to run again")
    assert again[0].created_at_ms == again[1].created_at_ms
    assert_rendezvous(stack, client, again, port)

    client.close_deployment(dep.id)
    account = client.get_account()
    assert account.escrowed == 0
