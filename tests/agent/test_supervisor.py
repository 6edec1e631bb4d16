"""The lease supervisor's rules on the in-memory runtime: start, endpoints, logs, restarts,
failures, re-adoption and close, in milliseconds (tests/agent/test_docker_supervisor.py runs the
same supervisor on the real engine)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.core.gpus import GpuVariant
from marketplace.core.manifest import Manifest, parse_manifest
from marketplace.core.matching import Allocation, Capacity, GpuDevice, allocate
from marketplace.core.resources import Tier
from provider_agent.config import RuntimeSection
from provider_agent.container import (
    DEFAULT_CAPABILITIES,
    ContainerSpec,
    ContainerState,
    VolumeMount,
    network_name,
)
from provider_agent.memory_runtime import EXIT_KILLED, MemoryRuntime
from provider_agent.supervisor import LeaseSupervisor, StatusReport
from tests.agent.supervision import Recorder, sdl, stored, until

GIB = 1 << 30
FLUSH_S = 0.005  # ship logs at once: the tests wait on what is shipped
IMAGE = "gpumarket/busybox:latest"
H100 = tuple(GpuDevice(f"GPU-{i}", GpuVariant("h100", 80, "sxm")) for i in range(4))
EXPOSE = "    expose:\n      - port: 80\n        to:\n          - global: true\n"

TWO_SERVICES = f"""
version: "2.0"
services:
  web:
    image: {IMAGE}
  worker:
    image: gpumarket/worker:1
profiles:
  compute:
    small:
      resources:
        cpu: {{units: 0.5}}
        memory: {{size: 64Mi}}
        storage: {{size: 100Mi}}
  placement:
    here:
      pricing:
        small: {{denom: uact, amount: 100}}
deployment:
  web:
    here: {{profile: small, count: 1}}
  worker:
    here: {{profile: small, count: 1}}
gpumarket:
  restart: never
""".encode()


def replicated(count: int, restart: str = "never") -> bytes:
    """The GPU job of `sdl`, `count` replicas of it."""
    text = sdl("train", gpu=True, restart=restart).decode()
    return text.replace("{profile: job, count: 1}", f"{{profile: job, count: {count}}}").encode()


@pytest.fixture
def runtime() -> MemoryRuntime:
    return MemoryRuntime("gm1provider", images=[IMAGE], gpus=[d.uuid for d in H100])


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def sup(runtime: MemoryRuntime, rec: Recorder, tmp_path: Path) -> Iterator[LeaseSupervisor]:
    supervisor = supervise(runtime, rec, tmp_path)
    yield supervisor
    supervisor.close()


def supervise(
    runtime: MemoryRuntime, rec: Recorder, state_dir: Path | None = None, max_restarts: int = 3
) -> LeaseSupervisor:
    return LeaseSupervisor(
        runtime,
        RuntimeSection(max_restarts=max_restarts),
        rec.report,
        rec.ship,
        state_dir=state_dir,
        log_flush_s=FLUSH_S,
    )


def start(
    sup: LeaseSupervisor, manifest: Manifest, lease: str | None = None
) -> tuple[str, StatusReport]:
    group = manifest.groups[0]
    alloc = allocate(group, Capacity(8000, 8 * GIB, 100 * GIB, H100))
    assert isinstance(alloc, Allocation), alloc
    lease = lease or f"D{uuid.uuid4().hex[:6]}/1/1/prov"
    return lease, sup.start_lease(lease, manifest, group, alloc)


def only(runtime: MemoryRuntime, lease: str) -> ContainerState:
    [state] = runtime.owned(lease)
    return state


# --- starting -------------------------------------------------------------------------------


def test_a_lease_runs_reports_its_endpoint_logs_and_completes(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, first = start(sup, parse_manifest(sdl("httpd", expose=EXPOSE)))
    assert first.running and not first.exited
    [endpoint] = first.endpoints
    assert (endpoint.port, endpoint.external_port) == (80, 32768)
    assert endpoint.uri == "http://127.0.0.1:32768"
    job = only(runtime, lease)
    runtime.write(job.id, "hello")
    runtime.write(job.id, "warn", "stderr")
    runtime.write(job.id, "done")
    runtime.finish(job.id, 0)
    final = rec.exited()
    assert (final.exit_code, final.oom_killed, final.message) == (0, False, "job: exited 0")
    assert rec.texts("stdout") == ["hello", "done"] and rec.texts("stderr") == ["warn"]
    assert sup.running_leases() == []


def test_the_exit_report_comes_after_the_containers_last_lines(
    runtime: MemoryRuntime, rec: Recorder
) -> None:
    lines_when_reported: list[int] = []

    def report(r: StatusReport) -> None:
        lines_when_reported.append(len(rec.texts("stdout")))
        rec.report(r)

    sup = LeaseSupervisor(runtime, RuntimeSection(), report, rec.ship, log_flush_s=FLUSH_S)
    lease, _ = start(sup, parse_manifest(sdl("yes")))
    job = only(runtime, lease)
    for i in range(450):  # more than two log batches
        runtime.write(job.id, f"line {i}")
    runtime.finish(job.id, 0)
    rec.exited()
    assert lines_when_reported == [0, 450]  # RUNNING before any line; the exit after the last
    sup.close()


def test_a_job_split_in_replicas_gets_its_own_gpus_each(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    lease, first = start(sup, parse_manifest(replicated(2)))
    assert first.running
    gpus = sorted(s.gpu_uuids for s in runtime.owned(lease))
    assert gpus == [("GPU-0",), ("GPU-1",)]
    assert network_name(runtime.provider, lease) in runtime.networks()  # replicas meet on it


def test_a_lone_container_gets_no_network_of_its_own(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    start(sup, parse_manifest(sdl("true")))
    assert runtime.networks() == set()


def test_starting_a_lease_twice_starts_it_once(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    manifest = parse_manifest(sdl("sleep 60"))
    lease, _ = start(sup, manifest)
    _, again = start(sup, manifest, lease)
    assert again.running and again.message == "already running"
    assert len(runtime.owned(lease)) == 1


def test_a_missing_image_fails_the_lease_with_the_pull_error(rec: Recorder, tmp_path: Path) -> None:
    runtime = MemoryRuntime("gm1provider", unpullable=["gpumarket/absent:1"])
    sup = supervise(runtime, rec, tmp_path)
    manifest = parse_manifest(sdl("true").replace(IMAGE.encode(), b"gpumarket/absent:1"))
    lease, first = start(sup, manifest)
    assert first.exited and not first.running and first.exit_code == -1
    assert first.message == "pull gpumarket/absent:1 failed: not found in any registry"
    assert rec.reports == [first]
    rec.wait_for(lambda r: "pulling gpumarket/absent:1" in r.texts("system"))
    assert runtime.owned(lease) == [] and sup.running_leases() == []
    sup.close()


def test_a_container_that_cannot_start_takes_down_those_already_started(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    runtime.refuse_starts("no such device", image="gpumarket/worker:1")
    lease, first = start(sup, parse_manifest(TWO_SERVICES))
    assert first.exited and first.message == "start failed: no such device"
    assert runtime.owned(lease) == []  # the web container started first is gone too
    assert runtime.networks() == set()


def test_a_gpu_the_host_lacks_fails_the_start(rec: Recorder, tmp_path: Path) -> None:
    runtime = MemoryRuntime("gm1provider", images=[IMAGE], gpus=[])
    sup = supervise(runtime, rec, tmp_path)
    lease, first = start(sup, parse_manifest(sdl("nvidia-smi", gpu=True)))
    assert first.exited and first.message == "start failed: no GPU GPU-0 on this host"
    assert runtime.owned(lease) == []
    sup.close()


# --- exits and restarts -----------------------------------------------------------------------


def test_never_reports_the_first_failure_without_restarting(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(sdl("exit 3", restart="never")))
    job = only(runtime, lease)
    runtime.finish(job.id, 3)
    final = rec.exited()
    assert (final.exit_code, final.message) == (3, "job: exited with code 3")
    assert only(runtime, lease).status == "exited"  # not started again
    assert not any("restarting" in t for t in rec.texts("system"))


def test_on_failure_restarts_a_failed_container_until_its_restarts_run_out(
    runtime: MemoryRuntime, rec: Recorder, tmp_path: Path
) -> None:
    sup = supervise(runtime, rec, tmp_path, max_restarts=2)
    lease, _ = start(sup, parse_manifest(sdl("exit 3", restart="on-failure")))
    job = only(runtime, lease)

    def fails_and_restarts(left: int) -> None:
        runtime.finish(job.id, 3)
        said = f"job: exited with code 3; restarting ({left} left)"
        rec.wait_for(lambda r: said in r.texts("system"))
        until(lambda: runtime.inspect(job.id).running)

    for left in (2, 1):
        fails_and_restarts(left)
        assert not any(r.exited for r in rec.reports)
    runtime.finish(job.id, 3)
    assert rec.exited().exit_code == 3
    assert only(runtime, lease).id == job.id  # restarted in place, never re-created
    sup.close()


def test_on_failure_does_not_restart_a_clean_exit(
    runtime: MemoryRuntime, rec: Recorder, tmp_path: Path
) -> None:
    sup = supervise(runtime, rec, tmp_path, max_restarts=3)
    lease, _ = start(sup, parse_manifest(sdl("true", restart="on-failure")))
    runtime.finish(only(runtime, lease).id, 0)
    assert rec.exited().exit_code == 0
    assert not any("restarting" in t for t in rec.texts("system"))
    sup.close()


def test_always_restarts_a_clean_exit_too(
    runtime: MemoryRuntime, rec: Recorder, tmp_path: Path
) -> None:
    sup = supervise(runtime, rec, tmp_path, max_restarts=1)
    lease, _ = start(sup, parse_manifest(sdl("true", restart="always")))
    job = only(runtime, lease)
    runtime.finish(job.id, 0)
    rec.wait_for(lambda r: "job: exited 0; restarting (1 left)" in r.texts("system"))
    until(lambda: runtime.inspect(job.id).running)
    runtime.finish(job.id, 0)
    assert rec.exited().exit_code == 0
    sup.close()


def test_a_restart_that_fails_ends_the_lease_with_the_exit(
    runtime: MemoryRuntime, rec: Recorder, tmp_path: Path
) -> None:
    sup = supervise(runtime, rec, tmp_path, max_restarts=3)
    lease, _ = start(sup, parse_manifest(sdl("exit 1", restart="on-failure")))
    runtime.refuse_starts("the engine is out of disk")
    runtime.finish(only(runtime, lease).id, 1)
    final = rec.exited()
    assert final.exit_code == 1
    assert "job: restart failed: start failed: the engine is out of disk" in rec.texts("system")
    sup.close()


def test_an_oom_kill_is_reported_as_such(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(sdl("tail /dev/zero")))
    runtime.finish(only(runtime, lease).id, oom_killed=True)
    final = rec.exited()
    assert final.oom_killed and final.exit_code == EXIT_KILLED
    assert final.message == f"job: killed: out of memory (exit {EXIT_KILLED})"


def test_one_replica_failing_for_good_stops_the_others(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(replicated(3)))
    first, *others = runtime.owned(lease)
    runtime.finish(first.id, 2)
    final = rec.exited()
    assert final.exit_code == 2
    until(lambda: not any(runtime.inspect(s.id).running for s in others))
    assert [r.exited for r in rec.reports].count(True) == 1  # the lease's exit, reported once


def test_a_lease_of_several_containers_completes_when_the_last_one_does(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(TWO_SERVICES))
    web, worker = sorted(runtime.owned(lease), key=lambda s: s.service)
    runtime.finish(worker.id, 0)
    rec.wait_for(lambda r: "worker: exited 0" in r.texts("system"))
    assert not any(r.exited for r in rec.reports) and runtime.inspect(web.id).running
    runtime.finish(web.id, 0)
    assert rec.exited().exit_code == 0


# --- closing --------------------------------------------------------------------------------


def test_a_closed_lease_loses_its_containers_and_reports_no_exit(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(replicated(2)))
    sup.stop_lease(lease)
    assert runtime.owned(lease) == [] and runtime.networks() == set()
    assert sup.running_leases() == [] and sup.containers(lease) == []
    assert not any(r.exited for r in rec.reports)


def test_closing_the_supervisor_leaves_containers_running(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    lease, _ = start(sup, parse_manifest(sdl("sleep 60")))
    sup.close()
    assert only(runtime, lease).running


# --- re-adoption ------------------------------------------------------------------------------


def test_a_restarted_agent_re_adopts_running_containers_without_starting_them_again(
    runtime: MemoryRuntime, tmp_path: Path
) -> None:
    before = supervise(runtime, Recorder(), tmp_path)
    lease, _ = start(before, parse_manifest(sdl("serve", restart="on-failure")))
    original = only(runtime, lease)
    before.close()  # the agent goes away; its container keeps running

    rec = Recorder()
    after = supervise(runtime, rec, tmp_path)
    assert after.adopt() == [lease]
    assert runtime.owned(lease) == [original]  # the same container, untouched
    assert after.running_leases() == [lease]
    # restarts left are not carried across agents: an adopted failure ends the lease
    runtime.finish(original.id, 1)
    assert rec.exited().exit_code == 1
    assert not any("restarting" in t for t in rec.texts("system"))
    after.close()


def test_a_re_adopted_lease_keeps_its_tier_and_creation_time(
    runtime: MemoryRuntime, tmp_path: Path
) -> None:
    """What a restarted agent knows of a spot lease is on its containers: spot, and when the
    market created it (the newest spot lease is pre-empted first); an on-demand one stays so."""
    before = supervise(runtime, Recorder(), tmp_path)
    spot_sdl = parse_manifest(sdl("serve") + b"  tier: spot\n")
    group = spot_sdl.groups[0]
    alloc = allocate(group, Capacity(8000, 8 * GIB, 100 * GIB, H100))
    assert isinstance(alloc, Allocation)
    before.start_lease("D1/1/1/prov", spot_sdl, group, alloc, created_ms=1_700_000_000_123)
    on_demand, _ = start(before, parse_manifest(sdl("serve")))
    assert before.tier_of("D1/1/1/prov") == (Tier.SPOT, 1_700_000_000_123)
    before.close()

    after = supervise(runtime, Recorder(), tmp_path)
    assert sorted(after.adopt()) == sorted(["D1/1/1/prov", on_demand])
    assert after.tier_of("D1/1/1/prov") == (Tier.SPOT, 1_700_000_000_123)
    assert after.tier_of(on_demand) == (Tier.ON_DEMAND, 0)
    after.close()


def test_re_adopted_logs_resume_where_the_last_agent_stopped(
    runtime: MemoryRuntime, tmp_path: Path
) -> None:
    first = Recorder()
    before = supervise(runtime, first, tmp_path)
    lease, _ = start(before, parse_manifest(sdl("tick")))
    job = only(runtime, lease)
    runtime.write(job.id, "tick 0")
    runtime.write(job.id, "tick 1")
    first.wait_for(lambda r: r.texts("stdout") == ["tick 0", "tick 1"])
    before.close()  # saves the log cursor
    runtime.write(job.id, "tick 2")  # printed while no agent watched

    rec = Recorder()
    after = supervise(runtime, rec, tmp_path)
    after.adopt()
    runtime.write(job.id, "tick 3")
    rec.wait_for(lambda r: "tick 3" in r.texts("stdout"))
    assert rec.texts("stdout") == ["tick 2", "tick 3"]  # nothing repeated, nothing lost
    after.close()


def test_lines_the_market_never_acknowledged_are_shipped_again_by_the_next_agent(
    runtime: MemoryRuntime, tmp_path: Path
) -> None:
    """An agent killed with log lines queued for the market (sent, never answered) must not have
    moved its cursor past them: the next agent ships them, then carries on."""
    first = Recorder()
    before = supervise(runtime, first, tmp_path)
    lease, _ = start(before, parse_manifest(sdl("tick")))
    job = only(runtime, lease)
    runtime.write(job.id, "tick 0")
    first.wait_for(lambda r: r.texts("stdout") == ["tick 0"])
    first.acknowledges = False  # from here on the market never answers
    runtime.write(job.id, "tick 1")
    first.wait_for(lambda r: r.texts("stdout") == ["tick 0", "tick 1"])
    before.close()

    rec = Recorder()
    after = supervise(runtime, rec, tmp_path)
    after.adopt()
    runtime.write(job.id, "tick 2")
    rec.wait_for(lambda r: "tick 2" in r.texts("stdout"))
    assert rec.texts("stdout") == ["tick 1", "tick 2"]  # the unanswered line again, none before
    after.close()


def test_re_adoption_removes_never_started_containers_and_reports_exits_missed(
    runtime: MemoryRuntime, tmp_path: Path
) -> None:
    before = supervise(runtime, Recorder(), tmp_path)
    lease, _ = start(before, parse_manifest(sdl("exit 4")))
    before.close()
    runtime.finish(only(runtime, lease).id, 4)  # exits while no agent watches
    leaked = runtime.create(ContainerSpec("Dleak/1/1/prov", "job", IMAGE))  # start never ran

    rec = Recorder()
    after = supervise(runtime, rec, tmp_path)
    assert after.adopt() == [lease]
    assert leaked not in {s.id for s in runtime.owned()}
    assert rec.exited().exit_code == 4
    after.close()


def test_adopting_twice_leaves_supervised_leases_alone(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(sdl("serve")))
    sup.adopt()
    runtime.finish(only(runtime, lease).id, 0)
    rec.exited()
    assert [r.exited for r in rec.reports].count(True) == 1  # watched once, reported once


# --- storage and capabilities -------------------------------------------------------------------

MI = 1 << 20


def test_storage_mounts_become_a_named_volume_a_tmpfs_and_scratch_space(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    lease, first = start(sup, parse_manifest(stored("serve", read_only=True)))
    assert first.running
    spec = runtime.spec_of(only(runtime, lease).id)
    assert spec.volumes == (
        VolumeMount(
            "data", "/data", 50 * MI, read_only=True, persistent=True, storage_class="beta2"
        ),
        VolumeMount("cache", "/cache", 16 * MI, storage_class="ram"),
    )  # the 100Mi ephemeral volume is no mount: it is the container's scratch space
    assert spec.memory_bytes == (64 + 16) * MI  # the tmpfs's pages count as the container's
    assert spec.capabilities == DEFAULT_CAPABILITIES
    [volume] = runtime.volumes(lease)  # only the persistent one is a volume of its own
    assert (volume.lease_id, volume.service, volume.volume) == (lease, "db", "data")
    assert volume.size_bytes == 50 * MI


def test_a_re_ordered_lease_tells_its_job_the_restart_count_and_checkpoint(
    sup: LeaseSupervisor, runtime: MemoryRuntime
) -> None:
    text = sdl("train", restart="on-failure").decode() + "  checkpoint: s3://ckpt/run-1\n"
    lease, _ = start(sup, parse_manifest(text), lease="D9/1/3/prov")
    env = dict(runtime.spec_of(only(runtime, lease).id).env)
    assert env["GPUMARKET_RESTART_COUNT"] == "2"
    assert env["GPUMARKET_CHECKPOINT_URI"] == "s3://ckpt/run-1"
    assert env["GPUMARKET_LEASE_ID"] == "D9/1/3/prov"


def test_the_providers_capability_setting_reaches_the_container(
    runtime: MemoryRuntime, rec: Recorder
) -> None:
    sup = LeaseSupervisor(
        runtime, RuntimeSection(capabilities=()), rec.report, rec.ship, log_flush_s=FLUSH_S
    )
    lease, _ = start(sup, parse_manifest(sdl("serve")))
    assert runtime.spec_of(only(runtime, lease).id).capabilities == ()
    sup.close()


def test_a_restarted_container_keeps_its_volume_and_a_closed_lease_loses_it(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(stored("serve", restart="on-failure")))
    [volume] = runtime.volumes(lease)
    runtime.fill_volume(volume.name, 10 * MI)
    job = only(runtime, lease)
    runtime.finish(job.id, 1)
    until(lambda: any("restarting" in t for t in rec.texts("system")))
    until(lambda: only(runtime, lease).running)
    assert runtime.volumes(lease) == [volume] and runtime.volume_usage(volume.name) == 10 * MI
    sup.stop_lease(lease)
    assert runtime.volumes() == []


def test_a_lease_that_fails_to_start_leaves_no_volume(rec: Recorder, tmp_path: Path) -> None:
    runtime = MemoryRuntime("gm1provider", images=[IMAGE])
    runtime.refuse_starts("no room")
    sup = supervise(runtime, rec, tmp_path)
    _, first = start(sup, parse_manifest(stored("serve")))
    assert first.exited and runtime.volumes() == []
    sup.close()


def test_a_restarted_agent_keeps_adopted_volumes_and_removes_leftovers(
    runtime: MemoryRuntime, tmp_path: Path
) -> None:
    before = supervise(runtime, Recorder(), tmp_path)
    kept, _ = start(before, parse_manifest(stored("serve")))
    gone, _ = start(before, parse_manifest(stored("serve")))
    before.close()  # killed: its containers and volumes stay
    runtime.remove(only(runtime, gone).id)  # a teardown cut short: the volume outlived it

    after = supervise(runtime, Recorder(), tmp_path)
    assert after.adopt() == [kept]
    assert [v.lease_id for v in runtime.volumes()] == [kept]
    after.stop_lease(kept)
    assert runtime.volumes() == []
    after.close()


def test_volumes_are_measured_every_volume_check_s(runtime: MemoryRuntime, rec: Recorder) -> None:
    sup = LeaseSupervisor(
        runtime, RuntimeSection(volume_check_s=0.01), rec.report, rec.ship, log_flush_s=FLUSH_S
    )
    lease, _ = start(sup, parse_manifest(stored("serve")))
    [volume] = runtime.volumes(lease)
    runtime.fill_volume(volume.name, 60 * MI)
    rec.wait_for(lambda r: "db: volume data uses 60Mi of 50Mi" in r.texts("system"))
    sup.close()


def test_an_outgrown_volume_is_reported_once_while_it_stays_over(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(stored("serve")))
    [volume] = runtime.volumes(lease)
    for used in (50, 60, 70, 40, 55):  # at its size, over, still over, cleaned up, over again
        runtime.fill_volume(volume.name, used * MI)
        sup.check_volumes(lease)
    expected = ["db: volume data uses 60Mi of 50Mi", "db: volume data uses 55Mi of 50Mi"]
    rec.wait_for(lambda r: [t for t in r.texts("system") if "volume data" in t] == expected)


def test_scratch_space_past_its_ephemeral_storage_is_reported(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(stored("serve")))
    runtime.fill_scratch(only(runtime, lease).id, 200 * MI)
    sup.check_volumes(lease)
    rec.wait_for(lambda r: "db: scratch space uses 200Mi of 100Mi" in r.texts("system"))


def test_an_adopted_lease_holds_its_volumes_and_scratch_space(
    runtime: MemoryRuntime, tmp_path: Path
) -> None:
    before = supervise(runtime, Recorder(), tmp_path)
    lease, _ = start(before, parse_manifest(stored("serve")))
    before.close()
    after = supervise(runtime, Recorder(), tmp_path)
    after.adopt()
    assert after.storage_bytes(lease) == (50 + 100) * MI  # the ram volume counts as memory
    assert only(runtime, lease).memory_bytes == (64 + 16) * MI
    after.close()


def test_an_outgrown_volume_is_reported_when_its_container_exits(
    sup: LeaseSupervisor, runtime: MemoryRuntime, rec: Recorder
) -> None:
    lease, _ = start(sup, parse_manifest(stored("fill")))
    [volume] = runtime.volumes(lease)
    runtime.fill_volume(volume.name, 51 * MI)
    runtime.finish(only(runtime, lease).id, 0)
    rec.exited()
    assert "db: volume data uses 51Mi of 50Mi" in rec.texts("system")
