"""`gpumarket market serve` refuses unsafe or malformed listen addresses in one line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from marketplace.cli.main import cli


def serve(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["market", "serve", "--data-dir", str(tmp_path / "m"), *args], catch_exceptions=False
    )
    return result.exit_code, result.output


def test_plaintext_off_loopback_is_refused(tmp_path: Path) -> None:
    code, out = serve(tmp_path, "--listen", "0.0.0.0:0")
    assert code == 1
    assert "needs TLS: pass --tls-cert and --tls-key, or --insecure" in out
    assert "Traceback" not in out


def test_half_a_tls_config_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    code, out = serve(tmp_path, "--listen", "127.0.0.1:0", "--tls-cert", str(cert))
    assert code == 1 and "both --tls-cert and --tls-key" in out


def test_bad_listen_address(tmp_path: Path) -> None:
    code, out = serve(tmp_path, "--listen", "localhost")
    assert code == 1 and "use HOST:PORT" in out
