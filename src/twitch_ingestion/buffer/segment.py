"""One segment file of a `DiskBuffer` and the ack state of its records."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from pathlib import Path
from typing import Final

from twitch_ingestion.buffer.segment_log import ACKS_SUFFIX

__all__ = ["Segment"]

# One (seq, created_at_ms) sample per this many ms of records: enough for an age gauge.
_AGE_SAMPLE_MS: Final = 100


class Segment:
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

    def remove_files(self) -> None:
        """Delete the segment file and its ack checkpoint; it is never read again."""
        self.deleted = True
        # The checkpoint first: a crash in between replays the segment, never loses it.
        self.acks_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
