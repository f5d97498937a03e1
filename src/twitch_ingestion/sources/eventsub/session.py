"""The EventSub WebSocket connection state machine: messages and time in, actions out.

One `EventSubSession` follows one logical EventSub connection across its sockets
(dev.twitch.tv/docs/eventsub/handling-websocket-events):

    CONNECTING --welcome--> WELCOMED --subscriptions_created--> RUNNING
        ^                      |  \\__ session_reconnect __/  |
        |                      |        MIGRATING: old socket kept until the new welcome
        +--- close / silence / 4000-4007: reconnect fresh, re-subscribe ----+

Every state change goes through `TRANSITIONS` (one table, like h11's `_state.py`): an
event a state does not list raises `IllegalTransitionError`, so a bug shows at once instead
of leaving the session in a state nothing expects. Inputs that do not concern the
current socket (a late frame from a replaced one, a second welcome) are filtered before
they reach the table: they are not transitions.

The shell owns the sockets and names each one with the number `socket_opened` returns,
so a late message or close from a socket this session has moved away from is ignored
rather than mistaken for the current one. It calls `receive` for every decoded frame,
`socket_closed` when a socket ends, and `tick` at `next_deadline()` (the keepalive
watchdog and the welcome timeout); each returns the actions to carry out.

Twitch delivers at least once and re-sends after a reconnect, so notifications and
revocations are de-duplicated by `metadata.message_id` in a bounded FIFO that outlives
the sockets (like the IRC pool's `_RecentIds`).
"""

from __future__ import annotations

import enum
from collections import deque

import msgspec

from twitch_ingestion.sources.eventsub.messages import (
    EventSubMessage,
    Keepalive,
    Notification,
    Reconnect,
    Revocation,
    Welcome,
)

__all__ = [
    "CLOSE_CODES",
    "DEFAULT_DEDUP_CAPACITY",
    "DEFAULT_KEEPALIVE_MARGIN_S",
    "DEFAULT_KEEPALIVE_TIMEOUT_S",
    "DEFAULT_WELCOME_TIMEOUT_S",
    "NON_RETRYABLE_REVOCATIONS",
    "SUBSCRIBE_DEADLINE_S",
    "TRANSITIONS",
    "CloseCode",
    "CloseOldSocket",
    "Deliver",
    "EventSubSession",
    "Fatal",
    "IllegalTransitionError",
    "OpenReconnectUrl",
    "ReconnectFresh",
    "ReconnectKind",
    "Revoked",
    "SessionAction",
    "SessionEvent",
    "SessionState",
    "Subscribe",
    "close_code",
]

SUBSCRIBE_DEADLINE_S = 10.0
"""Twitch closes a socket with 4003 "connection unused" when no subscription names its
session within 10 s of the welcome (websocket reference, "Close message")."""

DEFAULT_KEEPALIVE_TIMEOUT_S = 10
"""What the docs' welcome example offers and what Twitch sends by default (10–600 s can
be asked for with `?keepalive_timeout_seconds=`); used when a welcome says null."""

DEFAULT_KEEPALIVE_MARGIN_S = 5.0
"""Slack on top of `keepalive_timeout_seconds` before a silent socket counts as dead:
Twitch sends its keepalive *at* the timeout, so a frame delayed by a busy network or a
GC pause must not cost a reconnect (and a re-subscription of every channel)."""

DEFAULT_WELCOME_TIMEOUT_S = 10.0
"""How long an opened socket may wait for its `session_welcome` before it is dropped."""

DEFAULT_DEDUP_CAPACITY = 20_000
"""Recent `message_id`s remembered. Twitch re-sends what it could not confirm around a
reconnect (seconds of traffic); 20 000 ids cover more than a minute of 300 busy
channels at ~1 MiB of memory (44-character ids)."""


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    """A socket is open (or opening); no welcome yet."""
    WELCOMED = "welcomed"
    """Welcome received; the subscriptions must be created before the deadline."""
    RUNNING = "running"
    """Subscribed: notifications flow."""
    MIGRATING = "migrating"
    """`session_reconnect`: a socket to `reconnect_url` is opening; the old one still
    delivers until the new welcome."""
    DISCONNECTED = "disconnected"
    """`ReconnectFresh` was returned: waiting for the shell to open the next socket."""
    CLOSED = "closed"
    """Ended for good (`Fatal`) or by `close()`."""


class SessionEvent(enum.Enum):
    """What moves a session from one state to another (see `TRANSITIONS`)."""

    OPEN_SOCKET = "open-socket"
    """A fresh socket to the configured URL, or (MIGRATING) one to the reconnect URL."""
    WELCOME = "welcome"
    """`session_welcome` on a fresh socket."""
    SUBSCRIBED = "subscribed"
    """The first subscription of the welcomed session is in place."""
    RECONNECT_REQUESTED = "reconnect-requested"
    """`session_reconnect`: Twitch moves the session to another socket."""
    MIGRATED = "migrated"
    """The reconnect socket is welcomed: same session, subscriptions carried over."""
    LOST = "lost"
    """Closed, silent, never welcomed: a fresh session is needed (`ReconnectFresh`)."""
    GIVE_UP = "give-up"
    """Too many sessions in a row ended before subscribing (`Fatal`)."""
    CLOSE = "close"
    """The service is stopping."""


_S = SessionState
_E = SessionEvent
TRANSITIONS: dict[SessionState, dict[SessionEvent, SessionState]] = {
    _S.DISCONNECTED: {_E.OPEN_SOCKET: _S.CONNECTING, _E.CLOSE: _S.CLOSED},
    _S.CONNECTING: {
        _E.WELCOME: _S.WELCOMED,
        _E.LOST: _S.DISCONNECTED,
        _E.GIVE_UP: _S.CLOSED,
        _E.CLOSE: _S.CLOSED,
    },
    _S.WELCOMED: {
        _E.SUBSCRIBED: _S.RUNNING,
        _E.RECONNECT_REQUESTED: _S.MIGRATING,
        _E.LOST: _S.DISCONNECTED,
        _E.GIVE_UP: _S.CLOSED,
        _E.CLOSE: _S.CLOSED,
    },
    _S.RUNNING: {
        _E.RECONNECT_REQUESTED: _S.MIGRATING,
        _E.LOST: _S.DISCONNECTED,
        _E.CLOSE: _S.CLOSED,
    },
    _S.MIGRATING: {
        _E.OPEN_SOCKET: _S.MIGRATING,
        _E.MIGRATED: _S.RUNNING,
        _E.LOST: _S.DISCONNECTED,
        _E.CLOSE: _S.CLOSED,
    },
    _S.CLOSED: {_E.CLOSE: _S.CLOSED},
}
"""Every state, and every event it allows with the state that follows. A subscribed
session (RUNNING, MIGRATING) cannot GIVE_UP: only sessions that never subscribed count
towards TWITCH_MAX_RECONNECT_ATTEMPTS."""


class IllegalTransitionError(RuntimeError):
    """An event the current state does not allow: a bug in the session or its shell."""

    def __init__(self, state: SessionState, event: SessionEvent) -> None:
        super().__init__(f"EventSub session: {event.value} is not allowed in state {state.value}")
        self.state = state
        self.event = event


class ReconnectKind(enum.Enum):
    BACKOFF = "backoff"
    """Something went wrong on Twitch's side or ours: wait as the IRC source does."""
    IMMEDIATE = "immediate"
    """Nothing is wrong with Twitch (a lost reconnect, a silent socket): go at once."""


# ---------------------------------------------------------------------------------------
# Actions (what the shell must do) and events (what it should know)


class Subscribe(msgspec.Struct, frozen=True, gc=False):
    """Create every subscription for `session_id` (a new session has none) by `deadline`."""

    session_id: str
    deadline: float


class Deliver(msgspec.Struct, frozen=True, gc=False):
    """A notification seen for the first time: turn it into a record."""

    notification: Notification


class OpenReconnectUrl(msgspec.Struct, frozen=True, gc=False):
    """Open a socket to `url` and keep the current one until its welcome arrives.

    The subscriptions move with the session: do not re-create them.
    """

    url: str


class CloseOldSocket(msgspec.Struct, frozen=True, gc=False):
    """The reconnect socket is welcomed: close the old one (normal closure)."""

    socket: int


class ReconnectFresh(msgspec.Struct, frozen=True, gc=False):
    """Close every socket, open a new one to the configured URL, then re-subscribe.

    `kind` says whether to wait first (the IRC source's backoff) or go at once.
    """

    reason: str
    """Short label: `close-4000`, `keepalive-timeout`, `welcome-timeout`, …"""
    kind: ReconnectKind


class Revoked(msgspec.Struct, frozen=True, gc=False):
    """Twitch ended a subscription: log it with `reason`, count it, retry if allowed."""

    subscription_id: str
    subscription_type: str
    broadcaster_user_id: str
    reason: str
    """The subscription `status` Twitch gives, e.g. `authorization_revoked`."""
    retry_allowed: bool


class Fatal(msgspec.Struct, frozen=True, gc=False):
    """Stop this source: the operator's limit is reached. `message` is one line.

    Returned when `max_unproductive_sessions` (TWITCH_MAX_RECONNECT_ATTEMPTS; unlimited by
    default) connections in a row ended before a subscription was created (4003 after
    4003, reconnect URLs that always fail, Twitch unreachable).
    """

    reason: str
    message: str


SessionAction = (
    Subscribe | Deliver | OpenReconnectUrl | CloseOldSocket | ReconnectFresh | Revoked | Fatal
)


# ---------------------------------------------------------------------------------------
# Close codes and revocation reasons, as Twitch documents them


class CloseCode(msgspec.Struct, frozen=True, gc=False):
    code: int
    name: str
    meaning: str
    kind: ReconnectKind
    """How to reconnect. No code is fatal by itself: Twitch documents each as a reason
    to start a new session; a loop of them ends in `Fatal` (unproductive sessions)."""


_B = ReconnectKind.BACKOFF
_NOW = ReconnectKind.IMMEDIATE

CLOSE_CODES: dict[int, CloseCode] = {
    c.code: c
    for c in (
        CloseCode(4000, "internal-server-error", "Twitch had an internal error", _B),
        # We never send on the socket; if it happens it is a bug here, and a fresh
        # session with backoff is still the best that can be done without a person
        # (the unproductive-session limit ends a loop).
        CloseCode(4001, "client-sent-inbound-traffic", "this client sent on the socket", _B),
        CloseCode(4002, "client-failed-ping-pong", "this client missed Twitch's ping", _NOW),
        # The classic loop: re-subscribing too slowly, failing again. Backoff spaces it.
        CloseCode(4003, "connection-unused", "no subscription within 10 s of the welcome", _B),
        CloseCode(4004, "reconnect-grace-time-expired", "reconnect URL unused for 30 s", _NOW),
        CloseCode(4005, "network-timeout", "transient network timeout", _B),
        CloseCode(4006, "network-error", "transient network error", _B),
        # Sent on the reconnect socket: the URL is stale; start a new session instead.
        CloseCode(4007, "invalid-reconnect", "the reconnect URL was invalid", _NOW),
    )
}


def close_code(code: int | None) -> CloseCode:
    """What a WebSocket close code means; unknown codes (1006 …) reconnect with backoff."""
    known = CLOSE_CODES.get(code) if code is not None else None
    if known is not None:
        return known
    return CloseCode(code or 0, f"close-{code}", "the socket closed", ReconnectKind.BACKOFF)


NON_RETRYABLE_REVOCATIONS = {
    "user_removed": "a user in the subscription's condition no longer exists",
    "authorization_revoked": "the user revoked this app's authorization, or the token"
    " lost a scope (TWITCH_OAUTH_TOKEN needs user:read:chat)",
    "moderator_removed": "the moderator in the condition is no longer a moderator",
    "version_removed": "Twitch removed this subscription version (this service needs an update)",
    "chat_user_banned": "the bot user was banned from this channel's chat",
}
"""Revocation statuses where subscribing again fails the same way (EventSub reference,
"Subscription status"); any other status (`beta_maintenance`, …) may be retried."""


# ---------------------------------------------------------------------------------------


class EventSubSession:
    """State of one EventSub connection; see the module docstring for the protocol."""

    def __init__(
        self,
        *,
        keepalive_margin_s: float = DEFAULT_KEEPALIVE_MARGIN_S,
        welcome_timeout_s: float = DEFAULT_WELCOME_TIMEOUT_S,
        dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
        max_unproductive_sessions: int | None = None,
    ) -> None:
        """`max_unproductive_sessions` None: reconnect for ever (outages end; the backoff
        spaces the attempts)."""
        self._state = SessionState.DISCONNECTED
        self.session_id: str | None = None
        self.keepalive_timeout_s: int = DEFAULT_KEEPALIVE_TIMEOUT_S
        self.subscribe_deadline: float | None = None
        self.duplicates_dropped = 0
        self._margin = keepalive_margin_s
        self._welcome_timeout = welcome_timeout_s
        self._recent = _RecentIds(dedup_capacity)
        self._max_unproductive = max_unproductive_sessions
        self._unproductive = 0
        """Sessions in a row that ended before their subscriptions were created."""
        self._next_socket = 0
        self._socket: int | None = None
        """The socket whose messages count (the one welcomed, or being welcomed)."""
        self._old_socket: int | None = None
        """While MIGRATING: the socket that still delivers until the new welcome."""
        self._last_frame_at = 0.0
        self._opened_at = 0.0

    # -- inputs ----------------------------------------------------------------------

    def socket_opened(self, now: float) -> int:
        """A new socket is connecting (fresh, or to a reconnect URL); returns its number."""
        self._next_socket += 1
        socket = self._next_socket
        migrating = self._state is SessionState.MIGRATING
        self._fire(SessionEvent.OPEN_SOCKET)
        if migrating:
            self._old_socket = self._socket
        else:
            self.session_id = None
            self.subscribe_deadline = None
        self._socket = socket
        self._opened_at = now
        self._last_frame_at = now
        return socket

    def receive(self, socket: int, message: EventSubMessage, now: float) -> list[SessionAction]:
        """Handle one decoded frame read from `socket` at `now`."""
        if socket == self._old_socket:
            # The old socket of a migration still delivers; only its notifications matter.
            return (
                self._notification(message)
                if isinstance(message, Notification | Revocation)
                else []
            )
        if socket != self._socket or self._state is SessionState.CLOSED:
            return []
        self._last_frame_at = now
        if isinstance(message, Notification | Revocation):
            return self._notification(message)
        if isinstance(message, Keepalive):
            return []
        if isinstance(message, Welcome):
            return self._welcome(message, now)
        assert isinstance(message, Reconnect)
        if self._state in (SessionState.WELCOMED, SessionState.RUNNING):
            self._fire(SessionEvent.RECONNECT_REQUESTED)
            return [OpenReconnectUrl(message.reconnect_url)]
        return []  # a second reconnect while migrating: the first one is under way

    def subscriptions_created(self, session_id: str) -> None:
        """The shell created the subscriptions for `session_id` (ignored if stale)."""
        if self._state is SessionState.WELCOMED and session_id == self.session_id:
            self._fire(SessionEvent.SUBSCRIBED)
            self.subscribe_deadline = None
            self._unproductive = 0

    def socket_closed(self, socket: int, code: int | None, now: float) -> list[SessionAction]:
        """`socket` ended with WebSocket close `code` (None: no close frame, e.g. reset)."""
        if socket == self._old_socket:
            self._old_socket = None  # expected: Twitch drops it after the new welcome
            return []
        if socket != self._socket or self._state is SessionState.CLOSED:
            return []
        # Whatever the code, the session is gone (a failed reconnect socket included:
        # its old session cannot be resumed), so every close starts a fresh one.
        info = close_code(code)
        return self._reconnect(f"close-{info.code}" if code is not None else "closed", info.kind)

    def tick(self, now: float) -> list[SessionAction]:
        """Watchdogs: call at `next_deadline()` (calling more often is harmless)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if self._state is SessionState.CONNECTING:
            return self._reconnect("welcome-timeout", ReconnectKind.BACKOFF)
        if self._state is SessionState.MIGRATING and self._old_socket is not None:
            # The new socket never welcomed us within the grace time: start afresh.
            return self._reconnect("reconnect-welcome-timeout", ReconnectKind.IMMEDIATE)
        return self._reconnect("keepalive-timeout", ReconnectKind.IMMEDIATE)

    def close(self) -> None:
        """The service is stopping: ignore everything from now on."""
        self._fire(SessionEvent.CLOSE)
        self._socket = self._old_socket = None

    @property
    def state(self) -> SessionState:
        """Read-only: states change only through `TRANSITIONS`."""
        return self._state

    def _fire(self, event: SessionEvent) -> None:
        allowed = TRANSITIONS[self._state]
        if event not in allowed:
            raise IllegalTransitionError(self._state, event)
        self._state = allowed[event]

    # -- outputs ---------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `tick` has something to check, or None while closed."""
        if self._state in (SessionState.CLOSED, SessionState.DISCONNECTED):
            return None
        if self._state is SessionState.CONNECTING:
            return self._opened_at + self._welcome_timeout
        if self._state is SessionState.MIGRATING and self._old_socket is not None:
            # Twitch gives 30 s to use the reconnect URL (4004 after that).
            return min(self._opened_at + self._welcome_timeout, self._silence_deadline())
        return self._silence_deadline()

    def _silence_deadline(self) -> float:
        return self._last_frame_at + self.keepalive_timeout_s + self._margin

    # -- internals -------------------------------------------------------------------

    def _welcome(self, message: Welcome, now: float) -> list[SessionAction]:
        if message.keepalive_timeout_s is not None:
            self.keepalive_timeout_s = message.keepalive_timeout_s
        if self._state is SessionState.MIGRATING:
            # Same session, new socket: subscriptions carried over.
            old = self._old_socket
            self._old_socket = None
            self._fire(SessionEvent.MIGRATED)
            self.session_id = message.session_id
            self._unproductive = 0
            return [CloseOldSocket(old)] if old is not None else []
        if self._state is not SessionState.CONNECTING:
            return []  # a repeated welcome on a welcomed socket changes nothing
        self._fire(SessionEvent.WELCOME)
        self.session_id = message.session_id
        # The welcome reference says its keepalive_timeout_seconds is also the time to
        # subscribe; the close-code reference says 10 s. The shorter one is safe.
        self.subscribe_deadline = now + min(float(self.keepalive_timeout_s), SUBSCRIBE_DEADLINE_S)
        return [Subscribe(message.session_id, self.subscribe_deadline)]

    def _notification(self, message: Notification | Revocation) -> list[SessionAction]:
        if not self._recent.add(message.message_id):
            self.duplicates_dropped += 1
            return []
        if isinstance(message, Notification):
            return [Deliver(message)]
        subscription = message.subscription
        return [
            Revoked(
                subscription.id,
                subscription.type,
                subscription.condition.get("broadcaster_user_id", ""),
                subscription.status,
                subscription.status not in NON_RETRYABLE_REVOCATIONS,
            )
        ]

    def _reconnect(self, reason: str, kind: ReconnectKind) -> list[SessionAction]:
        if self._state is not SessionState.RUNNING and self._state is not SessionState.MIGRATING:
            self._unproductive += 1
            if self._max_unproductive is not None and self._unproductive >= self._max_unproductive:
                self._fire(SessionEvent.GIVE_UP)
                self._socket = self._old_socket = None
                return [
                    Fatal(
                        "eventsub-reconnect-loop",
                        f"EventSub: {self._unproductive} connections in a row ended before"
                        f" a subscription was created (last: {reason}), the limit set by"
                        " TWITCH_MAX_RECONNECT_ATTEMPTS; check the network, TWITCH_OAUTH_TOKEN"
                        " (scope user:read:chat) and the Helix errors above",
                    )
                ]
        self._fire(SessionEvent.LOST)
        self.session_id = None
        self.subscribe_deadline = None
        self._socket = self._old_socket = None
        return [ReconnectFresh(reason, kind)]


class _RecentIds:
    """The last `capacity` message ids, oldest forgotten first: O(1) per message.

    A set for lookups and a deque for age. (The IRC pool's insertion-ordered dict does
    the same for its short hand-over windows; here the FIFO is full all the time, and
    evicting from the front of a dict leaves holes that later scans have to skip.)
    """

    __slots__ = ("_order", "_seen")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("dedup capacity must be at least 1")
        self._order: deque[str] = deque(maxlen=capacity)
        self._seen: set[str] = set()

    def add(self, key: str) -> bool:
        """Remember `key`; False when it was already known (a repeat)."""
        seen = self._seen
        if key in seen:
            return False
        order = self._order
        if len(order) == order.maxlen:
            seen.discard(order[0])  # `append` below pushes it out of the deque
        order.append(key)
        seen.add(key)
        return True
