"""`gpumarket provider inventory` and `quote`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from marketplace.cli.main import cli as main
from tests.helpers import EXAMPLES, FIXTURES_NVML

REPLAY = EXAMPLES / "provider-h100-replay.toml"
CPU = EXAMPLES / "provider-cpu.toml"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_inventory_from_the_h100_recording() -> None:
    code, out = cli("provider", "inventory", "--config", str(REPLAY), "--json")
    assert code == 0, out
    data = json.loads(out)
    [gpu] = data["gpus"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["interface"] == "sxm" and gpu["memory_mib"] == 81559
    assert gpu["compute_capability"] == "9.0" and gpu["mig_enabled"] is False
    assert gpu["offered"] is True and gpu["health"]["temperature_c"] == 32
    assert "fan_speed" not in gpu["health"]  # not supported on this H100: absent, not an error
    assert data["driver_version"] == "580.159.04"
    # GPU attributes are derived from the inventory in Akash's form
    assert (
        data["attributes"]["capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi/interface/sxm"]
        == "true"
    )


def test_inventory_table_for_people() -> None:
    code, out = cli("provider", "inventory", "--config", str(REPLAY))
    assert code == 0
    assert out.splitlines()[0] == "offering 1× h100 80Gi sxm; 16 CPU, 128 GiB memory"
    assert "GPU-ec74fc0e-388d-22e5-9031-c553a0c26378" in out and "gen5 x16" in out


def test_inventory_on_this_host_with_the_real_nvml_says_no_gpus_plainly(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[gpu]\nbackend = "nvml"\n[resources]\ncpu = 2\nmemory = "4Gi"\nstorage = "10Gi"\n'
    )
    code, out = cli("provider", "inventory", "--config", str(cfg))
    if "offering" in out.splitlines()[0] and "no GPUs" not in out:
        return  # a GPU host: nothing to check here
    assert code == 0
    assert out.splitlines()[0] == (
        "no GPUs offered (no NVIDIA driver library (libnvidia-ml.so.1) on this host); "
        "offering CPU-only capacity: 2 CPU, 4 GiB memory"
    )


def test_replay_of_the_shared_recording_path(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        f'[gpu]\nbackend = "replay"\nreplay_file = "{FIXTURES_NVML / "h100_nvml.json"}"\n'
    )
    code, out = cli("provider", "inventory", "--config", str(cfg), "--json")
    assert code == 0 and json.loads(out)["gpus"][0]["uuid"].startswith("GPU-ec74fc0e")


def test_quote_bids_on_the_h100_job() -> None:
    code, out = cli(
        "provider", "quote", str(EXAMPLES / "training-h100.yaml"), "--config", str(REPLAY), "--json"
    )
    assert code == 0, out
    [group] = json.loads(out)["groups"]
    assert group["bid"] is True
    # 1 GPU × 0.90 + 4 CPU × 0.01 + 16 GiB × 0.002 = 0.972 per hour
    assert group["price_per_hour"] == 972_000
    assert group["gpus"] == ["GPU-ec74fc0e-388d-22e5-9031-c553a0c26378"]


def test_quote_explains_a_decline() -> None:
    code, out = cli("provider", "quote", str(EXAMPLES / "training-h100.yaml"), "--config", str(CPU))
    assert code == 0
    assert "group anywhere: would not bid: needs 16Gi memory, 8Gi free" in out


def test_quote_explains_a_missing_gpu(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(CPU.read_text().replace('memory = "8Gi"', 'memory = "64Gi"'))
    code, out = cli("provider", "quote", str(EXAMPLES / "training-h100.yaml"), "--config", str(cfg))
    assert code == 0
    assert (
        "would not bid: needs 1× h100 80Gi (one model for all replicas), provider has no GPU free"
        in out
    )


def test_quote_with_a_price_script(tmp_path: Path) -> None:
    script = tmp_path / "price.sh"
    script.write_text('#!/bin/sh\ncat > /dev/null\necho "0.75"\n')
    script.chmod(0o755)
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    base = REPLAY.read_text().split("[pricing.scale]")[0]
    for command, expected in (
        (script, "would bid 0.750000 act per hour"),
        (slow, "timed out after 0.5 s"),
    ):
        cfg = tmp_path / "p.toml"
        cfg.write_text(
            base
            + f'[pricing]\nstrategy = "script"\n[pricing.script]\ncommand = ["{command}"]\ntimeout_s = 0.5\n'
        )
        code, out = cli(
            "provider", "quote", str(EXAMPLES / "training-h100.yaml"), "--config", str(cfg)
        )
        assert code == 0 and expected in out, out


def test_quote_of_a_bad_manifest_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: '2.0'\nservices: 3\n")
    code, out = cli("provider", "quote", str(bad), "--config", str(REPLAY))
    assert code == 1 and out.startswith("Error: ") and "Traceback" not in out
