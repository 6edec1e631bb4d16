"""The mistakes a new user makes first get one clear line and a non-zero exit, never a traceback.

A key file that is not a key (any command that reads one: a named key, `--key FILE.pem`,
`--admin-key`, the agent's `[provider] key`, the market's own admin.pem), a market that is not
running or an address that is not one, a file that is missing, a config that is not TOML. Each
runs the real `gpumarket` command (in this process, through click) against no mocks.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from marketplace.cli.demo_stack import GPUMARKET
from marketplace.cli.main import cli
from marketplace.identity import Key
from tests.helpers import EXAMPLES, closed_port


def gpumarket(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


def assert_no_traceback(result: Result) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"a traceback instead of an error line:\n{trace}")
    assert "Traceback" not in result.output


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit status not 0, an `Error: ...` line naming what is wrong, no traceback."""
    assert_no_traceback(result)
    assert result.exit_code != 0, result.output
    # the agent's lines carry their time (HH:MM:SS) first
    errors = [x for x in result.output.splitlines() if re.match(r"(\d\d:\d\d:\d\d )?Error:", x)]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], result.output
    return errors[0]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh GPUMARKET_HOME (keys under it) and no market address from the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("GPUMARKET_HOME", str(home))
    for name in ("GPUMARKET_MARKET", "GPUMARKET_KEY", "GPUMARKET_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    return home


# what users hand us as a key: text, an empty file, a certificate-like PEM, an encrypted key
NOT_KEYS = {
    "text": b"not a key\n",
    "empty": b"",
    "truncated": Key.generate().to_pem()[:60],
    "public": b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    b"-----END PUBLIC KEY-----\n",
}


def encrypted_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.fixture(params=[*NOT_KEYS, "encrypted"])
def bad_pem(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.pem"
    path.write_bytes(encrypted_key() if request.param == "encrypted" else NOT_KEYS[request.param])
    return path


def test_a_named_key_that_is_not_a_key(home: Path, bad_pem: Path) -> None:
    keys = home / "keys"
    keys.mkdir(parents=True)
    (keys / "broken.pem").write_bytes(bad_pem.read_bytes())
    market = closed_port()
    for args in (
        ("keys", "list"),
        ("keys", "show", "broken"),
        ("status", "--key", "broken", "--market", market),
        ("account", "--key", "broken", "--market", market),
    ):
        line = assert_one_line_error(gpumarket(*args), "broken.pem", "not an Ed25519 private key")
        assert "keys/broken.pem" in line, (args, line)


def test_a_key_file_that_is_not_a_key(home: Path, bad_pem: Path, tmp_path: Path) -> None:
    market = closed_port()
    for args in (
        ("status", "--key", str(bad_pem), "--market", market),
        ("account", "fund", "gm1" + "a" * 32, "5", "--admin-key", str(bad_pem), "--market", market),
        ("market", "audit", "--admin-key", str(bad_pem), "--market", market),
        (
            "market",
            "serve",
            "--data-dir",
            str(tmp_path / "market"),
            "--listen",
            "127.0.0.1:0",
            "--admin-key",
            str(bad_pem),
        ),
    ):
        assert_one_line_error(gpumarket(*args), str(bad_pem), "not an Ed25519 private key")


def test_an_admin_key_file_need_not_end_in_pem(home: Path, tmp_path: Path) -> None:
    """`--admin-key` takes a FILE (its help says so): any name, not a key name."""
    key_file = tmp_path / "admin.key"
    key_file.write_bytes(b"garbage")
    result = gpumarket(
        "market", "serve", "--data-dir", str(tmp_path / "m"), "--listen", "127.0.0.1:0",
        "--admin-key", str(key_file),
    )  # fmt: skip
    assert_one_line_error(result, str(key_file), "not an Ed25519 private key")


def test_the_market_data_dirs_admin_key_is_not_a_key(home: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "market"
    serve = ("market", "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0")
    # a first start that fails on the port leaves the data dir with its store and key
    (data_dir).mkdir(mode=0o700)
    (data_dir / "admin.pem").write_bytes(b"garbage")
    (data_dir / "market.db").write_bytes(b"")
    result = gpumarket(*serve)
    assert_one_line_error(result)


def test_the_agents_key_file_is_not_a_key(home: Path, bad_pem: Path, tmp_path: Path) -> None:
    config = tmp_path / "provider.toml"
    config.write_text(
        f'[provider]\nkey = "{bad_pem}"\n[gpu]\nbackend = "none"\n'
        '[pricing.scale]\ncpu_hour = "0.01"\n'
    )
    result = gpumarket("provider", "run", "--config", str(config))
    assert_one_line_error(result, "provider.key", str(bad_pem))
    assert result.exit_code == 78  # EX_CONFIG: systemd does not restart a bad config in a loop


@pytest.mark.parametrize(
    ("market", "said"),
    [
        ("closed", "is `gpumarket market serve` running?"),
        # off this machine without TLS: refused before anything is sent (--insecure to send it)
        ("no-such-host.invalid:7420", "refusing plaintext to no-such-host.invalid:7420"),
        # not an address at all: said so, not "cannot reach"
        ("127.0.0.1", "is not HOST:PORT"),
        ("127.0.0.1:notaport", "is not HOST:PORT"),
        ("127.0.0.1:70000", "is not HOST:PORT"),
        ("http://127.0.0.1:7420", "is not HOST:PORT"),
        ("127.0.0.1:7420,", "empty entry"),
    ],
)
def test_a_market_that_is_not_there(home: Path, market: str, said: str) -> None:
    address = closed_port() if market == "closed" else market
    for args in (
        ("status",),
        ("status", "--json"),
        ("providers",),
        ("deploy", str(EXAMPLES / "inference.yaml"), "--deposit", "5"),
        ("market", "stats"),
    ):
        assert_one_line_error(gpumarket(*args, "--market", address), address.rstrip(","), said)


def test_a_remote_market_told_insecure_is_dialled(home: Path) -> None:
    address = "no-such-host.invalid:7420"
    result = gpumarket("providers", "--market", address, "--insecure")
    assert_one_line_error(result, address, "is `gpumarket market serve` running?")


def test_missing_files(home: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    for args in (
        ("deploy", missing, "--deposit", "5"),
        ("simulate", missing),
        ("estimate", missing),
        ("provider", "run", "--config", str(tmp_path / "nope.toml")),
        ("provider", "quote", missing),
    ):
        result = gpumarket(*args)
        assert result.exit_code != 0, (args, result.output)
        assert_no_traceback(result)
        assert "nope." in result.output, (args, result.output)


def test_a_config_that_is_not_toml(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "provider.toml"
    config.write_text("[provider\nkey = 1\n")
    for command in ("run", "inventory", "status"):
        result = gpumarket("provider", command, "--config", str(config))
        assert_one_line_error(result, str(config), "line 1")
        assert result.exit_code == 78


@pytest.mark.docker
@pytest.mark.parametrize(
    ("config", "names", "status"),
    [
        # examples/provider.toml's documentation address, copied as is
        ('[provider]\nhost_uri = "203.0.113.7"\n', "[provider] host_uri", 78),
        ('[network]\npublish_address = "203.0.113.7"\n', "[network] publish_address", 78),
        ('[metrics]\nbind = "203.0.113.7"\nport = 0\n', "[metrics] bind", 78),
        ('[ingress]\nlisten = "203.0.113.7:0"\ndomain = "x.test"\n', "[ingress] listen", 78),
        ("[metrics]\nport = {busy}\n", "[metrics] port", 1),  # may free itself: a retry helps
    ],
    ids=["host_uri", "publish_address", "metrics-bind", "ingress-listen", "metrics-port-busy"],
)
def test_an_agent_that_cannot_start_says_which_key(
    home: Path, tmp_path: Path, config: str, names: str, status: int
) -> None:
    """What the config asks of the host is checked at start: one line naming the key, exit 78
    when only a config change helps (the systemd unit then stops retrying), else 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        path = tmp_path / "provider.toml"
        base = '[gpu]\nbackend = "none"\n[pricing.scale]\ncpu_hour = "0.01"\n'
        base += f'[marketplace]\naddress = "{closed_port()}"\n'
        if "[metrics]" not in config:
            base += "[metrics]\nenabled = false\n"
        path.write_text(base + config.format(busy=busy.getsockname()[1]))
        result = gpumarket("provider", "run", "--config", str(path))
    assert_one_line_error(result, names)
    assert result.exit_code == status, result.output


def test_a_provider_command_without_the_agents_key_says_where_it_lives(
    home: Path, tmp_path: Path
) -> None:
    """Reads with the provider's key create none (a new key would be another provider): the
    line says that the agent makes its key and where to find it, and no key appears."""
    config = tmp_path / "provider.toml"
    config.write_text(f'[marketplace]\naddress = "{closed_port()}"\n')
    for args in (
        ("provider", "status", "--config", str(config)),
        ("provider", "price-advice", "--market", closed_port()),
    ):
        assert_one_line_error(gpumarket(*args), "no provider key 'provider'", "GPUMARKET_HOME")
    assert not (home / "keys").exists()


def test_an_agent_without_a_docker_engine_says_how_to_start_one(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    config = tmp_path / "provider.toml"
    config.write_text('[gpu]\nbackend = "none"\n[pricing.scale]\ncpu_hour = "0.01"\n')
    result = gpumarket("provider", "run", "--config", str(config))
    line = assert_one_line_error(result, "no Docker engine answers", "no-engine.sock")
    assert "start it" in line
    assert result.exit_code == 1  # not the config's fault: a service manager may retry


def test_a_key_file_that_is_not_there_is_not_made_up(home: Path, tmp_path: Path) -> None:
    """`--key ./me.pem` names a file: missing, it is an error naming it (never a "bad key
    name", never a new key in its place); a file without .pem is a file too."""
    market = closed_port()
    for name in (str(tmp_path / "missing.pem"), "./missing.pem", "missing.pem"):
        line = assert_one_line_error(gpumarket("status", "--key", name, "--market", market))
        assert f"no key file {name}" in line
    assert not (home / "keys").exists()
    key_file = tmp_path / "tenant.key"
    key_file.write_bytes(Key.generate().to_pem())
    result = gpumarket("status", "--key", str(key_file), "--market", market)
    assert_one_line_error(result, "cannot reach the marketplace")  # the key loaded
    assert_one_line_error(gpumarket("keys", "create", "me.pem"), "without .pem")


def commands_reading(path: str) -> list[tuple[str, ...]]:
    """Every command that reads a file the user names, naming `path`."""
    market = ("--market", closed_port())
    return [
        ("deploy", path, "--deposit", "5", *market),
        ("update", "D1", path, *market),
        ("estimate", path, *market),
        ("manifest", "validate", path),
        ("simulate", path),
        ("simulate", "sweep", path),
        ("simulate", "gang-ranking", path),
        ("provider", "quote", path),
        ("provider", "run", "--config", path),
        ("provider", "inventory", "--config", path),
        ("market", "audit", "--admin-key", path, *market),
        ("status", "--key", path, *market),
    ]


def test_a_huge_file_is_refused_without_reading_it(home: Path, tmp_path: Path) -> None:
    """A 64 MiB file named by mistake (sparse here: it costs no disk) is refused at its bound,
    in one line, by every command that reads one."""
    huge = tmp_path / "checkpoint.pem"  # .pem: --key reads it as a file too
    with huge.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    for args in commands_reading(str(huge)):
        result = gpumarket(*args)
        assert_no_traceback(result)
        assert result.exit_code != 0, (args, result.output)
        # one line names the file and the bound (`manifest validate` writes FILE: ..., the
        # others Error: ...)
        [line] = [x for x in result.output.splitlines() if str(huge) in x]
        assert re.search(r"more than [\d,]+ (MiB|KiB|bytes)", line), (args, line)


def test_a_device_or_a_pipe_is_refused_without_reading_it(home: Path, tmp_path: Path) -> None:
    """/dev/zero has no size on disk to check first, and a FIFO with no writer blocks its reader
    forever: both are refused before they are opened, by every command that reads a file. Run as
    processes with 1 GiB of address space, so reading one whole fails the test, not the box."""

    # the child sets its limit itself: a preexec_fn makes subprocess fork() this gRPC-using
    # process, and a forked child can abort before exec (see demo_stack._DIE_WITH_PARENT)
    limited = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3)); "
    command = [sys.executable, "-c", limited + GPUMARKET[2]]
    fifo = tmp_path / "pipe.pem"  # .pem: --key reads it as a file too
    os.mkfifo(fifo)
    for special in ("/dev/zero", str(fifo)):
        for args in commands_reading(special):
            done = subprocess.run(
                [*command, *args],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "GPUMARKET_HOME": str(home)},
            )
            assert done.returncode != 0 and "Traceback" not in done.stderr, (args, done.stderr)
            [line] = [x for x in (done.stdout + done.stderr).splitlines() if special in x]
            assert "not a regular file" in line or "no key file" in line, (args, line)


@pytest.mark.parametrize("amount", ["inf", "nan", "1e100", "1e999999999", "9" * 30, "12.5u", "0"])
def test_an_amount_that_is_not_one(home: Path, tmp_path: Path, amount: str) -> None:
    """Every place a user types an amount says what is wrong in one line: the CLI's deposits,
    the faucet, the auto top-up, and a provider's prices."""
    market = closed_port()
    admin = tmp_path / "admin.pem"
    admin.write_bytes(Key.generate().to_pem())
    manifest = str(EXAMPLES / "inference.yaml")
    for args in (
        ("deploy", manifest, "--deposit", amount, "--market", market),
        ("deploy", manifest, "--deposit", "5", "--auto-top-up", amount, "--market", market),
        ("deposit", "D1", amount, "--market", market),
        ("account", "fund", "me", amount, "--admin-key", str(admin), "--market", market),
    ):
        line = assert_one_line_error(gpumarket(*args))
        assert "cannot reach" not in line, (args, line)  # refused before it is sent
    config = tmp_path / "provider.toml"
    config.write_text(f'[gpu]\nbackend = "none"\n[pricing.scale]\ncpu_hour = "{amount}"\n')
    result = gpumarket("provider", "inventory", "--config", str(config))
    if amount != "0":  # a price of 0 is a free CPU: allowed
        assert_one_line_error(result, "pricing.scale.cpu_hour")


def test_a_home_where_no_key_can_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPUMARKET_HOME naming a file (or anything a key cannot be written under)."""
    home = tmp_path / "not-a-dir"
    home.write_text("")
    monkeypatch.setenv("GPUMARKET_HOME", str(home))
    config = tmp_path / "provider.toml"
    config.write_text(
        '[gpu]\nbackend = "none"\n[pricing.scale]\ncpu_hour = "0.01"\n[metrics]\nenabled = false\n'
        f'[marketplace]\naddress = "{closed_port()}"\n'
    )
    for args in (
        ("keys", "create", "me"),
        ("status", "--market", closed_port()),
        ("provider", "run", "--config", str(config)),
    ):
        assert_one_line_error(gpumarket(*args), "cannot create key", str(home / "keys"))


def test_a_report_folder_that_cannot_be_written(home: Path, tmp_path: Path) -> None:
    """--out under a file: said before the simulation runs, in one line."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args in (
        ("simulate", str(EXAMPLES / "scenario-small.yaml"), "--out", str(blocker / "run")),
        ("simulate", "sweep", str(EXAMPLES / "sweep.yaml"), "--out", str(blocker / "sweep")),
    ):
        assert_one_line_error(gpumarket(*args), f"cannot write the report to {blocker}", "--out")
