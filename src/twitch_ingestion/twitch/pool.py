"""`TwitchSource`: the pool of Twitch connections the service reads chat from.

Channels are spread over *slots* of at most `twitch_channels_per_connection` channels.
Each slot keeps one live `TwitchConnection` for its channels and owns its life cycle:

* connect (no faster than one socket per `twitch_connection_open_interval_s` across the
  pool), log in, JOIN every channel through the account-wide `JoinRateLimiter`;
* after any disconnect, reconnect with `ExponentialBackoff` and JOIN everything again;
  `twitch_max_reconnect_attempts` failed attempts in a row end `run()` with
  `TwitchGaveUp`; rejected credentials end it at once with `TwitchAuthenticationError`;
* on a server RECONNECT, log in and join a *second* connection before closing the first,
  keep both for up to `twitch_reconnect_overlap_s`, and drop lines seen on both by their
  `id` tag — so a hand-over loses and doubles nothing;
* channels Twitch refuses (NOTICE) or never confirms (no JOIN echo in time) are logged
  once, listed in `failed_channels` and retried every `twitch_join_retry_interval_s`,
  while the slot's other channels keep flowing.

Every slot reads on its own task and awaits the sink per chunk, so a flooded channel
slows only its own connection. Metrics are updated per chunk or per state change, never
per line; logs are per state change, never per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Protocol

import structlog

from twitch_ingestion.config import Settings
from twitch_ingestion.metrics import (
    CHANNELS_FAILED,
    CHANNELS_JOINED,
    CONNECTION_STATES,
    DUPLICATE_MESSAGES_DROPPED,
    JOIN_QUEUE_LENGTH,
    MALFORMED_LINES,
    RECONNECTS,
)
from twitch_ingestion.twitch.backoff import ExponentialBackoff
from twitch_ingestion.twitch.connection import (
    DisconnectCause,
    TwitchAuthenticationError,
    TwitchConnectError,
    TwitchConnection,
    TwitchError,
)
from twitch_ingestion.twitch.irc import IrcMessage
from twitch_ingestion.twitch.join_limiter import JoinRateLimiter
from twitch_ingestion.twitch.session import (
    ChannelJoined,
    ChannelParted,
    ConnectionStatus,
    Event,
    JoinFailed,
    JoinTimedOut,
    MalformedLine,
    ReconnectRequested,
    RoomIdLearned,
)

__all__ = [
    "ChatSink",
    "TwitchAuthenticationError",
    "TwitchError",
    "TwitchGaveUp",
    "TwitchSource",
]

log = structlog.get_logger(__name__)

# Twitch logins, as config.py validates TWITCH_CHANNEL.
_CHANNEL_LOGIN = re.compile(r"[a-z0-9_]{1,25}")

# Most channels one JOIN round may take from the limiter; the session splits them into
# 512-byte lines. Bounded so one slot's backlog cannot hold the limiter's lock for a
# whole window while the other slots wait.
_MAX_JOIN_BATCH = 20
# Ids remembered per slot during a hand-over: a busy channel group sees ~10k lines/s,
# so this covers ~10 s of overlap at that rate, at ~100 bytes an id.
_DEDUP_CAPACITY = 100_000
# Malformed lines: the first of each reason is logged with a sample, then at most one
# summary per this many seconds (a flood of garbage must not become a flood of logs).
_MALFORMED_SUMMARY_INTERVAL_S = 10.0
_MALFORMED_SAMPLE_BYTES = 300


class ChatSink(Protocol):
    """Where the source hands what it reads; implemented by the service."""

    async def deliver(
        self, messages: list[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        """Take one chunk's chat lines, in order. May block: that connection stops reading
        until it returns (backpressure). `room_ids` maps channel login → room id."""

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        """Keep a line that could not be decoded or parsed (exact bytes, no line end)."""


_HINTS = {
    "join_limit": "Twitch closed the connection while JOINs were unanswered, the usual "
    "sign of exceeding its join rate limit: lower TWITCH_JOIN_RATE_LIMIT",
}


def _reconnect_cause(conn: TwitchConnection, cause: DisconnectCause) -> str:
    """The `twitch_reconnects{cause}` label for a connection that ended unexpectedly."""
    if cause is DisconnectCause.CONNECTION_LOST and conn.session.pending_joins:
        # Twitch gives no reason when it drops a client over its JOIN rate; a close
        # while JOINs await their echo is the one visible sign.
        return "join_limit"
    if cause is DisconnectCause.CLOSED:
        return "connection_lost"  # closed by us, but not on purpose (a failed hand-over)
    return cause.value


class TwitchGaveUp(TwitchError):  # noqa: N818 - the name the service and docs use
    """`twitch_max_reconnect_attempts` connection attempts in a row failed."""


class _RecentIds:
    """Keys of lines delivered recently by one slot, for de-duplication during a hand-over.

    Insertion-ordered dict as a bounded FIFO: O(1) lookup, oldest evicted first.
    """

    __slots__ = ("_capacity", "_seen", "expires_at")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._seen: dict[str, None] = {}
        self.expires_at: float | None = None

    def fresh(self, messages: list[IrcMessage]) -> list[IrcMessage]:
        seen = self._seen
        kept: list[IrcMessage] = []
        for message in messages:
            # Lines without an id (ROOMSTATE, CLEARCHAT…) carry their own timestamp, so
            # the raw text identifies the same event seen on both sockets.
            key = message.get_tag("id") or message.raw
            if key in seen:
                continue
            seen[key] = None
            kept.append(message)
        overflow = len(seen) - self._capacity
        if overflow > 0:
            for key in list(islice(seen, overflow)):
                del seen[key]
        dropped = len(messages) - len(kept)
        if dropped:
            DUPLICATE_MESSAGES_DROPPED.inc(dropped)
        return kept


class _MalformedLineLog:
    """Counts malformed lines and logs them without flooding (see the constants)."""

    def __init__(self) -> None:
        self._seen_reasons: set[str] = set()
        self._unreported: dict[str, int] = {}
        self._last_summary = 0.0

    def record(self, raw: bytes, reason: str, now: float) -> None:
        MALFORMED_LINES.labels(reason=reason).inc()
        if reason not in self._seen_reasons:
            self._seen_reasons.add(reason)
            self._last_summary = now
            log.warning(
                "malformed twitch line; sent to the dead-letter sink",
                reason=reason,
                sample=raw[:_MALFORMED_SAMPLE_BYTES].decode("utf-8", "backslashreplace"),
            )
            return
        self._unreported[reason] = self._unreported.get(reason, 0) + 1
        if now - self._last_summary >= _MALFORMED_SUMMARY_INTERVAL_S:
            log.warning("malformed twitch lines since last report", counts=self._unreported)
            self._unreported = {}
            self._last_summary = now


class _OpenPacer:
    """At most one new socket per `interval_s` across the pool (Twitch also limits logins)."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = float("-inf")
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            delay = self._next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_at = loop.time() + self._interval_s


class _Joiner:
    """Feeds one connection's JOINs through the shared limiter, in batches."""

    def __init__(self, conn: TwitchConnection, source: TwitchSource) -> None:
        self.conn = conn
        self._source = source
        self.queue: dict[str, None] = {}
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"{conn.name}-joiner")

    def add(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.queue[channel] = None
        if self.queue:
            self._wakeup.set()
        self._source._refresh_join_queue()

    def discard(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.queue.pop(channel, None)
        self._source._refresh_join_queue()

    def stop(self) -> None:
        self._task.cancel()
        self.queue.clear()
        self._source._refresh_join_queue()

    async def _run(self) -> None:
        limiter = self._source._limiter
        while True:
            if not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            granted = await limiter.acquire(min(len(self.queue), _MAX_JOIN_BATCH))
            # The queue may have shrunk while we waited (removed channels); the unused
            # slots are simply not used.
            batch = list(self.queue)[:granted]
            for channel in batch:
                del self.queue[channel]
            if batch:
                self.conn.join(batch)
            self._source._refresh_join_queue()


class _Slot:
    """One group of channels and the connection(s) reading them."""

    def __init__(self, source: TwitchSource, slot_id: int, channels: Iterable[str]) -> None:
        self.source = source
        self.id = slot_id
        self.wanted: dict[str, None] = dict.fromkeys(channels)
        self.failed: dict[str, str] = {}
        self._retry_at: dict[str, float] = {}
        # Failed channels whose JOIN merely went unanswered: see _forget_join_timeouts.
        self._timed_out: set[str] = set()
        self._retry_changed = asyncio.Event()
        self._join_progress = asyncio.Event()
        self.current: TwitchConnection | None = None
        self.successor: TwitchConnection | None = None
        self._joiners: dict[TwitchConnection, _Joiner] = {}
        self._handover: asyncio.Task[TwitchConnection | None] | None = None
        self._reconnect_asked: set[TwitchConnection] = set()
        self._dedup: _RecentIds | None = None
        self._generation = 0
        self._all_joined_logged = False
        self.status = ConnectionStatus.CONNECTING
        settings = source._settings
        self.backoff = ExponentialBackoff(
            settings.twitch_reconnect_base_s,
            settings.twitch_reconnect_max_s,
            reset_after_s=settings.twitch_reconnect_reset_after_s,
            max_attempts=settings.twitch_max_reconnect_attempts,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.stopped = False

    @property
    def name(self) -> str:
        return f"twitch-{self.id}"

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"{self.name}-supervisor"),
            asyncio.create_task(self._retry_failed(), name=f"{self.name}-retry"),
        ]

    async def stop(self) -> None:
        """Stop reconnecting, close the sockets, wait for the readers to finish a chunk."""
        self.stopped = True
        for task in self._tasks:
            task.cancel()
        if self._handover is not None:
            self._handover.cancel()
        conns = [c for c in (self.current, self.successor) if c is not None]
        conns.extend(self._joiners)
        for joiner in list(self._joiners.values()):
            joiner.stop()
        for conn in conns:
            conn.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._handover is not None:
            await asyncio.gather(self._handover, return_exceptions=True)
        for conn in dict.fromkeys(conns):
            await conn.disconnect()
        self._set_status(ConnectionStatus.DISCONNECTED)

    def cancel_deliveries(self) -> None:
        """Shutdown deadline passed: abandon chunks stuck in a blocked `deliver()`."""
        conns = {c for c in (self.current, self.successor) if c is not None}
        for conn in conns | self._joiners.keys():
            conn.cancel_reading()

    # --- connection life cycle ---------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            await self._supervise_forever()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.source._fail(exc)

    async def _supervise_forever(self) -> None:
        conn: TwitchConnection | None = None
        while True:
            if conn is None:
                conn = await self._connect_with_backoff()
                self._adopt(conn)
            cause = await conn.wait_closed()
            self._drop_joiner(conn)
            handover, self._handover = self._handover, None
            successor = await handover if handover is not None else None
            if successor is not None:
                if successor.is_connected():
                    self._promote(successor)
                    conn = successor
                    continue
                self._discard_successor(successor)
            if self.stopped or self.source._stopping:
                return
            self.current = None
            self._dedup = None
            self._forget_join_timeouts()
            healthy_for = 0.0
            if conn.logged_in_at is not None:
                healthy_for = asyncio.get_running_loop().time() - conn.logged_in_at
            self.backoff.connection_ended(healthy_for)
            label = _reconnect_cause(conn, cause)
            RECONNECTS.labels(cause=label).inc()
            delay = self.backoff.next_delay()
            log.warning(
                "twitch connection lost; reconnecting",
                connection=conn.name,
                cause=label,
                connected_for_s=round(healthy_for, 3),
                retry_in_s=round(delay, 3),
                hint=_HINTS.get(label),
            )
            self._set_status(ConnectionStatus.RECONNECTING)
            self.source._refresh_channel_metrics()
            conn = None
            await asyncio.sleep(delay)

    def _new_connection(self) -> TwitchConnection:
        self._generation += 1
        return self.source._make_connection(f"{self.name}.{self._generation}", self)

    async def _open_once(self) -> TwitchConnection:
        """One paced connection attempt; raises TwitchConnectError/AuthenticationError."""
        await self.source._pacer.wait_turn()
        conn = self._new_connection()
        try:
            await conn.connect()
        except TwitchAuthenticationError:
            raise
        except TwitchConnectError:
            self.backoff.record_failure()
            raise
        self.backoff.record_success()
        return conn

    async def _connect_with_backoff(self) -> TwitchConnection:
        while True:
            try:
                return await self._open_once()
            except TwitchConnectError as exc:
                RECONNECTS.labels(cause="connect_failed").inc()
                if self.backoff.exhausted:
                    raise TwitchGaveUp(
                        f"gave up on Twitch after {self.backoff.failures} failed connection "
                        "attempts in a row (TWITCH_MAX_RECONNECT_ATTEMPTS="
                        f"{self.backoff.max_attempts}); last error: {exc}"
                    ) from None
                delay = self.backoff.next_delay()
                log.warning(
                    "twitch connect failed; retrying",
                    connection=self.name,
                    error=str(exc),
                    attempt=self.backoff.failures,
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)

    def _adopt(self, conn: TwitchConnection) -> None:
        """`conn` just logged in as the slot's only connection: join everything."""
        self.current = conn
        self._all_joined_logged = False
        self._set_status(ConnectionStatus.CONNECTED)
        log.info("twitch connection ready", connection=conn.name, channels=len(self.wanted))
        self._start_joiner(conn).add(self._channels_to_join())
        if conn in self._reconnect_asked:
            self._begin_handover(conn)

    def _promote(self, successor: TwitchConnection) -> None:
        old = self.current
        self.current = successor
        self.successor = None
        if old is not None:
            self._drop_joiner(old)
            self._reconnect_asked.discard(old)
        dedup = self._dedup
        if dedup is not None:
            # The new socket may still hold lines the old one delivered: keep filtering
            # for one more overlap period, then stop paying for it on the hot path.
            grace = max(self.source._settings.twitch_reconnect_overlap_s, 1.0)
            dedup.expires_at = asyncio.get_running_loop().time() + grace
        self._set_status(ConnectionStatus.CONNECTED)
        self.source._refresh_channel_metrics()
        log.info("twitch reconnect hand-over complete", connection=successor.name)
        if successor in self._reconnect_asked:
            self._begin_handover(successor)

    def _forget_join_timeouts(self) -> None:
        """The connection died: JOINs it left unanswered are joined again on the next one.

        A stalled socket times its pending JOINs out before the keepalive declares it
        dead (join timeout < ping interval + pong timeout); that silence was the
        connection's, not the channel's, so waiting the retry interval would be wrong.
        Channels Twitch refused with a NOTICE keep their retry schedule.
        """
        for channel in self._timed_out:
            self._retry_at.pop(channel, None)
        self._timed_out.clear()
        self._retry_changed.set()

    def _channels_to_join(self) -> list[str]:
        # Failed channels wait for their retry timer; the rest are (re)joined now.
        return [c for c in self.wanted if c not in self._retry_at]

    def _start_joiner(self, conn: TwitchConnection) -> _Joiner:
        joiner = _Joiner(conn, self.source)
        self._joiners[conn] = joiner
        return joiner

    def _drop_joiner(self, conn: TwitchConnection) -> None:
        joiner = self._joiners.pop(conn, None)
        if joiner is not None:
            joiner.stop()

    # --- RECONNECT hand-over -------------------------------------------------------------

    def _begin_handover(self, old: TwitchConnection) -> None:
        if self._handover is not None or self.stopped or self.source._stopping:
            self._reconnect_asked.add(old)
            return
        self._reconnect_asked.discard(old)
        RECONNECTS.labels(cause="server_reconnect").inc()
        log.info("twitch asked us to reconnect; opening a replacement first", connection=old.name)
        # Filtering starts before the new socket joins anything: from its first JOIN on,
        # a line can arrive on both.
        self._dedup = _RecentIds(_DEDUP_CAPACITY)
        self._handover = asyncio.create_task(self._hand_over(old), name=f"{self.name}-handover")

    async def _hand_over(self, old: TwitchConnection) -> TwitchConnection | None:
        settings = self.source._settings
        loop = asyncio.get_running_loop()
        try:
            new = await self._open_once()
        except TwitchAuthenticationError as exc:
            self.source._fail(exc)
            return None
        except TwitchConnectError as exc:
            log.warning(
                "twitch replacement connection failed; falling back to reconnecting",
                connection=self.name,
                error=str(exc),
            )
            self._dedup = None
            return None
        self.successor = new
        self._start_joiner(new).add(self._channels_to_join())
        # Wait until the new connection reads everything the old one does (each wanted
        # channel joined or known-failed), bounded by the join timeout.
        deadline = loop.time() + settings.twitch_join_timeout_s * 2 + 1.0
        while not self._settled(new) and new.is_connected() and not old.is_closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._join_progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._join_progress.wait(), remaining)
        if not old.is_closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(old.wait_ended(), settings.twitch_reconnect_overlap_s)
        old.close(DisconnectCause.CLOSED)
        if not new.is_connected():
            self._discard_successor(new)
            return None
        return new

    def _discard_successor(self, conn: TwitchConnection) -> None:
        self._drop_joiner(conn)
        conn.close()
        if self.successor is conn:
            self.successor = None

    def _settled(self, conn: TwitchConnection) -> bool:
        joined = conn.session.joined_channels
        return all(c in joined or c in self.failed for c in self.wanted)

    # --- events from the connections -------------------------------------------------

    async def on_chat(
        self, conn: TwitchConnection, messages: list[IrcMessage], received_at_ms: int
    ) -> None:
        dedup = self._dedup
        if dedup is not None:
            if (
                dedup.expires_at is not None
                and asyncio.get_running_loop().time() >= dedup.expires_at
            ):
                self._dedup = None
            else:
                messages = dedup.fresh(messages)
                if not messages:
                    return
        await self.source._sink.deliver(messages, received_at_ms, self.source._room_ids)

    def on_event(self, conn: TwitchConnection, event: Event, received_at_ms: int) -> None:
        if isinstance(event, MalformedLine):
            self.source._malformed(event, received_at_ms)
        elif isinstance(event, RoomIdLearned):
            self.source._room_ids[event.channel] = event.room_id
        elif conn is not self.current and conn is not self.successor:
            return  # a connection on its way out
        elif isinstance(event, ChannelJoined):
            self._on_joined(conn, event.channel)
        elif isinstance(event, JoinFailed):
            self._timed_out.discard(event.channel)
            self._on_join_failed(event.channel, f"{event.reason_msg_id}: {event.text}")
        elif isinstance(event, JoinTimedOut):
            self._on_join_failed(
                event.channel, f"no JOIN echo within {event.waited_s:.3g} s (no reason given)"
            )
            if event.channel in self.failed:
                self._timed_out.add(event.channel)
        elif isinstance(event, ChannelParted):
            if event.channel in self.wanted:
                self._on_join_failed(event.channel, "parted by the server")
        elif isinstance(event, ReconnectRequested):
            if conn is self.current:
                self._begin_handover(conn)
            else:
                self._reconnect_asked.add(conn)

    def _on_joined(self, conn: TwitchConnection, channel: str) -> None:
        if channel not in self.wanted:
            conn.part([channel])  # removed while the JOIN was in flight
            return
        reason = self.failed.pop(channel, None)
        self._retry_at.pop(channel, None)
        self._timed_out.discard(channel)
        if reason is not None:
            log.info("twitch channel joined after failing", channel=channel, was=reason)
        self._join_progress.set()
        if conn is self.current:
            self.source._refresh_channel_metrics()
            if not self._all_joined_logged and self._settled(conn):
                self._all_joined_logged = True
                log.info(
                    "twitch channels joined",
                    connection=conn.name,
                    joined=len(conn.session.joined_channels),
                    failed=len(self.failed),
                )

    def _on_join_failed(self, channel: str, reason: str) -> None:
        if channel not in self.wanted:
            return
        previous = self.failed.get(channel)
        self.failed[channel] = reason
        retry_s = self.source._settings.twitch_join_retry_interval_s
        self._retry_at[channel] = asyncio.get_running_loop().time() + retry_s
        self._retry_changed.set()
        self._join_progress.set()
        if previous is None:
            log.warning(
                "twitch channel could not be joined; will retry",
                channel=channel,
                reason=reason,
                retry_in_s=retry_s,
            )
        self.source._refresh_channel_metrics()

    async def _retry_failed(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._retry_changed.clear()
            if not self._retry_at:
                await self._retry_changed.wait()
                continue
            now = loop.time()
            due = [c for c, at in self._retry_at.items() if at <= now]
            if not due:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._retry_changed.wait(), min(self._retry_at.values()) - now
                    )
                continue
            for channel in due:
                del self._retry_at[channel]
            # Not connected: the next (re)connect joins them, as they left _retry_at.
            for conn in (self.current, self.successor):
                joiner = self._joiners.get(conn) if conn is not None else None
                if joiner is not None:
                    joiner.add(due)

    # --- channel set changes ---------------------------------------------------------

    def add(self, channels: list[str]) -> None:
        for channel in channels:
            self.wanted[channel] = None
        self._all_joined_logged = False
        for joiner in list(self._joiners.values()):
            joiner.add(channels)

    def remove(self, channels: list[str]) -> None:
        for channel in channels:
            self.wanted.pop(channel, None)
            self.failed.pop(channel, None)
            self._retry_at.pop(channel, None)
            self._timed_out.discard(channel)
        for joiner in list(self._joiners.values()):
            joiner.discard(channels)
            joined = joiner.conn.session.joined_channels
            pending = joiner.conn.session.pending_joins
            leave = [c for c in channels if c in joined or c in pending]
            if leave:
                joiner.conn.part(leave)
        self.source._refresh_channel_metrics()

    # --- state ---------------------------------------------------------------------------

    def _set_status(self, status: ConnectionStatus) -> None:
        if status is not self.status:
            self.status = status
            self.source._refresh_connection_metrics()

    def joined_count(self) -> int:
        conn = self.current
        if conn is None or not conn.is_connected():
            return 0
        return len(conn.session.joined_channels)

    def is_ready(self) -> bool:
        conn = self.current
        return conn is not None and conn.is_connected() and self._settled(conn)

    def describe(self) -> dict[str, object]:
        conn = self.current
        joined = conn.session.joined_channels if conn is not None and conn.is_connected() else set()
        waiting = [c for c in self.wanted if c not in joined and c not in self.failed]
        return {
            "connection": self.name,
            "status": self.status.value,
            "channels": len(self.wanted),
            "joined": len(joined),
            "failed": len(self.failed),
            "not_yet_joined": waiting[:20],
            "handing_over": self.successor is not None,
        }


class TwitchSource:
    """Reads chat of a set of channels from Twitch and hands it to a `ChatSink`.

    ```
    source = TwitchSource(settings, sink)
    task = asyncio.create_task(source.run())   # raises TwitchAuthenticationError/TwitchGaveUp
    ...
    await source.stop()                         # stop reading, close sockets
    ```
    """

    def __init__(
        self,
        settings: Settings,
        sink: ChatSink,
        *,
        channels: Iterable[str] | None = None,
        join_limiter: JoinRateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._login = settings.twitch_login
        self._token = settings.twitch_oauth_token
        self._limiter = join_limiter or JoinRateLimiter(
            settings.twitch_join_rate_limit, settings.twitch_join_rate_window_s
        )
        self._pacer = _OpenPacer(settings.twitch_connection_open_interval_s)
        self._room_ids: dict[str, str] = {}
        self._slots: list[_Slot] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._retiring_slots: list[_Slot] = []
        self._next_slot_id = 1
        self._malformed_log = _MalformedLineLog()
        self._running = False
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._fatal: asyncio.Future[None] | None = None
        self._finished: asyncio.Event | None = None
        initial = settings.twitch_channel if channels is None else channels
        self._assign(_normalise_all(initial))

    def __repr__(self) -> str:
        return (
            f"TwitchSource(login={self._login!r}, channels={len(self.channels)}, "
            f"connections={len(self._slots)})"
        )

    # --- public API --------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """Every wanted channel, in the order they were added."""
        return [c for slot in self._slots for c in slot.wanted]

    @property
    def failed_channels(self) -> dict[str, str]:
        """Wanted channels Twitch refused or never confirmed → the reason (being retried)."""
        return {c: r for slot in self._slots for c, r in slot.failed.items()}

    @property
    def room_ids(self) -> Mapping[str, str]:
        return self._room_ids

    async def run(self) -> None:
        """Connect, join and deliver chat until `stop()`.

        Raises `TwitchAuthenticationError` (credentials rejected, no retry),
        `TwitchGaveUp` (too many failed reconnects) or whatever the sink raised.
        """
        if self._running:
            raise RuntimeError("TwitchSource.run() is already running")
        self._running = True
        loop = asyncio.get_running_loop()
        self._stop_requested = self._stop_requested or asyncio.Event()
        self._fatal = loop.create_future()
        self._finished = asyncio.Event()
        log.info(
            "twitch source starting",
            login=self._login,
            anonymous=self._settings.is_anonymous,
            channels=len(self.channels),
            connections=len(self._slots),
            host=f"{self._settings.twitch_irc_host}:{self._settings.twitch_irc_port}",
        )
        for slot in self._slots:
            slot.start()
        self._refresh_connection_metrics()
        stop_wait = asyncio.create_task(self._wait_stop_requested())
        try:
            await asyncio.wait([self._fatal, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            self._stopping = True
            await asyncio.gather(
                *(slot.stop() for slot in self._slots), *self._retiring, return_exceptions=True
            )
            self._refresh_connection_metrics()
            self._refresh_channel_metrics()
            self._finished.set()
            log.info("twitch source stopped")
        if self._fatal.done() and not self._fatal.cancelled():
            self._fatal.result()

    async def _wait_stop_requested(self) -> None:
        assert self._stop_requested is not None
        await self._stop_requested.wait()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop reading and close every socket; returns once `run()` has wound down.

        A chunk being delivered when stop() is called is still delivered. If the sink
        is still blocked after `grace_s` seconds (None: wait as long as it takes), those
        chunks are abandoned — cancelled inside `deliver()` — so shutdown can go on.
        """
        if self._stop_requested is None:
            self._stop_requested = asyncio.Event()
        self._stop_requested.set()
        finished = self._finished
        if finished is None:
            return
        if grace_s is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), grace_s)
            if not finished.is_set():
                log.warning(
                    "twitch source: sink still blocked at shutdown; abandoning chunks",
                    grace_s=grace_s,
                )
                for slot in [*self._slots, *self._retiring_slots]:
                    slot.cancel_deliveries()
        await finished.wait()

    def add_channels(self, channels: Iterable[str]) -> None:
        """Start reading more channels (joined through the limiter when running)."""
        wanted = set(self.channels)
        new = [c for c in _normalise_all(channels) if c not in wanted]
        if new:
            log.info("twitch channels added", count=len(new))
            self._assign(new)

    def remove_channels(self, channels: Iterable[str]) -> None:
        """Stop reading channels (PART them); a slot left empty closes its connection."""
        gone = set(_normalise_all(channels))
        if not gone:
            return
        for slot in list(self._slots):
            mine = [c for c in slot.wanted if c in gone]
            if not mine:
                continue
            slot.remove(mine)
            if not slot.wanted:
                self._slots.remove(slot)
                if self._running:
                    retiring = asyncio.get_running_loop().create_task(slot.stop())
                    self._retiring.add(retiring)
                    self._retiring_slots.append(slot)
                    retiring.add_done_callback(self._retire_done(slot))
        log.info("twitch channels removed", count=len(gone))
        self._refresh_connection_metrics()
        self._refresh_channel_metrics()

    def is_ready(self) -> bool:
        """Every connection logged in and every wanted channel joined or known-failed."""
        return self._running and not self._stopping and all(s.is_ready() for s in self._slots)

    def connection_statuses(self) -> dict[str, ConnectionStatus]:
        return {slot.name: slot.status for slot in self._slots}

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot for /readyz and logs (no secrets)."""
        failed = self.failed_channels
        return {
            "ready": self.is_ready(),
            "channels": len(self.channels),
            "channels_joined": sum(slot.joined_count() for slot in self._slots),
            "channels_failed": failed,
            "join_queue": self._join_queue_length(),
            "connections": [slot.describe() for slot in self._slots],
        }

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """`(ready, details)` in the shape `HealthServer` expects."""
        return self.is_ready(), self.status()

    # --- internals -----------------------------------------------------------------------

    def _assign(self, channels: list[str]) -> None:
        per_connection = self._settings.twitch_channels_per_connection
        remaining = list(channels)
        for slot in self._slots:
            room = per_connection - len(slot.wanted)
            if room > 0 and remaining and not slot.stopped:
                slot.add(remaining[:room])
                remaining = remaining[room:]
        while remaining:
            slot = _Slot(self, self._next_slot_id, remaining[:per_connection])
            self._next_slot_id += 1
            remaining = remaining[per_connection:]
            self._slots.append(slot)
            if self._running and not self._stopping:
                slot.start()
        self._refresh_connection_metrics()

    def _retire_done(self, slot: _Slot) -> Callable[[asyncio.Task[None]], None]:
        def forget(task: asyncio.Task[None]) -> None:
            self._retiring.discard(task)
            self._retiring_slots.remove(slot)

        return forget

    def _make_connection(self, name: str, slot: _Slot) -> TwitchConnection:
        settings = self._settings
        token = self._token.get_secret_value() if self._token is not None else None
        return TwitchConnection(
            name=name,
            host=settings.twitch_irc_host,
            port=settings.twitch_irc_port,
            tls=settings.twitch_irc_tls,
            login=self._login,
            token=token,
            on_chat=slot.on_chat,
            on_event=slot.on_event,
            connect_timeout_s=settings.twitch_connect_timeout_s,
            login_timeout_s=settings.twitch_login_timeout_s,
            ping_interval_s=settings.twitch_ping_interval_s,
            pong_timeout_s=settings.twitch_pong_timeout_s,
            join_timeout_s=settings.twitch_join_timeout_s,
            read_buffer_bytes=settings.twitch_read_buffer_bytes,
        )

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is not None and not self._fatal.done():
            if isinstance(exc, TwitchAuthenticationError):
                log.error(
                    "twitch rejected the credentials", login=self._login, notice=exc.notice_text
                )
            elif isinstance(exc, TwitchGaveUp):
                log.error("twitch source gave up", error=str(exc))
            self._fatal.set_exception(exc)

    def _malformed(self, event: MalformedLine, received_at_ms: int) -> None:
        self._malformed_log.record(event.raw, event.reason, time.monotonic())
        self._sink.dead_letter(event.raw, event.reason, received_at_ms)

    def _join_queue_length(self) -> int:
        return sum(len(j.queue) for slot in self._slots for j in slot._joiners.values())

    def _refresh_join_queue(self) -> None:
        JOIN_QUEUE_LENGTH.set(self._join_queue_length())

    def _refresh_channel_metrics(self) -> None:
        CHANNELS_JOINED.set(sum(slot.joined_count() for slot in self._slots))
        CHANNELS_FAILED.set(sum(len(slot.failed) for slot in self._slots))

    def _refresh_connection_metrics(self) -> None:
        counts = dict.fromkeys(ConnectionStatus, 0)
        for slot in self._slots:
            counts[slot.status] += 1
        for status, count in counts.items():
            CONNECTION_STATES.labels(state=status.value).set(count)

    def joined_channels(self) -> frozenset[str]:
        """Channels joined on a live connection now (provisional, for the fleet report)."""
        joined: set[str] = set()
        for slot in self._slots:
            conn = slot.current
            if conn is not None and conn.is_connected():
                joined.update(conn.session.joined_channels)
        return frozenset(joined)


def _normalise_all(channels: Iterable[str]) -> list[str]:
    """Lower-case logins without `#`, deduplicated; ValueError for anything else.

    A comma or space in a "channel" would split the JOIN line into something else.
    """
    logins = dict.fromkeys(c.strip().removeprefix("#").lower() for c in channels if c.strip())
    invalid = [login for login in logins if not _CHANNEL_LOGIN.fullmatch(login)]
    if invalid:
        raise ValueError(
            f"not Twitch channel logins (1-25 letters, digits or underscores): {invalid[:5]}"
        )
    return list(logins)
