"""Agent config: every example loads; every bad value is one line naming the key; exit 78."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from marketplace.cli.main import cli as main
from marketplace.core.config import MarketConfig
from provider_agent.config import EX_CONFIG, ConfigError, load_config, parse_config
from tests.helpers import EXAMPLES


@pytest.mark.parametrize(
    "name", ["provider.toml", "provider-h100-replay.toml", "provider-cpu.toml"]
)
def test_examples_load(name: str) -> None:
    cfg = load_config(EXAMPLES / name)
    assert cfg.pricing.scale is not None


def test_full_example_values() -> None:
    cfg = load_config(EXAMPLES / "provider.toml")
    assert cfg.marketplace.address == "127.0.0.1:7420"
    assert dict(cfg.pricing.scale.gpu_hour)["h100"] == 2_000_000  # type: ignore[union-attr]
    assert cfg.pricing.scale.floor == 50_000  # type: ignore[union-attr]
    assert cfg.runtime.training_shm_bytes == 1 << 30
    assert cfg.metrics.port == 9400


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ('[gpu]\nbackend = "cuda"', "gpu.backend", "one of nvml, replay, none"),
        ('[gpu]\nbackend = "replay"', "gpu.replay_file", "required"),
        ('[gpu]\nreplay_file = "/nope.json"', "gpu.replay_file", "no such file"),
        ("[pricing.scale]\ncpu_hour = 0.5", "pricing.scale.cpu_hour", "as strings"),
        ('[pricing.scale]\ncpu_hour = "-1"', "pricing.scale.cpu_hour", "negative"),
        (
            '[pricing.scale]\ncpu_hour = "0.0000001"',
            "pricing.scale.cpu_hour",
            "'0.0000001' is not a whole number of micro-units",
        ),
        ('[pricing.scale]\nfloor = "1"', "pricing.scale", "every price is zero"),
        ('[pricing]\nstrategy = "script"', "pricing.script.command", "required"),
        ('[resources]\nmemory = "lots"', "resources.memory", "invalid size"),
        ("[metrics]\nport = 70000", "metrics.port", "between 0 and 65535"),
        ("[policy]\nmax_lease = 3", "policy.max_lease", "unknown key"),
        (
            '[provider.attributes]\n"capabilities/gpu/vendor/nvidia/model/h100" = "true"',
            "provider.attributes.capabilities/gpu/vendor/nvidia/model/h100",
            "derived",
        ),
        (
            '[policy]\nallow_tenants = ["a"]\ndeny_tenants = ["a"]',
            "policy.deny_tenants",
            "also allowed",
        ),
        ("gpus = 3", "gpus", "unknown key"),
        ('[resources]\nstorage_classes = ["beta4"]', "resources.storage_classes", "not one of"),
        ('[resources]\nstorage_classes = ["ram", "ram"]', "resources.storage_classes", "twice"),
        (
            '[provider.attributes]\n"capabilities/storage/1/class" = "beta3"',
            "provider.attributes.capabilities/storage/1/class",
            "storage_classes",
        ),
        ('[runtime]\ncapabilities = ["SYS_ADMIN"]', "runtime.capabilities", "default set"),
        ('[provider.attributes]\n"" = "x"', "provider.attributes.''", "attribute key '' is empty"),
        ('[provider.attributes]\n"  " = "x"', "provider.attributes.'  '", "is empty"),
        (
            '[provider.attributes]\n" region" = "eu"',
            "provider.attributes.' region'",
            "attribute key ' region' has spaces around it",
        ),
        (
            f'[provider.attributes]\n"{"k" * 129}" = "x"',
            f"provider.attributes.{'k' * 128}…",  # cut: a path shows 128 characters of a key
            "attribute key is 129 characters; the limit is 128",
        ),
        (  # a hostile key is not echoed back whole
            f'[resources]\n"{"x" * 100_000}" = 1',
            f"resources.{'x' * 128}…",
            "unknown key",
        ),
        (
            '[runtime]\ncapabilities = ["CHOWN"]\ncap_drop_all = true',
            "runtime.cap_drop_all",
            "exclude each other",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, key: str, words: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert words in str(info.value)
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_storage_classes_and_capabilities_default_and_tighten() -> None:
    cfg = parse_config({})
    assert cfg.resources.storage_classes == ("beta2", "ram")
    assert "CHOWN" in cfg.runtime.capabilities and "NET_RAW" not in cfg.runtime.capabilities
    assert parse_config({"runtime": {"cap_drop_all": True}}).runtime.capabilities == ()
    only = parse_config({"runtime": {"capabilities": ["cap_chown", "NET_RAW"]}})
    assert only.runtime.capabilities == ("CHOWN", "NET_RAW")
    example = load_config(EXAMPLES / "provider.toml")
    assert example.runtime.capabilities == cfg.runtime.capabilities
    assert example.resources.storage_classes == cfg.resources.storage_classes


def test_builtin_replay_file_resolves_into_the_package() -> None:
    cfg = parse_config({"gpu": {"backend": "replay", "replay_file": "builtin:h100_nvml.json"}})
    assert cfg.gpu.replay_file is not None and cfg.gpu.replay_file.exists()


@pytest.mark.parametrize("command", [["inventory"], ["quote", "x.yaml"], ["run"]])
def test_bad_config_exits_78_with_one_line(tmp_path: Path, command: list[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[marketplace]\ncall_timeout_s = "soon"\n')
    (tmp_path / "x.yaml").write_text("version: '2.0'\n")
    command = [str(tmp_path / c) if c.endswith(".yaml") else c for c in command]
    result = CliRunner().invoke(main, ["provider", *command, "--config", str(bad)])
    assert result.exit_code == EX_CONFIG
    assert (
        result.output.strip()
        == f"Error: {bad}: marketplace.call_timeout_s: must be a number, got a string"
    )


def test_unparsable_toml_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpu\n")
    result = CliRunner().invoke(main, ["provider", "inventory", "--config", str(bad)])
    assert result.exit_code == EX_CONFIG
    assert "not valid TOML" in result.output and "Traceback" not in result.output


def test_an_agent_left_to_its_defaults_is_back_within_the_markets_restart_grace() -> None:
    """After an outage the market waits one heartbeat timeout for its providers before declaring
    them lost (server/app.py's restart grace): an agent's longest reconnect wait, jitter
    included, plus a heartbeat must fit in it, or its leases are re-auctioned for the market's
    own absence."""
    market = MarketConfig()
    longest_wait_s = parse_config({}).marketplace.reconnect_max_s * 1.2
    assert longest_wait_s + market.heartbeat_interval_ms / 1000 < market.heartbeat_timeout_ms / 1000
