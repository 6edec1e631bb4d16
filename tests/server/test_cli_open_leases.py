"""`gpumarket shell D1` after a failover: the short form counts only open leases for a shell or
a copy (they need a container), so it names the lease running now, not also the one lost;
`logs D1` still sees both (a closed lease's logs are worth reading). Real marketplace
(in-process gRPC on port 0, SQLite), a provider played by a ProviderClient."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.ids import Ids
from marketplace.core.errors import InvalidArgument
from marketplace.identity import load_key
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.helpers import wait_until
from tests.server.test_cli_tenant import admin_pem, funded, ok, provider, run, server

__all__ = ["admin_pem", "server"]  # fixtures


def test_a_shell_names_the_open_lease_after_a_failover(
    server: ServerThread, admin_pem: Path, tmp_path: Path
) -> None:
    funded(server, admin_pem)
    sdl = tmp_path / "job.yaml"
    sdl.write_bytes(gpu_sdl().replace(b"restart: never", b"restart: on-failure"))
    ok(server, "deploy", str(sdl), "--deposit", "5", "--no-wait")
    box = provider(server, "box")

    def lease_of(order_id: str) -> pb.Lease:
        """The box bids on the order and wins it when its window closes."""
        box.place_bid(order_id, 600_000)
        with TenantClient(server.address, load_key("alice")) as alice:
            return wait_until(
                lambda: next((x for x in alice.list_leases() if x.order_id == order_id), None),
                30,
                f"a lease on {order_id}",
            )

    first = lease_of("D1/1/1")
    box.report_status(pb.LeaseStatusReport(lease_id=first.id, state=pb.LEASE_RUNNING))
    # it fails: the group is ordered again (restart: on-failure), the same box wins it
    box.report_status(
        pb.LeaseStatusReport(lease_id=first.id, state=pb.LEASE_CLOSED, exited=True, exit_code=1)
    )
    second = lease_of("D1/1/2")
    box.report_status(pb.LeaseStatusReport(lease_id=second.id, state=pb.LEASE_RUNNING))

    with TenantClient(server.address, load_key("alice")) as alice:
        assert Ids(alice).lease("D1", open_only=True) == second.id
        with pytest.raises(InvalidArgument, match="matches 2 leases"):
            Ids(alice).lease("D1")
    # through the CLI: `logs D1` is still ambiguous; `cp` resolves D1 to the open lease (no
    # agent holds a session here, so it is refused after that, naming the lease)
    assert "matches 2 leases" in run(server, "logs", "D1").output
    copied = run(server, "cp", "D1:/etc/hostname", str(tmp_path / "out"))
    assert "matches" not in copied.output and copied.exit_code != 0, copied.output
