"""Shared test helpers: paths to the repo and ../shared, manifest text, market builders and
the await-until helpers (one poll loop, marketplace/polling.py, shared with the demo and the
benchmarks, which cannot import this module when run as `python bench/NAME.py`)."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

from marketplace.api.client import ProviderClient, TenantClient
from marketplace.identity import Key
from marketplace.polling import await_until, wait_until
from marketplace.server.testing import provider_registration

__all__ = [
    "BASE",
    "CORPUS_SDL",
    "EXAMPLES",
    "FIXTURES_NVML",
    "REPO",
    "SHARED",
    "await_until",
    "funded_tenant",
    "registered_provider",
    "wait_until",
]

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GPUMARKET_SHARED", REPO.parent / "shared"))
FIXTURES_NVML = SHARED / "fixtures" / "nvml"
CORPUS_SDL = SHARED / "corpus" / "sdl"
EXAMPLES = REPO / "examples"

# A valid SDL v2.0 manifest that exercises most of the grammar; tests mutate it.
BASE = textwrap.dedent(
    """\
    version: "2.0"
    services:
      web:
        image: nginx:1.27
        command: ["sh", "-c"]
        args: ["nginx -g 'daemon off;'"]
        env:
          - MODE=prod
          - EMPTY=
        expose:
          - port: 80
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
              size: 512Mi
            storage:
              - size: 1Gi
              - name: data
                size: 10Gi
                attributes:
                  persistent: true
                  class: beta3
            gpu:
              units: 2
              attributes:
                vendor:
                  nvidia:
                    - model: h100
                      ram: 80Gi
                      interface: sxm
                    - model: a100
      placement:
        dc:
          attributes:
            region: us-west
          signedBy:
            anyOf:
              - akash1auditor
          pricing:
            web:
              denom: uact
              amount: 100000
    deployment:
      web:
        dc:
          profile: web
          count: 2
    """
)


# --- a market's parties, over real gRPC --------------------------------------------------------


def funded_tenant(address: str, admin: Key, amount: int) -> TenantClient:
    """A tenant with a fresh key and `amount` micro-units funded by the market's admin."""
    key = Key.generate()
    with TenantClient(address, admin) as funder:
        funder.fund(key.address, amount)
    return TenantClient(address, key)


def registered_provider(address: str, name: str, region: str = "eu") -> ProviderClient:
    """A provider with a fresh key, registered with two H100s in `region`."""
    client = ProviderClient(address, Key.generate())
    client.register(provider_registration(name, region))
    return client


def closed_port() -> str:
    """An address nothing listens on (connection refused): a loopback port bound and closed
    again, free for a server a test starts there later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"
