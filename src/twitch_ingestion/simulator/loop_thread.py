"""An asyncio loop on a daemon thread, for driving a simulator from synchronous tests.

Both simulators (IRC and EventSub) run their servers on a loop of their own so that a
plain test, or the service under test in the same process, never shares the loop with
them; this is the one place that starts, feeds and stops such a loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["LoopThread"]

_T = TypeVar("_T")
# How long stop() waits for the thread to finish the loop's clean-up.
_JOIN_TIMEOUT_S = 10.0


class LoopThread:
    """Starts a loop on a daemon thread, runs coroutines on it, stops it (idempotent)."""

    def __init__(self, name: str, not_running: str) -> None:
        self._name = name
        self._not_running = not_running
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, timeout: float) -> None:
        """Start the thread and return once its loop runs (no-op when running)."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                # Let cancelled tasks finish so closing the loop warns about nothing.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        ready.wait(timeout)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        """Run `coro` on the loop and wait for its result; a timeout cancels it."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(self._not_running)
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop and wait for its thread."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_JOIN_TIMEOUT_S)
