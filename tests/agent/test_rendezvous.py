"""A gang node on the provider's side (provider_agent/rendezvous.py): each container gets the
rendezvous variables, rank 0 publishes MASTER_PORT on that same host port, and the agent
declares its link ([network] up_mbps/down_mbps) as the attributes gangs are ranked by."""

from __future__ import annotations

import pytest

from marketplace.core.gang import DOWN_MBPS, UP_MBPS, Rendezvous
from provider_agent.config import ConfigError, parse_config
from provider_agent.container import ContainerSpec
from provider_agent.inventory import provider_attributes
from provider_agent.rendezvous import gang_specs


def specs() -> list[ContainerSpec]:
    return [
        ContainerSpec("D4/1/1/p", "node", "img", env=(("A", "1"), ("RANK", "9")), ports=(80,)),
        ContainerSpec("D4/1/1/p", "node", "img", replica=1),
    ]


def test_every_container_gets_the_rendezvous_over_the_tenants_own_variables() -> None:
    meeting = Rendezvous("D4", 1, 3, "203.0.113.7", 29500)
    placed = gang_specs(specs(), meeting)
    for spec in placed:
        env = dict(spec.env)
        assert env["RANK"] == "1" and env["WORLD_SIZE"] == "3"
        assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("203.0.113.7", "29500")
        assert env["GPUMARKET_GANG_ID"] == "D4"
        assert [name for name, _ in spec.env].count("RANK") == 1
    assert dict(placed[0].env)["A"] == "1"
    assert placed[0].host_ports == ()  # only rank 0 publishes the master port
    assert gang_specs(specs(), None) == specs()


def test_rank_zeros_first_container_publishes_the_master_port_on_that_host_port() -> None:
    placed = gang_specs(specs(), Rendezvous("D4", 0, 2, "203.0.113.7", 29400))
    assert placed[0].ports == (80, 29400)
    assert placed[0].host_ports == ((29400, 29400),)
    assert placed[1].ports == () and placed[1].host_ports == ()


def test_the_agent_declares_its_link_as_attributes() -> None:
    cfg = parse_config({"network": {"up_mbps": 10_000, "down_mbps": 2_500}})
    attrs = dict(provider_attributes(cfg, []))
    assert (attrs[UP_MBPS], attrs[DOWN_MBPS]) == ("10000", "2500")
    assert UP_MBPS not in dict(provider_attributes(parse_config({}), []))
    with pytest.raises(ConfigError, match=r"network\.up_mbps"):
        parse_config({"network": {"up_mbps": -1}})
