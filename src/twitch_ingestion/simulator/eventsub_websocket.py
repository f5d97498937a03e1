"""The EventSub simulator's WebSocket side: `GET /ws`, its sessions and their
subscriptions, and the delivery of queued notifications to them.

A session gets `session_welcome`, keepalives, pings when configured, notifications, a
`session_reconnect` when asked, revocations, and closes with Twitch's 4000-4007 codes
(4001 when the client sends anything, 4002 for a missing pong, 4003 when no subscription
names a new session in time, 4004 when a reconnect URL is not used in time, 4007 for a
reconnect URL it was told to treat as invalid).

Delivery: a notification waits in its channel's backlog until a connected, non-silent
session holds the matching subscription; one task (`_pump`) writes them all, so each
channel's stay in order. When a channel's notifications start going to another socket,
the last `redeliver_recent` ones are sent again with the same `message_id`, as Twitch
does after reconnects.

Helix (`eventsub_helix.py`) adds and removes subscriptions on the sessions held here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, KeysView
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from twitch_ingestion.simulator.eventsub_model import (
    EventSubSimulatorConfig,
    EventSubStats,
    Pending,
    Session,
    Socket,
    Subscription,
)
from twitch_ingestion.simulator.eventsub_wire import (
    message_frame,
    notification_frame,
    reconnect_frame,
    rfc3339_now,
    subscription_json,
    welcome_frame,
)
from twitch_ingestion.simulator.wire import derived_uuid, room_id_for

__all__ = ["WebSocketSessions"]


class WebSocketSessions:
    """Every EventSub session (live, and lingering after `dead_session_linger_s`), the
    channels' backlogs, and the one task that delivers them."""

    def __init__(
        self,
        config: EventSubSimulatorConfig,
        stats: EventSubStats,
        changed: asyncio.Event,
        websocket_url: Callable[[], str],
    ) -> None:
        self._config = config
        self._stats = stats
        self._changed = changed
        self._websocket_url = websocket_url
        """The URL clients connect to (`reconnect_url`s point back there)."""
        self._sessions: dict[str, Session] = {}
        self._lingering: dict[str, Session] = {}
        """Closed sessions whose subscriptions still count (`dead_session_linger_s`)."""
        self._sockets = itertools.count(1)
        self._backlog: dict[str, deque[Pending]] = {}
        self._recent: dict[str, deque[Pending]] = {}
        self._delivered_to: dict[str, int] = {}
        """Channel → number of the socket its notifications last went to."""
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._pump_task = asyncio.create_task(self._pump())

    def cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._pump_task is not None:
            self._pump_task.cancel()

    async def close_all(self) -> None:
        """Close every session's socket with 1001 (going away), uncounted."""
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await session.socket.ws.close(code=1001)

    def abort_transports(self) -> None:
        """Cut every session's connection without a close frame."""
        for session in list(self._sessions.values()):
            if session.socket.transport is not None:
                session.socket.transport.abort()

    # ------------------------------------------------------------------ what Helix reads

    def wake(self) -> None:
        """Deliver what can now be delivered (a subscription was created)."""
        self._wake.set()

    def session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def live_sessions(self) -> Iterable[Session]:
        return self._sessions.values()

    def counted_sessions(self) -> list[Session]:
        """Sessions whose subscriptions count towards the limits: live and lingering."""
        return [*self._sessions.values(), *self._lingering.values()]

    def logins_with_backlog(self) -> KeysView[str]:
        """Channels that ever had a notification queued."""
        return self._backlog.keys()

    # ------------------------------------------------------------------ switches

    def lingering_session_ids(self) -> list[str]:
        return list(self._lingering)

    def session_ids(self) -> list[str]:
        return [s.id for s in self._sessions.values() if not s.socket.closed]

    def subscriptions(self, session_id: str | None = None) -> list[tuple[str, str, str]]:
        return [
            (sub.session_id, sub.type, sub.condition.get("broadcaster_user_id", ""))
            for session in self._sessions.values()
            if session_id is None or session.id == session_id
            for sub in session.subscriptions.values()
        ]

    def go_silent(self, session_id: str | None, silent: bool) -> None:
        for session in self._select(session_id):
            session.socket.silent = silent
        self._wake.set()

    def send_reconnect(self, session_id: str | None, invalid: bool) -> int:
        count = 0
        for session in self._select(session_id):
            token = secrets.token_hex(8)
            session.reconnect_token = token
            session.invalid_reconnect = invalid
            url = f"{self._websocket_url()}?reconnect={session.id}&token={token}"
            frame = reconnect_frame(session.id, url)
            self._spawn(self._send(session.socket, frame))
            self._spawn(self._reconnect_grace(session, token))
            count += 1
        return count

    def send_raw(self, frame: bytes, session_id: str | None) -> int:
        sessions = self._select(session_id)
        for session in sessions:
            self._spawn(self._send(session.socket, frame))
        return len(sessions)

    def close(self, code: int, session_id: str | None) -> int:
        sessions = self._select(session_id)
        for session in sessions:
            self._spawn(self._close(session.socket, code))
        return len(sessions)

    def revoke(self, login: str, subscription_type: str, status: str) -> int:
        taken = self._take(login, subscription_type)
        for session, sub in taken:
            body = b'{"subscription":' + subscription_json(sub, status) + b"}"
            self._spawn(self._send(session.socket, message_frame("revocation", body, sub)))
        return len(taken)

    def vanish(self, login: str, subscription_type: str) -> int:
        count = len(self._take(login, subscription_type))
        self._changed.set()
        return count

    def _take(self, login: str, subscription_type: str) -> list[tuple[Session, Subscription]]:
        """Remove the live sessions' subscriptions of this type in `login`'s channel."""
        broadcaster = room_id_for(login.lower())
        taken: list[tuple[Session, Subscription]] = []
        for session in list(self._sessions.values()):
            for sub in list(session.subscriptions.values()):
                if sub.type == subscription_type and (
                    sub.condition.get("broadcaster_user_id") == broadcaster
                ):
                    del session.subscriptions[sub.id]
                    taken.append((session, sub))
        return taken

    # ------------------------------------------------------------------ notifications

    def queue_event(
        self, login: str, subscription_type: str, event: dict[str, Any], message_id: str | None
    ) -> str:
        login = login.lower()
        event.setdefault("broadcaster_user_id", room_id_for(login))
        event.setdefault("broadcaster_user_login", login)
        event.setdefault("broadcaster_user_name", login)
        message_id = message_id or derived_uuid("eventsub", secrets.token_hex(8))
        item = (subscription_type, message_id, rfc3339_now(), msgspec.json.encode(event))
        backlog = self._backlog.get(login)
        if backlog is None:
            backlog = self._backlog[login] = deque()
        if len(backlog) >= self._config.max_backlog:
            backlog.popleft()
            self._stats.backlog_dropped += 1
        backlog.append(item)
        self._wake.set()
        return message_id

    def backlog(self, login: str) -> int:
        return len(self._backlog.get(login.lower(), ()))

    def _target(self, subscription_type: str, broadcaster_id: str) -> Subscription | None:
        for session in self._sessions.values():
            if session.socket.closed or session.socket.silent:
                continue
            for sub in session.subscriptions.values():
                if (
                    sub.type == subscription_type
                    and sub.condition.get("broadcaster_user_id") == broadcaster_id
                ):
                    return sub
        return None

    async def _pump(self) -> None:
        """The one task that writes notifications, so each channel's stay in order."""
        stats = self._stats
        while True:
            await self._wake.wait()
            self._wake.clear()
            for login, backlog in list(self._backlog.items()):
                broadcaster = room_id_for(login)
                while backlog:
                    item = backlog[0]
                    sub = self._target(item[0], broadcaster)
                    if sub is None:
                        break
                    session = self._sessions[sub.session_id]
                    socket = session.socket
                    if self._delivered_to.get(login) != socket.number:
                        self._delivered_to[login] = socket.number
                        for old in list(self._recent.get(login, ())):
                            old_sub = self._target(old[0], broadcaster)
                            if old_sub is not None and await self._send(
                                socket, notification_frame(old_sub, old)
                            ):
                                stats.redelivered += 1
                    if not await self._send(socket, notification_frame(sub, item)):
                        break
                    if backlog and backlog[0] is item:  # not pushed out by `max_backlog`
                        backlog.popleft()
                    recent = self._recent.get(login)
                    if recent is None:
                        recent = self._recent[login] = deque(maxlen=self._config.redeliver_recent)
                    recent.append(item)
                    stats.notifications_sent += 1
                    if stats.notifications_sent % 64 == 0:
                        await asyncio.sleep(0)  # let keepalives and HTTP handlers run
            self._changed.set()

    # ------------------------------------------------------------------ one socket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`GET /ws`: a new session, or the new socket of a `session_reconnect`."""
        config = self._config
        # Pings and pongs are handled here (autoping off) to see whether the client answers.
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        try:
            requested = int(request.query.get("keepalive_timeout_seconds", ""))
        except ValueError:
            requested = config.default_keepalive_s
        keepalive = max(config.min_keepalive_s, min(600, requested))
        socket = Socket(
            next(self._sockets),
            ws,
            keepalive,
            last_sent=time.monotonic(),
            transport=request.transport,
        )
        reconnect_of = request.query.get("reconnect")
        if reconnect_of is not None:
            session = self._sessions.get(reconnect_of)
            if (
                session is None
                or session.invalid_reconnect
                or session.reconnect_token != request.query.get("token")
            ):
                await self._close(socket, 4007)
                return ws
            old = session.socket
            session.socket = socket
            session.reconnect_token = None
            socket.session_id = session.id
            await self._send(socket, welcome_frame(session.id, keepalive))
            self._stats.reconnect_welcomes += 1
            # Twitch closes the old connection once the new one is welcomed.
            self._spawn(self._close(old, 1000, count=False))
            self._wake.set()
        else:
            session = Session(secrets.token_urlsafe(24), socket)
            socket.session_id = session.id
            self._sessions[session.id] = session
            await self._send(socket, welcome_frame(session.id, keepalive))
            self._stats.welcomes += 1
            self._spawn(self._subscribe_deadline(session, socket))
        self._changed.set()
        keepalives = asyncio.create_task(self._keepalives(socket))
        pings = (
            asyncio.create_task(self._pings(socket, config.ping_interval_s))
            if config.ping_interval_s
            else None
        )
        try:
            async for message in ws:
                if message.type is WSMsgType.PONG:
                    socket.last_pong = time.monotonic()
                    self._stats.pongs_received += 1
                    self._changed.set()
                elif message.type is WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    # Twitch: "Clients may not send messages other than pong" → 4001.
                    self._stats.inbound_messages += 1
                    await self._close(socket, 4001)
                    break
        finally:
            keepalives.cancel()
            if pings is not None:
                pings.cancel()
            socket.closed = True
            self._socket_gone(socket)
        return ws

    async def _pings(self, socket: Socket, interval_s: float) -> None:
        """Twitch pings and closes with 4002 when no pong comes back in time."""
        while not socket.closed:
            await asyncio.sleep(interval_s)
            if socket.closed:
                return
            sent = time.monotonic()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.ws.ping()
            self._stats.pings_sent += 1
            await asyncio.sleep(self._config.pong_timeout_s)
            if not socket.closed and socket.last_pong < sent:
                await self._close(socket, 4002)
                return

    def _socket_gone(self, socket: Socket) -> None:
        session = self._sessions.get(socket.session_id)
        if session is not None and session.socket is socket:
            # The session ends with its socket: its subscriptions are disabled
            # (`websocket_disconnected`) and stop counting against the limits — at once,
            # or after `dead_session_linger_s`, as Twitch takes a while to notice.
            del self._sessions[session.id]
            linger = self._config.dead_session_linger_s
            if linger > 0 and session.subscriptions:
                self._lingering[session.id] = session
                self._spawn(self._forget_later(session, linger))
        self._changed.set()

    async def _forget_later(self, session: Session, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self._lingering.pop(session.id, None)
        self._changed.set()

    async def _keepalives(self, socket: Socket) -> None:
        while not socket.closed:
            wait = socket.last_sent + socket.keepalive_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if socket.silent:
                await asyncio.sleep(socket.keepalive_s)
                continue
            await self._send(socket, message_frame("session_keepalive", b"{}"))

    async def _subscribe_deadline(self, session: Session, socket: Socket) -> None:
        await asyncio.sleep(self._config.subscribe_deadline_s)
        if not session.subscriptions and session.socket is socket and not socket.closed:
            await self._close(socket, 4003)

    async def _reconnect_grace(self, session: Session, token: str) -> None:
        await asyncio.sleep(self._config.reconnect_grace_s)
        if session.reconnect_token == token and not session.socket.closed:
            await self._close(session.socket, 4004)

    async def _send(self, socket: Socket, frame: bytes) -> bool:
        if socket.closed or socket.silent:
            return False
        socket.last_sent = time.monotonic()
        try:
            await socket.ws.send_str(frame.decode())
        except (ConnectionError, RuntimeError):
            socket.closed = True
            return False
        return True

    async def _close(self, socket: Socket, code: int, *, count: bool = True) -> None:
        if socket.closed:
            return
        if count:
            self._stats.closes_sent[code] = self._stats.closes_sent.get(code, 0) + 1
        socket.closed = True
        self._socket_gone(socket)
        with contextlib.suppress(Exception):
            await socket.ws.close(code=code, message=b"simulated close")

    def _select(self, session_id: str | None) -> list[Session]:
        return [
            s
            for s in self._sessions.values()
            if (session_id is None or s.id == session_id) and not s.socket.closed
        ]

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
