"""A gang node's containers (core/gang.py): each gets the rendezvous variables torch.distributed's
env:// reads (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, plus GPUMARKET_GANG_ID), and rank 0's
first container publishes MASTER_PORT on the same port of this host's public address, so a node
on another provider reaches it at MASTER_ADDR:MASTER_PORT without any overlay network. The
variables come after the tenant's own, so they win over a same-named entry."""

from __future__ import annotations

from dataclasses import replace

from marketplace.core.gang import Rendezvous
from provider_agent.container import ContainerSpec


def gang_specs(specs: list[ContainerSpec], meeting: Rendezvous | None) -> list[ContainerSpec]:
    if meeting is None:
        return specs
    ours = meeting.environment()
    names = {name for name, _ in ours}
    placed = []
    for i, spec in enumerate(specs):
        env = (*(item for item in spec.env if item[0] not in names), *ours)
        spec = replace(spec, env=env)
        if meeting.rank == 0 and i == 0:
            spec = _publish_master_port(spec, meeting.master_port)
        placed.append(spec)
    return placed


def _publish_master_port(spec: ContainerSpec, port: int) -> ContainerSpec:
    """Publish `port` on host port `port` (the address every node was told)."""
    ports = spec.ports if port in spec.ports else (*spec.ports, port)
    pinned = tuple((c, h) for c, h in spec.host_ports if c != port)
    return replace(spec, ports=ports, host_ports=(*pinned, (port, port)))
