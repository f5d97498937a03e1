"""`TwitchSimulator`: a TCP (or TLS) server that speaks Twitch IRC, for tests, demos and
benchmarks.

The protocol lives in `session.py` (per connection) and `wire.py` (line formats); what a
session's events mean server-wide (logins, JOINs, membership, PING/PONG, closes) is
`connections.py`, and writing streams of chat to the channels' members is `fanout.py`.
This module is the public face around them: listening, the controls and fault switches
a test flips, the waits, and starting streams.

Everything here runs on one event loop and is not thread-safe; from another thread use
`SimulatorThread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import random
import socket
import struct
import termios
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import structlog

from twitch_ingestion.simulator import wire
from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.config import ChannelBehaviour, SimulatorConfig
from twitch_ingestion.simulator.connections import (
    ChangeSignal,
    Connection,
    Connections,
    channel_login,
)
from twitch_ingestion.simulator.fanout import StreamRunner
from twitch_ingestion.simulator.replay import DEFAULT_REPLAY_COMMANDS, load_corpus
from twitch_ingestion.simulator.stats import SimulatorStats, StreamStats
from twitch_ingestion.simulator.streams import (
    GeneratedSource,
    NumberedSource,
    ReplaySource,
    StreamHandle,
    StreamSource,
)

__all__ = ["TwitchSimulator"]

log = structlog.get_logger(__name__)

# A settling drop polls the socket's unacknowledged-byte count this often.
_SETTLE_POLL_S = 0.005
# `wait_until` re-checks its predicate at least this often, for state that changes
# without a membership/connection event (stream counters).
_WAIT_POLL_S = 0.02


class TwitchSimulator:
    """A Twitch IRC server on 127.0.0.1. Use `async with TwitchSimulator(cfg) as sim:`."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.stats = SimulatorStats()
        """Live counters; `stats.snapshot()` for a copy that no longer changes."""
        self._server: asyncio.Server | None = None
        self._port = self.config.port
        self._changes = ChangeSignal()
        self._connections = Connections(self.config, self.stats, self._changes)
        self._runner = StreamRunner(self.config, self.stats, self._connections, self._changes)
        self._rng = random.Random(self.config.seed)
        self._id_salt = self._rng.getrandbits(64)
        self._next_stream_id = 1
        self._replay_passes = 0
        self._streams: dict[int, StreamHandle] = {}
        self._pending_drops: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The listening port (the ephemeral one when configured with port 0)."""
        if self._port == 0:
            raise RuntimeError("the simulator has no port yet: await start() first")
        return self._port

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def tls(self) -> bool:
        """True when clients must speak TLS (`config.ssl_context` is set)."""
        return self.config.ssl_context is not None

    @property
    def accepting(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Bind and listen; returns once connections are accepted."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._connections.serve,
            self.config.host,
            self._port,
            reuse_address=True,
            ssl=self.config.ssl_context,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.debug("simulator listening", host=self.config.host, port=self._port)

    async def stop(self) -> None:
        """Stop streams, stop listening and abort every connection."""
        self.stop_streams()
        await asyncio.gather(*(h.wait() for h in self._streams.values()), return_exceptions=True)
        self.pause_accepting()
        connections = self._connections.all()
        connection_tasks = [
            task for conn in connections for task in (conn.task, conn.ping_task) if task is not None
        ]
        for task in self._pending_drops:
            task.cancel()
        for conn in connections:
            self._connections.drop(conn, "simulator stopped")
        await asyncio.gather(*connection_tasks, *self._pending_drops, return_exceptions=True)
        log.info("simulator stopped")

    async def __aenter__(self) -> TwitchSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ controls

    def pause_accepting(self) -> None:
        """Close the listening socket: new connections are refused (RST), open ones stay."""
        if self._server is None:
            return
        self._server.close()
        self._server = None
        log.info("simulator stopped accepting connections", port=self._port)

    async def resume_accepting(self) -> None:
        """Listen again on the same port."""
        await self.start()

    def set_channel_behaviour(self, channel: str, behaviour: ChannelBehaviour | str) -> None:
        """How future JOINs of `channel` are answered (joined connections are unaffected)."""
        self._connections.set_channel_behaviour(channel, behaviour)

    def room_id_for(self, channel: str) -> str:
        """The configured room-id, else a stable one derived from the name."""
        return self._connections.room_id_for(channel)

    def connection_ids(self, *, nick: str | None = None) -> list[int]:
        """Open connections, oldest first, optionally only those logged in as `nick`."""
        return [
            c.id for c in self._connections.all() if nick is None or c.session.nick == nick.lower()
        ]

    def send_reconnect(
        self, close_after_s: float = 1.0, *, connection_id: int | None = None
    ) -> int:
        """Send `:tmi.twitch.tv RECONNECT`, then close after `close_after_s`.

        Chat keeps flowing to the connection until it closes, so a client that opens a
        new connection in time sees no gap. A client without twitch.tv/commands is not
        told (as on Twitch) but still closed. Returns how many connections were targeted.
        """
        targets = self._connections.targets(connection_id)
        loop = asyncio.get_running_loop()
        for conn in targets:
            self._connections.send_control(conn, [wire.RECONNECT_LINE])
            conn.stats.reconnect_sent = True
            self.stats.reconnects_sent += 1
            if conn.close_timer is not None:
                conn.close_timer.cancel()
            conn.close_timer = loop.call_later(
                close_after_s, self._connections.close, conn, "closed after RECONNECT"
            )
            log.info("simulator sent reconnect", connection=conn.id, closing_in_s=close_after_s)
        return len(targets)

    def send_raw(self, lines: Sequence[bytes], *, connection_id: int | None = None) -> int:
        """Write arbitrary bytes as lines (each gets `\r\n`) to logged-in connections.

        For robustness tests: malformed IRC, invalid UTF-8, lines no parser expects.
        Counted under `lines_written_by_command["RAW"]`. Returns the connections written.
        """
        encoded = [line + b"\r\n" for line in lines]
        targets = [
            conn for conn in self._connections.targets(connection_id) if conn.stats.logged_in
        ]
        for conn in targets:
            conn.write(encoded)
        by_command = self.stats.lines_written_by_command
        by_command["RAW"] = by_command.get("RAW", 0) + len(encoded) * len(targets)
        return len(targets)

    def drop_connections(self, *, connection_id: int | None = None, settle: bool = True) -> int:
        """Kill sockets mid-stream with a TCP RST: no RECONNECT, no FIN.

        settle=True (default) keeps the stats exact: chat stops being routed to the
        connection at once (later lines count as `sent_while_unjoined`), then the RST
        waits, at most `config.drop_settle_timeout_s`, until the client's TCP stack has
        acknowledged every byte already written; a client still receives those lines
        before it sees the reset. settle=False resets at once and whatever was in
        flight is lost without being accounted for (so is a settle that times out:
        `stats.drops_with_data_in_flight`). Returns how many connections were targeted;
        `wait_dropped()` waits for the resets.
        """
        targets = self._connections.targets(connection_id)
        loop = asyncio.get_running_loop()
        for conn in targets:
            self.stats.connections_dropped += 1
            if settle:
                self._connections.detach(conn, "dropping (settling what was sent)")
                task = loop.create_task(self._settle_then_drop(conn))
                self._pending_drops.add(task)
                task.add_done_callback(self._pending_drops.discard)
            else:
                self._connections.drop(conn, "dropped by control")
        return len(targets)

    async def wait_dropped(self, timeout: float | None = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every settling `drop_connections()` has reset its socket."""
        async with asyncio.timeout(timeout):
            await asyncio.gather(*self._pending_drops, return_exceptions=True)

    async def _settle_then_drop(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drop_settle_timeout_s
        sock = conn.writer.get_extra_info("socket")
        while not conn.transport.is_closing():
            if conn.transport.get_write_buffer_size() == 0 and _unacknowledged_bytes(sock) == 0:
                break
            if loop.time() >= deadline:
                self.stats.drops_with_data_in_flight += 1
                break
            await asyncio.sleep(_SETTLE_POLL_S)
        self._connections.drop(conn, "dropped by control")

    def go_silent(self, *, connection_id: int | None = None) -> None:
        """Half-open stall: keep reading, send nothing (no PONG, no chat, no PING).

        Without `connection_id` this also covers connections accepted later, until
        `resume_sending()`. Lines that would have gone out are discarded, not queued.
        """
        if connection_id is None:
            self._connections.silent_all = True
        for conn in self._connections.targets(connection_id):
            conn.silent = conn.stats.silent = True
        log.info("simulator connections silent", connection=connection_id or "all")

    def resume_sending(self, *, connection_id: int | None = None) -> None:
        if connection_id is None:
            self._connections.silent_all = False
        for conn in self._connections.targets(connection_id):
            conn.silent = conn.stats.silent = False
        log.info("simulator connections sending again", connection=connection_id or "all")

    # ------------------------------------------------------------------ waiting

    # The waits take `timeout` (ASYNC109) because `SimulatorThread` proxies the same
    # signatures to synchronous tests, which cannot wrap them in `asyncio.timeout`.
    async def wait_until(
        self,
        predicate: Callable[[SimulatorStats], bool],
        timeout: float | None = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until `predicate(self.stats)` holds; TimeoutError after `timeout` s
        (None: no limit)."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.stats):
                    changed = self._changes.event
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), _WAIT_POLL_S)
        except TimeoutError:
            raise TimeoutError(f"simulator condition not met within {timeout} s") from None

    async def wait_for_joined(
        self,
        channels: Iterable[str],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until every channel is joined by at least one connection."""
        wanted = {channel_login(c) for c in channels}
        try:
            await self.wait_until(lambda _: wanted <= self._connections.joined(), timeout)
        except TimeoutError:
            missing = sorted(wanted - self._connections.joined())
            raise TimeoutError(f"channels not joined within {timeout} s: {missing}") from None

    async def wait_for_connections(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until at least `count` connections are open."""
        await self.wait_until(lambda s: s.connections_current >= count, timeout)

    # ------------------------------------------------------------------ streams

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
    ) -> StreamHandle:
        """Replay a file of raw lines (default: the bundled sample chat) into channels.

        rate: lines/s (0 = as fast as the client reads). loops: passes over the file
        (None = forever). With `rewrite_channel` each line goes to the next of
        `channels` (default: whatever is joined, waiting while nothing is) with its
        `room-id` rewritten; without it, to its original channel. `commands`: which
        channel-bearing commands to send (None: all). Every send after the first pass,
        and every repeat of an id within the file, gets a fresh deterministic `id`.
        """
        if not rewrite_channel and channels is not None:
            raise ValueError("channels only applies with rewrite_channel=True")
        if loops is not None and loops < 0:
            raise ValueError(f"loops must be >= 0 or None, got {loops}")
        corpus = load_corpus(path)
        lines = corpus.select(commands)
        stats = self._new_stream_stats("replay", rate)
        source = ReplaySource(
            lines,
            line_span=corpus.line_span,
            loops=loops,
            channels=[channel_login(c) for c in channels] if channels else None,
            rewrite_channel=rewrite_channel,
            fresh_timestamps=fresh_timestamps,
            room_id_for=self.room_id_for,
            next_pass=self._next_replay_pass,
            stats=stats,
        )
        log.info(
            "simulator replay started", stream=stats.stream_id, lines=len(lines), corpus=corpus.name
        )
        return self._start_stream(source, stats)

    def start_generated(
        self,
        rate: float,
        *,
        count: int | None = None,
        channels: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> StreamHandle:
        """Synthetic PRIVMSGs at `rate` lines/s (0 = flat out), `count` in all (None: no
        end), round-robin over `channels` (default: whatever is joined)."""
        stats = self._new_stream_stats("generated", rate)
        generator = ChatGenerator(self._rng.getrandbits(64) if seed is None else seed)
        source = GeneratedSource(
            generator,
            count=count,
            channels=[channel_login(c) for c in channels] if channels else None,
            room_id_for=self.room_id_for,
        )
        return self._start_stream(source, stats)

    def start_numbered(
        self, channels: Sequence[str], rate: float = 0.0, count: int | None = None
    ) -> StreamHandle:
        """`seq <channel> <n>` PRIVMSGs: `count` per channel (None: no end), `rate` lines/s
        in total (0 = flat out). Numbers continue where earlier numbered streams of the
        channel stopped; lines for a channel nobody has joined are counted in
        `stats.sent_while_unjoined` and `stats.numbered_undelivered`."""
        logins = [channel_login(c) for c in channels]
        stats = self._new_stream_stats("numbered", rate)
        source = NumberedSource(
            logins,
            count=count,
            high_water=self.stats.numbered_high_water,
            room_id_for=self.room_id_for,
            id_salt=self._id_salt,
        )
        return self._start_stream(source, stats)

    def streams(self) -> list[StreamHandle]:
        return list(self._streams.values())

    def stop_streams(self) -> None:
        for handle in self._streams.values():
            handle.stop()

    async def wait_streams_done(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait for every started stream to finish; raises TimeoutError or a stream's error.

        Streams that were stopped count as finished.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for handle in list(self._streams.values()):
            await handle.wait(None if deadline is None else max(0.0, deadline - loop.time()))

    def _new_stream_stats(self, kind: str, rate: float) -> StreamStats:
        if rate < 0:
            raise ValueError(f"rate must be >= 0 lines/s, got {rate}")
        stats = StreamStats(stream_id=self._next_stream_id, kind=kind, rate=rate)
        self._next_stream_id += 1
        self.stats.streams[stats.stream_id] = stats
        return stats

    def _next_replay_pass(self) -> int:
        pass_no = self._replay_passes
        self._replay_passes += 1
        return pass_no

    def _start_stream(self, source: StreamSource, stats: StreamStats) -> StreamHandle:
        task = asyncio.get_running_loop().create_task(
            self._runner.run(source, stats), name=f"simulator-stream-{stats.stream_id}"
        )
        handle = StreamHandle(stats, task)
        self._streams[stats.stream_id] = handle
        return handle


def _unacknowledged_bytes(sock: socket.socket | None) -> int:
    """Bytes in the kernel send queue not yet acknowledged by the peer (Linux SIOCOUTQ);
    0 where the platform cannot tell."""
    if sock is None or not hasattr(termios, "TIOCOUTQ"):
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    unacked: int = struct.unpack("i", raw)[0]
    return unacked
