"""`gpumarket: gang:`: a training job's N nodes, won all or none and run together.

    gpumarket:
      kind: training
      gang:
        nodes: 4                 # the one placement group, ordered 4 times (ranks 0..3)
        min_bandwidth: 10Gbps    # each node's link (min of up and down) at least this
        port: 29500              # MASTER_PORT, published by rank 0
        gradient_size: 2G        # bytes all-reduced per sync (ranking: core/allreduce.py)
        sync_interval: 5m        # compute between two syncs

The market's side is core/gang.py; the provider's is provider_agent/rendezvous.py."""

from __future__ import annotations

import re
from dataclasses import replace

from marketplace.core import units
from marketplace.core.limits import MAX_BANDWIDTH_MBPS, MAX_GANG_NODES, shown
from marketplace.core.manifest.context import ParseContext, Problem, integer, mapping, quantity
from marketplace.core.manifest.yaml_lines import Path
from marketplace.core.resources import GangSettings, GroupSpec

KEYS = ("nodes", "min_bandwidth", "port", "gradient_size", "sync_interval")
_BANDWIDTH = re.compile(
    r"^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(bps|bit/s)?$", re.IGNORECASE | re.ASCII
)
_MBPS_PER = {"k": 0.001, "m": 1.0, "g": 1000.0, "t": 1_000_000.0}
_MAX_SYNC_MS = 7 * 24 * 3600 * 1000


def parse_bandwidth_mbps(value: object) -> float:
    """Megabits per second: "10Gbps" → 10000, "100Mbps" → 100, 500 (a bare number) → 500."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a bandwidth such as 10Gbps, got {units.type_name(value)}")
    text = str(value).strip()
    match = _BANDWIDTH.fullmatch(text)
    if not match or (match.group(2) and not match.group(3)):
        raise ValueError(f"invalid bandwidth {shown(value)} (use e.g. 100Mbps, 10Gbps or Mbps)")
    number, prefix, _ = match.groups()
    mbps = float(number) * _MBPS_PER[(prefix or "m").lower()]
    if mbps > MAX_BANDWIDTH_MBPS:
        raise ValueError(f"bandwidth {shown(value)} is over the limit of 10Tbps")
    return mbps


def read_gang(ctx: ParseContext, value: object, path: Path) -> GangSettings | None:
    if value is None:
        return None
    spec = mapping(value, path)
    ctx.unexpected(spec, KEYS, path)
    if spec.get("nodes") is None:
        raise Problem((*path, "nodes"), "nodes is required (how many nodes the gang runs on)")
    nodes = integer(spec["nodes"], (*path, "nodes"), 2, MAX_GANG_NODES)
    defaults = GangSettings(nodes)
    bandwidth = defaults.min_bandwidth_mbps
    if spec.get("min_bandwidth") is not None:
        try:
            bandwidth = parse_bandwidth_mbps(spec["min_bandwidth"])
        except ValueError as exc:
            raise Problem((*path, "min_bandwidth"), str(exc)) from None
    port = defaults.port
    if spec.get("port") is not None:
        port = integer(spec["port"], (*path, "port"), 1024, 65535)
    gradient = defaults.gradient_bytes
    if spec.get("gradient_size") is not None:
        gradient = quantity(units.parse_size, spec["gradient_size"], (*path, "gradient_size"))
    sync = defaults.sync_interval_ms
    if spec.get("sync_interval") is not None:
        sync = quantity(units.parse_duration_ms, spec["sync_interval"], (*path, "sync_interval"))
        if not 0 < sync <= _MAX_SYNC_MS:
            raise Problem((*path, "sync_interval"), "sync_interval must be over 0 and at most 7d")
    return GangSettings(nodes, bandwidth, port, gradient, sync)


def gang_groups(gang: GangSettings, groups: tuple[GroupSpec, ...]) -> tuple[GroupSpec, ...]:
    """The one placement group a gang names, once per node: order g is rank g−1. Every copy
    keeps the group's name, so a provider finds its services in the SDL as for any group."""
    if len(groups) != 1:
        names = ", ".join(g.name for g in groups)
        raise Problem(
            ("gpumarket", "gang"),
            f"a gang runs one placement group on each node; this SDL has {len(groups)} ({names})",
        )
    return tuple(replace(groups[0]) for _ in range(gang.nodes))
