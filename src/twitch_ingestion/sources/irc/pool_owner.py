"""The IRC pool's one owner: every change to the pool is a command, handled here in order.

twitch-irc-rs has one task own its pool and process a command enum; this is that shape
for one asyncio loop. `PoolOwner.submit` queues a `pool_commands` command and handles
the queue one command at a time, each to completion before the next; a handler never
awaits. Everything that must wait — opening a socket (paced, with backoff), the JOIN
limiter, a connection's end — is a small task of `pool_io` that only waits and reports
back with a command, and a deadline is a loop timer that submits one. So the slots
(`slot.Slot`, plain data) and the room-id map are written in exactly one place, and the
decisions are `pool_policy`'s.

Why the queue is drained by whoever submits rather than by a task of its own: on one
event loop a handler that never awaits is already atomic, and a consumer task would put
a loop turn between a command and its effect. The service's calls (`add_channels`,
`remove_channels`) would then return before taking effect, and a chunk's ROOMSTATE
would no longer be applied before the chat lines read with it are encoded. A command
submitted while another is being handled waits its turn in the queue.

Chat itself does not go through the queue: each connection hands its chunks straight to
its slot's `ChunkRoute` (the hot path), which applies what the owner set on it.

Longer than this codebase's modules usually are, on purpose: every write to the pool's
state is in this one class, so the one-owner rule can be checked by reading one file.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from itertools import islice
from types import MappingProxyType
from typing import Any

import structlog
from pydantic import SecretStr

from twitch_ingestion.metrics import (
    CHANNELS_FAILED,
    CHANNELS_JOINED,
    CONNECTION_STATES,
    JOIN_QUEUE_LENGTH,
    RECONNECTS,
)
from twitch_ingestion.sources.common.backoff import ExponentialBackoff
from twitch_ingestion.sources.irc.chunk_route import ChatSink, ChunkRoute
from twitch_ingestion.sources.irc.connection import (
    DisconnectCause,
    TwitchAuthenticationError,
)
from twitch_ingestion.sources.irc.dedup import RecentIds
from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter
from twitch_ingestion.sources.irc.malformed_log import MalformedLineLog
from twitch_ingestion.sources.irc.open_pacer import OpenPacer
from twitch_ingestion.sources.irc.pool_commands import (
    ConnectFailed,
    ConnectionEnded,
    ConnectionEvent,
    ConnectionOpened,
    HandoverCheck,
    JoinChannels,
    JoinTurn,
    PartChannels,
    PoolCommand,
    RetryDue,
    UseToken,
)
from twitch_ingestion.sources.irc.pool_io import PoolIO
from twitch_ingestion.sources.irc.pool_policy import (
    RECONNECT_HINTS,
    ChannelPlan,
    HandoverPlan,
    HandoverStep,
    JoinOutcome,
    assign_channels,
    reconnect_cause,
)
from twitch_ingestion.sources.irc.session import (
    ChannelJoined,
    ChannelParted,
    ConnectionStatus,
    JoinFailed,
    JoinTimedOut,
    MalformedLine,
    ReconnectRequested,
    RoomIdLearned,
)
from twitch_ingestion.sources.irc.slot import (
    ConnectionFactory,
    Handover,
    HandoverPhase,
    JoinQueue,
    PoolConnection,
    Slot,
    TwitchGaveUp,
)

__all__ = ["PoolOwner"]

log = structlog.get_logger(__name__)


class PoolOwner:
    """Owns the slots of one `TwitchSource` and changes them only through `submit`."""

    def __init__(
        self,
        *,
        login: str,
        sink: ChatSink,
        channels: Iterable[str],
        per_connection: int,
        limiter: JoinRateLimiter,
        pacer: OpenPacer,
        open_connection: ConnectionFactory,
        new_backoff: Callable[[], ExponentialBackoff],
        join_retry_interval_s: float,
        join_timeout_s: float,
        reconnect_overlap_s: float,
        token: SecretStr | None,
    ) -> None:
        self._login = login
        self._sink = sink
        self._per_connection = per_connection
        self._io = PoolIO(
            submit=self.submit,
            fail=self._fail,
            open_connection=open_connection,
            pacer=pacer,
            limiter=limiter,
        )
        self._new_backoff = new_backoff
        self._join_retry_interval_s = join_retry_interval_s
        self._join_timeout_s = join_timeout_s
        self._reconnect_overlap_s = reconnect_overlap_s
        self.token = token
        """What new connections log in with (read by the connection factory)."""
        # A channel's room id is learned on whichever socket joins it; every route
        # reads it through the same read-only view.
        self._room_ids: dict[str, str] = {}
        self.room_ids: Mapping[str, str] = MappingProxyType(self._room_ids)
        self._malformed_log = MalformedLineLog()
        self.slots: list[Slot] = []
        self._by_id: dict[int, Slot] = {}
        self._retiring: dict[Slot, asyncio.Task[None]] = {}
        self._next_slot_id = 1
        self._queue: deque[PoolCommand] = deque()
        self._draining = False
        self._gauges_stale = False
        self.running = False
        self.stopping = False
        self._fatal: asyncio.Future[None] | None = None
        self._assign(list(channels))
        self._refresh_gauges()

    # --- the queue -------------------------------------------------------------------------

    def submit(self, command: PoolCommand) -> None:
        """Handle `command` after those already queued; returns once the queue is empty.

        A handler that raises is a bug: while running it ends `run()` with that error
        (as a failing sink does); before, it is raised to the caller.
        """
        self._queue.append(command)
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                try:
                    self._handle(self._queue.popleft())
                except Exception as exc:
                    if self._fatal is None:
                        raise
                    self._fail(exc)
        finally:
            self._draining = False
            if self._gauges_stale:
                self._refresh_gauges()

    def _handle(self, command: PoolCommand) -> None:
        match command:
            case ConnectionEvent():
                self._on_connection_event(command)
            case JoinTurn():
                self._on_join_turn(command)
            case ConnectionOpened():
                self._on_connection_opened(command)
            case ConnectFailed():
                self._on_connect_failed(command)
            case ConnectionEnded():
                self._on_connection_ended(command)
            case RetryDue():
                self._on_retry_due(command)
            case HandoverCheck():
                slot = self._by_id.get(command.slot_id)
                if slot is not None:
                    self._step_handover(slot)
            case JoinChannels():
                self._on_join_channels(command)
            case PartChannels():
                self._on_part_channels(command)
            case UseToken():
                self.token = command.token

    # --- life cycle (called by TwitchSource.run) ------------------------------------------

    def start(self) -> asyncio.Future[None]:
        """Open every slot's connection; the future fails with what ends the pool."""
        self.running = True
        self._fatal = asyncio.get_running_loop().create_future()
        for slot in self.slots:
            self._connect(slot, 0.0, replacement=False)
        self._refresh_gauges()
        return self._fatal

    async def shutdown(self) -> None:
        """Stop reconnecting, close every socket, wait until each reader finished its chunk."""
        self.stopping = True
        closing = [self._halt(slot) for slot in self.slots]
        await asyncio.gather(*closing, *self._retiring.values(), return_exceptions=True)
        self._refresh_gauges()

    def cancel_deliveries(self) -> None:
        """Shutdown deadline passed: abandon chunks stuck in a blocked `deliver()`."""
        for slot in [*self.slots, *self._retiring]:
            for conn in slot.connections():
                conn.cancel_reading()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None or self._fatal.done():
            return
        if isinstance(exc, TwitchAuthenticationError):
            log.error("twitch rejected the credentials", login=self._login, notice=exc.notice_text)
        elif isinstance(exc, TwitchGaveUp):
            log.error("twitch source gave up", error=str(exc))
        self._fatal.set_exception(exc)

    def _halt(self, slot: Slot) -> Coroutine[Any, Any, None]:
        """Stop the slot's I/O now; the awaitable waits until its sockets are closed."""
        slot.stopped = True
        if slot.retry_timer is not None:
            slot.retry_timer.cancel()
        if slot.handover is not None and slot.handover.timer is not None:
            slot.handover.timer.cancel()
        tasks = [q.task for q in slot.join_queues.values() if q.task is not None]
        tasks.extend(slot.watchers.values())
        if slot.connecting is not None:
            tasks.append(slot.connecting)
        conns = slot.connections()
        for conn in list(slot.join_queues):
            self._close_join_queue(slot, conn)
        for task in tasks:
            task.cancel()
        for conn in conns:
            conn.close()
        self._set_status(slot, ConnectionStatus.DISCONNECTED)
        return self._io.closed(tasks, conns)

    # --- the channel set -----------------------------------------------------------------

    def _on_join_channels(self, command: JoinChannels) -> None:
        wanted = {c for slot in self.slots for c in slot.wanted}
        new = [c for c in command.channels if c not in wanted]
        if new:
            log.info("twitch channels added", count=len(new))
            self._assign(new)

    def _assign(self, channels: list[str]) -> None:
        open_slots = [(slot.id, len(slot.wanted)) for slot in self.slots if not slot.stopped]
        plan = assign_channels(open_slots, channels, self._per_connection)
        for slot in self.slots:
            if slot.id in plan.into_existing:
                added = plan.into_existing[slot.id]
                slot.plan.add(added)
                slot.all_joined_logged = False
                for queue in slot.join_queues.values():
                    self._queue_joins(queue, added)
        for group in plan.new_slots:
            slot = Slot(
                self._next_slot_id,
                ChannelPlan(group, self._join_retry_interval_s),
                # The map itself, typed read-only: a proxy's get() costs ~0.1 µs more
                # per line that lacks a room-id tag, on the hot path.
                ChunkRoute(self._sink, self._room_ids),
                self._new_backoff(),
            )
            self._next_slot_id += 1
            self.slots.append(slot)
            self._by_id[slot.id] = slot
            if self.running and not self.stopping:
                self._connect(slot, 0.0, replacement=False)
        self._gauges_stale = True

    def _on_part_channels(self, command: PartChannels) -> None:
        gone = set(command.channels)
        for slot in list(self.slots):
            mine = [c for c in slot.wanted if c in gone]
            if not mine:
                continue
            slot.plan.remove(mine)
            for queue in slot.join_queues.values():
                for channel in mine:
                    queue.channels.pop(channel, None)
                session = queue.conn.session
                joined, pending = session.joined_channels, session.pending_joins
                leave = [c for c in mine if c in joined or c in pending]
                if leave:
                    queue.conn.part(leave)
            if not slot.wanted:
                self.slots.remove(slot)
                del self._by_id[slot.id]
                if self.running:
                    self._retire(slot)
        log.info("twitch channels removed", count=len(gone))
        self._gauges_stale = True

    def _retire(self, slot: Slot) -> None:
        """A slot left without channels: close it in the background."""
        task = asyncio.get_running_loop().create_task(self._halt(slot), name=f"{slot.name}-retire")
        self._retiring[slot] = task
        task.add_done_callback(lambda _: self._retiring.pop(slot, None))

    # --- connecting ------------------------------------------------------------------------

    def _connect(self, slot: Slot, delay_s: float, *, replacement: bool) -> None:
        """Open a connection for `slot` after `delay_s` (and its turn at the pacer)."""
        slot.generation += 1
        name = f"{slot.name}.{slot.generation}"
        slot.connecting = self._io.connect(
            slot.id, name, delay_s, slot.route, replacement=replacement
        )

    def _on_connection_opened(self, command: ConnectionOpened) -> None:
        slot = self._by_id.get(command.slot_id)
        conn = command.conn
        if slot is None or slot.stopped:
            conn.close()  # stopping cancels attempts; this one finished just before
            return
        slot.connecting = None
        slot.backoff.record_success()
        slot.watchers[conn] = self._io.watch(slot.id, conn)
        if command.replacement:
            self._successor_opened(slot, conn)
        else:
            self._adopt(slot, conn)

    def _on_connect_failed(self, command: ConnectFailed) -> None:
        slot = self._by_id.get(command.slot_id)
        if slot is None or slot.stopped:
            return
        slot.connecting = None
        error = command.error
        if isinstance(error, TwitchAuthenticationError):
            self._fail(error)
            return
        slot.backoff.record_failure()
        if command.replacement:
            log.warning(
                "twitch replacement connection failed",
                action="falling back to reconnecting",
                connection=slot.name,
                error=str(error),
            )
            slot.route.dedup = None
            if slot.handover is not None:
                slot.handover.phase = HandoverPhase.FAILED
                self._finish_handover_if_over(slot)
            return
        RECONNECTS.labels(cause="connect_failed").inc()
        if slot.backoff.exhausted:
            self._fail(
                TwitchGaveUp(
                    f"gave up on Twitch after {slot.backoff.failures} failed connection "
                    "attempts in a row (TWITCH_MAX_RECONNECT_ATTEMPTS="
                    f"{slot.backoff.max_attempts}); last error: {error}"
                )
            )
            return
        delay = slot.backoff.next_delay()
        log.warning(
            "twitch connect failed",
            action="retrying",
            connection=slot.name,
            error=str(error),
            attempt=slot.backoff.failures,
            retry_in_s=round(delay, 3),
        )
        self._connect(slot, delay, replacement=False)

    def _adopt(self, slot: Slot, conn: PoolConnection) -> None:
        """`conn` just logged in as the slot's only connection: join everything."""
        slot.current = conn
        slot.all_joined_logged = False
        self._set_status(slot, ConnectionStatus.CONNECTED)
        log.info("twitch connection ready", connection=conn.name, channels=len(slot.wanted))
        self._queue_joins(self._open_join_queue(slot, conn), slot.plan.to_join())
        if conn in slot.reconnect_asked:
            self._begin_handover(slot, conn)

    # --- a connection's end ----------------------------------------------------------------

    def _on_connection_ended(self, command: ConnectionEnded) -> None:
        slot = self._by_id.get(command.slot_id)
        if slot is None or slot.stopped:
            return
        conn = command.conn
        slot.watchers.pop(conn, None)
        if command.error is not None:
            self._fail(command.error)
            return
        self._close_join_queue(slot, conn)
        handover = slot.handover
        if handover is not None and conn is handover.old:
            handover.old_ended = command.cause
            if handover.phase is HandoverPhase.OVERLAP:
                self._step_handover(slot)  # sees the old one closed: done with it
            else:
                self._finish_handover_if_over(slot)
        elif conn is slot.current:
            self._connection_lost(slot, conn, command.cause)
        elif conn is slot.successor:
            self._step_handover(slot)  # the plan sees the new one dead

    def _connection_lost(self, slot: Slot, conn: PoolConnection, cause: DisconnectCause) -> None:
        """The slot's only connection ended: reconnect after the backoff delay."""
        if self._halting(slot):
            return
        slot.current = None
        slot.route.dedup = None
        slot.plan.connection_lost()
        self._schedule_retry(slot)
        healthy_for = 0.0
        if conn.logged_in_at is not None:
            healthy_for = asyncio.get_running_loop().time() - conn.logged_in_at
        slot.backoff.connection_ended(healthy_for)
        label = reconnect_cause(cause, joins_pending=bool(conn.session.pending_joins))
        RECONNECTS.labels(cause=label).inc()
        delay = slot.backoff.next_delay()
        log.warning(
            "twitch connection lost",
            action="reconnecting",
            connection=conn.name,
            cause=label,
            connected_for_s=round(healthy_for, 3),
            retry_in_s=round(delay, 3),
            hint=RECONNECT_HINTS.get(label),
        )
        self._set_status(slot, ConnectionStatus.RECONNECTING)
        self._gauges_stale = True
        self._connect(slot, delay, replacement=False)

    # --- RECONNECT hand-over -------------------------------------------------------------

    def _begin_handover(self, slot: Slot, old: PoolConnection) -> None:
        if slot.handover is not None or self._halting(slot):
            slot.reconnect_asked.add(old)
            return
        slot.reconnect_asked.discard(old)
        RECONNECTS.labels(cause="server_reconnect").inc()
        log.info(
            "twitch asked us to reconnect",
            connection=old.name,
            action="opening a replacement first",
        )
        # Filtering starts before the new socket joins anything: from its first JOIN on,
        # a line can arrive on both.
        slot.route.dedup = RecentIds()
        slot.handover = Handover(old, HandoverPlan(self._join_timeout_s, self._reconnect_overlap_s))
        self._connect(slot, 0.0, replacement=True)

    def _successor_opened(self, slot: Slot, new: PoolConnection) -> None:
        handover = slot.handover
        if handover is None or handover.phase is not HandoverPhase.OPENING:
            new.close()
            return
        slot.successor = handover.successor = new
        self._queue_joins(self._open_join_queue(slot, new), slot.plan.to_join())
        handover.plan.successor_opened(asyncio.get_running_loop().time())
        handover.phase = HandoverPhase.OVERLAP
        self._step_handover(slot)

    def _step_handover(self, slot: Slot) -> None:
        """Ask the plan what to do now; close the old connection when it says so."""
        handover = slot.handover
        if handover is None or handover.phase is not HandoverPhase.OVERLAP or slot.stopped:
            return
        new = handover.successor
        assert new is not None
        if handover.timer is not None:
            handover.timer.cancel()
            handover.timer = None
        loop = asyncio.get_running_loop()
        step, until = handover.plan.step(
            loop.time(),
            settled=slot.plan.settled(new.session.joined_channels),
            successor_alive=new.is_connected(),
            old_closing=handover.old.is_closing,
        )
        if step is HandoverStep.WAIT:
            handover.timer = loop.call_at(until, self.submit, HandoverCheck(slot.id))
            return
        handover.phase = HandoverPhase.DONE
        handover.old.close(DisconnectCause.CLOSED)
        if new.is_connected():
            handover.result = new
        else:
            self._discard_successor(slot, new)
        self._finish_handover_if_over(slot)

    def _finish_handover_if_over(self, slot: Slot) -> None:
        """Once the plan is done (or failed) and the old connection has ended: promote
        the new one, or reconnect from scratch."""
        handover = slot.handover
        if handover is None or handover.old_ended is None:
            return
        if handover.phase not in (HandoverPhase.DONE, HandoverPhase.FAILED):
            return
        slot.handover = None
        if handover.timer is not None:
            handover.timer.cancel()
        successor = handover.result
        if successor is not None:
            if successor.is_connected():
                self._promote(slot, successor, handover.plan)
                return
            self._discard_successor(slot, successor)
        self._connection_lost(slot, handover.old, handover.old_ended)

    def _promote(self, slot: Slot, successor: PoolConnection, plan: HandoverPlan) -> None:
        old = slot.current
        slot.current = successor
        slot.successor = None
        if old is not None:
            self._close_join_queue(slot, old)
            slot.reconnect_asked.discard(old)
        dedup = slot.route.dedup
        if dedup is not None:
            # The new socket may still hold lines the old one delivered: keep filtering
            # a little longer, then stop paying for it on the hot path.
            dedup.expires_at = plan.dedup_expires_at(asyncio.get_running_loop().time())
        self._set_status(slot, ConnectionStatus.CONNECTED)
        self._gauges_stale = True
        log.info("twitch reconnect hand-over complete", connection=successor.name)
        if successor in slot.reconnect_asked:
            self._begin_handover(slot, successor)

    def _discard_successor(self, slot: Slot, conn: PoolConnection) -> None:
        self._close_join_queue(slot, conn)
        conn.close()
        if slot.successor is conn:
            slot.successor = None

    # --- what the connections say ----------------------------------------------------------

    def _on_connection_event(self, command: ConnectionEvent) -> None:
        event = command.event
        if isinstance(event, MalformedLine):
            self._malformed_log.record(event.raw, event.reason, time.monotonic())
            self._sink.dead_letter(event.raw, event.reason, command.received_at_ms)
            return
        if isinstance(event, RoomIdLearned):
            self._room_ids[event.channel] = event.room_id
            return
        slot = self._by_id.get(command.slot_id)
        conn = command.conn
        if slot is None or (conn is not slot.current and conn is not slot.successor):
            return  # a connection on its way in or out
        if isinstance(event, ChannelJoined):
            self._on_joined(slot, conn, event.channel)
        elif isinstance(event, JoinFailed):
            now = asyncio.get_running_loop().time()
            reason = f"{event.reason_msg_id}: {event.text}"
            self._join_failed(
                slot, event.channel, reason, slot.plan.refused(event.channel, reason, now)
            )
        elif isinstance(event, JoinTimedOut):
            now = asyncio.get_running_loop().time()
            reason = f"no JOIN echo within {event.waited_s:.3g} s (no reason given)"
            first = slot.plan.timed_out(event.channel, reason, now)
            self._join_failed(slot, event.channel, reason, first)
        elif isinstance(event, ChannelParted):
            first = slot.plan.parted(event.channel, asyncio.get_running_loop().time())
            self._join_failed(slot, event.channel, slot.plan.failed.get(event.channel), first)
        elif isinstance(event, ReconnectRequested):
            if conn is slot.current:
                self._begin_handover(slot, conn)
            else:
                slot.reconnect_asked.add(conn)

    def _on_joined(self, slot: Slot, conn: PoolConnection, channel: str) -> None:
        was = slot.plan.failed.get(channel)
        outcome = slot.plan.joined(channel)
        if outcome is JoinOutcome.UNWANTED:
            conn.part([channel])  # removed while the JOIN was in flight
            return
        if outcome is JoinOutcome.RECOVERED:
            log.info("twitch channel joined after failing", channel=channel, was=was)
        self._step_handover(slot)
        if conn is slot.current:
            self._gauges_stale = True
            if not slot.all_joined_logged and slot.plan.settled(conn.session.joined_channels):
                slot.all_joined_logged = True
                log.info(
                    "twitch channels joined",
                    connection=conn.name,
                    joined=len(conn.session.joined_channels),
                    failed=len(slot.plan.failed),
                )

    def _join_failed(self, slot: Slot, channel: str, reason: str | None, first: bool) -> None:
        if channel not in slot.plan.wanted:
            return
        self._schedule_retry(slot)
        self._step_handover(slot)
        if first:
            log.warning(
                "twitch channel could not be joined",
                action="will retry",
                channel=channel,
                reason=reason,
                retry_in_s=slot.plan.retry_interval_s,
            )
        self._gauges_stale = True

    # --- JOINs through the limiter, and their retries ---------------------------------------

    def _open_join_queue(self, slot: Slot, conn: PoolConnection) -> JoinQueue:
        queue = JoinQueue(conn)
        queue.task = self._io.feed_joins(slot.id, queue)
        slot.join_queues[conn] = queue
        return queue

    def _queue_joins(self, queue: JoinQueue, channels: Iterable[str]) -> None:
        for channel in channels:
            queue.channels[channel] = None
        if queue.channels:
            queue.wakeup.set()
        self._gauges_stale = True

    def _close_join_queue(self, slot: Slot, conn: PoolConnection) -> None:
        queue = slot.join_queues.pop(conn, None)
        if queue is not None:
            if queue.task is not None:
                queue.task.cancel()
            queue.channels.clear()
            self._gauges_stale = True

    def _on_join_turn(self, command: JoinTurn) -> None:
        slot = self._by_id.get(command.slot_id)
        queue = slot.join_queues.get(command.conn) if slot is not None else None
        if queue is None:
            return
        # The queue may have shrunk while the limiter was awaited (removed channels);
        # the unused turns are simply not used.
        batch = list(islice(queue.channels, command.granted))
        for channel in batch:
            del queue.channels[channel]
        if batch:
            command.conn.join(batch)
        self._gauges_stale = True

    def _schedule_retry(self, slot: Slot) -> None:
        if slot.retry_timer is not None:
            slot.retry_timer.cancel()
            slot.retry_timer = None
        retry_at = slot.plan.next_retry_at()
        if retry_at is None or slot.stopped:
            return
        slot.retry_timer = asyncio.get_running_loop().call_at(
            retry_at, self.submit, RetryDue(slot.id, retry_at)
        )

    def _on_retry_due(self, command: RetryDue) -> None:
        slot = self._by_id.get(command.slot_id)
        if slot is None or slot.stopped:
            return
        slot.retry_timer = None
        # The loop may run a timer a hair early (its clock resolution): it is due.
        now = max(asyncio.get_running_loop().time(), command.due_at)
        due = slot.plan.take_due(now)
        # Not connected: the next (re)connect joins them, as they left the schedule.
        for conn in (slot.current, slot.successor):
            queue = slot.join_queues.get(conn) if conn is not None else None
            if queue is not None:
                self._queue_joins(queue, due)
        self._schedule_retry(slot)

    # --- small parts -------------------------------------------------------------------------

    def _halting(self, slot: Slot) -> bool:
        return slot.stopped or self.stopping

    def _set_status(self, slot: Slot, status: ConnectionStatus) -> None:
        if status is not slot.status:
            slot.status = status
            self._gauges_stale = True

    def _refresh_gauges(self) -> None:
        self._gauges_stale = False
        slots = self.slots
        CHANNELS_JOINED.set(sum(slot.joined_count() for slot in slots))
        CHANNELS_FAILED.set(sum(len(slot.failed) for slot in slots))
        JOIN_QUEUE_LENGTH.set(sum(slot.join_queue_length() for slot in slots))
        counts = dict.fromkeys(ConnectionStatus, 0)
        for slot in slots:
            counts[slot.status] += 1
        for status, count in counts.items():
            CONNECTION_STATES.labels(state=status.value).set(count)
