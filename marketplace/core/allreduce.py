"""Bandwidth model (shared by the live market's gang ranking and the simulator): ring all-reduce
over the slowest link between a job's nodes.

A ring all-reduce of S bytes per rank over N ranks at B bytes/s per rank takes
2(N−1)/N · S/B (nccl-tests PERFORMANCE.md); a synchronous job waits for its slowest link.
A training job alternates `sync_interval` of compute with one all-reduce of its gradients
(DiLoCo-style jobs sync rarely), so its utilization is compute / (compute + all-reduce).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BITS_PER_BYTE = 8


@dataclass(frozen=True)
class Link:
    """A provider's connection: upload and download in megabits per second, and its region."""

    up_mbps: float
    down_mbps: float
    region: str


def allreduce_seconds(nodes: int, size_bytes: float, bytes_per_second: float) -> float:
    """Ring all-reduce time, 2(N−1)/N · S/B; zero for a single node."""
    if nodes <= 1 or size_bytes <= 0:
        return 0.0
    return 2.0 * (nodes - 1) / nodes * size_bytes / bytes_per_second


def slowest_link_mbps(links: Sequence[Link], cross_region_factor: float = 1.0) -> float:
    """The ring's bottleneck: every rank sends and receives, so min over nodes of min(up, down);
    a ring spanning regions crosses the WAN, which gets `cross_region_factor` of that."""
    speed = min(min(link.up_mbps, link.down_mbps) for link in links)
    if len({link.region for link in links}) > 1:
        speed *= cross_region_factor
    return speed


def sync_seconds(links: Sequence[Link], gradient_bytes: float, cross_region_factor: float) -> float:
    """Time of one gradient all-reduce among these nodes."""
    mbps = slowest_link_mbps(links, cross_region_factor)
    return allreduce_seconds(len(links), gradient_bytes, mbps * 1e6 / BITS_PER_BYTE)


def utilization(compute_seconds: float, sync_s: float) -> float:
    """Fraction of wall time spent computing when each `compute_seconds` is followed by a sync."""
    if compute_seconds <= 0:
        return 1.0
    return compute_seconds / (compute_seconds + sync_s)
