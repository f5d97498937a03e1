"""EventSub chat events and the IRC lines Twitch sends for the same thing.

`CHAT_EQUIVALENCES`: a `channel.chat.message` event and its PRIVMSG line;
`NOTICE_EQUIVALENCES`: a `channel.chat.notification` event (`NOTICE_EVENTS`, from
`tests/fixtures/eventsub/`) and its USERNOTICE line, with the fields EventSub cannot fill
the same way. The unit tests compare the records built from both sides; the integration
tests publish both through the real service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eventsub"
NOTICE_EVENTS: dict[str, dict[str, Any]] = json.loads(
    (FIXTURES / "chat_notification_events.json").read_text()
)


CHAT_MESSAGE_FRAME = (FIXTURES / "channel.chat.message.json").read_bytes()


def chat_event(**changes: Any) -> dict[str, Any]:
    frame = json.loads(CHAT_MESSAGE_FRAME)
    event: dict[str, Any] = frame["payload"]["event"]
    event.update(changes)
    return event


def fragments(*parts: tuple[str, str]) -> dict[str, Any]:
    return {
        "text": "".join(text for _, text in parts),
        "fragments": [
            {"type": kind, "text": text, "cheermote": None, "emote": None, "mention": None}
            for kind, text in parts
        ],
    }


_PRIVMSG_TAGS = (
    "badge-info=subscriber/16;badges=moderator/1,subscriber/12,sub-gifter/1;color=#00FF7F;"
    "display-name=viewer32;flags=;id=cc106a89-1814-919d-454c-f4f2f970aae7;mod=1;"
    "returning-chatter=0;room-id=1971641;subscriber=1;tmi-sent-ts=1700129470000;turbo=0;"
    "user-id=4145994;user-type=mod"
)
_PREFIX = ":viewer32!viewer32@viewer32.tmi.twitch.tv PRIVMSG #streamer :"

CHAT_EQUIVALENCES: dict[str, tuple[dict[str, Any], str]] = {
    "docs example with an emote": (
        chat_event(),
        f"@{_PRIVMSG_TAGS};emotes=25:8-12;first-msg=0 {_PREFIX}Hi chat Kappa",
    ),
    "no emotes": (
        chat_event(message=fragments(("text", "Hi chat"))),
        f"@{_PRIVMSG_TAGS};emotes=;first-msg=0 {_PREFIX}Hi chat",
    ),
    "emotes after emoji count code points": (
        chat_event(
            message=fragments(
                ("text", "😂 "), ("emote", "Kappa"), ("text", " 😂"), ("emote", "Keepo")
            )
        ),
        f"@{_PRIVMSG_TAGS};emotes=25:2-6/1902:9-13;first-msg=0 {_PREFIX}😂 Kappa 😂Keepo",
    ),
    "cheer": (
        chat_event(
            message=fragments(("cheermote", "Cheer100"), ("text", " great stream")),
            cheer={"bits": 100},
        ),
        f"@{_PRIVMSG_TAGS};bits=100;emotes=;first-msg=0 {_PREFIX}Cheer100 great stream",
    ),
    "reply": (
        chat_event(
            message=fragments(("mention", "@viewer23"), ("text", " agreed")),
            reply={
                "parent_message_id": "6b13f3c3-1a2a-4c4a-9f8f-8e0c1a4bb5a2",
                "parent_message_body": "first!",
                "parent_user_id": "49912639",
                "parent_user_name": "viewer23",
                "parent_user_login": "viewer23",
                "thread_message_id": "6b13f3c3-1a2a-4c4a-9f8f-8e0c1a4bb5a2",
                "thread_user_id": "49912639",
                "thread_user_name": "viewer23",
                "thread_user_login": "viewer23",
            },
        ),
        f"@{_PRIVMSG_TAGS};emotes=;first-msg=0;reply-parent-display-name=viewer23;"
        "reply-parent-msg-body=first!;reply-parent-msg-id=6b13f3c3-1a2a-4c4a-9f8f-8e0c1a4bb5a2;"
        f"reply-parent-user-id=49912639;reply-parent-user-login=viewer23 {_PREFIX}@viewer23 agreed",
    ),
    "shared chat from another channel": (
        chat_event(
            source_broadcaster_user_id="112233",
            source_broadcaster_user_login="streamer33",
            source_broadcaster_user_name="streamer33",
            source_message_id="e03f6d5d-8ec8-4c63-b473-9e5fe61e289b",
            source_badges=[{"set_id": "subscriber", "id": "3", "info": "3"}],
        ),
        f"@{_PRIVMSG_TAGS};emotes=25:8-12;first-msg=0;source-badge-info=subscriber/3;"
        "source-badges=subscriber/3;source-id=e03f6d5d-8ec8-4c63-b473-9e5fe61e289b;"
        f"source-room-id=112233 {_PREFIX}Hi chat Kappa",
    ),
    "first message (user intro)": (
        chat_event(message_type="user_intro"),
        f"@{_PRIVMSG_TAGS};emotes=25:8-12;first-msg=1;msg-id=user-intro {_PREFIX}Hi chat Kappa",
    ),
    # Twitch keeps the CTCP wrapper in `message.text` and drops it from the fragments
    # (a capture in navarr/multi-stream-chat#22).
    "action (/me)": (
        chat_event(
            message={
                "text": "\x01ACTION waves Kappa\x01",
                "fragments": [
                    {
                        "type": "text",
                        "text": "waves ",
                        "cheermote": None,
                        "emote": None,
                        "mention": None,
                    },
                    {
                        "type": "emote",
                        "text": "Kappa",
                        "cheermote": None,
                        "emote": None,
                        "mention": None,
                    },
                ],
            }
        ),
        f"@{_PRIVMSG_TAGS};emotes=25:6-10;first-msg=0 {_PREFIX}\x01ACTION waves Kappa\x01",
    ),
    "display name with a trailing space": (
        chat_event(chatter_user_name="viewer32 "),
        "@"
        + _PRIVMSG_TAGS.replace("display-name=viewer32", r"display-name=viewer32\s")
        + f";emotes=25:8-12;first-msg=0 {_PREFIX}Hi chat Kappa",
    ),
}


_USERNOTICE = (
    "@badge-info=;badges=;color=;display-name=viewer23;emotes=;flags=;"
    "id=d62235c8-47ff-a4f4-84e8-5a29a65a9c03;login=viewer23;mod=0;room-id=1971641;"
    "subscriber=1;tmi-sent-ts=1700129470000;user-id=49912639;user-type="
)
_TAIL = " :tmi.twitch.tv USERNOTICE #streamer"


def _usernotice(tags: str, text: str = "") -> str:
    return f"{_USERNOTICE};{tags}{_TAIL}" + (f" :{text}" if text else "")


_ANON = (
    "@badge-info=;badges=;color=;display-name=AnAnonymousGifter;emotes=;flags=;"
    "id=d62235c8-47ff-a4f4-84e8-5a29a65a9c03;login=ananonymousgifter;mod=0;room-id=1971641;"
    "subscriber=0;tmi-sent-ts=1700129470000;user-id=274598607;user-type="
)
_RAIDER = (
    "@badge-info=;badges=;color=;display-name=OGprodigy;emotes=;flags=;"
    "id=d62235c8-47ff-a4f4-84e8-5a29a65a9c03;login=ogprodigy;mod=0;room-id=1971641;"
    "subscriber=0;tmi-sent-ts=1700129470000;user-id=53888434;user-type="
)
_BROADCASTER = (
    "@badge-info=;badges=broadcaster/1;color=;display-name=streamer;emotes=;flags=;"
    "id=d62235c8-47ff-a4f4-84e8-5a29a65a9c03;login=streamer;mod=0;room-id=1971641;"
    "subscriber=0;tmi-sent-ts=1700129470000;user-id=1971641;user-type="
)

NOTICE_EQUIVALENCES: dict[str, tuple[type[ChatEventRecord], str, set[str]]] = {
    # case: (record type, IRC line, fields EventSub cannot fill the same way)
    "sub": (
        Subscription,
        _usernotice(
            r"msg-id=sub;msg-param-cumulative-months=1;msg-param-months=0;"
            r"msg-param-multimonth-duration=1;msg-param-should-share-streak=0;"
            r"msg-param-sub-plan-name=Channel\sSubscription\s(streamer);"
            r"msg-param-sub-plan=1000;msg-param-was-gifted=false;"
            r"system-msg=viewer23\ssubscribed\sat\sTier\s1."
        ),
        {"cumulative_months", "sub_plan_name"},
    ),
    "sub_prime": (
        Subscription,
        _usernotice(
            r"msg-id=sub;msg-param-multimonth-duration=1;msg-param-sub-plan=Prime;"
            r"msg-param-sub-plan-name=Channel\sSubscription\s(streamer);"
            r"system-msg=viewer23\ssubscribed\swith\sPrime."
        ),
        {"sub_plan_name"},
    ),
    "resub": (
        Resubscription,
        _usernotice(
            r"msg-id=resub;msg-param-cumulative-months=10;msg-param-months=0;"
            r"msg-param-multimonth-duration=0;msg-param-should-share-streak=1;"
            r"msg-param-streak-months=4;msg-param-sub-plan-name=Channel\sSubscription\s(streamer);"
            r"msg-param-sub-plan=2000;msg-param-was-gifted=false;"
            r"system-msg=viewer23\ssubscribed\sat\sTier\s2.\sThey've\ssubscribed\sfor\s10\smonths,"
            r"\scurrently\son\sa\s4\smonth\sstreak!",
            "Still here Kappa",
        ).replace("emotes=;", "emotes=25:11-15;"),
        {"sub_plan_name"},
    ),
    "sub_gift": (
        GiftSubscription,
        _usernotice(
            r"msg-id=subgift;msg-param-gift-months=1;msg-param-months=1;"
            r"msg-param-origin-id=8862142563198473546;msg-param-recipient-display-name=Arecaceae_;"
            r"msg-param-recipient-id=753317728;msg-param-recipient-user-name=arecaceae_;"
            r"msg-param-sender-count=5;msg-param-sub-plan-name=Channel\sSubscription\s(streamer);"
            r"msg-param-sub-plan=1000;system-msg=viewer23\sgifted\sa\sTier\s1\ssub\sto\sArecaceae_!"
            r"\sThey\shave\sgiven\s5\sGift\sSubs\sin\sthe\schannel!"
        ),
        # IRC's origin-id links nothing for a single gift; EventSub leaves it null.
        {"sub_plan_name", "community_gift_id"},
    ),
    "sub_gift_anonymous": (
        GiftSubscription,
        f"{_ANON};"
        r"msg-id=subgift;msg-param-community-gift-id=12111455614691086753;"
        r"msg-param-gift-months=1;msg-param-recipient-display-name=Arecaceae_;"
        r"msg-param-recipient-id=753317728;msg-param-recipient-user-name=arecaceae_;"
        r"msg-param-sub-plan-name=Channel\sSubscription\s(streamer);msg-param-sub-plan=1000;"
        r"system-msg=An\sanonymous\suser\sgifted\sa\sTier\s1\ssub\sto\sArecaceae_!" + _TAIL,
        {"sub_plan_name"},
    ),
    "community_sub_gift": (
        MysteryGift,
        _usernotice(
            r"msg-id=submysterygift;msg-param-community-gift-id=12111455614691086753;"
            r"msg-param-mass-gift-count=5;msg-param-sender-count=20;msg-param-sub-plan=1000;"
            r"system-msg=viewer23\sis\sgifting\s5\sTier\s1\sSubs\sto\sstreamer's\scommunity!"
            r"\sThey've\sgifted\sa\stotal\sof\s20\sin\sthe\schannel!"
        ),
        set(),
    ),
    "gift_paid_upgrade": (
        GiftUpgrade,
        _usernotice(
            r"msg-id=giftpaidupgrade;msg-param-sender-login=casinozeberus;"
            r"msg-param-sender-name=CasinoZEBERUS;"
            r"system-msg=viewer23\sis\scontinuing\sthe\sGift\sSub\sthey\sgot\sfrom\sCasinoZEBERUS!"
        ),
        set(),
    ),
    "prime_paid_upgrade": (
        UserNotice,
        _usernotice(
            r"msg-id=primepaidupgrade;msg-param-sub-plan=1000;"
            r"system-msg=viewer23\sconverted\sfrom\sa\sPrime\ssub\sto\sa\sTier\s1\ssub!"
        ),
        set(),
    ),
    "pay_it_forward": (
        UserNotice,
        _usernotice(
            r"msg-id=communitypayforward;msg-param-prior-gifter-anonymous=false;"
            r"msg-param-prior-gifter-display-name=CasinoZEBERUS;msg-param-prior-gifter-id=967793245;"
            r"msg-param-prior-gifter-user-name=casinozeberus;"
            r"system-msg=viewer23\sis\spaying\sforward\sthe\sGift\sthey\sgot\sfrom\sCasinoZEBERUS"
            r"\sto\sthe\scommunity!"
        ),
        set(),
    ),
    "raid": (
        Raid,
        f"{_RAIDER};msg-id=raid;msg-param-displayName=OGprodigy;msg-param-login=ogprodigy;"
        r"msg-param-viewerCount=12;system-msg=12\sraiders\sfrom\sOGprodigy\shave\sjoined!" + _TAIL,
        set(),
    ),
    "unraid": (
        Unraid,
        f"{_BROADCASTER};msg-id=unraid;system-msg=The\\sraid\\shas\\sbeen\\scanceled." + _TAIL,
        set(),
    ),
    "announcement": (
        Announcement,
        _usernotice("msg-id=announcement;msg-param-color=BLUE;system-msg=", "Stream starts soon"),
        set(),
    ),
    "bits_badge_tier": (
        BitsBadgeTier,
        _usernotice(
            r"msg-id=bitsbadgetier;msg-param-threshold=1000;"
            r"system-msg=bits\sbadge\stier\snotification"
        ),
        set(),
    ),
    "charity_donation": (
        UserNotice,
        _usernotice(
            r"msg-id=charitydonation;msg-param-charity-name=Example\sCharity;"
            r"msg-param-donation-amount=500;msg-param-donation-currency=USD;msg-param-exponent=2;"
            r"system-msg=viewer23:\sDonated\sUSD\s5\sto\ssupport\sExample\sCharity"
        ),
        set(),
    ),
    "shared_chat_resub": (
        Resubscription,
        _usernotice(
            r"msg-id=sharedchatnotice;source-msg-id=resub;source-room-id=112233;"
            r"source-id=2be7193d-0366-4453-b6ec-b288ce9f2c39;msg-param-cumulative-months=10;"
            r"msg-param-months=0;msg-param-multimonth-duration=0;"
            r"msg-param-should-share-streak=0;msg-param-sub-plan-name=Channel\sSubscription;"
            r"msg-param-sub-plan=1000;msg-param-was-gifted=false;"
            r"system-msg=viewer23\ssubscribed\sat\sTier\s1.\sThey've\ssubscribed\sfor\s10\smonths!"
        ),
        {"sub_plan_name"},
    ),
}
