"""The JOIN rate limit of one Twitch account, shared by all its connections.

Twitch allows an ordinary account 20 join attempts per 10 seconds (verified bots more),
counted per account, not per connection, and it does not say when its bucket refills.
So this is a *sliding window*: a JOIN may go out only if fewer than `limit` went out in
the `window_s` before it — then no window, wherever Twitch starts it, holds more than
`limit` (the approach pajbot's "tmi-rate-limits" notes recommend).

The window is widened by `margin_s` because the timestamp is taken when we hand the JOIN
to the socket while Twitch counts when it reads it: two JOINs on two connections can
arrive closer together than they were sent.

`next_allowed`/`available`/`take` are pure (the clock is passed in); `acquire` and
`wait_turn` are the asyncio wrapper the connection pool awaits. Waiters are served first
come, first served, so one connection cannot starve the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["JoinRateLimiter"]

# 10% of the window, at most a second: costs 1 s per 10 s window against Twitch and is
# larger than network jitter or the scheduling delays of a loaded event loop.
_DEFAULT_MARGIN_FRACTION = 0.1
_MAX_DEFAULT_MARGIN_S = 1.0


class JoinRateLimiter:
    """At most `limit` JOINs in any `window_s` (+ `margin_s`) seconds."""

    def __init__(
        self,
        limit: int = 20,
        window_s: float = 10.0,
        *,
        margin_s: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("need limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        if margin_s is None:
            margin_s = min(window_s * _DEFAULT_MARGIN_FRACTION, _MAX_DEFAULT_MARGIN_S)
        self.margin_s = margin_s
        self._span = window_s + margin_s
        self._sent: deque[float] = deque()
        self._clock = clock
        self._lock: asyncio.Lock | None = None
        self._waiting = 0

    # --- pure core -----------------------------------------------------------------

    def _expire(self, now: float) -> None:
        horizon = now - self._span
        sent = self._sent
        while sent and sent[0] <= horizon:
            sent.popleft()

    def available(self, now: float) -> int:
        """How many JOINs may go out at `now`."""
        self._expire(now)
        return self.limit - len(self._sent)

    def next_allowed(self, now: float, count: int = 1) -> float:
        """The earliest time ≥ `now` at which `count` JOINs may go out together."""
        count = min(max(count, 1), self.limit)
        self._expire(now)
        excess = len(self._sent) + count - self.limit
        if excess <= 0:
            return now
        # The `excess` oldest JOINs must leave the window first.
        return max(now, self._sent[excess - 1] + self._span)

    def take(self, now: float, count: int = 1) -> None:
        """Record `count` JOINs sent at `now`; raises if that would break the limit."""
        if count > self.available(now):
            raise RuntimeError(f"{count} JOINs would exceed {self.limit} per {self.window_s:g} s")
        self._sent.extend([now] * count)

    @property
    def queue_length(self) -> int:
        """JOINs waiting in `acquire`/`wait_turn` for their turn."""
        return self._waiting

    # --- asyncio wrapper -------------------------------------------------------------

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    async def acquire(self, max_count: int) -> int:
        """Wait until at least one JOIN may go out, take up to `max_count`, return how many.

        Lets a connection batch `JOIN #a,#b,…` with whatever the window has room for.
        """
        if max_count < 1:
            return 0
        if self._lock is None:
            self._lock = asyncio.Lock()
        self._waiting += max_count
        try:
            async with self._lock:  # asyncio.Lock wakes waiters in FIFO order
                while True:
                    now = self._now()
                    ready_at = self.next_allowed(now, 1)
                    if ready_at <= now:
                        granted = min(max_count, self.available(now))
                        self.take(now, granted)
                        return granted
                    await asyncio.sleep(ready_at - now)
        finally:
            self._waiting -= max_count

    async def wait_turn(self, count: int = 1) -> None:
        """Wait until `count` JOINs may go out together and take them."""
        count = min(max(count, 1), self.limit)
        if self._lock is None:
            self._lock = asyncio.Lock()
        self._waiting += count
        try:
            async with self._lock:
                while True:
                    now = self._now()
                    ready_at = self.next_allowed(now, count)
                    if ready_at <= now:
                        self.take(now, count)
                        return
                    await asyncio.sleep(ready_at - now)
        finally:
            self._waiting -= count
