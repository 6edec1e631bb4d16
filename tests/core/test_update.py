"""Update in place: what may change (manifest/update.py, one refusal per field class) and what
the market does with an update (versions, events, provider notices)."""

from __future__ import annotations

import pytest

from marketplace.core import money
from marketplace.core.clock import ManualClock
from marketplace.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from marketplace.core.events import DeploymentEventKind, ProviderEventKind
from marketplace.core.manifest import parse_manifest
from marketplace.core.manifest.update import plan_update
from marketplace.core.market import MarketConfig, MarketService
from marketplace.core.updates import DeploymentUpdate
from tests.core.test_market import ADMIN, TENANT, deploy, market_with

SDL = """\
version: "2.0"
services:
  web:
    image: gpumarket/busybox:1
    command: ["sh", "-c"]
    args: ["exec httpd -f -p 8080 -h /www"]
    env: ["MODE=a", "TOKEN=secret1"]
    expose:
      - port: 8080
        as: 80
        to:
          - global: true
    params:
      storage:
        data:
          mount: /data
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: 128Mi
        storage:
          - size: 512Mi
          - name: data
            size: 1Gi
            attributes:
              persistent: true
              class: beta2
  placement:
    anywhere:
      attributes:
        region: eu
      pricing:
        web:
          denom: uact
          amount: 2000
deployment:
  web:
    anywhere:
      profile: web
      count: 1
gpumarket:
  kind: inference
  restart: on-failure
"""


def plan(old: str, new: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    p = plan_update(parse_manifest(old, "old"), parse_manifest(new, "new"))
    return p.changes, p.refusals


def test_image_command_args_and_env_may_change() -> None:
    new = (
        SDL.replace("busybox:1", "busybox:2")
        .replace('["sh", "-c"]', '["/bin/sh", "-c"]')
        .replace("-h /www", "-h /srv")
        .replace("TOKEN=secret1", "TOKEN=secret2")
    )
    changes, refusals = plan(SDL, new)
    assert refusals == ()
    assert changes == (
        "web: image gpumarket/busybox:1 → gpumarket/busybox:2",
        "web: command",
        "web: args",
        "web: env (TOKEN)",
    )
    assert "secret" not in " ".join(changes)  # env values may be secrets: keys only


def test_nothing_changed_is_not_an_update() -> None:
    p = plan_update(parse_manifest(SDL, "a"), parse_manifest(SDL, "b"))
    assert not p.allowed
    assert "changes nothing" in p.reason


@pytest.mark.parametrize(
    ("old", "new", "refusal"),
    [
        ("units: 0.5", "units: 1", "web: resources (cpu) cannot change in place"),
        ("size: 128Mi", "size: 256Mi", "web: resources (memory) cannot change in place"),
        ("size: 1Gi", "size: 2Gi", "web: resources (storage) cannot change in place"),
        ("amount: 2000", "amount: 3000", "web: pricing cannot change in place"),
        ("count: 1", "count: 2", "web: count cannot change in place"),
        ("region: eu", "region: us", "placement anywhere: attributes and signedBy"),
        ("as: 80", "as: 8080", "web: expose cannot change in place"),
        ("mount: /data", "mount: /var/data", "web: storage cannot change in place"),
        ("restart: on-failure", "restart: always", "gpumarket job settings"),
    ],
)
def test_what_was_bought_is_refused_naming_service_and_field(
    old: str, new: str, refusal: str
) -> None:
    assert old in SDL
    changes, refusals = plan(SDL, SDL.replace(old, new).replace("busybox:1", "busybox:2"))
    assert any(r.startswith(refusal) for r in refusals), refusals
    assert changes[0].startswith("web: image")  # told too: the tenant fixes it all in one pass
    p = plan_update(parse_manifest(SDL, "a"), parse_manifest(SDL.replace(old, new), "b"))
    assert not p.allowed and p.reason.startswith(refusals[0])


def test_a_gpu_change_is_refused() -> None:
    gpu = "        memory:\n          size: 128Mi\n"
    with_gpu = gpu + (
        "        gpu:\n          units: 1\n          attributes:\n            vendor:\n"
        "              nvidia:\n                - model: {model}\n"
    )
    a = SDL.replace(gpu, with_gpu.format(model="h100"))
    b = SDL.replace(gpu, with_gpu.format(model="a100"))
    _, refusals = plan(a, b)
    assert refusals == ("web: resources (gpu) cannot change in place",)


def test_a_service_added_or_renamed_is_refused() -> None:
    renamed = SDL.replace("  web:\n    image", "  api:\n    image").replace(
        "deployment:\n  web:", "deployment:\n  api:"
    )
    renamed = renamed.replace("    web:\n      resources", "    api:\n      resources")
    renamed = renamed.replace("        web:\n          denom", "        api:\n          denom")
    renamed = renamed.replace("profile: web", "profile: api")
    _, refusals = plan(SDL, renamed)
    assert "api: a service cannot be added in place" in refusals
    assert "web: a service cannot be removed in place" in refusals


# --- the market ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


@pytest.fixture
def market(clock: ManualClock) -> MarketService:
    return market_with(clock, MarketConfig(admin_address=ADMIN))


@pytest.fixture
def running(market: MarketService, clock: ManualClock) -> tuple[str, str]:
    """A deployment whose lease runs version 1 on p1: (deployment id, lease id)."""
    dep_id = deploy(market)
    market.place_bid("p1", f"{dep_id}/1/1", 2 * money.MICRO)
    clock.advance(5_000)
    market.tick()
    lease_id = f"{dep_id}/1/1/p1"
    market.report_status("p1", lease_id, running=True, version=1)
    return dep_id, lease_id


def new_version(market: MarketService, dep_id: str, sdl: bytes = b"sdl v2") -> DeploymentUpdate:
    dep = market.get_deployment(dep_id)
    return DeploymentUpdate(dep.groups, dep.job, sdl, b"s" * 32, b"signed update", ("web: image",))


def test_an_update_is_the_next_version_and_its_provider_is_told(
    market: MarketService, running: tuple[str, str]
) -> None:
    dep_id, lease_id = running
    market.drain_changes()
    dep = market.update_deployment(TENANT, dep_id, 1, new_version(market, dep_id))
    assert dep.version == 2
    assert market.manifest_for("p1", lease_id)[0].sdl == b"sdl v2"
    changes = market.drain_changes()
    assert dep in changes.deployments
    [told] = [e for e in changes.provider_events if e.kind == ProviderEventKind.LEASE_UPDATED]
    assert (told.provider, told.lease_id) == ("p1", lease_id)
    [event] = [e for e in changes.deployment_events if e.deployment_id == dep_id]
    assert event.kind == DeploymentEventKind.DEPLOYMENT_UPDATED
    assert event.message == "version 2: web: image"

    market.report_status("p1", lease_id, running=True, version=2)
    assert market.get_lease(lease_id).version == 2
    kinds = [e.kind for e in market.deployment_events_after(dep_id)]
    assert kinds[-1] == DeploymentEventKind.UPDATE_RUNNING
    market.report_status("p1", lease_id, running=True, version=2)  # said again: no new event
    assert [e.kind for e in market.deployment_events_after(dep_id)] == kinds


def test_a_failed_update_is_told_once_and_the_old_version_runs(
    market: MarketService, running: tuple[str, str]
) -> None:
    dep_id, lease_id = running
    market.update_deployment(TENANT, dep_id, 1, new_version(market, dep_id))
    for _ in range(2):
        market.report_status(
            "p1", lease_id, running=True, version=2, update_failed=True, message="no such image"
        )
    lease = market.get_lease(lease_id)
    assert (lease.version, lease.failed_version) == (1, 2)
    failed = [
        e
        for e in market.deployment_events_after(dep_id)
        if e.kind == DeploymentEventKind.UPDATE_FAILED
    ]
    assert len(failed) == 1
    assert "no such image" in failed[0].message


def test_an_outsider_a_stale_base_and_a_closed_deployment_change_nothing(
    market: MarketService, running: tuple[str, str]
) -> None:
    dep_id, lease_id = running
    update = new_version(market, dep_id)
    with pytest.raises(PermissionDenied):
        market.update_deployment("mallory", dep_id, 1, update)
    with pytest.raises(FailedPrecondition, match="version 1 now, not 3"):
        market.update_deployment(TENANT, dep_id, 3, update)
    dep = market.get_deployment(dep_id)
    assert (dep.version, market.manifest_for("p1", lease_id)[0].sdl) == (1, b"sdl")
    with pytest.raises(InvalidArgument):  # a version the deployment never had
        market.report_status("p1", lease_id, running=True, version=5)
    market.close_deployment(TENANT, dep_id)
    with pytest.raises(FailedPrecondition, match="closed"):
        market.update_deployment(TENANT, dep_id, 1, update)


def test_the_market_refuses_other_groups_even_when_told_they_are_fine(
    market: MarketService, running: tuple[str, str]
) -> None:
    dep_id, _ = running
    dep = market.get_deployment(dep_id)
    other = DeploymentUpdate((), dep.job, b"x", b"s" * 32, b"r", ("web: image",))
    with pytest.raises(FailedPrecondition, match="cannot change in place"):
        market.update_deployment(TENANT, dep_id, 1, other)
    assert market.get_deployment(dep_id).version == 1


def updated_once(market: MarketService, clock: ManualClock) -> str:
    """A deployment updated twice: the first version runs, the second fails (the events test
    counts on every kind being emitted)."""
    dep_id = deploy(market)
    market.place_bid("p1", f"{dep_id}/1/1", 2 * money.MICRO)
    clock.advance(5_000)
    market.tick()
    lease_id = f"{dep_id}/1/1/p1"
    market.report_status("p1", lease_id, running=True, version=1)
    for version in (2, 3):
        market.update_deployment(TENANT, dep_id, version - 1, new_version(market, dep_id))
    market.report_status("p1", lease_id, running=True, version=2)
    market.report_status("p1", lease_id, running=True, version=3, update_failed=True)
    return dep_id


def test_a_provider_watching_afresh_is_told_of_updates_it_has_not_run(
    market: MarketService, running: tuple[str, str]
) -> None:
    dep_id, lease_id = running

    def told() -> list[str]:
        snapshot = market.provider_snapshot("p1")
        return [e.lease_id for e in snapshot if e.kind == ProviderEventKind.LEASE_UPDATED]

    assert told() == []
    market.update_deployment(TENANT, dep_id, 1, new_version(market, dep_id))
    assert told() == [lease_id]
    market.report_status("p1", lease_id, running=True, version=2, update_failed=True)
    assert told() == []  # tried and failed: told once is enough
