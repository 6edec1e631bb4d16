"""The environment a lease's containers get from the market: lease id, restart count and the
tenant's checkpoint location (`gpumarket: checkpoint:`), so a restarted job can resume."""

from __future__ import annotations

import pytest

from marketplace.core.errors import InvalidArgument
from marketplace.core.job_env import lease_environment, restart_count, with_lease_environment
from marketplace.core.manifest import parse_manifest
from marketplace.core.resources import JobSettings
from tests.helpers import BASE


def with_job(extra: str) -> str:
    return BASE + f"gpumarket:\n  kind: training\n{extra}"


def test_a_checkpoint_uri_reaches_the_job_settings() -> None:
    manifest = parse_manifest(with_job("  checkpoint: s3://my-bucket/run-7/\n"))
    assert manifest.job.checkpoint_uri == "s3://my-bucket/run-7/"


def test_without_a_checkpoint_there_is_none() -> None:
    assert parse_manifest(BASE).job.checkpoint_uri is None


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("not a uri", "is not a URI"),
        ("bucket/run", "is not a URI"),
        ("'s3://a b'", "is not a URI"),
        ("42", "must be a URI"),
        ("''", "must be a URI"),
        ("s3://" + "x" * 3000, "the limit is 2,048"),
    ],
)
def test_a_bad_checkpoint_names_the_field_and_the_line(value: str, needle: str) -> None:
    text = with_job(f"  checkpoint: {value}\n")
    line = text.splitlines().index(f"  checkpoint: {value}") + 1
    with pytest.raises(InvalidArgument) as error:
        parse_manifest(text)
    assert needle in str(error.value)
    assert "gpumarket.checkpoint" in str(error.value)
    assert f":{line}: gpumarket.checkpoint:" in str(error.value)


def test_the_restart_count_is_the_orders_before_this_one() -> None:
    assert restart_count("D7/1/1/gm1abc") == 0
    assert restart_count("D7/2/4/gm1abc") == 3
    with pytest.raises(ValueError, match="no order sequence"):
        restart_count("D7")


def test_the_markets_variables_win_over_the_tenants_own() -> None:
    job = JobSettings(checkpoint_uri="gs://b/c")
    env = with_lease_environment((("A", "1"), ("GPUMARKET_RESTART_COUNT", "99")), "D1/1/3/p", job)
    assert dict(env) == {
        "A": "1",
        "GPUMARKET_LEASE_ID": "D1/1/3/p",
        "GPUMARKET_RESTART_COUNT": "2",
        "GPUMARKET_CHECKPOINT_URI": "gs://b/c",
    }
    assert len(env) == 4
    assert "GPUMARKET_CHECKPOINT_URI" not in dict(lease_environment("D1/1/1/p", JobSettings()))


def test_a_tenant_setting_a_gpumarket_variable_is_warned() -> None:
    text = BASE.replace("      - MODE=prod", "      - GPUMARKET_RESTART_COUNT=5", 1)
    manifest = parse_manifest(text)
    assert any("set by the provider" in w for w in manifest.warnings), manifest.warnings
