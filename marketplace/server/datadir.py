"""The marketplace's data dir: private, held by one server at a time, never silently emptied.

- Private: the dir is 0700 (it holds the faucet key and every tenant's logs). A dir this user
  owns is tightened to 0700 with a warning, because a warning alone scrolls away while the key
  stays readable. A dir writable by anyone (say /tmp, even as root) or a loose one owned by
  someone else is refused instead: chmod-ing a shared dir would break its other users.
- One server: an exclusive flock on `lock`, held for the life of the process. The kernel drops
  it when the process dies, so kill -9 leaves no stale lock; the file names the holder's PID.
- Never silently emptied: once a store was created here, an `in-use` marker stays beside it, and
  a missing or empty (0-byte) market.db next to the marker (or the faucet key) is refused rather
  than served as a brand-new market.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from marketplace.core.errors import FailedPrecondition, InvalidArgument
from marketplace.core.limits import whole_number

log = logging.getLogger("gpumarket.market")

LOCK_FILE = "lock"
IN_USE_FILE = "in-use"
PRIVATE_DIR_MODE = 0o700


def prepare(path: Path) -> None:
    """Create the data dir (0700) or make an existing one private; refuse what cannot be."""
    if path.exists() and not path.is_dir():
        raise InvalidArgument(f"--data-dir {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    except OSError as exc:
        raise InvalidArgument(f"cannot create the data dir {path}: {exc.strerror}") from None
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return
    if mode & (stat.S_IWOTH | stat.S_ISVTX):
        raise InvalidArgument(
            f"the data dir {path} is shared (mode {mode:04o}, writable by anyone): "
            "pass a private --data-dir"
        )
    if info.st_uid != os.geteuid():
        raise InvalidArgument(
            f"the data dir {path} is open to others (mode {mode:04o}) and owned by uid "
            f"{info.st_uid}, not by this user: pass a private --data-dir"
        )
    os.chmod(path, PRIVATE_DIR_MODE)
    log.warning("data dir %s was mode %04o (open to others): tightened to 0700", path, mode)


@dataclass
class DataDirLock:
    """The exclusive lock on a data dir; the open file descriptor is the lock."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


def lock(path: Path) -> DataDirLock:
    """Hold `path` for this process, or refuse: another marketplace is using it."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise InvalidArgument(f"cannot write in the data dir {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_pid(fd)
        os.close(fd)
        by = f" (pid {holder})" if holder else ""
        raise FailedPrecondition(
            f"the data dir {path} is in use by another marketplace{by}: "
            "stop it first, or pass another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(path, fd)


def _holder_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return whole_number(text)


def check_store(path: Path, db_name: str, signs_of_use: tuple[str, ...]) -> None:
    """Refuse a missing or empty database in a data dir that held a market."""
    db = path / db_name
    size = db.stat().st_size if db.exists() else None
    if size:
        return
    found = [name for name in (IN_USE_FILE, *signs_of_use) if (path / name).exists()]
    if not found:
        return  # a new data dir (or one whose first start stopped before the store existed)
    what = "missing" if size is None else "empty (0 bytes)"
    raise FailedPrecondition(
        f"{db} is {what} but the data dir was in use ({', '.join(found)} exist): "
        f"restore {db_name} from a backup, or move the data dir aside to start a new market"
    )


def mark_in_use(path: Path, db_name: str) -> None:
    """Leave the marker that makes check_store refuse an emptied database later."""
    marker = path / IN_USE_FILE
    if marker.exists():
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    marker.write_text(
        f"gpumarket: {db_name} in this dir holds a market (created here {stamp});\n"
        f"a missing or empty {db_name} beside this file is damage, not a new market.\n"
    )
    os.chmod(marker, 0o600)
