"""The agent against the real marketplace server (gRPC on a real socket, SQLite in tmp) and the
real Docker engine: deploy → bid → lease → container → logs → completed/failed; agent restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message

from marketplace.api.envelope import seal
from marketplace.api.v1 import market_pb2 as pb
from marketplace.api.v1 import market_pb2_grpc as pb_grpc
from marketplace.core.clock import SystemClock
from marketplace.core.market import MarketConfig
from marketplace.identity import Key
from marketplace.server.app import MarketApp
from marketplace.server.servicers import add_servicers
from marketplace.server.store import Store
from provider_agent.agent import Agent
from provider_agent.config import AgentConfig, parse_config
from provider_agent.runtime import DockerRuntime
from tests.agent.test_docker_runtime import cleanup_provider
from tests.helpers import REPO, await_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
T = TypeVar("T")

JOB = """
version: "2.0"
services:
  job:
    image: gpumarket/busybox:latest
    command: ["sh", "-c"]
    args: [{script!r}]
profiles:
  compute:
    job:
      resources:
        cpu: {{units: 1}}
        memory: {{size: {memory}}}
        storage: {{size: 100Mi}}
{gpu}  placement:
    here:
      pricing:
        job: {{denom: uact, amount: 3000}}
deployment:
  job:
    here: {{profile: job, count: 1}}
gpumarket:
  kind: training
  restart: never
  auction:
    bid_window: 1s
"""


GPU = """\
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
"""


def job(script: str, gpus: int = 0, memory: str = "64Mi") -> str:
    return JOB.format(script=script, gpu=GPU if gpus else "", memory=memory)


def agent_config(port: int, state: Path) -> dict[str, Any]:
    return {
        "provider": {"key": "e2e", "state_dir": str(state)},
        "marketplace": {"address": f"127.0.0.1:{port}", "reconnect_max_s": 1.0},
        "gpu": {
            "backend": "replay",
            "replay_file": "builtin:h100_nvml.json",
            "poll_interval_s": 1.0,
        },
        "resources": {"cpu": 8, "memory": "16Gi", "storage": "100Gi"},
        "pricing": {"scale": {"cpu_hour": "0.01", "gpu_hour": {"h100": "0.50"}}},
        "metrics": {"enabled": False},
    }


@contextlib.asynccontextmanager
async def marketplace(tmp: Path, admin: Key, port: int = 0) -> AsyncIterator[int]:
    config = MarketConfig(admin_address=admin.address, heartbeat_interval_ms=500)
    app = MarketApp(Store(tmp / "market.db"), config)
    await app.start()
    server = grpc.aio.server()
    add_servicers(server, app)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)
        await app.stop()


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 45) -> T:
    """Poll `probe` until it returns something truthy (with a deadline, never a fixed sleep)."""
    return await await_until(probe, timeout, getattr(probe, "__qualname__", str(probe)))


class Tenant:
    def __init__(self, channel: grpc.aio.Channel, admin: Key, key: Key | None = None) -> None:
        self.key = key or Key.generate()
        self.stub = pb_grpc.TenantStub(channel)
        self.admin = admin
        self.market = admin.address  # the marketplace's id: its admin key's address

    def signed(self, message: Message) -> pb.SignedRequest:
        return seal(self.key, message, market=self.market)

    async def deploy(self, sdl: str) -> pb.Deployment:
        await self.stub.Fund(
            seal(
                self.admin,
                pb.FundAccount(address=self.key.address, amount=100_000_000),
                market=self.market,
            )
        )
        msg = pb.CreateDeployment(sdl=sdl.encode(), deposit=20_000_000)
        return await self.stub.CreateDeployment(seal(self.key, msg, market=self.market))

    async def lease(self, deployment_id: str, state: int | None = None) -> pb.Lease | None:
        dep = await self.stub.GetDeployment(self.signed(pb.GetRequest(id=deployment_id)))
        for lease_id in dep.lease_ids:
            lease = await self.stub.GetLease(self.signed(pb.GetRequest(id=lease_id)))
            if state is None or lease.state == state:
                return lease
        return None

    async def logs(self, lease_id: str) -> list[str]:
        call = self.stub.StreamLogs(
            self.signed(pb.StreamLogsRequest(lease_id=lease_id, follow=False))
        )
        return [line.line async for line in call]


def run_async(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 150))


def test_a_deployment_runs_on_the_agent_and_completes(tmp_path: Path) -> None:
    async def scenario() -> None:
        admin = Key.generate()
        async with marketplace(tmp_path, admin) as port:
            cfg = parse_config(agent_config(port, tmp_path / "agent"))
            said: list[str] = []
            agent = docker_agent(cfg, said)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            try:
                await eventually(lambda: _async(any("registered" in s for s in said)))
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                tenant = Tenant(channel, admin)
                # a CPU job that succeeds
                ok = await tenant.deploy(job("echo hello from the lease", gpus=0))
                done = await eventually(lambda: tenant.lease(ok.id, pb.LEASE_CLOSED))
                assert done.close_reason == pb.COMPLETED and done.exit_code == 0
                assert "hello from the lease" in await tenant.logs(done.id)
                assert any(s.startswith("bid ") and ok.id in s for s in said)
                # a failing job reports its exit code
                bad = await tenant.deploy(job("echo failing; exit 7", gpus=0))
                failed = await eventually(lambda: tenant.lease(bad.id, pb.LEASE_CLOSED))
                assert failed.close_reason == pb.FAILED and failed.exit_code == 7
                # a job over its memory limit is OOM-killed, and the tenant is told so
                oom = await tenant.deploy(job("tail /dev/zero", memory="16Mi"))
                killed = await eventually(lambda: tenant.lease(oom.id, pb.LEASE_CLOSED))
                assert killed.close_reason == pb.FAILED and killed.exit_code == 137
                assert "out of memory" in killed.message
                # a GPU job gets the replayed H100: the container cannot start without the
                # NVIDIA runtime, and the lease fails with the engine's reason
                gpu = await tenant.deploy(job("nvidia-smi", gpus=1))
                lost = await eventually(lambda: tenant.lease(gpu.id, pb.LEASE_CLOSED))
                assert lost.close_reason == pb.FAILED
                assert "could not select device driver" in lost.message
                # closed leases leave no containers behind
                runtime = DockerRuntime.connect(agent.key.address)
                await eventually(lambda: _async(runtime.owned() == []))
                runtime.close()
                await channel.close(grace=None)
            finally:
                stop.set()
                assert await task == 0
                finish(agent)

    run_async(scenario())


async def _async(value: T) -> T:
    return value


def docker_agent(cfg: AgentConfig, said: list[str]) -> Agent:
    """An agent as `_main` builds it: on the Docker engine, with the system clock."""
    key = Key.generate()
    return Agent(cfg, key, DockerRuntime.connect(key.address), SystemClock(), say=said.append)


def finish(agent: Agent) -> None:
    agent.runtime.close()
    cleanup(agent.key.address)


def cleanup(provider: str) -> None:
    rt = DockerRuntime.connect(provider)
    cleanup_provider(rt.client, provider)
    rt.close()


def test_agent_reconnects_after_a_marketplace_restart_and_resumes(tmp_path: Path) -> None:
    async def scenario() -> None:
        admin = Key.generate()
        async with marketplace(tmp_path, admin) as port:
            cfg = parse_config(agent_config(port, tmp_path / "agent"))
            said: list[str] = []
            agent = docker_agent(cfg, said)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await eventually(lambda: _async(any("registered" in s for s in said)))
        try:
            await eventually(lambda: _async(any("marketplace unreachable" in s for s in said)))
            async with marketplace(tmp_path, admin, port) as again:  # same DB, same port
                assert again == port
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                tenant = Tenant(channel, admin)
                dep = await tenant.deploy(job("echo after the restart"))
                done = await eventually(lambda: tenant.lease(dep.id, pb.LEASE_CLOSED))
                assert done.close_reason == pb.COMPLETED
                assert sum("registered" in s for s in said) == 2
                await channel.close(grace=None)
                stop.set()
                assert await task == 0
        finally:
            stop.set()
            finish(agent)

    run_async(scenario())


def test_a_bid_delayed_across_a_marketplace_restart_still_lands(tmp_path: Path) -> None:
    """The order is read off the stream before the marketplace goes away; the bid (slowed by a
    pricing script) must still be placed once it is back, not dropped for good."""

    async def scenario() -> None:
        admin = Key.generate()
        raw = agent_config(0, tmp_path / "agent")
        raw["pricing"] = {
            "strategy": "script",
            "script": {"command": ["sh", "-c", "cat >/dev/null; sleep 1.5; echo 0.05"]},
        }
        async with marketplace(tmp_path, admin) as port:
            raw["marketplace"]["address"] = f"127.0.0.1:{port}"
            said: list[str] = []
            agent = docker_agent(parse_config(raw), said)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await eventually(lambda: _async(agent.connected.is_set()))
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            owner = Tenant(channel, admin)
            dep = await owner.deploy(job("echo bid after restart"))
            await channel.close(grace=None)
            await eventually(lambda: _async(bool(agent.bidder.open_orders())))  # script running
        try:
            # the script ends while the marketplace is down: the bid meets UNAVAILABLE
            tried = ("marketplace away", "not placed")
            await eventually(lambda: _async(any(w in s for s in said for w in tried)))
            async with marketplace(tmp_path, admin, port):  # same DB, same port
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                tenant = Tenant(channel, admin, owner.key)  # the deployment's owner reads it
                done = await eventually(lambda: tenant.lease(dep.id, pb.LEASE_CLOSED))
                assert done.close_reason == pb.COMPLETED
                await channel.close(grace=None)
                stop.set()
                assert await task == 0
        finally:
            stop.set()
            finish(agent)

    run_async(scenario())


def test_agent_killed_mid_lease_re_adopts_it_and_its_logs_continue(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "GPUMARKET_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO),
    }
    provider_key = Key.generate()
    (home / "keys").mkdir(parents=True)
    key_file = home / "keys" / "e2e.pem"
    key_file.write_bytes(provider_key.to_pem())
    key_file.chmod(0o600)

    log_file = tmp_path / "agent.log"

    async def start_agent(port: int) -> asyncio.subprocess.Process:
        cfg = tmp_path / "provider.toml"
        data = agent_config(port, tmp_path / "agent")
        data["provider"]["key"] = str(key_file)
        cfg.write_text(_toml(data))
        with log_file.open("a") as log:  # a file, not a pipe nobody reads: it never fills up
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from marketplace.cli.main import main; main()",
                "provider",
                "run",
                "--config",
                str(cfg),
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def scenario() -> None:
        admin = Key.generate()
        async with marketplace(tmp_path, admin) as port:
            agent = await start_agent(port)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            tenant = Tenant(channel, admin)
            runtime = DockerRuntime.connect(provider_key.address)
            try:
                # registered before the order opens: a process still starting when the 1 s bid
                # window closes would decline it ("the bid window has closed")
                await eventually(lambda: _online(channel, provider_key.address))
                script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
                dep = await tenant.deploy(job(script, gpus=0))
                lease = await eventually(lambda: tenant.lease(dep.id, pb.LEASE_RUNNING))
                await eventually(lambda: _ticks(tenant, lease.id, 3))
                [before] = runtime.owned()
                agent.send_signal(signal.SIGKILL)
                await agent.wait()
                agent = await start_agent(port)
                ticks = len(await tenant.logs(lease.id))
                await eventually(lambda: _ticks(tenant, lease.id, ticks + 5))
                [after] = runtime.owned()
                assert after.id == before.id  # re-adopted, not started twice
                assert (await tenant.lease(dep.id)).state == pb.LEASE_RUNNING  # type: ignore[union-attr]
                lines = [x for x in await tenant.logs(lease.id) if x.startswith("tick")]
                numbers = [int(x.split()[1]) for x in lines]
                assert numbers == sorted(numbers)  # resumed, not replayed from the start
                # the tenant closes it: the agent stops and removes the container
                await tenant.stub.CloseLease(tenant.signed(pb.CloseLease(lease_id=lease.id)))
                await eventually(lambda: _async(runtime.owned() == []))
                agent.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(agent.wait(), 30) == 0
            except BaseException:
                if agent.returncode is None:
                    agent.kill()
                print("agent output:\n" + log_file.read_text())
                raise
            finally:
                if agent.returncode is None:
                    agent.kill()
                    await agent.wait()
                cleanup_provider(runtime.client, provider_key.address)
                runtime.close()
                await channel.close(grace=None)

    run_async(scenario())


async def _online(channel: grpc.aio.Channel, provider: str) -> bool:
    """Whether the market lists `provider` online (registered, heartbeating)."""
    found = await pb_grpc.MarketStub(channel).ListProviders(pb.ListRequest(open_only=True))
    return any(p.address == provider for p in found.providers)


async def _ticks(tenant: Tenant, lease_id: str, n: int) -> bool:
    return sum(x.startswith("tick") for x in await tenant.logs(lease_id)) >= n


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """A tiny TOML writer for the test's nested dict of scalars."""
    scalars = []
    tables = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, bool):
            scalars.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            scalars.append(f'"{key}" = "{value}"')
        else:
            scalars.append(f"{key} = {value}")
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for key, value in tables:
        out.append(_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out) + "\n"
