"""Counters for data-quality problems the parsers repair or skip instead of failing.

The parsers never log (they are on the hot path); they bump plain integer attributes,
which costs a few nanoseconds and only on the rare bad line. The service exports them
as metrics, e.g. by reading `DEFAULT_PARSE_STATS` from a Prometheus collector.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PARSE_STATS", "ParseStats"]


class ParseStats:
    """Running totals since start-up (monotonic counters)."""

    __slots__ = ("emote_ranges_skipped", "emote_tags_rejected", "timestamps_defaulted")

    def __init__(self) -> None:
        self.emote_ranges_skipped = 0
        """Emote ranges left out because their tag did not fit the text (Twitch bug)."""
        self.emote_tags_rejected = 0
        """Records whose whole `emotes` tag was distrusted (one count per record)."""
        self.timestamps_defaulted = 0
        """Records whose `tmi-sent-ts` was missing or invalid, so `received_at` was used."""

    def as_dict(self) -> dict[str, int]:
        """The counters by name, for metrics export and tests."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"ParseStats({self.as_dict()})"


DEFAULT_PARSE_STATS = ParseStats()
"""Process-wide counters used when a caller does not pass its own `ParseStats`."""
