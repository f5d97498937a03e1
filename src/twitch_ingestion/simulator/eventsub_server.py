"""Twitch EventSub for tests: the WebSocket, OAuth and Helix endpoints on one local port.

`EventSubSimulator` serves, from one aiohttp application:

- `GET  /ws` — the EventSub WebSocket: `session_welcome`, notifications, keepalives,
  `session_reconnect` (the `reconnect_url` points back here), revocations, and closes
  with each of Twitch's 4000-4007 codes (4001 when the client sends anything, 4003
  when no subscription names a new session in time, 4004 when a reconnect URL is not
  used in time, 4007 for a reconnect URL it was told to treat as invalid).
- `GET  /oauth2/validate`, `POST /oauth2/token` (refresh) — id.twitch.tv's answers.
- `GET  /helix/users?login=…` and `POST/GET/DELETE /helix/eventsub/subscriptions`, with
  Twitch's limits (300 enabled subscriptions per connection, 3 connections per client
  id and user, `max_total_cost`), its error bodies, and `Ratelimit-*` headers / 429s.

Delivery model. Twitch delivers at least once; this simulator makes that concrete so
loss tests can be exact: a notification waits in its channel's backlog until some
connected, non-silent session holds the matching subscription, and when a channel's
notifications start going to a different socket (a new session after a reconnect, or
the new socket of a `session_reconnect`), the last `redeliver_recent` ones are sent
again with the same `message_id`, as Twitch does after reconnects. So a client that
re-subscribes after a loss gets every numbered message, some twice; it must pass each
on exactly once.

Fault switches (all on the simulator's loop; `EventSubSimulatorThread` wraps them):
`issue_token` (scopes, client id, lifetime), `expire_token`, `unknown_logins`,
`set_cost`, `rate_limit_next` (with or without `Ratelimit-Reset`), `fail_helix` (bursts
of 5xx, or calls that hang past the client's timeout), `go_silent`,
`send_reconnect(invalid=…)`, `close`, `revoke`, `vanish` (a subscription gone without a
revocation), `send_raw`, `unreachable` (nothing listens for a while).

Twitch's unkind habits, switched on in the config:
- `dead_session_linger_s`: a closed session's subscriptions stay enabled for a while and
  count towards the transport, subscription and cost limits, so a reconnect meanwhile gets
  the 429 "number of websocket transports limit exceeded" users report;
- `conflict_across_sessions`: a create answers 409 when any session of the same client
  and user (dead or live, another instance's) holds the same type and condition;
- `ping_interval_s`: WebSocket pings, and 4002 for a client that does not answer in time
  (aiohttp answers pings only while its reader receives).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from aiohttp import WSMsgType, web

from twitch_ingestion.config import LogFormat
from twitch_ingestion.logging import configure_logging
from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.loop_thread import SimulatorOnThread
from twitch_ingestion.simulator.streams import NUMBERED_SENDER
from twitch_ingestion.simulator.wire import derived_uuid, room_id_for, user_id_for
from twitch_ingestion.sources.irc.irc import parse_line

__all__ = [
    "CHAT_TYPES",
    "EventSubSimulator",
    "EventSubSimulatorConfig",
    "EventSubSimulatorThread",
    "EventSubStats",
    "IssuedToken",
    "privmsg_event",
]

log = structlog.get_logger(__name__)

CHAT_TYPES = (
    "channel.chat.message",
    "channel.chat.notification",
    "channel.chat.clear",
    "channel.chat.clear_user_messages",
    "channel.chat.message_delete",
)
"""Subscription types the simulator accepts (all version 1, all need `user:read:chat`)."""
_CHAT_SCOPE = "user:read:chat"


@dataclass
class EventSubSimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    """0: an ephemeral port (read `EventSubSimulator.port` after `start`)."""
    client_id: str = "simulatorclientid0000000000000"
    client_secret: str = "simulator-client-secret"
    bot_login: str = "sim_bot"
    token_lifetime_s: int = 14_400
    """`expires_in` of issued and refreshed tokens (Twitch: about 4 h)."""
    default_keepalive_s: int = 10
    min_keepalive_s: int = 1
    """Twitch accepts 10–600 in `?keepalive_timeout_seconds=`; tests ask for less."""
    subscribe_deadline_s: float = 10.0
    """4003 when no subscription names a new session within this."""
    reconnect_grace_s: float = 30.0
    """4004 when a `reconnect_url` is not used within this."""
    subscriptions_per_connection: int = 300
    connections_per_user: int = 3
    max_total_cost: int = 10
    rate_limit_points: int = 800
    """Helix bucket size per client id (Twitch: 800 points a minute)."""
    rate_limit_window_s: float = 60.0
    """How often the bucket refills completely (Twitch: a minute)."""
    max_backlog: int = 100_000
    """Notifications a channel keeps while nobody is subscribed; the oldest go first
    (counted in `stats.backlog_dropped`), so a long-running simulator stays bounded."""
    redeliver_recent: int = 5
    """Notifications re-sent per channel when its delivery moves to another socket."""
    dead_session_linger_s: float = 0.0
    """How long a closed session's subscriptions stay enabled and counted (0: they end with
    the socket). Twitch takes a while to notice a dead socket."""
    conflict_across_sessions: bool = False
    """409 for a subscription any session of the client and user holds (Twitch); False:
    only one the same session holds."""
    ping_interval_s: float | None = None
    """Ping every socket this often; None: no pings."""
    pong_timeout_s: float = 10.0
    """No pong this long after a ping: close with 4002 (client-failed-ping-pong)."""
    list_page_size: int = 100
    """Subscriptions per page of Get EventSub Subscriptions (Twitch: 100)."""
    public_client: bool = False
    """The app is a public client: `/token` refreshes without a client secret."""


@dataclass
class IssuedToken:
    access_token: str
    refresh_token: str
    client_id: str
    user_id: str
    login: str
    scopes: tuple[str, ...]
    expires_at: float | None
    """`time.monotonic()` when it stops working; None: never (or not used yet, below)."""
    lifetime_from_first_use_s: float | None = None
    """Set: the token lives this long from its first use (`/validate` or Helix), then
    `expires_at` is set. A test's token then has exactly that much left when the service
    first sees it, however long the service took to start."""

    def __repr__(self) -> str:
        return f"IssuedToken(<redacted>, login={self.login!r}, scopes={self.scopes})"


@dataclass
class EventSubStats:
    """What happened; read through `EventSubSimulator.stats` / `snapshot()`."""

    welcomes: int = 0
    reconnect_welcomes: int = 0
    sessions_with_subscriptions: int = 0
    subscriptions_created: int = 0
    subscriptions_created_by_type: dict[str, int] = field(default_factory=dict)
    subscription_refusals: dict[int, int] = field(default_factory=dict)
    """HTTP status → count of refused subscription creations."""
    notifications_sent: int = 0
    redelivered: int = 0
    backlog_dropped: int = 0
    numbered_high_water: dict[str, int] = field(default_factory=dict)
    closes_sent: dict[int, int] = field(default_factory=dict)
    inbound_messages: int = 0
    validate_calls: int = 0
    refresh_calls: int = 0
    users_calls: int = 0
    users_logins_max: int = 0
    rate_limited: int = 0
    helix_unauthorized: int = 0
    subscribe_tokens: list[str] = field(default_factory=list)
    """Which issued token (by its position in `issue_token` order) created each
    subscription: shows that a refreshed token was used."""
    helix_faults: int = 0
    """Helix calls answered by `fail_helix` instead of their endpoint."""
    pings_sent: int = 0
    pongs_received: int = 0
    deletes: int = 0
    lists: int = 0

    def snapshot(self) -> EventSubStats:
        return EventSubStats(
            self.welcomes,
            self.reconnect_welcomes,
            self.sessions_with_subscriptions,
            self.subscriptions_created,
            dict(self.subscriptions_created_by_type),
            dict(self.subscription_refusals),
            self.notifications_sent,
            self.redelivered,
            self.backlog_dropped,
            dict(self.numbered_high_water),
            dict(self.closes_sent),
            self.inbound_messages,
            self.validate_calls,
            self.refresh_calls,
            self.users_calls,
            self.users_logins_max,
            self.rate_limited,
            self.helix_unauthorized,
            list(self.subscribe_tokens),
            self.helix_faults,
            self.pings_sent,
            self.pongs_received,
            self.deletes,
            self.lists,
        )


@dataclass
class _Subscription:
    id: str
    type: str
    condition: dict[str, str]
    session_id: str
    client_id: str
    user_id: str
    cost: int
    created_at: str


@dataclass
class _Socket:
    number: int
    ws: web.WebSocketResponse
    keepalive_s: int
    session_id: str = ""
    silent: bool = False
    closed: bool = False
    last_sent: float = 0.0
    last_pong: float = 0.0
    transport: asyncio.Transport | None = None


@dataclass
class _HelixFault:
    """`fail_helix`: which calls to answer how, until when or how many times."""

    endpoints: frozenset[str]
    status: int
    hang_s: float
    count: int | None
    until: float | None


@dataclass
class _Session:
    id: str
    socket: _Socket
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    reconnect_token: str | None = None
    """Set while a `session_reconnect` is outstanding: the `reconnect_url` carries it."""
    invalid_reconnect: bool = False


# (subscription type, metadata message_id, message_timestamp, event JSON)
_Pending = tuple[str, str, str, bytes]


def _rfc3339_now() -> str:
    ns = time.time_ns()
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos:09d}Z"


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Twitch's error body: `{"error": <reason phrase>, "status": n, "message": …}`."""
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
    }
    body = msgspec.json.encode(
        {"error": reasons.get(status, "Error"), "status": status, "message": message}
    )
    return web.Response(
        status=status, body=body, content_type="application/json", headers=headers or {}
    )


class EventSubSimulator:
    """The server; `async with EventSubSimulator(config) as sim:` or `start`/`stop`."""

    def __init__(
        self,
        config: EventSubSimulatorConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config if config is not None else EventSubSimulatorConfig()
        self.ssl_context = ssl_context
        """Serve https/wss with it (e.g. a self-signed certificate, for TLS tests)."""
        self.stats = EventSubStats()
        self.unknown_logins: set[str] = set()
        self.costs: dict[str, int] = {}
        """Broadcaster login → cost of each subscription in that channel (default 0)."""
        self._tokens: dict[str, IssuedToken] = {}
        self._token_order: dict[str, int] = {}
        self._refresh: dict[str, IssuedToken] = {}
        self._sessions: dict[str, _Session] = {}
        self._lingering: dict[str, _Session] = {}
        """Closed sessions whose subscriptions still count (`dead_session_linger_s`)."""
        self._sockets = itertools.count(1)
        self._rate_limit_next = 0
        self._rate_limit_reset = True
        self._helix_faults: list[_HelixFault] = []
        self._unreachable = False
        self._bucket: dict[str, tuple[int, float]] = {}
        self._backlog: dict[str, deque[_Pending]] = {}
        self._recent: dict[str, deque[_Pending]] = {}
        self._delivered_to: dict[str, int] = {}
        """Channel → number of the socket its notifications last went to."""
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/oauth2/validate", self._validate)
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get("/helix/users", self._users)
        app.router.add_post("/helix/eventsub/subscriptions", self._create_subscription)
        app.router.add_get("/helix/eventsub/subscriptions", self._list_subscriptions)
        app.router.add_delete("/helix/eventsub/subscriptions", self._delete_subscription)
        self._app = app

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=self.ssl_context
        )
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])
        self._pump_task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        for task in [*self._streams, *self._tasks]:
            task.cancel()
        if self._pump_task is not None:
            self._pump_task.cancel()
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await session.socket.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EventSubSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    @property
    def urls(self) -> dict[str, str]:
        """The settings that point a client here (`TWITCH_EVENTSUB_URL`, …)."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        return {
            "TWITCH_EVENTSUB_URL": f"{scheme}://{self.config.host}:{self.port}/ws",
            "TWITCH_API_URL": f"{self.base_url}/helix",
            "TWITCH_AUTH_URL": f"{self.base_url}/oauth2",
        }

    # ------------------------------------------------------------------ switches

    def issue_token(
        self,
        *,
        scopes: Iterable[str] = (_CHAT_SCOPE,),
        client_id: str | None = None,
        lifetime_s: float | None = None,
        login: str | None = None,
        from_first_use: bool = False,
    ) -> IssuedToken:
        """A user token (and its refresh token) the endpoints accept.

        `lifetime_s` defaults to `config.token_lifetime_s`; 0 issues an expired token.
        `from_first_use` starts that lifetime at the token's first use instead of now.
        """
        login = login or self.config.bot_login
        lifetime = self.config.token_lifetime_s if lifetime_s is None else lifetime_s
        token = IssuedToken(
            access_token=secrets.token_hex(15),
            refresh_token=secrets.token_hex(25),
            client_id=client_id or self.config.client_id,
            user_id=user_id_for(login),
            login=login,
            scopes=tuple(scopes),
            expires_at=None if from_first_use else time.monotonic() + lifetime,
            lifetime_from_first_use_s=lifetime if from_first_use else None,
        )
        self._remember(token)
        return token

    def _remember(self, token: IssuedToken) -> None:
        self._tokens[token.access_token] = token
        self._token_order[token.access_token] = len(self._token_order)
        self._refresh[token.refresh_token] = token

    def token_index(self, access_token: str) -> int:
        """Position of `access_token` in issue order (refreshes included)."""
        return self._token_order[access_token]

    def expire_token(self, access_token: str) -> None:
        """`access_token` stops working now (validate and Helix answer 401)."""
        token = self._tokens.get(access_token)
        if token is not None:
            token.expires_at = time.monotonic() - 1

    def set_cost(self, login: str, cost: int) -> None:
        """Each subscription in `login`'s channel costs `cost` (see `max_total_cost`)."""
        self.costs[login.lower()] = cost

    def rate_limit_next(self, count: int, *, reset: bool = True) -> None:
        """The next `count` Helix calls answer 429 with `Ratelimit-Remaining: 0`, and a
        `Ratelimit-Reset` a second ahead unless `reset` is False (a proxy that drops it)."""
        self._rate_limit_next += count
        self._rate_limit_reset = reset

    def fail_helix(
        self,
        status: int = 503,
        *,
        endpoints: Iterable[str] = ("create",),
        count: int | None = None,
        for_s: float | None = None,
        hang_s: float = 0.0,
    ) -> None:
        """Answer Helix calls with `status` instead: the next `count` of them, or all for
        `for_s` seconds (neither: until `fail_helix(0)` clears every fault).

        `endpoints` are `create`, `list`, `delete` and `users`. `hang_s` holds each answer
        that long first: past the client's timeout it is a timeout, not a 5xx.
        """
        if status == 0:
            self._helix_faults.clear()
            return
        until = None if for_s is None else time.monotonic() + for_s
        self._helix_faults.append(_HelixFault(frozenset(endpoints), status, hang_s, count, until))

    def vanish(self, login: str, subscription_type: str) -> int:
        """End subscriptions silently (no revocation): only a listing shows they are gone."""
        count = len(self._take(login, subscription_type))
        self._changed.set()
        return count

    def _take(self, login: str, subscription_type: str) -> list[tuple[_Session, _Subscription]]:
        """Remove the live sessions' subscriptions of this type in `login`'s channel."""
        broadcaster = room_id_for(login.lower())
        taken: list[tuple[_Session, _Subscription]] = []
        for session in list(self._sessions.values()):
            for sub in list(session.subscriptions.values()):
                if sub.type == subscription_type and (
                    sub.condition.get("broadcaster_user_id") == broadcaster
                ):
                    del session.subscriptions[sub.id]
                    taken.append((session, sub))
        return taken

    async def unreachable(self, for_s: float) -> None:
        """Nothing answers for `for_s` seconds: every connection is cut (no close frame)
        and the port refuses new ones (WebSocket, OAuth and Helix alike); then it listens
        again on the same port. Returns at once."""
        runner, site = self._runner, self._site
        if runner is None or site is None:
            return
        self._unreachable = True
        await site.stop()
        self._site = None
        for session in list(self._sessions.values()):
            if session.socket.transport is not None:
                session.socket.transport.abort()
        server = runner.server
        if server is not None:
            for handler in list(server.connections):
                handler.force_close()
        self._spawn(self._listen_again(for_s))

    async def _listen_again(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if self._runner is None:
            return
        self._site = web.TCPSite(
            self._runner, self.config.host, self.port, ssl_context=self.ssl_context
        )
        await self._site.start()
        self._unreachable = False
        self._changed.set()

    def _fault(self, endpoint: str) -> _HelixFault | None:
        now = time.monotonic()
        for fault in list(self._helix_faults):
            if fault.until is not None and now >= fault.until:
                self._helix_faults.remove(fault)
                continue
            if endpoint not in fault.endpoints:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._helix_faults.remove(fault)
            return fault
        return None

    async def _injected(self, endpoint: str) -> web.Response | None:
        fault = self._fault(endpoint)
        if fault is None:
            return None
        self.stats.helix_faults += 1
        self._changed.set()
        if fault.hang_s > 0:
            await asyncio.sleep(fault.hang_s)
        return _json_error(fault.status, "simulated failure")

    def lingering_session_ids(self) -> list[str]:
        """Closed sessions whose subscriptions still count (`dead_session_linger_s`)."""
        return list(self._lingering)

    def session_ids(self) -> list[str]:
        return [s.id for s in self._sessions.values() if not s.socket.closed]

    def subscriptions(self, session_id: str | None = None) -> list[tuple[str, str, str]]:
        """(session id, type, broadcaster id) of every enabled subscription."""
        return [
            (sub.session_id, sub.type, sub.condition.get("broadcaster_user_id", ""))
            for session in self._sessions.values()
            if session_id is None or session.id == session_id
            for sub in session.subscriptions.values()
        ]

    def go_silent(self, session_id: str | None = None, *, silent: bool = True) -> None:
        """Stop sending anything (keepalives included) on the session's socket."""
        for session in self._select(session_id):
            session.socket.silent = silent
        self._wake.set()

    def send_reconnect(self, session_id: str | None = None, *, invalid: bool = False) -> int:
        """`session_reconnect` with a `reconnect_url`; `invalid`: that URL answers 4007."""
        count = 0
        for session in self._select(session_id):
            token = secrets.token_hex(8)
            session.reconnect_token = token
            session.invalid_reconnect = invalid
            url = f"{self.urls['TWITCH_EVENTSUB_URL']}?reconnect={session.id}&token={token}"
            frame = self._message(
                "session_reconnect",
                b'{"session":{"id":'
                + msgspec.json.encode(session.id)
                + b',"status":"reconnecting","keepalive_timeout_seconds":null,'
                b'"reconnect_url":' + msgspec.json.encode(url) + b',"connected_at":'
                b'"2026-01-01T00:00:00.000000000Z"}}',
            )
            self._spawn(self._send(session.socket, frame))
            self._spawn(self._reconnect_grace(session, token))
            count += 1
        return count

    def send_raw(self, frame: bytes, session_id: str | None = None) -> int:
        """Send `frame` as it is (a broken one, for dead-letter tests) on live sessions."""
        sessions = self._select(session_id)
        for session in sessions:
            self._spawn(self._send(session.socket, frame))
        return len(sessions)

    def close(self, code: int, session_id: str | None = None) -> int:
        """Close the session's socket (every session's by default) with `code`."""
        sessions = self._select(session_id)
        for session in sessions:
            self._spawn(self._close(session.socket, code))
        return len(sessions)

    def revoke(self, login: str, subscription_type: str, status: str) -> int:
        """End a subscription the way Twitch does: a `revocation` message, then gone."""
        taken = self._take(login, subscription_type)
        for session, sub in taken:
            body = b'{"subscription":' + self._subscription_json(sub, status) + b"}"
            self._spawn(self._send(session.socket, self._message("revocation", body, sub)))
        return len(taken)

    # ------------------------------------------------------------------ streams

    def start_numbered(
        self, channels: Sequence[str], *, count: int, rate: float = 0.0
    ) -> asyncio.Task[None]:
        """`seq <channel> <n>` chat messages, round-robin, `count` per channel.

        `rate` is messages per second over all channels (0: as fast as queued). The
        numbers continue across streams (`stats.numbered_high_water`).
        """
        task = asyncio.create_task(self._numbered(list(channels), count, rate))
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        return task

    def start_generated(
        self,
        channels: Sequence[str],
        *,
        count: int | None,
        rate: float = 0.0,
        seed: int | None = None,
    ) -> asyncio.Task[None] | None:
        """Realistic chat messages (the IRC simulator's generator) as EventSub events.

        `count` messages round-robin over `channels` (None: until stopped), at `rate`
        per second (0: all queued at once, which needs a `count`).
        """
        generator = ChatGenerator(seed)
        logins = [channel.lower() for channel in channels]

        def one(index: int) -> None:
            channel = logins[index % len(logins)]
            line = generator.privmsg(channel, room_id_for(channel), int(time.time() * 1000))
            self.queue_event(channel, "channel.chat.message", privmsg_event(channel, line))

        if rate <= 0:
            if count is None:
                raise ValueError("a generated stream without a rate needs a count")
            for index in range(count):
                one(index)
            return None

        async def paced() -> None:
            for index in itertools.count() if count is None else range(count):
                one(index)
                await asyncio.sleep(1.0 / rate)

        task = asyncio.create_task(paced())
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        return task

    def queue_event(
        self,
        login: str,
        subscription_type: str,
        event: dict[str, Any],
        *,
        message_id: str | None = None,
    ) -> str:
        """Queue one notification for `login`'s channel; returns its `message_id`."""
        login = login.lower()
        event.setdefault("broadcaster_user_id", room_id_for(login))
        event.setdefault("broadcaster_user_login", login)
        event.setdefault("broadcaster_user_name", login)
        message_id = message_id or derived_uuid("eventsub", secrets.token_hex(8))
        item = (subscription_type, message_id, _rfc3339_now(), msgspec.json.encode(event))
        backlog = self._backlog.get(login)
        if backlog is None:
            backlog = self._backlog[login] = deque()
        if len(backlog) >= self.config.max_backlog:
            backlog.popleft()
            self.stats.backlog_dropped += 1
        backlog.append(item)
        self._wake.set()
        return message_id

    def backlog(self, login: str) -> int:
        """Notifications of `login`'s channel still waiting for a subscriber."""
        return len(self._backlog.get(login.lower(), ()))

    async def _numbered(self, channels: list[str], count: int, rate: float) -> None:
        high_water = self.stats.numbered_high_water
        interval = 1.0 / rate if rate > 0 else 0.0
        for _ in range(count):
            for channel in channels:
                login = channel.lower()
                seq = high_water.get(login, 0) + 1
                high_water[login] = seq
                self.queue_event(
                    login,
                    "channel.chat.message",
                    _numbered_event(login, seq),
                    message_id=derived_uuid("eventsub-numbered", login, seq),
                )
                if interval:
                    await asyncio.sleep(interval)
            if not interval:
                await asyncio.sleep(0)

    async def wait_until(self, predicate: Callable[[], bool], within_s: float) -> None:
        """Until `predicate()` holds (checked after every change); TimeoutError after."""
        async with asyncio.timeout(within_s):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # Pings and pongs are handled here (autoping off) to see whether the client answers.
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        try:
            requested = int(request.query.get("keepalive_timeout_seconds", ""))
        except ValueError:
            requested = self.config.default_keepalive_s
        keepalive = max(self.config.min_keepalive_s, min(600, requested))
        socket = _Socket(
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
            await self._send(socket, self._welcome(session.id, keepalive))
            self.stats.reconnect_welcomes += 1
            # Twitch closes the old connection once the new one is welcomed.
            self._spawn(self._close(old, 1000, count=False))
            self._wake.set()
        else:
            session = _Session(secrets.token_urlsafe(24), socket)
            socket.session_id = session.id
            self._sessions[session.id] = session
            await self._send(socket, self._welcome(session.id, keepalive))
            self.stats.welcomes += 1
            self._spawn(self._subscribe_deadline(session, socket))
        self._changed.set()
        keepalives = asyncio.create_task(self._keepalives(socket))
        pings = (
            asyncio.create_task(self._pings(socket, self.config.ping_interval_s))
            if self.config.ping_interval_s
            else None
        )
        try:
            async for message in ws:
                if message.type is WSMsgType.PONG:
                    socket.last_pong = time.monotonic()
                    self.stats.pongs_received += 1
                    self._changed.set()
                elif message.type is WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    # Twitch: "Clients may not send messages other than pong" → 4001.
                    self.stats.inbound_messages += 1
                    await self._close(socket, 4001)
                    break
        finally:
            keepalives.cancel()
            if pings is not None:
                pings.cancel()
            socket.closed = True
            self._socket_gone(socket)
        return ws

    async def _pings(self, socket: _Socket, interval_s: float) -> None:
        """Twitch pings and closes with 4002 when no pong comes back in time."""
        while not socket.closed:
            await asyncio.sleep(interval_s)
            if socket.closed:
                return
            sent = time.monotonic()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.ws.ping()
            self.stats.pings_sent += 1
            await asyncio.sleep(self.config.pong_timeout_s)
            if not socket.closed and socket.last_pong < sent:
                await self._close(socket, 4002)
                return

    def _socket_gone(self, socket: _Socket) -> None:
        session = self._sessions.get(socket.session_id)
        if session is not None and session.socket is socket:
            # The session ends with its socket: its subscriptions are disabled
            # (`websocket_disconnected`) and stop counting against the limits — at once,
            # or after `dead_session_linger_s`, as Twitch takes a while to notice.
            del self._sessions[session.id]
            linger = self.config.dead_session_linger_s
            if linger > 0 and session.subscriptions:
                self._lingering[session.id] = session
                self._spawn(self._forget_later(session, linger))
        self._changed.set()

    async def _forget_later(self, session: _Session, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self._lingering.pop(session.id, None)
        self._changed.set()

    def _counted_sessions(self) -> list[_Session]:
        """Sessions whose subscriptions count towards the limits: live and lingering."""
        return [*self._sessions.values(), *self._lingering.values()]

    def _welcome(self, session_id: str, keepalive: int) -> bytes:
        return self._message(
            "session_welcome",
            b'{"session":{"id":'
            + msgspec.json.encode(session_id)
            + b',"status":"connected","connected_at":'
            + msgspec.json.encode(_rfc3339_now())
            + b',"keepalive_timeout_seconds":'
            + str(keepalive).encode()
            + b',"reconnect_url":null,"recovery_url":null}}',
        )

    async def _keepalives(self, socket: _Socket) -> None:
        while not socket.closed:
            wait = socket.last_sent + socket.keepalive_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if socket.silent:
                await asyncio.sleep(socket.keepalive_s)
                continue
            await self._send(socket, self._message("session_keepalive", b"{}"))

    async def _subscribe_deadline(self, session: _Session, socket: _Socket) -> None:
        await asyncio.sleep(self.config.subscribe_deadline_s)
        if not session.subscriptions and session.socket is socket and not socket.closed:
            await self._close(socket, 4003)

    async def _reconnect_grace(self, session: _Session, token: str) -> None:
        await asyncio.sleep(self.config.reconnect_grace_s)
        if session.reconnect_token == token and not session.socket.closed:
            await self._close(session.socket, 4004)

    async def _send(self, socket: _Socket, frame: bytes) -> bool:
        if socket.closed or socket.silent:
            return False
        socket.last_sent = time.monotonic()
        try:
            await socket.ws.send_str(frame.decode())
        except (ConnectionError, RuntimeError):
            socket.closed = True
            return False
        return True

    async def _close(self, socket: _Socket, code: int, *, count: bool = True) -> None:
        if socket.closed:
            return
        if count:
            self.stats.closes_sent[code] = self.stats.closes_sent.get(code, 0) + 1
        socket.closed = True
        self._socket_gone(socket)
        with contextlib.suppress(Exception):
            await socket.ws.close(code=code, message=b"simulated close")

    def _message(
        self, kind: str, payload: bytes, subscription: _Subscription | None = None
    ) -> bytes:
        metadata: dict[str, str] = {
            "message_id": derived_uuid("eventsub-meta", secrets.token_hex(8)),
            "message_type": kind,
            "message_timestamp": _rfc3339_now(),
        }
        if subscription is not None:
            metadata["subscription_type"] = subscription.type
            metadata["subscription_version"] = "1"
        return b'{"metadata":' + msgspec.json.encode(metadata) + b',"payload":' + payload + b"}"

    def _select(self, session_id: str | None) -> list[_Session]:
        return [
            s
            for s in self._sessions.values()
            if (session_id is None or s.id == session_id) and not s.socket.closed
        ]

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ delivery

    def _target(self, subscription_type: str, broadcaster_id: str) -> _Subscription | None:
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
                                socket, self._notification(old_sub, old)
                            ):
                                self.stats.redelivered += 1
                    if not await self._send(socket, self._notification(sub, item)):
                        break
                    if backlog and backlog[0] is item:  # not pushed out by `max_backlog`
                        backlog.popleft()
                    recent = self._recent.get(login)
                    if recent is None:
                        recent = self._recent[login] = deque(maxlen=self.config.redeliver_recent)
                    recent.append(item)
                    self.stats.notifications_sent += 1
                    if self.stats.notifications_sent % 64 == 0:
                        await asyncio.sleep(0)  # let keepalives and HTTP handlers run
            self._changed.set()

    def _notification(self, sub: _Subscription, item: _Pending) -> bytes:
        subscription_type, message_id, timestamp, event = item
        metadata = msgspec.json.encode(
            {
                "message_id": message_id,
                "message_type": "notification",
                "message_timestamp": timestamp,
                "subscription_type": subscription_type,
                "subscription_version": "1",
            }
        )
        return (
            b'{"metadata":'
            + metadata
            + b',"payload":{"subscription":'
            + self._subscription_json(sub, "enabled")
            + b',"event":'
            + event
            + b"}}"
        )

    def _subscription_json(self, sub: _Subscription, status: str) -> bytes:
        return msgspec.json.encode(
            {
                "id": sub.id,
                "status": status,
                "type": sub.type,
                "version": "1",
                "condition": sub.condition,
                "transport": {"method": "websocket", "session_id": sub.session_id},
                "created_at": sub.created_at,
                "cost": sub.cost,
            }
        )

    # ------------------------------------------------------------------ OAuth

    def token_is_live(self, access_token: str) -> bool:
        """Whether `access_token` was issued here and has not expired (its first use
        starts the clock of a `from_first_use` token): what Twitch's IRC login asks."""
        return self._live_token(access_token) is not None

    def _token_from(self, header: str, scheme: str) -> IssuedToken | None:
        prefix = f"{scheme} "
        if not header.startswith(prefix):
            return None
        return self._live_token(header[len(prefix) :].strip())

    def _live_token(self, access_token: str) -> IssuedToken | None:
        token = self._tokens.get(access_token)
        if token is None:
            return None
        now = time.monotonic()
        if token.lifetime_from_first_use_s is not None:
            token.expires_at = now + token.lifetime_from_first_use_s
            token.lifetime_from_first_use_s = None
        if token.expires_at is not None and now >= token.expires_at:
            return None
        return token

    async def _validate(self, request: web.Request) -> web.Response:
        self.stats.validate_calls += 1
        self._changed.set()
        header = request.headers.get("Authorization", "")
        token = self._token_from(header, "OAuth") or self._token_from(header, "Bearer")
        if token is None:
            return web.json_response({"status": 401, "message": "invalid access token"}, status=401)
        # Whole seconds, as Twitch, but never 0 for a token that expires: Twitch's 0 means
        # "does not expire", so a token in its last second would never be refreshed.
        expires_in = (
            0 if token.expires_at is None else max(1, int(token.expires_at - time.monotonic()))
        )
        return web.json_response(
            {
                "client_id": token.client_id,
                "login": token.login,
                "scopes": list(token.scopes),
                "user_id": token.user_id,
                "expires_in": expires_in,
            }
        )

    async def _token(self, request: web.Request) -> web.Response:
        self.stats.refresh_calls += 1
        self._changed.set()
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return web.json_response({"status": 400, "message": "invalid grant type"}, status=400)
        if form.get("client_id") != self.config.client_id:
            return web.json_response({"status": 400, "message": "invalid client"}, status=400)
        secret = form.get("client_secret")
        # A public client has no secret to send; a confidential one must send its own.
        without_secret = self.config.public_client and secret is None
        if not without_secret and secret != self.config.client_secret:
            return web.json_response(
                {"status": 403, "message": "invalid client secret"}, status=403
            )
        old = self._refresh.pop(str(form.get("refresh_token", "")), None)
        if old is None:
            return web.json_response(
                {"status": 400, "message": "Invalid refresh token"}, status=400
            )
        self._tokens.pop(old.access_token, None)  # the old access token stops working
        new = IssuedToken(
            access_token=secrets.token_hex(15),
            refresh_token=secrets.token_hex(25),
            client_id=old.client_id,
            user_id=old.user_id,
            login=old.login,
            scopes=old.scopes,
            expires_at=time.monotonic() + self.config.token_lifetime_s,
        )
        self._remember(new)
        return web.json_response(
            {
                "access_token": new.access_token,
                "refresh_token": new.refresh_token,
                "expires_in": self.config.token_lifetime_s,
                "scope": list(new.scopes),
                "token_type": "bearer",
            }
        )

    # ------------------------------------------------------------------ Helix

    def _helix_auth(
        self, request: web.Request
    ) -> tuple[IssuedToken | None, web.Response | None, dict[str, str]]:
        """The caller's token, or the response refusing it; plus the Ratelimit headers."""
        client_id = request.headers.get("Client-Id", "")
        headers = self._rate_headers(client_id)
        token = self._token_from(request.headers.get("Authorization", ""), "Bearer")
        if self._rate_limit_next > 0 or headers["Ratelimit-Remaining"] == "-1":
            self._rate_limit_next = max(0, self._rate_limit_next - 1)
            self.stats.rate_limited += 1
            headers["Ratelimit-Remaining"] = "0"
            if self._rate_limit_reset:
                headers["Ratelimit-Reset"] = str(int(time.time()) + 1)
            else:
                headers.pop("Ratelimit-Reset", None)
            return None, _json_error(429, "Too Many Requests", headers), headers
        if token is None:
            self.stats.helix_unauthorized += 1
            return None, _json_error(401, "Invalid OAuth token", headers), headers
        if token.client_id != client_id:
            self.stats.helix_unauthorized += 1
            return (
                None,
                _json_error(401, "Client ID and OAuth token do not match", headers),
                headers,
            )
        return token, None, headers

    def _rate_headers(self, client_id: str) -> dict[str, str]:
        limit = self.config.rate_limit_points
        now = time.time()
        window = self.config.rate_limit_window_s
        remaining, reset = self._bucket.get(client_id, (limit, now + window))
        if now >= reset:
            remaining, reset = limit, now + window
        remaining -= 1
        self._bucket[client_id] = (max(remaining, 0), reset)
        return {
            "Ratelimit-Limit": str(limit),
            "Ratelimit-Remaining": str(remaining),
            "Ratelimit-Reset": str(math.ceil(reset)),  # whole seconds, never early
        }

    async def _users(self, request: web.Request) -> web.Response:
        self.stats.users_calls += 1
        self._changed.set()
        injected = await self._injected("users")
        if injected is not None:
            return injected
        _token, refusal, headers = self._helix_auth(request)
        if refusal is not None:
            return refusal
        logins = [value.lower() for value in request.query.getall("login", [])]
        self.stats.users_logins_max = max(self.stats.users_logins_max, len(logins))
        if len(logins) > 100:
            return _json_error(400, "The number of login parameters exceeds 100", headers)
        data = [
            {
                "id": room_id_for(login),
                "login": login,
                "display_name": login,
                "type": "",
                "broadcaster_type": "",
                "description": "",
                "profile_image_url": "",
                "offline_image_url": "",
                "view_count": 0,
                "created_at": "2016-01-01T00:00:00Z",
            }
            for login in dict.fromkeys(logins)
            if login not in self.unknown_logins
        ]
        return web.json_response({"data": data}, headers=headers)

    async def _create_subscription(self, request: web.Request) -> web.Response:
        response = await self._injected("create")
        if response is None:
            token, refusal, headers = self._helix_auth(request)
            response = refusal or await self._create(request, token, headers)
        if response.status != 202:
            self.stats.subscription_refusals[response.status] = (
                self.stats.subscription_refusals.get(response.status, 0) + 1
            )
        self._changed.set()
        return response

    async def _create(
        self, request: web.Request, token: IssuedToken | None, headers: dict[str, str]
    ) -> web.Response:
        assert token is not None
        try:
            body = msgspec.json.decode(await request.read(), type=dict[str, Any])
            kind = str(body["type"])
            version = str(body["version"])
            condition = {str(k): str(v) for k, v in dict(body["condition"]).items()}
            transport = dict(body["transport"])
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError, ValueError):
            return _json_error(400, "malformed request body", headers)
        if kind not in CHAT_TYPES or version != "1":
            return _json_error(400, f"unsupported subscription type {kind} v{version}", headers)
        if set(condition) != {"broadcaster_user_id", "user_id"}:
            return _json_error(400, "condition must have broadcaster_user_id and user_id", headers)
        if transport.get("method") != "websocket":
            return _json_error(400, "this simulator only knows the websocket transport", headers)
        if condition["user_id"] != token.user_id or _CHAT_SCOPE not in token.scopes:
            return _json_error(403, "subscription missing proper authorization", headers)
        session = self._sessions.get(str(transport.get("session_id", "")))
        if session is None or session.socket.closed:
            return _json_error(
                400, "websocket transport session does not exist or has already disconnected"
            )
        holders = self._counted_sessions() if self.config.conflict_across_sessions else [session]
        for holder in holders:
            for sub in holder.subscriptions.values():
                if (
                    sub.type == kind
                    and sub.condition == condition
                    and sub.client_id == token.client_id
                ):
                    return _json_error(409, "subscription already exists", headers)
        if len(session.subscriptions) >= self.config.subscriptions_per_connection:
            return _json_error(
                429, "number of websocket subscriptions per connection exceeds the limit", headers
            )
        mine = [
            s
            for s in self._counted_sessions()
            if s.subscriptions
            and next(iter(s.subscriptions.values())).client_id == token.client_id
            and next(iter(s.subscriptions.values())).user_id == token.user_id
        ]
        if not session.subscriptions and len(mine) >= self.config.connections_per_user:
            # Twitch's words, which users see right after a reconnect while the dead
            # session still counts.
            return _json_error(
                429,
                "number of websocket transports limit exceeded"
                " (websocket connections per client and user)",
                headers,
            )
        broadcaster_login = next(
            (login for login in self._logins_for(condition["broadcaster_user_id"])), ""
        )
        cost = self.costs.get(broadcaster_login, 0)
        total = self._total_cost(token)
        if total + cost > self.config.max_total_cost:
            return _json_error(
                429,
                f"subscription cost {cost} would exceed max_total_cost"
                f" {self.config.max_total_cost} (total_cost {total})",
                headers,
            )
        sub = _Subscription(
            secrets.token_hex(16),
            kind,
            condition,
            session.id,
            token.client_id,
            token.user_id,
            cost,
            _rfc3339_now(),
        )
        if not session.subscriptions:
            self.stats.sessions_with_subscriptions += 1
        session.subscriptions[sub.id] = sub
        self.stats.subscriptions_created += 1
        self.stats.subscriptions_created_by_type[kind] = (
            self.stats.subscriptions_created_by_type.get(kind, 0) + 1
        )
        self.stats.subscribe_tokens.append(str(self._token_order[token.access_token]))
        self._wake.set()
        answer = msgspec.json.decode(self._subscription_json(sub, "enabled"))
        return web.json_response(
            {
                "data": [answer],
                "total": sum(len(s.subscriptions) for s in self._sessions.values()),
                "total_cost": total + cost,
                "max_total_cost": self.config.max_total_cost,
            },
            status=202,
            headers=headers,
        )

    def _logins_for(self, broadcaster_id: str) -> Iterable[str]:
        known = {*self.costs, *self._backlog}
        return (login for login in known if room_id_for(login) == broadcaster_id)

    def _total_cost(self, token: IssuedToken) -> int:
        return sum(
            sub.cost
            for session in self._counted_sessions()
            for sub in session.subscriptions.values()
            if sub.client_id == token.client_id and sub.user_id == token.user_id
        )

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        """Get EventSub Subscriptions: optionally by `type`, a page (`after`) at a time."""
        self.stats.lists += 1
        injected = await self._injected("list")
        if injected is not None:
            return injected
        token, refusal, headers = self._helix_auth(request)
        if refusal is not None:
            return refusal
        assert token is not None
        wanted_type = request.query.get("type")
        data = [
            msgspec.json.decode(self._subscription_json(sub, "enabled"))
            for session in self._counted_sessions()
            for sub in session.subscriptions.values()
            if sub.client_id == token.client_id
            and sub.user_id == token.user_id
            and (wanted_type is None or sub.type == wanted_type)
        ]
        try:
            start = int(request.query.get("after", "0"))
        except ValueError:
            return _json_error(400, "invalid cursor", headers)
        end = start + self.config.list_page_size
        return web.json_response(
            {
                "data": data[start:end],
                "total": len(data),
                "total_cost": self._total_cost(token),
                "max_total_cost": self.config.max_total_cost,
                "pagination": {"cursor": str(end)} if end < len(data) else {},
            },
            headers=headers,
        )

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        self.stats.deletes += 1
        injected = await self._injected("delete")
        if injected is not None:
            return injected
        _token, refusal, headers = self._helix_auth(request)
        if refusal is not None:
            return refusal
        wanted = request.query.get("id", "")
        for session in self._counted_sessions():
            if wanted in session.subscriptions:
                del session.subscriptions[wanted]
                self._changed.set()
                return web.Response(status=204, headers=headers)
        return _json_error(404, "subscription not found", headers)


# ---------------------------------------------------------------------------------------
# Events


def _numbered_event(login: str, seq: int) -> dict[str, Any]:
    text = f"seq {login} {seq}"
    return {
        "chatter_user_id": user_id_for(NUMBERED_SENDER),
        "chatter_user_login": NUMBERED_SENDER,
        "chatter_user_name": NUMBERED_SENDER,
        "message_id": derived_uuid("numbered-chat", login, seq),
        "message": {"text": text, "fragments": [_fragment("text", text)]},
        "color": "#1E90FF",
        "badges": [],
        "message_type": "text",
        "cheer": None,
        "reply": None,
        "channel_points_custom_reward_id": None,
        "source_broadcaster_user_id": None,
        "source_broadcaster_user_login": None,
        "source_broadcaster_user_name": None,
        "source_message_id": None,
        "source_badges": None,
    }


def _fragment(kind: str, text: str, emote_id: str | None = None) -> dict[str, Any]:
    emote = None
    if emote_id is not None:
        emote = {"id": emote_id, "emote_set_id": "0", "owner_id": "0", "format": ["static"]}
    return {"type": kind, "text": text, "cheermote": None, "emote": emote, "mention": None}


def privmsg_event(login: str, line: str) -> dict[str, Any]:
    """The `channel.chat.message` event equivalent to a generated PRIVMSG line."""
    message = parse_line(line)
    tags = message.tags
    text = message.params[-1]
    # `/me`: IRC's emote positions count from the text inside `\x01ACTION …\x01`.
    offset = 8 if text.startswith("\x01ACTION ") and text.endswith("\x01") else 0
    ranges: list[tuple[int, int, str]] = []
    for spec in filter(None, tags.get("emotes", "").split("/")):
        emote_id, _, positions = spec.partition(":")
        for position in positions.split(","):
            first, _, last = position.partition("-")
            ranges.append((int(first) + offset, int(last) + offset, emote_id))
    ranges.sort()
    fragments: list[dict[str, Any]] = []
    cursor = 0
    for start, end, emote_id in ranges:
        if start > cursor:
            fragments.append(_fragment("text", text[cursor:start]))
        fragments.append(_fragment("emote", text[start : end + 1], emote_id))
        cursor = end + 1
    if cursor < len(text) or not fragments:
        fragments.append(_fragment("text", text[cursor:]))
    badge_info = dict(
        item.split("/", 1) for item in tags.get("badge-info", "").split(",") if "/" in item
    )
    badges = [
        {"set_id": set_id, "id": version, "info": badge_info.get(set_id, "")}
        for set_id, version in (
            item.split("/", 1) for item in tags.get("badges", "").split(",") if "/" in item
        )
    ]
    bits = tags.get("bits")
    parent = tags.get("reply-parent-msg-id")
    reply = None
    if parent:
        reply = {
            "parent_message_id": parent,
            "parent_message_body": tags.get("reply-parent-msg-body", ""),
            "parent_user_id": tags.get("reply-parent-user-id", ""),
            "parent_user_name": tags.get("reply-parent-display-name", ""),
            "parent_user_login": tags.get("reply-parent-user-login", ""),
            "thread_message_id": tags.get("reply-thread-parent-msg-id", parent),
            "thread_user_id": tags.get("reply-thread-parent-user-id", ""),
            "thread_user_name": tags.get("reply-thread-parent-display-name", ""),
            "thread_user_login": tags.get("reply-thread-parent-user-login", ""),
        }
    prefix = message.prefix or ""
    return {
        "chatter_user_id": tags.get("user-id", ""),
        "chatter_user_login": prefix.split("!", 1)[0],
        "chatter_user_name": tags.get("display-name", ""),
        "message_id": tags.get("id", ""),
        "message": {"text": text, "fragments": fragments},
        "color": tags.get("color", ""),
        "badges": badges,
        # EventSub marks a first message only as `user_intro` (IRC: `first-msg=1`).
        "message_type": "user_intro" if tags.get("first-msg") == "1" else "text",
        "cheer": {"bits": int(bits)} if bits else None,
        "reply": reply,
        "channel_points_custom_reward_id": None,
        "source_broadcaster_user_id": None,
        "source_broadcaster_user_login": None,
        "source_broadcaster_user_name": None,
        "source_message_id": None,
        "source_badges": None,
    }


# ---------------------------------------------------------------------------------------
# On a thread, for synchronous callers


class EventSubSimulatorThread(SimulatorOnThread[EventSubSimulator]):
    """An `EventSubSimulator` on its own loop in a daemon thread (like `SimulatorThread`).

    Every method blocks until the simulator's loop has done the work, so a test on
    another event loop (the client's) calls them through `asyncio.to_thread` when they
    wait, and directly when they only flip a switch.
    """

    def __init__(
        self,
        config: EventSubSimulatorConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config if config is not None else EventSubSimulatorConfig()
        self.ssl_context = ssl_context
        super().__init__(
            "eventsub-simulator",
            "the EventSub simulator",
            lambda: EventSubSimulator(self.config, ssl_context=self.ssl_context),
        )

    @property
    def urls(self) -> dict[str, str]:
        return self.simulator.urls

    def stats(self) -> EventSubStats:
        return self.call(lambda sim: sim.stats.snapshot())

    def issue_token(self, **kwargs: Any) -> IssuedToken:
        return self.call(lambda sim: sim.issue_token(**kwargs))

    def token_is_live(self, access_token: str) -> bool:
        """From any thread (the IRC simulator's login check, say)."""
        return self.call(lambda sim: sim.token_is_live(access_token))

    def start_numbered(self, channels: Sequence[str], *, count: int, rate: float = 0.0) -> None:
        self.call(lambda sim: sim.start_numbered(channels, count=count, rate=rate))

    def wait_until(self, predicate: Callable[[EventSubSimulator], bool], timeout: float) -> None:
        """Block until `predicate(simulator)` holds (run on the simulator's loop)."""
        simulator = self.simulator
        self.run(simulator.wait_until(lambda: predicate(simulator), timeout), timeout + 5.0)


# ---------------------------------------------------------------------------------------
# Standalone: `python -m twitch_ingestion.simulator.eventsub_server` (`make simulate-eventsub`)

# Not 8080 (the service's HEALTH_PORT), 6667 (the IRC simulator) or 9092/9093 (Kafka):
# the simulator, the service and the broker run side by side on one machine.
DEFAULT_STANDALONE_PORT = 7080


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; print the settings that point the service here."""
    parser = argparse.ArgumentParser(
        prog="python -m twitch_ingestion.simulator.eventsub_server",
        description="A local Twitch EventSub (WebSocket, OAuth and Helix) for demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_STANDALONE_PORT,
        help="0: any free port (default %(default)s)",
    )
    parser.add_argument(
        "--channels", default="", help="comma-separated logins to generate chat for"
    )
    parser.add_argument("--rate", type=float, default=5.0, help="generated messages a second")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    configure_logging("info", LogFormat.AUTO)  # the service's log format
    config = EventSubSimulatorConfig(host=args.host, port=args.port)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, channels, args.rate, args.seed))
    return 0


async def _serve(
    config: EventSubSimulatorConfig, channels: list[str], rate: float, seed: int | None
) -> None:
    async with EventSubSimulator(config) as simulator:
        token = simulator.issue_token()
        # stdout carries what this command is for: the settings (a simulator-only token).
        settings = {
            "TWITCH_SOURCE": "eventsub",
            "TWITCH_CLIENT_ID": config.client_id,
            "TWITCH_OAUTH_TOKEN": token.access_token,
            "TWITCH_CLIENT_SECRET": config.client_secret,
            "TWITCH_REFRESH_TOKEN": token.refresh_token,
            **simulator.urls,
        }
        for name, value in settings.items():
            print(f"{name}={value}", flush=True)
        log.info("eventsub simulator listening", url=simulator.base_url)
        if channels and rate > 0:
            simulator.start_generated(channels, count=None, rate=rate, seed=seed)
        await asyncio.Event().wait()


if __name__ == "__main__":
    raise SystemExit(main())
