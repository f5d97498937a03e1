"""`SimulatorOnThread`: the one start/stop/`with` wrapper both simulators' threads extend."""

from __future__ import annotations

import threading

import pytest

from twitch_ingestion.simulator import SimulatorThread
from twitch_ingestion.simulator.eventsub_server import EventSubSimulatorThread
from twitch_ingestion.simulator.loop_thread import SimulatorOnThread

THREAD_NAME = "fake-simulator"


class FakeSimulator:
    """Records on which thread its life happens; `fail_start` makes start() raise."""

    def __init__(self, fail_start: bool = False) -> None:
        self.fail_start = fail_start
        self.events: list[tuple[str, str]] = [("created", threading.current_thread().name)]

    async def start(self) -> None:
        self.events.append(("started", threading.current_thread().name))
        if self.fail_start:
            raise OSError("address already in use")

    async def stop(self) -> None:
        self.events.append(("stopped", threading.current_thread().name))


def _loop_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


def test_both_simulator_threads_are_the_one_wrapper() -> None:
    assert issubclass(SimulatorThread, SimulatorOnThread)
    assert issubclass(EventSubSimulatorThread, SimulatorOnThread)


def test_the_simulator_lives_on_its_own_loop_thread_from_creation_to_stop() -> None:
    created: list[FakeSimulator] = []

    def create() -> FakeSimulator:
        created.append(FakeSimulator())
        return created[-1]

    with SimulatorOnThread(THREAD_NAME, "the fake simulator", create) as on_thread:
        assert on_thread.start() is on_thread, "start() again is a no-op"
        assert on_thread.call(lambda sim: threading.current_thread().name) == THREAD_NAME
        assert on_thread.call(lambda sim: sim) is created[0]
        assert len(_loop_threads()) == 1
    (simulator,) = created
    assert simulator.events == [
        ("created", THREAD_NAME),
        ("started", THREAD_NAME),
        ("stopped", THREAD_NAME),
    ]
    assert _loop_threads() == []
    on_thread.stop()  # idempotent
    with pytest.raises(RuntimeError, match=r"^the fake simulator thread is not running: call"):
        on_thread.call(lambda sim: None)


def test_a_simulator_that_fails_to_start_leaves_no_loop_thread_behind() -> None:
    on_thread = SimulatorOnThread(
        THREAD_NAME, "the fake simulator", lambda: FakeSimulator(fail_start=True)
    )
    with pytest.raises(OSError, match="address already in use"):
        on_thread.start()
    assert _loop_threads() == []
    with pytest.raises(RuntimeError, match="not running"):
        _ = on_thread.simulator
