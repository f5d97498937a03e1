"""What the buffer raises, and the one line that says what to do about a BUFFER_DIR."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Final

__all__ = [
    "DISK_FULL_ERRNOS",
    "BufferDirectoryError",
    "BufferLockedError",
    "DiskFullError",
    "DurableBufferError",
    "directory_error",
]

# No room on the filesystem, or in this user's quota: hold records in memory, not fail.
DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


class DurableBufferError(Exception):
    """The buffer cannot do what was asked (closed, not opened, a write failed)."""


class BufferDirectoryError(DurableBufferError):
    """BUFFER_DIR cannot be used (not creatable, not writable, not a directory, locked)."""


class BufferLockedError(BufferDirectoryError):
    """Another process holds the buffer directory."""


class DiskFullError(Exception):
    """The filesystem had no room for a write (ENOSPC or EDQUOT); nothing was kept of it.

    Internal to the disk buffer: it holds the records in memory instead of raising."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror)
        self.error = error


def directory_error(directory: Path, error: OSError) -> BufferDirectoryError:
    """One line naming BUFFER_DIR, the path that failed and what to do about it."""
    failed = error.filename if error.filename is not None else directory
    if error.errno in (errno.EACCES, errno.EPERM):
        fix = (
            f"give this user (uid {os.getuid()}) write access to it (or to its parent, "
            "to create it), or point BUFFER_DIR at a writable directory"
        )
    elif error.errno in (errno.EEXIST, errno.ENOTDIR):
        fix = "point BUFFER_DIR at a directory (it is created when missing), not a file"
    elif error.errno == errno.EROFS:
        fix = "point BUFFER_DIR at a writable filesystem"
    elif error.errno in DISK_FULL_ERRNOS:
        fix = "free space on that disk or point BUFFER_DIR at another one"
    else:
        fix = "check the path or point BUFFER_DIR at another directory"
    return BufferDirectoryError(
        f"BUFFER_DIR {directory} cannot be used: {error.strerror} ({failed}); {fix}"
    )
