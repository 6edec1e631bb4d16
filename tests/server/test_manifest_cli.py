"""`gpumarket manifest validate`: summaries, warnings, one-line errors, exit codes, --json."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from marketplace.api.client import TenantClient
from marketplace.cli.main import cli
from marketplace.core.errors import InvalidArgument
from marketplace.identity import load_or_create_key
from marketplace.server.testing import ServerThread, gpu_sdl
from tests.helpers import BASE, CORPUS_SDL, funded_tenant


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["manifest", "validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_valid_file_prints_a_summary(tmp_path: Path) -> None:
    code, out = run(write(tmp_path, "job.yaml", BASE))
    assert code == 0
    assert "valid (SDL 2.0)" in out
    assert "4× h100 80Gi sxm | a100" in out
    assert "2 replicas" in out
    assert "max price:" in out and "uact/hour" in out
    assert "job:       service" in out


def test_bad_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BASE.replace("units: 2", "units: 99"))
    code, out = run(path)
    assert code == 1
    line = BASE.splitlines().index("          units: 2") + 1
    assert out.strip() == (
        f"{path}:{line}: profiles.compute.web.resources.gpu.units: invalid unit GPU: 99 is outside 0..24"
    )


def test_exit_0_only_if_all_are_valid(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", BASE)
    bad = write(tmp_path, "bad.yaml", "version: '9'\n")
    assert run(good, good)[0] == 0
    assert run(good, bad)[0] == 1


def test_unreadable_inputs_are_one_line_each(tmp_path: Path) -> None:
    binary = write(tmp_path, "a.out", b"\x7fELF\x02\x01\x01\x00\xd0\xff\x00")
    code, out = run(str(tmp_path / "missing.yaml"), str(tmp_path), binary)
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert "missing.yaml: cannot read: No such file or directory" in lines[0]
    assert "cannot read: is a directory" in lines[1]
    assert "not UTF-8" in lines[2]
    assert "Traceback" not in out


def test_warnings_are_printed(tmp_path: Path) -> None:
    # (this used torchbench_gpu_sdl_cuda12_0.yaml, which Akash's schema refuses: `cmd:`, and
    # `model: 4000` unquoted; the parser now refuses it too)
    typo = write(tmp_path, "typo.yaml", BASE.replace("- model: a100", '- model: "a100-80gb"'))
    code, out = run(typo)
    assert code == 0
    assert "warning:" in out and "unknown GPU model 'a100-80gb'" in out


def test_schema_invalid_corpus_file_is_refused_naming_each_field() -> None:
    code, out = run(str(CORPUS_SDL / "torchbench__torchbench_gpu_sdl_cuda12_0.yaml"))
    assert code == 1
    assert "services.gpu-test.cmd: unexpected field 'cmd'" in out
    assert "model: expected a string, got a number 4000 (quote it)" in out


def test_notes_name_what_a_provider_may_decline_or_run_differently(tmp_path: Path) -> None:
    text = BASE.replace("- global: true", "- global: true\n            ip: myip")
    text = text.replace("- model: a100", '- model: "a100-80gb"')
    path = write(tmp_path, "job.yaml", text + "endpoints:\n  myip:\n    kind: ip\n")
    code, out = run(path)
    assert code == 0
    assert (
        "  note: profiles.compute.*.resources.storage[].attributes.class: declined by providers "
        "that lack that storage class" in out
    )
    assert "  note: profiles.placement.*.signedBy: declined by providers that lack" in out
    assert (
        "  note: services.*.expose[].to[].ip: declined by providers that lack leased IP endpoints"
        in out
    )
    assert "  note: gpu model: deploy refuses it unless --force: " in out
    code, out = run("--json", path)
    (report,) = json.loads(out)
    kinds = {n["path"]: n["support"] for n in report["notes"]}
    assert kinds["services.*.expose[].to[].ip"] == "declined"
    assert kinds["profiles.placement.*.attributes"] == "declined"
    assert kinds["gpu model"] == "refused"


def test_a_plain_cpu_manifest_has_no_notes(tmp_path: Path) -> None:
    plain = (
        'version: "2.0"\n'
        "services:\n  web:\n    image: nginx:1.27\n"
        "    expose:\n      - port: 80\n        to:\n          - global: true\n"
        "profiles:\n  compute:\n    web:\n      resources:\n"
        "        cpu: {units: 1}\n        memory: {size: 1Gi}\n        storage: {size: 1Gi}\n"
        "  placement:\n    dc:\n      pricing:\n        web: {denom: uact, amount: 1000}\n"
        "deployment:\n  web:\n    dc: {profile: web, count: 1}\n"
    )
    code, out = run("--json", write(tmp_path, "plain.yaml", plain))
    assert code == 0, out
    assert json.loads(out)[0]["notes"] == []


# --- deploy refuses a GPU model no provider can be, unless forced --------------------------------

TYPO = gpu_sdl().replace(b"- model: h100", b"- model: h100-80gb")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp_path / "market") as running:
        yield running


def deploy(server: ServerThread, *args: str) -> Result:
    env = {"GPUMARKET_MARKET": server.address, "GPUMARKET_KEY": "alice"}
    return CliRunner().invoke(cli, ["deploy", *args], env=env, catch_exceptions=False)


def test_deploy_refuses_an_unknown_gpu_model_unless_forced(
    server: ServerThread, tmp_path: Path
) -> None:
    sdl = tmp_path / "typo.yaml"
    sdl.write_bytes(TYPO)
    with TenantClient(server.address, server.admin) as admin:
        admin.fund(load_or_create_key("alice").address, 20_000_000)
    refused = deploy(server, str(sdl), "--deposit", "5", "--no-wait")
    assert refused.exit_code == 1
    last = refused.output.strip().splitlines()[-1]
    assert "unknown GPU model 'h100-80gb'" in last and "did you mean h100" in last
    assert "no escrow is locked (use --force to deploy it anyway)" in last
    with TenantClient(server.address, load_or_create_key("alice")) as alice:
        assert alice.list_deployments() == []
        assert alice.get_account().escrowed == 0
    forced = deploy(server, str(sdl), "--deposit", "5", "--no-wait", "--force")
    assert forced.exit_code == 0, forced.output
    assert "deployment D1: 5.000000 act in escrow" in forced.output


def test_the_marketplace_refuses_an_unknown_gpu_model_unless_the_request_forces(
    server: ServerThread,
) -> None:
    with funded_tenant(server.address, server.admin, 20_000_000) as tenant:
        with pytest.raises(InvalidArgument) as caught:  # the client's view of the status
            tenant.create_deployment(TYPO, 5_000_000)
        details = str(caught.value)
        assert "unknown GPU model 'h100-80gb'" in details and "set force" in details
        assert tenant.list_deployments() == [] and tenant.get_account().escrowed == 0
        dep = tenant.create_deployment(TYPO, 5_000_000, force=True)
        assert dep.deposited == 5_000_000
        assert tenant.create_deployment(gpu_sdl(), 5_000_000).deposited == 5_000_000


# --- the whole corpus, through the real command and a real market --------------------------------

CORPUS_INDEX = {
    row["file"]: row for row in csv.DictReader((CORPUS_SDL / "_index.csv").read_text().splitlines())
}
CORPUS_FILES = sorted(p for p in CORPUS_SDL.iterdir() if p.suffix in (".yaml", ".yml"))
CORPUS_VALID = {name for name, row in CORPUS_INDEX.items() if row["schema_valid"] == "1"}


def test_validate_agrees_with_the_corpus_index_in_a_real_process() -> None:
    """`gpumarket manifest validate --json` over all 119 files at once, as a user runs it:
    exactly the schema-valid ones pass; every error of the others names a field and a line of
    its file."""
    command = "from marketplace.cli.main import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", command, "manifest", "validate", "--json", *map(str, CORPUS_FILES)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    reports = json.loads(done.stdout)
    assert len(reports) == len(CORPUS_FILES) == 119
    valid = {Path(r["file"]).name for r in reports if r["valid"]}
    assert valid == CORPUS_VALID and len(valid) == 100
    for report in reports:
        lines = Path(report["file"]).read_text().splitlines()
        for error in report["errors"]:
            assert error["path"], error
            assert 1 <= error["line"] <= len(lines), error


def test_every_valid_corpus_sdl_is_taken_by_a_real_market_and_the_rest_refused(
    server: ServerThread,
) -> None:
    """What validate accepts, the market accepts (no bound of its own that the parser lacks);
    what it refuses, the market refuses with INVALID_ARGUMENT naming the field and line."""
    deposit = 10**14  # covers the priciest group's first minutes
    with funded_tenant(server.address, server.admin, 10**17) as tenant:
        for path in CORPUS_FILES:
            raw = path.read_bytes()
            if path.name in CORPUS_VALID:
                dep = tenant.create_deployment(raw, deposit, force=True)
                assert dep.deposited == deposit, path.name
                continue
            with pytest.raises(InvalidArgument) as caught:
                tenant.create_deployment(raw, deposit, force=True)
            named = re.findall(r"manifest:(\d+): ([\w.\-\[\]]+): ", str(caught.value))
            assert named, str(caught.value)  # each problem: its line and field
            lines = len(raw.splitlines())
            assert all(1 <= int(line) <= lines for line, _ in named), str(caught.value)
        assert len(tenant.list_deployments()) == 100


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_a_pipe_is_refused_before_it_is_read(tmp_path: Path, special: str) -> None:
    """/dev/zero reports size 0 and was read until memory ran out; a FIFO blocked forever."""
    if special == "fifo":
        special = str(tmp_path / "pipe.yaml")
        os.mkfifo(special)
    code, out = run(special)
    assert code == 1
    assert out.strip() == f"{special}: cannot read: not a regular file (a device or a pipe?)"
    result = CliRunner().invoke(
        cli, ["deploy", special, "--deposit", "1", "--market", "127.0.0.1:9"]
    )
    assert result.exit_code == 1 and "not a regular file" in result.output


def test_a_file_over_the_market_s_limit_is_refused_by_validate_too(tmp_path: Path) -> None:
    """validate read up to 4 MiB where the market takes 1 MiB: it passed what deploy failed."""
    path = write(tmp_path, "big.yaml", BASE + "#" * (1024 * 1024))
    code, out = run(path)
    assert code == 1 and "cannot read: more than 1 MiB: not a manifest" in out
