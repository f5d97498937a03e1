"""`MemoryBuffer` (BUFFER_MODE=memory): records in memory until acked, on disk only when
spilled (the broker is unreachable), through a `DiskBuffer` in BUFFER_DIR."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Unpack

from twitch_ingestion.buffer.capped import CappedBuffer
from twitch_ingestion.buffer.config import BufferFullPolicy, BufferOptions
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.held import MEMORY_RECORD_OVERHEAD
from twitch_ingestion.buffer.protocol import Appended, BufferedRecord
from twitch_ingestion.buffer.segment_log import SEGMENT_SUFFIX, record_frame_sizes
from twitch_ingestion.metrics import BUFFER_BYTES, BUFFER_RECORDS
from twitch_ingestion.records import Record

__all__ = ["MemoryBuffer"]


class MemoryBuffer(CappedBuffer):
    """BUFFER_MODE=memory: records live in memory until acked; disk only when told.

    Guarantees: a record survives producer errors and broker outages (it stays here until
    acked, and `unacked()` hands it back for a retry) but **not a crash**, unless the
    caller called `spill()` after appending it. `spill()` copies every record not yet on
    disk to a `DiskBuffer` in the same directory; the service calls it when the broker is
    unreachable or the producer's queue is full (and again on each tick while that lasts).
    Spilled records keep living in memory too; their acks are passed on to the disk copy,
    and on the next start `replay()` yields the spilled records that were never acked.
    A spill the disk has no room for leaves the records in memory only, tried again on
    the next call.

    `BUFFER_MAX_BYTES` bounds the memory held (an estimate: each value's bytes plus a
    fixed per-record cost) and, separately, the spill directory.
    """

    def __init__(self, spill_dir: Path, **options: Unpack[BufferOptions]) -> None:
        super().__init__(spill_dir, **options)
        self._disk: DiskBuffer | None = None
        # Seqs below this came from the disk at open (replay); the rest are ours.
        self._disk_seqs_below = 0
        self._spilled: dict[int, int] = {}
        self._unspilled_from = 0
        self._last_metrics = self._clock()

    def open(self) -> None:
        """Open the spill directory only if an earlier run left records there."""
        self._check_not_open()
        if any(self._dir.glob(f"*{SEGMENT_SUFFIX}")):
            self._open_disk()
        self._opened = True

    def _open_disk(self) -> DiskBuffer:
        disk = self._disk
        if disk is None:
            disk = DiskBuffer(
                self._dir,
                max_bytes=self._max_bytes,
                segment_bytes=self._segment_bytes,
                fsync_ms=self._fsync_ms,
                # A spill that does not fit is not a drop: the records stay in memory.
                full_policy=BufferFullPolicy.BLOCK,
                checkpoint_interval_ms=self._checkpoint_interval_ms,
                files=self._files,
                framer=self._framer,
                clock=self._clock,
                wall_clock=self._wall_clock,
                hold_when_full=False,
            )
            disk.open()
            self._disk = disk
            if not self._opened:
                self._disk_seqs_below = self._next_seq = self._unspilled_from = disk.next_seq
        return disk

    def append_batch(self, records: Sequence[Record]) -> Appended:
        self._check_open()
        first_seq = self._next_seq
        accepted = self._hold_in_memory(records, first_seq)
        BUFFER_BYTES.set(self.bytes)
        BUFFER_RECORDS.set(self.records)
        return Appended(first_seq, accepted)

    def ack(self, seq: int) -> None:
        # `HeldRecords.pop` inlined: once per record on the hot path.
        in_memory = self._in_memory
        record = in_memory.by_seq.pop(seq, None)
        if record is None:
            if seq < self._disk_seqs_below and self._disk is not None:
                self._disk.ack(seq)
            return
        in_memory.bytes -= len(record[2]) + MEMORY_RECORD_OVERHEAD
        if self._spilled:
            disk_seq = self._spilled.pop(seq, None)
            if disk_seq is not None and self._disk is not None:
                self._disk.ack(disk_seq)
        if self._room_wanted:
            self._room.set()

    def spill(self) -> int:
        """Copy every in-memory record not yet on disk to the spill directory.

        Returns how many were written; those that did not fit the disk cap (or the disk)
        stay in memory only and are tried again on the next call.
        """
        self._check_open()
        records = self._in_memory.by_seq
        seqs = [
            seq
            for seq in range(self._unspilled_from, self._next_seq)
            if seq in records and _fits_a_frame(records[seq])
        ]
        if not seqs:
            self._unspilled_from = self._next_seq
            return 0
        disk = self._open_disk()
        appended = disk.append_batch([records[seq] for seq in seqs])
        spilled = self._spilled
        for offset, seq in enumerate(seqs[: appended.accepted]):
            spilled[seq] = appended.first_seq + offset
        if appended.accepted == len(seqs):
            self._unspilled_from = self._next_seq
        else:
            self._unspilled_from = seqs[appended.accepted]
        return appended.accepted

    def replay(self) -> Iterator[tuple[int, BufferedRecord]]:
        """Records spilled by an earlier run and never acked, in append order."""
        if self._disk is None:
            return iter(())
        return self._disk.replay()

    def unacked(self) -> Iterator[tuple[int, BufferedRecord]]:
        """Unacked records from an earlier run's spill, then those in memory, in order."""
        if self._disk is not None:
            below = self._disk_seqs_below
            for seq, record in self._disk.unacked():
                if seq < below:
                    yield seq, record
        yield from self._in_memory.items()

    def maybe_sync(self, now: float | None = None) -> bool:
        """The periodic tick: the spill's fsync and checkpoint, gauges once a second."""
        now = self._clock() if now is None else now
        synced = self._disk.maybe_sync(now) if self._disk is not None else False
        if (now - self._last_metrics) * 1000 >= self._checkpoint_interval_ms:
            self._last_metrics = now
            self.update_metrics()
        return synced

    def sync(self) -> None:
        if self._disk is not None:
            self._disk.sync()

    def close(self) -> None:
        if self._closed:
            return
        if self._disk is not None:
            self._disk.close()
        self._closed = True
        self.update_metrics()

    def abandon(self) -> None:
        """Drop everything without fsync or checkpoint: what a crash leaves.

        For crash tests; the service uses `close()`.
        """
        if self._disk is not None:
            self._disk.abandon()
        self._closed = True

    def _capped_bytes(self) -> int:
        return self._in_memory.bytes

    def _holds_nothing(self) -> bool:
        return not self._in_memory.by_seq

    def oldest_unacked_age_s(self, now_ms: int) -> float:
        age = self._in_memory.oldest_age_s(now_ms)
        if self._disk is not None:
            age = max(age, self._disk.oldest_unacked_age_s(now_ms))
        return age

    @property
    def records(self) -> int:
        """Unacked records: in memory, plus an earlier run's spill not yet acked."""
        on_disk_only = 0
        if self._disk is not None:
            on_disk_only = self._disk.records - len(self._spilled)
        return len(self._in_memory.by_seq) + on_disk_only

    @property
    def replayed(self) -> int:
        return self._disk.replayed if self._disk is not None else 0

    @property
    def spilled(self) -> int:
        """Records of this run that are in memory and on disk, not yet acked."""
        return len(self._spilled)

    # Last: mypy resolves later annotations in the class to this property, not the type.
    @property
    def bytes(self) -> int:
        """Bytes held in memory plus the spill directory's segment files."""
        return self._in_memory.bytes + (self._disk.bytes if self._disk is not None else 0)


def _fits_a_frame(record: Record) -> bool:
    """Whether a record can be written to disk at all (Kafka would refuse one that
    cannot): a `MemoryBuffer` keeps such a record in memory only, never spills it."""
    try:
        record_frame_sizes((record,))
    except ValueError:
        return False
    return True
