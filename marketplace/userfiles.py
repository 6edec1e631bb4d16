"""Files a user names on the command line (a manifest, a provider config, a scenario), read with
a bound.

A path can name anything: a 5 GB checkpoint passed by mistake, /dev/zero, a file still growing.
Its size on disk says nothing for those (/dev/zero has none), so the bound is on what is read:
never more than the limit and one byte, and more than the limit is an OSError that the
commands' "cannot read FILE: ..." lines already say in one line. Devices and pipes are refused
before they are opened.
"""

from __future__ import annotations

import errno
from pathlib import Path

CONFIG_FILE_BYTES = 1024 * 1024  # a provider config, a scenario or a sweep is a few KiB


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The file's bytes, at most `limit`; OSError (EFBIG) naming the bound when it has more,
    as for a missing file. A directory, a device or a pipe is refused before it is opened (a
    FIFO with no writer blocks its reader forever)."""
    if path.is_dir():
        raise OSError(errno.EISDIR, "is a directory")
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "not a regular file (a device or a pipe?)")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"more than {_size(limit)}: not {what}")
    return data


def read_bounded_text(path: Path, limit: int, what: str) -> str:
    """As read_bounded, decoded as UTF-8 (OSError naming the file's kind when it is not text)."""
    try:
        return read_bounded(path, limit, what).decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, f"not UTF-8 text: not {what}") from None


def _size(limit: int) -> str:
    for unit, size in (("MiB", 1024**2), ("KiB", 1024)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit:,} bytes"
