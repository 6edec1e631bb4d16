"""`gpumarket market serve` refuses, in one line, what it cannot serve safely: a malformed or
busy address, a data dir held by another server, an emptied database, a shared data dir."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from marketplace.api.client import MarketClient
from marketplace.cli.main import cli
from marketplace.core.errors import FailedPrecondition
from marketplace.identity import Key
from marketplace.server.serve import ServeOptions, start
from marketplace.server.store import DB_NAME
from marketplace.server.testing import ServerThread
from tests.server.market_process import MarketProcess, refused_start


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


# --- one server per port and per data dir, against real processes and sockets ----------------


def one_line(lines: list[str]) -> str:
    """The single line a refused start printed, without click's "Error: " prefix."""
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: "), lines
    return lines[0].removeprefix("Error: ")


def test_a_second_server_on_a_busy_port_is_refused(tmp_path: Path) -> None:
    with MarketProcess.start(tmp_path / "a") as first:
        code, lines = refused_start("--listen", first.address, "--data-dir", str(tmp_path / "b"))
        assert code == 1
        assert one_line(lines) == f"{first.address} is already in use (another marketplace?)"
        # the first one still answers, alone on its port
        assert MarketClient(first.address).list_providers() == []


def test_the_server_does_not_share_its_port(tmp_path: Path) -> None:
    """gRPC sets SO_REUSEPORT unless told not to; then any process of this user that sets it too
    could bind the same port and take half the connections."""
    with MarketProcess.start(tmp_path / "a") as first, socket.socket() as intruder:
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError) as refused:
            intruder.bind(("127.0.0.1", first.port))
        assert refused.value.errno == errno.EADDRINUSE


def test_a_refused_start_lets_go_of_the_data_dir(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        opts = ServeOptions(listen=listen, data_dir=tmp_path / "m")
        with pytest.raises(FailedPrecondition, match="already in use"):
            asyncio.run(start(opts))
    # in the same process, at once: the refused start released its lock
    with ServerThread(tmp_path / "m") as server:
        assert MarketClient(server.address).list_providers() == []


def test_a_data_dir_is_held_by_one_server_until_it_dies(tmp_path: Path) -> None:
    data_dir = tmp_path / "a"
    with MarketProcess.start(data_dir) as first:
        code, lines = refused_start("--listen", "127.0.0.1:0", "--data-dir", str(data_dir))
        assert code == 1
        assert one_line(lines) == (
            f"the data dir {data_dir} is in use by another marketplace (pid {first.pid}): "
            "stop it first, or pass another --data-dir"
        )
        assert MarketClient(first.address).list_providers() == []
        first.kill9()  # the kernel drops the lock with the process: nothing stale to clean up
    with MarketProcess.start(data_dir) as second:
        assert MarketClient(second.address).list_providers() == []


@pytest.mark.parametrize("damage", ["empty", "missing"])
def test_an_emptied_database_in_a_used_data_dir_is_refused(tmp_path: Path, damage: str) -> None:
    data_dir = tmp_path / "a"
    with MarketProcess.start(data_dir) as market:
        market.stop()
    db = data_dir / DB_NAME
    for companion in (".db-wal", ".db-shm"):
        db.with_suffix(companion).unlink(missing_ok=True)
    if damage == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()
    code, lines = refused_start("--listen", "127.0.0.1:0", "--data-dir", str(data_dir))
    assert code == 1
    what = "empty (0 bytes)" if damage == "empty" else "missing"
    assert one_line(lines) == (
        f"{db} is {what} but the data dir was in use (in-use, admin.pem exist): "
        "restore market.db from a backup, or move the data dir aside to start a new market"
    )


def test_the_marker_alone_guards_a_market_with_an_outside_admin_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "a"
    admin_key = tmp_path / "admin.pem"
    admin_key.write_bytes(Key.generate().to_pem())
    with MarketProcess.start(data_dir, "--admin-key", str(admin_key)) as market:
        market.stop()
    (data_dir / DB_NAME).write_bytes(b"")
    for companion in (".db-wal", ".db-shm"):
        (data_dir / DB_NAME).with_suffix(companion).unlink(missing_ok=True)
    code, lines = refused_start(
        "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--admin-key", str(admin_key)
    )
    assert code == 1 and "is empty (0 bytes) but the data dir was in use (in-use exist)" in lines[0]


def modes(data_dir: Path) -> dict[str, str]:
    """Permission bits of the data dir (as ".") and of everything in it, in octal."""
    found = {".": oct(stat.S_IMODE(data_dir.stat().st_mode))}
    for path in data_dir.iterdir():
        found[path.name] = oct(stat.S_IMODE(path.stat().st_mode))
    return found


def test_a_new_data_dir_and_its_database_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "a"
    with MarketProcess.start(data_dir) as market:
        MarketClient(market.address).list_providers()
        seen = modes(data_dir)
    assert {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "admin.pem"} <= seen.keys()
    assert seen == {".": "0o700"} | {name: "0o600" for name in seen if name != "."}


def test_an_existing_loose_data_dir_is_made_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "a"
    with MarketProcess.start(data_dir) as market:
        market.stop()
    data_dir.chmod(0o755)
    for path in data_dir.iterdir():
        path.chmod(0o644)
    (data_dir / "admin.pem").chmod(0o600)  # the key file is the operator's to guard
    with MarketProcess.start(data_dir) as market:
        seen = modes(data_dir)
        out = market.stop()
    assert seen["."] == "0o700"
    assert seen[DB_NAME] == "0o600"
    assert f"data dir {data_dir} was mode 0755 (open to others): tightened to 0700" in out


def test_a_data_dir_writable_by_anyone_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: chmod-ing it would break everyone else
    code, lines = refused_start("--listen", "127.0.0.1:0", "--data-dir", str(shared))
    assert code == 1
    assert one_line(lines) == (
        f"the data dir {shared} is shared (mode 1777, writable by anyone): "
        "pass a private --data-dir"
    )
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a dir to another user needs root")
def test_a_loose_data_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    theirs.chmod(0o755)
    os.chown(theirs, 4242, 4242)
    code, lines = refused_start("--listen", "127.0.0.1:0", "--data-dir", str(theirs))
    assert code == 1
    assert one_line(lines) == (
        f"the data dir {theirs} is open to others (mode 0755) and owned by uid 4242, "
        "not by this user: pass a private --data-dir"
    )


# --- bad arguments: one line, exit 1 or 2, never a traceback or a port nobody asked for -------


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:99999", "--listen '127.0.0.1:99999': port 99999 is out of range (0-65535)"),
        ("nosuch.invalid:7420", "cannot listen on nosuch.invalid:7420: unknown host"),
        ("192.0.2.1:7420", "cannot listen on 192.0.2.1:7420: Cannot assign requested address"),
    ],
)
def test_a_bad_listen_address_is_one_line(tmp_path: Path, listen: str, message: str) -> None:
    data_dir = str(tmp_path / "a")
    code, lines = refused_start("--listen", listen, "--data-dir", data_dir, "--insecure")
    assert code == 1
    assert one_line(lines).startswith(message)


def test_a_data_dir_that_cannot_be_one_is_refused_in_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a dir")
    code, lines = refused_start("--listen", "127.0.0.1:0", "--data-dir", str(a_file / "market"))
    assert code == 1
    assert one_line(lines) == f"cannot create the data dir {a_file / 'market'}: Not a directory"
    code, lines = refused_start("--data-dir", str(a_file))
    assert code == 2  # click's usage error
    assert lines[-1] == f"Error: Invalid value for '--data-dir': Directory '{a_file}' is a file."


def test_an_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with unwritable_even_by_root(locked) as reason:
        code, lines = refused_start("--listen", "127.0.0.1:0", "--data-dir", str(locked))
    assert code == 1
    assert one_line(lines) == f"cannot write in the data dir {locked}: {reason}"


@contextlib.contextmanager
def unwritable_even_by_root(directory: Path) -> Iterator[str]:
    """Root writes through mode bits (and CI runs as root), so as root the dir is made
    immutable instead. Yields the error text the server then meets."""
    if os.geteuid() != 0:
        yield "Permission denied"
        return
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield "Operation not permitted"
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
