"""Fenced hand-off: a channel that moves between instances reaches Kafka once.

Without a fence, a moved channel is read by both instances for the overlap (the old
owner keeps it until the new one has joined, `handover.py`) and both produce it: no gap,
but repeats. With it:

1. the new owner, from its JOIN on, **holds** what it reads of the channel (a
   `HoldWindow`, bounded) instead of producing it;
2. the old owner, once the new one reports the channel joined, stops producing it and
   publishes its **final mark** (`FinalMark`): the identity (`records/identity.py`) of
   the last record of that channel it handed to its sink, which its buffer will get to
   Kafka;
3. the new owner produces only what it holds *after* the mark (`lines_after_mark`),
   then goes on normally.

What happens when things go wrong, decided here and nowhere else:

* **The mark never comes** (the old owner died, or could not see the new one's report):
  after `MARK_WAIT_S` everything held is produced — nothing lost, but what the old owner
  also produced is there twice (outcome `NO_MARK`, logged as possible repeats).
* **The mark is not in the window**: if the window never overflowed, the old owner's
  last line was said before the new owner joined (a quiet channel), so everything held
  comes after it (`MARK_BEFORE_WINDOW`, exact). If it overflowed, the lines between the
  mark and the oldest held one are gone (`POSSIBLE_GAP`, logged).
* **The old owner produced nothing since it released the channel**: the mark says so
  (identity None) and everything held is new (`NOTHING_PRODUCED`, exact).
* **No other instance read the channel** (a channel added, a fleet starting): the new
  owner cannot know that at once — another instance's report may still be on its way —
  so it holds for `NO_OWNER_GRACE_S`, and produces everything held if no report names
  another reader by then (`NO_OTHER_READER`, exact).

Pure: identities, clock readings and marks in; what to produce out. The IRC source's
`ChannelGate` holds the lines; `fleet/assignment.py` carries the marks.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import msgspec

__all__ = [
    "HOLD_MAX_LINES",
    "MARK_KEY_PREFIX",
    "MARK_WAIT_S",
    "NO_OWNER_GRACE_S",
    "ChannelFence",
    "FinalMark",
    "HoldWindow",
    "Release",
    "ReleaseOutcome",
    "decode_mark",
    "encode_mark",
    "lines_after_mark",
]

HOLD_MAX_LINES: Final = 20_000
"""Lines held per channel: ~3 minutes of a channel at 100 lines/s, Twitch's busiest;
a hand-over takes a second or two. ~1 KB a line: 20 MB per channel at worst."""
MARK_WAIT_S: Final = 30.0
"""How long a new owner waits for the mark of an instance it knows reads the channel.
The mark normally comes 1-2 s after the JOIN (the next report, the old owner's answer)."""
NO_OWNER_GRACE_S: Final = 1.5
"""How long a new owner holds a channel no other instance is known to read, in case
that instance's report (sent when the group revoked the channel) is still on its way."""
MARK_KEY_PREFIX: Final = "mark/"
"""Marks share the compacted instances topic, keyed `mark/<channel>` (an INSTANCE_ID
cannot contain `/`): one more record per moved channel, read by every instance."""


class FinalMark(msgspec.Struct, frozen=True, kw_only=True):
    """The old owner's last word on a channel it gave away."""

    channel: str
    from_instance: str
    to_instance: str
    """The instance whose report completed the hand-over; "" for whoever holds it (the
    hand-over timed out, or the old owner is stopping)."""
    identity: str | None
    """Identity of the last record of `channel` the old owner handed its sink; None if it
    handed none since it released the channel."""
    at_ms: int


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(FinalMark)


def encode_mark(mark: FinalMark) -> bytes:
    return _ENCODER.encode(mark)


def decode_mark(value: bytes) -> FinalMark | None:
    try:
        return _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class ReleaseOutcome(enum.Enum):
    AFTER_MARK = "after_mark"
    NOTHING_PRODUCED = "nothing_produced"
    MARK_BEFORE_WINDOW = "mark_before_window"
    POSSIBLE_GAP = "possible_gap"
    NO_MARK = "no_mark"
    NO_OTHER_READER = "no_other_reader"

    @property
    def exact(self) -> bool:
        """Nothing lost and nothing repeated, as far as the mark tells."""
        return self not in (ReleaseOutcome.POSSIBLE_GAP, ReleaseOutcome.NO_MARK)


@dataclass(frozen=True, slots=True)
class Release:
    """Which held lines to produce: those from `start` on."""

    start: int
    outcome: ReleaseOutcome


def lines_after_mark(
    identities: Sequence[str | None], mark: str | None, *, overflowed: bool
) -> Release:
    """Where production resumes in a held window whose lines have `identities`, after
    the old owner's mark (`mark` None: it produced nothing since the release)."""
    if mark is None:
        return Release(0, ReleaseOutcome.NOTHING_PRODUCED)
    for index in range(len(identities) - 1, -1, -1):
        if identities[index] == mark:
            return Release(index + 1, ReleaseOutcome.AFTER_MARK)
    if overflowed:
        return Release(0, ReleaseOutcome.POSSIBLE_GAP)
    return Release(0, ReleaseOutcome.MARK_BEFORE_WINDOW)


T = TypeVar("T")


class HoldWindow(Generic[T]):
    """What a new owner read of one channel while waiting for the old owner's mark.

    The wait starts with the first line held, not when the channel is handed to the
    source: a new owner may queue thousands of JOINs at 2 per second, and a channel
    nobody has joined yet is read by its old owner alone.
    """

    __slots__ = ("_identities", "_items", "expects_mark", "first_at", "overflowed", "wait_s")

    def __init__(self, *, expects_mark: bool, max_lines: int) -> None:
        self._identities: deque[str | None] = deque(maxlen=max_lines)
        self._items: deque[T] = deque(maxlen=max_lines)
        self.expects_mark = expects_mark
        """Another instance is known to be handing the channel over: wait for its mark."""
        self.wait_s = MARK_WAIT_S if expects_mark else NO_OWNER_GRACE_S
        self.first_at: float | None = None
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, identity: str | None, item: T, now: float) -> None:
        if self.first_at is None:
            self.first_at = now
        if len(self._items) == self._items.maxlen:
            self.overflowed = True
        self._identities.append(identity)
        self._items.append(item)

    def expect_mark(self) -> None:
        """A report says another instance is handing the channel over: wait for its mark."""
        self.expects_mark = True
        self.wait_s = MARK_WAIT_S

    def expired(self, now: float) -> bool:
        return self.first_at is not None and now >= self.first_at + self.wait_s

    def release(self, mark: FinalMark | None) -> tuple[list[T], Release]:
        """The held items to produce, now that `mark` came (None: waited long enough)."""
        if mark is not None:
            release = lines_after_mark(
                list(self._identities), mark.identity, overflowed=self.overflowed
            )
        elif self.expects_mark:
            release = Release(0, ReleaseOutcome.NO_MARK)
        else:
            release = Release(0, ReleaseOutcome.NO_OTHER_READER)
        items = list(self._items)[release.start :]
        self._items.clear()
        self._identities.clear()
        return items, release


class ChannelFence(Protocol):
    """What the fleet asks of a source that can fence its channels (the IRC source's
    `ChannelGate`): every call names channels; time is the loop's clock."""

    def track(self, channels: Iterable[str]) -> None:
        """These channels were given away but are still produced: remember, for each,
        the identity of the last record handed to the sink from now on."""

    def produce(self, channels: Iterable[str]) -> None:
        """Produce these channels normally again (taken back before the hand-over ended)."""

    def hold(self, channels: Iterable[str], *, read_elsewhere: set[str]) -> None:
        """Hold what is read of these channels from now on until their mark, or until
        `MARK_WAIT_S` (those in `read_elsewhere`), else `NO_OWNER_GRACE_S`, after the
        first line held."""

    def holding(self) -> list[str]:
        """Channels held now."""

    def expect_mark(self, channels: Iterable[str]) -> None:
        """Another instance reads these: wait for its mark, if held."""

    def stop(self, channels: Iterable[str]) -> dict[str, str | None]:
        """Stop producing these channels (drop what is read of them from now on): the
        mark of each that was being produced. A held one first produces all it holds."""

    def release(self, channel: str, mark: FinalMark) -> Release | None:
        """The mark came: produce what is held after it (None: not held)."""

    def expire(self, now: float) -> dict[str, Release]:
        """Held channels whose deadline passed: produce what they hold."""

    def forget(self, channels: Iterable[str]) -> None:
        """Removed from the fleet: no mode any more (what is held is produced first)."""
