"""`gpumarket provider ...`: run the agent, show what this box offers, quote a manifest."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from marketplace.core.limits import MAX_MANIFEST_BYTES
from marketplace.terminal import (
    LazyGroup,
    friendly_errors,
    json_option,
    print_json,
    print_table,
)
from marketplace.userfiles import read_bounded
from provider_agent.config import EX_CONFIG, AgentConfig, ConfigError, check_runnable, load_config

if TYPE_CHECKING:  # the inventory pulls in NVML: only the commands that read it import it
    from marketplace.api.v1 import market_pb2 as pb
    from marketplace.core.bidding import BidDecision
    from marketplace.core.resources import GroupSpec
    from provider_agent.inventory import Inventory

DEFAULT_CONFIG = "provider.toml"
config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Agent config (TOML). Default: ./provider.toml if present, else built-in defaults.",
)


def _load(config_path: Path | None, to_run: bool = False) -> AgentConfig:
    """The validated config; on a bad one print one line and exit 78 (EX_CONFIG)."""
    if config_path is None and Path(DEFAULT_CONFIG).exists():
        config_path = Path(DEFAULT_CONFIG)
    try:
        cfg = AgentConfig() if config_path is None else load_config(config_path)
        if to_run:
            check_runnable(cfg)
        return cfg
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EX_CONFIG)


@click.group(cls=LazyGroup)  # lazy: `gpumarket` grafts price-advice (a client command) on
def provider() -> None:
    """Run a GPU provider: inventory, quotes, price advice and the bidding/running daemon."""


@provider.command()
@config_option
@json_option
def inventory(config_path: Path | None, as_json: bool) -> None:
    """What this box offers (GPUs, CPU, memory, storage) and the health of each GPU."""
    from provider_agent.agent import read_inventory

    cfg = _load(config_path)
    inv = read_inventory(cfg)
    if as_json:
        print_json(_inventory_json(inv))
        return
    host = inv.host
    click.echo(inv.summary)
    if host.driver_version:
        click.echo(f"driver {host.driver_version}, CUDA {host.cuda_version}")
    if inv.gpus:
        rows = []
        for g in inv.gpus:
            info, health = g.reading.info, g.reading.health
            rows.append(
                [
                    info.index,
                    info.uuid,
                    g.variant.label if g.variant else info.name,
                    f"{info.memory_mib} MiB" if info.memory_mib else "?",
                    info.compute_capability or "?",
                    _pcie(info.pcie_gen, info.pcie_width),
                    f"{health.temperature_c} C" if health.temperature_c is not None else "?",
                    "offered" if g.offered else f"held back: {g.why_not}",
                ]
            )
        print_table(["GPU", "UUID", "MODEL", "VRAM", "CC", "PCIE", "TEMP", "STATUS"], rows)
    click.echo("attributes:")
    for key, value in inv.attributes:
        click.echo(f"  {key}={value}")


def _pcie(gen: int | None, width: int | None) -> str:
    return f"gen{gen} x{width}" if gen and width else "?"


def _inventory_json(inv: Inventory) -> dict[str, Any]:
    host = inv.host
    return {
        "status": host.status,
        "message": host.message,
        "summary": inv.summary,
        "driver_version": host.driver_version,
        "cuda_version": host.cuda_version,
        "cpu_millis": inv.cpu_millis,
        "memory_bytes": inv.memory_bytes,
        "storage_bytes": inv.storage_bytes,
        "attributes": dict(inv.attributes),
        "gpus": [
            {
                **{k: v for k, v in asdict(g.reading.info).items() if v is not None},
                "model": g.variant.model if g.variant else None,
                "ram_gib": g.variant.ram_gib if g.variant else None,
                "health": {k: v for k, v in asdict(g.reading.health).items() if v is not None},
                "offered": g.offered,
                "why_not": g.why_not,
            }
            for g in inv.gpus
        ],
    }


@provider.command()
@click.argument("manifest_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default="gm1quote", help="Tenant address the allow/deny lists see.")
@config_option
@json_option
def quote(manifest_file: Path, tenant: str, config_path: Path | None, as_json: bool) -> None:
    """Would this box bid on MANIFEST_FILE, at what price per hour, and if not, why."""
    from marketplace.core.clock import SystemClock
    from marketplace.core.errors import MarketError
    from marketplace.core.manifest import parse_manifest
    from marketplace.core.money import format_amount
    from provider_agent.agent import read_inventory
    from provider_agent.bidder import Quoter

    cfg = _load(config_path)
    try:
        raw = read_bounded(manifest_file, MAX_MANIFEST_BYTES, "a manifest")
        manifest = parse_manifest(raw, str(manifest_file))
    except OSError as exc:
        raise click.ClickException(f"cannot read {manifest_file}: {exc.strerror or exc}") from None
    except MarketError as exc:
        raise click.ClickException(str(exc)) from exc
    inv = read_inventory(cfg)
    quoter = Quoter.from_config(cfg, SystemClock())  # the daemon's path, up to the bid
    quotes = [(group, quoter.quote(group, tenant, inv)) for group in manifest.groups]
    if as_json:
        print_json({"provider": inv.summary, "groups": [_quote_json(g, d) for g, d in quotes]})
        return
    click.echo(inv.summary)
    for group, d in quotes:
        if d.bid:
            price = format_amount(d.price_per_hour, manifest.groups[0].denom)
            click.echo(f"group {group.name}: would bid {price} per hour ({d.reason})")
        else:
            click.echo(f"group {group.name}: would not bid: {d.reason}")


def _quote_json(group: GroupSpec, d: BidDecision) -> dict[str, object]:
    return {
        "group": group.name,
        "bid": d.bid,
        "price_per_hour": d.price_per_hour if d.bid else None,
        "max_price_per_hour": group.max_price_per_hour,
        "gpus": list(d.allocation.gpu_uuids) if d.allocation and d.bid else [],
        "reason": d.reason,
    }


@provider.command()
@config_option
@json_option
@friendly_errors
def status(config_path: Path | None, as_json: bool) -> None:
    """What the marketplace holds about this provider: each GPU as the agent last reported it
    (temperature, power, utilization, memory, XIDs, health) and the orders declined, by kind.

    \b
    Only this provider's key can read it (the config's [provider] key); the agent sends its
    GPUs' readings with every heartbeat, so `gpumarket provider run` must be running:
        gpumarket provider status --config provider.toml
    """
    from marketplace.api.client import ProviderClient
    from provider_agent.agent import provider_key

    cfg = _load(config_path)
    m = cfg.marketplace
    cert = (m.tls_cert, m.tls_key) if m.tls_cert is not None and m.tls_key is not None else None
    with ProviderClient(
        m.address, provider_key(cfg), m.call_timeout_s, m.tls_ca, m.uses_tls, client_cert=cert
    ) as client:
        answer = client.status()
    if as_json:
        print_json(_status_json(answer))
        return
    _print_status(answer)


def format_time_ms(ms: int) -> str:
    """UTC, to the second ("-": never)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "-"


def _status_json(answer: pb.ProviderStatus) -> dict[str, Any]:
    """Numbers as numbers (protobuf's JSON writes 64-bit ones as strings); None: not read."""

    def gpu(g: pb.GpuTelemetry) -> dict[str, Any]:
        optional = ("temperature_c", "power_w", "utilization_pct", "memory_used_mib", "last_xid")
        return {
            "index": g.index,
            "uuid": g.uuid,
            "model": g.model,
            "healthy": g.healthy,
            "health_reason": g.health_reason,
            "memory_mib": g.memory_mib,
            "xid_count": g.xid_count,
            **{name: getattr(g, name) if g.HasField(name) else None for name in optional},
        }

    return {
        "provider": answer.provider,
        "read_at_ms": answer.read_at_ms,
        "received_at_ms": answer.received_at_ms,
        "gpus": [gpu(g) for g in answer.gpus],
        "declines_since_ms": answer.declines_since_ms,
        "declines": [
            {
                "kind": d.kind,
                "count": d.by_provider + d.by_marketplace,
                "by_provider": d.by_provider,
                "by_marketplace": d.by_marketplace,
                "last_reason": d.last_reason,
                "last_ms": d.last_ms,
            }
            for d in answer.declines
        ],
    }


def _print_status(answer: pb.ProviderStatus) -> None:
    click.echo(f"provider {answer.provider}")
    if not answer.gpus:
        click.echo("no GPU telemetry yet: the agent sends it with its heartbeats")
    else:
        click.echo(f"GPUs as the agent read them at {format_time_ms(answer.read_at_ms)}:")

        def shown(g: pb.GpuTelemetry, field: str, unit: str) -> str:
            return f"{getattr(g, field)}{unit}" if g.HasField(field) else "?"

        rows = [
            [
                g.index,
                g.model or "?",
                shown(g, "temperature_c", " C"),
                shown(g, "power_w", " W"),
                shown(g, "utilization_pct", " %"),
                shown(g, "memory_used_mib", " MiB"),
                g.xid_count if not g.HasField("last_xid") else f"{g.xid_count} (last {g.last_xid})",
                "healthy" if g.healthy else f"held back: {g.health_reason}",
            ]
            for g in answer.gpus
        ]
        print_table(["GPU", "MODEL", "TEMP", "POWER", "UTIL", "MEM USED", "XIDS", "HEALTH"], rows)
    since = format_time_ms(answer.declines_since_ms)
    if not answer.declines:
        click.echo(f"no orders declined since {since}")
        return
    click.echo(f"declines by kind since {since}:")
    print_table(
        ["KIND", "DECLINES", "BY YOU", "BY MARKET", "LATEST REASON"],
        [
            [
                d.kind,
                d.by_provider + d.by_marketplace,
                d.by_provider,
                d.by_marketplace,
                d.last_reason,
            ]
            for d in answer.declines
        ],
    )


@provider.command()
@config_option
def run(config_path: Path | None) -> None:
    """Run the provider daemon: heartbeat, watch orders, bid, run won leases."""
    from provider_agent.agent import run_agent

    cfg = _load(config_path, to_run=True)
    sys.exit(run_agent(cfg))
