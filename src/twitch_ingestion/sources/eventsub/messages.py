"""EventSub WebSocket text frames → typed messages.

Twitch sends five message types on the socket (dev.twitch.tv/docs/eventsub/
websocket-reference): `session_welcome`, `session_keepalive`, `session_reconnect`,
`notification` and `revocation`, each `{"metadata": {...}, "payload": {...}}`.

Decoding is tolerant of what we do not use (Twitch adds keys: a 2026 welcome carries
`recovery_url`, notification events grew from 25 to 41 keys) and strict about what we
do use: a wrong type or a missing field we rely on makes the frame `DeadLetter`, with
a short reason for a metric label and the exact frame bytes for the dead-letter topic.
Nothing here raises on bad input.

A notification's `event` is kept as undecoded JSON (`msgspec.Raw`): the session only
needs the metadata to de-duplicate, and `records` decodes the event with the struct of
its subscription type, once, after the duplicate check.
"""

from __future__ import annotations

import datetime

import msgspec

__all__ = [
    "DeadLetter",
    "EventSubMessage",
    "Keepalive",
    "Notification",
    "Reconnect",
    "Revocation",
    "SubscriptionInfo",
    "Welcome",
    "decode_frame",
    "rfc3339_to_unix_ms",
]


# ---------------------------------------------------------------------------------------
# Typed messages (what the rest of the package sees)


class Welcome(msgspec.Struct, frozen=True, gc=False):
    """`session_welcome`: the socket is ready; subscriptions must name `session_id`."""

    message_id: str
    timestamp_ms: int
    session_id: str
    keepalive_timeout_s: int | None
    """Seconds Twitch may stay silent before the client must assume the socket is dead.
    Null in the docs' reconnect example; the session then uses its own default."""
    reconnect_url: str | None


class Keepalive(msgspec.Struct, frozen=True, gc=False):
    """`session_keepalive`: the socket is alive and nothing else happened."""

    message_id: str
    timestamp_ms: int


class Reconnect(msgspec.Struct, frozen=True, gc=False):
    """`session_reconnect`: Twitch moves this session to `reconnect_url`."""

    message_id: str
    timestamp_ms: int
    session_id: str
    reconnect_url: str


class SubscriptionInfo(msgspec.Struct, frozen=True, gc=False):
    """The `subscription` object of a notification or revocation (the parts we use)."""

    id: str
    type: str
    version: str
    status: str
    condition: dict[str, str]


class Notification(msgspec.Struct, frozen=True, gc=False):
    """`notification`: one event of a subscription; `event` is its undecoded JSON."""

    message_id: str
    """`metadata.message_id`: Twitch re-sends a notification with the same id, so this is
    the de-duplication key across reconnects."""
    timestamp_ms: int
    """`metadata.message_timestamp` in Unix ms (EventSub events have no sent time)."""
    subscription: SubscriptionInfo
    event: msgspec.Raw
    frame: bytes
    """The whole frame as received, for the dead-letter topic if the event is unusable."""


class Revocation(msgspec.Struct, frozen=True, gc=False):
    """`revocation`: Twitch ended a subscription; `subscription.status` says why."""

    message_id: str
    timestamp_ms: int
    subscription: SubscriptionInfo


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """A frame that is not a usable EventSub message: dead-letter it as it is.

    `reason` is a fixed kebab-case label (`invalid-json`, `missing-field`, …) fit for a
    metric label; `detail` is the decoder's explanation (a JSON path, never a secret);
    `frame` is the exact bytes received.
    """

    reason: str
    detail: str
    frame: bytes


EventSubMessage = Welcome | Keepalive | Reconnect | Notification | Revocation
"""Every message a well-formed frame decodes to."""


# ---------------------------------------------------------------------------------------
# Wire shapes (what Twitch sends); unknown keys are ignored, types are checked.


class _Metadata(msgspec.Struct, frozen=True, gc=False):
    message_id: str
    message_type: str
    message_timestamp: str
    subscription_type: str | None = None
    subscription_version: str | None = None


class _Envelope(msgspec.Struct, frozen=True, gc=False):
    metadata: _Metadata
    payload: msgspec.Raw


class _Session(msgspec.Struct, frozen=True, gc=False):
    id: str
    status: str = ""
    keepalive_timeout_seconds: int | None = None
    reconnect_url: str | None = None


class _SessionPayload(msgspec.Struct, frozen=True, gc=False):
    session: _Session


class _NotificationPayload(msgspec.Struct, frozen=True, gc=False):
    subscription: SubscriptionInfo
    event: msgspec.Raw


class _RevocationPayload(msgspec.Struct, frozen=True, gc=False):
    subscription: SubscriptionInfo


_MAX_KEEPALIVE_TIMEOUT_S = 3600
"""Twitch accepts 10-600 s in `?keepalive_timeout_seconds=`; anything past an hour is
not a keepalive, and would switch the silence watchdog off."""

_ENVELOPE = msgspec.json.Decoder(_Envelope)
_SESSION = msgspec.json.Decoder(_SessionPayload)
_NOTIFICATION = msgspec.json.Decoder(_NotificationPayload)
_REVOCATION = msgspec.json.Decoder(_RevocationPayload)

_MESSAGE_TYPES = frozenset(
    {"session_welcome", "session_keepalive", "session_reconnect", "notification", "revocation"}
)


def decode_frame(frame: bytes | str) -> EventSubMessage | DeadLetter:
    """Decode one WebSocket text frame; never raises.

    A `str` (what WebSocket libraries hand out for text frames) is encoded back to
    UTF-8 for `frame`/`DeadLetter.frame`, which is byte-identical to what Twitch sent.
    """
    data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else bytes(frame)
    try:
        envelope = _ENVELOPE.decode(data)
    except msgspec.ValidationError as exc:
        return DeadLetter(_validation_reason(exc), f"envelope: {exc}", data)
    except msgspec.DecodeError as exc:
        return DeadLetter("invalid-json", str(exc), data)
    metadata = envelope.metadata
    kind = metadata.message_type
    if kind not in _MESSAGE_TYPES:
        return DeadLetter("unknown-message-type", f"message_type {kind[:64]!r}", data)
    timestamp_ms = rfc3339_to_unix_ms(metadata.message_timestamp)
    if timestamp_ms is None:
        return DeadLetter(
            "invalid-timestamp",
            f"metadata.message_timestamp {metadata.message_timestamp[:64]!r}",
            data,
        )
    try:
        if kind == "notification":
            body = _NOTIFICATION.decode(envelope.payload)
            return Notification(
                metadata.message_id, timestamp_ms, body.subscription, body.event, data
            )
        if kind == "session_keepalive":
            return Keepalive(metadata.message_id, timestamp_ms)
        if kind == "revocation":
            return Revocation(
                metadata.message_id, timestamp_ms, _REVOCATION.decode(envelope.payload).subscription
            )
        session = _SESSION.decode(envelope.payload).session
    except msgspec.ValidationError as exc:
        return DeadLetter(_validation_reason(exc), f"{kind} payload: {exc}", data)
    except msgspec.DecodeError as exc:  # pragma: no cover - Raw holds valid JSON already
        return DeadLetter("invalid-json", str(exc), data)
    if kind == "session_welcome":
        timeout = session.keepalive_timeout_seconds
        if timeout is not None and not 0 < timeout <= _MAX_KEEPALIVE_TIMEOUT_S:
            return DeadLetter("invalid-keepalive-timeout", f"keepalive {timeout}", data)
        return Welcome(
            metadata.message_id, timestamp_ms, session.id, timeout, session.reconnect_url
        )
    if not session.reconnect_url:
        return DeadLetter("reconnect-without-url", "session.reconnect_url is empty", data)
    return Reconnect(metadata.message_id, timestamp_ms, session.id, session.reconnect_url)


def _validation_reason(exc: msgspec.ValidationError) -> str:
    # msgspec's messages start "Object missing required field …" or "Expected `str`, got …".
    return "missing-field" if str(exc).startswith("Object missing") else "wrong-type"


# ---------------------------------------------------------------------------------------
# Timestamps

_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_MAX_FRACTION_DIGITS = 9  # Twitch sends 3-9 (nanoseconds, trailing zeros dropped)
_DIGITS = "0123456789"
_DAY_CACHE: dict[str, int] = {}
"""`YYYY-MM-DD` → days since 1970: every notification of a day has the same date, so the
calendar arithmetic is done once a day instead of once a message (bounded: cleared when
it holds `_DAY_CACHE_LIMIT` dates)."""
_DAY_CACHE_LIMIT = 1024


def rfc3339_to_unix_ms(value: str) -> int | None:
    """`2024-05-14T12:31:47.995298776Z` → Unix ms, truncated (never rounded up); else None.

    Exact integer arithmetic: a float of seconds since 1970 has only ~0.2 µs of
    precision left, and `datetime` keeps only microseconds, so neither is used for the
    fraction. Accepts `Z`/`z` or a `±HH:MM` offset and `T`/`t`/space as separator (RFC
    3339 §5.6); rejects anything else, a leap second included (Twitch never sends one,
    and a record time must be a real instant). Runs once per notification, so it avoids
    `datetime` and regexes on the common path (~1 µs).
    """
    if len(value) < 20 or not value.isascii():
        return None
    if value[10] not in "Tt " or value[13] != ":" or value[16] != ":":
        return None
    date = value[:10]
    days = _DAY_CACHE.get(date)
    if days is None:
        days = _days_since_epoch(date)
        if days is None:
            return None
        if len(_DAY_CACHE) >= _DAY_CACHE_LIMIT:
            _DAY_CACHE.clear()
        _DAY_CACHE[date] = days
    hours, minutes, seconds = value[11:13], value[14:16], value[17:19]
    if not (hours.isdigit() and minutes.isdigit() and seconds.isdigit()):
        return None
    hour, minute, second = int(hours), int(minutes), int(seconds)
    if hour > 23 or minute > 59 or second > 59:
        return None
    rest = value[19:]
    millis = 0
    if rest[:1] == ".":
        after = rest[1:].lstrip(_DIGITS)
        fraction = rest[1 : len(rest) - len(after)]
        if not fraction or len(fraction) > _MAX_FRACTION_DIGITS:
            return None
        millis = int((fraction + "00")[:3])
        rest = after
    if rest == "Z" or rest == "z":
        offset_s = 0
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        offset_hours, offset_minutes = rest[1:3], rest[4:6]
        if not (offset_hours.isdigit() and offset_minutes.isdigit()):
            return None
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            return None
        offset_s = (int(offset_hours) * 3600 + int(offset_minutes) * 60) * (
            1 if rest[0] == "+" else -1
        )
    else:
        return None
    return (days * 86_400 + hour * 3600 + minute * 60 + second - offset_s) * 1000 + millis


def _days_since_epoch(date: str) -> int | None:
    """`YYYY-MM-DD` (ASCII) → days since 1970-01-01, or None if it is not a real date."""
    year, month, day = date[:4], date[5:7], date[8:10]
    if date[4] != "-" or date[7] != "-":
        return None
    if not (year.isdigit() and month.isdigit() and day.isdigit()):
        return None
    try:
        return datetime.date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
