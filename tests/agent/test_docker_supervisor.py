"""Leases run by the supervisor on the real Docker engine: status, logs, restarts, re-adoption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import Manifest, parse_manifest
from marketplace.core.matching import Allocation, Capacity, GpuDevice, allocate
from provider_agent.config import RuntimeSection
from provider_agent.runtime import DockerRuntime
from provider_agent.supervisor import LeaseSupervisor, StatusReport
from tests.agent.supervision import Recorder, sdl
from tests.agent.test_docker_runtime import H100_UUID, cleanup_provider
from tests.helpers import REPO, wait_until

pytestmark = pytest.mark.docker
GIB = 1 << 30


@pytest.fixture
def provider() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    rt = DockerRuntime.connect(name)
    cleanup_provider(rt.client, name)
    rt.close()


def supervise(
    provider: str, rec: Recorder, state_dir: Path | None = None, max_restarts: int = 3
) -> LeaseSupervisor:
    rt = DockerRuntime.connect(provider)
    return LeaseSupervisor(
        rt, RuntimeSection(max_restarts=max_restarts), rec.report, rec.ship, state_dir=state_dir
    )


def engine(sup: LeaseSupervisor) -> DockerRuntime:
    assert isinstance(sup.runtime, DockerRuntime)
    return sup.runtime


def start(
    sup: LeaseSupervisor, manifest: Manifest, gpus: tuple[GpuDevice, ...] = ()
) -> tuple[str, StatusReport]:
    group = manifest.groups[0]
    alloc = allocate(group, Capacity(8000, 8 * GIB, 100 * GIB, gpus))
    assert isinstance(alloc, Allocation)
    lease = f"D{uuid.uuid4().hex[:6]}/1/1/prov"
    return lease, sup.start_lease(lease, manifest, group, alloc)


def test_lease_runs_logs_and_completes(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    lease, first = start(sup, parse_manifest(sdl("echo hello; echo warn >&2; echo done")))
    assert first.running
    final = rec.exited()
    assert (final.exit_code, final.oom_killed) == (0, False)
    rec.wait_for(lambda r: "done" in r.texts())
    assert rec.texts("stdout") == ["hello", "done"]
    assert rec.texts("stderr") == ["warn"]
    assert "job: exited 0" in rec.texts("system")
    sup.stop_lease(lease)
    assert sup.runtime.owned(lease) == []
    assert engine(sup).client.networks.list(filters={"label": f"io.gpumarket.lease={lease}"}) == []
    sup.close()


def test_failing_job_reports_its_exit_code_after_its_restarts(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec, max_restarts=1)
    start(sup, parse_manifest(sdl("echo try; exit 3", restart="on-failure")))
    final = rec.exited()
    assert final.exit_code == 3 and not final.oom_killed
    assert "exited with code 3" in final.message
    rec.wait_for(lambda r: r.texts("stdout").count("try") == 2)  # ran, restarted once, gave up
    assert any("restarting (1 left)" in t for t in rec.texts("system"))
    sup.close()


def test_job_over_its_memory_is_reported_oom_killed(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    start(sup, parse_manifest(sdl("tail /dev/zero", memory="16Mi")))
    final = rec.exited()
    assert final.oom_killed and final.exit_code == 137
    assert "out of memory" in final.message
    sup.close()


def test_published_port_is_reported_as_an_endpoint(provider: str) -> None:
    expose = "    expose:\n      - port: 80\n        to:\n          - global: true\n"
    rec = Recorder()
    sup = supervise(provider, rec)
    _, first = start(sup, parse_manifest(sdl("httpd -f -p 80 -h /www", expose=expose)))
    [endpoint] = first.endpoints
    assert endpoint.port == 80 and endpoint.external_port > 0
    assert endpoint.uri == f"http://127.0.0.1:{endpoint.external_port}"
    sup.close()


def test_gpu_lease_without_nvidia_runtime_fails_with_the_reason(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    h100 = (GpuDevice(H100_UUID, GpuVariant("h100", 80, "sxm")),)
    lease, first = start(sup, parse_manifest(sdl("nvidia-smi", gpu=True)), h100)
    assert not first.running and first.exited
    assert "could not select device driver" in first.message
    assert sup.runtime.owned(lease) == []  # nothing leaked
    sup.close()


def test_pull_failure_fails_the_lease_with_the_reason(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    manifest = parse_manifest(
        sdl("true").replace(b"gpumarket/busybox:latest", b"gpumarket/absent:1")
    )
    _, first = start(sup, manifest)
    assert first.exited and "pull gpumarket/absent:1 failed" in first.message
    rec.wait_for(lambda r: any("pulling gpumarket/absent:1" in t for t in r.texts("system")))
    sup.close()


CHILD = """
import sys, time, uuid
from pathlib import Path
from marketplace.core.manifest import parse_manifest
from marketplace.core.matching import allocate, Capacity
from provider_agent.config import RuntimeSection
from provider_agent.runtime import DockerRuntime
from provider_agent.supervisor import LeaseSupervisor

provider, state, sdl_path, shipped = sys.argv[1:5]
out = open(shipped, "a")
def ship(lease, lines, delivered):
    for line in lines:
        out.write(line.text + "\\n")
    out.flush()
    delivered()
sup = LeaseSupervisor(DockerRuntime.connect(provider), RuntimeSection(), lambda r: None, ship,
                      state_dir=Path(state))
m = parse_manifest(Path(sdl_path).read_bytes())
g = m.groups[0]
sup.start_lease("Dkill/1/1/prov", m, g, allocate(g, Capacity(8000, 8 << 30, 100 << 30)))
print("READY", flush=True)
time.sleep(600)
"""


def test_agent_killed_with_sigkill_re_adopts_its_container(provider: str, tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_bytes(sdl("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"))
    shipped = tmp_path / "shipped.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, provider, str(tmp_path), str(manifest), str(shipped)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY"
    wait_until(
        lambda: shipped.exists() and shipped.read_text().count("tick") >= 5,
        20,
        "the first agent to ship logs",
    )
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    before = [int(t.split()[1]) for t in shipped.read_text().split("\n") if t.startswith("tick")]

    rec = Recorder()
    sup = supervise(provider, rec, state_dir=tmp_path)
    [original] = sup.runtime.owned()
    assert sup.adopt() == ["Dkill/1/1/prov"]
    [after] = sup.runtime.owned()
    assert after.id == original.id and after.running  # re-adopted, not duplicated
    rec.wait_for(lambda r: len([t for t in r.texts("stdout") if t.startswith("tick")]) >= 3)
    resumed = [int(t.split()[1]) for t in rec.texts("stdout") if t.startswith("tick")]
    # logs resume where the dead agent's cursor stopped: not from the start
    assert resumed[0] >= max(before) - 2 and resumed[0] > 0
    assert sup.running_leases() == ["Dkill/1/1/prov"]
    sup.stop_lease("Dkill/1/1/prov")
    assert sup.runtime.owned() == []
    sup.close()


TWO_SERVICES = b"""
version: "2.0"
services:
  web:
    image: gpumarket/busybox:latest
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    expose:
      - port: 80
        to:
          - service: client
  client:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: ["until wget -q -O - http://web/; do sleep 0.1; done"]
profiles:
  compute:
    small:
      resources:
        cpu: {units: 0.5}
        memory: {size: 64Mi}
        storage: {size: 100Mi}
  placement:
    here:
      pricing:
        small: {denom: uact, amount: 100}
deployment:
  web:
    here: {profile: small, count: 1}
  client:
    here: {profile: small, count: 1}
"""


def test_services_of_one_lease_reach_each_other_by_name(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    lease, first = start(sup, parse_manifest(TWO_SERVICES))
    assert first.running and first.endpoints == ()  # nothing exposed globally
    rec.wait_for(lambda r: any("gpumarket" in t for t in r.texts("stdout")))
    assert {s.service for s in sup.containers(lease)} == {"web", "client"}
    sup.stop_lease(lease)
    assert sup.runtime.owned(lease) == []
    sup.close()
