"""An asyncio loop on a daemon thread, for driving a simulator from synchronous tests.

Both simulators (IRC and EventSub) run their servers on a loop of their own so that a
plain test, or the service under test in the same process, never shares the loop with
them; this is the one place that starts, feeds and stops such a loop (`LoopThread`) and
a simulator's life on it (`SimulatorOnThread`, which `SimulatorThread` and
`EventSubSimulatorThread` extend with their blocking API).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, Protocol, Self, TypeVar

__all__ = ["CONTROL_TIMEOUT_S", "LoopThread", "SimulatorOnThread"]

_T = TypeVar("_T")
# How long stop() waits for the thread to finish the loop's clean-up.
_JOIN_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 10.0
"""Bound for a call onto the loop that waits for nothing (a control, a snapshot)."""


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


class _Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


_S = TypeVar("_S", bound=_Startable)


class SimulatorOnThread(Generic[_S]):
    """A simulator on its own loop in a daemon thread: start, stop, `with`, blocking calls.

    `create` builds the simulator; it runs on the loop, at `start()`, so the simulator's
    asyncio objects belong to that loop. Every call blocks the calling thread until the
    loop has done the work.
    """

    def __init__(self, thread_name: str, what: str, create: Callable[[], _S]) -> None:
        self._create = create
        self._not_running = f"{what} thread is not running: call start() first"
        self._loop = LoopThread(thread_name, self._not_running)
        self._simulator: _S | None = None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the loop thread and the simulator; returns once it is listening."""
        if self._loop.running:
            return self
        self._loop.start(timeout)

        async def create_and_start() -> _S:
            simulator = self._create()
            await simulator.start()
            return simulator

        try:
            self._simulator = self.run(create_and_start(), timeout)
        except BaseException:
            self._loop.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the simulator and the loop thread (idempotent)."""
        if not self._loop.running:
            return
        try:
            if self._simulator is not None:
                self.run(self._simulator.stop(), timeout)
        finally:
            self._simulator = None
            self._loop.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def simulator(self) -> _S:
        """The underlying simulator; only touch it on its own loop (see `call`)."""
        if self._simulator is None:
            raise RuntimeError(self._not_running)
        return self._simulator

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = CONTROL_TIMEOUT_S) -> _T:
        """Run `coro` on the simulator's loop and wait for its result."""
        return self._loop.run(coro, timeout)

    def call(self, fn: Callable[[_S], _T]) -> _T:
        """Run `fn(simulator)` on the simulator's loop and return its result."""
        simulator = self.simulator

        async def invoke() -> _T:
            return fn(simulator)

        return self.run(invoke())
