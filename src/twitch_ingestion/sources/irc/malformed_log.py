"""Counting and logging malformed Twitch lines without turning garbage into log floods."""

from __future__ import annotations

import structlog

from twitch_ingestion.metrics import MALFORMED_LINES

__all__ = ["MalformedLineLog"]

log = structlog.get_logger("twitch_ingestion.sources.irc.pool")

# The first line of each reason is logged with a sample, then at most one summary per
# this many seconds (a flood of garbage must not become a flood of logs).
_SUMMARY_INTERVAL_S = 10.0
_SAMPLE_BYTES = 300


class MalformedLineLog:
    """Counts malformed lines per reason; logs the first of each, then periodic summaries.

    The time is passed in (`now`, monotonic seconds), so the throttling is testable.
    """

    def __init__(self, summary_interval_s: float = _SUMMARY_INTERVAL_S) -> None:
        self._summary_interval_s = summary_interval_s
        self._seen_reasons: set[str] = set()
        self._unreported: dict[str, int] = {}
        self._last_summary = 0.0

    def record(self, raw: bytes, reason: str, now: float) -> None:
        MALFORMED_LINES.labels(reason=reason).inc()
        if reason not in self._seen_reasons:
            self._seen_reasons.add(reason)
            self._last_summary = now
            log.warning(
                "malformed twitch line dead-lettered",
                reason=reason,
                sample=raw[:_SAMPLE_BYTES].decode("utf-8", "backslashreplace"),
            )
            return
        self._unreported[reason] = self._unreported.get(reason, 0) + 1
        if now - self._last_summary >= self._summary_interval_s:
            log.warning("malformed twitch lines since last report", counts=self._unreported)
            self._unreported = {}
            self._last_summary = now
