"""Tag-value conversions shared by the command parsers.

Twitch tag values are untrusted text: numbers can be empty, negative (a real CLEARMSG
once carried `tmi-sent-ts=-6795364578871`) or absent. These helpers turn them into
record fields without raising, so one odd tag never costs a whole record.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from twitch_ingestion.sources.common.fields import EventFields
from twitch_ingestion.sources.irc.commands.errors import ContractViolation
from twitch_ingestion.sources.irc.commands.stats import ParseStats
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = [
    "EVENT_ID_NAMESPACE",
    "derived_event_id",
    "event_fields",
    "event_room_id",
    "event_timestamp",
    "flag",
    "non_negative_int",
    "optional_int",
    "parse_badges",
    "require_channel",
    "signed_int",
]

# 15 digits stay below 2**53, the largest integer every JSON consumer (JavaScript
# included) reads exactly; in milliseconds that is past the year 33000.
_MAX_INT_DIGITS = 15

EVENT_ID_NAMESPACE = uuid.UUID("6f1d1c7e-3b0a-5d55-9c43-2b8a3c1f0e7d")
"""UUIDv5 namespace of the ids this service derives for events Twitch sends without `id`."""


def non_negative_int(value: str) -> int | None:
    """`value` as an int when it is a plain ASCII decimal of at most 15 digits, else None.

    `int()` alone would also accept `-5`, `+5`, ` 5`, `5_000` and non-ASCII digits.
    """
    if value.isdigit() and value.isascii() and len(value) <= _MAX_INT_DIGITS:
        return int(value)
    return None


def parse_badges(value: str) -> dict[str, str]:
    """`moderator/1,subscriber/12` → {"moderator": "1", "subscriber": "12"}."""
    if "," not in value:  # one badge, the most common case after none
        name, _, version = value.partition("/")
        return {name: version} if name else {}
    badges: dict[str, str] = {}
    for item in value.split(","):
        name, _, version = item.partition("/")
        if name:
            badges[name] = version
    return badges


def derived_event_id(message: IrcMessage, received_at_ms: int) -> str:
    """A deterministic UUIDv5 for an event line that has no Twitch `id` tag.

    Derived from the raw line, which is byte-identical when the same event reaches two
    connections (or is replayed after a reconnect), so consumers can de-duplicate on
    `message_id` for every record. A line without `tmi-sent-ts` (ROOMSTATE) does not
    identify a moment, so `received_at_ms` is mixed in: two identical room-state updates
    minutes apart are two events (de-duplicating them would lose the second toggle).
    """
    name = message.raw
    if "tmi-sent-ts" not in message.tags:
        name = f"{received_at_ms}\x00{name}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def optional_int(tags: Mapping[str, str], key: str) -> int | None:
    """The tag as a non-negative int, or None when it is absent or not a number."""
    value = tags.get(key)
    return None if value is None else non_negative_int(value)


def signed_int(value: str | None) -> int | None:
    """Like `non_negative_int` but also takes a leading `-` (`followers-only=-1`)."""
    if value is None:
        return None
    if value[:1] == "-":
        magnitude = non_negative_int(value[1:])
        return None if magnitude is None else -magnitude
    return non_negative_int(value)


def flag(value: str | None) -> bool | None:
    """`1` → True, `0` → False, anything else (absent included) → None."""
    if value == "1":
        return True
    if value == "0":
        return False
    return None


def require_channel(message: IrcMessage, command: str) -> str:
    """The channel login of a channel command, or `ContractViolation(<command>-without-channel)`."""
    params = message.params
    if not params or params[0][:1] != "#" or len(params[0]) < 2:
        raise ContractViolation(f"{command}-without-channel", message.raw)
    return params[0][1:].lower()


def event_timestamp(
    tags: Mapping[str, str], received_at_ms: int, stats: ParseStats, *, timestamped: bool = True
) -> int:
    """`tmi-sent-ts` in ms, or `received_at_ms` when missing or invalid.

    The fallback is counted in `stats` unless the command has no timestamp by design
    (`timestamped=False`).
    """
    timestamp = non_negative_int(tags.get("tmi-sent-ts", ""))
    if timestamp is None:
        if timestamped or "tmi-sent-ts" in tags:
            stats.timestamps_defaulted += 1
        return received_at_ms
    return timestamp


def event_room_id(tags: Mapping[str, str], channel: str, room_ids: Mapping[str, str]) -> str:
    """The `room-id` tag, else the id learned for `channel` from ROOMSTATE, else ``."""
    return tags.get("room-id") or room_ids.get(channel, "")


def event_fields(
    message: IrcMessage,
    channel: str,
    received_at_ms: int,
    room_ids: Mapping[str, str],
    stats: ParseStats,
    *,
    with_actor: bool,
    text: str | None = None,
    emotes: list[str] | None = None,
    timestamped: bool = True,
) -> EventFields:
    """The common fields of an event record built from `message`.

    `with_actor` takes `user-id`/`login`/`display-name` from the tags (USERNOTICE);
    moderation and room-state lines have no actor and leave them empty. `timestamped`
    is False for commands that never carry `tmi-sent-ts`.
    """
    tags = message.tags
    return {
        "channel_id": channel,
        "room_id": event_room_id(tags, channel, room_ids),
        "user_id": tags.get("user-id", "") if with_actor else "",
        "username": tags.get("login", "").lower() if with_actor else "",
        "display_name": tags.get("display-name", "").strip(" ") if with_actor else "",
        "timestamp": event_timestamp(tags, received_at_ms, stats, timestamped=timestamped),
        "received_at": received_at_ms,
        "message_id": tags.get("id") or derived_event_id(message, received_at_ms),
        "system_message": tags.get("system-msg", ""),
        "message": text,
        "emotes": [] if emotes is None else emotes,
        "source_room_id": tags.get("source-room-id") or None,
        "source_message_id": tags.get("source-id") or None,
        "tags": tags,
    }
