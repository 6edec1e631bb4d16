"""A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries
(initdb, pg_ctl under /usr/lib/postgresql/VERSION/bin), a cluster in a temp dir, on a free
loopback port, run as the `postgres` user when we are root (PostgreSQL refuses to run as root).

    with PgCluster.start() as cluster:
        url = cluster.create_database("t1")   # postgresql://postgres@127.0.0.1:PORT/t1

Missing binaries fail loudly (scripts/test-deps.sh installs them); nothing here skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

SUPERUSER = "postgres"
START_TIMEOUT_S = 60


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin dir."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError(
            "PostgreSQL is not installed (no initdb): run scripts/test-deps.sh "
            "(Debian's postgresql package)"
        )
    return Path(initdb).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One initdb'ed cluster, started with pg_ctl; stop() removes it."""

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.run_as = run_as
        self.bin = postgres_bin()
        self._databases = 0

    @classmethod
    def start(cls) -> PgCluster:
        root = Path(tempfile.mkdtemp(prefix="gpumarket-pg-"))
        run_as = SUPERUSER if os.geteuid() == 0 else None
        if run_as is not None:
            user = pwd.getpwnam(run_as)  # KeyError: the postgresql package makes this user
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(root, free_port(), run_as)
        try:
            cluster._pg(
                "initdb", "-D", str(cluster.data), "-U", SUPERUSER, "-A", "trust", "--no-sync",
                "-E", "UTF8",
            )  # fmt: skip
            # in its config, so a restart (crash_and_restart) serves the same port
            with (cluster.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"port = {cluster.port}\nunix_socket_directories = '{root}'\n"
                    "listen_addresses = '127.0.0.1'\nmax_connections = 200\n"
                    "shared_buffers = 64MB\n"
                )
            cluster._start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _pg(self, tool: str, *args: str) -> str:
        command = [str(self.bin / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30, cwd=self.root
        )
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}{tail}")
        return done.stdout

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; returns its unaligned output."""
        return self._pg(
            "psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port),
            "-U", SUPERUSER, "-d", database, "-v", "ON_ERROR_STOP=1", "-c", statement,
        )  # fmt: skip

    def create_database(self, prefix: str = "market") -> str:
        """A new empty database; returns its URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def crash_and_restart(self) -> None:
        """Stop the server as a crash would (immediate: no checkpoint, every session cut), then
        start it again on the same port; it recovers from its WAL."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._start()

    def _start(self) -> None:
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
            "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
