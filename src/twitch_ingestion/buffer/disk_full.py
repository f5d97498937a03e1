"""A `DiskBuffer`'s disk-full decisions, pure: events and the time in, decisions out.

Like `kafka/delivery.py`'s `DeliveryState` and h11's `_state.py`: no clock is read and no
file is touched here. The disk buffer (`disk.py`) does the writes and tells this state
what happened, with the time (`time.monotonic()` seconds, from the buffer's clock); this
state says where records go, when to try the disk again, what to report, and how much
of the held records go back under the cap. Every transition is in `TRANSITIONS`; any
other raises `IllegalDiskTransitionError` (the shell has lost track of its records).

The phases (what the shell sees of them: where an append goes, whether the tick writes
back, `twitch_ingestion_buffer_disk_full`):

=============  ==================================  ============  ==========  =========
phase          meaning                             appends go    write back  disk_full
=============  ==================================  ============  ==========  =========
WRITABLE       the disk took the last write,       to disk       no          0
               nothing is held
FULL           the disk refused the last write,    to disk (a    no          1
               nothing is held (a spill, or every  new try)
               held record was acked)
FULL_HOLDING   the disk refused the last write,    to memory,    when due    1
               records are held in memory          behind the
                                                   held ones
HOLDING        the disk took the last write-back,  to memory     every tick  0
               the cap stopped it: records are
               still held
=============  ==================================  ============  ==========  =========

"When due": `DISK_RETRY_S` after the last refusal, or at once after a segment was
deleted (space came back), or at close.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from types import MappingProxyType
from typing import Final

__all__ = [
    "DISK_RETRY_S",
    "TRANSITIONS",
    "WRITE_BACK_RECORDS",
    "DiskEvent",
    "DiskFullState",
    "DiskPhase",
    "DiskReport",
    "IllegalDiskTransitionError",
    "write_back_runs",
]

# While the disk is full, how often to try it again besides right after a segment is
# deleted. A failed try costs one refused write and a truncate.
DISK_RETRY_S: Final = 1.0
# Held records go back to disk in writes of at most this many, each like an append.
WRITE_BACK_RECORDS: Final = 1000


class DiskPhase(Enum):
    WRITABLE = "writable"
    FULL = "full"
    FULL_HOLDING = "full_holding"
    HOLDING = "holding"


class DiskEvent(Enum):
    REFUSED = "refused"
    """A write (an append, a new segment, a write-back) was refused: ENOSPC or EDQUOT."""
    APPENDED = "appended"
    """An append went to disk."""
    HELD = "held"
    """Records were held in memory instead of written."""
    RELEASED_ALL = "released_all"
    """The last held record was acked (it never reached the disk)."""
    WROTE_BACK_ALL = "wrote_back_all"
    """A write-back ended with every held record on disk."""
    WROTE_BACK_SOME = "wrote_back_some"
    """A write-back ended, not refused, with records still held (the cap stopped it)."""


class DiskReport(Enum):
    """What the shell reports on a transition (a log line and the disk-full gauge)."""

    FULL = "full"
    """A new episode: warn once, gauge 1."""
    WRITABLE_AGAIN = "writable_again"
    """The disk took a write after refusing one: info with the records written back,
    gauge 0."""


_W, _F, _FH, _H = DiskPhase.WRITABLE, DiskPhase.FULL, DiskPhase.FULL_HOLDING, DiskPhase.HOLDING

TRANSITIONS: Final[Mapping[tuple[DiskPhase, DiskEvent], DiskPhase]] = MappingProxyType(
    {
        (_W, DiskEvent.REFUSED): _F,
        (_F, DiskEvent.REFUSED): _F,
        (_FH, DiskEvent.REFUSED): _FH,
        (_H, DiskEvent.REFUSED): _FH,
        (_W, DiskEvent.APPENDED): _W,
        (_F, DiskEvent.APPENDED): _W,
        (_F, DiskEvent.HELD): _FH,
        (_FH, DiskEvent.HELD): _FH,
        (_H, DiskEvent.HELD): _H,
        (_FH, DiskEvent.RELEASED_ALL): _F,
        (_H, DiskEvent.RELEASED_ALL): _W,
        (_FH, DiskEvent.WROTE_BACK_ALL): _W,
        (_H, DiskEvent.WROTE_BACK_ALL): _W,
        (_FH, DiskEvent.WROTE_BACK_SOME): _H,
        (_H, DiskEvent.WROTE_BACK_SOME): _H,
    }
)
"""Every allowed (phase, event) and the phase it leads to. Not listed, hence illegal:
records held or released or written back while none is held (WRITABLE, FULL), and an
append reaching the disk while records are held (it would overtake them)."""

_FULL_PHASES: Final = frozenset({_F, _FH})
_HOLDING_PHASES: Final = frozenset({_FH, _H})


class IllegalDiskTransitionError(Exception):
    """An event the current phase does not allow: the disk buffer lost track of its
    held records. A bug, never an operating condition."""

    def __init__(self, phase: DiskPhase, event: DiskEvent) -> None:
        super().__init__(f"disk-full state: {event.value} is not allowed in {phase.value}")
        self.phase = phase
        self.event = event


class DiskFullState:
    """The phase of one `DiskBuffer`'s disk and when to try it again.

    The shell calls one method per thing that happened; each returns what to report, if
    anything. `retry_at` is in the shell's clock (seconds, monotonic).
    """

    __slots__ = ("phase", "retry_at", "retry_s")

    def __init__(self, retry_s: float = DISK_RETRY_S) -> None:
        self.phase = DiskPhase.WRITABLE
        self.retry_s = retry_s
        # When to write held records back. 0: at the next tick (nothing refused yet, or
        # space came back).
        self.retry_at = 0.0

    def _move(self, event: DiskEvent) -> DiskPhase:
        before = self.phase
        after = TRANSITIONS.get((before, event))
        if after is None:
            raise IllegalDiskTransitionError(before, event)
        self.phase = after
        return before

    # --- what the shell reads ---------------------------------------------------------

    @property
    def full(self) -> bool:
        """Whether the last write to disk was refused (`buffer.disk_full`, the gauge)."""
        return self.phase in _FULL_PHASES

    @property
    def holding(self) -> bool:
        """Whether records are held in memory: appends queue behind them."""
        return self.phase in _HOLDING_PHASES

    def write_back_due(self, now: float) -> bool:
        """Whether the tick at `now` writes held records back."""
        return self.phase in _HOLDING_PHASES and now >= self.retry_at

    # --- what happened ----------------------------------------------------------------

    def refused(self, now: float) -> DiskReport | None:
        """The disk refused a write at `now`: try again `retry_s` later; a new episode
        is reported (once)."""
        self.retry_at = now + self.retry_s
        before = self._move(DiskEvent.REFUSED)
        return DiskReport.FULL if before not in _FULL_PHASES else None

    def appended(self) -> DiskReport | None:
        """An append went to disk."""
        before = self._move(DiskEvent.APPENDED)
        return DiskReport.WRITABLE_AGAIN if before is _F else None

    def held(self) -> None:
        """Records were held in memory (at least one) instead of written."""
        self._move(DiskEvent.HELD)

    def released_all(self) -> None:
        """The last held record was acked before it went back to disk."""
        self._move(DiskEvent.RELEASED_ALL)

    def wrote_back(self, *, still_held: int) -> DiskReport | None:
        """A write-back ended without a refusal, `still_held` records left in memory
        (the cap stopped it). Reported when the disk had refused the last write."""
        event = DiskEvent.WROTE_BACK_SOME if still_held else DiskEvent.WROTE_BACK_ALL
        before = self._move(event)
        return DiskReport.WRITABLE_AGAIN if before is _FH else None

    def space_freed(self) -> None:
        """A segment was deleted: a full disk may take the held records now."""
        self.retry_at = 0.0

    def closing(self) -> None:
        """The buffer closes: write held records back now, whatever the interval."""
        self.retry_at = 0.0

    # --- how much goes back -------------------------------------------------------------

    @staticmethod
    def write_back_fits(
        capped_bytes: int, extra: int, max_bytes: int, *, written: int, records: int, held: int
    ) -> bool:
        """Whether writing held records back, adding `extra` bytes of segment header and
        topic definitions, keeps the files under `max_bytes`. The held records already
        count (in `capped_bytes`) as the frames they become, and reserved a segment's
        header and topic definitions; the one record an empty buffer took past the cap
        (`records == held == 1`) goes back whatever its size, as its first write."""
        if capped_bytes + extra <= max_bytes:
            return True
        return not written and records == 1 == held


def write_back_runs(
    seqs: Sequence[int], limit: int = WRITE_BACK_RECORDS
) -> Iterator[tuple[int, int]]:
    """Held seqs (ascending) as `(start, stop)` index ranges of consecutive seqs, each at
    most `limit` long: one write each, framed like an append. Acks punch holes in the
    held seqs; a run never spans one, since a frame's seq is its first seq plus its
    index."""
    start = 0
    while start < len(seqs):
        first_seq = seqs[start]
        stop = start + 1
        while stop < len(seqs) and stop - start < limit and seqs[stop] == first_seq + stop - start:
            stop += 1
        yield start, stop
        start = stop
