"""USERNOTICE, CLEARCHAT, CLEARMSG, ROOMSTATE → event records.

Lines are real ones from the corpus (trimmed of tags the records do not use) unless a
comment says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from twitch_ingestion.models import (
    Announcement,
    Ban,
    BitsBadgeTier,
    ChatCleared,
    ChatEventRecord,
    GiftSubscription,
    GiftUpgrade,
    MessageDeleted,
    MysteryGift,
    Raid,
    Resubscription,
    Ritual,
    RoomState,
    Subscription,
    Timeout,
    Unraid,
    UserNotice,
    decode_chat_event,
    encode_record,
)
from twitch_ingestion.sources.irc.commands import ContractViolation, ParseStats
from twitch_ingestion.sources.irc.commands.clearchat import parse_clearchat
from twitch_ingestion.sources.irc.commands.clearmsg import parse_clearmsg
from twitch_ingestion.sources.irc.commands.roomstate import parse_roomstate
from twitch_ingestion.sources.irc.commands.usernotice import parse_usernotice
from twitch_ingestion.sources.irc.irc import parse_line

RECEIVED_AT = 1_700_000_000_123


def usernotice(line: str, room_ids: Mapping[str, str] | None = None) -> ChatEventRecord:
    return parse_usernotice(parse_line(line), RECEIVED_AT, room_ids or {}, ParseStats())


# --- USERNOTICE -------------------------------------------------------------------------

SUB = (
    "@badge-info=subscriber/0;badges=subscriber/0,premium/1;color=;display-name=fallenseraphhh;"
    "emotes=;flags=;id=2a9bea11-a80a-49a0-a498-1642d457f775;login=fallenseraphhh;mod=0;msg-id=sub;"
    "msg-param-cumulative-months=1;msg-param-months=0;msg-param-should-share-streak=0;"
    "msg-param-sub-plan-name=Channel\\sSubscription\\s(xqcow);msg-param-sub-plan=Prime;"
    "room-id=71092938;subscriber=1;system-msg=fallenseraphhh\\ssubscribed\\swith\\sTwitch\\sPrime.;"
    "tmi-sent-ts=1582685713242;user-id=224005980;user-type= :tmi.twitch.tv USERNOTICE #xqcow"
)


def test_sub_common_and_own_fields() -> None:
    record = usernotice(SUB)
    assert isinstance(record, Subscription)
    assert not isinstance(record, Resubscription)
    assert record.channel_id == "xqcow"
    assert record.room_id == "71092938"
    assert (record.user_id, record.username, record.display_name) == (
        "224005980",
        "fallenseraphhh",
        "fallenseraphhh",
    )
    assert record.timestamp == 1582685713242
    assert record.received_at == RECEIVED_AT
    assert record.message_id == "2a9bea11-a80a-49a0-a498-1642d457f775"
    assert record.system_message == "fallenseraphhh subscribed with Twitch Prime."
    assert (record.message, record.emotes) == (None, [])
    assert (record.source_room_id, record.source_message_id) == (None, None)
    assert record.tags["msg-param-sub-plan-name"] == "Channel Subscription (xqcow)"
    assert record.cumulative_months == 1
    assert record.streak_months is None
    assert (record.sub_plan, record.sub_plan_name) == ("Prime", "Channel Subscription (xqcow)")
    assert record.was_gifted is False
    assert record.schema_version == 1


def test_resub_with_message_emotes_and_shared_streak() -> None:
    record = usernotice(
        "@badge-info=subscriber/2;badges=subscriber/0;display-name=Gutrin;emotes=1035663:0-3;"
        "id=e0975c76-054c-4954-8cb0-91b8867ec1ca;login=gutrin;msg-id=resub;"
        "msg-param-cumulative-months=2;msg-param-months=0;msg-param-should-share-streak=1;"
        "msg-param-streak-months=2;msg-param-sub-plan-name=Channel\\sSubscription\\s(xqcow);"
        "msg-param-sub-plan=1000;room-id=71092938;system-msg=Gutrin\\ssubscribed\\sat\\sTier\\s1."
        ";tmi-sent-ts=1581713640019;user-id=21156217 :tmi.twitch.tv USERNOTICE #xqcow :xqcL"
    )
    assert isinstance(record, Resubscription)
    assert (record.message, record.emotes) == ("xqcL", ["xqcL"])
    assert (record.cumulative_months, record.streak_months, record.sub_plan) == (2, 2, "1000")


def test_old_sub_lines_without_cumulative_months_use_months() -> None:
    # Synthetic: the pre-2019 format had only msg-param-months.
    record = usernotice(
        SUB.replace("msg-param-cumulative-months=1;msg-param-months=0", "msg-param-months=7")
    )
    assert isinstance(record, Subscription)
    assert record.cumulative_months == 7


GIFT_TAGS = (
    "display-name=AdamAtReflectStudios;emotes=;id=e21409b1-d25d-4a1a-b5cf-ef27d8b7030e;"
    "login=adamatreflectstudios;msg-id=subgift;msg-param-gift-months=1;msg-param-months=2;"
    "msg-param-origin-id=da\\s39\\sa3;msg-param-recipient-display-name=qatarking24xd;"
    "msg-param-recipient-id=236653628;msg-param-recipient-user-name=qatarking24xd;"
    "msg-param-sender-count=0;msg-param-sub-plan-name=Channel\\sSubscription\\s(xqcow);"
    "msg-param-sub-plan=1000;room-id=71092938;system-msg=AdamAtReflectStudios\\sgifted\\sa\\s"
    "Tier\\s1\\ssub\\sto\\sqatarking24xd!;tmi-sent-ts=1594583782376;user-id=211711554"
)


def test_subgift_names_gifter_and_recipient() -> None:
    record = usernotice(f"@{GIFT_TAGS} :tmi.twitch.tv USERNOTICE #xqcow")
    assert isinstance(record, GiftSubscription)
    assert (record.user_id, record.username) == ("211711554", "adamatreflectstudios")
    assert (record.recipient_user_id, record.recipient_username, record.recipient_display_name) == (
        "236653628",
        "qatarking24xd",
        "qatarking24xd",
    )
    assert (record.gift_months, record.sender_total_gifts, record.anonymous) == (1, 0, False)
    assert record.community_gift_id == "da 39 a3"


@pytest.mark.parametrize(
    ("replace", "by"),
    [
        ("msg-id=subgift", "msg-id=anonsubgift"),
        ("login=adamatreflectstudios", "login=ananonymousgifter"),
    ],
)
def test_anonymous_gifts(replace: str, by: str) -> None:
    record = usernotice(f"@{GIFT_TAGS.replace(replace, by)} :tmi.twitch.tv USERNOTICE #xqcow")
    assert isinstance(record, GiftSubscription)
    assert record.anonymous is True


def test_submysterygift() -> None:
    record = usernotice(
        "@display-name=AdamAtReflectStudios;id=049e6371-7023-4fca-8605-7dec60e72e12;"
        "login=adamatreflectstudios;msg-id=submysterygift;msg-param-mass-gift-count=20;"
        "msg-param-origin-id=1f\\sbe;msg-param-sender-count=100;msg-param-sub-plan=1000;"
        "room-id=71092938;tmi-sent-ts=1594583777669;user-id=211711554"
        " :tmi.twitch.tv USERNOTICE #xqcow"
    )
    assert isinstance(record, MysteryGift)
    assert (record.gift_count, record.sender_total_gifts, record.sub_plan) == (20, 100, "1000")
    assert (record.anonymous, record.community_gift_id) == (False, "1f be")


def test_giftpaidupgrade_and_anonymous_variant() -> None:
    named = usernotice(
        "@display-name=CrazyCrackAnimal;id=7006f242-a45c-4e07-83b3-11f9c6d1ee28;"
        "login=crazycrackanimal;msg-id=giftpaidupgrade;msg-param-sender-login=stridezgum;"
        "msg-param-sender-name=Stridezgum;room-id=71092938;tmi-sent-ts=1594518849459;"
        "user-id=86082877 :tmi.twitch.tv USERNOTICE #xqcow"
    )
    assert isinstance(named, GiftUpgrade)
    assert (named.gifter_username, named.gifter_display_name, named.anonymous) == (
        "stridezgum",
        "Stridezgum",
        False,
    )
    anonymous = usernotice(
        "@id=144ee636-0c1d-404e-8b29-35449a045a7e;login=samura1jack_ttv;msg-id=anongiftpaidupgrade"
        ";msg-param-promo-gift-total=3;msg-param-promo-name=TestSubtember2020;room-id=71092938;"
        "tmi-sent-ts=1594327421732;user-id=102707709 :tmi.twitch.tv USERNOTICE #xqcow"
    )
    assert isinstance(anonymous, GiftUpgrade)
    assert (anonymous.gifter_username, anonymous.anonymous) == (None, True)
    assert (anonymous.promo_name, anonymous.promo_gift_total) == ("TestSubtember2020", 3)


def test_raid_and_unraid() -> None:
    raid = usernotice(
        "@display-name=iamelisabete;id=bb99dda7-3736-4583-9114-52aa11b23d17;login=iamelisabete;"
        "msg-id=raid;msg-param-displayName=iamelisabete;msg-param-login=iamelisabete;"
        "msg-param-viewerCount=430;room-id=71092938;system-msg=430\\sraiders\\sfrom\\s"
        "iamelisabete\\shave\\sjoined\\n!;tmi-sent-ts=1594517796120;user-id=155874595"
        " :tmi.twitch.tv USERNOTICE #xqcow"
    )
    assert isinstance(raid, Raid)
    assert (raid.username, raid.viewer_count) == ("iamelisabete", 430)
    # `\n` is a tag escape; the system message is kept as Twitch wrote it.
    assert raid.system_message == "430 raiders from iamelisabete have joined\n!"
    unraid = usernotice(
        "@id=06e33f48-c728-4332-b4bc-b7eae6f59f3c;login=fletchercodes;msg-id=unraid;"
        "room-id=269899575;system-msg=The\\sraid\\shas\\sbeen\\scancelled.;"
        "tmi-sent-ts=1551518456143;user-id=269899575 :tmi.twitch.tv USERNOTICE #fletchercodes"
    )
    assert isinstance(unraid, Unraid)
    assert unraid.system_message == "The raid has been cancelled."


def test_ritual_bits_badge_tier_and_announcement() -> None:
    ritual = usernotice(
        "@display-name=SevenTest1;emotes=30259:0-6;id=37feed0f-b9c7-4c3a-b475-21c6c6d21c3d;"
        "login=seventest1;msg-id=ritual;msg-param-ritual-name=new_chatter;room-id=6316121;"
        "tmi-sent-ts=1508363903826;user-id=131260580 :tmi.twitch.tv USERNOTICE #seventoes :HeyGuys"
    )
    assert isinstance(ritual, Ritual)
    assert (ritual.ritual_name, ritual.message, ritual.emotes) == (
        "new_chatter",
        "HeyGuys",
        ["HeyGuys"],
    )
    tier = usernotice(
        "@id=d2b32a02-3071-4c52-b2ce-bc3716acdc44;login=whoopiix;msg-id=bitsbadgetier;"
        "msg-param-threshold=1000;room-id=71092938;tmi-sent-ts=1594520403813;user-id=104252055"
        " :tmi.twitch.tv USERNOTICE #xqcow"
    )
    assert isinstance(tier, BitsBadgeTier)
    assert tier.threshold == 1000
    announcement = usernotice(
        "@emotes=25:17-21;id=9045a344-75b9-44fa-af49-c413bcb39559;login=randers;"
        "msg-id=announcement;room-id=11148817;system-msg=;tmi-sent-ts=1780872797175;"
        "user-id=40286300 :tmi.twitch.tv USERNOTICE #pajlada :hello pajs pajaH Kappa Keepo"
    )
    assert isinstance(announcement, Announcement)
    assert (announcement.color, announcement.emotes) == ("PRIMARY", ["Kappa"])
    assert announcement.system_message == ""


def test_unknown_msg_id_passes_through_as_user_notice() -> None:
    record = usernotice(
        "@msg-param-category=watch-streak;msg-param-value=7;msg-id=viewermilestone;login=baughbby;"
        "tmi-sent-ts=1700717888068;id=107473b2-01c2-49a5-9fe5-a4d7ffe54e5f;room-id=39842292;"
        "user-id=531667091 :tmi.twitch.tv USERNOTICE #nandre :ive done it"
    )
    assert isinstance(record, UserNotice)
    assert record.notice_type == "viewermilestone"
    assert record.message == "ive done it"
    assert record.tags["msg-param-value"] == "7"


def test_shared_chat_notice_is_parsed_as_the_original_kind() -> None:
    record = usernotice(
        "@display-name=nerixyz;id=c585cb3e-cb4f-4a48-a251-b568d217587e;login=nerixyz;"
        "msg-id=sharedchatnotice;msg-param-login=nerixyz;msg-param-viewerCount=2;"
        "room-id=11148817;source-id=d86cdfb2-e138-48e2-985f-5b8efb765ba4;source-msg-id=raid;"
        "source-room-id=955766119;system-msg=2\\sraiders\\sfrom\\snerixyz\\shave\\sjoined!;"
        "tmi-sent-ts=1729627237027;user-id=129546453 :tmi.twitch.tv USERNOTICE #pajlada"
    )
    assert isinstance(record, Raid)
    assert record.viewer_count == 2
    assert (record.source_room_id, record.source_message_id) == (
        "955766119",
        "d86cdfb2-e138-48e2-985f-5b8efb765ba4",
    )
    assert record.tags["msg-id"] == "sharedchatnotice"


def test_shared_chat_notice_without_source_kind_stays_generic() -> None:
    record = usernotice("@msg-id=sharedchatnotice;id=x :tmi.twitch.tv USERNOTICE #pajlada")
    assert isinstance(record, UserNotice)
    assert record.notice_type == "sharedchatnotice"


def test_usernotice_without_id_gets_a_stable_derived_id() -> None:
    # Synthetic: real USERNOTICEs always carry `id`.
    line = "@msg-id=raid;login=a;tmi-sent-ts=1 :tmi.twitch.tv USERNOTICE #c"
    first = usernotice(line).message_id
    assert first == parse_usernotice(parse_line(line), 999, {}).message_id
    assert len(first) == 36


def test_usernotice_action_text_is_unwrapped() -> None:
    record = usernotice(
        "@msg-id=resub;id=x;emotes= :tmi.twitch.tv USERNOTICE #c :\x01ACTION hi\x01"
    )
    assert record.message == "hi"


def test_usernotice_room_id_and_timestamp_fallbacks() -> None:
    stats = ParseStats()
    record = parse_usernotice(
        parse_line("@msg-id=raid;id=x;room-id=;tmi-sent-ts=-5 :tmi.twitch.tv USERNOTICE #c"),
        RECEIVED_AT,
        {"c": "42"},
        stats,
    )
    assert (record.room_id, record.timestamp) == ("42", RECEIVED_AT)
    assert stats.timestamps_defaulted == 1


def test_usernotice_without_channel_is_a_contract_violation() -> None:
    with pytest.raises(ContractViolation) as caught:
        usernotice("@msg-id=sub;id=x :tmi.twitch.tv USERNOTICE")
    assert caught.value.reason == "usernotice-without-channel"


# --- CLEARCHAT --------------------------------------------------------------------------


def clearchat(line: str, room_ids: Mapping[str, str] | None = None) -> Ban | Timeout | ChatCleared:
    return parse_clearchat(parse_line(line), RECEIVED_AT, room_ids or {}, ParseStats())


def test_timeout_has_target_and_duration() -> None:
    record = clearchat(
        "@ban-duration=1;room-id=11148817;target-user-id=148973258;tmi-sent-ts=1594553828245"
        " :tmi.twitch.tv CLEARCHAT #pajlada :fabzeef"
    )
    assert isinstance(record, Timeout)
    assert (record.target_user_id, record.target_username, record.duration_seconds) == (
        "148973258",
        "fabzeef",
        1,
    )
    assert (record.user_id, record.username) == ("", "")  # IRC does not name the moderator
    assert (record.timestamp, record.room_id) == (1594553828245, "11148817")


def test_ban_has_target_and_no_duration() -> None:
    record = clearchat(
        "@room-id=11148817;target-user-id=70948394;tmi-sent-ts=1594561360331"
        " :tmi.twitch.tv CLEARCHAT #pajlada :weeb123"
    )
    assert isinstance(record, Ban)
    assert (record.target_user_id, record.target_username) == ("70948394", "weeb123")


def test_clear_all_has_no_target() -> None:
    record = clearchat(
        "@room-id=40286300;tmi-sent-ts=1594561392337 :tmi.twitch.tv CLEARCHAT #randers"
    )
    assert isinstance(record, ChatCleared)


def test_clearchat_ids_are_deterministic_per_line() -> None:
    line = "@room-id=1;target-user-id=2;tmi-sent-ts=3 :tmi.twitch.tv CLEARCHAT #c :u"
    first = parse_clearchat(parse_line(line), 1, {})
    again = parse_clearchat(parse_line(line), 2, {})
    later = parse_clearchat(parse_line(line.replace("tmi-sent-ts=3", "tmi-sent-ts=4")), 1, {})
    assert first.message_id == again.message_id != later.message_id


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (":tmi.twitch.tv CLEARCHAT", "clearchat-without-channel"),
        ("@ban-duration=x :tmi.twitch.tv CLEARCHAT #c :u", "clearchat-invalid-ban-duration"),
        ("@ban-duration=-1 :tmi.twitch.tv CLEARCHAT #c :u", "clearchat-invalid-ban-duration"),
        ("@ban-duration=5 :tmi.twitch.tv CLEARCHAT #c", "clearchat-duration-without-target"),
    ],
)
def test_clearchat_contract_violations(line: str, reason: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        clearchat(line)
    assert caught.value.reason == reason


# --- CLEARMSG ---------------------------------------------------------------------------


def test_clearmsg_with_empty_room_id_and_negative_timestamp() -> None:
    stats = ParseStats()
    record = parse_clearmsg(
        parse_line(
            "@login=supinic;room-id=;target-msg-id=e8a4dcfe-9db3-43eb-98d4-b5101ba6a20e;"
            "tmi-sent-ts=-6795364578871 :tmi.twitch.tv CLEARMSG #pajlada :this is a test"
        ),
        RECEIVED_AT,
        {"pajlada": "11148817"},
        stats,
    )
    assert isinstance(record, MessageDeleted)
    assert record.room_id == "11148817"
    assert record.timestamp == RECEIVED_AT
    assert stats.timestamps_defaulted == 1
    assert (record.target_username, record.deleted_message_id, record.message) == (
        "supinic",
        "e8a4dcfe-9db3-43eb-98d4-b5101ba6a20e",
        "this is a test",
    )
    assert len(record.message_id) == 36


def test_clearmsg_absent_room_id_and_unknown_channel() -> None:
    record = parse_clearmsg(
        parse_line(
            "@login=a;target-msg-id=t;tmi-sent-ts=1 :tmi.twitch.tv CLEARMSG #x :\x01ACTION hi\x01"
        ),
        RECEIVED_AT,
        {},
    )
    assert (record.room_id, record.message) == ("", "hi")


def test_clearmsg_without_target_message_id_is_a_contract_violation() -> None:
    with pytest.raises(ContractViolation) as caught:
        parse_clearmsg(parse_line(":tmi.twitch.tv CLEARMSG #museun :HeyGuys"), RECEIVED_AT, {})
    assert caught.value.reason == "clearmsg-without-target-message-id"


# --- ROOMSTATE --------------------------------------------------------------------------


def roomstate(line: str, room_ids: Mapping[str, str] | None = None) -> RoomState:
    return parse_roomstate(parse_line(line), RECEIVED_AT, room_ids or {}, ParseStats())


def test_full_roomstate_on_join() -> None:
    record = roomstate(
        "@emote-only=0;followers-only=-1;r9k=0;rituals=0;room-id=40286300;slow=0;subs-only=0"
        " :tmi.twitch.tv ROOMSTATE #randers"
    )
    assert (record.channel_id, record.room_id) == ("randers", "40286300")
    assert (record.emote_only, record.followers_only_minutes, record.unique_chat) == (
        False,
        -1,
        False,
    )
    assert (record.slow_seconds, record.subs_only) == (0, False)
    assert record.timestamp == RECEIVED_AT


def test_partial_roomstate_sets_only_the_present_settings() -> None:
    record = roomstate("@slow=10 :tmi.twitch.tv ROOMSTATE #gempir", {"gempir": "77829817"})
    assert record.slow_seconds == 10
    assert (
        record.emote_only,
        record.followers_only_minutes,
        record.unique_chat,
        record.subs_only,
    ) == (
        None,
        None,
        None,
        None,
    )
    assert record.room_id == "77829817"


def test_roomstate_does_not_count_its_missing_timestamp() -> None:
    stats = ParseStats()
    parse_roomstate(parse_line("@slow=1 :tmi.twitch.tv ROOMSTATE #c"), 1, {}, stats)
    assert stats.timestamps_defaulted == 0


def test_identical_roomstates_at_different_times_are_distinct_events() -> None:
    line = "@room-id=1;slow=5 :tmi.twitch.tv ROOMSTATE #c"
    first = parse_roomstate(parse_line(line), 1, {})
    assert first.message_id == parse_roomstate(parse_line(line), 1, {}).message_id
    assert first.message_id != parse_roomstate(parse_line(line), 2, {}).message_id


def test_invalid_roomstate_values_are_null() -> None:
    record = roomstate("@emote-only=yes;followers-only=x;slow=-3 :tmi.twitch.tv ROOMSTATE #c")
    assert (record.emote_only, record.followers_only_minutes, record.slow_seconds) == (
        None,
        None,
        None,
    )


def test_roomstate_without_channel_is_a_contract_violation() -> None:
    with pytest.raises(ContractViolation) as caught:
        roomstate("@slow=0 :tmi.twitch.tv ROOMSTATE")
    assert caught.value.reason == "roomstate-without-channel"


# --- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        SUB,
        f"@{GIFT_TAGS} :tmi.twitch.tv USERNOTICE #xqcow",
        "@ban-duration=1;target-user-id=2;tmi-sent-ts=3 :tmi.twitch.tv CLEARCHAT #c :u",
        "@slow=10 :tmi.twitch.tv ROOMSTATE #gempir",
    ],
)
def test_event_records_round_trip_through_json_with_their_event_type(line: str) -> None:
    message = parse_line(line)
    parser = {
        "USERNOTICE": parse_usernotice,
        "CLEARCHAT": parse_clearchat,
        "ROOMSTATE": parse_roomstate,
    }[message.command]
    record = parser(message, RECEIVED_AT, {}, ParseStats())
    encoded = encode_record(record)
    assert encoded.startswith(b'{"event_type":"')
    assert decode_chat_event(encoded) == record
