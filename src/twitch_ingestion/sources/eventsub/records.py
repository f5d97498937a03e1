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

Events that carry no id of their own (clear, clear_user_messages, message_delete) use
`metadata.message_id`, which Twitch keeps when it re-delivers, so consumers can still
drop repeats.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from twitch_ingestion.models import (
    CHAT_MESSAGE_SCHEMA_VERSION,
    Announcement,
    BitsBadgeTier,
    ChatCleared,
    ChatEventRecord,
    ChatMessage,
    GiftSubscription,
    GiftUpgrade,
    MessageDeleted,
    MysteryGift,
    Raid,
    Resubscription,
    Subscription,
    Unraid,
    UserNotice,
    encode_record,
)
from twitch_ingestion.records.events import SourceRecord
from twitch_ingestion.records.topics import Destination
from twitch_ingestion.sources.common.fields import EventFields, unwrap_action
from twitch_ingestion.sources.common.notices import (
    ANONYMOUS_GIFTER_DISPLAY_NAME,
    ANONYMOUS_GIFTER_LOGIN,
    ANONYMOUS_GIFTER_USER_ID,
)
from twitch_ingestion.sources.eventsub.messages import DeadLetter, Notification

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


class _Fragment(msgspec.Struct, frozen=True, gc=False):
    type: str
    text: str


class _MessageBody(msgspec.Struct, frozen=True, gc=False):
    text: str
    # Empty messages have `[]`; Twitch has been reported to send null.
    fragments: list[_Fragment] | None = None


class _Cheer(msgspec.Struct, frozen=True, gc=False):
    bits: int


class _Reply(msgspec.Struct, frozen=True, gc=False):
    parent_message_id: str


class _Source(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Broadcaster and Shared Chat fields every chat event has (source_* absent pre-2024-09)."""

    broadcaster_user_id: str
    broadcaster_user_login: str
    source_broadcaster_user_id: str | None = None
    source_message_id: str | None = None


class _ChatMessageEvent(_Source, frozen=True, gc=False, kw_only=True):
    chatter_user_id: str
    chatter_user_login: str
    chatter_user_name: str = ""
    message_id: str
    message: _MessageBody
    badges: list[_Badge] | None = None
    message_type: str = "text"
    cheer: _Cheer | None = None
    reply: _Reply | None = None


class _Sub(msgspec.Struct, frozen=True, gc=False):
    sub_tier: str = ""
    is_prime: bool = False
    duration_months: int | None = None


class _Resub(msgspec.Struct, frozen=True, gc=False):
    cumulative_months: int | None = None
    duration_months: int | None = None
    streak_months: int | None = None
    sub_tier: str = ""
    sub_plan: str = ""  # the docs' resub example says `sub_plan`; real traffic `sub_tier`
    is_prime: bool | None = None
    is_gift: bool | None = None


class _SubGift(msgspec.Struct, frozen=True, gc=False):
    recipient_user_id: str
    recipient_user_login: str
    recipient_user_name: str = ""
    duration_months: int | None = None
    cumulative_total: int | None = None
    sub_tier: str = ""
    community_gift_id: str | None = None


class _CommunitySubGift(msgspec.Struct, frozen=True, gc=False):
    id: str | None = None
    total: int | None = None
    cumulative_total: int | None = None
    sub_tier: str = ""


class _GiftPaidUpgrade(msgspec.Struct, frozen=True, gc=False):
    gifter_is_anonymous: bool | None = None
    gifter_user_login: str | None = None
    gifter_user_name: str | None = None


class _PayItForward(msgspec.Struct, frozen=True, gc=False):
    recipient_user_id: str | None = None


class _Raid(msgspec.Struct, frozen=True, gc=False):
    user_id: str | None = None
    user_login: str | None = None
    user_name: str | None = None
    viewer_count: int | None = None


class _Announcement(msgspec.Struct, frozen=True, gc=False):
    color: str = ""


class _BitsBadgeTier(msgspec.Struct, frozen=True, gc=False):
    tier: int | None = None


class _NotificationEvent(_Source, frozen=True, gc=False, kw_only=True):
    chatter_user_id: str | None = None
    chatter_user_login: str | None = None
    chatter_user_name: str | None = None
    chatter_is_anonymous: bool = False
    system_message: str = ""
    message_id: str
    message: _MessageBody | None = None
    notice_type: str
    # Every notice kind's own object, also under `shared_chat_<kind>`; only the one named
    # by `notice_type` is read, as raw JSON decoded with that kind's struct.


class _ClearEvent(_Source, frozen=True, gc=False, kw_only=True):
    pass


class _TargetEvent(_Source, frozen=True, gc=False, kw_only=True):
    target_user_id: str
    target_user_login: str
    message_id: str = ""


_MESSAGE_EVENT = msgspec.json.Decoder(_ChatMessageEvent)
_NOTIFICATION_EVENT = msgspec.json.Decoder(_NotificationEvent)
_CLEAR_EVENT = msgspec.json.Decoder(_ClearEvent)
_TARGET_EVENT = msgspec.json.Decoder(_TargetEvent)
_ANY_OBJECT = msgspec.json.Decoder(dict[str, object])


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
    except _Unusable as exc:
        return DeadLetter(exc.reason, exc.detail, notification.frame)


class _Unusable(Exception):  # noqa: N818 - internal signal, always turned into a DeadLetter
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _channel(event: _Source) -> str:
    login = event.broadcaster_user_login.lower()
    if not login:
        raise _Unusable("missing-channel", "broadcaster_user_login is empty")
    return login


_MAX_COUNT = 10**15
"""Counts past 15 digits are not numbers Twitch means (and JavaScript consumers could not
read them exactly): like IRC's `non_negative_int`, they become "absent"."""


def _count(value: int | None) -> int | None:
    return value if value is not None and 0 <= value < _MAX_COUNT else None


def _emotes(body: _MessageBody | None) -> list[str]:
    if body is None or not body.fragments:
        return []
    return [fragment.text for fragment in body.fragments if fragment.type == "emote"]


# ---------------------------------------------------------------------------------------
# channel.chat.message


def _chat_message(notification: Notification, received_at_ms: int) -> EventSubRecord:
    event = _MESSAGE_EVENT.decode(notification.event)
    channel = _channel(event)
    username = event.chatter_user_login.lower()
    if not username:
        raise _Unusable("missing-sender", "chatter_user_login is empty")
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
        _emotes(event.message),  # emotes
        event.message_id,  # message_id
        event.broadcaster_user_id,  # room_id
        event.chatter_user_name.strip(" "),  # display_name
        {badge.set_id: badge.id for badge in event.badges} if event.badges else {},  # badges
        is_action,  # is_action
        (_count(cheer.bits) or 0) if cheer is not None else 0,  # bits
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
# channel.chat.notification


_NoticeBuilder = Callable[[str, msgspec.Raw, _NotificationEvent, EventFields], ChatEventRecord]


def _chat_notification(notification: Notification, received_at_ms: int) -> EventSubRecord:
    event = _NOTIFICATION_EVENT.decode(notification.event)
    channel = _channel(event)
    notice_type = event.notice_type
    kind = notice_type.removeprefix("shared_chat_")
    if event.chatter_is_anonymous:
        user_id, username, display_name = (
            ANONYMOUS_GIFTER_USER_ID,
            ANONYMOUS_GIFTER_LOGIN,
            ANONYMOUS_GIFTER_DISPLAY_NAME,
        )
    else:
        user_id = event.chatter_user_id or ""
        username = (event.chatter_user_login or "").lower()
        display_name = (event.chatter_user_name or "").strip(" ")
    text = event.message.text if event.message is not None else ""
    if text[:1] == "\x01":
        text = unwrap_action(text)[0]
    # The notice kind's own object, decoded by its builder; absent/null → `{}`.
    details = _notice_details(notification.event, notice_type)
    common: EventFields = {
        "channel_id": channel,
        "room_id": event.broadcaster_user_id,
        "user_id": user_id,
        "username": username,
        "display_name": display_name,
        "timestamp": notification.timestamp_ms,
        "received_at": received_at_ms,
        "message_id": event.message_id or notification.message_id,
        "system_message": event.system_message,
        "message": text or None,  # IRC: a USERNOTICE without a text has `message` null
        "emotes": _emotes(event.message),
        "source_room_id": event.source_broadcaster_user_id or None,
        "source_message_id": event.source_message_id or None,
        "tags": {},
    }
    builder = _NOTICE_BUILDERS.get(kind)
    record: ChatEventRecord
    if builder is None:
        common["tags"] = _detail_tags(_IRC_NOTICE_NAMES.get(kind, kind), details)
        record = UserNotice(**common, notice_type=_IRC_NOTICE_NAMES.get(kind, kind))
    else:
        record = builder(kind, details, event, common)
    return _finished(Destination.EVENTS, channel, record)


def _notice_details(event: msgspec.Raw, notice_type: str) -> msgspec.Raw:
    # msgspec cannot pick a key chosen at run time into a Struct, so the event is read
    # again as a dict of raw values: notifications are rare next to chat messages.
    value = msgspec.json.decode(event, type=dict[str, msgspec.Raw]).get(notice_type)
    if value is None or bytes(value) == b"null":
        return _EMPTY_OBJECT
    return value


_EMPTY_OBJECT = msgspec.Raw(b"{}")


def _detail_tags(irc_kind: str, details: msgspec.Raw) -> dict[str, str]:
    """`msg-id` plus the notice object flattened to `msg-param-<key>` strings (nulls left out)."""
    tags = {"msg-id": irc_kind}
    _flatten(_ANY_OBJECT.decode(details), "msg-param-", tags)
    return tags


def _flatten(value: dict[str, object], prefix: str, into: dict[str, str]) -> None:
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, dict):
            _flatten(item, f"{prefix}{key}-", into)
        elif isinstance(item, bool):
            into[prefix + key] = "true" if item else "false"
        elif isinstance(item, (str, int, float)):
            into[prefix + key] = str(item)
        else:
            into[prefix + key] = msgspec.json.encode(item).decode()


def _sub_plan(tier: str, is_prime: bool | None) -> str:
    return "Prime" if is_prime else tier  # IRC's `msg-param-sub-plan` says `Prime`


def _subscription(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    if kind == "resub":
        resub = msgspec.json.decode(details, type=_Resub)
        return Resubscription(
            **common,
            cumulative_months=_count(resub.cumulative_months),
            streak_months=_count(resub.streak_months),
            sub_plan=_sub_plan(resub.sub_tier or resub.sub_plan, resub.is_prime),
            sub_plan_name="",  # EventSub does not carry the channel's tier names
            multimonth_duration=_count(resub.duration_months),
            was_gifted=bool(resub.is_gift),
        )
    sub = msgspec.json.decode(details, type=_Sub)
    return Subscription(
        **common,
        cumulative_months=None,  # EventSub's `sub` has no month count
        streak_months=None,
        sub_plan=_sub_plan(sub.sub_tier, sub.is_prime),
        sub_plan_name="",
        multimonth_duration=_count(sub.duration_months),
        was_gifted=False,
    )


def _gift_subscription(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    gift = msgspec.json.decode(details, type=_SubGift)
    return GiftSubscription(
        **common,
        recipient_user_id=gift.recipient_user_id,
        recipient_username=gift.recipient_user_login.lower(),
        recipient_display_name=gift.recipient_user_name.strip(" "),
        sub_plan=gift.sub_tier,
        sub_plan_name="",
        gift_months=_count(gift.duration_months) or 1,
        sender_total_gifts=_count(gift.cumulative_total),
        anonymous=event.chatter_is_anonymous,
        community_gift_id=gift.community_gift_id or None,
    )


def _mystery_gift(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    gift = msgspec.json.decode(details, type=_CommunitySubGift)
    return MysteryGift(
        **common,
        gift_count=_count(gift.total),
        sub_plan=gift.sub_tier,
        sender_total_gifts=_count(gift.cumulative_total),
        anonymous=event.chatter_is_anonymous,
        community_gift_id=gift.id or None,
    )


def _gift_upgrade(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    upgrade = msgspec.json.decode(details, type=_GiftPaidUpgrade)
    anonymous = bool(upgrade.gifter_is_anonymous)
    return GiftUpgrade(
        **common,
        gifter_username=None if anonymous else (upgrade.gifter_user_login or "").lower() or None,
        gifter_display_name=None if anonymous else upgrade.gifter_user_name or None,
        anonymous=anonymous,
        promo_name=None,
        promo_gift_total=None,
    )


def _raid(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    raid = msgspec.json.decode(details, type=_Raid)
    # IRC names the raiding broadcaster as the user; EventSub has it in both places.
    if raid.user_login:
        common["user_id"] = raid.user_id or common["user_id"]
        common["username"] = raid.user_login.lower()
        common["display_name"] = (raid.user_name or common["display_name"]).strip(" ")
    return Raid(**common, viewer_count=_count(raid.viewer_count))


def _unraid(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    return Unraid(**common)


def _announcement(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    announcement = msgspec.json.decode(details, type=_Announcement)
    return Announcement(**common, color=announcement.color.upper() or "PRIMARY")


def _bits_badge_tier(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    tier = msgspec.json.decode(details, type=_BitsBadgeTier).tier
    return BitsBadgeTier(**common, threshold=_count(tier))


def _pay_it_forward(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    # IRC has two kinds where EventSub has one: to a named user or to the community.
    forward = msgspec.json.decode(details, type=_PayItForward)
    irc_kind = "standardpayforward" if forward.recipient_user_id else "communitypayforward"
    common["tags"] = _detail_tags(irc_kind, details)
    return UserNotice(**common, notice_type=irc_kind)


_NOTICE_BUILDERS: dict[str, _NoticeBuilder] = {
    "sub": _subscription,
    "resub": _subscription,
    "sub_gift": _gift_subscription,
    "community_sub_gift": _mystery_gift,
    "gift_paid_upgrade": _gift_upgrade,
    "raid": _raid,
    "unraid": _unraid,
    "announcement": _announcement,
    "bits_badge_tier": _bits_badge_tier,
    "pay_it_forward": _pay_it_forward,
}

_IRC_NOTICE_NAMES = {
    "prime_paid_upgrade": "primepaidupgrade",
    "charity_donation": "charitydonation",
    "watch_streak": "viewermilestone",
}
"""EventSub notice kinds without a model → IRC's `msg-id` for the same notice."""


# ---------------------------------------------------------------------------------------
# channel.chat.clear, clear_user_messages, message_delete


def _moderation_fields(
    notification: Notification, event: _Source, received_at_ms: int
) -> EventFields:
    return {
        "channel_id": _channel(event),
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
        raise _Unusable("missing-field", "channel.chat.message_delete event.message_id is empty")
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
