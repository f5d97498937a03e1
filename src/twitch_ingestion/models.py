"""The Kafka contract: what downstream consumers read from each topic.

`msgspec.Struct` gives typed records that encode to JSON in C (the hot path) and
generate their own JSON Schema (the published contract, `schemas/`). Each field's
meaning lives in its `Meta(description=…)`, so the schema files and `docs/contract.md`
are generated from this module and cannot drift from it.

- topic `twitch-chat-messages`: `ChatMessage`, one per PRIVMSG. Field names up to
  `emotes` are the seed plan's, unchanged.
- topic `twitch-chat-events`: `ChatEventRecord`, a union of event structs told apart by
  `event_type` (subscriptions, raids, bans, deletions, room state, …).

Records are `gc=False`: they hold only strings, numbers and flat containers of strings,
so they can never be part of a reference cycle, and skipping GC tracking makes the
millions of short-lived records cheaper to allocate and free. Every field is always
encoded (no `omit_defaults`), so consumers see a stable set of keys.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

import msgspec
from msgspec import Meta

__all__ = [
    "CHAT_EVENT_SCHEMA_VERSION",
    "CHAT_MESSAGE_SCHEMA_VERSION",
    "Announcement",
    "Ban",
    "BitsBadgeTier",
    "ChatCleared",
    "ChatEvent",
    "ChatEventRecord",
    "ChatMessage",
    "GiftSubscription",
    "GiftUpgrade",
    "MessageDeleted",
    "MysteryGift",
    "Raid",
    "Resubscription",
    "Ritual",
    "RoomState",
    "Subscription",
    "Timeout",
    "Unraid",
    "UserNotice",
    "decode_chat_event",
    "decode_chat_message",
    "encode_record",
]

CHAT_MESSAGE_SCHEMA_VERSION = 1
CHAT_EVENT_SCHEMA_VERSION = 1

_TIMESTAMP_DOC = (
    "Unix milliseconds when Twitch sent it (`tmi-sent-ts`); `received_at` when the tag is"
    " missing, empty, not a number or negative. Read over EventSub (`ingested_via` ="
    " `eventsub`), which has no sent time: the notification's `metadata.message_timestamp`"
    " (when Twitch sent the notification, RFC 3339 with nanoseconds) in Unix milliseconds."
)
_RECEIVED_AT_DOC = "Unix milliseconds when this service read the line from the socket."
_CHANNEL_DOC = "Channel login without `#`, lower case; also the Kafka key."
_ROOM_ID_DOC = (
    "Channel's numeric id (`room-id` tag, else learned from the channel's ROOMSTATE);"
    " empty when not yet known."
)
_SOURCE_ROOM_DOC = (
    "Shared Chat: numeric id of the channel where this was originally sent"
    " (`source-room-id`); null outside Shared Chat."
)
_SOURCE_MESSAGE_DOC = (
    "Shared Chat: message id in the originating channel (`source-id`); null outside Shared Chat."
)
_EMOTES_DOC = (
    "Emote codes (the words as typed) in order of position; empty when none. Ranges that"
    " Twitch sent misaligned with the text are left out rather than mis-sliced."
)


# Not `kw_only`: the PRIVMSG parser builds it positionally because msgspec takes a slow
# path for more than 15 keyword arguments (~1.5 µs instead of ~0.3 µs per record). Other
# code should still pass keywords; new fields go at the end with a default, and
# `test_chat_message_field_order_is_the_positional_contract` pins the order.
# (Class docstrings here are consumer-facing: they become schema descriptions.)
# Which source read the record: the same records come from either, and a consumer that
# cares (EventSub has no sent time, see `timestamp`) can tell them apart.
_INGESTED_VIA_DOC = (
    "Which source read it: `irc` (Twitch IRC) or `eventsub` (EventSub WebSocket);"
    " added in schema 1 without a version bump (additive)."
)
IngestedVia: TypeAlias = Literal["irc", "eventsub"]


class ChatMessage(msgspec.Struct, gc=False):
    """One Twitch chat message (a PRIVMSG), keyed in Kafka by `channel_id`."""

    channel_id: Annotated[str, Meta(description=_CHANNEL_DOC)]
    user_id: Annotated[
        str,
        Meta(description="Sender's numeric Twitch user id (`user-id` tag); empty when absent."),
    ]
    username: Annotated[
        str, Meta(description="Sender's login name (from the IRC prefix), lower case.")
    ]
    message: Annotated[
        str,
        Meta(
            description="Message text as sent; for `/me` messages the `\\u0001ACTION`"
            " wrapper is removed (see `is_action`)."
        ),
    ]
    timestamp: Annotated[int, Meta(description=_TIMESTAMP_DOC)]
    emotes: Annotated[list[str], Meta(description=_EMOTES_DOC)]
    message_id: Annotated[
        str,
        Meta(
            description="Twitch's unique message id (`id` tag): the de-duplication key for"
            " consumers; empty only if Twitch omitted it."
        ),
    ]
    room_id: Annotated[str, Meta(description=_ROOM_ID_DOC)]
    display_name: Annotated[
        str,
        Meta(
            description="Sender's display name (`display-name`, unescaped), may differ from"
            " `username` in case or script; surrounding spaces, which Twitch sometimes"
            " appends, are removed. Empty when absent."
        ),
    ]
    badges: Annotated[
        dict[str, str],
        Meta(description='Badge name → version from the `badges` tag, e.g. {"subscriber": "12"}.'),
    ]
    is_action: Annotated[bool, Meta(description="True for `/me` messages.")]
    bits: Annotated[
        int, Meta(description="Bits cheered with this message (`bits` tag); 0 when none.")
    ]
    reply_parent_message_id: Annotated[
        str | None,
        Meta(
            description="`message_id` of the message this one replies to"
            " (`reply-parent-msg-id`); null when it is not a reply."
        ),
    ]
    first_message: Annotated[
        bool, Meta(description="True for a user's first message in the channel (`first-msg=1`).")
    ]
    received_at: Annotated[int, Meta(description=_RECEIVED_AT_DOC)]
    schema_version: Annotated[
        int, Meta(description="Version of this record layout; bumped on breaking changes.")
    ] = CHAT_MESSAGE_SCHEMA_VERSION
    source_room_id: Annotated[str | None, Meta(description=_SOURCE_ROOM_DOC)] = None
    source_message_id: Annotated[str | None, Meta(description=_SOURCE_MESSAGE_DOC)] = None
    ingested_via: Annotated[IngestedVia, Meta(description=_INGESTED_VIA_DOC)] = "irc"


# The base of the event records; it is never published by itself.
class ChatEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="event_type"):
    """Fields every record on `twitch-chat-events` has.

    `event_type` names the concrete record type. `user_id`/`username` are the user who
    caused the event (subscriber, gifter, raider, announcer); moderation events leave
    them empty because IRC does not say which moderator acted, and name the affected
    user in `target_*` instead.
    """

    channel_id: Annotated[str, Meta(description=_CHANNEL_DOC)]
    room_id: Annotated[str, Meta(description=_ROOM_ID_DOC)]
    user_id: Annotated[
        str,
        Meta(
            description="Numeric id of the user who caused the event (`user-id`); empty for"
            " moderation and room-state events."
        ),
    ]
    username: Annotated[
        str,
        Meta(
            description="Login of the user who caused the event (`login` tag), lower case;"
            " empty for moderation and room-state events."
        ),
    ]
    display_name: Annotated[
        str,
        Meta(description="Display name of that user (`display-name`), stripped; may be empty."),
    ]
    timestamp: Annotated[int, Meta(description=_TIMESTAMP_DOC)]
    received_at: Annotated[int, Meta(description=_RECEIVED_AT_DOC)]
    message_id: Annotated[
        str,
        Meta(
            description="De-duplication key: Twitch's `id` tag when the line has one"
            " (USERNOTICE), else a UUIDv5 of the raw line (CLEARCHAT, CLEARMSG), which is"
            " the same on every connection that saw the event; for lines without"
            " `tmi-sent-ts` (ROOMSTATE) `received_at` is mixed in, so each update is kept."
        ),
    ]
    system_message: Annotated[
        str,
        Meta(
            description="Twitch's human-readable description (`system-msg`, unescaped, as"
            " sent); empty when there is none."
        ),
    ]
    message: Annotated[
        str | None,
        Meta(
            description="Text the user attached (resub message, announcement, ritual, the"
            " deleted message for `message_deleted`); null when none."
        ),
    ]
    emotes: Annotated[list[str], Meta(description=_EMOTES_DOC)]
    source_room_id: Annotated[str | None, Meta(description=_SOURCE_ROOM_DOC)] = None
    source_message_id: Annotated[str | None, Meta(description=_SOURCE_MESSAGE_DOC)] = None
    tags: Annotated[
        dict[str, str],
        Meta(description="Every IRCv3 tag of the line, unescaped: whatever is not modelled."),
    ]
    schema_version: Annotated[
        int, Meta(description="Version of this record layout; bumped on breaking changes.")
    ] = CHAT_EVENT_SCHEMA_VERSION
    ingested_via: Annotated[IngestedVia, Meta(description=_INGESTED_VIA_DOC)] = "irc"


_SUB_PLAN_DOC = "Sub tier: `Prime`, `1000`, `2000` or `3000` (`msg-param-sub-plan`); may be empty."
_SUB_PLAN_NAME_DOC = "Channel's name for the tier (`msg-param-sub-plan-name`); may be empty."
_ANONYMOUS_DOC = "True when the gifter chose to stay anonymous."
_SENDER_TOTAL_DOC = (
    "Gifter's total gifts in this channel (`msg-param-sender-count`); null when Twitch hides it."
)
_COMMUNITY_GIFT_DOC = (
    "Links the single gifts of one mystery gift (`msg-param-community-gift-id`, else"
    " `msg-param-origin-id`); null when absent."
)
_TARGET_ID_DOC = "Numeric id of the affected user (`target-user-id`); empty when absent."
_TARGET_LOGIN_DOC = "Login of the affected user, lower case."


class Subscription(ChatEvent, kw_only=True, tag="subscription"):
    """A new subscription (USERNOTICE `msg-id=sub`)."""

    cumulative_months: Annotated[
        int | None,
        Meta(description="Months subscribed in total (`msg-param-cumulative-months`)."),
    ]
    streak_months: Annotated[
        int | None,
        Meta(
            description="Consecutive months (`msg-param-streak-months`); null unless the"
            " user shares the streak."
        ),
    ]
    sub_plan: Annotated[str, Meta(description=_SUB_PLAN_DOC)]
    sub_plan_name: Annotated[str, Meta(description=_SUB_PLAN_NAME_DOC)]
    multimonth_duration: Annotated[
        int | None,
        Meta(
            description="Months bought at once (`msg-param-multimonth-duration`); null if absent."
        ),
    ]
    was_gifted: Annotated[
        bool, Meta(description="True when this sub started as a gift (`msg-param-was-gifted`).")
    ]


class Resubscription(Subscription, kw_only=True, tag="resubscription"):
    """A renewed subscription shared in chat (USERNOTICE `msg-id=resub`)."""


class GiftSubscription(ChatEvent, kw_only=True, tag="gift_subscription"):
    """One gifted subscription (`subgift`, `anonsubgift`); the gifter is `user_*`."""

    recipient_user_id: Annotated[str, Meta(description="`msg-param-recipient-id`.")]
    recipient_username: Annotated[
        str, Meta(description="`msg-param-recipient-user-name`, lower case.")
    ]
    recipient_display_name: Annotated[str, Meta(description="`msg-param-recipient-display-name`.")]
    sub_plan: Annotated[str, Meta(description=_SUB_PLAN_DOC)]
    sub_plan_name: Annotated[str, Meta(description=_SUB_PLAN_NAME_DOC)]
    gift_months: Annotated[
        int, Meta(description="Months gifted at once (`msg-param-gift-months`); 1 when absent.")
    ]
    sender_total_gifts: Annotated[int | None, Meta(description=_SENDER_TOTAL_DOC)]
    anonymous: Annotated[bool, Meta(description=_ANONYMOUS_DOC)]
    community_gift_id: Annotated[str | None, Meta(description=_COMMUNITY_GIFT_DOC)]


class MysteryGift(ChatEvent, kw_only=True, tag="mystery_gift"):
    """A batch of subs gifted to random viewers (`submysterygift`, `anonsubmysterygift`)."""

    gift_count: Annotated[
        int | None, Meta(description="Subs in the batch (`msg-param-mass-gift-count`).")
    ]
    sub_plan: Annotated[str, Meta(description=_SUB_PLAN_DOC)]
    sender_total_gifts: Annotated[int | None, Meta(description=_SENDER_TOTAL_DOC)]
    anonymous: Annotated[bool, Meta(description=_ANONYMOUS_DOC)]
    community_gift_id: Annotated[str | None, Meta(description=_COMMUNITY_GIFT_DOC)]


class GiftUpgrade(ChatEvent, kw_only=True, tag="gift_upgrade"):
    """A gifted sub continued as a paid one (`giftpaidupgrade`, `anongiftpaidupgrade`)."""

    gifter_username: Annotated[
        str | None,
        Meta(description="Original gifter's login (`msg-param-sender-login`); null if anonymous."),
    ]
    gifter_display_name: Annotated[
        str | None, Meta(description="`msg-param-sender-name`; null if anonymous.")
    ]
    anonymous: Annotated[bool, Meta(description="True when the original gift was anonymous.")]
    promo_name: Annotated[
        str | None, Meta(description="Promotion name (`msg-param-promo-name`); null if none.")
    ]
    promo_gift_total: Annotated[
        int | None,
        Meta(description="Gifts in the promotion (`msg-param-promo-gift-total`); null if none."),
    ]


class Raid(ChatEvent, kw_only=True, tag="raid"):
    """Another channel raided this one; the raiding broadcaster is `user_*`."""

    viewer_count: Annotated[
        int | None, Meta(description="Raiding viewers (`msg-param-viewerCount`); null if absent.")
    ]


class Unraid(ChatEvent, kw_only=True, tag="unraid"):
    """This channel cancelled its outgoing raid."""


class Ritual(ChatEvent, kw_only=True, tag="ritual"):
    """A chat ritual, e.g. a new chatter's greeting (`msg-id=ritual`)."""

    ritual_name: Annotated[
        str, Meta(description="`msg-param-ritual-name`, e.g. `new_chatter`; may be empty.")
    ]


class BitsBadgeTier(ChatEvent, kw_only=True, tag="bits_badge_tier"):
    """A user earned a new Bits badge tier (`msg-id=bitsbadgetier`)."""

    threshold: Annotated[
        int | None, Meta(description="Bits tier reached (`msg-param-threshold`); null if absent.")
    ]


class Announcement(ChatEvent, kw_only=True, tag="announcement"):
    """A moderator's `/announce` message; its text is `message`."""

    color: Annotated[
        str,
        Meta(
            description="Highlight colour (`msg-param-color`: PRIMARY, BLUE, GREEN, ORANGE,"
            " PURPLE); PRIMARY when absent."
        ),
    ]


class UserNotice(ChatEvent, kw_only=True, tag="user_notice"):
    """Any other USERNOTICE, passed through generically; its details are in `tags`."""

    notice_type: Annotated[
        str,
        Meta(description="Twitch's `msg-id`, e.g. `viewermilestone`; empty if absent."),
    ]


class Ban(ChatEvent, kw_only=True, tag="ban"):
    """A user was banned permanently (CLEARCHAT with a target and no `ban-duration`)."""

    target_user_id: Annotated[str, Meta(description=_TARGET_ID_DOC)]
    target_username: Annotated[str, Meta(description=_TARGET_LOGIN_DOC)]


class Timeout(ChatEvent, kw_only=True, tag="timeout"):
    """A user was timed out (CLEARCHAT with a target and `ban-duration`)."""

    target_user_id: Annotated[str, Meta(description=_TARGET_ID_DOC)]
    target_username: Annotated[str, Meta(description=_TARGET_LOGIN_DOC)]
    duration_seconds: Annotated[int, Meta(description="Timeout length (`ban-duration`).")]


class ChatCleared(ChatEvent, kw_only=True, tag="chat_cleared"):
    """A moderator cleared the whole chat (CLEARCHAT without a target)."""


class MessageDeleted(ChatEvent, kw_only=True, tag="message_deleted"):
    """A single message was deleted (CLEARMSG); its text is `message`."""

    target_username: Annotated[
        str, Meta(description="Login of the deleted message's author (`login` tag).")
    ]
    deleted_message_id: Annotated[
        str, Meta(description="`message_id` of the deleted chat message (`target-msg-id`).")
    ]


class RoomState(ChatEvent, kw_only=True, tag="room_state"):
    """Chat room settings (ROOMSTATE). On join all are sent; later only the changed ones.

    A null field was not part of this update and keeps its previous value.
    """

    emote_only: Annotated[bool | None, Meta(description="Emote-only mode (`emote-only`).")]
    followers_only_minutes: Annotated[
        int | None,
        Meta(
            description="Followers-only mode (`followers-only`): -1 off, 0 any follower,"
            " N minutes of following required."
        ),
    ]
    unique_chat: Annotated[
        bool | None, Meta(description="Unique-chat (R9K) mode: no repeated messages (`r9k`).")
    ]
    slow_seconds: Annotated[
        int | None, Meta(description="Slow mode (`slow`): seconds between messages, 0 off.")
    ]
    subs_only: Annotated[bool | None, Meta(description="Subscriber-only mode (`subs-only`).")]


ChatEventRecord: TypeAlias = (
    Subscription
    | Resubscription
    | GiftSubscription
    | MysteryGift
    | GiftUpgrade
    | Raid
    | Unraid
    | Ritual
    | BitsBadgeTier
    | Announcement
    | UserNotice
    | Ban
    | Timeout
    | ChatCleared
    | MessageDeleted
    | RoomState
)
"""Every record type on topic `twitch-chat-events`, told apart by `event_type`."""


_RECORD_ENCODER = msgspec.json.Encoder()
_CHAT_MESSAGE_DECODER = msgspec.json.Decoder(ChatMessage)
_CHAT_EVENT_DECODER: msgspec.json.Decoder[ChatEventRecord] = msgspec.json.Decoder(ChatEventRecord)


def encode_record(record: ChatMessage | ChatEventRecord) -> bytes:
    """A record as compact UTF-8 JSON, the Kafka message value (one C call)."""
    return _RECORD_ENCODER.encode(record)


def decode_chat_message(value: bytes) -> ChatMessage:
    """A `twitch-chat-messages` value back into a `ChatMessage` (consumers, tests)."""
    return _CHAT_MESSAGE_DECODER.decode(value)


def decode_chat_event(value: bytes) -> ChatEventRecord:
    """A `twitch-chat-events` value back into its event struct, chosen by `event_type`."""
    return _CHAT_EVENT_DECODER.decode(value)
