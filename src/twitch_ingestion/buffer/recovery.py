"""What `DiskBuffer.open()` finds in BUFFER_DIR: every segment validated, damage cut or
skipped and counted once, ack checkpoints merged, leftovers cleared.

Reads and repairs files (it runs once, before the buffer takes appends); the frames
themselves are validated by `segment_log`, sans-I/O.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import structlog

from twitch_ingestion.buffer.errors import DISK_FULL_ERRNOS
from twitch_ingestion.buffer.files import SegmentFiles
from twitch_ingestion.buffer.segment import Segment
from twitch_ingestion.buffer.segment_log import (
    ACKS_SUFFIX,
    CORRUPT,
    FRAME_MAGIC_BYTES,
    KIND_RECORD,
    KIND_TOPIC,
    SEGMENT_HEADER_BYTES,
    SEGMENT_SUFFIX,
    TAIL,
    decode_acks,
    decode_topic,
    iter_frames,
    parse_segment_header,
    record_seq_and_time,
)
from twitch_ingestion.metrics import BUFFER_DROPPED

__all__ = ["Recovered", "recover"]

log = structlog.get_logger(__name__)


class Recovered(NamedTuple):
    """What `recover` found: the segments with records to deliver (in seq order), the
    first seq a new record may take, and whether a segment was rewritten (the directory
    then wants an fsync)."""

    segments: list[Segment]
    next_seq: int
    directory_changed: bool


def recover(directory: Path, files: SegmentFiles) -> Recovered:
    """Validate and load BUFFER_DIR (already locked); see `_Recovery`."""
    return _Recovery(directory, files).recover()


class _Recovery:
    """One pass over a buffer directory at open."""

    def __init__(self, directory: Path, files: SegmentFiles) -> None:
        self._dir = directory
        self._files = files
        self._dir_dirty = False

    def recover(self) -> Recovered:
        """Load what earlier runs left: segments to replay, their acks; clear leftovers."""
        directory = self._dir
        for leftover in directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        files = sorted(
            (int(path.stem), path)
            for path in directory.glob(f"*{SEGMENT_SUFFIX}")
            if path.stem.isdigit()
        )
        segments: list[Segment] = []
        next_seq = 0
        for position, (first_seq, path) in enumerate(files):
            following = files[position + 1][0] if position + 1 < len(files) else None
            segment, seq_bound = self._load_segment(path, first_seq, following)
            next_seq = max(next_seq, seq_bound)
            if segment is not None:
                segments.append(segment)
        live = {segment.acks_path for segment in segments}
        for acks in directory.glob(f"*{ACKS_SUFFIX}"):
            if acks not in live:
                acks.unlink(missing_ok=True)
        return Recovered(segments, next_seq, self._dir_dirty)

    def _load_segment(
        self, path: Path, first_seq: int, following: int | None
    ) -> tuple[Segment | None, int]:
        """Validate one segment; return it (None if nothing is left to deliver) and the
        lowest seq a new segment may use."""
        data = path.read_bytes()
        segment = Segment(path, first_seq, parse_segment_header(data), {})
        last = first_seq - 1
        gaps: list[tuple[int, int]] = []
        damage: tuple[int, int] | None = None
        damaged = False
        tail: tuple[int, int] | None = None
        # The intact frames in place: what the segment is rewritten to after damage.
        kept: list[tuple[int, int]] = []
        for kind, offset, end in iter_frames(data):
            if kind == KIND_RECORD:
                seq, created_at_ms = record_seq_and_time(data, offset)
                if seq <= last or (following is not None and seq >= following):
                    # Intact but out of place: nothing writes that, so treat it as damage.
                    damage = (offset, end) if damage is None else (damage[0], end)
                    continue
                if seq != last + 1:
                    gaps.append((last + 1, seq))
                if damage is not None:
                    self._report_damage(path, damage, seq - last - 1)
                    damage = None
                    damaged = True
                segment.add_age_sample(seq, created_at_ms)
                last = seq
                kept.append((offset, end))
            elif kind == KIND_TOPIC:
                topic_id, name = decode_topic(data, offset, end)
                segment.topics[topic_id] = name
                kept.append((offset, end))
            elif kind == CORRUPT:
                damage = (offset, end) if damage is None else (damage[0], end)
            elif kind == TAIL:
                tail = (offset, end)
        if damage is not None:
            # Damage followed only by topic frames: no record is known to be missing.
            self._report_damage(path, damage, 0)
            damaged = True
        size = len(data)
        if tail is not None:
            lost = max(1, data.count(FRAME_MAGIC_BYTES, tail[0], tail[1]))
            if following is not None and following > last + 1:
                lost = following - last - 1
            self._cut_tail(path, tail, lost, cut=not damaged)
            size = tail[0]
        segment.count = last - first_seq + 1
        seq_bound = max(last + 1, first_seq)
        if segment.count <= 0:
            segment.remove_files()
            return None, seq_bound
        if damaged:
            size = self._rewrite_without_damage(path, data, kept, size)
        segment.size = size
        acked = bytearray(segment.count)
        for start, stop in gaps:
            acked[start - first_seq : stop - first_seq] = b"\x01" * (stop - start)
        self._apply_checkpoint(segment, acked)
        segment.acked = acked
        segment.checkpointed = (segment.count, segment.pending())
        if segment.drained():
            segment.remove_files()
            return None, seq_bound
        return segment, seq_bound

    @staticmethod
    def _apply_checkpoint(segment: Segment, acked: bytearray) -> None:
        if segment.segment_id is None:
            return
        try:
            stored = segment.acks_path.read_bytes()
        except FileNotFoundError:
            return
        checkpoint = decode_acks(stored, segment.segment_id, segment.first_seq)
        if checkpoint is None:
            log.warning("buffer checkpoint ignored", segment=segment.path.name)
            return
        n = min(len(checkpoint), len(acked))
        # Both maps hold only 0 and 1 per byte, so a big-int OR merges them in C.
        merged = int.from_bytes(acked[:n], "little") | int.from_bytes(checkpoint[:n], "little")
        acked[:n] = merged.to_bytes(n, "little")

    @staticmethod
    def _report_damage(path: Path, region: tuple[int, int], lost: int) -> None:
        log.warning(
            "buffer segment damaged",
            segment=path.name,
            offset=region[0],
            bytes_skipped=region[1] - region[0],
            records_lost=lost,
        )
        if lost:
            BUFFER_DROPPED.labels(reason="corrupt_frame").inc(lost)

    @staticmethod
    def _cut_tail(path: Path, tail: tuple[int, int], lost: int, *, cut: bool = True) -> None:
        log.warning(
            "buffer segment tail cut",
            segment=path.name,
            offset=tail[0],
            bytes_cut=tail[1] - tail[0],
            records_lost=lost,
        )
        BUFFER_DROPPED.labels(reason="corrupt_tail").inc(lost)
        # Cut it so the next start does not report the same damage again.
        if cut:
            os.truncate(path, tail[0])

    def _rewrite_without_damage(
        self, path: Path, data: bytes, kept: list[tuple[int, int]], size: int
    ) -> int:
        """Rewrite a segment damaged in the middle to its header and intact frames, so
        that the next start does not count the same damage again (a cut tail is not
        counted again either); the new size. The records lost in the damage stay a gap
        in the seqs, acked from the start. A disk with no room for the copy leaves the
        segment as it is: the damage is then reported again at the next start."""
        repaired = data[:SEGMENT_HEADER_BYTES] + b"".join(data[start:end] for start, end in kept)
        temporary = path.with_suffix(".tmp")
        try:
            self._files.write_file(temporary, repaired)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            if exc.errno not in DISK_FULL_ERRNOS:
                raise
            log.warning(
                "buffer segment not repaired",
                segment=path.name,
                error=exc.strerror,
                effect="its damage is reported again at the next start",
                action="free space in BUFFER_DIR",
            )
            if size < len(data):
                os.truncate(path, size)
            return size
        # The copy replaces records that were on disk: it must be on disk before them.
        fd = os.open(temporary, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        self._dir_dirty = True
        return len(repaired)
