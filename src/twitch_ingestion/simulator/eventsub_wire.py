"""What the EventSub simulator puts on the wire: the WebSocket frames (welcome,
keepalive, notification, reconnect, revocation), the subscription object Helix and the
frames share, and the chat events inside notifications. Pure functions of their inputs
(and the clock, for timestamps)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from twitch_ingestion.simulator.eventsub_model import Pending, Subscription
from twitch_ingestion.simulator.streams import NUMBERED_SENDER
from twitch_ingestion.simulator.wire import derived_uuid, user_id_for
from twitch_ingestion.sources.irc.irc import parse_line

__all__ = [
    "message_frame",
    "notification_frame",
    "numbered_event",
    "privmsg_event",
    "reconnect_frame",
    "rfc3339_now",
    "subscription_json",
    "welcome_frame",
]


def rfc3339_now() -> str:
    ns = time.time_ns()
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos:09d}Z"


# ---------------------------------------------------------------------------------------
# Frames


def message_frame(kind: str, payload: bytes, subscription: Subscription | None = None) -> bytes:
    metadata: dict[str, str] = {
        "message_id": derived_uuid("eventsub-meta", secrets.token_hex(8)),
        "message_type": kind,
        "message_timestamp": rfc3339_now(),
    }
    if subscription is not None:
        metadata["subscription_type"] = subscription.type
        metadata["subscription_version"] = "1"
    return b'{"metadata":' + msgspec.json.encode(metadata) + b',"payload":' + payload + b"}"


def welcome_frame(session_id: str, keepalive: int) -> bytes:
    return message_frame(
        "session_welcome",
        b'{"session":{"id":'
        + msgspec.json.encode(session_id)
        + b',"status":"connected","connected_at":'
        + msgspec.json.encode(rfc3339_now())
        + b',"keepalive_timeout_seconds":'
        + str(keepalive).encode()
        + b',"reconnect_url":null,"recovery_url":null}}',
    )


def reconnect_frame(session_id: str, url: str) -> bytes:
    return message_frame(
        "session_reconnect",
        b'{"session":{"id":'
        + msgspec.json.encode(session_id)
        + b',"status":"reconnecting","keepalive_timeout_seconds":null,'
        b'"reconnect_url":' + msgspec.json.encode(url) + b',"connected_at":'
        b'"2026-01-01T00:00:00.000000000Z"}}',
    )


def notification_frame(sub: Subscription, item: Pending) -> bytes:
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
        + subscription_json(sub, "enabled")
        + b',"event":'
        + event
        + b"}}"
    )


def subscription_json(sub: Subscription, status: str) -> bytes:
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


# ---------------------------------------------------------------------------------------
# Events


def numbered_event(login: str, seq: int) -> dict[str, Any]:
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
