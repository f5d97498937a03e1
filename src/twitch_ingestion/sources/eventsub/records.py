"""EventSub chat notifications → the records the IRC source publishes.

Consumers must not care which source read a channel: a `channel.chat.message` becomes
the same `ChatMessage` the equivalent PRIVMSG gives, and a `channel.chat.notification`
the same event struct, with the same `event_type`, as the equivalent USERNOTICE (a sub
is a `subscription` whichever source saw it). Where EventSub carries less than IRC the
field takes its "absent" value, and where the two disagree the IRC meaning wins:

- `timestamp`: EventSub has no sent time; `metadata.message_timestamp` (when Twitch sent
  the notification) is used, in Unix ms.
- `channel_id` is the broadcaster *login* (IRC uses the channel login), `room_id` its id.
- `emotes`: the texts of the `emote` fragments in order — what IRC slices out of the
  text with the `emotes` tag positions, so no positions are needed here.
- `badges`: `set_id` → `id` (IRC's `badges` tag; `info` is IRC's `badge-info`).
- Anonymous gifts carry IRC's stand-in gifter (`ananonymousgifter`), as USERNOTICE does.
- Notice kinds without a model become `UserNotice` with IRC's `msg-id` as `notice_type`
  (`primepaidupgrade`, `standardpayforward`, `charitydonation`, `viewermilestone`…), or
  EventSub's own name when IRC has none; their details go to `tags` as
  `msg-param-<eventsub key>`.
- EventSub says nothing of `first-msg` except for `user_intro` messages, and it does
  not say whether `clear_user_messages` was a ban or a timeout (see `_clear_user`).

The notice kinds of `channel.chat.notification` are built in `notice_records.py`; the
wire shapes every event shares are in `event_shapes.py`.

Events that carry no id of their own (clear, clear_user_messages, message_delete) use
`metadata.message_id`, which Twitch keeps when it re-delivers, so consumers can still
drop repeats.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from twitch_ingestion.models import (
    CHAT_MESSAGE_SCHEMA_VERSION,
    ChatCleared,
    ChatEventRecord,
    ChatMessage,
    MessageDeleted,
    UserNotice,
    encode_record,
)
from twitch_ingestion.records.events import SourceRecord
from twitch_ingestion.records.topics import Destination
from twitch_ingestion.sources.common.fields import EventFields, unwrap_action
from twitch_ingestion.sources.eventsub.event_shapes import (
    MessageBody,
    SourceEvent,
    Unusable,
    channel_of,
    count_or_none,
    emote_texts,
)
from twitch_ingestion.sources.eventsub.messages import DeadLetter, Notification
from twitch_ingestion.sources.eventsub.notice_records import notice_record

__all__ = [
    "CHAT_SUBSCRIPTION_TYPES",
    "EventSubRecord",
    "notification_record",
]

CHAT_SUBSCRIPTION_TYPES = (
    "channel.chat.message",
    "channel.chat.notification",
    "channel.chat.clear",
    "channel.chat.clear_user_messages",
    "channel.chat.message_delete",
)
"""The five subscription types (all version 1) this source reads, in subscribe order."""


class EventSubRecord(SourceRecord, frozen=True, gc=False):
    """What a notification becomes: the records stage's `SourceRecord`, with its value
    encoded where it is built (one notification at a time, off the hot path)."""

    value: bytes
    """`encode_record(record)`: the Kafka message value."""


# ---------------------------------------------------------------------------------------
# Wire shapes of the events (unknown keys ignored; what we use is type-checked)


class _Badge(msgspec.Struct, frozen=True, gc=False):
    set_id: str
    id: str
    info: str = ""


class _Cheer(msgspec.Struct, frozen=True, gc=False):
    bits: int


class _Reply(msgspec.Struct, frozen=True, gc=False):
    parent_message_id: str


class _ChatMessageEvent(SourceEvent, frozen=True, gc=False, kw_only=True):
    chatter_user_id: str
    chatter_user_login: str
    chatter_user_name: str = ""
    message_id: str
    message: MessageBody
    badges: list[_Badge] | None = None
    message_type: str = "text"
    cheer: _Cheer | None = None
    reply: _Reply | None = None


class _ClearEvent(SourceEvent, frozen=True, gc=False, kw_only=True):
    pass


class _TargetEvent(SourceEvent, frozen=True, gc=False, kw_only=True):
    target_user_id: str
    target_user_login: str
    message_id: str = ""


_MESSAGE_EVENT = msgspec.json.Decoder(_ChatMessageEvent)
_CLEAR_EVENT = msgspec.json.Decoder(_ClearEvent)
_TARGET_EVENT = msgspec.json.Decoder(_TargetEvent)


# ---------------------------------------------------------------------------------------
# Entry point


def _finished(
    destination: Destination, key: str, record: ChatMessage | ChatEventRecord
) -> EventSubRecord:
    """Mark the record as read over EventSub (the models default to `irc`) and encode it."""
    record.ingested_via = "eventsub"
    return EventSubRecord(destination, key, record, encode_record(record))


def notification_record(
    notification: Notification, received_at_ms: int
) -> EventSubRecord | DeadLetter:
    """The record for a chat notification, or a `DeadLetter` with the exact frame; never raises.

    `received_at_ms` is when the frame was read from the socket (Unix ms).
    """
    subscription = notification.subscription
    builder = _BUILDERS.get(subscription.type)
    if builder is None:
        return DeadLetter(
            "unsupported-subscription-type", subscription.type[:64], notification.frame
        )
    if subscription.version != "1":
        return DeadLetter(
            "unsupported-subscription-version",
            f"{subscription.type} v{subscription.version[:16]}",
            notification.frame,
        )
    try:
        return builder(notification, received_at_ms)
    except msgspec.ValidationError as exc:
        reason = "missing-field" if str(exc).startswith("Object missing") else "wrong-type"
        return DeadLetter(reason, f"{subscription.type} event: {exc}", notification.frame)
    except msgspec.DecodeError as exc:  # pragma: no cover - `event` was parsed as JSON already
        return DeadLetter("invalid-json", str(exc), notification.frame)
    except Unusable as exc:
        return DeadLetter(exc.reason, exc.detail, notification.frame)


# ---------------------------------------------------------------------------------------
# channel.chat.message


def _chat_message(notification: Notification, received_at_ms: int) -> EventSubRecord:
    event = _MESSAGE_EVENT.decode(notification.event)
    channel = channel_of(event)
    username = event.chatter_user_login.lower()
    if not username:
        raise Unusable("missing-sender", "chatter_user_login is empty")
    text = event.message.text
    is_action = False
    if text[:1] == "\x01":  # `/me`: Twitch keeps the CTCP wrapper in `text`, as on IRC
        text, is_action = unwrap_action(text)
    reply = event.reply
    cheer = event.cheer
    # Positional, in `ChatMessage` field order: msgspec takes a slow path for more than
    # 15 keyword arguments (see `models.ChatMessage` and `sources/irc/commands/privmsg.py`).
    record = ChatMessage(
        channel,  # channel_id
        event.chatter_user_id,  # user_id
        username,  # username
        text,  # message
        notification.timestamp_ms,  # timestamp
        emote_texts(event.message),  # emotes
        event.message_id,  # message_id
        event.broadcaster_user_id,  # room_id
        event.chatter_user_name.strip(" "),  # display_name
        {badge.set_id: badge.id for badge in event.badges} if event.badges else {},  # badges
        is_action,  # is_action
        (count_or_none(cheer.bits) or 0) if cheer is not None else 0,  # bits
        (reply.parent_message_id or None) if reply is not None else None,  # reply_parent_...
        # EventSub has no `first-msg`; a `user_intro` message is a first message.
        event.message_type == "user_intro",  # first_message
        received_at_ms,  # received_at
        CHAT_MESSAGE_SCHEMA_VERSION,  # schema_version
        event.source_broadcaster_user_id or None,  # source_room_id
        event.source_message_id or None,  # source_message_id
    )
    return _finished(Destination.CHAT, channel, record)


# ---------------------------------------------------------------------------------------
# channel.chat.notification (one builder per notice kind: `notice_records.py`)


def _chat_notification(notification: Notification, received_at_ms: int) -> EventSubRecord:
    channel, record = notice_record(notification, received_at_ms)
    return _finished(Destination.EVENTS, channel, record)


# ---------------------------------------------------------------------------------------
# channel.chat.clear, clear_user_messages, message_delete


def _moderation_fields(
    notification: Notification, event: SourceEvent, received_at_ms: int
) -> EventFields:
    return {
        "channel_id": channel_of(event),
        "room_id": event.broadcaster_user_id,
        "user_id": "",  # as for IRC: moderation events do not name the moderator
        "username": "",
        "display_name": "",
        "timestamp": notification.timestamp_ms,
        "received_at": received_at_ms,
        "message_id": notification.message_id,
        "system_message": "",
        "message": None,
        "emotes": [],
        "source_room_id": event.source_broadcaster_user_id or None,
        "source_message_id": event.source_message_id or None,
        "tags": {},
    }


def _clear(notification: Notification, received_at_ms: int) -> EventSubRecord:
    event = _CLEAR_EVENT.decode(notification.event)
    record = ChatCleared(**_moderation_fields(notification, event, received_at_ms))
    return _finished(Destination.EVENTS, record.channel_id, record)


def _clear_user(notification: Notification, received_at_ms: int) -> EventSubRecord:
    """A user's messages were cleared: a ban or a timeout, EventSub does not say which.

    IRC's CLEARCHAT tells them apart by `ban-duration`; EventSub would need the
    `channel.ban` subscription (a moderator scope) for that. Publishing a `ban` for what
    may be a ten-second timeout would be false, so this is a `user_notice` of kind
    `clear_user_messages` naming the target in `tags` until the model has a struct for it.
    """
    event = _TARGET_EVENT.decode(notification.event)
    common = _moderation_fields(notification, event, received_at_ms)
    common["tags"] = {
        "msg-id": "clear_user_messages",
        "target-user-id": event.target_user_id,
        "target-user-login": event.target_user_login.lower(),
    }
    record = UserNotice(**common, notice_type="clear_user_messages")
    return _finished(Destination.EVENTS, record.channel_id, record)


def _message_delete(notification: Notification, received_at_ms: int) -> EventSubRecord:
    event = _TARGET_EVENT.decode(notification.event)
    if not event.message_id:
        raise Unusable("missing-field", "channel.chat.message_delete event.message_id is empty")
    record = MessageDeleted(
        **_moderation_fields(notification, event, received_at_ms),
        target_username=event.target_user_login.lower(),
        deleted_message_id=event.message_id,
    )
    return _finished(Destination.EVENTS, record.channel_id, record)


_BUILDERS: dict[str, Callable[[Notification, int], EventSubRecord]] = {
    "channel.chat.message": _chat_message,
    "channel.chat.notification": _chat_notification,
    "channel.chat.clear": _clear,
    "channel.chat.clear_user_messages": _clear_user,
    "channel.chat.message_delete": _message_delete,
}
