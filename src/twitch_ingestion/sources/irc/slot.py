"""One slot of the pool: a group of channels and the connection(s) reading them.

A slot keeps one live connection for its channels: it connects (paced across the pool),
joins everything through the account-wide JOIN limiter, reconnects with backoff after a
disconnect, retries channels Twitch would not join, and on a server RECONNECT opens and
joins a replacement before it drops the old connection, de-duplicating the overlap.

What to decide is `twitch.pool_policy` (pure, tested with a fake clock); this module is
the asyncio shell that carries it out. Everything a slot uses but does not own comes in
one explicit `SlotContext`, and connections are anything shaped like `PoolConnection`,
so the orchestration is tested without sockets (tests/unit/test_pool_shell.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from twitch_ingestion.metrics import RECONNECTS
from twitch_ingestion.sources.irc.backoff import ExponentialBackoff
from twitch_ingestion.sources.irc.connection import (
    DisconnectCause,
    TwitchAuthenticationError,
    TwitchConnectError,
    TwitchError,
)
from twitch_ingestion.sources.irc.dedup import RecentIds
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter
from twitch_ingestion.sources.irc.open_pacer import OpenPacer
from twitch_ingestion.sources.irc.pool_policy import (
    RECONNECT_HINTS,
    ChannelPlan,
    HandoverPlan,
    HandoverStep,
    JoinOutcome,
    reconnect_cause,
)
from twitch_ingestion.sources.irc.session import (
    ChannelJoined,
    ChannelParted,
    ConnectionStatus,
    Event,
    JoinFailed,
    JoinTimedOut,
    MalformedLine,
    ReconnectRequested,
    RoomIdLearned,
    TwitchSession,
)

__all__ = [
    "ChatSink",
    "ConnectionFactory",
    "PoolConnection",
    "Slot",
    "SlotChatHandler",
    "SlotContext",
    "SlotEventHandler",
    "TwitchGaveUp",
]

log = structlog.get_logger(__name__)

# Most channels one JOIN round may take from the limiter; the session splits them into
# 512-byte lines. Bounded so one slot's backlog cannot hold the limiter's lock for a
# whole window while the other slots wait.
_MAX_JOIN_BATCH = 20
# Channels listed per connection in status() (a slot can hold hundreds).
_STATUS_WAITING_SHOWN = 20


class ChatSink(Protocol):
    """Where a slot hands what it reads: `records.IrcRecordEncoder`, which turns each chunk
    into records for the `RecordSink` (the slot never sees Kafka)."""

    async def deliver(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        """Take one chunk's chat lines, in order. May block: that connection stops reading
        until it returns (backpressure). `room_ids` maps channel login → room id."""

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        """Keep a line that could not be decoded or parsed (exact bytes, no line end)."""


class TwitchGaveUp(TwitchError):  # noqa: N818 - the name the service and docs use
    """`twitch_max_reconnect_attempts` connection attempts in a row failed."""


class PoolConnection(Protocol):
    """What a slot uses of a connection: `TwitchConnection`, or a fake in tests."""

    name: str
    session: TwitchSession
    logged_in_at: float | None

    async def connect(self) -> None: ...
    def join(self, channels: Iterable[str]) -> None: ...
    def part(self, channels: Iterable[str]) -> None: ...
    def close(self, cause: DisconnectCause = DisconnectCause.CLOSED) -> None: ...
    async def disconnect(self) -> None: ...
    async def wait_closed(self) -> DisconnectCause: ...
    async def wait_ended(self) -> None: ...
    def cancel_reading(self) -> None: ...
    def is_connected(self) -> bool: ...
    @property
    def is_closing(self) -> bool: ...


SlotChatHandler = Callable[[PoolConnection, Sequence[IrcMessage], int], Awaitable[None]]
SlotEventHandler = Callable[[PoolConnection, Event, int], None]
ConnectionFactory = Callable[[str, SlotChatHandler, SlotEventHandler], PoolConnection]
"""`(name, on_chat, on_event)` → a new, not yet connected connection."""


@dataclass(frozen=True, slots=True)
class SlotContext:
    """Everything a slot uses that it does not own, handed over explicitly by the pool."""

    sink: ChatSink
    # Shared by every slot: a channel's room id is learned on whichever socket joins it.
    room_ids: dict[str, str]
    limiter: JoinRateLimiter
    pacer: OpenPacer
    open_connection: ConnectionFactory
    new_backoff: Callable[[], ExponentialBackoff]
    join_retry_interval_s: float
    join_timeout_s: float
    reconnect_overlap_s: float
    # Reports back to the pool.
    malformed: Callable[[MalformedLine, int], None]
    fatal: Callable[[BaseException], None]
    is_stopping: Callable[[], bool]
    channels_changed: Callable[[], None]
    status_changed: Callable[[], None]
    join_queue_changed: Callable[[], None]


class _Joiner:
    """Feeds one connection's JOINs through the shared limiter, in batches."""

    def __init__(
        self, conn: PoolConnection, limiter: JoinRateLimiter, changed: Callable[[], None]
    ) -> None:
        self.conn = conn
        self._limiter = limiter
        self._changed = changed
        self.queue: dict[str, None] = {}
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"{conn.name}-joiner")

    def add(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.queue[channel] = None
        if self.queue:
            self._wakeup.set()
        self._changed()

    def discard(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.queue.pop(channel, None)
        self._changed()

    def stop(self) -> None:
        self._task.cancel()
        self.queue.clear()
        self._changed()

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            granted = await self._limiter.acquire(min(len(self.queue), _MAX_JOIN_BATCH))
            # The queue may have shrunk while we waited (removed channels); the unused
            # slots are simply not used.
            batch = list(self.queue)[:granted]
            for channel in batch:
                del self.queue[channel]
            if batch:
                self.conn.join(batch)
            self._changed()


class Slot:
    """One group of channels and the connection(s) reading them.

    The channel bookkeeping is `self.plan` (pure); this class runs the sockets and the
    timers around it.
    """

    def __init__(self, ctx: SlotContext, slot_id: int, channels: Iterable[str]) -> None:
        self._ctx = ctx
        # Bound once: on_chat runs per chunk on the hot path.
        self._deliver = ctx.sink.deliver
        self._room_ids = ctx.room_ids
        self.id = slot_id
        self.plan = ChannelPlan(channels, ctx.join_retry_interval_s)
        self._retry_changed = asyncio.Event()
        # Set on every JOIN answer and when the old connection of a hand-over ends.
        self._handover_wakeup = asyncio.Event()
        self.current: PoolConnection | None = None
        self.successor: PoolConnection | None = None
        self._joiners: dict[PoolConnection, _Joiner] = {}
        self._handover: asyncio.Task[PoolConnection | None] | None = None
        self._handover_plan: HandoverPlan | None = None
        self._reconnect_asked: set[PoolConnection] = set()
        self._dedup: RecentIds | None = None
        self._generation = 0
        self._all_joined_logged = False
        self.status = ConnectionStatus.CONNECTING
        self.backoff = ctx.new_backoff()
        self._tasks: list[asyncio.Task[None]] = []
        self.stopped = False

    @property
    def name(self) -> str:
        return f"twitch-{self.id}"

    @property
    def wanted(self) -> dict[str, None]:
        return self.plan.wanted

    @property
    def failed(self) -> dict[str, str]:
        return self.plan.failed

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

    def _halting(self) -> bool:
        return self.stopped or self._ctx.is_stopping()

    # --- connection life cycle ---------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            await self._supervise_forever()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._ctx.fatal(exc)

    async def _supervise_forever(self) -> None:
        conn: PoolConnection | None = None
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
            if self._halting():
                return
            self.current = None
            self._dedup = None
            self.plan.connection_lost()
            self._retry_changed.set()
            healthy_for = 0.0
            if conn.logged_in_at is not None:
                healthy_for = asyncio.get_running_loop().time() - conn.logged_in_at
            self.backoff.connection_ended(healthy_for)
            label = reconnect_cause(cause, joins_pending=bool(conn.session.pending_joins))
            RECONNECTS.labels(cause=label).inc()
            delay = self.backoff.next_delay()
            log.warning(
                "twitch connection lost",
                connection=conn.name,
                cause=label,
                connected_for_s=round(healthy_for, 3),
                retry_in_s=round(delay, 3),
                hint=RECONNECT_HINTS.get(label),
                action="reconnecting",
            )
            self._set_status(ConnectionStatus.RECONNECTING)
            self._ctx.channels_changed()
            conn = None
            await asyncio.sleep(delay)

    def _new_connection(self) -> PoolConnection:
        self._generation += 1
        return self._ctx.open_connection(
            f"{self.name}.{self._generation}", self.on_chat, self.on_event
        )

    async def _open_once(self) -> PoolConnection:
        """One paced connection attempt; raises TwitchConnectError/AuthenticationError."""
        await self._ctx.pacer.wait_turn()
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

    async def _connect_with_backoff(self) -> PoolConnection:
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
                    "twitch connect failed",
                    connection=self.name,
                    error=str(exc),
                    attempt=self.backoff.failures,
                    retry_in_s=round(delay, 3),
                    action="retrying",
                )
                await asyncio.sleep(delay)

    def _adopt(self, conn: PoolConnection) -> None:
        """`conn` just logged in as the slot's only connection: join everything."""
        self.current = conn
        self._all_joined_logged = False
        self._set_status(ConnectionStatus.CONNECTED)
        log.info("twitch connection ready", connection=conn.name, channels=len(self.wanted))
        self._start_joiner(conn).add(self.plan.to_join())
        if conn in self._reconnect_asked:
            self._begin_handover(conn)

    def _promote(self, successor: PoolConnection) -> None:
        old = self.current
        self.current = successor
        self.successor = None
        if old is not None:
            self._drop_joiner(old)
            self._reconnect_asked.discard(old)
        dedup, plan = self._dedup, self._handover_plan
        if dedup is not None:
            if plan is None:
                self._dedup = None
            else:
                # The new socket may still hold lines the old one delivered: keep
                # filtering a little longer, then stop paying for it on the hot path.
                dedup.expires_at = plan.dedup_expires_at(asyncio.get_running_loop().time())
        self._handover_plan = None
        self._set_status(ConnectionStatus.CONNECTED)
        self._ctx.channels_changed()
        log.info("twitch reconnect hand-over complete", connection=successor.name)
        if successor in self._reconnect_asked:
            self._begin_handover(successor)

    def _start_joiner(self, conn: PoolConnection) -> _Joiner:
        joiner = _Joiner(conn, self._ctx.limiter, self._ctx.join_queue_changed)
        self._joiners[conn] = joiner
        return joiner

    def _drop_joiner(self, conn: PoolConnection) -> None:
        joiner = self._joiners.pop(conn, None)
        if joiner is not None:
            joiner.stop()

    # --- RECONNECT hand-over -------------------------------------------------------------

    def _begin_handover(self, old: PoolConnection) -> None:
        if self._handover is not None or self._halting():
            self._reconnect_asked.add(old)
            return
        self._reconnect_asked.discard(old)
        RECONNECTS.labels(cause="server_reconnect").inc()
        log.info(
            "twitch asked us to reconnect",
            connection=old.name,
            action="opening a replacement first",
        )
        # Filtering starts before the new socket joins anything: from its first JOIN on,
        # a line can arrive on both.
        self._dedup = RecentIds()
        self._handover_plan = HandoverPlan(self._ctx.join_timeout_s, self._ctx.reconnect_overlap_s)
        self._handover = asyncio.create_task(
            self._hand_over(old, self._handover_plan), name=f"{self.name}-handover"
        )

    async def _hand_over(self, old: PoolConnection, plan: HandoverPlan) -> PoolConnection | None:
        loop = asyncio.get_running_loop()
        try:
            new = await self._open_once()
        except TwitchAuthenticationError as exc:
            self._ctx.fatal(exc)
            return None
        except TwitchConnectError as exc:
            log.warning(
                "twitch replacement connection failed",
                connection=self.name,
                error=str(exc),
                action="falling back to reconnecting",
            )
            self._dedup = None
            self._handover_plan = None
            return None
        self.successor = new
        self._start_joiner(new).add(self.plan.to_join())
        plan.successor_opened(loop.time())
        old_ended = asyncio.create_task(old.wait_ended(), name=f"{old.name}-ended")
        old_ended.add_done_callback(lambda _: self._handover_wakeup.set())
        try:
            while True:
                self._handover_wakeup.clear()
                step, until = plan.step(
                    loop.time(),
                    settled=self.plan.settled(new.session.joined_channels),
                    successor_alive=new.is_connected(),
                    old_closing=old.is_closing,
                )
                if step is HandoverStep.DROP_OLD:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._handover_wakeup.wait(), until - loop.time())
        finally:
            old_ended.cancel()
        old.close(DisconnectCause.CLOSED)
        if not new.is_connected():
            self._discard_successor(new)
            return None
        return new

    def _discard_successor(self, conn: PoolConnection) -> None:
        self._drop_joiner(conn)
        conn.close()
        if self.successor is conn:
            self.successor = None
        self._handover_plan = None

    # --- events from the connections -------------------------------------------------

    async def on_chat(
        self, conn: PoolConnection, messages: Sequence[IrcMessage], received_at_ms: int
    ) -> None:
        dedup = self._dedup
        if dedup is not None:
            if dedup.expires_at is not None and dedup.expired(asyncio.get_running_loop().time()):
                self._dedup = None
            else:
                messages = dedup.fresh(messages)
                if not messages:
                    return
        await self._deliver(messages, received_at_ms, self._room_ids)

    def on_event(self, conn: PoolConnection, event: Event, received_at_ms: int) -> None:
        if isinstance(event, MalformedLine):
            self._ctx.malformed(event, received_at_ms)
        elif isinstance(event, RoomIdLearned):
            self._ctx.room_ids[event.channel] = event.room_id
        elif conn is not self.current and conn is not self.successor:
            return  # a connection on its way out
        elif isinstance(event, ChannelJoined):
            self._on_joined(conn, event.channel)
        elif isinstance(event, JoinFailed):
            now = asyncio.get_running_loop().time()
            reason = f"{event.reason_msg_id}: {event.text}"
            self._join_failed(event.channel, reason, self.plan.refused(event.channel, reason, now))
        elif isinstance(event, JoinTimedOut):
            now = asyncio.get_running_loop().time()
            reason = f"no JOIN echo within {event.waited_s:.3g} s (no reason given)"
            first = self.plan.timed_out(event.channel, reason, now)
            self._join_failed(event.channel, reason, first)
        elif isinstance(event, ChannelParted):
            first = self.plan.parted(event.channel, asyncio.get_running_loop().time())
            self._join_failed(event.channel, self.plan.failed.get(event.channel), first)
        elif isinstance(event, ReconnectRequested):
            if conn is self.current:
                self._begin_handover(conn)
            else:
                self._reconnect_asked.add(conn)

    def _on_joined(self, conn: PoolConnection, channel: str) -> None:
        was = self.plan.failed.get(channel)
        outcome = self.plan.joined(channel)
        if outcome is JoinOutcome.UNWANTED:
            conn.part([channel])  # removed while the JOIN was in flight
            return
        if outcome is JoinOutcome.RECOVERED:
            log.info("twitch channel joined after failing", channel=channel, was=was)
        self._handover_wakeup.set()
        if conn is self.current:
            self._ctx.channels_changed()
            if not self._all_joined_logged and self.plan.settled(conn.session.joined_channels):
                self._all_joined_logged = True
                log.info(
                    "twitch channels joined",
                    connection=conn.name,
                    joined=len(conn.session.joined_channels),
                    failed=len(self.plan.failed),
                )

    def _join_failed(self, channel: str, reason: str | None, first: bool) -> None:
        if channel not in self.plan.wanted:
            return
        self._retry_changed.set()
        self._handover_wakeup.set()
        if first:
            log.warning(
                "twitch channel could not be joined",
                channel=channel,
                reason=reason,
                retry_in_s=self.plan.retry_interval_s,
                action="will retry",
            )
        self._ctx.channels_changed()

    async def _retry_failed(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._retry_changed.clear()
            retry_at = self.plan.next_retry_at()
            if retry_at is None:
                await self._retry_changed.wait()
                continue
            due = self.plan.take_due(loop.time())
            if not due:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_changed.wait(), retry_at - loop.time())
                continue
            # Not connected: the next (re)connect joins them, as they left the schedule.
            for conn in (self.current, self.successor):
                joiner = self._joiners.get(conn) if conn is not None else None
                if joiner is not None:
                    joiner.add(due)

    # --- channel set changes ---------------------------------------------------------

    def add(self, channels: list[str]) -> None:
        self.plan.add(channels)
        self._all_joined_logged = False
        for joiner in list(self._joiners.values()):
            joiner.add(channels)

    def remove(self, channels: list[str]) -> None:
        self.plan.remove(channels)
        for joiner in list(self._joiners.values()):
            joiner.discard(channels)
            joined = joiner.conn.session.joined_channels
            pending = joiner.conn.session.pending_joins
            leave = [c for c in channels if c in joined or c in pending]
            if leave:
                joiner.conn.part(leave)
        self._ctx.channels_changed()

    # --- state ---------------------------------------------------------------------------

    def _set_status(self, status: ConnectionStatus) -> None:
        if status is not self.status:
            self.status = status
            self._ctx.status_changed()

    def joined(self) -> frozenset[str]:
        """Channels Twitch confirmed on a live connection of this slot (old or new)."""
        live = [
            c.session.joined_channels
            for c in (self.current, self.successor)
            if c is not None and c.is_connected()
        ]
        return frozenset().union(*live) & self.plan.wanted.keys()

    def joined_count(self) -> int:
        conn = self.current
        if conn is None or not conn.is_connected():
            return 0
        return len(conn.session.joined_channels)

    def join_queue_length(self) -> int:
        return sum(len(joiner.queue) for joiner in self._joiners.values())

    def is_ready(self) -> bool:
        conn = self.current
        return (
            conn is not None
            and conn.is_connected()
            and self.plan.settled(conn.session.joined_channels)
        )

    def describe(self) -> dict[str, object]:
        conn = self.current
        joined = conn.session.joined_channels if conn is not None and conn.is_connected() else set()
        return {
            "connection": self.name,
            "status": self.status.value,
            "channels": len(self.wanted),
            "joined": len(joined),
            "failed": len(self.failed),
            "not_yet_joined": self.plan.not_yet_joined(joined)[:_STATUS_WAITING_SHOWN],
            "handing_over": self.successor is not None,
        }
