"""Where tenant ports are published: one address of this host, not every interface.

`[network] publish_address = "auto"` (the default) takes the address tenants are told to use,
`[provider] host_uri` (its IP, or what its name resolves to), and 127.0.0.1 when there is none.
Whatever the source, the address must belong to this host: a provider behind NAT whose host_uri
is the router's public address is refused at start with the key to set, rather than publishing
on an address Docker cannot bind (every lease would then fail to start) or on every interface
(which the operator did not ask for). "0.0.0.0" / "::" publish everywhere, when written.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

from provider_agent.config import AgentConfig
from provider_agent.container import ConfigFailure, RuntimeFailure

WILDCARDS = ("0.0.0.0", "::")
LOOPBACK = "127.0.0.1"


def host_of_uri(uri: str) -> str:
    """The host part of `[provider] host_uri` ("203.0.113.7", "https://gpu1.example:8443")."""
    if not uri:
        return ""
    return urlparse(uri if "//" in uri else f"//{uri}").hostname or ""


def publish_ip(cfg: AgentConfig) -> str:
    """The address tenant ports bind to. Raises RuntimeFailure naming the key to set."""
    configured = cfg.network.publish_address
    if configured != "auto":
        source = "[network] publish_address"
        address = configured
    else:
        host = host_of_uri(cfg.provider.host_uri)
        if not host:
            return LOOPBACK
        source = f"[provider] host_uri ({host})"
        address = _resolve(host, source)
    if address not in WILDCARDS:
        _check_local(address, source)
    return address


def backend_host(publish: str) -> str:
    """The address the ingress reaches a published port on."""
    return LOOPBACK if publish in WILDCARDS else publish


def _resolve(host: str, source: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RuntimeFailure(
            f"{source} does not resolve ({exc}): set [network] publish_address"
        ) from None
    return str(infos[0][4][0])


def _check_local(address: str, source: str) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        raise ConfigFailure(
            f"{source}: {address} is not an address of this host ({exc.strerror or exc}); "
            'set [network] publish_address to one of its addresses, or "0.0.0.0" for every '
            "interface"
        ) from None
