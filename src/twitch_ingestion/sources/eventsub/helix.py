"""Helix calls the EventSub source needs, sans-I/O: request builders, answers, limits, plan.

- `users_requests` / `interpret_users`: channel logins → user ids (`GET /users?login=`,
  100 logins per call); logins Twitch does not know are reported, the rest go on.
- `subscription_request` / `interpret_subscription`: `POST /eventsub/subscriptions` for
  one chat type and channel over a WebSocket session; Twitch's refusals become typed
  values (`reconciler.classify` says which are permanent).
- `list_subscriptions_request` / `interpret_subscription_list`: `GET
  /eventsub/subscriptions`, a page at a time: what Twitch holds (after a 409, and in
  the periodic check that catches subscriptions that vanished).
- `RateLimiter`: the Helix token bucket as Twitch reports it (`Ratelimit-Remaining`,
  `Ratelimit-Reset`, 429) → how long to wait before the next call.
- `plan_connections`: Twitch's WebSocket limits (300 enabled subscriptions per
  connection, 3 connections per client id and user, `max_total_cost`) → which channel
  goes on which connection, and which cannot be subscribed and why.

References: dev.twitch.tv/docs/api/reference (Get Users, Create EventSub Subscription),
dev.twitch.tv/docs/eventsub/manage-subscriptions (limits), dev.twitch.tv/docs/api/guide
(rate limits).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

import msgspec

from twitch_ingestion.sources.eventsub.http_messages import (
    HttpRequest,
    HttpResponse,
    bearer_headers,
)

__all__ = [
    "CONNECTIONS_PER_USER",
    "SUBSCRIPTIONS_PER_CONNECTION",
    "USERS_PER_REQUEST",
    "ChannelProblem",
    "ConnectionPlan",
    "ExistingSubscription",
    "HelixRefusal",
    "RateLimiter",
    "RefusalKind",
    "SubscriptionCreated",
    "SubscriptionPage",
    "UsersAnswer",
    "delete_subscription_request",
    "interpret_delete",
    "interpret_subscription",
    "interpret_subscription_list",
    "interpret_users",
    "list_subscriptions_request",
    "normalise_login",
    "plan_connections",
    "subscription_request",
    "users_requests",
]

USERS_PER_REQUEST = 100
"""Get Users takes at most 100 `login` parameters per call."""
SUBSCRIPTIONS_PER_CONNECTION = 300
"""Enabled subscriptions one WebSocket connection may hold."""
CONNECTIONS_PER_USER = 3
"""WebSocket connections with enabled subscriptions per client id and user."""

_MAX_LOGIN_LENGTH = 25
_RATE_LIMIT_FALLBACK_S = 1.0
"""Wait after a 429 that lacks a usable `Ratelimit-Reset` (a proxy, a simulator)."""
_RATE_LIMIT_MAX_WAIT_S = 60.0
"""Helix refills its bucket continuously and resets within a minute: a `Ratelimit-Reset`
further away than this is a clock mismatch, not a reason to stall for longer."""


class ChannelProblem(msgspec.Struct, frozen=True, gc=False):
    """A channel that will not be read, and why (reported once, like an IRC join failure)."""

    channel: str
    """Login (or user id, once resolved) as configured."""
    reason: str
    """Kebab-case label: `invalid-login`, `unknown-login`, `connection-limit`, …"""
    message: str


# ---------------------------------------------------------------------------------------
# Get Users


class UsersAnswer(msgspec.Struct, frozen=True, gc=False):
    user_ids: dict[str, str]
    """Login → user id for every login Twitch knows."""
    unknown: list[ChannelProblem]


class _User(msgspec.Struct, frozen=True, gc=False):
    id: str
    login: str


class _Users(msgspec.Struct, frozen=True, gc=False):
    data: list[_User]


def normalise_login(value: str) -> str | None:
    """`#Channel` → `channel`; None when it cannot be a Twitch login (1-25 of a-z 0-9 _)."""
    login = value.strip().removeprefix("#").lower()
    if not login or len(login) > _MAX_LOGIN_LENGTH or not login.isascii():
        return None
    if not all(char.isalnum() or char == "_" for char in login):
        return None
    return login


def users_requests(
    api_url: str, client_id: str, token: str, logins: Iterable[str]
) -> tuple[list[tuple[HttpRequest, list[str]]], list[ChannelProblem]]:
    """The Get Users calls for `logins`, each with the logins it asks for.

    A malformed login is reported here instead of being sent: Helix answers 400 for the
    whole call, which would cost the other 99 channels their lookup.
    """
    wanted: list[str] = []
    problems: list[ChannelProblem] = []
    seen: set[str] = set()
    for value in logins:
        login = normalise_login(value)
        if login is None:
            problems.append(
                ChannelProblem(
                    value[:64],
                    "invalid-login",
                    f"{value[:64]!r} is not a Twitch login (1-25 letters, digits or _)",
                )
            )
        elif login not in seen:
            seen.add(login)
            wanted.append(login)
    base = api_url.rstrip("/") + "/users?"
    headers = bearer_headers(client_id, token)
    requests = [
        (
            HttpRequest(
                "GET",
                base + urlencode([("login", login) for login in batch]),
                headers,
            ),
            batch,
        )
        for batch in (
            wanted[start : start + USERS_PER_REQUEST]
            for start in range(0, len(wanted), USERS_PER_REQUEST)
        )
    ]
    return requests, problems


def interpret_users(requested: Sequence[str], response: HttpResponse) -> UsersAnswer | HelixRefusal:
    """Which of `requested` exist; a failed call comes back as a refusal to act on."""
    if response.status != 200:
        return _refusal(response, subscription_type="", broadcaster_user_id="")
    try:
        users = msgspec.json.decode(response.body, type=_Users).data
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return HelixRefusal(
            RefusalKind.TRANSIENT, response.status, f"unreadable Get Users answer: {exc}", "", ""
        )
    user_ids = {user.login.lower(): user.id for user in users}
    unknown = [
        ChannelProblem(login, "unknown-login", f"Twitch has no user {login!r}")
        for login in requested
        if login not in user_ids
    ]
    return UsersAnswer(user_ids, unknown)


# ---------------------------------------------------------------------------------------
# Create EventSub Subscription


class SubscriptionCreated(msgspec.Struct, frozen=True, gc=False):
    """202: the subscription is enabled (or 409: one already was, `id` then empty)."""

    id: str
    subscription_type: str
    broadcaster_user_id: str
    cost: int
    total_cost: int | None
    max_total_cost: int | None
    already_exists: bool = False
    """409: an enabled subscription with this type and condition exists, maybe on a
    session that is dead or another instance's; whose it is must be looked up."""


class RefusalKind(enum.Enum):
    """What Twitch said, as a label; whether it is worth retrying is decided by
    `reconciler.classify` (a limit may clear, a cost the plan cannot fix does not)."""

    RATE_LIMITED = "rate-limited"
    """429 from the Helix bucket: retry after `RateLimiter.delay`."""
    LIMIT_EXCEEDED = "limit-exceeded"
    """429 for a subscription limit: transports, subscriptions or `max_total_cost`."""
    SESSION_GONE = "session-gone"
    """400 for a WebSocket session that no longer exists: subscribe on the next welcome."""
    UNAUTHORIZED = "unauthorized"
    """401: refresh the token (`TokenSchedule.unauthorized`) and retry."""
    FORBIDDEN = "forbidden"
    """403: the token may not read this channel (scope, authorisation, ban)."""
    BAD_REQUEST = "bad-request"
    """Another 400 (a condition Twitch rejects)."""
    TRANSIENT = "transient"
    """5xx, no answer at all, or an unreadable answer."""

    @property
    def reports_channel(self) -> bool:
        """True when Twitch refused this channel itself (not the bucket, the token or the
        session), so the report names the channel at once, whether or not it may clear."""
        return self in (RefusalKind.LIMIT_EXCEEDED, RefusalKind.FORBIDDEN, RefusalKind.BAD_REQUEST)


class HelixRefusal(msgspec.Struct, frozen=True, gc=False):
    """A Helix call (Get Users or Create Subscription) that did not succeed.

    `kind` says what to do about it; `message` is Twitch's own reason.
    """

    kind: RefusalKind
    status: int
    message: str
    """Twitch's `message` (one line, at most 200 characters), never a token."""
    subscription_type: str
    broadcaster_user_id: str

    def problem(self, channel: str) -> ChannelProblem:
        """The line that reports `channel` as not subscribed."""
        return ChannelProblem(
            channel,
            self.kind.value,
            f"cannot subscribe to {self.subscription_type or 'Helix'} for {channel}:"
            f" Twitch answered {self.status} {self.message}".rstrip(),
        )


class _Created(msgspec.Struct, frozen=True, gc=False):
    id: str
    type: str
    cost: int = 0


class _CreatedBody(msgspec.Struct, frozen=True, gc=False):
    data: list[_Created]
    total_cost: int | None = None
    max_total_cost: int | None = None


class _HelixError(msgspec.Struct, frozen=True, gc=False):
    message: str = ""


def delete_subscription_request(
    api_url: str, client_id: str, token: str, subscription_id: str
) -> HttpRequest:
    """Delete one subscription (a channel the fleet moved elsewhere); 204 when done."""
    return HttpRequest(
        "DELETE",
        f"{api_url}/eventsub/subscriptions?{urlencode({'id': subscription_id})}",
        bearer_headers(client_id, token),
    )


def interpret_delete(response: HttpResponse) -> HelixRefusal | None:
    """None when the subscription is gone (204, or 404: gone with its session already)."""
    if response.status in (204, 404):
        return None
    return _refusal(response, subscription_type="", broadcaster_user_id="")


class ExistingSubscription(msgspec.Struct, frozen=True, gc=False):
    """One subscription as Get EventSub Subscriptions lists it (the parts we use)."""

    id: str
    type: str
    status: str
    """`enabled`, or why not (`websocket_disconnected`, `authorization_revoked`, …)."""
    broadcaster_user_id: str
    session_id: str
    """The WebSocket session it delivers to ("" for another transport)."""


class SubscriptionPage(msgspec.Struct, frozen=True, gc=False):
    subscriptions: list[ExistingSubscription]
    cursor: str
    """Ask again with `after=cursor` for the next page; "" on the last one."""


class _Transport(msgspec.Struct, frozen=True, gc=False):
    method: str = ""
    session_id: str = ""


class _Listed(msgspec.Struct, frozen=True, gc=False):
    id: str
    type: str
    status: str
    condition: dict[str, str] = {}
    transport: _Transport = _Transport()


class _Pagination(msgspec.Struct, frozen=True, gc=False):
    cursor: str = ""


class _ListBody(msgspec.Struct, frozen=True, gc=False):
    data: list[_Listed]
    pagination: _Pagination = _Pagination()


def list_subscriptions_request(
    api_url: str,
    client_id: str,
    token: str,
    *,
    subscription_type: str = "",
    after: str = "",
) -> HttpRequest:
    """One page of Get EventSub Subscriptions (Twitch filters by at most one of type,
    status or user; this asks by type, or for everything, and filters itself)."""
    query: list[tuple[str, str]] = []
    if subscription_type:
        query.append(("type", subscription_type))
    if after:
        query.append(("after", after))
    url = api_url.rstrip("/") + "/eventsub/subscriptions"
    if query:
        url += "?" + urlencode(query)
    return HttpRequest("GET", url, bearer_headers(client_id, token))


def interpret_subscription_list(response: HttpResponse) -> SubscriptionPage | HelixRefusal:
    """The page's subscriptions, or the refusal to classify like a failed create."""
    if response.status != 200:
        return _refusal(response, subscription_type="", broadcaster_user_id="")
    try:
        body = msgspec.json.decode(response.body, type=_ListBody)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return HelixRefusal(
            RefusalKind.TRANSIENT,
            response.status,
            f"unreadable subscription list: {str(exc)[:160]}",
            "",
            "",
        )
    return SubscriptionPage(
        [
            ExistingSubscription(
                item.id,
                item.type,
                item.status,
                item.condition.get("broadcaster_user_id", ""),
                item.transport.session_id if item.transport.method == "websocket" else "",
            )
            for item in body.data
        ],
        body.pagination.cursor,
    )


def subscription_request(
    api_url: str,
    client_id: str,
    token: str,
    *,
    subscription_type: str,
    broadcaster_user_id: str,
    user_id: str,
    session_id: str,
    version: str = "1",
) -> HttpRequest:
    """Subscribe the bot user (`user_id`) to `subscription_type` in one channel."""
    body = msgspec.json.encode(
        {
            "type": subscription_type,
            "version": version,
            "condition": {"broadcaster_user_id": broadcaster_user_id, "user_id": user_id},
            "transport": {"method": "websocket", "session_id": session_id},
        }
    )
    headers = bearer_headers(client_id, token)
    headers["Content-Type"] = "application/json"
    return HttpRequest("POST", api_url.rstrip("/") + "/eventsub/subscriptions", headers, body)


def interpret_subscription(
    response: HttpResponse, *, subscription_type: str, broadcaster_user_id: str
) -> SubscriptionCreated | HelixRefusal:
    """What a Create EventSub Subscription answer means."""
    if response.status == 409:  # "subscription already exists": but on which session?
        return SubscriptionCreated(
            "", subscription_type, broadcaster_user_id, 0, None, None, already_exists=True
        )
    if response.status not in (200, 202):
        return _refusal(
            response, subscription_type=subscription_type, broadcaster_user_id=broadcaster_user_id
        )
    try:
        body = msgspec.json.decode(response.body, type=_CreatedBody)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        body = None
        detail = str(exc)
    else:
        detail = "no subscription in the answer"
    if body is None or not body.data:
        return HelixRefusal(
            RefusalKind.TRANSIENT,
            response.status,
            f"unreadable answer: {detail[:160]}",
            subscription_type,
            broadcaster_user_id,
        )
    created = body.data[0]
    return SubscriptionCreated(
        created.id,
        created.type,
        broadcaster_user_id,
        created.cost,
        body.total_cost,
        body.max_total_cost,
    )


def _refusal(
    response: HttpResponse, *, subscription_type: str, broadcaster_user_id: str
) -> HelixRefusal:
    try:
        message = msgspec.json.decode(response.body, type=_HelixError).message
    except (msgspec.ValidationError, msgspec.DecodeError):
        message = ""
    message = " ".join(message.split())[:200]
    lowered = message.lower()
    status = response.status
    if status == 429:
        # The bucket says 429 with `Ratelimit-Remaining: 0`; a subscription limit (count
        # or cost) is a 429 with a message about it and tokens left in the bucket.
        remaining = response.header("Ratelimit-Remaining")
        limit_words = ("cost", "subscription", "limit", "exceed")
        if remaining != "0" and any(word in lowered for word in limit_words):
            kind = RefusalKind.LIMIT_EXCEEDED
        else:
            kind = RefusalKind.RATE_LIMITED
    elif status == 401:
        kind = RefusalKind.UNAUTHORIZED
    elif status == 403:
        kind = RefusalKind.FORBIDDEN
    elif status == 400 and "session" in lowered:
        kind = RefusalKind.SESSION_GONE
    elif 400 <= status < 500:
        kind = RefusalKind.BAD_REQUEST
    else:
        kind = RefusalKind.TRANSIENT
    return HelixRefusal(kind, status, message, subscription_type, broadcaster_user_id)


# ---------------------------------------------------------------------------------------
# Rate limits


class RateLimiter:
    """Helix's per-token bucket as last reported; `now` is Unix time in seconds.

    `Ratelimit-Reset` is a Unix timestamp, so this one clock must be wall time; the
    result is capped (`_RATE_LIMIT_MAX_WAIT_S`) so a skewed clock cannot stall calls.
    """

    def __init__(self) -> None:
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self._blocked_until = 0.0

    def observe(self, response: HttpResponse, now: float) -> None:
        """Record the headers of any Helix answer."""
        remaining = _int_header(response, "Ratelimit-Remaining")
        reset = _int_header(response, "Ratelimit-Reset")
        if remaining is not None:
            self.remaining = remaining
        if reset is not None:
            self.reset_at = float(reset)
        # A 429 with points left in the bucket is a subscription limit (count or cost),
        # not the bucket: it must not hold back the calls for the other channels.
        exhausted = remaining == 0 or (response.status == 429 and remaining is None)
        if exhausted:
            if reset is not None and reset > now:
                wait = min(reset - now, _RATE_LIMIT_MAX_WAIT_S)
            else:
                wait = _RATE_LIMIT_FALLBACK_S if response.status == 429 else 0.0
            self._blocked_until = max(self._blocked_until, now + wait)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next Helix call (0 when it may go now)."""
        return max(0.0, self._blocked_until - now)


def _int_header(response: HttpResponse, name: str) -> int | None:
    value = response.header(name)
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and value.isascii() and len(value) <= 15 else None


# ---------------------------------------------------------------------------------------
# Spreading channels over connections


class ConnectionPlan(msgspec.Struct, frozen=True, gc=False):
    connections: list[list[str]]
    """Channels (user ids) per WebSocket connection, balanced, in the order given."""
    unplaced: list[ChannelProblem]


def plan_connections(
    channels: Sequence[str],
    *,
    subscriptions_per_channel: int = 5,
    subscriptions_per_connection: int = SUBSCRIPTIONS_PER_CONNECTION,
    max_connections: int = CONNECTIONS_PER_USER,
    cost_per_channel: int = 0,
    max_total_cost: int | None = None,
    current_total_cost: int = 0,
) -> ConnectionPlan:
    """Place each channel's subscriptions on as few connections as hold them, evenly.

    Channels beyond what `max_connections` times `subscriptions_per_connection` hold, or
    whose cost would pass `max_total_cost`, are returned in `unplaced` with the reason.
    Chat subscriptions made with the bot's own user token cost 0 (Twitch counts cost
    only for subscriptions the user did not authorise), so the cost limit matters only
    when Twitch's answers say otherwise (`SubscriptionCreated.cost`).
    """
    if subscriptions_per_channel < 1 or subscriptions_per_connection < subscriptions_per_channel:
        raise ValueError("a connection must hold at least one channel's subscriptions")
    per_connection = subscriptions_per_connection // subscriptions_per_channel
    capacity = per_connection * max_connections
    unique = list(dict.fromkeys(channels))
    placed: list[str] = []
    unplaced: list[ChannelProblem] = []
    cost = current_total_cost
    for channel in unique:
        if len(placed) >= capacity:
            unplaced.append(
                ChannelProblem(
                    channel,
                    "connection-limit",
                    f"Twitch allows {max_connections} EventSub connections per client id and"
                    f" user with {subscriptions_per_connection} subscriptions each: at most"
                    f" {capacity} channels with {subscriptions_per_channel} subscriptions each",
                )
            )
        elif max_total_cost is not None and cost + cost_per_channel > max_total_cost:
            unplaced.append(
                ChannelProblem(
                    channel,
                    "cost-limit",
                    f"subscribing would pass Twitch's max_total_cost of {max_total_cost}"
                    f" (in use: {cost})",
                )
            )
        else:
            placed.append(channel)
            cost += cost_per_channel
    if not placed:
        return ConnectionPlan([], unplaced)
    count = math.ceil(len(placed) / per_connection)
    size, extra = divmod(len(placed), count)
    connections: list[list[str]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        connections.append(placed[start:end])
        start = end
    return ConnectionPlan(connections, unplaced)
