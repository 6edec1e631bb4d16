"""`gpumarket manifest validate`: summaries, warnings, one-line errors, exit codes, --json."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from marketplace.cli.main import cli
from tests.helpers import BASE, CORPUS_SDL


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
    code, out = run(str(CORPUS_SDL / "torchbench__torchbench_gpu_sdl_cuda12_0.yaml"))
    assert code == 0
    assert "warning:" in out and "unknown GPU model '4000'" in out


def test_json_output(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", BASE + "gpumarket:\n  kind: inference\n")
    bad = write(tmp_path, "bad.yaml", BASE.replace("amount: 100000", "amount: 0"))
    code, out = run("--json", good, bad)
    assert code == 1
    reports = json.loads(out)
    assert [r["valid"] for r in reports] == [True, False]
    summary = reports[0]["summary"]
    assert summary["gpus"] == {"h100 80Gi sxm | a100": 4}
    assert summary["job"]["kind"] == "inference"
    assert summary["cpu_millis"] == 1000 and summary["replicas"] == 2
    price = summary["max_price_per_hour"]
    assert (
        price["denom"] == "uact"
        and price["whole"] == f"{price['micro'] // 10**6}.{price['micro'] % 10**6:06d}"
    )
    (error,) = reports[1]["errors"]
    assert error["path"].endswith("pricing.web.amount")
    assert error["message"] == "invalid coin amount: amount is zero"
