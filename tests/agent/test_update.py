"""Update in place, the supervisor's rules on the in-memory runtime: the new version replaces the
containers on the same names, host ports and volumes; a missing image, a refused start or a new
container that exits at once fail the update and the old version runs again
(tests/system/test_update_e2e.py does it on the real engine, over HTTP)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.core.manifest import Manifest, parse_manifest
from marketplace.core.matching import Allocation, Capacity, allocate
from marketplace.core.resources import GroupSpec
from provider_agent.container import ContainerSpec
from provider_agent.memory_runtime import MemoryRuntime
from provider_agent.runtime import published_ports
from provider_agent.supervisor import LeaseSupervisor, StatusReport
from tests.agent.supervision import Recorder, stored, until
from tests.agent.test_supervisor import EXPOSE, GIB, H100, IMAGE, only, supervise

V1 = stored("exec httpd -f -p 80").replace(b"    params:", EXPOSE.encode() + b"    params:", 1)
LEASE = "D1/1/1/prov"


def version(image: str) -> bytes:
    return V1.replace(IMAGE.encode(), image.encode())


@pytest.fixture
def runtime() -> MemoryRuntime:
    return MemoryRuntime("gm1provider", images=[IMAGE], unpullable=["gone:1"])


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def sup(runtime: MemoryRuntime, rec: Recorder, tmp_path: Path) -> Iterator[LeaseSupervisor]:
    supervisor = supervise(runtime, rec, tmp_path)
    supervisor.update_settle_s = 0.05
    supervisor.start_lease(LEASE, *_parsed(V1), version=1)
    yield supervisor
    supervisor.close()


def _parsed(text: bytes) -> tuple[Manifest, GroupSpec, Allocation]:
    manifest = parse_manifest(text, "test")
    group = manifest.groups[0]
    alloc = allocate(group, Capacity(8000, 8 * GIB, 100 * GIB, H100))
    assert isinstance(alloc, Allocation), alloc
    return manifest, group, alloc


def update(sup: LeaseSupervisor, text: bytes, to: int = 2) -> StatusReport | None:
    return sup.update_lease(LEASE, *_parsed(text), version=to)


def test_the_new_version_runs_on_the_same_name_port_and_volume(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    before = only(runtime, LEASE)
    volumes = runtime.volumes(LEASE)
    report = update(sup, version("gpumarket/busybox:v2"))
    assert report is not None and report.running and not report.update_failed
    assert (report.version, report.message) == (2, "version 2 running")
    after = only(runtime, LEASE)  # the old container is gone
    assert after.id != before.id and after.running
    assert runtime.spec_of(after.id).image == "gpumarket/busybox:v2"
    assert (after.name, after.ports) == (before.name, before.ports)
    assert runtime.volumes(LEASE) == volumes  # the same persistent volume, mounted again
    assert [v.mount for v in runtime.spec_of(after.id).named_volumes] == ["/data"]
    assert after.label("io.gpumarket.version") == "2"
    assert not any(r.exited for r in rec.reports)  # the old one's stop is not the lease's exit
    assert update(sup, version("gpumarket/busybox:v2")) is None  # version 2 runs already
    runtime.finish(after.id, 1)  # the new container is watched: its exit is the lease's
    assert rec.exited().exit_code == 1


def test_a_missing_image_fails_before_anything_is_touched(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    before = only(runtime, LEASE)
    report = update(sup, version("gone:1"))
    assert report is not None and report.update_failed and report.version == 2
    assert "gone:1" in report.message
    assert only(runtime, LEASE) == before


def test_a_refused_start_restores_the_old_version(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    before = only(runtime, LEASE)
    runtime.refuse_starts("no such entrypoint", image="gpumarket/busybox:broken")
    report = update(sup, version("gpumarket/busybox:broken"))
    assert report is not None and report.update_failed
    assert "no such entrypoint" in report.message
    again = only(runtime, LEASE)  # made again from its spec, on its own host port
    assert (again.name, again.ports, again.running) == (before.name, before.ports, True)
    assert runtime.spec_of(again.id).image == IMAGE
    runtime.finish(again.id, 3)  # watched again: its exit is reported
    assert rec.exited().exit_code == 3


def test_a_new_container_that_exits_at_once_restores_the_old_version(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    sup.update_settle_s = 0.5  # the new container ends well within it
    before = only(runtime, LEASE)

    def crash_the_new_one() -> None:
        until(lambda: any(s.id != before.id and s.running for s in runtime.owned(LEASE)))
        [new] = [s for s in runtime.owned(LEASE) if s.id != before.id]
        runtime.finish(new.id, 127)

    crasher = threading.Thread(target=crash_the_new_one)
    crasher.start()
    report = update(sup, version("gpumarket/busybox:exits"))
    crasher.join()
    assert report is not None and report.update_failed
    assert "exited with code 127" in report.message
    again = only(runtime, LEASE)
    assert (again.name, again.ports, again.running) == (before.name, before.ports, True)
    assert runtime.spec_of(again.id).image == IMAGE


def test_a_readopted_lease_is_restored_by_restart_and_updated_later(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder, tmp_path: Path
) -> None:
    before = only(runtime, LEASE)
    sup.close()  # the agent restarts: its containers keep running
    again = supervise(runtime, rec, tmp_path)
    again.update_settle_s = 0.05
    try:
        assert again.adopt() == [LEASE]
        runtime.refuse_starts("broken", image="gpumarket/busybox:broken")
        failed = update(again, version("gpumarket/busybox:broken"))
        assert failed is not None and failed.update_failed
        restarted = only(runtime, LEASE)  # no spec after a restart: the old one started again
        assert (restarted.id, restarted.name, restarted.running) == (before.id, before.name, True)
        done = update(again, version("gpumarket/busybox:v3"), to=3)
        assert done is not None and (done.version, done.update_failed) == (3, False)
        assert runtime.spec_of(only(runtime, LEASE).id).image == "gpumarket/busybox:v3"
    finally:
        again.close()


def test_an_update_cut_short_by_an_agent_restart_leaves_the_old_version_running(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder, tmp_path: Path
) -> None:
    before = only(runtime, LEASE)
    sup.close()
    runtime.stop(before.id)  # what an update does before it starts the new version...
    runtime.rename(before.id, before.name + "-previous")  # ...and then the agent died
    again = supervise(runtime, rec, tmp_path)
    try:
        assert again.adopt() == [LEASE]
        back = only(runtime, LEASE)
        assert (back.id, back.name, back.running) == (before.id, before.name, True)
    finally:
        again.close()


def test_docker_publishes_pinned_host_ports_and_random_ones_otherwise() -> None:
    spec = ContainerSpec("L", "web", IMAGE, ports=(80, 81), udp_ports=(53,))
    pinned = dataclasses.replace(spec, host_ports=((80, 32800),), host_udp_ports=((53, 32853),))
    assert published_ports(pinned) == {
        "80/tcp": ("127.0.0.1", 32800),
        "81/tcp": ("127.0.0.1", None),
        "53/udp": ("127.0.0.1", 32853),
    }
    everywhere = dataclasses.replace(pinned, publish_ip="0.0.0.0")
    assert published_ports(everywhere) == {"80/tcp": 32800, "81/tcp": None, "53/udp": 32853}
    assert pinned.digest == spec.digest  # where it is published is not what it is
