"""`gpumarket demo`: the whole market on this machine, in well under a minute.

A marketplace and two provider agents (one replaying a recorded H100, one CPU-only) run as
separate processes over real gRPC; a tenant funds itself, deploys the shipped inference and
training manifests, watches the auction, fetches the inference endpoint over HTTP, follows the
training job's logs to its completion and settlement, then SIGKILLs the provider serving the
inference lease and watches it fail over to the other. Everything is removed at the end, on
Ctrl-C too. The lines starting with `$` are the commands a person would type for each step.
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from types import FrameType

import click

from marketplace.api import convert
from marketplace.api.client import MarketClient, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.demo_files import demo_file
from marketplace.cli.demo_stack import (
    Stack,
    docker_problem,
    ensure_image,
    wait_for_market,
)
from marketplace.cli.render import bid_table, endpoint_text, gpu_summary, lease_table
from marketplace.core import money
from marketplace.core.errors import MarketError
from marketplace.core.money import format_amount
from marketplace.identity import Key

DEPOSIT = 5_000_000  # 5 units per deployment
FUNDS = 20_000_000


@dataclass
class Timings:
    deploy_to_running_s: dict[str, float] = field(default_factory=dict)
    kill_to_lost_s: float = 0.0
    kill_to_running_s: float = 0.0


def say(text: str = "") -> None:
    click.echo(text)


def step(title: str) -> None:
    click.echo()
    click.echo(click.style(f"== {title}", bold=True, fg="cyan"))


def command(text: str) -> None:
    click.echo(click.style(f"$ {text}", bold=True))


@click.command()
@click.option(
    "--heartbeat-timeout",
    type=click.FloatRange(min=1.0),
    default=3.0,
    show_default=True,
    help="Seconds of provider silence before its leases fail over.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary dir (logs, configs, SQLite).")
def demo(heartbeat_timeout: float, keep: bool) -> None:
    """Run the whole market here: marketplace, two providers, a tenant, a failover (needs Docker)."""
    problem = docker_problem()
    if problem is None:
        problem = ensure_image(say)
    if problem is not None:
        click.echo(f"gpumarket demo: {problem}", err=True)
        sys.exit(1)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    stack = Stack(heartbeat_timeout_s=heartbeat_timeout, keep_root=keep)
    started = time.monotonic()
    try:
        timings = run_demo(stack)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: cleaning up", err=True)
        _cleanup(stack, keep)
        sys.exit(130)
    except (MarketError, TimeoutError, RuntimeError) as exc:
        click.echo(f"gpumarket demo failed: {exc}", err=True)
        click.echo(stack.logs(), err=True)
        _cleanup(stack, keep)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _cleanup(stack, keep)
    step("timings")
    for name, seconds in timings.deploy_to_running_s.items():
        say(f"deploy → container running ({name}): {seconds:.2f} s")
    say(f"provider SIGKILL → lease provider_lost: {timings.kill_to_lost_s:.2f} s")
    say(f"provider SIGKILL → lease running again elsewhere: {timings.kill_to_running_s:.2f} s")
    say(f"whole demo: {time.monotonic() - started:.1f} s")


def _units(micro: int) -> str:
    """An amount as a person types it: 5000000 → "5"."""
    return f"{micro / 1_000_000:g}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _cleanup(stack: Stack, keep: bool) -> None:
    stack.close()
    where = f"; kept {stack.root}" if keep else "; temporary dir removed"
    say(f"cleaned up: processes stopped, containers removed{where}")


def run_demo(stack: Stack) -> Timings:
    timings = Timings()
    say(f"gpumarket demo: the whole market on this machine (working dir {stack.root})")

    step("1. a marketplace (SQLite in a temporary dir)")
    command(
        f"gpumarket market serve --listen 127.0.0.1:0 --data-dir {stack.data_dir} "
        f"{' '.join(stack.market_args())}"
    )
    address = stack.start_market()
    say(f"marketplace listening on {address}")

    step("2. two providers")
    examples = {"h100": "provider-h100-replay.toml", "cpu": "provider-cpu.toml"}
    for name, file in examples.items():
        stack.add_provider(name, demo_file(file))
        command(f"gpumarket provider run --config examples/{file}")
        stack.start_provider(name)
    stack.wait_providers_online(list(examples))
    market = MarketClient(address, stack.admin_key())  # the audit at the end needs it
    for p in market.list_providers(online_only=True):
        name = stack.provider_by_address(p.address).name
        gpus = gpu_summary(p.inventory).replace("-", "no GPUs (CPU only)")
        say(f"  {name:5} {p.address}  {gpus}; {p.inventory.cpu_millis // 1000} CPU")

    step("3. a tenant with funds")
    tenant_key = Key.generate()
    tenant = TenantClient(address, tenant_key)
    command(f"gpumarket account fund {tenant_key.address} {_units(FUNDS)} --admin-key ...")
    TenantClient(address, stack.admin_key()).fund(tenant_key.address, FUNDS)
    say(f"balance {format_amount(tenant.get_account().balance)}")

    step("4. deploy an inference service and a training job")
    deployed: dict[str, pb.Deployment] = {}
    for name in ("inference", "training"):
        command(f"gpumarket deploy examples/{name}.yaml --deposit {_units(DEPOSIT)}")
        dep = tenant.create_deployment(demo_file(f"{name}.yaml").read_bytes(), DEPOSIT)
        deployed[name] = dep
        say(f"deployment {dep.id}: order {dep.order_ids[0]} open for bids")
    say("(sealed bids until each order's 2 s bid window closes)")

    step("5. the auctions: bids and winners")
    leases: dict[str, pb.Lease] = {}
    for name, dep in deployed.items():
        lease = wait_for_market(partial(_started, tenant, dep.id), 30, f"{name} to run")
        # the marketplace's own timestamps: deployment created → provider reported it running
        timings.deploy_to_running_s[name] = (lease.running_at_ms - dep.created_at_ms) / 1000
        leases[name] = lease
        command(f"gpumarket bids {lease.order_id}")
        bid_table(tenant.list_bids(lease.order_id))
        winner = stack.provider_by_address(lease.provider).name
        say(
            f"winner: {winner} at {format_amount(lease.price_per_hour)}/h → lease {lease.id}, "
            f"container running {timings.deploy_to_running_s[name]:.2f} s after deploy"
        )

    step("6. the inference endpoint, fetched over HTTP")
    inference = leases["inference"]
    command("gpumarket leases")
    lease_table([tenant.get_lease(x.id) for x in leases.values()])
    say(_fetch(inference))

    step("7. the training job's logs, to its completion")
    training = leases["training"]
    command(f"gpumarket logs {training.id} -f")
    done = _follow_logs(tenant, training.id)
    say(f"lease {done.id}: {_reason(done)} (exit {done.exit_code})")

    step("8. settlement of the training job")
    dep = wait_for_market(
        lambda: _closed_deployment(tenant, done.deployment_id), 15, "the deployment to settle"
    )
    billed_ms = done.billed_until_ms - done.running_at_ms
    owed = money.accrued(done.price_per_hour, billed_ms)
    say(
        f"ran {billed_ms / 1000:.3f} s at {format_amount(done.price_per_hour)}/h: "
        f"owed {format_amount(owed)}, paid to the provider {format_amount(done.paid)}"
        + (" (exact to the micro-unit)" if owed == done.paid else " (MISMATCH)")
    )
    say(
        f"deployment {dep.id} closed by itself; {format_amount(DEPOSIT - done.paid)} "
        "of the deposit went back to the tenant"
    )
    account = tenant.get_account()
    say(
        f"tenant: balance {format_amount(account.balance)}, "
        f"escrowed {format_amount(account.escrowed)}"
    )

    step("9. failover: SIGKILL the provider serving the inference lease")
    victim = stack.provider_by_address(inference.provider)
    assert victim.proc is not None
    say(f"kill -9 {victim.proc.pid}   # provider {victim.name}, running lease {inference.id}")
    killed_ms = int(time.time() * 1000)
    stack.kill_provider(victim.name)
    lost = wait_for_market(
        lambda: _lost(tenant, inference.id), stack.heartbeat_timeout_s + 15, "the lease to be lost"
    )
    timings.kill_to_lost_s = (lost.closed_at_ms - killed_ms) / 1000
    say(
        f"lease {lost.id}: {_reason(lost)} after {timings.kill_to_lost_s:.2f} s; billing stopped "
        f"at its last heartbeat, paid {format_amount(lost.paid)}; the order is open again"
    )
    again = wait_for_market(
        lambda: _lease(tenant, inference.deployment_id, pb.LEASE_RUNNING), 30, "the failover"
    )
    timings.kill_to_running_s = (again.running_at_ms - killed_ms) / 1000
    command(f"gpumarket bids {again.order_id}")
    bid_table(tenant.list_bids(again.order_id))
    survivor = stack.provider_by_address(again.provider).name
    say(f"lease {again.id} running on {survivor}, {timings.kill_to_running_s:.2f} s after the kill")
    say(_fetch(again))

    step("10. close the inference service; the books")
    command(f"gpumarket close {inference.deployment_id}")
    tenant.close_deployment(inference.deployment_id)
    paid = sum(
        tenant.get_lease(x).paid for x in tenant.get_deployment(inference.deployment_id).lease_ids
    )
    say(f"deployment {inference.deployment_id} closed: providers paid {format_amount(paid)} in all")
    account = tenant.get_account()
    spent = FUNDS - account.balance
    say(f"tenant: balance {format_amount(account.balance)} (spent {format_amount(spent)})")
    command("gpumarket market audit --admin-key ...")
    report = market.audit()
    verdict = "balanced" if report.balanced else "NOT BALANCED"
    say(
        f"books {verdict}: {report.entries} ledger entries, {format_amount(report.total_minted)} minted"
    )
    tenant.close()
    market.close()
    return timings


# --- reads ------------------------------------------------------------------------------------


def _lease(tenant: TenantClient, deployment_id: str, state: int) -> pb.Lease | None:
    """The deployment's newest lease, when it is in `state`."""
    dep = tenant.get_deployment(deployment_id)
    if not dep.lease_ids:
        return None
    lease: pb.Lease = tenant.get_lease(dep.lease_ids[-1])
    return lease if lease.state == state else None


def _started(tenant: TenantClient, deployment_id: str) -> pb.Lease | None:
    """The deployment's newest lease once its container has run (it may have finished since)."""
    dep = tenant.get_deployment(deployment_id)
    lease = tenant.get_lease(dep.lease_ids[-1]) if dep.lease_ids else None
    return lease if lease is not None and lease.running_at_ms else None


def _lost(tenant: TenantClient, lease_id: str) -> pb.Lease | None:
    lease: pb.Lease = tenant.get_lease(lease_id)
    return lease if lease.state == pb.LEASE_CLOSED else None


def _closed_deployment(tenant: TenantClient, deployment_id: str) -> pb.Deployment | None:
    dep: pb.Deployment = tenant.get_deployment(deployment_id)
    return dep if dep.state == pb.DEPLOYMENT_CLOSED else None


def _reason(lease: pb.Lease) -> str:
    return convert.close_reason_name(lease.close_reason) or convert.lease_state_name(lease.state)


def _follow_logs(tenant: TenantClient, lease_id: str, timeout_s: float = 60.0) -> pb.Lease:
    """Print the lease's log lines as they arrive until it closes; returns the closed lease."""
    last_seq = 0
    deadline = time.monotonic() + timeout_s
    while True:
        lease: pb.Lease = tenant.get_lease(lease_id)
        for line in tenant.stream_logs(lease_id, after_seq=last_seq):
            last_seq = max(last_seq, line.seq)
            prefix = "" if line.stream == "stdout" else f"[{line.stream}] "
            say(f"  {prefix}{line.line}")
        if lease.state == pb.LEASE_CLOSED:  # read before the logs: no line is missed
            return lease
        if time.monotonic() >= deadline:
            raise TimeoutError(f"lease {lease_id} did not finish within {timeout_s:g} s")
        time.sleep(0.2)


def _fetch(lease: pb.Lease, timeout_s: float = 10.0) -> str:
    """GET the lease's first endpoint's /health from this machine."""
    endpoint = lease.endpoints[0]
    url = f"http://127.0.0.1:{endpoint.external_port}/health"
    command(f"curl {url}    # {endpoint_text(endpoint)}")

    def get() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return str(answer.read().decode().strip())
        except (urllib.error.URLError, OSError):
            return None  # the server in the container is still starting

    return wait_for_market(get, timeout_s, f"{url} to answer", interval=0.1)
