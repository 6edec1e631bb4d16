"""The live market's twin against a real marketplace (gRPC on port 0, SQLite): `estimate`
finds the providers that fit by the market's own matching and prices a manifest at the last
clearing prices, and `simulate --from-market` writes a scenario the simulator runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from marketplace.api.client import ProviderClient, TenantClient
from marketplace.cli.main import cli
from marketplace.core import money
from marketplace.core.events import DeploymentEventKind
from marketplace.identity import Key
from marketplace.server.testing import ServerThread, gpu_sdl, provider_registration
from simulator.scenario import load_scenario

# What the EU providers bid per hour for one H100, auction by auction; the lower one wins.
BIDS = [
    (1_900_000, 2_400_000),
    (2_000_000, 2_300_000),
    (2_100_000, 2_200_000),
    (2_050_000, 2_500_000),
    (1_950_000, 2_600_000),
]


@pytest.fixture
def market(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path / "market") as server:
        yield server


def cleared(
    server: ServerThread,
    tenant: TenantClient,
    bids: tuple[int, int],
    providers: list[ProviderClient],
) -> int:
    dep = tenant.create_deployment(gpu_sdl(bid_window="300ms"), 5 * money.MICRO)
    for client, price in zip(providers, bids, strict=True):
        client.place_bid(dep.order_ids[0], price)
    created = next(
        e for e in tenant.watch_deployment(dep.id) if e.kind == DeploymentEventKind.LEASE_CREATED
    )
    price = int(tenant.get_lease(created.lease_id).price_per_hour)
    tenant.close_deployment(dep.id)  # frees the provider's GPU for the next auction
    return price


def run(server: ServerThread, *args: str) -> Result:
    env = {"GPUMARKET_MARKET": server.address}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def traded(market: ServerThread) -> tuple[TenantClient, list[ProviderClient]]:
    """Two EU providers and one in the US (which the EU-only manifest cannot use); 5 leases."""
    key = Key.generate()
    tenant = TenantClient(market.address, key)
    TenantClient(market.address, market.admin).fund(key.address, 100 * money.MICRO)
    eu = []
    for name, region in (("p", "eu"), ("q", "eu"), ("r", "us")):
        client = ProviderClient(market.address, Key.generate())
        client.register(provider_registration(name, region))
        if region == "eu":
            eu.append(client)
    for bids in BIDS:
        cleared(market, tenant, bids, eu)
    return tenant, eu


def test_estimate_prices_a_manifest_where_the_market_then_clears_it(
    market: ServerThread, traded: tuple[TenantClient, list[ProviderClient]], tmp_path: Path
) -> None:
    sdl = tmp_path / "job.yaml"
    sdl.write_bytes(gpu_sdl())
    result = run(market, "estimate", str(sdl), "--json")
    assert result.exit_code == 0, result.output
    [group] = json.loads(result.output)
    assert group["eligible"] == 2  # the US provider fails the placement, as in a real auction
    assert group["gpu_model"] == "h100"
    p10, median, p90 = group["price_per_hour"]
    assert p10 <= median <= p90 and p10 >= 1_900_000 and p90 <= 2_100_000
    # the market then clears a like order inside the estimated range
    tenant, eu = traded
    price = cleared(market, tenant, (2_000_000, 2_400_000), eu)
    assert p10 <= price <= p90

    table = run(market, "estimate", str(sdl)).output
    assert "h100" not in table or "PROVIDERS" in table
    assert "2 (" in table and "act" in table


def test_estimate_says_plainly_when_no_provider_fits(market: ServerThread, tmp_path: Path) -> None:
    sdl = tmp_path / "job.yaml"
    sdl.write_bytes(gpu_sdl())
    result = run(market, "estimate", str(sdl))
    assert result.exit_code == 0, result.output
    assert "no online provider can run this group now" in result.output
    assert "no provider can bid now" in result.output


def test_a_bad_manifest_is_one_line(market: ServerThread, tmp_path: Path) -> None:
    sdl = tmp_path / "job.yaml"
    text = gpu_sdl().decode().replace("cpu: {units: 1}", "cpu: {units: lots}")
    sdl.write_text(text)
    line = text.splitlines().index("        cpu: {units: lots}") + 1
    result = run(market, "estimate", str(sdl))
    assert result.exit_code != 0
    assert "Traceback" not in result.output and f"job.yaml:{line}:" in result.output


def test_the_snapshot_is_a_scenario_the_simulator_runs(
    market: ServerThread, traded: tuple[TenantClient, list[ProviderClient]], tmp_path: Path
) -> None:
    out = tmp_path / "twin.yaml"
    result = run(market, "simulate", "--from-market", market.address, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "3 providers" in result.output
    text = out.read_text()
    assert text.startswith("# A twin of the market")
    scenario = load_scenario(out, {"duration_days": 0.05})
    assert scenario.providers.count == 3
    mix = scenario.providers.mix
    assert isinstance(mix, tuple | list)
    [machine] = mix
    assert (machine.model, machine.gpus_per_node, machine.interface) == ("h100", 2, "sxm")
    assert 1.9 <= scenario.providers.cost_per_gpu_hour["h100"] <= 2.1
    assert dict(scenario.providers.regions) == {"eu": 2, "us": 1}

    ran = run(
        market,
        "simulate",
        "run",
        str(out),
        "--set",
        "duration_days=0.05",
        "--no-plots",
        "--out",
        str(tmp_path / "sim"),
        "--json",
    )
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["metrics"]


def test_a_market_without_gpu_providers_has_no_twin(market: ServerThread, tmp_path: Path) -> None:
    result = run(market, "simulate", "--from-market", market.address, "-o", str(tmp_path / "t"))
    assert result.exit_code == 1
    assert "no GPU provider online: nothing to twin" in result.output
    assert not (tmp_path / "t").exists()
