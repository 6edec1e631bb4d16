"""Start, kill, restart and clean up a marketplace and provider agents as real processes.

Each part runs as `gpumarket market serve` / `gpumarket provider run` in its own session (a
Ctrl-C at the terminal reaches only us, so we stop the parts in order) and dies with us if we
die (Linux parent-death signal). Output goes to log files under the stack's root. close() is
idempotent and runs from finally/atexit: it stops every process, removes every container and
network labelled with our providers' addresses, and deletes the temporary root.

Used by `gpumarket demo` (marketplace/cli/demo.py) and by the full-stack tests (tests/system/).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

from marketplace.cli.demo_files import DOCKER_UP, demo_file
from marketplace.core.errors import MarketError
from marketplace.identity import Key
from marketplace.polling import wait_until

T = TypeVar("T")

IMAGE = "gpumarket/busybox:latest"
# `gpumarket` as a child process, with this interpreter (no reliance on PATH)
GPUMARKET = (sys.executable, "-c", "import sys; from marketplace.cli.main import main; main()")


def wait_for_market(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """wait_until where a MarketError counts as "not yet": a part may be (re)starting."""
    return wait_until(predicate, timeout, what, interval=interval, retry_on=(MarketError,))


# --- Docker -----------------------------------------------------------------------------------


def docker_problem() -> str | None:
    """None when a Docker engine answers; else one line saying so and how to start one."""
    try:
        from provider_agent.runtime import DockerRuntime, RuntimeFailure
    except ImportError as exc:  # the docker SDK is not installed
        return f"the Docker SDK is missing ({exc}): pip install -e '.[test]'"
    try:
        DockerRuntime.connect("gpumarket-demo").close()
    except RuntimeFailure:
        return (
            "no Docker engine answers on this machine: start one with `sudo dockerd &` "
            f"(or `sudo bash {demo_file(DOCKER_UP)}`, a checkout's scripts/docker-up.sh, which also "
            "builds the demo image), then run this again"
        )
    return None


def ensure_image(say: Callable[[str], None], image: str = IMAGE) -> str | None:
    """Make sure `image` is local (no registry needed). None when it is, else one line why not."""
    from provider_agent.runtime import DockerRuntime

    runtime = DockerRuntime.connect("gpumarket-demo")
    try:
        if runtime.has_image(image):
            return None
        say(f"building {image} locally with {DOCKER_UP} (no registry needed)")
        # the script ships in the package (demo_files): a real file for bash to run
        with resources.as_file(demo_file(DOCKER_UP)) as script:
            done = subprocess.run(
                ["bash", str(script)],
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
                env={**os.environ, "GPUMARKET_TEST_IMAGE": image},  # the image asked for
            )
        if done.returncode != 0 or not runtime.has_image(image):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"could not build {image} ({last}): run `bash {demo_file(DOCKER_UP)}` as root"
        return None
    finally:
        runtime.close()


def remove_containers(provider: str) -> int:
    """Remove every container and network labelled as this provider's. Returns how many."""
    from provider_agent.runtime import LABEL_PROVIDER, DockerRuntime, RuntimeFailure

    try:
        runtime = DockerRuntime.connect(provider)
    except RuntimeFailure:
        return 0
    try:
        owned = runtime.owned()
        for state in owned:
            runtime.remove(state.id)
        for net in runtime.client.networks.list(filters={"label": f"{LABEL_PROVIDER}={provider}"}):
            with contextlib.suppress(Exception):
                net.remove()
        return len(owned)
    finally:
        runtime.close()


# --- processes --------------------------------------------------------------------------------


# `gpumarket` as a part: first it asks for SIGTERM when we die (Linux parent-death signal),
# however we die, and exits if we are gone already. The child asks, after exec: a preexec_fn
# would make subprocess fork() rather than vfork(), and gRPC's fork handlers restart its poller
# in a forked child, which then aborts before exec now and then ("epoll_wait error: Bad file
# descriptor", grpc/grpc#43055): a part that never started
_DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
parent = int(sys.argv.pop(1))
if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit("gpumarket: the process that started this one is gone")
from marketplace.cli.main import main
main()
"""


@dataclass
class Proc:
    """One child process and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup (a crash, a pulled plug)."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `grace_s`."""
        self.terminate()
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(name: str, args: list[str], log_path: Path, env: dict[str, str]) -> Proc:
    log_file = log_path.open("ab")
    try:
        popen = subprocess.Popen(
            [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches only the orchestrator, which stops us in order
        )
    finally:
        log_file.close()
    return Proc(name, popen, log_path)


def toml_dumps(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for agent configs: scalars, string lists, nested tables."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{_toml_key(key)}", value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        out += f"\n[{name}]\n" + toml_dumps(table, f"{name}.")
    return out


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Provider:
    name: str
    key: Key
    config_path: Path
    proc: Proc | None = None

    @property
    def address(self) -> str:
        return self.key.address


@dataclass
class Stack:
    """A marketplace and provider agents under one temporary root."""

    heartbeat_timeout_s: float = 3.0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gpumarket-demo-")))
    keep_root: bool = False
    market: Proc | None = None
    address: str = ""
    providers: dict[str, Provider] = field(default_factory=dict)
    _closed: bool = False

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        atexit.register(self.close)

    # --- paths and environment ---
    @property
    def data_dir(self) -> Path:
        return self.root / "market"

    @property
    def port_file(self) -> Path:
        return self.root / "market.addr"

    def env(self) -> dict[str, str]:
        # the children's keys and state live under our root, never in the user's home
        return {**os.environ, "GPUMARKET_HOME": str(self.root / "home"), "PYTHONUNBUFFERED": "1"}

    def admin_key(self) -> Key:
        return Key.from_file(self.data_dir / "admin.pem")

    # --- the marketplace ---
    def start_market(self, timeout_s: float = 30.0) -> str:
        """Start `gpumarket market serve`: on any free port the first time, then on the same
        address again (so agents find it where they left it). Returns HOST:PORT."""
        listen = self.address or "127.0.0.1:0"
        self.port_file.unlink(missing_ok=True)
        args = [
            "market",
            "serve",
            "--listen",
            listen,
            "--data-dir",
            str(self.data_dir),
            "--port-file",
            str(self.port_file),
            *self.market_args(),
        ]
        self.market = spawn("market", args, self.root / "market.log", self.env())
        market = self.market

        def bound() -> str | None:
            if not market.alive():
                raise RuntimeError(f"the marketplace exited:\n{market.log_tail()}")
            text = self.port_file.read_text().strip() if self.port_file.exists() else ""
            return text or None

        self.address = wait_for_market(bound, timeout_s, "the marketplace to listen")
        return self.address

    def market_args(self) -> list[str]:
        """Short liveness, so a dead provider's lease fails over within seconds."""
        return ["--heartbeat-timeout", f"{self.heartbeat_timeout_s:g}"]

    def kill_market(self) -> None:
        if self.market is not None:
            self.market.kill()

    # --- providers ---
    def add_provider(
        self, name: str, example: Traversable, **overrides: dict[str, Any]
    ) -> Provider:
        """Write an agent config: the example's (a path, or a file shipped in the package),
        pointed at our marketplace and root."""
        config = tomllib.loads(example.read_text())
        key = Key.generate()
        key_path = self.root / f"{name}.pem"
        key_path.write_bytes(key.to_pem())
        key_path.chmod(0o600)
        config.setdefault("provider", {}).update(key=str(key_path), state_dir=str(self.root / name))
        config["marketplace"] = {
            "address": self.address,
            "call_timeout_s": 2.0,
            "reconnect_max_s": 1.0,  # back quickly after a marketplace restart
        }
        config["metrics"] = {"enabled": False}
        for section, values in overrides.items():
            config.setdefault(section, {}).update(values)
        path = self.root / f"{name}.toml"
        path.write_text(toml_dumps(config))
        provider = Provider(name, key, path)
        self.providers[name] = provider
        return provider

    def start_provider(self, name: str) -> Proc:
        provider = self.providers[name]
        args = ["provider", "run", "--config", str(provider.config_path)]
        provider.proc = spawn(name, args, self.root / f"{name}.log", self.env())
        return provider.proc

    def kill_provider(self, name: str) -> None:
        proc = self.providers[name].proc
        if proc is not None:
            proc.kill()

    def provider_by_address(self, address: str) -> Provider:
        return next(p for p in self.providers.values() if p.address == address)

    def wait_providers_online(self, names: list[str], timeout_s: float = 30.0) -> None:
        from marketplace.api.client import MarketClient

        wanted = {self.providers[n].address for n in names}
        with MarketClient(self.address, timeout_s=2.0) as client:

            def online() -> bool:
                for name in names:
                    proc = self.providers[name].proc
                    if proc is not None and not proc.alive():
                        raise RuntimeError(f"provider {name} exited:\n{proc.log_tail()}")
                found = {p.address for p in client.list_providers(online_only=True)}
                return wanted <= found

            wait_for_market(online, timeout_s, f"providers {', '.join(names)} to register")

    # --- cleanup ---
    def logs(self) -> str:
        parts = [p for p in [self.market, *(q.proc for q in self.providers.values())] if p]
        return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.log_tail()}" for p in parts)

    def close(self) -> None:
        """Stop everything (agents first, then the marketplace), remove containers, the root."""
        if self._closed:
            return
        self._closed = True
        agents = [p.proc for p in self.providers.values() if p.proc is not None]
        for proc in agents:
            proc.terminate()  # all at once: they drain in parallel
        for proc in agents:
            proc.stop(grace_s=5.0)
        if self.market is not None:
            self.market.stop(grace_s=5.0)
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                remove_containers(provider.address)
        if not self.keep_root:
            shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
