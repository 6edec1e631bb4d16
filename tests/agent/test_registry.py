"""Private registry credentials, against a real registry: Debian's docker-registry served on
127.0.0.1 with htpasswd auth (no TLS: Docker allows 127.0.0.0/8 registries insecure), holding the
local busybox image under a private name that is not on the host.

A lease whose SDL carries the right credentials pulls and runs; missing, wrong or foreign-host
credentials fail the lease with the reason, and the password is in no report, log line or
repr. scripts/test-deps.sh installs the registry and htpasswd; this test installs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import grpc
import grpc.aio
import pytest

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.manifest import parse_manifest
from marketplace.core.matching import Allocation, Capacity, allocate
from marketplace.identity import Key
from provider_agent.config import RuntimeSection, parse_config
from provider_agent.container import ContainerSpec, RuntimeFailure
from provider_agent.registry import RegistryAuth, auth_for, canonical_host, image_registry
from provider_agent.runtime import DockerRuntime, private_mark
from provider_agent.supervisor import LeaseSupervisor, StatusReport
from tests.agent import test_e2e as e2e
from tests.agent.supervision import Recorder
from tests.agent.test_docker_runtime import cleanup_provider

LOCAL_IMAGE = "gpumarket/busybox:latest"
USER = "tenant-alice"
PASSWORD = f"pw-{uuid.uuid4().hex}"  # unique: found anywhere, it leaked
GIB = 1 << 30


# --- the host rule (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("nginx", "docker.io"),
        ("nginx:1.25", "docker.io"),
        ("library/nginx", "docker.io"),
        ("bitnami/redis:7", "docker.io"),
        ("docker.io/bitnami/redis", "docker.io"),
        ("index.docker.io/library/nginx", "docker.io"),
        ("ghcr.io/org/app:1", "ghcr.io"),
        ("GHCR.io/org/app", "ghcr.io"),
        ("127.0.0.1:5000/private/app", "127.0.0.1:5000"),
        ("localhost/app", "localhost"),
    ],
)
def test_an_image_names_its_registry_as_docker_reads_it(image: str, registry: str) -> None:
    assert image_registry(image) == registry


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://ghcr.io", "ghcr.io"),
        ("Registry.Example:5000", "registry.example:5000"),
    ],
)
def test_credential_hosts_compare_without_scheme_path_or_case(host: str, canonical: str) -> None:
    assert canonical_host(host) == canonical


def test_credentials_are_offered_only_to_their_own_registry() -> None:
    assert auth_for("nginx", "docker.io", USER, PASSWORD) is not None
    assert auth_for("bitnami/redis", "index.docker.io", USER, PASSWORD) is not None
    assert auth_for("ghcr.io/org/app", "ghcr.io", USER, PASSWORD) is not None
    assert auth_for("ghcr.io/org/app", "docker.io", USER, PASSWORD) is None
    assert auth_for("nginx", "ghcr.io", USER, PASSWORD) is None
    assert auth_for("registry.example/app", "registry.example:5000", USER, PASSWORD) is None


def test_no_repr_shows_the_password() -> None:
    manifest = parse_manifest(private_sdl("ghcr.io/org/app:1", credentials("ghcr.io")))
    service = manifest.services["job"]
    auth = RegistryAuth("ghcr.io", USER, PASSWORD)
    spec = ContainerSpec("L", "job", "ghcr.io/org/app:1", registry_auth=auth)
    for shown in (service.credentials, service, manifest, auth, spec):
        assert PASSWORD not in repr(shown)
    assert USER in repr(service.credentials)
    assert auth.scrub(f"denied for {PASSWORD}!") == "denied for ********!"
    # the spec's digest (a container label) is the same with or without a login
    assert spec.digest == ContainerSpec("L", "job", "ghcr.io/org/app:1").digest


# --- a real registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    image: str  # host/private/busybox:1, not on the engine until a lease pulls it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:  # CI runs scripts/test-deps.sh, which installs it: never a skip
        pytest.fail(f"{name} is missing: run scripts/test-deps.sh (apt: docker-registry)")
    return found


def _wait_for_registry(host: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "docker-registry exited at start"
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
        except urllib.error.HTTPError as exc:  # 401: up, and asking for a login
            assert exc.code == 401
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"docker-registry did not answer on {host}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    serve, htpasswd = _tool("docker-registry"), _tool("htpasswd")
    root = tmp_path_factory.mktemp("registry")
    users = subprocess.run(
        [htpasswd, "-Bbn", USER, PASSWORD], check=True, capture_output=True
    ).stdout
    (root / "htpasswd").write_bytes(users)
    host = f"127.0.0.1:{_free_port()}"
    (root / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '{host}', secret: test-secret}}\n"
        f"auth: {{htpasswd: {{realm: test, path: {root / 'htpasswd'}}}}}\n"
    )
    with (root / "registry.log").open("wb") as out:
        proc = subprocess.Popen([serve, "serve", str(root / "config.yml")], stdout=out, stderr=out)
    reg = Registry(host, f"{host}/private/busybox:1")
    try:
        _wait_for_registry(host, proc)
        _push(reg)
        yield reg
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        _forget(reg.image)


def _push(reg: Registry) -> None:
    """Put the local busybox in the registry under a private name, then off the engine."""
    client = docker.from_env()
    repo, tag = reg.image.rsplit(":", 1)
    client.images.get(LOCAL_IMAGE).tag(repo, tag)
    login = {"username": USER, "password": PASSWORD}  # never `docker login`: no config file
    for event in client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=login):
        assert "error" not in event, event
    client.close()
    _forget(reg.image)


def _forget(image: str) -> None:
    """The image off the engine, with the tag that marks it as pulled with a login."""
    client = docker.from_env()
    try:
        for ref in (image, private_mark(image)):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(ref, force=True)
    finally:
        client.close()


def credentials(host: str, password: str = PASSWORD) -> str:
    return f"    credentials:\n      host: {host}\n      username: {USER}\n      password: {password}\n"


def private_sdl(image: str, credentials_block: str = "", memory: str = "64Mi") -> bytes:
    return (
        'version: "2.0"\n'
        "services:\n"
        "  job:\n"
        f"    image: {image}\n"
        '    command: ["sh", "-c"]\n'
        "    args: ['echo private hello']\n"
        f"{credentials_block}"
        "profiles:\n"
        "  compute:\n"
        "    job:\n"
        "      resources:\n"
        "        cpu: {units: 0.5}\n"
        f"        memory: {{size: {memory}}}\n"
        "        storage: {size: 100Mi}\n"
        "  placement:\n"
        "    here:\n"
        "      pricing:\n"
        "        job: {denom: uact, amount: 3000}\n"
        "deployment:\n"
        "  job:\n"
        "    here: {profile: job, count: 1}\n"
        "gpumarket:\n"
        "  kind: training\n"
        "  restart: never\n"
        "  auction: {bid_window: 1s}\n"
    ).encode()


@dataclass
class Agent:
    supervisor: LeaseSupervisor
    recorder: Recorder

    def run(self, sdl: bytes) -> StatusReport:
        manifest = parse_manifest(sdl)
        group = manifest.groups[0]
        alloc = allocate(group, Capacity(8000, 8 * GIB, 100 * GIB, ()))
        assert isinstance(alloc, Allocation)
        lease = f"D{uuid.uuid4().hex[:6]}/1/1/prov"
        return self.supervisor.start_lease(lease, manifest, group, alloc)


@pytest.fixture
def agent(registry: Registry) -> Iterator[Agent]:
    """A fresh agent on the real engine, with the private image not on it."""
    _forget(registry.image)
    provider = f"test-{uuid.uuid4().hex[:8]}"
    rt = DockerRuntime.connect(provider)
    rec = Recorder()
    sup = LeaseSupervisor(rt, RuntimeSection(), rec.report, rec.ship)
    yield Agent(sup, rec)
    _let_followers_finish(rec)
    sup.close()
    cleanup_provider(rt.client, provider)
    rt.close()


def _let_followers_finish(rec: Recorder) -> None:
    """Each started job runs to its end and its log followers read their streams out, so none
    is cut off mid-stream (an abandoned stream leaves its socket to the garbage collector)."""
    started = sum(1 for r in rec.reports if r.running)
    rec.wait_for(lambda r: sum(1 for x in r.reports if x.exited and x.exit_code == 0) >= started)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        t.name.startswith(("logs-gm-", "wait-gm-")) for t in threading.enumerate()
    ):
        time.sleep(0.05)


def _no_password_anywhere(agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    assert PASSWORD not in caplog.text
    assert not [line for line in agent.recorder.lines if PASSWORD in line.text]
    assert not [r for r in agent.recorder.reports if PASSWORD in repr(r)]


@pytest.mark.docker
def test_the_sdl_credentials_pull_a_private_image_and_it_runs(
    registry: Registry, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = agent.run(private_sdl(registry.image, credentials(registry.host)))
    assert first.running, first.message
    agent.recorder.wait_for(lambda r: "private hello" in r.texts("stdout"))
    assert f"pulling {registry.image} as {USER} on {registry.host}" in agent.recorder.texts(
        "system"
    )
    _no_password_anywhere(agent, caplog)


def _denied(registry: Registry, why: str) -> str:
    return (
        f"pull {registry.image} failed: pull access denied / authentication required for "
        f"{registry.host}: {why}"
    )


@pytest.mark.docker
def test_without_credentials_the_lease_fails_with_the_reason(
    registry: Registry, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    report = agent.run(private_sdl(registry.image))
    assert report.exited and not report.running
    why = f"the SDL gives no credentials for it (services.*.credentials.host: {registry.host})"
    assert report.message.startswith(_denied(registry, why)), report.message
    assert agent.supervisor.runtime.owned() == []


@pytest.mark.docker
def test_credentials_for_another_registry_are_not_sent(
    registry: Registry, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    report = agent.run(private_sdl(registry.image, credentials("ghcr.io")))
    assert report.exited
    assert "the SDL gives no credentials for it" in report.message
    _no_password_anywhere(agent, caplog)


@pytest.mark.docker
def test_wrong_credentials_fail_the_lease_without_echoing_them(
    registry: Registry, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{PASSWORD}"
    report = agent.run(private_sdl(registry.image, credentials(registry.host, wrong)))
    assert report.exited
    why = f"the registry refused the SDL's credentials for user {USER}"
    assert report.message.startswith(_denied(registry, why)), report.message
    for secret in (wrong, PASSWORD):
        assert secret not in caplog.text
        assert not [line for line in agent.recorder.lines if secret in line.text]


@pytest.mark.docker
def test_a_cached_private_image_still_needs_the_credentials(
    registry: Registry, agent: Agent
) -> None:
    """A private image stays on the host after the lease that pulled it; the next lease without
    the right login must not run it from the cache."""
    assert agent.run(private_sdl(registry.image, credentials(registry.host))).running
    assert agent.run(private_sdl(registry.image)).exited
    restarted = DockerRuntime.connect(f"test-{uuid.uuid4().hex[:8]}")  # knows only the engine
    with pytest.raises(RuntimeFailure, match="the SDL gives no credentials"):
        restarted.ensure_image(registry.image, lambda _text: None)
    restarted.close()
    wrong = agent.run(private_sdl(registry.image, credentials(registry.host, "not-the-pw")))
    assert wrong.exited and "refused the SDL's credentials" in wrong.message
    assert agent.run(private_sdl(registry.image, credentials(registry.host))).running


def test_the_registry_tools_are_installed_for_the_tests() -> None:
    script = (Path(__file__).resolve().parents[2] / "scripts" / "test-deps.sh").read_text()
    assert "missing+=(docker-registry)" in script and "missing+=(apache2-utils)" in script


@pytest.mark.docker
@pytest.mark.slow
def test_the_tenant_reads_why_its_private_image_did_not_pull(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Real marketplace, real agent, real registry: without the login the tenant's lease closes
    FAILED with the registry's refusal; with it the job runs. The password is in no log."""
    caplog.set_level(logging.DEBUG)
    _forget(registry.image)

    async def scenario() -> None:
        admin = Key.generate()
        async with e2e.marketplace(tmp_path, admin) as port:
            cfg = parse_config(e2e.agent_config(port, tmp_path / "agent"))
            said: list[str] = []
            agent = e2e.docker_agent(cfg, said)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            try:
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                tenant = e2e.Tenant(channel, admin)
                bare = await tenant.deploy(private_sdl(registry.image).decode())
                failed = await e2e.eventually(lambda: tenant.lease(bare.id, pb.LEASE_CLOSED))
                assert failed.close_reason == pb.FAILED
                why = (
                    "the SDL gives no credentials for it "
                    f"(services.*.credentials.host: {registry.host})"
                )
                assert failed.message.startswith(_denied(registry, why)), failed.message
                # another shape: the agent rests a shape that just failed to start
                login = credentials(registry.host)
                ok = await tenant.deploy(private_sdl(registry.image, login, "96Mi").decode())
                done = await e2e.eventually(lambda: tenant.lease(ok.id, pb.LEASE_CLOSED))
                assert done.close_reason == pb.COMPLETED, done.message
                assert "private hello" in await tenant.logs(done.id)
                assert not [line for line in said if PASSWORD in line]
                await channel.close(grace=None)
            finally:
                stop.set()
                assert await task == 0
                e2e.finish(agent)

    e2e.run_async(scenario())
    assert PASSWORD not in caplog.text
