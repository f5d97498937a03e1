"""`DiskBuffer` (BUFFER_MODE=disk): the I/O shell of the durable segment log.

What it guarantees is the package docstring (`buffer/__init__.py`). This module does the
writes, fsyncs, checkpoints and reads; the decisions live beside it: the frame format in
`segment_log`, what `open()` finds in `recovery`, the cap and its policy in `capped`, and
what a full disk means (when it counts as full, when to try it again, what is reported,
how much goes back under the cap) in `disk_full`, a pure state fed with the time read
from the buffer's clock here, and reading a segment back in `reading`.

Why it is over 600 lines: `DiskBuffer` is one object whose state (the active segment
and its file descriptor, the segment list, the byte count, the held records) every
operation reads and changes, on the hot path (`append_batch`, `ack`). Splitting the
writing from the acking would spread that state over objects calling back into each
other once per batch and per ack; what is left here is the I/O that goes with it.
"""

from __future__ import annotations

import contextlib
import os
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, Unpack

import structlog

from twitch_ingestion.buffer.capped import CappedBuffer
from twitch_ingestion.buffer.config import BufferOptions
from twitch_ingestion.buffer.disk_full import (
    DiskFullState,
    DiskPhase,
    DiskReport,
    write_back_runs,
)
from twitch_ingestion.buffer.errors import (
    DISK_FULL_ERRNOS,
    DiskFullError,
    DurableBufferError,
    directory_error,
)
from twitch_ingestion.buffer.files import lock_directory
from twitch_ingestion.buffer.held import HeldFrames
from twitch_ingestion.buffer.protocol import Appended, BufferedRecord
from twitch_ingestion.buffer.reading import read_unacked
from twitch_ingestion.buffer.recovery import recover
from twitch_ingestion.buffer.segment import Segment
from twitch_ingestion.buffer.segment_log import (
    SEGMENT_HEADER_BYTES,
    TOPIC_DEFS_EVERY_BATCHES,
    FrameEncoder,
    encode_acks,
    encode_segment_header,
    segment_name,
)
from twitch_ingestion.metrics import (
    BUFFER_BYTES,
    BUFFER_DISK_FULL,
    BUFFER_DROPPED,
    BUFFER_HELD_IN_MEMORY,
    BUFFER_REPLAYED,
)
from twitch_ingestion.records import Record

__all__ = ["DiskBuffer"]

log = structlog.get_logger(__name__)

# A segment is at most this fraction of BUFFER_MAX_BYTES, so that acked space comes back
# in steps smaller than the whole cap (a 64 MiB segment under a 1 MiB cap would free
# nothing until the buffer had drained completely).
_SEGMENTS_PER_CAP: Final = 4
_MIN_SEGMENT_BYTES: Final = 1024
_WRITABLE: Final = DiskPhase.WRITABLE


class DiskBuffer(CappedBuffer):
    """The durable segment log; the package docstring says what it guarantees.

    `hold_when_full=False` (the spill of a `MemoryBuffer`, whose records are in memory
    anyway) refuses a batch the disk has no room for instead of holding it.
    """

    def __init__(
        self, directory: Path, *, hold_when_full: bool = True, **options: Unpack[BufferOptions]
    ) -> None:
        super().__init__(directory, **options)
        self._segment_bytes = max(
            _MIN_SEGMENT_BYTES, min(self._segment_bytes, self._max_bytes // _SEGMENTS_PER_CAP)
        )
        self._hold_when_full = hold_when_full
        self._in_memory = HeldFrames()
        self._encoder = FrameEncoder(self._framer)
        self._segments: list[Segment] = []
        self._first_seqs: list[int] = []
        self._active: Segment | None = None
        self._fd = -1
        self._lock_fd = -1
        self._bytes = 0
        self._batches_since_topics = 0
        self._dirty = False
        self._dir_dirty = False
        self._last_sync = self._clock()
        self._last_checkpoint = self._last_sync
        self._to_replay: list[Segment] = []
        self._replayed = 0
        # What a full disk means for appends, retries and reports (pure: `disk_full.py`).
        # Records held meanwhile are in `_in_memory`, all of them after every record on
        # disk.
        self._disk_state = DiskFullState()
        self._checkpoint_skipped = False
        # The segment the last ack hit: acks mostly land in the same one.
        self._no_segment = Segment(self._dir, -1, None, {})
        self._ack_hint = self._no_segment

    # --- lifecycle ------------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory, validate every segment, load ack checkpoints.

        Appends go to a new segment; the old ones are replayed by `replay()`. Any
        filesystem failure is a `BufferDirectoryError` naming BUFFER_DIR.
        """
        self._check_not_open()
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_directory(self._dir)
            recovered = recover(self._dir, self._files)
        except OSError as exc:
            self._unlock()
            raise directory_error(self._dir, exc) from None
        self._segments = recovered.segments
        self._first_seqs = [segment.first_seq for segment in recovered.segments]
        self._to_replay = list(recovered.segments)
        self._next_seq = recovered.next_seq
        self._bytes = sum(segment.size for segment in recovered.segments)
        self._dir_dirty = recovered.directory_changed
        self._opened = True
        log.info(
            "buffer opened",
            directory=str(self._dir),
            segments=len(self._segments),
            records_to_replay=self.records,
            bytes=self._bytes,
        )
        self.update_metrics()

    def close(self) -> None:
        """Fsync, write the ack checkpoints, release the directory; safe to call twice.

        Records still held in memory because the disk is full are written if the disk
        has room now; otherwise they are lost with the process, and counted.
        """
        if self._closed or not self._opened:
            self._closed = True
            return
        if self._in_memory.by_seq:
            self._disk_state.closing()
            # Past the cap if need be (by the headers and topic definitions of the
            # segments it takes): a few bytes over is better than records lost.
            self._retry_disk(self._clock(), within_cap=False)
            lost = len(self._in_memory.by_seq)
            if lost:
                log.error(
                    "buffer records lost at close",
                    directory=str(self._dir),
                    records=lost,
                    reason="the disk is full, so they were only in memory",
                    action="free space in BUFFER_DIR",
                )
                BUFFER_DROPPED.labels(reason="disk_full").inc(lost)
        self.sync()
        active = self._active
        if active is not None:
            os.close(self._fd)
            self._fd = -1
            self._active = None
            if active.drained():
                self._delete_segment(active)
        self.checkpoint()
        self.update_metrics()
        self._unlock()
        self._closed = True

    def abandon(self) -> None:
        """Drop the file descriptors without fsync or checkpoint: what a crash leaves.

        For crash tests; the service uses `close()`.
        """
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._active = None
        self._unlock()
        self._closed = True

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- appending ------------------------------------------------------------------

    def append_batch(self, records: Sequence[Record]) -> Appended:
        """Write `records` with one `os.write`; return the first seq and how many fit.

        Under `drop_newest` the records that did not fit are dropped and counted; under
        `block` they are not written and the caller retries them after `wait_for_room`.
        When the disk is full they are held in memory instead (see `_disk_refused`).
        """
        self._check_open()
        first_seq = self._next_seq
        total = len(records)
        if not total:
            return Appended(first_seq, 0)
        if self._in_memory.by_seq:
            # The disk was full: queue behind the held records, so that the disk always
            # has a prefix of the seqs and `unacked()` stays in append order.
            return self._append_held(records, first_seq)
        parts, size, new_topics = self._encoder.encode(records, first_seq)
        accepted = total
        extra = self._append_extra()
        if self._bytes + size + extra > self._max_bytes:
            accepted = self._fit([len(frame) + 4 for frame in parts[::2]], extra)
            if accepted < total:
                if not accepted:
                    if new_topics:  # defined in the encoder, not yet in the segment
                        self._batches_since_topics = TOPIC_DEFS_EVERY_BATCHES
                    return Appended(first_seq, 0)
                del parts[2 * accepted :]
                size = sum(map(len, parts))
        try:
            self._write_frames(first_seq, accepted, parts, size, new_topics, records[0][4])
        except DiskFullError as full:
            self._disk_refused(full.error)
            if not self._hold_when_full:
                return Appended(first_seq, 0)
            return self._append_held(records[:accepted], first_seq)
        self._next_seq = first_seq + accepted
        if self._disk_state.phase is not _WRITABLE:
            self._report(self._disk_state.appended(), 0)
        if self._fsync_ms == 0:
            self.sync()
        if len(self._segments) > 1:
            self._collect_drained()
        BUFFER_BYTES.set(self._bytes)
        return Appended(first_seq, accepted)

    def _append_held(self, records: Sequence[Record], first_seq: int) -> Appended:
        # Their topics' definitions go at the start of the segment they are written back
        # to: known now, they count in `_append_extra` like those of encoded records.
        self._encoder.define_topics([record[0] for record in records])
        accepted = self._hold_in_memory(records, first_seq)
        if accepted:
            self._disk_state.held()
            BUFFER_HELD_IN_MEMORY.inc(accepted)
        BUFFER_BYTES.set(self.bytes)
        return Appended(first_seq, accepted)

    def _write_frames(
        self,
        first_seq: int,
        count: int,
        parts: list[bytes],
        size: int,
        new_topics: bytes,
        created_at_ms: int,
    ) -> None:
        """Append `count` encoded records, seqs from `first_seq`, to the active segment
        (a new one when it is full or there is none); all of them or none."""
        active = self._active
        if active is None or (
            active.size > SEGMENT_HEADER_BYTES and active.size + size > self._segment_bytes
        ):
            active = self._rotate(first_seq)
        self._batches_since_topics += 1
        if self._batches_since_topics >= TOPIC_DEFS_EVERY_BATCHES:
            parts.insert(0, self._encoder.all_topic_frames)
            self._batches_since_topics = 0
        elif new_topics:
            parts.insert(0, new_topics)
        data = b"".join(parts)
        try:
            self._write(data)
        except (DurableBufferError, DiskFullError):
            # The batch may have carried the only definition of a new topic.
            self._batches_since_topics = TOPIC_DEFS_EVERY_BATCHES
            raise
        # Seqs acked while held in memory were never written: a gap, acked from the start.
        gap = first_seq - active.first_seq - active.count
        if gap:
            active.acked.extend(b"\x01" * gap)
        active.size += len(data)
        active.count += gap + count
        active.acked.extend(bytes(count))
        active.add_age_sample(first_seq, created_at_ms)
        self._bytes += len(data)
        self._dirty = True

    def _write(self, data: bytes) -> None:
        fd = self._fd
        active = self._active
        assert active is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += self._files.write(fd, view[written:])
        except OSError as exc:
            # Take back a partial batch so the segment ends on a frame boundary: a torn
            # frame would be reported as lost data at the next start.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, active.size)
                os.lseek(fd, active.size, os.SEEK_SET)
            if exc.errno in DISK_FULL_ERRNOS:
                raise DiskFullError(exc) from exc
            raise DurableBufferError(
                f"cannot write {len(data)} bytes to buffer segment {active.path}: "
                f"{exc.strerror}; check the disk behind BUFFER_DIR"
            ) from exc

    def _rotate(self, first_seq: int) -> Segment:
        if self._active is not None:
            self._seal_active()
        path = self._dir / segment_name(first_seq)
        segment = Segment(path, first_seq, os.urandom(8), self._encoder.topic_names)
        try:
            self._fd = self._files.create(path)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise DiskFullError(exc) from exc
            raise DurableBufferError(
                f"cannot create buffer segment {path}: {exc.strerror}; "
                "check the disk behind BUFFER_DIR"
            ) from exc
        self._active = segment
        assert segment.segment_id is not None
        header = encode_segment_header(segment.segment_id)
        try:
            self._write(header)
        except (DurableBufferError, DiskFullError):
            # No half-made segment: the next append tries a fresh one.
            os.close(self._fd)
            self._fd = -1
            self._active = None
            path.unlink(missing_ok=True)
            raise
        self._segments.append(segment)
        self._first_seqs.append(segment.first_seq)
        segment.size = len(header)
        self._bytes += len(header)
        self._dir_dirty = True
        # A segment must define every topic it uses: start it with all known ones.
        self._batches_since_topics = TOPIC_DEFS_EVERY_BATCHES
        return segment

    def _seal_active(self) -> None:
        active = self._active
        assert active is not None
        if self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
        os.close(self._fd)
        self._fd = -1
        self._active = None
        if active.drained():
            self._delete_segment(active)

    def _append_extra(self) -> int:
        """What a write may add besides its records: a new segment's header and topic
        definitions. Held records reserve it too, for the segment they go back to."""
        return SEGMENT_HEADER_BYTES + len(self._encoder.all_topic_frames)

    def _reclaim(self) -> None:
        """Delete drained segments; a drained active one too (on demand only: rotating
        whenever the producer catches up would churn files)."""
        self._collect_drained()
        active = self._active
        if active is not None and active.drained():
            self._seal_active()

    def _collect_drained(self) -> None:
        """Delete sealed segments whose records are all acked; wake room waiters."""
        active = self._active
        for segment in [s for s in self._segments if s is not active and s.drained()]:
            self._delete_segment(segment)
        if active is not None and active.drained():
            self._room.set()

    # --- a full disk ----------------------------------------------------------------

    def _disk_refused(self, error: OSError) -> None:
        """The disk had no room for a write: the state says when to retry, and whether
        this starts an episode (warned once)."""
        if self._disk_state.refused(self._clock()) is not DiskReport.FULL:
            return
        BUFFER_DISK_FULL.set(1)
        log.warning(
            "buffer disk full",
            directory=str(self._dir),
            error=error.strerror,
            records_on_disk=self.records - len(self._in_memory.by_seq),
            action=(
                "new records are held in memory (within BUFFER_MAX_BYTES) and written "
                "to disk once it has room; free space in BUFFER_DIR"
                if self._hold_when_full
                else "spilled records stay in memory only; free space in BUFFER_DIR"
            ),
        )

    def _report(self, report: DiskReport | None, written_back: int) -> None:
        """Report the disk taking writes again (the disk-full report is `_disk_refused`'s)."""
        if report is DiskReport.WRITABLE_AGAIN:
            BUFFER_DISK_FULL.set(0)
            log.info(
                "buffer disk writable again",
                directory=str(self._dir),
                records_written_back=written_back,
            )

    def _retry_disk(self, now: float, *, within_cap: bool = True) -> None:
        """Write the held records back to disk if the state says it is time (every
        `DISK_RETRY_S`, at once when acks free a segment, and at close)."""
        active = self._active
        if active is not None and active.drained():
            self._seal_active()  # a deleted segment makes the retry due now
        if not self._disk_state.write_back_due(now):
            return
        written_back, refusal = self._write_back_held(within_cap=within_cap)
        if refusal is not None:
            # What was written by then stays written and is no longer held.
            self._disk_refused(refusal.error)
            return
        still_held = len(self._in_memory.by_seq)
        self._report(self._disk_state.wrote_back(still_held=still_held), written_back)
        if self._fsync_ms == 0:
            self.sync()

    def _write_extra(self, size: int, new_topics: bytes) -> int:
        """What `_write_frames` adds to a write of `size` bytes of records: a new
        segment's header and every topic definition, the periodic definitions, or
        those of its new topics."""
        active = self._active
        if active is None or (
            active.size > SEGMENT_HEADER_BYTES and active.size + size > self._segment_bytes
        ):
            return SEGMENT_HEADER_BYTES + len(self._encoder.all_topic_frames)
        if self._batches_since_topics + 1 >= TOPIC_DEFS_EVERY_BATCHES:
            return len(self._encoder.all_topic_frames)
        return len(new_topics)

    def _write_back_fits(self, extra: int, written: int) -> bool:
        return self._disk_state.write_back_fits(
            self._capped_bytes(),
            extra,
            self._max_bytes,
            written=written,
            records=self.records,
            held=len(self._in_memory.by_seq),
        )

    def _write_back_held(self, *, within_cap: bool = True) -> tuple[int, DiskFullError | None]:
        """Write the held records to a new segment, oldest first, in the runs the state
        plans, as long as the disk takes them and, `within_cap`, the cap does: how many,
        and the refusal that stopped it, if the disk did."""
        held = self._in_memory
        seqs = list(held.by_seq)
        if within_cap and not self._write_back_fits(
            SEGMENT_HEADER_BYTES + len(self._encoder.all_topic_frames), 0
        ):
            return 0, None
        written = 0
        try:
            # A new segment: one that `unacked()` had already read must not grow behind it.
            self._rotate(seqs[0])
            for start, stop in write_back_runs(seqs):
                first_seq = seqs[start]
                run = [held.by_seq[seq] for seq in seqs[start:stop]]
                parts, size, new_topics = self._encoder.encode(run, first_seq)
                extra = self._write_extra(size, new_topics)
                if within_cap and not self._write_back_fits(extra, written):
                    if new_topics:  # defined in the encoder, not yet in the segment
                        self._batches_since_topics = TOPIC_DEFS_EVERY_BATCHES
                    break
                self._write_frames(first_seq, len(run), parts, size, new_topics, run[0][4])
                for seq in seqs[start:stop]:
                    held.pop(seq)
                written += len(run)
        except DiskFullError as refusal:
            return written, refusal
        return written, None

    # --- acknowledging --------------------------------------------------------------

    def ack(self, seq: int) -> None:
        """Kafka acknowledged `seq`; any order, duplicates and unknown seqs ignored.

        The hot path is one byte store. Drained segments are deleted by the next
        `append_batch`/`maybe_sync`, or at once while a writer waits for room.
        """
        segment = self._ack_hint
        index = seq - segment.first_seq
        if 0 <= index < segment.count:
            segment.acked[index] = 1
        else:
            position = bisect_right(self._first_seqs, seq) - 1
            segment = self._segments[position] if position >= 0 else self._no_segment
            index = seq - segment.first_seq
            if position < 0 or index >= segment.count:
                self._ack_held(seq)
                return
            segment.acked[index] = 1
            self._ack_hint = segment
        if self._room_wanted:
            self._collect_drained()

    def _ack_held(self, seq: int) -> None:
        """An ack of no record on disk: one held in memory, if any (else unknown)."""
        held = self._in_memory
        if held.pop(seq) is None:
            return
        if not held.by_seq:
            self._disk_state.released_all()
        if self._room_wanted:
            self._room.set()

    def _delete_segment(self, segment: Segment) -> None:
        position = bisect_right(self._first_seqs, segment.first_seq) - 1
        if position >= 0 and self._segments[position] is segment:
            del self._segments[position]
            del self._first_seqs[position]
        if self._ack_hint is segment:
            self._ack_hint = self._no_segment
        self._bytes -= segment.size
        segment.remove_files()
        self._room.set()
        # Space came back: a full disk may take the held records now.
        self._disk_state.space_freed()

    # --- durability -----------------------------------------------------------------

    def sync(self) -> None:
        """Fsync the active segment (and the directory after a new segment) now."""
        if self._dirty and self._fd >= 0:
            os.fdatasync(self._fd)
        self._dirty = False
        if self._dir_dirty:
            dir_fd = os.open(self._dir, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._dir_dirty = False
        self._last_sync = self._clock()

    def maybe_sync(self, now: float | None = None) -> bool:
        """The periodic tick (`now`: the buffer's clock, `time.monotonic()` unless one
        was given): group-commit fsync at most
        every `fsync_ms`, ack checkpoint every `checkpoint_interval_ms`, gauges, and
        while the disk is full, trying it again.

        Returns whether it fsynced.
        """
        if not self._opened or self._closed:
            return False
        now = self._clock() if now is None else now
        self._collect_drained()
        if self._in_memory.by_seq:
            self._retry_disk(now)
        synced = False
        if (self._dirty or self._dir_dirty) and (now - self._last_sync) * 1000 >= self._fsync_ms:
            self.sync()
            synced = True
        if (now - self._last_checkpoint) * 1000 >= self._checkpoint_interval_ms:
            self.checkpoint()
            self._last_checkpoint = now
            self.update_metrics()
        return synced

    def checkpoint(self) -> None:
        """Persist the ack map of every segment whose acks changed since the last one.

        Written atomically (temp file + rename) but not fsynced: a checkpoint lost to a
        power cut only means more duplicates on replay. One that does not fit on a full
        disk is skipped the same way, and tried again next time.
        """
        for segment in self._segments:
            pending = segment.pending()
            state = (segment.count, pending)
            if state == segment.checkpointed or segment.segment_id is None:
                continue
            if pending < segment.count:
                data = encode_acks(segment.segment_id, segment.first_seq, segment.acked)
                temporary = segment.acks_path.with_suffix(".tmp")
                try:
                    self._files.write_file(temporary, data)
                except OSError as exc:
                    temporary.unlink(missing_ok=True)
                    if exc.errno not in DISK_FULL_ERRNOS:
                        raise
                    self._checkpoint_refused(exc)
                    return
                os.replace(temporary, segment.acks_path)
                self._checkpoint_skipped = False
            segment.checkpointed = state

    def _checkpoint_refused(self, error: OSError) -> None:
        if self._checkpoint_skipped:
            return
        self._checkpoint_skipped = True
        log.warning(
            "buffer checkpoint skipped",
            directory=str(self._dir),
            error=error.strerror,
            effect="after a crash, records acked since the last checkpoint are sent again",
            action="free space in BUFFER_DIR",
        )

    # --- reading back ---------------------------------------------------------------

    def replay(self) -> Iterator[tuple[int, BufferedRecord]]:
        """Every record that was unacked at `open()`, in append order, once.

        Records acked while replaying are skipped; each yielded record is counted in
        `twitch_ingestion_buffer_records_replayed_total`.
        """
        segments, self._to_replay = self._to_replay, []
        return self._read(segments, count_replayed=True)

    def unacked(self) -> Iterator[tuple[int, BufferedRecord]]:
        """Every record unacked now, in append order: read back from the segments, then
        those held in memory because the disk was full."""
        last = -1
        segments = list(self._segments)
        read: set[Segment] = set()
        while segments:
            read.update(segments)
            for seq, record in self._read(segments, count_replayed=False):
                if seq > last:
                    last = seq
                    yield seq, record
            # Held records written back to disk while this ran are in segments it has not
            # read; they come before what is still held. Such a segment may start at the
            # same seq as one it read (an empty one, deleted by the write-back): it is
            # told apart by identity, not by its first seq.
            segments = [segment for segment in self._segments if segment not in read]
        for seq, record in self._in_memory.items():
            if seq > last:
                yield seq, record

    def _read(
        self, segments: list[Segment], *, count_replayed: bool
    ) -> Iterator[tuple[int, BufferedRecord]]:
        for segment in segments:
            yielded = 0
            try:
                for item in read_unacked(segment, self.ack):
                    yielded += 1
                    yield item
            finally:
                if count_replayed and yielded:
                    self._replayed += yielded
                    BUFFER_REPLAYED.inc(yielded)

    # --- capacity and stats ---------------------------------------------------------

    def _capped_bytes(self) -> int:
        return self._bytes + self._in_memory.bytes

    def _holds_nothing(self) -> bool:
        return self.records == 0

    def oldest_unacked_age_s(self, now_ms: int) -> float:
        """Age of the oldest unacked record (to within a batch or 100 ms of records)."""
        for segment in self._segments:
            created_at_ms = segment.oldest_unacked_ms()
            if created_at_ms is not None:
                return max(0.0, (now_ms - created_at_ms) / 1000)
        return self._in_memory.oldest_age_s(now_ms)

    @property
    def records(self) -> int:
        """Records not yet acknowledged."""
        on_disk = sum(segment.pending() for segment in self._segments)
        return on_disk + len(self._in_memory.by_seq)

    @property
    def replayed(self) -> int:
        return self._replayed

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def disk_full(self) -> bool:
        """Whether the last write to disk was refused for lack of space."""
        return self._disk_state.full

    @property
    def held_in_memory(self) -> int:
        """Records held in memory because the disk was full, not yet acked."""
        return len(self._in_memory.by_seq)

    # Last: mypy resolves later annotations in the class to this property, not the type.
    @property
    def bytes(self) -> int:
        """Bytes of segment files on disk, acked records included until their segment
        goes, plus the memory held while the disk is full."""
        return self._bytes + self._in_memory.bytes
