"""The buffer's own settings: BUFFER_MODE, BUFFER_FULL_POLICY, `BufferConfig`, `BufferOptions`.

`config.Settings` reads and validates the environment (and re-exports the two enums for
its fields); `component_configs.buffer_config` derives a `BufferConfig` from it. The
buffer sees neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from twitch_ingestion.buffer.files import SegmentFiles
    from twitch_ingestion.native import RecordFramer

__all__ = ["BufferConfig", "BufferFullPolicy", "BufferMode", "BufferOptions"]


class BufferMode(StrEnum):
    DISK = "disk"
    MEMORY = "memory"


class BufferFullPolicy(StrEnum):
    BLOCK = "block"
    DROP_NEWEST = "drop_newest"


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferConfig:
    """BUFFER_MODE, BUFFER_DIR, BUFFER_MAX_BYTES, BUFFER_SEGMENT_BYTES, BUFFER_FSYNC_MS,
    BUFFER_FULL_POLICY, and the record framer HOT_PATH chose (None: Python's)."""

    mode: BufferMode
    directory: Path
    max_bytes: int
    segment_bytes: int
    fsync_ms: int
    full_policy: BufferFullPolicy
    framer: RecordFramer | None


class BufferOptions(TypedDict, total=False):
    """The options both buffers take besides their directory (defaults: `CappedBuffer`).

    `clock` is the monotonic clock in seconds (`time.monotonic`) the buffer reads for its
    fsync, checkpoint and disk-full retry intervals; `wall_clock` the epoch in seconds
    (`time.time`) its age gauge compares records' `created_at_ms` with. Tests pass fakes.
    """

    max_bytes: int
    segment_bytes: int
    fsync_ms: int
    full_policy: BufferFullPolicy
    checkpoint_interval_ms: int
    files: SegmentFiles
    framer: RecordFramer | None
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
