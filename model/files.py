"""Files a user names, checked before they are opened for reading: a
FIFO, device or directory would block in open() or read forever."""

from __future__ import annotations

import os
import stat

from .errors import AllocviewError

__all__ = ["require_regular"]

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISSOCK, "a socket"))


def require_regular(path: str, label: str) -> None:
    """AllocviewError, one line, unless `path` is a regular file (or does
    not exist: opening it says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise AllocviewError(f"{label} {path}: {kind}, not a file (refused before opening it)")
