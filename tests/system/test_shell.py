"""`gpumarket shell` and `gpumarket cp` through the whole system: `market serve` and `provider run`
as separate processes, the real CLI as a process (under a pty for the interactive session), real
gRPC, real Docker. The market relays every byte over streams the agent opened.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from marketplace.api.client import TenantClient
from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.demo_stack import GPUMARKET, Stack, wait_for_market
from marketplace.core.errors import FailedPrecondition, PermissionDenied
from marketplace.identity import Key
from tests.helpers import EXAMPLES, funded_tenant

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FUNDS = 50_000_000
DEPOSIT = 5_000_000
SERVICE_SDL = """
version: "2.0"
services:
  box:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: ["mkdir -p /data && exec sleep 3600"]
profiles:
  compute:
    box:
      resources:
        cpu: {units: 1}
        memory: {size: 256Mi}
        storage: {size: 1Gi}
  placement:
    here:
      pricing:
        box: {denom: uact, amount: 3000}
deployment:
  box:
    here: {profile: box, count: 1}
gpumarket:
  kind: service
  auction:
    bid_window: 1s
"""


@dataclass
class Running:
    """A stack with one running lease, and its tenant."""

    stack: Stack
    tenant: TenantClient
    key_path: Path
    lease_id: str

    def cli(self, *args: str, key: Path | None = None) -> list[str]:
        return [
            *GPUMARKET,
            *args[:1],
            "--market",
            self.stack.address,
            "--key",
            str(key or self.key_path),
            *args[1:],
        ]

    def run(
        self, *args: str, key: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.cli(*args, key=key),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )


def start_stack(root: Path, **shell: object) -> Running:
    stack = Stack(heartbeat_timeout_s=5.0, root=root, keep_root=True)
    try:
        stack.start_market()
        overrides = {"shell": dict(shell)} if shell else {}
        stack.add_provider("cpu", EXAMPLES / "provider-cpu.toml", **overrides)
        stack.start_provider("cpu")
        stack.wait_providers_online(["cpu"])
        tenant = funded_tenant(stack.address, stack.admin_key(), FUNDS)
        assert tenant.key is not None
        key_path = root / "tenant.pem"
        key_path.write_bytes(tenant.key.to_pem())
        dep = tenant.create_deployment(SERVICE_SDL.encode(), DEPOSIT)

        def running() -> str | None:
            found = tenant.get_deployment(dep.id)
            for lease_id in found.lease_ids:
                if tenant.get_lease(lease_id).state == pb.LEASE_RUNNING:
                    return lease_id
            return None

        lease_id = wait_for_market(running, 60, "the lease to run")
        return Running(stack, tenant, key_path, lease_id)
    except BaseException:
        print(stack.logs())
        stack.close()
        raise


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    world = start_stack(tmp_path_factory.mktemp("shell"))
    try:
        yield world
    finally:
        world.stack.close()
        print(world.stack.logs())


def test_a_command_prints_its_output_and_exits_with_its_code(running: Running) -> None:
    done = running.run("shell", running.lease_id, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert done.stdout == b"hi\n", done.stderr
    assert done.stderr == b"oops\n"
    assert done.returncode == 3


def test_stdin_reaches_the_command_and_its_eof_ends_it(running: Running) -> None:
    done = subprocess.run(
        running.cli("shell", running.lease_id, "--", "wc", "-c"),
        input=b"x" * 100_000,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"100000"
