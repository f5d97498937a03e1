"""Reconnect delays: exponential, capped, jittered, reset after a healthy connection.

Pure arithmetic (no sleeping, no clock): a source's asyncio shell (an IRC slot, the
EventSub client) asks for the next delay and sleeps it. The schedule is the seed's —
1 s, 2 s, 4 s, 8 s … capped at 60 s.

Jitter is ±20% around each step, not "full jitter" (uniform 0..step): the point here is
only to keep a fleet of instances that lost Twitch at the same moment from reconnecting
in lockstep, and ±20% does that while keeping each delay close to the documented
schedule (operators reading "retrying in 8 s" get 6.4 to 9.6 s, never 0.1 s).
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["DEFAULT_JITTER", "ExponentialBackoff"]

DEFAULT_JITTER = 0.2


class ExponentialBackoff:
    """Delays base·2ⁿ capped at `max_s`, each scaled by a factor in [1-jitter, 1+jitter].

    Two counters, because "how long to wait" and "when to give up" reset differently:

    * `attempts` is the position in the schedule: delays handed out since `reset()`. Only
      a connection that stayed up for `reset_after_s` resets it, so a server that accepts
      and drops us at once still gets growing delays.
    * `failures` counts connection attempts that failed in a row (refused, timed out,
      no login); any successful login clears it. With `max_attempts` set, `exhausted`
      turns true once that many have failed in a row.
    """

    __slots__ = (
        "_random",
        "attempts",
        "base_s",
        "failures",
        "jitter",
        "max_attempts",
        "max_s",
        "reset_after_s",
    )

    def __init__(
        self,
        base_s: float = 1.0,
        max_s: float = 60.0,
        *,
        jitter: float = DEFAULT_JITTER,
        reset_after_s: float = 60.0,
        max_attempts: int | None = None,
        random_uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base_s <= 0 or max_s < base_s:
            raise ValueError("need 0 < base_s <= max_s")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")
        self.base_s = base_s
        self.max_s = max_s
        self.jitter = jitter
        self.reset_after_s = reset_after_s
        self.max_attempts = max_attempts
        self.attempts = 0
        self.failures = 0
        self._random = random_uniform

    def next_delay(self) -> float:
        """Advance the schedule and return how long to wait before the next attempt."""
        # Cap the exponent: attempts are unbounded and 2.0**1100 overflows.
        step = min(self.max_s, self.base_s * 2.0 ** min(self.attempts, 64))
        self.attempts += 1
        if self.jitter == 0:
            return step
        return step * self._random(1.0 - self.jitter, 1.0 + self.jitter)

    def record_failure(self) -> None:
        """A connection attempt failed."""
        self.failures += 1

    def record_success(self) -> None:
        """A connection attempt logged in (the schedule itself is not reset by this)."""
        self.failures = 0

    @property
    def exhausted(self) -> bool:
        """True when `max_attempts` connection attempts in a row have failed."""
        return self.max_attempts is not None and self.failures >= self.max_attempts

    def reset(self) -> None:
        """Start the schedule over (the last connection proved healthy)."""
        self.attempts = 0

    def connection_ended(self, healthy_for_s: float) -> None:
        """A connection that was up for `healthy_for_s` ended: reset if that was long enough."""
        if healthy_for_s >= self.reset_after_s:
            self.reset()
