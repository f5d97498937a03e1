"""`TwitchSimulator`: a TCP (or TLS) server that speaks Twitch IRC, for tests, demos and
benchmarks.

The protocol lives in `session.py` (per connection) and `wire.py` (line formats); this
module is the asyncio shell around them plus what needs server-wide knowledge: channel
membership, the per-account JOIN limit, streams of chat, fault injection and stats.

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
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import structlog

from twitch_ingestion.simulator import wire
from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.config import ChannelBehaviour, SimulatorConfig
from twitch_ingestion.simulator.join_limit import JoinRateLimiter
from twitch_ingestion.simulator.replay import DEFAULT_REPLAY_COMMANDS, load_corpus
from twitch_ingestion.simulator.session import (
    ChatSent,
    ClientQuit,
    ClientSession,
    JoinRequested,
    LoggedIn,
    LoginRejected,
    PartRequested,
    PongReceived,
    Reply,
    SessionEvent,
)
from twitch_ingestion.simulator.stats import ConnectionStats, SimulatorStats, StreamStats
from twitch_ingestion.simulator.streams import (
    BatchItem,
    GeneratedSource,
    NumberedSource,
    RatePacer,
    ReplaySource,
    StreamHandle,
    StreamSource,
)

__all__ = ["TwitchSimulator"]

log = structlog.get_logger(__name__)

_READ_CHUNK_BYTES = 64 * 1024
# Paced streams sleep at least this long between batches: below ~5 ms asyncio's timer
# overhead dominates and the rate gets no smoother.
_MIN_TICK_S = 0.005
# `_deliver`'s per-channel routing: (unchanged-line queues, queues needing CAP
# adaptation, whether any connection joined the channel).
_Route = tuple[list[list[bytes]], list[tuple["_Connection", list[bytes]]], bool]
# A settling drop polls the socket's unacknowledged-byte count this often.
_SETTLE_POLL_S = 0.005
# `wait_until` re-checks its predicate at least this often, for state that changes
# without a membership/connection event (stream counters).
_WAIT_POLL_S = 0.02


class _Connection:
    """One client socket and its session; owned by the simulator."""

    __slots__ = (
        "channels",
        "close_timer",
        "closing",
        "full_view",
        "id",
        "last_pong_at",
        "ping_task",
        "session",
        "silent",
        "stats",
        "task",
        "transport",
        "writer",
    )

    def __init__(
        self,
        connection_id: int,
        writer: asyncio.StreamWriter,
        session: ClientSession,
        stats: ConnectionStats,
    ) -> None:
        self.id = connection_id
        self.writer = writer
        self.transport = writer.transport
        self.session = session
        self.stats = stats
        self.channels: set[str] = set()
        self.silent = False
        self.closing = False
        # True while the client has both tags and commands: lines go out unchanged.
        self.full_view = False
        self.last_pong_at = 0.0
        self.task: asyncio.Task[None] | None = None
        self.ping_task: asyncio.Task[None] | None = None
        self.close_timer: asyncio.TimerHandle | None = None

    def write(self, lines: list[bytes]) -> int:
        """Queue whole encoded lines on the transport; returns the byte count."""
        data = b"".join(lines)
        self.transport.write(data)
        self.stats.lines_written += len(lines)
        self.stats.bytes_written += len(data)
        return len(data)


class TwitchSimulator:
    """A Twitch IRC server on 127.0.0.1. Use `async with TwitchSimulator(cfg) as sim:`."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.stats = SimulatorStats()
        """Live counters; `stats.snapshot()` for a copy that no longer changes."""
        self._server: asyncio.Server | None = None
        self._port = self.config.port
        self._connections: dict[int, _Connection] = {}
        # channel → connections that joined it, in join order (delivery fan-out).
        self._members: dict[str, dict[int, _Connection]] = {}
        self._joined_list: list[str] | None = None
        self._behaviours = {
            _channel_login(c): ChannelBehaviour(b)
            for c, b in self.config.channel_behaviours.items()
        }
        self._room_ids = {_channel_login(c): r for c, r in self.config.room_ids.items()}
        self._join_limiter = (
            JoinRateLimiter(self.config.join_limit, self.config.join_window_s)
            if self.config.join_limit is not None
            else None
        )
        self._rng = random.Random(self.config.seed)
        self._id_salt = self._rng.getrandbits(64)
        self._next_connection_id = 1
        self._next_stream_id = 1
        self._replay_passes = 0
        self._silent_all = False
        self._streams: dict[int, StreamHandle] = {}
        self._pending_drops: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

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
            self._on_client,
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
        connection_tasks = [
            task
            for conn in self._connections.values()
            for task in (conn.task, conn.ping_task)
            if task is not None
        ]
        for task in self._pending_drops:
            task.cancel()
        for conn in list(self._connections.values()):
            self._drop(conn, "simulator stopped")
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
        self._behaviours[_channel_login(channel)] = ChannelBehaviour(behaviour)

    def room_id_for(self, channel: str) -> str:
        """The configured room-id, else a stable one derived from the name."""
        channel = _channel_login(channel)
        room_id = self._room_ids.get(channel)
        if room_id is None:
            room_id = self._room_ids[channel] = wire.room_id_for(channel)
        return room_id

    def connection_ids(self, *, nick: str | None = None) -> list[int]:
        """Open connections, oldest first, optionally only those logged in as `nick`."""
        return [
            c.id
            for c in self._connections.values()
            if nick is None or c.session.nick == nick.lower()
        ]

    def send_reconnect(
        self, close_after_s: float = 1.0, *, connection_id: int | None = None
    ) -> int:
        """Send `:tmi.twitch.tv RECONNECT`, then close after `close_after_s`.

        Chat keeps flowing to the connection until it closes, so a client that opens a
        new connection in time sees no gap. A client without twitch.tv/commands is not
        told (as on Twitch) but still closed. Returns how many connections were targeted.
        """
        targets = self._targets(connection_id)
        loop = asyncio.get_running_loop()
        for conn in targets:
            self._send_control(conn, [wire.RECONNECT_LINE])
            conn.stats.reconnect_sent = True
            self.stats.reconnects_sent += 1
            if conn.close_timer is not None:
                conn.close_timer.cancel()
            conn.close_timer = loop.call_later(
                close_after_s, self._close, conn, "closed after RECONNECT"
            )
            log.info("simulator sent reconnect", connection=conn.id, closing_in_s=close_after_s)
        return len(targets)

    def send_raw(self, lines: Sequence[bytes], *, connection_id: int | None = None) -> int:
        """Write arbitrary bytes as lines (each gets `\r\n`) to logged-in connections.

        For robustness tests: malformed IRC, invalid UTF-8, lines no parser expects.
        Counted under `lines_written_by_command["RAW"]`. Returns the connections written.
        """
        encoded = [line + b"\r\n" for line in lines]
        targets = [conn for conn in self._targets(connection_id) if conn.stats.logged_in]
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
        targets = self._targets(connection_id)
        loop = asyncio.get_running_loop()
        for conn in targets:
            self.stats.connections_dropped += 1
            if settle:
                self._detach(conn, "dropping (settling what was sent)")
                task = loop.create_task(self._settle_then_drop(conn))
                self._pending_drops.add(task)
                task.add_done_callback(self._pending_drops.discard)
            else:
                self._drop(conn, "dropped by control")
        return len(targets)

    async def wait_dropped(self, timeout: float | None = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every settling `drop_connections()` has reset its socket."""
        async with asyncio.timeout(timeout):
            await asyncio.gather(*self._pending_drops, return_exceptions=True)

    async def _settle_then_drop(self, conn: _Connection) -> None:
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
        self._drop(conn, "dropped by control")

    def go_silent(self, *, connection_id: int | None = None) -> None:
        """Half-open stall: keep reading, send nothing (no PONG, no chat, no PING).

        Without `connection_id` this also covers connections accepted later, until
        `resume_sending()`. Lines that would have gone out are discarded, not queued.
        """
        if connection_id is None:
            self._silent_all = True
        for conn in self._targets(connection_id):
            conn.silent = conn.stats.silent = True
        log.info("simulator connections silent", connection=connection_id or "all")

    def resume_sending(self, *, connection_id: int | None = None) -> None:
        if connection_id is None:
            self._silent_all = False
        for conn in self._targets(connection_id):
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
                    changed = self._changed
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
        wanted = {_channel_login(c) for c in channels}
        try:
            await self.wait_until(lambda _: wanted <= self._members.keys(), timeout)
        except TimeoutError:
            missing = sorted(wanted - self._members.keys())
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
            channels=[_channel_login(c) for c in channels] if channels else None,
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
            channels=[_channel_login(c) for c in channels] if channels else None,
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
        logins = [_channel_login(c) for c in channels]
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
            self._run_stream(source, stats), name=f"simulator-stream-{stats.stream_id}"
        )
        handle = StreamHandle(stats, task)
        self._streams[stats.stream_id] = handle
        return handle

    async def _run_stream(self, source: StreamSource, stats: StreamStats) -> None:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(stats.rate, self.config.batch_lines, loop.time(), _MIN_TICK_S)
        try:
            while not source.exhausted():
                joined: Sequence[str] = ()
                if source.needs_joined_channels:
                    joined = self._joined_channels()
                    if not joined:
                        await self._changed.wait()
                        pacer.restart(loop.time())
                        continue
                n = pacer.due(loop.time())
                if n == 0:
                    await asyncio.sleep(pacer.wait_s(loop.time()))
                    continue
                batch = source.take(n, joined, time.time_ns() // 1_000_000)
                pacer.sent(len(batch))
                for conn in self._deliver(batch, stats):
                    await self._drain(conn)
                if pacer.rate <= 0:
                    await asyncio.sleep(0)  # let readers, controls and other streams run
        except asyncio.CancelledError:
            stats.stopped = True
            raise
        except Exception as exc:
            stats.error = repr(exc)
            log.exception("simulator stream failed", stream=stats.stream_id)
            raise
        finally:
            stats.done = True
            self._notify()
            log.info(
                "simulator stream finished",
                stream=stats.stream_id,
                kind=stats.kind,
                lines=stats.lines_emitted,
                undelivered=stats.lines_undelivered,
            )

    def _deliver(self, batch: list[BatchItem], stream: StreamStats) -> list[_Connection]:
        """Queue each line on every connection that joined its channel; write once each.

        This is the firehose's hot loop: routes are resolved once per channel per batch,
        and each line is encoded once (joining mixed ASCII/non-ASCII `str`s first would
        widen the whole chunk to UCS-4 and cost several times more).
        """
        stats = self.stats
        written = stats.lines_written_by_command
        by_command = stream.lines_by_command
        privmsgs = stats.privmsgs_by_channel
        routes: dict[str, _Route] = {}
        queues: dict[int, list[bytes]] = {}
        touched: dict[int, _Connection] = {}
        for channel, command, line, seq in batch:
            by_command[command] = by_command.get(command, 0) + 1
            route = routes.get(channel)
            if route is None:
                route = routes[channel] = self._route(channel, queues, touched)
            direct, adapted, joined = route
            if direct or adapted:
                data = line.encode()
                for queue in direct:
                    queue.append(data)
                count = len(direct)
                for conn, queue in adapted:
                    session = conn.session
                    out = wire.adapt_line_for_caps(
                        line, command, tags=session.has_tags, commands=session.has_commands
                    )
                    # None: withheld by the client's own CAP choice, which is not a loss.
                    if out is not None:
                        queue.append(out.encode())
                        count += 1
                if count:
                    written[command] = written.get(command, 0) + count
                if command == "PRIVMSG":
                    privmsgs[channel] = privmsgs.get(channel, 0) + 1
            else:
                stream.lines_undelivered += 1
                lost = stats.sent_while_silent if joined else stats.sent_while_unjoined
                lost[channel] = lost.get(channel, 0) + 1
                if seq:
                    _record_undelivered(stats.numbered_undelivered, channel, seq)
        stream.lines_emitted += len(batch)
        for conn_id, conn in touched.items():
            stats.bytes_written += conn.write(queues[conn_id])
        return list(touched.values())

    def _route(
        self, channel: str, queues: dict[int, list[bytes]], touched: dict[int, _Connection]
    ) -> _Route:
        """Where a batch's lines for `channel` go: (queues taking lines unchanged,
        (connection, queue) pairs needing CAP adaptation, whether anyone joined)."""
        direct: list[list[bytes]] = []
        adapted: list[tuple[_Connection, list[bytes]]] = []
        conns = self._members.get(channel)
        if not conns:
            return direct, adapted, False
        for conn in conns.values():
            if conn.silent:
                continue
            queue = queues.get(conn.id)
            if queue is None:
                queue = queues[conn.id] = []
                touched[conn.id] = conn
            if conn.full_view:
                direct.append(queue)
            else:
                adapted.append((conn, queue))
        return direct, adapted, True

    async def _drain(self, conn: _Connection) -> None:
        if conn.closing:
            return
        timeout = self.config.slow_consumer_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await conn.writer.drain()
        except TimeoutError:
            log.warning(
                "simulator dropped a slow consumer", connection=conn.id, not_drained_in_s=timeout
            )
            self._drop(conn, "slow consumer")
        except (ConnectionError, OSError):
            self._detach(conn, "connection lost while writing")

    # ------------------------------------------------------------------ connections

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        peer = writer.get_extra_info("peername")
        conn_stats = ConnectionStats(
            connection_id=connection_id,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
        )
        conn = _Connection(
            connection_id,
            writer,
            ClientSession(
                valid_tokens=self.config.valid_tokens, token_check=self.config.token_check
            ),
            conn_stats,
        )
        conn.task = asyncio.current_task()
        conn.silent = conn_stats.silent = self._silent_all
        writer.transport.set_write_buffer_limits(high=self.config.write_buffer_high_bytes)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Control replies are tiny and latency matters to tests; chat goes in bulk.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections[connection_id] = conn
        self.stats.connections[connection_id] = conn_stats
        self.stats.connections_accepted += 1
        self._notify()
        log.info("simulator connection accepted", connection=connection_id, peer=conn_stats.peer)
        reason = "client closed the connection"
        try:
            # Read until EOF even once closing: a settling drop must not be turned into
            # an orderly close by this loop ending early (its events are ignored).
            while True:
                data = await reader.read(_READ_CHUNK_BYTES)
                if not data:
                    break
                self._handle_events(conn, conn.session.receive_data(data))
                # A CAP REQ may come at any time, even after login.
                conn.full_view = conn.session.has_tags and conn.session.has_commands
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc!r}"
        finally:
            self._detach(conn, reason)
            self._forget(conn)

    def _handle_events(self, conn: _Connection, events: list[SessionEvent]) -> None:
        for event in events:
            if conn.closing:
                return
            match event:
                case Reply(lines):
                    self._send_control(conn, lines)
                case LoggedIn(nick, anonymous):
                    self._on_logged_in(conn, nick, anonymous)
                case LoginRejected(nick, reason):
                    failures = self.stats.login_failures_by_reason
                    failures[reason] = failures.get(reason, 0) + 1
                    log.info(
                        "simulator login rejected", connection=conn.id, nick=nick, reason=reason
                    )
                    self._close(conn, f"login rejected: {reason}")
                case JoinRequested(channels):
                    self._on_join(conn, channels)
                case PartRequested(channels):
                    self._on_part(conn, channels)
                case PongReceived():
                    conn.last_pong_at = asyncio.get_running_loop().time()
                    conn.stats.pongs_received += 1
                    self.stats.pongs_received += 1
                    self._notify()
                case ChatSent(channel):
                    if conn.session.nick is not None:
                        self._send_control(conn, [wire.user_state_line(conn.session.nick, channel)])
                case ClientQuit():
                    self._close(conn, "client sent QUIT")

    def _on_logged_in(self, conn: _Connection, nick: str, anonymous: bool) -> None:
        conn.stats.nick = nick
        conn.stats.anonymous = anonymous
        conn.stats.logged_in = True
        logins = self.stats.logins_by_nick
        logins[nick] = logins.get(nick, 0) + 1
        self._notify()
        log.info("simulator logged in", connection=conn.id, nick=nick, anonymous=anonymous)
        if self.config.ping_interval_s is not None:
            conn.ping_task = asyncio.get_running_loop().create_task(self._ping_loop(conn))

    def _on_join(self, conn: _Connection, channels: tuple[str, ...]) -> None:
        nick = conn.session.nick
        assert nick is not None
        limiter = self._join_limiter
        now = asyncio.get_running_loop().time()
        joins = self.stats.joins_by_channel
        for channel in channels:
            if limiter is not None and not limiter.try_acquire(nick, now):
                self.stats.join_limit_violations += 1
                violations = self.stats.join_limit_violations_by_nick
                violations[nick] = violations.get(nick, 0) + 1
                log.warning(
                    "simulator join limit exceeded",
                    connection=conn.id,
                    nick=nick,
                    joins=limiter.limit,
                    window_s=limiter.window_s,
                    action="dropping the connection",
                )
                self._close(conn, "join rate limit exceeded")
                return
            joins[channel] = joins.get(channel, 0) + 1
            behaviour = self._behaviours.get(channel, ChannelBehaviour.NORMAL)
            if behaviour is ChannelBehaviour.SUSPENDED:
                self._send_control(
                    conn,
                    [
                        wire.notice_line(
                            f"#{channel}",
                            "This channel does not exist or has been suspended.",
                            "msg_channel_suspended",
                        )
                    ],
                )
            elif behaviour is ChannelBehaviour.BANNED:
                self._send_control(
                    conn,
                    [
                        wire.notice_line(
                            f"#{channel}",
                            f"You are permanently banned from talking in {channel}.",
                            "msg_banned",
                        )
                    ],
                )
            elif behaviour is ChannelBehaviour.NORMAL:
                self._add_member(conn, channel)
                self._send_control(
                    conn,
                    wire.join_reply_lines(
                        nick, channel, self.room_id_for(channel), anonymous=conn.session.anonymous
                    ),
                )
        log.debug("simulator join", connection=conn.id, channels=",".join(channels))
        self._notify()

    def _on_part(self, conn: _Connection, channels: tuple[str, ...]) -> None:
        nick = conn.session.nick
        assert nick is not None
        parts = self.stats.parts_by_channel
        for channel in channels:
            parts[channel] = parts.get(channel, 0) + 1
            self._remove_member(conn, channel)
            self._send_control(conn, [wire.part_line(nick, channel)])
        log.debug("simulator part", connection=conn.id, channels=",".join(channels))

    async def _ping_loop(self, conn: _Connection) -> None:
        interval = self.config.ping_interval_s
        pong_timeout = self.config.pong_timeout_s
        assert interval is not None
        loop = asyncio.get_running_loop()
        while not conn.closing:
            await asyncio.sleep(interval)
            if conn.closing:
                return
            if conn.silent:
                continue
            sent_at = loop.time()
            self._send_control(conn, [wire.PING_LINE])
            self.stats.pings_sent += 1
            if pong_timeout is None:
                continue
            await asyncio.sleep(pong_timeout)
            if conn.closing or conn.silent:
                continue
            if conn.last_pong_at < sent_at:
                self.stats.pong_timeouts += 1
                log.info("simulator got no pong", connection=conn.id, timeout_s=pong_timeout)
                self._close(conn, "no PONG")
                return

    def _send_control(self, conn: _Connection, lines: Iterable[str]) -> None:
        """Write protocol lines (no CRLF) now, honouring silence and capabilities."""
        if conn.closing or conn.silent:
            return
        written = self.stats.lines_written_by_command
        session = conn.session
        out: list[bytes] = []
        for line in lines:
            command = wire.command_of(line)
            adapted = wire.adapt_line_for_caps(
                line, command, tags=session.has_tags, commands=session.has_commands
            )
            if adapted is None:
                continue
            out.append(f"{adapted}\r\n".encode())
            written[command] = written.get(command, 0) + 1
        if out:
            self.stats.bytes_written += conn.write(out)

    def _add_member(self, conn: _Connection, channel: str) -> None:
        if channel in conn.channels:
            return
        conn.channels.add(channel)
        conn.stats.channels.append(channel)
        self._members.setdefault(channel, {})[conn.id] = conn
        self._joined_list = None

    def _remove_member(self, conn: _Connection, channel: str) -> None:
        if channel not in conn.channels:
            return
        conn.channels.discard(channel)
        conn.stats.channels.remove(channel)
        members = self._members.get(channel)
        if members is not None:
            members.pop(conn.id, None)
            if not members:
                del self._members[channel]
        self._joined_list = None
        self._notify()

    def _joined_channels(self) -> list[str]:
        if self._joined_list is None:
            self._joined_list = list(self._members)
        return self._joined_list

    def _targets(self, connection_id: int | None) -> list[_Connection]:
        if connection_id is None:
            return [c for c in self._connections.values() if not c.closing]
        conn = self._connections.get(connection_id)
        if conn is None or conn.closing:
            raise KeyError(f"no open connection with id {connection_id}")
        return [conn]

    def _detach(self, conn: _Connection, reason: str) -> None:
        """Stop delivering to `conn` (idempotent); the socket may still be flushing."""
        if conn.closing:
            return
        conn.closing = True
        for channel in list(conn.channels):
            self._remove_member(conn, channel)
        if conn.close_timer is not None:
            conn.close_timer.cancel()
        if conn.ping_task is not None:
            conn.ping_task.cancel()
        log.info(
            "simulator connection closed", connection=conn.id, nick=conn.stats.nick, reason=reason
        )
        self._notify()

    def _close(self, conn: _Connection, reason: str) -> None:
        """Orderly close: flush what is queued, then FIN."""
        self._detach(conn, reason)
        conn.writer.close()

    def _drop(self, conn: _Connection, reason: str) -> None:
        """Abortive close: RST, queued data discarded."""
        self._detach(conn, reason)
        sock = conn.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.transport.abort()

    def _forget(self, conn: _Connection) -> None:
        if self._connections.pop(conn.id, None) is None:
            return
        self.stats.connections.pop(conn.id, None)
        self.stats.connections_closed += 1
        if not conn.transport.is_closing():
            conn.transport.close()
        self._notify()

    def _notify(self) -> None:
        """Wake everything waiting for membership/connection changes."""
        self._changed.set()
        self._changed = asyncio.Event()


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


def _channel_login(channel: str) -> str:
    return channel.removeprefix("#").lower()


def _record_undelivered(
    ranges_by_channel: dict[str, list[tuple[int, int]]], channel: str, seq: int
) -> None:
    ranges = ranges_by_channel.setdefault(channel, [])
    if ranges and ranges[-1][1] == seq - 1:
        ranges[-1] = (ranges[-1][0], seq)
    else:
        ranges.append((seq, seq))
