"""Records kept in memory with their seqs until acked: all of a `MemoryBuffer`'s, and a
`DiskBuffer`'s while its disk is full."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from twitch_ingestion.buffer.protocol import BufferedRecord
from twitch_ingestion.buffer.segment_log import record_frame_sizes
from twitch_ingestion.records import Record

__all__ = ["MEMORY_RECORD_OVERHEAD", "HeldFrames", "HeldRecords"]

# What MemoryBuffer counts per record besides its value: the tuple, dict slot, ints, a
# channel-name key and the odd header. An estimate, so the hot path only calls len().
MEMORY_RECORD_OVERHEAD: Final = 160


class HeldRecords:
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
        overhead = MEMORY_RECORD_OVERHEAD
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


class HeldFrames(HeldRecords):
    """A `DiskBuffer`'s records held while the disk is full, counted as the frames they
    will be once written back (key, headers and framing included), so that the cap
    bounds the segment files after the write-back; a record too large for a frame is
    refused when appended, as on disk, not when written back."""

    __slots__ = ()

    def sizes(self, records: Sequence[Record]) -> list[int]:
        return record_frame_sizes(records)
