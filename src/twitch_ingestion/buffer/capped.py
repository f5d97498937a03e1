"""What `DiskBuffer` and `MemoryBuffer` share: seqs, the byte cap and its full policy,
waiting for room under `block`, records held in memory, and the gauges."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

from twitch_ingestion.buffer.config import BufferConfig, BufferFullPolicy
from twitch_ingestion.buffer.errors import DurableBufferError
from twitch_ingestion.buffer.files import SegmentFiles
from twitch_ingestion.buffer.held import HeldRecords
from twitch_ingestion.buffer.protocol import Appended, OnChunk
from twitch_ingestion.metrics import BUFFER_BYTES, BUFFER_DROPPED, BUFFER_OLDEST_AGE, BUFFER_RECORDS
from twitch_ingestion.records import Record

if TYPE_CHECKING:
    from twitch_ingestion.native import RecordFramer

__all__ = ["CappedBuffer"]


class CappedBuffer:
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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
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
        self._clock = clock
        self._wall_clock = wall_clock
        self._in_memory = HeldRecords()
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
        now_ms = int(self._wall_clock() * 1000) if now_ms is None else now_ms
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
