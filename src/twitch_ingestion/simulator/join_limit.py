"""Twitch's per-account JOIN limit, as the server enforces it: a sliding window."""

from __future__ import annotations

from collections import deque

__all__ = ["JoinRateLimiter"]


class JoinRateLimiter:
    """At most `limit` channel targets per `window_s` per account, across its connections.

    Twitch counts each channel of `JOIN #a,#b` separately and per user, not per socket,
    so a client cannot dodge the limit by opening more connections.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._attempts: dict[str, deque[float]] = {}

    def try_acquire(self, account: str, now: float) -> bool:
        """Record one join attempt at `now`; False when it exceeds the limit."""
        attempts = self._attempts.setdefault(account, deque())
        horizon = now - self.window_s
        while attempts and attempts[0] <= horizon:
            attempts.popleft()
        if len(attempts) >= self.limit:
            return False
        attempts.append(now)
        return True

    def in_window(self, account: str, now: float) -> int:
        """Join attempts by `account` still inside the window at `now`."""
        horizon = now - self.window_s
        return sum(1 for t in self._attempts.get(account, ()) if t > horizon)
