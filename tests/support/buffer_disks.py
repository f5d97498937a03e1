"""A filesystem seam for the buffer tests: a disk with so many bytes of room left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from twitch_ingestion.buffer.files import SegmentFiles

__all__ = ["DiskWithRoom"]


class DiskWithRoom(SegmentFiles):
    """A filesystem with `room` bytes left (None: plenty).

    A write that does not fit writes what fits, and the next one fails with ENOSPC, the
    way a full disk does; a small file (an ack checkpoint) that does not fit is left
    partly written and fails. While `refuse_create` is set and room is limited, creating
    a segment fails too (no inodes left). `full_after_next_create = n` leaves `n` bytes
    of room once the next segment is created (16: its header fits, its records do not).
    Set `room` at any point: the disk fills or space returns between any two calls,
    rotation included.
    """

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.refuse_create = False
        # The disk fills just as the next segment is created: its header fits, no more.
        self.full_after_next_create: int | None = None

    @staticmethod
    def _full() -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def create(self, path: Path) -> int:
        if self.refuse_create and self.room is not None:
            raise self._full()
        fd = super().create(path)
        if self.full_after_next_create is not None:
            self.room, self.full_after_next_create = self.full_after_next_create, None
        return fd

    def write(self, fd: int, data: memoryview) -> int:
        if self.room is None:
            return super().write(fd, data)
        if self.room <= 0:
            raise self._full()
        written = super().write(fd, data[: self.room])
        self.room -= written
        return written

    def write_file(self, path: Path, data: bytes) -> None:
        if self.room is not None and len(data) > self.room:
            path.write_bytes(data[: self.room])
            self.room = 0
            raise self._full()
        if self.room is not None:
            self.room -= len(data)
        path.write_bytes(data)
