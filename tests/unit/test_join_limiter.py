"""The account-wide JOIN limiter: never more than `limit` JOINs in any window."""

from __future__ import annotations

import random

import pytest

from tests.support.rate_windows import max_in_any_window
from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter


def test_allows_limit_at_once_then_waits_for_the_oldest_to_leave() -> None:
    limiter = JoinRateLimiter(20, 10.0, margin_s=0.0)

    limiter.take(0.0, 15)
    limiter.take(1.0, 5)

    assert limiter.available(5.0) == 0
    assert limiter.next_allowed(5.0) == 10.0
    assert limiter.next_allowed(5.0, count=16) == 11.0
    assert limiter.available(10.0) == 15


def test_take_refuses_to_break_the_limit() -> None:
    limiter = JoinRateLimiter(3, 1.0, margin_s=0.0)
    limiter.take(0.0, 3)
    with pytest.raises(RuntimeError, match="exceed 3 per 1 s"):
        limiter.take(0.5)


def test_margin_widens_the_window() -> None:
    limiter = JoinRateLimiter(1, 10.0, margin_s=0.5)
    limiter.take(0.0)
    assert limiter.next_allowed(1.0) == 10.5
    assert JoinRateLimiter(20, 10.0).margin_s == 1.0  # default: 10%, at most 1 s


def test_greedy_use_of_next_allowed_never_exceeds_the_limit_in_any_window() -> None:
    rng = random.Random(3)
    limiter = JoinRateLimiter(20, 10.0, margin_s=0.0)
    now = 0.0
    stamps: list[float] = []
    for _ in range(2000):
        count = rng.randint(1, 25)
        now = limiter.next_allowed(now + rng.random() * 0.3, count)
        granted = min(count, limiter.available(now))
        limiter.take(now, granted)
        stamps.extend([now] * granted)
    assert max_in_any_window(stamps, 10.0) == 20
