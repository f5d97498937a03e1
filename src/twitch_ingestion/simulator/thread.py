"""`SimulatorThread`: a `TwitchSimulator` on its own event loop, for synchronous tests.

Integration tests start the service as a subprocess and drive the simulator from plain
pytest functions; every method here blocks until the simulator's loop has done the work
(`asyncio.run_coroutine_threadsafe`), so a test reads top to bottom like a script.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

from twitch_ingestion.simulator.config import ChannelBehaviour, SimulatorConfig
from twitch_ingestion.simulator.loop_thread import SimulatorOnThread
from twitch_ingestion.simulator.replay import DEFAULT_REPLAY_COMMANDS
from twitch_ingestion.simulator.server import TwitchSimulator
from twitch_ingestion.simulator.stats import SimulatorStats, StreamStats
from twitch_ingestion.simulator.streams import StreamHandle

__all__ = ["SimulatorThread", "ThreadStreamHandle"]

# Extra time a blocking call waits beyond the simulator-side timeout it passes on, so
# the simulator's own, more precise TimeoutError wins the race.
_CALL_MARGIN_S = 5.0


class ThreadStreamHandle:
    """A stream started through `SimulatorThread`; methods block the calling thread."""

    def __init__(self, owner: SimulatorThread, handle: StreamHandle) -> None:
        self._owner = owner
        self._handle = handle
        self.stream_id = handle.stream_id
        self.kind = handle.kind

    def wait(self, timeout: float | None = None) -> StreamStats:
        """Block until the stream finishes; returns a snapshot of its counters."""
        handle = self._handle

        async def waited() -> StreamStats:
            await handle.wait(timeout)
            return _copy_stream_stats(handle.stats)

        return self._owner.run(waited(), _wait_bound(timeout))

    def stop(self) -> None:
        self._owner.call(lambda _: self._handle.stop())

    def done(self) -> bool:
        return self._owner.call(lambda _: self._handle.done())

    def stats(self) -> StreamStats:
        return self._owner.call(lambda _: _copy_stream_stats(self._handle.stats))


def _copy_stream_stats(stats: StreamStats) -> StreamStats:
    return StreamStats(
        stream_id=stats.stream_id,
        kind=stats.kind,
        rate=stats.rate,
        lines_emitted=stats.lines_emitted,
        lines_by_command=dict(stats.lines_by_command),
        lines_undelivered=stats.lines_undelivered,
        loops_completed=stats.loops_completed,
        done=stats.done,
        stopped=stats.stopped,
        error=stats.error,
    )


def _wait_bound(timeout: float | None) -> float | None:
    return None if timeout is None else timeout + _CALL_MARGIN_S


class SimulatorThread(SimulatorOnThread[TwitchSimulator]):
    """Runs a `TwitchSimulator` in a daemon thread. Use as a context manager::

    with SimulatorThread(SimulatorConfig()) as sim:
        env = {"TWITCH_IRC_HOST": "127.0.0.1", "TWITCH_IRC_PORT": str(sim.port), ...}
        sim.wait_for_joined(["forsen"], timeout=10)
        sim.start_numbered(["forsen"], rate=1000, count=5000).wait(timeout=30)
        assert sim.stats().privmsgs_by_channel["forsen"] == 5000
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        super().__init__("twitch-simulator", "the simulator", lambda: TwitchSimulator(self.config))

    @property
    def port(self) -> int:
        return self.simulator.port

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def tls(self) -> bool:
        return self.config.ssl_context is not None

    def stats(self) -> SimulatorStats:
        """A consistent deep copy of the counters (plain data, safe to keep)."""
        return self.call(lambda sim: sim.stats.snapshot())

    def connection_ids(self, *, nick: str | None = None) -> list[int]:
        return self.call(lambda sim: sim.connection_ids(nick=nick))

    def send_raw(self, lines: Sequence[bytes], *, connection_id: int | None = None) -> int:
        return self.call(lambda sim: sim.send_raw(lines, connection_id=connection_id))

    def send_reconnect(
        self, close_after_s: float = 1.0, *, connection_id: int | None = None
    ) -> int:
        return self.call(lambda sim: sim.send_reconnect(close_after_s, connection_id=connection_id))

    def drop_connections(self, *, connection_id: int | None = None, settle: bool = True) -> int:
        """Like `TwitchSimulator.drop_connections`, but returns once the sockets are reset."""
        count = self.call(
            lambda sim: sim.drop_connections(connection_id=connection_id, settle=settle)
        )
        bound = self.config.drop_settle_timeout_s + _CALL_MARGIN_S
        self.run(self.simulator.wait_dropped(bound), bound + _CALL_MARGIN_S)
        return count

    def go_silent(self, *, connection_id: int | None = None) -> None:
        self.call(lambda sim: sim.go_silent(connection_id=connection_id))

    def resume_sending(self, *, connection_id: int | None = None) -> None:
        self.call(lambda sim: sim.resume_sending(connection_id=connection_id))

    def pause_accepting(self) -> None:
        self.call(lambda sim: sim.pause_accepting())

    def resume_accepting(self) -> None:
        self.run(self.simulator.resume_accepting())

    def set_channel_behaviour(self, channel: str, behaviour: ChannelBehaviour | str) -> None:
        self.call(lambda sim: sim.set_channel_behaviour(channel, behaviour))

    def room_id_for(self, channel: str) -> str:
        return self.call(lambda sim: sim.room_id_for(channel))

    def wait_for_joined(self, channels: Iterable[str], timeout: float = 5.0) -> None:
        wanted = list(channels)
        self.run(self.simulator.wait_for_joined(wanted, timeout), _wait_bound(timeout))

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        self.run(self.simulator.wait_for_connections(count, timeout), _wait_bound(timeout))

    def wait_until(
        self, predicate: Callable[[SimulatorStats], bool], timeout: float | None = 5.0
    ) -> None:
        """Block until `predicate(stats)` holds; it runs on the simulator's thread."""
        self.run(self.simulator.wait_until(predicate, timeout), _wait_bound(timeout))

    def start_replay(
        self,
        path: Path | str | None = None,
        *,
        rate: float = 0.0,
        loops: int | None = 1,
        channels: Sequence[str] | None = None,
        rewrite_channel: bool = True,
        fresh_timestamps: bool = True,
        commands: Collection[str] | None = DEFAULT_REPLAY_COMMANDS,
    ) -> ThreadStreamHandle:
        handle = self.call(
            lambda sim: sim.start_replay(
                path,
                rate=rate,
                loops=loops,
                channels=channels,
                rewrite_channel=rewrite_channel,
                fresh_timestamps=fresh_timestamps,
                commands=commands,
            )
        )
        return ThreadStreamHandle(self, handle)

    def start_generated(
        self,
        rate: float,
        *,
        count: int | None = None,
        channels: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> ThreadStreamHandle:
        handle = self.call(
            lambda sim: sim.start_generated(rate, count=count, channels=channels, seed=seed)
        )
        return ThreadStreamHandle(self, handle)

    def start_numbered(
        self, channels: Sequence[str], rate: float = 0.0, count: int | None = None
    ) -> ThreadStreamHandle:
        handle = self.call(lambda sim: sim.start_numbered(channels, rate, count))
        return ThreadStreamHandle(self, handle)

    def stop_streams(self) -> None:
        self.call(lambda sim: sim.stop_streams())

    def wait_streams_done(self, timeout: float | None = None) -> None:
        self.run(self.simulator.wait_streams_done(timeout), _wait_bound(timeout))
