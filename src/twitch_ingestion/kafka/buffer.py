"""The durable buffer between parsing and the Kafka producer: at-least-once from the socket.

Twitch chat cannot be replayed, so a record is written here *before* it is handed to the
producer and stays until Kafka acknowledges it. The service's loop is::

    appended = buffer.append_batch(records)             # seqs first_seq .. + accepted - 1
    for i, record in enumerate(records[: appended.accepted]):
        producer.produce(..., on_delivery=lambda err, msg, seq=appended.first_seq + i: ...)
    # delivery report without error -> buffer.ack(seq)
    # every few ms: buffer.maybe_sync(time.monotonic())

and at startup, before reading Twitch, it produces everything `replay()` yields.

`DiskBuffer` (BUFFER_MODE=disk) is a segment log like Vector's disk buffer or Filebeat's
disk queue; the format is described in `segment_log`. Its guarantees, each an invariant
of the model-based test (`tests/unit/test_buffer_model.py`, which drives this class
through random appends, acks, rewinds, crashes and full disks and checks them after
every step):

* **Process crash** (kill -9, OOM, exception), before or after fsync: every record
  `append_batch` accepted and wrote is replayed by the next `replay()`, in append order.
  `append_batch` returns only after one `os.write` of the whole batch, and the kernel's
  page cache outlives the process. Only records held in memory because the disk was full
  (below) are lost.
* **Power loss / kernel crash**: records appended in the last `BUFFER_FSYNC_MS` before the
  loss may be lost; older ones are on disk. This is group commit: `maybe_sync()` fsyncs the
  active segment at most every `fsync_ms`, so 50,000 records/s cost ~20 fsyncs/s, not
  50,000. `BUFFER_FSYNC_MS=0` fsyncs every batch before `append_batch` returns (no loss
  window, at the disk's fsync latency per batch). A segment is fsynced when it is rotated
  out, and the directory after a segment is created. The fsync runs on the calling
  (event loop) thread and takes as long as the disk needs to flush `fsync_ms` of data.
* **Duplicates, never loss**: acks are checkpointed (one `.acks` file per segment, a map of
  every acked record) at most every `checkpoint_interval_ms` and on `close()`. After a
  crash, records acked since the last checkpoint are replayed again; after a clean
  `close()` none is. Kafka consumers must tolerate duplicates anyway (the record's own id
  deduplicates). A sealed segment whose records are all acked is deleted by the next
  `append_batch` or `maybe_sync` (the active one when it is rotated out, or on
  `close()`), and a deleted segment is never replayed: once everything is acked, at most
  the active segment is left, and nothing after `close()`.
* **Rewind**: `unacked()` yields, in append order and each once, every record that was
  unacked when it began and is still unacked when it gets there, wherever the record
  is meanwhile (on disk, held in memory, or written back from memory to a new segment
  while it runs); never one acked before it began. Records appended while it runs may be
  yielded too, after the older ones.
* **Damage**: every frame carries its length and a CRC32. On `open()` a damaged or torn
  tail is cut off (logged, counted in
  `twitch_ingestion_buffer_records_dropped_total{reason="corrupt_tail"}`);
  damage in the middle of a segment is skipped by resynchronising on the next intact
  frame (counted as `reason="corrupt_frame"`, the lost records known from the seq gap),
  and the segment is rewritten without the damaged bytes, so either is counted once, not
  again at the next start (unless the disk had no room for the rewrite). Only the
  records in the damaged bytes are lost. The buffer never refuses to start because of
  damage, and `open()`/`replay()` never raise on it.
* **Disk full** (ENOSPC, EDQUOT): a write the disk refuses is taken back whole (no torn
  frame), and that batch and the ones after it are held in memory, with their seqs, and
  counted against `BUFFER_MAX_BYTES` exactly as the frames they will become (the full
  policy applies; a record too large for a frame is refused at append, as on disk);
  they count in `twitch_ingestion_buffer_records_held_in_memory_total` and
  `twitch_ingestion_buffer_disk_full` is 1, with one warning per
  episode. Every `_DISK_RETRY_S` on the `maybe_sync` tick, and at once when acks free a
  segment, they are written back to disk, oldest first, as far as the disk and the cap
  take them, and appends go to disk again once none is held.
  Held records are acked, produced again by `unacked()` (after everything on disk, so
  append order holds) and bound by the cap like the rest, but a crash loses them, as it
  would a `MemoryBuffer`'s; `close()` writes back every one the disk takes (past the cap
  if it must, by the new segments' headers and topic definitions) and counts those it
  still cannot write as `reason="disk_full"` drops.
* **Order**: `replay()` and `unacked()` yield in append order, which is per-channel order.
  The caller must produce in that order; the idempotent producer keeps it per partition.
* **Capacity**: `BUFFER_MAX_BYTES` bounds the bytes of all segment files plus the frames of
  records held in memory (`bytes`); acked records count until their segment is deleted.
  Every append counts, besides its frames, what it may add: a new segment's header and
  the topic definitions. Space comes back a segment at a time, so a segment is at most a
  quarter of the cap. Policy `drop_newest` drops the records of a batch that do not fit
  (`reason="buffer_full"`); policy `block` accepts what fits and the caller awaits
  `wait_for_room()` (or uses `append_all()`), which counts exactly what `append_batch`
  counts, so `append_all` always either appends or awaits an ack. An empty buffer always
  takes one record, so an oversized record cannot wedge `block` (that one record may take
  the files past the cap).

`MemoryBuffer` (BUFFER_MODE=memory) keeps records in memory until acked and guarantees
nothing across a crash, except for records the caller told it to `spill()` to disk.

Neither class is thread-safe: the service calls them from the event loop thread only,
including acks (confluent-kafka runs delivery callbacks inside `poll()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import time
from array import array
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple, Protocol, Self, TypedDict, Unpack

import structlog

from twitch_ingestion.config import BufferFullPolicy, BufferMode
from twitch_ingestion.kafka.segment_log import (
    ACKS_SUFFIX,
    CORRUPT,
    FRAME_MAGIC_BYTES,
    KIND_RECORD,
    KIND_TOPIC,
    SEGMENT_HEADER_BYTES,
    SEGMENT_SUFFIX,
    TAIL,
    TOPIC_DEFS_EVERY_BATCHES,
    FrameEncoder,
    decode_acks,
    decode_record,
    decode_topic,
    encode_acks,
    encode_segment_header,
    iter_frames,
    parse_segment_header,
    record_frame_sizes,
    record_seq_and_time,
    segment_name,
)
from twitch_ingestion.metrics import (
    BUFFER_BYTES,
    BUFFER_DISK_FULL,
    BUFFER_DROPPED,
    BUFFER_HELD_IN_MEMORY,
    BUFFER_OLDEST_AGE,
    BUFFER_RECORDS,
    BUFFER_REPLAYED,
)

# Re-exported: the record type is the sources' and the sink's (`records.py`).
from twitch_ingestion.native import RecordFramer
from twitch_ingestion.records import Headers, Record

__all__ = [
    "Appended",
    "Buffer",
    "BufferConfig",
    "BufferDirectoryError",
    "BufferLockedError",
    "BufferOptions",
    "BufferedRecord",
    "DiskBuffer",
    "DurableBufferError",
    "Headers",
    "MemoryBuffer",
    "Record",
    "SegmentFiles",
    "buffer_from_config",
]

log = structlog.get_logger(__name__)


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


# A segment is at most this fraction of BUFFER_MAX_BYTES, so that acked space comes back
# in steps smaller than the whole cap (a 64 MiB segment under a 1 MiB cap would free
# nothing until the buffer had drained completely).
_SEGMENTS_PER_CAP: Final = 4
_MIN_SEGMENT_BYTES: Final = 1024
# One (seq, created_at_ms) sample per this many ms of records: enough for an age gauge.
_AGE_SAMPLE_MS: Final = 100
# What MemoryBuffer counts per record besides its value: the tuple, dict slot, ints, a
# channel-name key and the odd header. An estimate, so the hot path only calls len().
_MEMORY_RECORD_OVERHEAD: Final = 160
_LOCK_FILE: Final = ".lock"
# No room on the filesystem, or in this user's quota: hold records in memory, not fail.
_DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
# While the disk is full, how often to try it again besides right after a segment is
# deleted. A failed try costs one refused write and a truncate.
_DISK_RETRY_S: Final = 1.0
# Held records go back to disk in writes of at most this many, each like an append.
_WRITE_BACK_RECORDS: Final = 1000


class BufferedRecord(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None
    created_at_ms: int


class Appended(NamedTuple):
    """Result of `append_batch`: records `[0, accepted)` got seqs `first_seq + i`."""

    first_seq: int
    accepted: int


# `append_all`'s hand-over: (the records of one append, what the buffer took of them).
OnChunk = Callable[[Sequence[Record], Appended], Awaitable[None]]


class DurableBufferError(Exception):
    """The buffer cannot do what was asked (closed, not opened, a write failed)."""


class BufferDirectoryError(DurableBufferError):
    """BUFFER_DIR cannot be used (not creatable, not writable, not a directory, locked)."""


class BufferLockedError(BufferDirectoryError):
    """Another process holds the buffer directory."""


class Buffer(Protocol):
    """What the Kafka sink (and the benchmarks) use of a buffer; `DiskBuffer` and
    `MemoryBuffer` satisfy it."""

    def open(self) -> None: ...

    def append_batch(self, records: Sequence[Record]) -> Appended: ...

    async def append_all(
        self, records: Sequence[Record], on_chunk: OnChunk | None = None
    ) -> list[Appended]: ...

    def ack(self, seq: int) -> None: ...

    def replay(self) -> Iterator[tuple[int, BufferedRecord]]: ...

    def unacked(self) -> Iterator[tuple[int, BufferedRecord]]: ...

    def maybe_sync(self, now: float | None = None) -> bool: ...

    def spill(self) -> int:
        """Make what is only in memory survive a crash (Kafka is down); returns how
        many records were written. 0 for a buffer that writes to disk by itself."""
        ...

    def close(self) -> None: ...

    def update_metrics(self, now_ms: int | None = None) -> None: ...

    @property
    def records(self) -> int: ...


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


class _DiskFullError(Exception):
    """The filesystem had no room for a write (ENOSPC or EDQUOT); nothing was kept of it."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror)
        self.error = error


def _directory_error(directory: Path, error: OSError) -> BufferDirectoryError:
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
    elif error.errno in _DISK_FULL_ERRNOS:
        fix = "free space on that disk or point BUFFER_DIR at another one"
    else:
        fix = "check the path or point BUFFER_DIR at another directory"
    return BufferDirectoryError(
        f"BUFFER_DIR {directory} cannot be used: {error.strerror} ({failed}); {fix}"
    )


class _HeldRecords:
    """Records with their seqs, kept in memory in append order until acked.

    `MemoryBuffer` keeps every record here; `DiskBuffer` only those it could not write
    because the disk was full. `bytes` estimates the memory they take.
    """

    __slots__ = ("by_seq", "bytes")

    def __init__(self) -> None:
        self.by_seq: dict[int, Record] = {}
        self.bytes = 0

    def sizes(self, records: Sequence[Record]) -> list[int]:
        """What each record counts against the cap; ValueError for one never storable."""
        overhead = _MEMORY_RECORD_OVERHEAD
        return [len(record[2]) + overhead for record in records]

    def add(self, first_seq: int, records: Sequence[Record], size: int) -> None:
        self.by_seq.update(zip(range(first_seq, first_seq + len(records)), records, strict=True))
        self.bytes += size

    def pop(self, seq: int) -> Record | None:
        record = self.by_seq.pop(seq, None)
        if record is not None:
            self.bytes -= self.sizes((record,))[0]
        return record

    def items(self) -> Iterator[tuple[int, BufferedRecord]]:
        """The records held when called, in append order."""
        for seq, record in list(self.by_seq.items()):
            yield seq, BufferedRecord._make(record)

    def oldest_age_s(self, now_ms: int) -> float:
        for record in self.by_seq.values():
            return max(0.0, (now_ms - record[4]) / 1000)
        return 0.0


class _HeldFrames(_HeldRecords):
    """A `DiskBuffer`'s records held while the disk is full, counted as the frames they
    will be once written back (key, headers and framing included), so that the cap
    bounds the segment files after the write-back; a record too large for a frame is
    refused when appended, as on disk, not when written back."""

    __slots__ = ()

    def sizes(self, records: Sequence[Record]) -> list[int]:
        return record_frame_sizes(records)


class BufferOptions(TypedDict, total=False):
    """The options both buffers take besides their directory (defaults: `_CappedBuffer`)."""

    max_bytes: int
    segment_bytes: int
    fsync_ms: int
    full_policy: BufferFullPolicy
    checkpoint_interval_ms: int
    files: SegmentFiles
    framer: RecordFramer | None


class _CappedBuffer:
    """What `DiskBuffer` and `MemoryBuffer` share: the BUFFER_* options, seqs, the byte
    cap with its full policy, waiting for room, records held in memory, and gauges.

    A subclass says which bytes count against the cap (`_capped_bytes`) and whether it
    holds nothing (`_holds_nothing`, so that an oversized record cannot wedge `block`),
    and stores the records.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1024 * 1024 * 1024,
        segment_bytes: int = 64 * 1024 * 1024,
        fsync_ms: int = 50,
        full_policy: BufferFullPolicy = BufferFullPolicy.BLOCK,
        checkpoint_interval_ms: int = 1000,
        files: SegmentFiles | None = None,
        framer: RecordFramer | None = None,
    ) -> None:
        self._dir = Path(directory)
        self._framer = framer
        """The compiled record framer (HOT_PATH), or None: `FrameEncoder`'s Python."""
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._fsync_ms = fsync_ms
        self._full_policy = full_policy
        self._checkpoint_interval_ms = checkpoint_interval_ms
        self._files = SegmentFiles() if files is None else files
        self._in_memory = _HeldRecords()
        self._next_seq = 0
        self._room = asyncio.Event()
        self._room_wanted = False
        self._rejected_bytes = 0
        self._opened = False
        self._closed = False

    @classmethod
    def from_config(cls, config: BufferConfig) -> Self:
        """Built from its config (both buffers take the same options)."""
        return cls(
            config.directory,
            max_bytes=config.max_bytes,
            segment_bytes=config.segment_bytes,
            fsync_ms=config.fsync_ms,
            full_policy=config.full_policy,
            framer=config.framer,
        )

    # --- what a subclass provides -----------------------------------------------------

    def append_batch(self, records: Sequence[Record]) -> Appended:
        raise NotImplementedError

    def _capped_bytes(self) -> int:
        """The bytes BUFFER_MAX_BYTES bounds."""
        raise NotImplementedError

    def _holds_nothing(self) -> bool:
        raise NotImplementedError

    def _append_extra(self) -> int:
        """Bytes an append may add besides its records' (a DiskBuffer's new segment)."""
        return 0

    def _reclaim(self) -> None:
        """Free what can be freed now; called before fitting records and waiting."""

    def oldest_unacked_age_s(self, now_ms: int) -> float:
        raise NotImplementedError

    @property
    def records(self) -> int:
        raise NotImplementedError

    # --- lifecycle checks -------------------------------------------------------------

    def _check_not_open(self) -> None:
        if self._opened:
            raise DurableBufferError(f"buffer {self._dir} is already open")

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise DurableBufferError(f"buffer {self._dir} is not open")

    # --- capacity -------------------------------------------------------------------

    def has_room(self, nbytes: int) -> bool:
        """Whether an append of `nbytes` (as this buffer counts them) would be accepted now.

        Counts what `append_batch` counts besides the records (`_append_extra`): were it
        to say yes to an append that `append_batch` then refuses, `append_all` would
        loop without ever awaiting, and starve the acks that would make room.
        """
        return (
            self._capped_bytes() + nbytes + self._append_extra() <= self._max_bytes
            or self._holds_nothing()
        )

    def _fit(self, sizes: Sequence[int], extra: int = 0) -> int:
        """How many leading records of these sizes fit under the cap (the slow path, only
        near the cap). The rest are dropped and counted under `drop_newest`; under
        `block` the first one's size is what `append_all` waits for room for.
        """
        self._reclaim()
        room = self._max_bytes - self._capped_bytes() - extra
        used = 0
        accepted = 0
        for size in sizes:
            used += size
            if used > room:
                break
            accepted += 1
        if accepted == 0 and self._holds_nothing():
            accepted = 1
        refused = len(sizes) - accepted
        if refused:
            if self._full_policy is BufferFullPolicy.DROP_NEWEST:
                BUFFER_DROPPED.labels(reason="buffer_full").inc(refused)
            else:
                self._rejected_bytes = sizes[accepted]
        return accepted

    def _blocks(self) -> bool:
        return self._full_policy is BufferFullPolicy.BLOCK

    def _hold_in_memory(self, records: Sequence[Record], first_seq: int) -> int:
        """Keep what fits of `records` in memory with seqs from `first_seq`; how many."""
        sizes = self._in_memory.sizes(records)
        size = sum(sizes)
        accepted = len(records)
        extra = self._append_extra()
        if self._capped_bytes() + size + extra > self._max_bytes:
            accepted = self._fit(sizes, extra)
            records = records[:accepted]
            size = sum(sizes[:accepted])
        self._in_memory.add(first_seq, records, size)
        self._next_seq = first_seq + accepted
        return accepted

    async def wait_for_room(self, nbytes: int) -> None:
        """Return once an append of `nbytes` (encoded) would be accepted.

        Acks set the event from the event loop thread; no threads are involved.
        """
        while not self.has_room(nbytes):
            self._reclaim()
            if self.has_room(nbytes):
                return
            self._room.clear()
            self._room_wanted = True
            try:
                await self._room.wait()
            finally:
                self._room_wanted = False

    async def append_all(
        self, records: Sequence[Record], on_chunk: OnChunk | None = None
    ) -> list[Appended]:
        """Append every record, awaiting room under `block`; one `Appended` per chunk.

        `on_chunk(chunk, appended)` is awaited for each chunk as soon as it is appended
        (its first `appended.accepted` records), before waiting for room: the caller
        hands the chunk on to Kafka there. Producing only after `append_all` returned
        would deadlock a batch larger than the free room, since room comes back only
        from acknowledgements of records already produced.

        Under `drop_newest` this is `append_batch` (what does not fit is dropped).
        """
        chunks: list[Appended] = []
        while True:
            appended = self.append_batch(records)
            if appended.accepted:
                chunks.append(appended)
                if on_chunk is not None:
                    await on_chunk(records, appended)
            if appended.accepted == len(records) or not self._blocks():
                return chunks
            records = records[appended.accepted :]
            await self.wait_for_room(self._rejected_bytes)

    def spill(self) -> int:
        """Copy records held only in memory to disk; how many (none here: see MemoryBuffer)."""
        return 0

    # --- stats ----------------------------------------------------------------------

    def update_metrics(self, now_ms: int | None = None) -> None:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        BUFFER_BYTES.set(self.bytes)
        BUFFER_RECORDS.set(self.records)
        BUFFER_OLDEST_AGE.set(self.oldest_unacked_age_s(now_ms))

    @property
    def next_seq(self) -> int:
        return self._next_seq

    # Last: mypy resolves later annotations in the class to this property, not the type.
    @property
    def bytes(self) -> int:
        raise NotImplementedError


class _Segment:
    """One segment file and the ack state of its records (index = seq - first_seq)."""

    __slots__ = (
        "acked",
        "checkpointed",
        "count",
        "deleted",
        "first_seq",
        "lowest_unacked",
        "path",
        "sample_ms",
        "sample_seqs",
        "segment_id",
        "size",
        "topics",
    )

    def __init__(
        self, path: Path, first_seq: int, segment_id: bytes | None, topics: dict[int, str]
    ) -> None:
        self.path = path
        self.first_seq = first_seq
        self.segment_id = segment_id
        self.topics = topics
        self.acked = bytearray()
        self.count = 0
        self.size = 0
        self.deleted = False
        # Every record below this index is acked: scans for unacked records start here,
        # so they cost the in-flight window, not the segment.
        self.lowest_unacked = 0
        self.sample_seqs = array("q")
        self.sample_ms = array("q")
        # (count, pending) when the ack checkpoint was last written: unchanged -> skip.
        self.checkpointed = (0, 0)

    def add_age_sample(self, seq: int, created_at_ms: int) -> None:
        sample_ms = self.sample_ms
        if not sample_ms or created_at_ms >= sample_ms[-1] + _AGE_SAMPLE_MS:
            sample_ms.append(created_at_ms)
            self.sample_seqs.append(seq)

    def drained(self) -> bool:
        """Whether every record is acked (advances `lowest_unacked`)."""
        index = self.acked.find(0, self.lowest_unacked)
        if index < 0:
            self.lowest_unacked = self.count
            return True
        self.lowest_unacked = index
        return False

    def pending(self) -> int:
        """Records not yet acked."""
        if self.drained():
            return 0
        return self.acked.count(0, self.lowest_unacked)

    def oldest_unacked_ms(self) -> int | None:
        """created_at_ms of (a sample at or before) the oldest unacked record."""
        if self.drained() or not self.sample_ms:
            return None
        sample = bisect_right(self.sample_seqs, self.first_seq + self.lowest_unacked) - 1
        return self.sample_ms[max(sample, 0)]

    @property
    def acks_path(self) -> Path:
        return self.path.with_suffix(ACKS_SUFFIX)


class DiskBuffer(_CappedBuffer):
    """The durable segment log; see the module docstring for what it guarantees.

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
        self._in_memory = _HeldFrames()
        self._encoder = FrameEncoder(self._framer)
        self._segments: list[_Segment] = []
        self._first_seqs: list[int] = []
        self._active: _Segment | None = None
        self._fd = -1
        self._lock_fd = -1
        self._bytes = 0
        self._batches_since_topics = 0
        self._dirty = False
        self._dir_dirty = False
        self._last_sync = time.monotonic()
        self._last_checkpoint = self._last_sync
        self._to_replay: list[_Segment] = []
        self._replayed = 0
        # A disk-full episode: from the first write the disk refused to the next one it
        # took. Records appended meanwhile are held in memory (`_in_memory`), all of them
        # after every record on disk; the disk is tried again at `_disk_retry_at`.
        self._disk_full = False
        self._disk_retry_at = 0.0
        self._checkpoint_skipped = False
        # The segment the last ack hit: acks mostly land in the same one.
        self._no_segment = _Segment(self._dir, -1, None, {})
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
            self._lock()
            self._recover()
        except OSError as exc:
            self._unlock()
            raise _directory_error(self._dir, exc) from None
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
            self._disk_retry_at = 0.0
            # Past the cap if need be (by the headers and topic definitions of the
            # segments it takes): a few bytes over is better than records lost.
            self._retry_disk(time.monotonic(), within_cap=False)
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

    def _lock(self) -> None:
        fd = os.open(self._dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BufferLockedError(
                    f"BUFFER_DIR {self._dir} is in use by another process (pid {holder}); "
                    "give each instance its own BUFFER_DIR"
                ) from None
            raise
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- recovery -------------------------------------------------------------------

    def _recover(self) -> None:
        """Load what earlier runs left: segments to replay, their acks; clear leftovers."""
        for leftover in self._dir.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        files = sorted(
            (int(path.stem), path)
            for path in self._dir.glob(f"*{SEGMENT_SUFFIX}")
            if path.stem.isdigit()
        )
        next_seq = 0
        for position, (first_seq, path) in enumerate(files):
            following = files[position + 1][0] if position + 1 < len(files) else None
            segment, seq_bound = self._load_segment(path, first_seq, following)
            next_seq = max(next_seq, seq_bound)
            if segment is not None:
                self._segments.append(segment)
                self._first_seqs.append(segment.first_seq)
        live = {segment.acks_path for segment in self._segments}
        for acks in self._dir.glob(f"*{ACKS_SUFFIX}"):
            if acks not in live:
                acks.unlink(missing_ok=True)
        self._next_seq = next_seq
        self._bytes = sum(segment.size for segment in self._segments)
        self._to_replay = list(self._segments)

    def _load_segment(
        self, path: Path, first_seq: int, following: int | None
    ) -> tuple[_Segment | None, int]:
        """Validate one segment; return it (None if nothing is left to deliver) and the
        lowest seq a new segment may use."""
        data = path.read_bytes()
        segment = _Segment(path, first_seq, parse_segment_header(data), {})
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
            self._remove_files(segment)
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
            self._remove_files(segment)
            return None, seq_bound
        return segment, seq_bound

    @staticmethod
    def _apply_checkpoint(segment: _Segment, acked: bytearray) -> None:
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
            if exc.errno not in _DISK_FULL_ERRNOS:
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
        except _DiskFullError as full:
            self._disk_refused(full.error, time.monotonic())
            if not self._hold_when_full:
                return Appended(first_seq, 0)
            return self._append_held(records[:accepted], first_seq)
        self._next_seq = first_seq + accepted
        if self._disk_full:
            self._disk_has_room_again(0)
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
        except (DurableBufferError, _DiskFullError):
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
            if exc.errno in _DISK_FULL_ERRNOS:
                raise _DiskFullError(exc) from exc
            raise DurableBufferError(
                f"cannot write {len(data)} bytes to buffer segment {active.path}: "
                f"{exc.strerror}; check the disk behind BUFFER_DIR"
            ) from exc

    def _rotate(self, first_seq: int) -> _Segment:
        if self._active is not None:
            self._seal_active()
        path = self._dir / segment_name(first_seq)
        segment = _Segment(path, first_seq, os.urandom(8), self._encoder.topic_names)
        try:
            self._fd = self._files.create(path)
        except OSError as exc:
            if exc.errno in _DISK_FULL_ERRNOS:
                raise _DiskFullError(exc) from exc
            raise DurableBufferError(
                f"cannot create buffer segment {path}: {exc.strerror}; "
                "check the disk behind BUFFER_DIR"
            ) from exc
        self._active = segment
        assert segment.segment_id is not None
        header = encode_segment_header(segment.segment_id)
        try:
            self._write(header)
        except (DurableBufferError, _DiskFullError):
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

    def _disk_refused(self, error: OSError, now: float) -> None:
        """The disk had no room for a write: warn once per episode, retry in a while."""
        self._disk_retry_at = now + _DISK_RETRY_S
        if self._disk_full:
            return
        self._disk_full = True
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

    def _disk_has_room_again(self, written_back: int) -> None:
        self._disk_full = False
        BUFFER_DISK_FULL.set(0)
        log.info(
            "buffer disk writable again",
            directory=str(self._dir),
            records_written_back=written_back,
        )

    def _retry_disk(self, now: float, *, within_cap: bool = True) -> None:
        """Write the held records back to disk if it has room (tried every
        `_DISK_RETRY_S`, and at once when acks free a segment)."""
        active = self._active
        if active is not None and active.drained():
            self._seal_active()  # a deleted segment sets `_disk_retry_at` to now
        if now < self._disk_retry_at:
            return
        written_back = 0
        try:
            written_back = self._write_back_held(within_cap=within_cap)
        except _DiskFullError as full:
            self._disk_refused(full.error, now)
            return
        if self._disk_full:
            self._disk_has_room_again(written_back)
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
        """Whether writing held records back, adding `extra` bytes of headers and topic
        definitions, keeps the files under the cap. The held records already count as
        the frames they become, and reserved a segment's header and topic definitions;
        the one record an empty buffer took past the cap goes back whatever its size."""
        if self._capped_bytes() + extra <= self._max_bytes:
            return True
        return not written and self.records == 1 == len(self._in_memory.by_seq)

    def _write_back_held(self, *, within_cap: bool = True) -> int:
        """Write the held records to a new segment, oldest first, as long as the disk
        takes them and, `within_cap`, the cap does; how many. Raises `_DiskFullError`
        once the disk does not (what was written by then stays written and is no
        longer held)."""
        held = self._in_memory
        seqs = list(held.by_seq)
        if within_cap and not self._write_back_fits(
            SEGMENT_HEADER_BYTES + len(self._encoder.all_topic_frames), 0
        ):
            return 0
        # A new segment: one that `unacked()` had already read must not grow behind it.
        self._rotate(seqs[0])
        written = 0
        start = 0
        while start < len(seqs):
            first_seq = seqs[start]
            stop = start + 1
            while (
                stop < len(seqs)
                and stop - start < _WRITE_BACK_RECORDS
                and seqs[stop] == first_seq + stop - start
            ):
                stop += 1
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
            start = stop
        return written

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
                if self._in_memory.pop(seq) is not None and self._room_wanted:
                    self._room.set()
                return
            segment.acked[index] = 1
            self._ack_hint = segment
        if self._room_wanted:
            self._collect_drained()

    def _delete_segment(self, segment: _Segment) -> None:
        position = bisect_right(self._first_seqs, segment.first_seq) - 1
        if position >= 0 and self._segments[position] is segment:
            del self._segments[position]
            del self._first_seqs[position]
        if self._ack_hint is segment:
            self._ack_hint = self._no_segment
        self._bytes -= segment.size
        self._remove_files(segment)
        self._room.set()
        # Space came back: a full disk may take the held records now.
        self._disk_retry_at = 0.0

    @staticmethod
    def _remove_files(segment: _Segment) -> None:
        segment.deleted = True
        # The checkpoint first: a crash in between replays the segment, never loses it.
        segment.acks_path.unlink(missing_ok=True)
        segment.path.unlink(missing_ok=True)

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
        self._last_sync = time.monotonic()

    def maybe_sync(self, now: float | None = None) -> bool:
        """The periodic tick (`now` is `time.monotonic()`): group-commit fsync at most
        every `fsync_ms`, ack checkpoint every `checkpoint_interval_ms`, gauges, and
        while the disk is full, trying it again.

        Returns whether it fsynced.
        """
        if not self._opened or self._closed:
            return False
        now = time.monotonic() if now is None else now
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
                    if exc.errno not in _DISK_FULL_ERRNOS:
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
        read: set[_Segment] = set()
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
        self, segments: list[_Segment], *, count_replayed: bool
    ) -> Iterator[tuple[int, BufferedRecord]]:
        for segment in segments:
            if segment.deleted:
                continue
            try:
                data = segment.path.read_bytes()
            except FileNotFoundError:
                continue
            yielded = 0
            last = segment.first_seq - 1
            try:
                for kind, offset, end in iter_frames(data):
                    if kind != KIND_RECORD:
                        continue
                    seq, _created_at_ms = record_seq_and_time(data, offset)
                    if seq <= last:  # out of place, as `open()` found
                        continue
                    last = seq
                    index = seq - segment.first_seq
                    if not 0 <= index < segment.count or segment.acked[index]:
                        continue
                    record = self._decode(segment, data, offset, end)
                    if record is None:
                        continue
                    yielded += 1
                    yield seq, record
            finally:
                if count_replayed and yielded:
                    self._replayed += yielded
                    BUFFER_REPLAYED.inc(yielded)

    def _decode(
        self, segment: _Segment, data: bytes, offset: int, end: int
    ) -> BufferedRecord | None:
        try:
            decoded = decode_record(data, offset, end)
        except ValueError as exc:
            problem = str(exc)
            seq, _created_at_ms = record_seq_and_time(data, offset)
        else:
            seq = decoded.seq
            topic = segment.topics.get(decoded.topic_id)
            if topic is not None:
                return BufferedRecord(
                    topic, decoded.key, decoded.value, decoded.headers, decoded.created_at_ms
                )
            problem = f"no intact definition of topic id {decoded.topic_id}"
        log.warning("buffer record unreadable", segment=segment.path.name, seq=seq, problem=problem)
        BUFFER_DROPPED.labels(reason="corrupt_frame").inc()
        self.ack(seq)
        return None

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
        return self._disk_full

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


class MemoryBuffer(_CappedBuffer):
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
        self._last_metrics = time.monotonic()

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
        # `_HeldRecords.pop` inlined: once per record on the hot path.
        in_memory = self._in_memory
        record = in_memory.by_seq.pop(seq, None)
        if record is None:
            if seq < self._disk_seqs_below and self._disk is not None:
                self._disk.ack(seq)
            return
        in_memory.bytes -= len(record[2]) + _MEMORY_RECORD_OVERHEAD
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
        now = time.monotonic() if now is None else now
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


def buffer_from_config(config: BufferConfig) -> DiskBuffer | MemoryBuffer:
    """The buffer BUFFER_MODE asks for, not yet opened."""
    if config.mode is BufferMode.MEMORY:
        return MemoryBuffer.from_config(config)
    return DiskBuffer.from_config(config)
