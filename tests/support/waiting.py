"""Waiting on a condition, never for a fixed time: poll it until it holds or time runs out.

For state spread over several objects, threads or processes, where there is no single
event to await. The limit only bounds a failing test; a passing one returns as soon as
the condition holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(
    condition: Callable[[], bool],
    what: str = "the condition",
    within_s: float = 30.0,
    every_s: float = 0.01,
) -> None:
    """In a coroutine: return once `condition()` holds; fail naming `what` after `within_s`."""
    try:
        async with asyncio.timeout(within_s):
            while not condition():  # noqa: ASYNC110 - the condition spans objects or threads
                await asyncio.sleep(every_s)
    except TimeoutError:
        raise AssertionError(f"timed out after {within_s} s waiting for {what}") from None


def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float = 60.0, every_s: float = 0.1
) -> None:
    """Block until `condition()` holds; fail naming `what` after `timeout_s`.

    An `OSError` from the condition (a server not listening yet) counts as "not yet".
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)
