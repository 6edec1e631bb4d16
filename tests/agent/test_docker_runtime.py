"""The Docker runtime against the real engine, with the local image gpumarket/busybox:latest."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator

import docker
import pytest

from provider_agent.container import LABEL_LEASE, network_name
from provider_agent.runtime import (
    LABEL_PROVIDER,
    ContainerSpec,
    DockerRuntime,
    RuntimeFailure,
    create_kwargs,
)
from tests.helpers import wait_until

IMAGE = "gpumarket/busybox:latest"
H100_UUID = "GPU-ec74fc0e-388d-22e5-9031-c553a0c26378"


def cleanup_provider(client: docker.DockerClient, provider: str) -> None:
    """Remove every container and network labelled with this test's provider id."""
    label: dict[str, str | list[str] | bool] = {"label": f"{LABEL_PROVIDER}={provider}"}
    for c in client.containers.list(all=True, filters=label):
        c.remove(force=True)
    for n in client.networks.list(filters=label):
        n.remove()


@pytest.fixture
def runtime() -> Iterator[DockerRuntime]:
    provider = f"test-{uuid.uuid4().hex[:8]}"
    rt = DockerRuntime.connect(provider)
    try:
        yield rt
    finally:
        cleanup_provider(rt.client, provider)
        rt.close()


def spec(**kw: object) -> ContainerSpec:
    base: dict[str, object] = {"lease_id": f"d{uuid.uuid4().hex[:6]}/1/1/p", "service": "job"}
    base.update(kw)
    return ContainerSpec(image=IMAGE, **base)  # type: ignore[arg-type]


def test_spec_requests_gpus_by_uuid_never_by_count() -> None:
    kw = create_kwargs(spec(gpu_uuids=(H100_UUID,)), "prov")
    [req] = kw["device_requests"]
    assert req["DeviceIDs"] == [H100_UUID]
    assert req["Capabilities"] == [["gpu"]]
    assert not req.get("Count")
    assert kw["environment"]["NVIDIA_VISIBLE_DEVICES"] == H100_UUID
    assert create_kwargs(spec(), "prov")["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"


@pytest.mark.docker
def test_container_runs_logs_and_exits_zero(runtime: DockerRuntime) -> None:
    s = spec(command=("sh", "-c"), args=("echo hello; echo oops >&2; echo bye",))
    state = runtime.launch(s)
    final = runtime.wait(state.id)
    assert (final.status, final.exit_code, final.oom_killed) == ("exited", 0, False)
    out = [line.text for line in runtime.logs(state.id, "stdout")]
    err = [line.text for line in runtime.logs(state.id, "stderr")]
    assert out == ["hello", "bye"]
    assert err == ["oops"]


@pytest.mark.docker
def test_failing_command_reports_its_exit_code(runtime: DockerRuntime) -> None:
    state = runtime.launch(spec(command=("sh", "-c", "exit 3")))
    final = runtime.wait(state.id)
    assert final.exit_code == 3 and not final.oom_killed


@pytest.mark.docker
def test_job_over_its_memory_limit_is_oom_killed(runtime: DockerRuntime) -> None:
    # `tail /dev/zero` buffers an endless "line" until the kernel kills it.
    state = runtime.launch(spec(command=("tail", "/dev/zero"), memory_bytes=16 << 20))
    final = runtime.wait(state.id)
    assert final.oom_killed
    assert final.exit_code == 137


@pytest.mark.docker
def test_inspect_shows_limits_labels_and_dropped_capabilities(runtime: DockerRuntime) -> None:
    s = spec(
        command=("sleep", "30"),
        cpu_millis=1500,
        memory_bytes=256 << 20,
        pids_limit=128,
        shm_bytes=1 << 30,
        env=(("MODEL", "llama"),),
    )
    state = runtime.launch(s)
    attrs = runtime.client.api.inspect_container(state.id)
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == host["MemorySwap"] == 256 << 20
    assert host["PidsLimit"] == 128
    assert host["ShmSize"] == 1 << 30
    assert host["CapDrop"] == ["ALL"]
    assert host["Privileged"] is False
    assert host["Init"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    labels = attrs["Config"]["Labels"]
    assert labels["io.gpumarket.lease"] == s.lease_id
    assert labels[LABEL_PROVIDER] == runtime.provider
    assert "MODEL=llama" in attrs["Config"]["Env"]
    runtime.stop(state.id, grace_s=5)
    assert runtime.inspect(state.id).exit_code == 143  # init forwarded SIGTERM


@pytest.mark.docker
def test_gpu_container_carries_the_device_request_and_start_fails_cleanly(
    runtime: DockerRuntime,
) -> None:
    s = spec(command=("nvidia-smi",), gpu_uuids=(H100_UUID,))
    cid = runtime.create(s)
    [req] = runtime.client.api.inspect_container(cid)["HostConfig"]["DeviceRequests"]
    assert req["DeviceIDs"] == [H100_UUID]
    assert req["Capabilities"] == [["gpu"]]
    assert req["Count"] == 0
    # No NVIDIA runtime here: start fails with the engine's reason, and nothing is left behind.
    with pytest.raises(RuntimeFailure, match="device driver"):
        runtime.start(cid)
    assert runtime.owned(s.lease_id) == []


@pytest.mark.docker
def test_exposed_port_is_published_and_answers(runtime: DockerRuntime) -> None:
    lease = f"d{uuid.uuid4().hex[:6]}/1/1/p"
    net = runtime.ensure_network(lease)
    s = spec(
        lease_id=lease,
        service="web",
        command=("httpd", "-f", "-p", "80", "-h", "/www"),
        ports=(80,),
        network=net,
    )
    state = runtime.launch(s)
    [(port, host_port)] = state.ports
    assert port == 80 and host_port > 0
    body = _get(f"http://127.0.0.1:{host_port}/")
    assert "gpumarket" in body


def _get(url: str) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())

    return wait_until(fetch, 10, f"{url} to answer", retry_on=(OSError,))


@pytest.mark.docker
def test_missing_image_pull_failure_gives_the_reason(runtime: DockerRuntime) -> None:
    progress: list[str] = []
    with pytest.raises(RuntimeFailure, match="pull gpumarket/no-such-image:0 failed"):
        runtime.ensure_image("gpumarket/no-such-image:0", progress.append)
    assert progress == ["pulling gpumarket/no-such-image:0"]
    runtime.ensure_image(IMAGE, progress.append)  # present: no pull
    assert len(progress) == 1


@pytest.mark.docker
def test_owned_lists_only_this_providers_containers(runtime: DockerRuntime) -> None:
    a = runtime.launch(spec(command=("sleep", "30")))
    assert [c.id for c in runtime.owned()] == [a.id]
    other = DockerRuntime(f"other-{uuid.uuid4().hex[:6]}", runtime.client)
    assert other.owned() == []


def test_two_providers_with_one_lease_id_keep_apart_and_a_strangers_name_is_refused(
    runtime: DockerRuntime,
) -> None:
    """One key on two markets (or two agents that happen to share a lease id) on one engine:
    before, the second's create removed the first's running container (same name) and its
    services joined the first's network. Now names carry the provider, and a container or
    network of this provider's name that is another's is refused, never removed or joined."""
    other = DockerRuntime(f"other-{uuid.uuid4().hex[:6]}", runtime.client)
    stranger = DockerRuntime(f"stranger-{uuid.uuid4().hex[:6]}", runtime.client)
    job = spec(command=("sleep", "60"))
    try:
        mine, theirs = runtime.launch(job), other.launch(job)
        assert mine.name != theirs.name
        assert runtime.inspect(mine.id).status == "running"  # the second launch left it be
        assert runtime.ensure_network(job.lease_id) != other.ensure_network(job.lease_id)
        assert runtime.ensure_network(job.lease_id) == runtime.ensure_network(job.lease_id)

        fresh = spec(command=("sleep", "60"))
        squatter = stranger.launch(fresh)  # then named as this provider's would be
        wanted = create_kwargs(fresh, runtime.provider)["name"]
        runtime.client.containers.get(squatter.id).rename(wanted)
        with pytest.raises(RuntimeFailure, match="not this provider's"):
            runtime.launch(fresh)
        assert stranger.inspect(squatter.id).status == "running"
        runtime.client.networks.create(
            network_name(runtime.provider, fresh.lease_id),
            labels={LABEL_PROVIDER: stranger.provider, LABEL_LEASE: fresh.lease_id},
        )
        with pytest.raises(RuntimeFailure, match="not this lease's"):
            runtime.ensure_network(fresh.lease_id)
    finally:
        for them in (other, stranger):
            cleanup_provider(runtime.client, them.provider)
