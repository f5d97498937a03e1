"""The account-wide JOIN limiter: never more than `limit` JOINs in any window."""

from __future__ import annotations

import asyncio
import random

import pytest

from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter


def max_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best = 0
    start = 0
    for end, t in enumerate(stamps):
        while stamps[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


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


async def test_waiters_are_served_in_order_and_counted_in_the_queue() -> None:
    limiter = JoinRateLimiter(2, 0.2, margin_s=0.0)
    order: list[int] = []
    stamps: list[float] = []
    loop = asyncio.get_running_loop()

    async def join(n: int) -> None:
        await limiter.wait_turn()
        stamps.append(loop.time())
        order.append(n)

    tasks = [asyncio.create_task(join(n)) for n in range(7)]
    await asyncio.sleep(0.01)
    assert limiter.queue_length == 5  # two went straight through
    await asyncio.gather(*tasks)

    assert order == list(range(7))
    assert limiter.queue_length == 0
    assert max_in_any_window(stamps, 0.2 - 0.005) <= 2
    assert stamps[-1] - stamps[0] >= 0.6 - 0.01


async def test_acquire_grants_what_the_window_has_room_for() -> None:
    limiter = JoinRateLimiter(5, 0.1, margin_s=0.0)
    loop = asyncio.get_running_loop()
    # Taken before the first grant: a busy machine can delay this test, never the window.
    first_grant_not_before = loop.time()
    assert await limiter.acquire(3) == 3
    assert await limiter.acquire(10) == 2
    assert await limiter.acquire(10) == 5
    assert loop.time() - first_grant_not_before >= 0.099, "the next window's grants waited"
