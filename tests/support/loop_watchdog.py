"""A watchdog that fails a test whose event loop runs too long without yielding.

A coroutine that loops without ever awaiting something that suspends (an `await` of a
coroutine that returns at once does not) starves every other task: delivery reports,
maintenance ticks, signal handlers. Nothing else in the test can notice, since nothing
else runs. This watchdog runs a heartbeat task on the loop and a thread beside it; when
the heartbeat has not run for `limit_s`, the thread interrupts the main thread (the loop's)
with a signal whose handler raises `LoopStalledError` wherever the loop is stuck, and the
context manager fails on exit even if the code under test swallowed it.

pytest-timeout owns SIGALRM, so this uses SIGUSR1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import AsyncIterator
from types import FrameType
from typing import Final

__all__ = ["STALL_LIMIT_S", "LoopStalledError", "loop_watchdog"]

STALL_LIMIT_S: Final = 2.0
_HEARTBEAT_S: Final = 0.01
_SIGNAL: Final = signal.SIGUSR1


class LoopStalledError(AssertionError):
    """The event loop ran `limit_s` without letting another task run."""


@contextlib.asynccontextmanager
async def loop_watchdog(limit_s: float = STALL_LIMIT_S) -> AsyncIterator[None]:
    """Fail the enclosed code if the running loop does not yield for `limit_s`.

    Must be entered on the main thread (the signal handler runs there).
    """
    last_beat = time.monotonic()
    stalled = threading.Event()
    stop = threading.Event()
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    assert threading.get_ident() == main_thread

    async def heartbeat() -> None:
        nonlocal last_beat
        while True:
            last_beat = time.monotonic()
            await asyncio.sleep(_HEARTBEAT_S)

    def raise_stalled(_signum: int, _frame: FrameType | None) -> None:
        raise LoopStalledError(f"the event loop ran {limit_s} s without yielding")

    def watch() -> None:
        while not stop.wait(_HEARTBEAT_S * 5):
            if time.monotonic() - last_beat > limit_s:
                stalled.set()
                signal.pthread_kill(main_thread, _SIGNAL)
                return

    previous = signal.signal(_SIGNAL, raise_stalled)
    beat = asyncio.create_task(heartbeat())
    watcher = threading.Thread(target=watch, name="loop-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        signal.signal(_SIGNAL, previous)
    if stalled.is_set():
        raise LoopStalledError(f"the event loop ran {limit_s} s without yielding")
