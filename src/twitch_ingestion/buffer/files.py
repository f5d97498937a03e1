"""The filesystem under a buffer directory: the seam a test replaces, and the lock."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Final

from twitch_ingestion.buffer.errors import BufferLockedError

__all__ = ["SegmentFiles", "lock_directory"]

_LOCK_FILE: Final = ".lock"


class SegmentFiles:
    """The filesystem calls that write a buffer directory, in one object a test can replace.

    Like the filesystem trait of Vector's disk buffer: a test passes a subclass that
    refuses writes the way a full disk does (a short write, then ENOSPC) without filling
    a disk. Reads, renames and deletes cannot fail for lack of space and stay direct.
    """

    def create(self, path: Path) -> int:
        """A new, empty segment file opened for appending (never an existing one)."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def write_file(self, path: Path, data: bytes) -> None:
        """A small file written whole (ack checkpoints, under a temporary name)."""
        path.write_bytes(data)


def lock_directory(directory: Path) -> int:
    """Take the directory's lock (one process per BUFFER_DIR) and write our pid in it;
    the lock file's descriptor, held until closed."""
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise BufferLockedError(
                f"BUFFER_DIR {directory} is in use by another process (pid {holder}); "
                "give each instance its own BUFFER_DIR"
            ) from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return fd
