"""USERNOTICE → a typed event: subs, gifts, raids, rituals, announcements, ….

Twitch names the kind in `msg-id`. Kinds with a model get their own struct; every other
kind (there are dozens and Twitch adds more: `viewermilestone`, `charitydonation`, …)
becomes a generic `UserNotice` with `notice_type` = the `msg-id`, and all its
`msg-param-*` details in `tags`, so nothing is lost and a new kind needs no release.

Shared Chat (several channels sharing one chat) relays another channel's notice as
`msg-id=sharedchatnotice` with the original kind in `source-msg-id`; it is parsed as
that original kind and carries `source_room_id`/`source_message_id`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twitch_ingestion.models import (
    Announcement,
    BitsBadgeTier,
    ChatEventRecord,
    GiftSubscription,
    GiftUpgrade,
    MysteryGift,
    Raid,
    Resubscription,
    Ritual,
    Subscription,
    Unraid,
    UserNotice,
)
from twitch_ingestion.sources.common.fields import EventFields, unwrap_action
from twitch_ingestion.sources.common.notices import ANONYMOUS_GIFTER_LOGIN
from twitch_ingestion.sources.irc.commands.fields import (
    event_fields,
    non_negative_int,
    optional_int,
    require_channel,
)
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS, ParseStats
from twitch_ingestion.sources.irc.emotes import emote_codes
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = ["parse_usernotice"]


_Builder = Callable[[str, dict[str, str], EventFields], ChatEventRecord]


def parse_usernotice(
    message: IrcMessage,
    received_at_ms: int,
    room_ids: Mapping[str, str],
    stats: ParseStats = DEFAULT_PARSE_STATS,
) -> ChatEventRecord:
    """Build the event record for a USERNOTICE line.

    Raises `ContractViolation("usernotice-without-channel")` when there is no channel.
    """
    channel = require_channel(message, "usernotice")
    tags = message.tags
    msg_id = tags.get("msg-id", "")
    kind = (tags.get("source-msg-id") or msg_id) if msg_id == "sharedchatnotice" else msg_id

    text: str | None = message.params[1] if len(message.params) > 1 else None
    emotes: list[str] = []
    if text is not None:
        if text[:1] == "\x01":  # Twitch relays `/me` resub messages with the wrapper
            text = unwrap_action(text)[0]
        emote_tag = tags.get("emotes")
        if emote_tag:
            emotes = emote_codes(emote_tag, text, stats)
    common = event_fields(
        message, channel, received_at_ms, room_ids, stats, with_actor=True, text=text, emotes=emotes
    )
    builder = _BUILDERS.get(kind)
    if builder is None:
        return UserNotice(**common, notice_type=kind)
    return builder(kind, tags, common)


def _is_anonymous(kind: str, tags: Mapping[str, str]) -> bool:
    return kind.startswith("anon") or tags.get("login") == ANONYMOUS_GIFTER_LOGIN


def _subscription(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    cumulative = optional_int(tags, "msg-param-cumulative-months")
    if cumulative is None:
        # Older lines only have `msg-param-months` (now deprecated, 0 on resubs).
        cumulative = optional_int(tags, "msg-param-months") or None
    streak = (
        optional_int(tags, "msg-param-streak-months")
        if tags.get("msg-param-should-share-streak") == "1"
        else None
    )
    struct_type = Resubscription if kind == "resub" else Subscription
    return struct_type(
        **common,
        cumulative_months=cumulative,
        streak_months=streak,
        sub_plan=tags.get("msg-param-sub-plan", ""),
        sub_plan_name=tags.get("msg-param-sub-plan-name", ""),
        multimonth_duration=optional_int(tags, "msg-param-multimonth-duration"),
        was_gifted=tags.get("msg-param-was-gifted") == "true",
    )


def _community_gift_id(tags: Mapping[str, str]) -> str | None:
    return tags.get("msg-param-community-gift-id") or tags.get("msg-param-origin-id") or None


def _gift_subscription(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    return GiftSubscription(
        **common,
        recipient_user_id=tags.get("msg-param-recipient-id", ""),
        recipient_username=tags.get("msg-param-recipient-user-name", "").lower(),
        recipient_display_name=tags.get("msg-param-recipient-display-name", "").strip(" "),
        sub_plan=tags.get("msg-param-sub-plan", ""),
        sub_plan_name=tags.get("msg-param-sub-plan-name", ""),
        gift_months=optional_int(tags, "msg-param-gift-months") or 1,
        sender_total_gifts=optional_int(tags, "msg-param-sender-count"),
        anonymous=_is_anonymous(kind, tags),
        community_gift_id=_community_gift_id(tags),
    )


def _mystery_gift(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    return MysteryGift(
        **common,
        gift_count=optional_int(tags, "msg-param-mass-gift-count"),
        sub_plan=tags.get("msg-param-sub-plan", ""),
        sender_total_gifts=optional_int(tags, "msg-param-sender-count"),
        anonymous=_is_anonymous(kind, tags),
        community_gift_id=_community_gift_id(tags),
    )


def _gift_upgrade(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    gifter_login = tags.get("msg-param-sender-login")
    return GiftUpgrade(
        **common,
        gifter_username=gifter_login.lower() if gifter_login else None,
        gifter_display_name=tags.get("msg-param-sender-name") or None,
        anonymous=kind.startswith("anon"),
        promo_name=tags.get("msg-param-promo-name") or None,
        promo_gift_total=optional_int(tags, "msg-param-promo-gift-total"),
    )


def _raid(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    return Raid(**common, viewer_count=optional_int(tags, "msg-param-viewerCount"))


def _unraid(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    return Unraid(**common)


def _ritual(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    return Ritual(**common, ritual_name=tags.get("msg-param-ritual-name", ""))


def _bits_badge_tier(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    return BitsBadgeTier(**common, threshold=non_negative_int(tags.get("msg-param-threshold", "")))


def _announcement(kind: str, tags: dict[str, str], common: EventFields) -> ChatEventRecord:
    return Announcement(**common, color=tags.get("msg-param-color") or "PRIMARY")


_BUILDERS: dict[str, _Builder] = {
    "sub": _subscription,
    "resub": _subscription,
    "subgift": _gift_subscription,
    "anonsubgift": _gift_subscription,
    "submysterygift": _mystery_gift,
    "anonsubmysterygift": _mystery_gift,
    "giftpaidupgrade": _gift_upgrade,
    "anongiftpaidupgrade": _gift_upgrade,
    "raid": _raid,
    "unraid": _unraid,
    "ritual": _ritual,
    "bitsbadgetier": _bits_badge_tier,
    "announcement": _announcement,
}
