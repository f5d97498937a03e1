"""The IRC simulator's connections: each client socket fed to its `ClientSession`
(`session.py`), and what the session's events mean server-wide — logins, JOINs under
the per-account limit and each channel's behaviour, PARTs, PING/PONG, channel
membership, and the three ways a connection ends (detach, orderly close, RST).

`TwitchSimulator` (`server.py`) accepts sockets into `Connections` and drives it from
its controls; `fanout.py` writes streams of chat to the members of each channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterable, KeysView

import structlog

from twitch_ingestion.simulator import wire
from twitch_ingestion.simulator.config import ChannelBehaviour, SimulatorConfig
from twitch_ingestion.simulator.join_limit import JoinRateLimiter
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
from twitch_ingestion.simulator.stats import ConnectionStats, SimulatorStats

__all__ = ["ChangeSignal", "Connection", "Connections", "channel_login"]

log = structlog.get_logger(__name__)

_READ_CHUNK_BYTES = 64 * 1024


def channel_login(channel: str) -> str:
    return channel.removeprefix("#").lower()


class ChangeSignal:
    """Wakes everything waiting for a membership/connection change: `notify` sets the
    current event and starts a new one, so a waiter holding the old one wakes."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def notify(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


class Connection:
    """One client socket and its session; owned by `Connections`."""

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


class Connections:
    """Every open connection, who joined which channel, and how JOINs are answered."""

    def __init__(
        self, config: SimulatorConfig, stats: SimulatorStats, changes: ChangeSignal
    ) -> None:
        self._config = config
        self._stats = stats
        self._changes = changes
        self._connections: dict[int, Connection] = {}
        # channel → connections that joined it, in join order (delivery fan-out).
        self._members: dict[str, dict[int, Connection]] = {}
        self._joined_list: list[str] | None = None
        self._behaviours = {
            channel_login(c): ChannelBehaviour(b) for c, b in config.channel_behaviours.items()
        }
        self._room_ids = {channel_login(c): r for c, r in config.room_ids.items()}
        self._join_limiter = (
            JoinRateLimiter(config.join_limit, config.join_window_s)
            if config.join_limit is not None
            else None
        )
        self._next_connection_id = 1
        self.silent_all = False
        """New connections start silent (`TwitchSimulator.go_silent()` for all)."""

    # ------------------------------------------------------------------ reading state

    def all(self) -> list[Connection]:
        return list(self._connections.values())

    def targets(self, connection_id: int | None) -> list[Connection]:
        """The open connection `connection_id`, or every open one (None)."""
        if connection_id is None:
            return [c for c in self._connections.values() if not c.closing]
        conn = self._connections.get(connection_id)
        if conn is None or conn.closing:
            raise KeyError(f"no open connection with id {connection_id}")
        return [conn]

    def members(self, channel: str) -> dict[int, Connection] | None:
        """The connections that joined `channel`, in join order (None: nobody)."""
        return self._members.get(channel)

    def joined(self) -> KeysView[str]:
        """Channels at least one connection joined."""
        return self._members.keys()

    def joined_channels(self) -> list[str]:
        """The same as a list, rebuilt only when membership changes."""
        if self._joined_list is None:
            self._joined_list = list(self._members)
        return self._joined_list

    def set_channel_behaviour(self, channel: str, behaviour: ChannelBehaviour | str) -> None:
        self._behaviours[channel_login(channel)] = ChannelBehaviour(behaviour)

    def room_id_for(self, channel: str) -> str:
        """The configured room-id, else a stable one derived from the name."""
        channel = channel_login(channel)
        room_id = self._room_ids.get(channel)
        if room_id is None:
            room_id = self._room_ids[channel] = wire.room_id_for(channel)
        return room_id

    # ------------------------------------------------------------------ one client

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The `asyncio.start_server` callback: read the client until EOF."""
        config = self._config
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        peer = writer.get_extra_info("peername")
        conn_stats = ConnectionStats(
            connection_id=connection_id,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
        )
        conn = Connection(
            connection_id,
            writer,
            ClientSession(valid_tokens=config.valid_tokens, token_check=config.token_check),
            conn_stats,
        )
        conn.task = asyncio.current_task()
        conn.silent = conn_stats.silent = self.silent_all
        writer.transport.set_write_buffer_limits(high=config.write_buffer_high_bytes)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Control replies are tiny and latency matters to tests; chat goes in bulk.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections[connection_id] = conn
        self._stats.connections[connection_id] = conn_stats
        self._stats.connections_accepted += 1
        self._changes.notify()
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
            self.detach(conn, reason)
            self._forget(conn)

    def _handle_events(self, conn: Connection, events: list[SessionEvent]) -> None:
        for event in events:
            if conn.closing:
                return
            match event:
                case Reply(lines):
                    self.send_control(conn, lines)
                case LoggedIn(nick, anonymous):
                    self._on_logged_in(conn, nick, anonymous)
                case LoginRejected(nick, reason):
                    failures = self._stats.login_failures_by_reason
                    failures[reason] = failures.get(reason, 0) + 1
                    log.info(
                        "simulator login rejected", connection=conn.id, nick=nick, reason=reason
                    )
                    self.close(conn, f"login rejected: {reason}")
                case JoinRequested(channels):
                    self._on_join(conn, channels)
                case PartRequested(channels):
                    self._on_part(conn, channels)
                case PongReceived():
                    conn.last_pong_at = asyncio.get_running_loop().time()
                    conn.stats.pongs_received += 1
                    self._stats.pongs_received += 1
                    self._changes.notify()
                case ChatSent(channel):
                    if conn.session.nick is not None:
                        self.send_control(conn, [wire.user_state_line(conn.session.nick, channel)])
                case ClientQuit():
                    self.close(conn, "client sent QUIT")

    def _on_logged_in(self, conn: Connection, nick: str, anonymous: bool) -> None:
        conn.stats.nick = nick
        conn.stats.anonymous = anonymous
        conn.stats.logged_in = True
        logins = self._stats.logins_by_nick
        logins[nick] = logins.get(nick, 0) + 1
        self._changes.notify()
        log.info("simulator logged in", connection=conn.id, nick=nick, anonymous=anonymous)
        if self._config.ping_interval_s is not None:
            conn.ping_task = asyncio.get_running_loop().create_task(self._ping_loop(conn))

    def _on_join(self, conn: Connection, channels: tuple[str, ...]) -> None:
        nick = conn.session.nick
        assert nick is not None
        stats = self._stats
        limiter = self._join_limiter
        now = asyncio.get_running_loop().time()
        joins = stats.joins_by_channel
        for channel in channels:
            if limiter is not None and not limiter.try_acquire(nick, now):
                stats.join_limit_violations += 1
                violations = stats.join_limit_violations_by_nick
                violations[nick] = violations.get(nick, 0) + 1
                log.warning(
                    "simulator join limit exceeded",
                    connection=conn.id,
                    nick=nick,
                    joins=limiter.limit,
                    window_s=limiter.window_s,
                    action="dropping the connection",
                )
                self.close(conn, "join rate limit exceeded")
                return
            joins[channel] = joins.get(channel, 0) + 1
            behaviour = self._behaviours.get(channel, ChannelBehaviour.NORMAL)
            if behaviour is ChannelBehaviour.SUSPENDED:
                self.send_control(
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
                self.send_control(
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
                self.send_control(
                    conn,
                    wire.join_reply_lines(
                        nick, channel, self.room_id_for(channel), anonymous=conn.session.anonymous
                    ),
                )
        log.debug("simulator join", connection=conn.id, channels=",".join(channels))
        self._changes.notify()

    def _on_part(self, conn: Connection, channels: tuple[str, ...]) -> None:
        nick = conn.session.nick
        assert nick is not None
        parts = self._stats.parts_by_channel
        for channel in channels:
            parts[channel] = parts.get(channel, 0) + 1
            self._remove_member(conn, channel)
            self.send_control(conn, [wire.part_line(nick, channel)])
        log.debug("simulator part", connection=conn.id, channels=",".join(channels))

    async def _ping_loop(self, conn: Connection) -> None:
        interval = self._config.ping_interval_s
        pong_timeout = self._config.pong_timeout_s
        assert interval is not None
        loop = asyncio.get_running_loop()
        while not conn.closing:
            await asyncio.sleep(interval)
            if conn.closing:
                return
            if conn.silent:
                continue
            sent_at = loop.time()
            self.send_control(conn, [wire.PING_LINE])
            self._stats.pings_sent += 1
            if pong_timeout is None:
                continue
            await asyncio.sleep(pong_timeout)
            if conn.closing or conn.silent:
                continue
            if conn.last_pong_at < sent_at:
                self._stats.pong_timeouts += 1
                log.info("simulator got no pong", connection=conn.id, timeout_s=pong_timeout)
                self.close(conn, "no PONG")
                return

    def send_control(self, conn: Connection, lines: Iterable[str]) -> None:
        """Write protocol lines (no CRLF) now, honouring silence and capabilities."""
        if conn.closing or conn.silent:
            return
        written = self._stats.lines_written_by_command
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
            self._stats.bytes_written += conn.write(out)

    # ------------------------------------------------------------------ membership

    def _add_member(self, conn: Connection, channel: str) -> None:
        if channel in conn.channels:
            return
        conn.channels.add(channel)
        conn.stats.channels.append(channel)
        self._members.setdefault(channel, {})[conn.id] = conn
        self._joined_list = None

    def _remove_member(self, conn: Connection, channel: str) -> None:
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
        self._changes.notify()

    # ------------------------------------------------------------------ endings

    def detach(self, conn: Connection, reason: str) -> None:
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
        self._changes.notify()

    def close(self, conn: Connection, reason: str) -> None:
        """Orderly close: flush what is queued, then FIN."""
        self.detach(conn, reason)
        conn.writer.close()

    def drop(self, conn: Connection, reason: str) -> None:
        """Abortive close: RST, queued data discarded."""
        self.detach(conn, reason)
        sock = conn.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.transport.abort()

    def _forget(self, conn: Connection) -> None:
        if self._connections.pop(conn.id, None) is None:
            return
        self._stats.connections.pop(conn.id, None)
        self._stats.connections_closed += 1
        if not conn.transport.is_closing():
            conn.transport.close()
        self._changes.notify()
