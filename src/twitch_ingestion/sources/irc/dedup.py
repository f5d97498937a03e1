"""De-duplication of the lines two connections both read during a RECONNECT hand-over.

For up to `twitch_reconnect_overlap_s` a slot reads its channels on the old and the new
socket at once, so each chat line can arrive twice. `RecentIds` keeps the keys of what
was delivered lately and lets only unseen lines through. It exists only around a
hand-over: outside one the hot path does not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from twitch_ingestion.metrics import DUPLICATE_MESSAGES_DROPPED
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = ["DEDUP_CAPACITY", "RecentIds"]

# Ids remembered per slot during a hand-over: a busy channel group sees ~10k lines/s,
# so this covers ~10 s of overlap at that rate, at ~100 bytes an id.
DEDUP_CAPACITY = 100_000


class RecentIds:
    """Keys of lines delivered recently by one slot, for de-duplication during a hand-over.

    Insertion-ordered dict as a bounded FIFO: O(1) lookup, oldest evicted first.
    `expires_at` (monotonic seconds, set once the hand-over is complete) is when the
    filter is no longer worth its cost; `expired(now)` says so.
    """

    __slots__ = ("_capacity", "_seen", "expires_at")

    def __init__(self, capacity: int = DEDUP_CAPACITY) -> None:
        self._capacity = capacity
        self._seen: dict[str, None] = {}
        self.expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def fresh(self, messages: Sequence[IrcMessage]) -> list[IrcMessage]:
        """The lines of `messages` not seen before, in order; counts the dropped ones."""
        seen = self._seen
        kept: list[IrcMessage] = []
        for message in messages:
            # Lines without an id (ROOMSTATE, CLEARCHAT…) carry their own timestamp, so
            # the raw text identifies the same event seen on both sockets.
            key = message.get_tag("id") or message.raw
            if key in seen:
                continue
            seen[key] = None
            kept.append(message)
        overflow = len(seen) - self._capacity
        if overflow > 0:
            for key in list(islice(seen, overflow)):
                del seen[key]
        dropped = len(messages) - len(kept)
        if dropped:
            DUPLICATE_MESSAGES_DROPPED.inc(dropped)
        return kept
