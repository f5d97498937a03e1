"""The EventSub simulator's data: its config, its counters, and the tokens, sessions and
subscriptions it holds. Plain dataclasses; the endpoints that change them are in
`eventsub_oauth.py`, `eventsub_helix.py` and `eventsub_websocket.py`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

__all__ = [
    "CHAT_SCOPE",
    "CHAT_TYPES",
    "EventSubSimulatorConfig",
    "EventSubStats",
    "IssuedToken",
    "Pending",
    "Session",
    "Socket",
    "Subscription",
]

CHAT_TYPES = (
    "channel.chat.message",
    "channel.chat.notification",
    "channel.chat.clear",
    "channel.chat.clear_user_messages",
    "channel.chat.message_delete",
)
"""Subscription types the simulator accepts (all version 1, all need `user:read:chat`)."""
CHAT_SCOPE = "user:read:chat"


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
class Subscription:
    id: str
    type: str
    condition: dict[str, str]
    session_id: str
    client_id: str
    user_id: str
    cost: int
    created_at: str


@dataclass
class Socket:
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
class Session:
    id: str
    socket: Socket
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    reconnect_token: str | None = None
    """Set while a `session_reconnect` is outstanding: the `reconnect_url` carries it."""
    invalid_reconnect: bool = False


Pending = tuple[str, str, str, bytes]
"""A queued notification: (subscription type, metadata message_id, message_timestamp,
event JSON)."""
