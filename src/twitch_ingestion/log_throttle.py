"""Logging that stays readable under a flood: first occurrence, then periodic summaries.

A broker outage or a burst of malformed lines can produce thousands of identical
errors per second; logging each would bury everything else and cost CPU on the hot
path. Each distinct key logs once, then at most once per interval with a count of
what was suppressed in between.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["ThrottledLogger"]


class ThrottledLogger:
    """Wraps a structlog logger; `warning(event, key, **fields)` is throttled per key."""

    def __init__(self, logger: Any, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._next_allowed: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, event: str, key: str, **fields: Any) -> None:
        self._log("warning", event, key, fields)

    def error(self, event: str, key: str, **fields: Any) -> None:
        self._log("error", event, key, fields)

    def _log(self, level: str, event: str, key: str, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        throttle_key = f"{event}\x00{key}"
        if now < self._next_allowed.get(throttle_key, 0.0):
            self._suppressed[throttle_key] = self._suppressed.get(throttle_key, 0) + 1
            return
        self._next_allowed[throttle_key] = now + self._interval_s
        suppressed = self._suppressed.pop(throttle_key, 0)
        if suppressed:
            fields["suppressed_since_last"] = suppressed
        getattr(self._logger, level)(event, **fields)
