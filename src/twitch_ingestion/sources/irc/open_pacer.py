"""Pacing of new Twitch sockets across the pool: at most one per interval.

Twitch limits logins per account as well as JOINs; a pool of 20 slots starting (or all
reconnecting after a network blip) at once must not open 20 sockets in the same
millisecond. Each opener *reserves* the next free turn (pure arithmetic, no lock: the
reservation happens without an await in between) and then sleeps until it.
"""

from __future__ import annotations

import asyncio

__all__ = ["OpenPacer"]


class OpenPacer:
    """At most one new socket per `interval_s` across the pool."""

    __slots__ = ("_interval_s", "_next_at")

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = float("-inf")

    def reserve(self, now: float) -> float:
        """Take the next turn; return how long to wait for it (0 when it is now)."""
        turn = max(now, self._next_at)
        self._next_at = turn + self._interval_s
        return turn - now

    async def wait_turn(self) -> None:
        delay = self.reserve(asyncio.get_running_loop().time())
        if delay > 0:
            await asyncio.sleep(delay)
