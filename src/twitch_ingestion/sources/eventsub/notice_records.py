"""`channel.chat.notification` → the same event structs the equivalent USERNOTICE gives
(a sub is a `subscription` whichever source saw it): one builder per notice kind, and
`UserNotice` with IRC's `msg-id` for kinds without a model, their details in `tags` as
`msg-param-<eventsub key>`. The rules common to every EventSub record are in `records.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from twitch_ingestion.models import (
    Announcement,
    BitsBadgeTier,
    ChatEventRecord,
    GiftSubscription,
    GiftUpgrade,
    MysteryGift,
    Raid,
    Resubscription,
    Subscription,
    Unraid,
    UserNotice,
)
from twitch_ingestion.sources.common.fields import EventFields, unwrap_action
from twitch_ingestion.sources.common.notices import (
    ANONYMOUS_GIFTER_DISPLAY_NAME,
    ANONYMOUS_GIFTER_LOGIN,
    ANONYMOUS_GIFTER_USER_ID,
)
from twitch_ingestion.sources.eventsub.event_shapes import (
    MessageBody,
    SourceEvent,
    channel_of,
    count_or_none,
    emote_texts,
)
from twitch_ingestion.sources.eventsub.messages import Notification

__all__ = ["notice_record"]

# ---------------------------------------------------------------------------------------
# Wire shapes of the notice kinds


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


class _NotificationEvent(SourceEvent, frozen=True, gc=False, kw_only=True):
    chatter_user_id: str | None = None
    chatter_user_login: str | None = None
    chatter_user_name: str | None = None
    chatter_is_anonymous: bool = False
    system_message: str = ""
    message_id: str
    message: MessageBody | None = None
    notice_type: str
    # Every notice kind's own object, also under `shared_chat_<kind>`; only the one named
    # by `notice_type` is read, as raw JSON decoded with that kind's struct.


_NOTIFICATION_EVENT = msgspec.json.Decoder(_NotificationEvent)
_ANY_OBJECT = msgspec.json.Decoder(dict[str, object])


# ---------------------------------------------------------------------------------------
# Builders


_NoticeBuilder = Callable[[str, msgspec.Raw, _NotificationEvent, EventFields], ChatEventRecord]


def notice_record(notification: Notification, received_at_ms: int) -> tuple[str, ChatEventRecord]:
    """The channel and the record of a `channel.chat.notification` (a USERNOTICE's
    equivalent); raises msgspec errors or `Unusable` for `notification_record` to turn
    into a dead letter."""
    event = _NOTIFICATION_EVENT.decode(notification.event)
    channel = channel_of(event)
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
        "emotes": emote_texts(event.message),
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
    return channel, record


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
            cumulative_months=count_or_none(resub.cumulative_months),
            streak_months=count_or_none(resub.streak_months),
            sub_plan=_sub_plan(resub.sub_tier or resub.sub_plan, resub.is_prime),
            sub_plan_name="",  # EventSub does not carry the channel's tier names
            multimonth_duration=count_or_none(resub.duration_months),
            was_gifted=bool(resub.is_gift),
        )
    sub = msgspec.json.decode(details, type=_Sub)
    return Subscription(
        **common,
        cumulative_months=None,  # EventSub's `sub` has no month count
        streak_months=None,
        sub_plan=_sub_plan(sub.sub_tier, sub.is_prime),
        sub_plan_name="",
        multimonth_duration=count_or_none(sub.duration_months),
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
        gift_months=count_or_none(gift.duration_months) or 1,
        sender_total_gifts=count_or_none(gift.cumulative_total),
        anonymous=event.chatter_is_anonymous,
        community_gift_id=gift.community_gift_id or None,
    )


def _mystery_gift(
    kind: str, details: msgspec.Raw, event: _NotificationEvent, common: EventFields
) -> ChatEventRecord:
    gift = msgspec.json.decode(details, type=_CommunitySubGift)
    return MysteryGift(
        **common,
        gift_count=count_or_none(gift.total),
        sub_plan=gift.sub_tier,
        sender_total_gifts=count_or_none(gift.cumulative_total),
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
    return Raid(**common, viewer_count=count_or_none(raid.viewer_count))


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
    return BitsBadgeTier(**common, threshold=count_or_none(tier))


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
