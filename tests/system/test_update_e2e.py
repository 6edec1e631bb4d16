"""Update in place on the whole system as separate processes: `gpumarket market serve`, a
`gpumarket provider run` agent with its HTTP ingress, real Docker containers, and the tenant's
`gpumarket update --wait` CLI.

An inference-style busybox httpd serves a file holding its version; the update to v2 is fetched
from the same endpoint (host port and ingress name) that served v1, and v2 reads what v1 wrote
on the persistent volume. An update to an image no registry has is reported failed and v1 keeps
answering; so does one whose new container exits at once (the old version comes back).
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.demo_stack import GPUMARKET, Stack, wait_for_market
from marketplace.core.events import DeploymentEventKind
from tests.helpers import EXAMPLES, funded_tenant

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOMAIN = "leases.test"
SERVE = (
    'mkdir -p /www && echo "$VERSION" > /www/version && '
    '{{ [ -f /data/note ] || echo "written by $VERSION" > /data/note; }} && '
    "cp /data/note /www/note && {start}"
)
SDL = """\
version: "2.0"
services:
  model:
    image: {image}
    command: ["sh", "-c"]
    args: [{script!r}]
    env: ["VERSION={version}"]
    expose:
      - port: 8080
        as: 80
        to:
          - global: true
    params:
      storage:
        data:
          mount: /data
profiles:
  compute:
    model:
      resources:
        cpu: {{units: 0.5}}
        memory: {{size: 64Mi}}
        storage:
          - size: 100Mi
          - name: data
            size: 50Mi
            attributes: {{persistent: true, class: beta2}}
  placement:
    anywhere:
      pricing:
        model: {{denom: uact, amount: 2000}}
deployment:
  model:
    anywhere: {{profile: model, count: 1}}
gpumarket:
  kind: inference
  restart: never
  auction: {{bid_window: 1s}}
"""
HTTPD = "exec httpd -f -p 8080 -h /www"


def sdl(version: str, image: str = "gpumarket/busybox:latest", start: str = HTTPD) -> str:
    return SDL.format(image=image, version=version, script=SERVE.format(start=start))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(heartbeat_timeout_s=5.0, root=tmp_path / "stack", keep_root=True)
    try:
        s.start_market()
        s.add_provider(
            "cpu",
            EXAMPLES / "provider-cpu.toml",
            ingress={"listen": "127.0.0.1:0", "domain": DOMAIN},
        )
        s.start_provider("cpu")
        s.wait_providers_online(["cpu"])
        yield s
    finally:
        s.close()  # agents, marketplace, then every container labelled with our provider
        print(s.logs())  # shown by pytest when the test failed


def fetch(endpoint: pb.Endpoint, path: str) -> str | None:
    """GET `path` from one endpoint of the lease: a direct host port, or the ingress (its port,
    with the lease's hostname as Host)."""
    direct = not endpoint.host.endswith(DOMAIN)
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.external_port, timeout=2)
    try:
        conn.request("GET", path, headers={} if direct else {"Host": endpoint.host})
        answer = conn.getresponse()
        return answer.read().decode().strip() if answer.status == 200 else None
    except OSError:
        return None  # httpd in the container is still starting
    finally:
        conn.close()


def serves(lease: pb.Lease, path: str, expected: str) -> None:
    """Every endpoint of the lease answers `path` with `expected` (within a deadline)."""
    assert len(lease.endpoints) == 2  # the host port and the ingress name
    for endpoint in lease.endpoints:
        wait_for_market(
            lambda e=endpoint: fetch(e, path) == expected,  # type: ignore[misc]
            20,
            f"{endpoint.host}:{endpoint.external_port}{path} to answer {expected!r}",
        )


def running_v1(stack: Stack, tmp_path: Path) -> tuple[TenantClient, Path, pb.Deployment, pb.Lease]:
    client = funded_tenant(stack.address, stack.admin_key(), 20_000_000)
    assert client.key is not None
    key_file = tmp_path / "tenant.pem"
    key_file.write_bytes(client.key.to_pem())
    dep = client.create_deployment(sdl("v1").encode(), 5_000_000)

    def lease_v1() -> pb.Lease | None:
        ids = client.get_deployment(dep.id).lease_ids
        lease = client.get_lease(ids[-1]) if ids else None
        return lease if lease is not None and lease.version == 1 else None

    lease = wait_for_market(lease_v1, 60, "version 1 to run")
    serves(lease, "/version", "v1")
    return client, key_file, dep, lease


def update_cli(
    stack: Stack, key_file: Path, dep_id: str, text: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "update.yaml"
    path.write_text(text)
    connection = ["--market", stack.address, "--key", str(key_file)]
    return subprocess.run(
        [
            *GPUMARKET,
            "update",
            dep_id,
            str(path),
            "--wait",
            "--timeout",
            "60",
            "--json",
            *connection,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=stack.env(),
    )


def test_the_new_version_answers_on_the_same_endpoint_and_reads_the_volume(
    stack: Stack, tmp_path: Path
) -> None:
    client, key_file, dep, v1 = running_v1(stack, tmp_path)
    serves(v1, "/note", "written by v1")

    done = update_cli(stack, key_file, dep.id, sdl("v2"), tmp_path)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["changes"] == ["model: env (VERSION)"]
    assert said["leases"] == [{"lease_id": v1.id, "outcome": "running", "message": ""}]

    v2 = client.get_lease(v1.id)
    assert v2.version == 2 and v2.state == pb.LEASE_RUNNING
    assert list(v2.endpoints) == list(v1.endpoints)  # the tenant's URLs stay
    serves(v1, "/version", "v2")  # fetched from v1's endpoints
    serves(v1, "/note", "written by v1")  # v2 read what v1 left on the persistent volume
    kinds = kinds_until(client, dep.id, DeploymentEventKind.UPDATE_RUNNING)
    assert kinds.index(DeploymentEventKind.DEPLOYMENT_UPDATED) > kinds.index(
        DeploymentEventKind.LEASE_RUNNING
    )


def test_a_failed_update_is_reported_and_the_old_version_keeps_answering(
    stack: Stack, tmp_path: Path
) -> None:
    client, key_file, dep, v1 = running_v1(stack, tmp_path)

    missing = update_cli(
        stack, key_file, dep.id, sdl("v2", image="gpumarket/busybox:gone"), tmp_path
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("Error: version 2 did not start")
    lease = client.get_lease(v1.id)
    assert (lease.version, lease.failed_version) == (1, 2)
    assert "gpumarket/busybox:gone" in lease.message
    serves(v1, "/version", "v1")

    crashing = update_cli(stack, key_file, dep.id, sdl("v3", start="exit 3"), tmp_path)
    assert crashing.returncode == 1, crashing.stdout
    [outcome] = json.loads(crashing.stdout)["leases"]
    assert outcome["outcome"] == "failed" and "exited with code 3" in outcome["message"]
    lease = client.get_lease(v1.id)
    assert (lease.version, lease.failed_version, lease.state) == (1, 3, pb.LEASE_RUNNING)
    assert list(lease.endpoints) == list(v1.endpoints)
    serves(v1, "/version", "v1")  # the old version came back on the same endpoints


def kinds_until(client: TenantClient, dep_id: str, last: str) -> list[str]:
    """The deployment's event kinds, replayed, up to the first `last` (awaited, not slept for)."""
    kinds = []
    for event in client.watch_deployment(dep_id):
        kinds.append(event.kind)
        if event.kind == last:
            return kinds
    raise AssertionError(f"no {last} event: {kinds}")
