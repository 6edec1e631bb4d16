"""README's provider and tenant journeys, run as written, against real processes and Docker.

A provider writes the `provider.toml` README shows (no GPU on this machine: the replayed H100
stands in, as README says) and starts `gpumarket provider run` with a fresh GPUMARKET_HOME; its
key is created there. A tenant then types README's walkthrough commands for the inference
service: deploy and wait, events, a command in the container, an update in place to
`examples/inference-v2.yaml` (the same endpoint answers v2), a top-up, and close, which names
what the provider was paid and what was refunded. The provider's balance (`gpumarket account
--key provider`, README's Earnings) is exactly what the tenant paid, and the books balance.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.cli.demo_stack import GPUMARKET, Provider, Stack, spawn, wait_for_market
from marketplace.identity import Key
from marketplace.polling import wait_until
from tests.helpers import EXAMPLES
from tests.system.test_readme import README, code_snippets

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def readme_provider_toml(market: str) -> str:
    [block] = [s for s in code_snippets(README) if s.lang == "toml"]
    assert 'address = "127.0.0.1:7420"' in block.text
    # the market listens on a free port here; metrics off, as two test runs may share a box
    return block.text.replace("127.0.0.1:7420", market) + "\n[metrics]\nenabled = false\n"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(heartbeat_timeout_s=5.0, root=tmp_path / "stack", keep_root=True)
    try:
        s.start_market()
        yield s
    finally:
        s.close()
        print(s.logs())  # shown by pytest when the test failed


def gpumarket(stack: Stack, *args: str, home: Path | None = None) -> str:
    env = {**stack.env(), "GPUMARKET_MARKET": stack.address}
    if home is not None:
        env["GPUMARKET_HOME"] = str(home)
    done = subprocess.run(
        [*GPUMARKET, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, f"gpumarket {' '.join(args)}:\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def answers(url: str, text: str) -> None:
    """Wait until the endpoint's answer holds `text`: a container "running" may take a moment
    more to listen (generous: the box is shared)."""

    def fetched() -> bool:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return text in answer.read().decode()

    wait_until(fetched, 60, f"{url} to answer {text}", interval=0.2, retry_on=(OSError,))


def balance(stack: Stack, home: Path, key: str) -> int:
    return int(
        json.loads(gpumarket(stack, "account", "--key", key, "--json", home=home))["balance"]
    )


def test_a_provider_from_readme_earns_what_a_tenant_following_readme_pays(
    stack: Stack, tmp_path: Path
) -> None:
    # the provider: README's provider.toml, a fresh home, `gpumarket provider run`
    provider_home = tmp_path / "provider-home"
    provider_home.mkdir()
    config = tmp_path / "provider.toml"
    config.write_text(readme_provider_toml(stack.address))
    env = {**stack.env(), "GPUMARKET_HOME": str(provider_home)}
    proc = spawn("provider", ["provider", "run", "--config", str(config)], tmp_path / "p.log", env)
    key_file = provider_home / "keys" / "provider.pem"
    wait_for_market(lambda: key_file.exists() or None, 30, "the agent to create its key")
    stack.providers["provider"] = Provider("provider", Key.from_file(key_file), config, proc)
    stack.wait_providers_online(["provider"])
    assert "1x h100 80Gi" in gpumarket(stack, "providers")
    assert balance(stack, provider_home, "provider") == 0

    # the tenant: README's walkthrough for the inference service
    admin = str(stack.data_dir / "admin.pem")
    gpumarket(stack, "account", "fund", "me", "20", "--admin-key", admin)
    out = gpumarket(stack, "deploy", "examples/inference.yaml", "--deposit", "5", "--wait")
    [endpoint] = re.findall(r"running: (http://\S+)", out)
    answers(f"{endpoint}/health", '"tiny-llm"')
    events = gpumarket(stack, "events", "D1")
    assert "lease_created" in events and "lease_running" in events
    assert "tiny-llm" in gpumarket(stack, "shell", "D1", "--", "cat", "/www/health")
    gpumarket(stack, "update", "D1", "examples/inference-v2.yaml", "--wait")
    answers(f"{endpoint}/health", '"tiny-llm-v2"')  # the same endpoint, version 2
    gpumarket(stack, "deposit", "D1", "1")

    closed = gpumarket(stack, "close", "D1")
    paid_text, refunded_text = re.findall(r"([\d.]+) act", closed)
    paid, refunded = (round(float(x) * 1_000_000) for x in (paid_text, refunded_text))
    assert paid > 0 and paid + refunded == 6_000_000, closed
    # the provider earned exactly what the tenant paid; the tenant has the rest
    assert balance(stack, provider_home, "provider") == paid
    assert balance(stack, stack.root / "home", "default") == 20_000_000 - paid
    assert "books balanced" in gpumarket(stack, "market", "audit", "--admin-key", admin)
