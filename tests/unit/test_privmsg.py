"""PRIVMSG → ChatMessage: a hand-checked table of edge cases."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import pytest

from tests.support.irc_lines import BASE_TAGS, PREFIX, tagged
from twitch_ingestion.models import ChatMessage, decode_chat_message, encode_record
from twitch_ingestion.sources.irc.commands import DEFAULT_PARSE_STATS, ContractViolation, ParseStats
from twitch_ingestion.sources.irc.commands.privmsg import parse_privmsg
from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line

RECEIVED_AT = 1_700_000_000_123


def privmsg(
    line: str, room_ids: Mapping[str, str] | None = None, stats: ParseStats | None = None
) -> ChatMessage:
    return parse_privmsg(parse_line(line), RECEIVED_AT, room_ids or {}, stats or ParseStats())


def test_seed_fields_of_a_plain_message() -> None:
    record = privmsg(tagged("dank cam"))
    assert record == ChatMessage(
        channel_id="pajlada",
        user_id="40286300",
        username="randers",
        message="dank cam",
        timestamp=1594555275886,
        emotes=[],
        message_id="d831d848-b7c7-4559-ae3a-2cb88f4dbfed",
        room_id="11148817",
        display_name="randers",
        badges={"moderator": "1", "subscriber": "12"},
        is_action=False,
        bits=0,
        reply_parent_message_id=None,
        first_message=False,
        received_at=RECEIVED_AT,
    )


def test_chat_message_field_order_is_the_positional_contract() -> None:
    # parse_privmsg builds ChatMessage positionally (msgspec's >15-kwargs slow path);
    # reordering fields must be a deliberate change to both.
    assert ChatMessage.__struct_fields__ == (
        "channel_id",
        "user_id",
        "username",
        "message",
        "timestamp",
        "emotes",
        "message_id",
        "room_id",
        "display_name",
        "badges",
        "is_action",
        "bits",
        "reply_parent_message_id",
        "first_message",
        "received_at",
        "schema_version",
        "source_room_id",
        "source_message_id",
        "ingested_via",
    )


def test_record_round_trips_through_json() -> None:
    record = privmsg(tagged("\x01ACTION héllo 👋 Kappa\x01", emotes="25:10-14", bits="5"))
    assert decode_chat_message(encode_record(record)) == record


def test_channel_and_username_are_lower_case_logins() -> None:
    record = privmsg(f"@{BASE_TAGS} :RanDers!randers@x PRIVMSG #PajLada :hi")
    assert (record.channel_id, record.username) == ("pajlada", "randers")


# --- /me (CTCP ACTION) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "is_action"),
    [
        ("\x01ACTION waves\x01", "waves", True),
        ("\x01ACTION waves", "waves", True),  # closing \x01 lost (truncated message)
        ("\x01ACTION \x01", "", True),
        ("\x01ACTION\x01", "", True),
        ("\x01ACTION  two spaces\x01", " two spaces", True),
        ("\x01ACTIONS\x01", "\x01ACTIONS\x01", False),  # another CTCP verb
        ("\x01VERSION\x01", "\x01VERSION\x01", False),
        ("ACTION waves", "ACTION waves", False),
        ("waves \x01ACTION x\x01", "waves \x01ACTION x\x01", False),
    ],
)
def test_action_is_unwrapped(text: str, message: str, is_action: bool) -> None:
    record = privmsg(tagged(text))
    assert (record.message, record.is_action) == (message, is_action)


def test_action_emote_ranges_count_from_the_unwrapped_text() -> None:
    # Real line (corpus): `/me Kappa Keepo PogChamp` with ranges 0-4, 6-10, 12-19.
    record = privmsg(
        tagged("\x01ACTION Kappa Keepo PogChamp\x01", emotes="25:0-4/1902:6-10/88:12-19")
    )
    assert record.emotes == ["Kappa", "Keepo", "PogChamp"]


# --- emotes -------------------------------------------------------------------------------


def test_emote_ranges_count_code_points_not_utf16() -> None:
    # 🦀 is one code point but two UTF-16 units: Kappa is at 2-6, Keepo at 11-15.
    text = "🦀 Kappa 🦀🦀 Keepo"
    assert privmsg(tagged(text, emotes="25:2-6/1902:11-15")).emotes == ["Kappa", "Keepo"]
    # The same emotes indexed in UTF-16 units land off the words and are refused.
    stats = ParseStats()
    assert privmsg(tagged(text, emotes="25:3-7/1902:14-18"), stats=stats).emotes == []
    assert stats.emote_ranges_skipped == 2


def test_emotes_between_astral_emoji_without_spaces() -> None:
    assert privmsg(tagged("😂Kappa😂 x", emotes="25:1-5")).emotes == ["Kappa"]


def test_emotes_are_listed_in_text_order_not_tag_order() -> None:
    line = tagged("Keepo Kappa Keepo :)", emotes="25:6-10/1902:0-4,12-16/1:18-19")
    assert privmsg(line).emotes == ["Keepo", "Kappa", "Keepo", ":)"]


@pytest.mark.parametrize(
    ("emotes", "text", "codes"),
    [
        ("80481_/3:7-14", "\U000e0000-tags pajaW_/3.0", ["pajaW_/3"]),  # id with `/` (real)
        ("emotesv2_3a1e0c8f:0-5", "pajaM_ hi", ["pajaM_"]),
        ("300196486_TK:0-7", "pajaM_TK", ["pajaM_TK"]),
        ("25:0-4/80481_/3:6-13", "Kappa pajaW_/3", ["Kappa", "pajaW_/3"]),
        ("80481_/3:6-13/25:0-4", "Kappa pajaW_/3", ["Kappa", "pajaW_/3"]),
        ("a/b/c:0-1", "xy", ["xy"]),
    ],
)
def test_emote_ids_may_contain_slash_and_underscore(
    emotes: str, text: str, codes: list[str]
) -> None:
    assert privmsg(tagged(text, emotes=emotes)).emotes == codes


@pytest.mark.parametrize(
    ("emotes", "text", "skipped"),
    [
        ("25:6-10", "Kappa", 1),  # out of bounds
        ("25:0-5", "Kappa", 1),  # end == len
        ("25:4-0", "Kappa", 1),  # start > end
        ("25:0-4,2-6", "Kappa Kappa", 2),  # overlapping
        ("25:1-5", "Kappa Kappa", 1),  # shifted by one: the slice catches a space
        ("25:0-4,7-11", "Kappa Kappa", 2),  # one good, one bad: the whole tag is distrusted
        ("25:abc", "Kappa", 1),  # malformed range
        ("25:0-4-5", "Kappa", 1),
        ("25:", "Kappa", 1),
        ("25", "Kappa", 1),  # an id without ranges
        ("25:0-4/xyz", "Kappa", 1),
    ],
)
def test_bad_emote_ranges_are_skipped_and_counted(emotes: str, text: str, skipped: int) -> None:
    stats = ParseStats()
    assert privmsg(tagged(text, emotes=emotes), stats=stats).emotes == []
    assert stats.emote_ranges_skipped == skipped
    assert stats.emote_tags_rejected == 1


# --- tag values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("display_name", "expected"),
    [
        ("CarvedTaleare\\s", "CarvedTaleare"),  # Twitch's trailing space is not part of it
        ("Riot\\sGames", "Riot Games"),
        ("테스트계정420", "테스트계정420"),
        ("back\\\\slash", "back\\slash"),
        ("semi\\:colon", "semi;colon"),
        ("unknown\\qescape", "unknownqescape"),
        ("trailing\\", "trailing"),
        ("", ""),
    ],
)
def test_display_name_is_unescaped_and_stripped(display_name: str, expected: str) -> None:
    assert privmsg(tagged("hi", display_name=display_name)).display_name == expected


def test_text_can_contain_tag_escape_lookalikes_verbatim() -> None:
    # Escapes apply to tag values only: the trailing parameter is raw text.
    assert privmsg(tagged("a\\sb\\\\c \\r")).message == "a\\sb\\\\c \\r"


def test_escape_sequences_carriage_return_and_newline_in_tags() -> None:
    line = tagged("x", reply_parent_msg_id="id\\r\\n", display_name="a\\r\\nb")
    record = privmsg(line)
    assert record.reply_parent_message_id == "id\r\n"
    assert record.display_name == "a\r\nb"


def test_empty_and_valueless_tags_give_empty_fields() -> None:
    line = f"@badges;emotes=;display-name;user-id=;id;room-id=1 {PREFIX} PRIVMSG #pajlada :hi"
    record = privmsg(line)
    assert (record.badges, record.emotes, record.display_name) == ({}, [], "")
    assert (record.user_id, record.message_id) == ("", "")


def test_repeated_tag_keeps_the_last_value() -> None:
    line = f"@user-id=1;id=a;user-id=2 {PREFIX} PRIVMSG #pajlada :hi"
    assert privmsg(line).user_id == "2"


def test_untagged_privmsg_gives_empty_fields_and_received_at() -> None:
    stats = ParseStats()
    record = privmsg(f"{PREFIX} PRIVMSG #pajlada :hi", {"pajlada": "11148817"}, stats)
    assert (record.user_id, record.message_id, record.room_id) == ("", "", "11148817")
    assert record.timestamp == RECEIVED_AT
    assert stats.timestamps_defaulted == 1


@pytest.mark.parametrize(
    "tmi_sent_ts",
    [
        "-6795364578871",
        "",
        "<absent>",
        "12a",
        "1.5e12",
        "\\s1594555275886",
        "+1594555275886",
        "1_594_555_275_886",
        "١٥٩٤٥٥٥٢٧٥٨٨٦",
        "1" * 16,
    ],
)
def test_unusable_tmi_sent_ts_falls_back_to_received_at(tmi_sent_ts: str) -> None:
    stats = ParseStats()
    assert privmsg(tagged("x", tmi_sent_ts=tmi_sent_ts), stats=stats).timestamp == RECEIVED_AT
    assert stats.timestamps_defaulted == 1


def test_zero_timestamp_is_kept() -> None:
    assert privmsg(tagged("x", tmi_sent_ts="0")).timestamp == 0


@pytest.mark.parametrize("room_id", ["", "<absent>"])
def test_missing_or_empty_room_id_is_filled_from_the_map(room_id: str) -> None:
    line = tagged("x", room_id=room_id)
    assert privmsg(line, {"pajlada": "11148817"}).room_id == "11148817"
    assert privmsg(line, {"forsen": "22484632"}).room_id == ""


def test_room_id_tag_wins_over_the_map() -> None:
    assert privmsg(tagged("x"), {"pajlada": "999"}).room_id == "11148817"


def test_shared_chat_source_fields() -> None:
    line = tagged(
        "hi", source_room_id="1025594235", source_id="4083dadc-9f20-40f9-ba92-949ebf6bc294"
    )
    record = privmsg(line)
    assert record.source_room_id == "1025594235"
    assert record.source_message_id == "4083dadc-9f20-40f9-ba92-949ebf6bc294"
    plain = privmsg(tagged("hi", source_room_id="", source_id=""))
    assert (plain.source_room_id, plain.source_message_id) == (None, None)


@pytest.mark.parametrize(("bits", "expected"), [("100", 100), ("", 0), ("abc", 0), ("-5", 0)])
def test_bits(bits: str, expected: int) -> None:
    assert privmsg(tagged("cheer100", bits=bits)).bits == expected


@pytest.mark.parametrize(
    ("badges", "expected"),
    [
        ("", {}),
        ("subscriber/12", {"subscriber": "12"}),
        ("moderator/1,subscriber/3012", {"moderator": "1", "subscriber": "3012"}),
        ("glhf-pledge/1,,premium/1", {"glhf-pledge": "1", "premium": "1"}),
        ("noversion", {"noversion": ""}),
    ],
)
def test_badges(badges: str, expected: dict[str, str]) -> None:
    assert privmsg(tagged("x", badges=badges)).badges == expected


def test_each_record_owns_its_badges_dict() -> None:
    first = privmsg(tagged("x", badges="subscriber/12"))
    first.badges["mutated"] = "1"
    assert privmsg(tagged("y", badges="subscriber/12")).badges == {"subscriber": "12"}


def test_reply_and_first_message() -> None:
    record = privmsg(
        tagged("@a hi", reply_parent_msg_id="b34ccfc7-4977-403a-8a94-33c6bac34fb8", first_msg="1")
    )
    assert record.reply_parent_message_id == "b34ccfc7-4977-403a-8a94-33c6bac34fb8"
    assert record.first_message is True
    assert privmsg(tagged("x", reply_parent_msg_id="")).reply_parent_message_id is None


# --- contract violations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{PREFIX} PRIVMSG :no channel", "privmsg-without-channel"),
        (f"{PREFIX} PRIVMSG", "privmsg-without-channel"),
        (f"{PREFIX} PRIVMSG # :text", "privmsg-without-channel"),
        (f"{PREFIX} PRIVMSG someuser :a whisper-like host notice", "privmsg-without-channel"),
        (f"{PREFIX} PRIVMSG #pajlada", "privmsg-without-text"),
        ("PRIVMSG #pajlada :no prefix", "privmsg-without-sender"),
        (":!user@host PRIVMSG #pajlada :empty nick", "privmsg-without-sender"),
    ],
)
def test_lines_that_cannot_be_a_chat_message(line: str, reason: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        privmsg(line)
    assert caught.value.reason == reason
    assert caught.value.line == line


def test_message_built_from_a_tag_dict_parses_the_same() -> None:
    line = tagged("Kappa", emotes="25:0-4", display_name="Ran\\sDers")
    parsed = parse_line(line)
    built = IrcMessage(line, dict(parsed.tags), parsed.prefix, "PRIVMSG", list(parsed.params))
    assert parse_privmsg(built, RECEIVED_AT, {}) == privmsg(line)


def test_default_stats_are_the_process_wide_counters() -> None:
    before = DEFAULT_PARSE_STATS.emote_ranges_skipped
    parse_privmsg(parse_line(tagged("Kappa", emotes="25:9-13")), RECEIVED_AT, {})
    assert DEFAULT_PARSE_STATS.emote_ranges_skipped == before + 1


def test_chat_message_is_a_msgspec_struct_that_encodes_every_field() -> None:
    encoded = msgspec.json.decode(encode_record(privmsg(tagged("hi"))))
    assert set(encoded) == set(ChatMessage.__struct_fields__)
    assert encoded["schema_version"] == 1
