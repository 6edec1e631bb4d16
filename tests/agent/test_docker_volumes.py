"""Storage and capabilities on the real Docker engine: `params.storage` mounts as named volumes
(persistent across restarts, agent kills and re-adoption; gone with the lease), `ram` volumes as
sized tmpfs, read-only mounts, an outgrown volume reported, and the capabilities an ordinary
image's entrypoint needs (chown, su)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from marketplace.core.manifest import Manifest, parse_manifest
from marketplace.core.matching import Allocation, Capacity, allocate
from provider_agent.config import RuntimeSection
from provider_agent.container import DEFAULT_CAPABILITIES, LABEL_LEASE, LABEL_PROVIDER
from provider_agent.runtime import DockerRuntime
from provider_agent.supervisor import LeaseSupervisor, StatusReport
from tests.agent.supervision import Recorder, stored
from tests.agent.test_docker_runtime import cleanup_provider
from tests.helpers import REPO, wait_until

pytestmark = pytest.mark.docker
GIB = 1 << 30


@pytest.fixture
def provider() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    rt = DockerRuntime.connect(name)
    cleanup_provider(rt.client, name)
    for volume in rt.volumes():
        rt.remove_volume(volume.name)
    rt.close()


def supervise(
    provider: str,
    rec: Recorder,
    state_dir: Path | None = None,
    max_restarts: int = 3,
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES,
) -> LeaseSupervisor:
    return LeaseSupervisor(
        DockerRuntime.connect(provider),
        RuntimeSection(max_restarts=max_restarts, capabilities=capabilities),
        rec.report,
        rec.ship,
        state_dir=state_dir,
    )


def client_of(sup: LeaseSupervisor) -> docker.DockerClient:
    assert isinstance(sup.runtime, DockerRuntime)
    return sup.runtime.client


def start(sup: LeaseSupervisor, manifest: Manifest) -> tuple[str, StatusReport]:
    group = manifest.groups[0]
    alloc = allocate(group, Capacity(8000, 8 * GIB, 100 * GIB))
    assert isinstance(alloc, Allocation)
    lease = f"D{uuid.uuid4().hex[:6]}/1/1/prov"
    return lease, sup.start_lease(lease, manifest, group, alloc)


def engine_volumes(client: docker.DockerClient, lease: str) -> list[str]:
    """The engine's own answer (not the runtime's): volumes labelled with this lease."""
    found = client.api.volumes(filters={"label": [f"{LABEL_LEASE}={lease}"]})
    return [v["Name"] for v in found.get("Volumes") or []]


# --- persistent volumes -------------------------------------------------------------------------

WRITE_THEN_FAIL = (
    "if [ -f /data/marker ]; then echo found $(cat /data/marker); exit 0; fi; "
    "echo first-run > /data/marker; echo wrote; exit 1"
)


def test_a_persistent_volume_survives_a_container_restart_and_is_gone_after_close(
    provider: str,
) -> None:
    rec = Recorder()
    sup = supervise(provider, rec, max_restarts=1)
    lease, first = start(sup, parse_manifest(stored(WRITE_THEN_FAIL, restart="on-failure")))
    assert first.running, first.message
    final = rec.exited()
    assert final.exit_code == 0, final.message  # the restart found what the first run wrote
    rec.wait_for(lambda r: "found first-run" in r.texts("stdout"))
    out = rec.texts("stdout")
    assert out[0] == "wrote" and out[-1] == "found first-run" and out.count("found first-run") == 1
    client = client_of(sup)
    [volume] = engine_volumes(client, lease)
    labels = client.api.inspect_volume(volume)["Labels"]
    assert labels[LABEL_PROVIDER] == provider and labels["io.gpumarket.volume"] == "data"
    sup.stop_lease(lease)
    assert engine_volumes(client, lease) == []
    assert sup.runtime.volumes() == []
    sup.close()


def test_two_providers_on_one_engine_never_share_a_volume_and_a_stranger_is_not_mounted(
    provider: str,
) -> None:
    """The same lease id on two agents of one engine (one provider key on two markets, or a
    market started afresh) gets two volumes; a volume of this name made by someone else is
    refused, not mounted: its data is not this tenant's."""
    lease = f"D{uuid.uuid4().hex[:6]}/1/1/prov"
    manifest = parse_manifest(stored("echo mine > /data/marker; sleep 600"))
    group = manifest.groups[0]
    alloc = allocate(group, Capacity(8000, 8 * GIB, 100 * GIB))
    assert isinstance(alloc, Allocation)
    other = f"{provider}-other"
    one, two = supervise(provider, Recorder()), supervise(other, Recorder())
    client = client_of(one)
    try:
        assert one.start_lease(lease, manifest, group, alloc).running
        assert two.start_lease(lease, manifest, group, alloc).running
        assert len(engine_volumes(client, lease)) == 2  # one each
        [theirs] = two.runtime.volumes(lease)
        two.stop_lease(lease)  # its volume goes; a stranger's of the same name comes instead
        client.api.create_volume(
            theirs.name, labels={LABEL_PROVIDER: "stranger", LABEL_LEASE: lease}
        )
        third = supervise(other, Recorder())
        refused = third.start_lease(lease, manifest, group, alloc)
        assert not refused.running and "is not this lease's" in refused.message
        third.close()
    finally:
        one.stop_lease(lease)
        one.close()
        two.close()
        cleanup_provider(client, other)
        for name in engine_volumes(client, lease):
            client.api.remove_volume(name, force=True)


CHILD = """
import sys, time
from pathlib import Path
from marketplace.core.manifest import parse_manifest
from marketplace.core.matching import allocate, Capacity
from provider_agent.config import RuntimeSection
from provider_agent.runtime import DockerRuntime
from provider_agent.supervisor import LeaseSupervisor

provider, state, sdl_path = sys.argv[1:4]
sup = LeaseSupervisor(DockerRuntime.connect(provider), RuntimeSection(), lambda r: None,
                      lambda lease, lines, delivered: None, state_dir=Path(state))
m = parse_manifest(Path(sdl_path).read_bytes())
g = m.groups[0]
report = sup.start_lease("Dkill/1/1/prov", m, g, allocate(g, Capacity(8000, 8 << 30, 100 << 30)))
print("READY" if report.running else report.message, flush=True)
time.sleep(600)
"""


def run_agent_and_kill_it(provider: str, tmp_path: Path, script: str) -> None:
    """A provider agent (its own process) starts lease Dkill/1/1/prov, then dies by SIGKILL."""
    manifest = tmp_path / "job.yaml"
    manifest.write_bytes(stored(script))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, provider, str(tmp_path), str(manifest)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()


def test_a_persistent_volume_survives_an_agent_sigkill_and_re_adoption(
    provider: str, tmp_path: Path
) -> None:
    run_agent_and_kill_it(provider, tmp_path, "echo kept > /data/marker; sleep 600")
    rec = Recorder()
    sup = supervise(provider, rec, state_dir=tmp_path)
    assert sup.adopt() == ["Dkill/1/1/prov"]
    [container] = sup.runtime.owned()
    client = client_of(sup)

    def marker() -> str:
        result = client.containers.get(container.id).exec_run(["cat", "/data/marker"])
        assert isinstance(result.output, bytes)  # not streamed
        return result.output.decode().strip() if result.exit_code == 0 else ""

    wait_until(lambda: marker() == "kept", 20, "the container to write its marker")
    [volume] = sup.runtime.volumes("Dkill/1/1/prov")
    # the container dies and is started again: same volume, same data
    client.api.kill(container.id)
    sup.runtime.start(container.id)
    wait_until(lambda: marker() == "kept", 20, "the restarted container to see the marker")
    assert sup.runtime.volumes("Dkill/1/1/prov") == [volume]
    sup.stop_lease("Dkill/1/1/prov")
    assert engine_volumes(client, "Dkill/1/1/prov") == []
    sup.close()


def test_a_killed_agents_leftover_volumes_are_removed_at_its_next_start(
    provider: str, tmp_path: Path
) -> None:
    run_agent_and_kill_it(provider, tmp_path, "sleep 600")
    probe = DockerRuntime.connect(provider)
    assert len(probe.volumes("Dkill/1/1/prov")) == 1
    # the dead agent's teardown was cut short: its containers are gone, its volume is not
    for state in probe.owned():
        probe.remove(state.id)
    probe.close()
    rec = Recorder()
    sup = supervise(provider, rec, state_dir=tmp_path)
    assert sup.adopt() == []
    assert engine_volumes(client_of(sup), "Dkill/1/1/prov") == []
    sup.close()


# --- ram, read-only, size -----------------------------------------------------------------------


def test_a_ram_volume_is_a_tmpfs_of_its_size(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    start(sup, parse_manifest(stored("grep ' /cache ' /proc/mounts")))
    assert rec.exited().exit_code == 0
    rec.wait_for(lambda r: bool(r.texts("stdout")))
    [line] = rec.texts("stdout")
    assert line.startswith("tmpfs /cache tmpfs") and "size=16384k" in line
    sup.close()


def test_a_ram_volume_refuses_writes_past_its_size(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    start(sup, parse_manifest(stored("dd if=/dev/zero of=/cache/big bs=1M count=32")))
    final = rec.exited()
    assert final.exit_code != 0 and not final.oom_killed
    rec.wait_for(lambda r: any("No space left on device" in t for t in r.texts("stderr")))
    sup.close()


def test_a_read_only_mount_refuses_writes(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    start(sup, parse_manifest(stored("touch /data/x", read_only=True)))
    assert rec.exited().exit_code != 0
    rec.wait_for(lambda r: any("Read-only file system" in t for t in r.texts("stderr")))
    sup.close()


def test_a_volume_or_scratch_space_that_outgrows_its_size_is_reported_in_the_lease_log(
    provider: str,
) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    script = "dd if=/dev/zero of=/data/big bs=1M count=8 && dd if=/dev/zero of=/big bs=1M count=9"
    start(sup, parse_manifest(stored(script, data_size="5Mi", scratch_size="6Mi")))
    assert rec.exited().exit_code == 0
    said = [t for t in rec.texts("system") if " uses " in t]
    assert len(said) == 2, said
    assert said[0].startswith("db: volume data uses 8") and said[0].endswith("of 5Mi")
    assert said[1].startswith("db: scratch space uses 9") and said[1].endswith("of 6Mi")
    sup.close()


# --- capabilities -------------------------------------------------------------------------------

CHOWN_AND_SU = "touch /tmp/x && chown 1:1 /tmp/x && su nobody -s /bin/sh -c id"


def test_an_entrypoint_may_chown_and_switch_user(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    start(sup, parse_manifest(stored(CHOWN_AND_SU)))
    final = rec.exited()
    assert final.exit_code == 0, rec.texts()
    rec.wait_for(lambda r: any("uid=65534(nobody)" in t for t in r.texts("stdout")))
    sup.close()


def test_what_stays_dropped_stays_dropped_and_a_provider_may_drop_all(provider: str) -> None:
    rec = Recorder()
    sup = supervise(provider, rec)
    start(sup, parse_manifest(stored("grep CapEff /proc/self/status")))
    assert rec.exited().exit_code == 0
    rec.wait_for(lambda r: bool(r.texts("stdout")))
    effective = int(rec.texts("stdout")[0].split()[1], 16)
    for bit in (13, 27, 29, 21):  # NET_RAW, MKNOD, AUDIT_WRITE, SYS_ADMIN
        assert not effective & (1 << bit)
    assert effective & (1 << 0) and effective & (1 << 7)  # CHOWN, SETUID
    sup.close()

    strict = Recorder()
    sup = supervise(provider, strict, capabilities=())  # `[runtime] cap_drop_all = true`
    start(sup, parse_manifest(stored(CHOWN_AND_SU)))
    assert strict.exited().exit_code != 0
    strict.wait_for(lambda r: any("Operation not permitted" in t for t in r.texts("stderr")))
    sup.close()
