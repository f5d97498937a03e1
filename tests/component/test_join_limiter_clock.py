"""`JoinRateLimiter` on the event loop's real clock: waiters queue, windows pass.

The limiter's pure decisions (a window, a margin, `take`) are unit tests
(`tests/unit/test_join_limiter.py`); these wait for real windows of 0.1-0.2 s.
"""

from __future__ import annotations

import asyncio

from tests.support.rate_windows import max_in_any_window
from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter


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
