"""Property-based tests: the parsers fail only in their documented ways, and escaping inverts."""

from __future__ import annotations

import string
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from twitch_ingestion.models import ChatMessage
from twitch_ingestion.sources.irc.commands import ContractViolation, ParseStats
from twitch_ingestion.sources.irc.emotes import emote_codes, parse_emote_tag
from twitch_ingestion.sources.irc.irc import (
    IrcMessage,
    IrcParseError,
    _parse_line_general,
    _parse_tags_exact,
    escape_tag_value,
    format_tags,
    parse_line,
    parse_tags,
    unescape_tag_value,
)
from twitch_ingestion.sources.irc.routing import route_message

BOUNDED = settings(max_examples=200, deadline=None)

# Text that exercises the parser's delimiters far more often than uniform Unicode would.
IRC_NOISE = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("@:;= !#\\/-,\x01 ACTIONPRIVMSG0123456789")),
        st.characters(codec="utf-8"),
    ),
    max_size=120,
)
TAG_KEY = st.text(
    alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=12
) | st.sampled_from(["+example.com/foo", "vendor.tv/bar", "emotes", "tmi-sent-ts", "room-id"])
TAG_VALUE = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "\\", ";", " ", "\\s", "a=b", '"', "\r\n"]
)


def _route_anything(line: str) -> None:
    try:
        message = parse_line(line)
    except IrcParseError:
        return
    try:
        routed = route_message(message, 1, {"c": "1"}, ParseStats())
    except ContractViolation:
        return
    if routed is not None and isinstance(routed.record, ChatMessage):
        for code in routed.record.emotes:
            assert code in routed.record.message
            assert " " not in code


@BOUNDED
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_documented_errors(line: str) -> None:
    _route_anything(line)


@BOUNDED
@given(IRC_NOISE)
def test_irc_looking_noise_raises_only_documented_errors(line: str) -> None:
    _route_anything(line)


COMMANDS = st.sampled_from(
    ["PRIVMSG", "USERNOTICE", "CLEARCHAT", "CLEARMSG", "ROOMSTATE", "NOTICE", "PING", "001"]
)
EMOTE_TAG = st.lists(
    st.tuples(
        st.sampled_from(["25", "80481_/3", "emotesv2_ab", "x/y"]),
        st.lists(st.tuples(st.integers(-2, 40), st.integers(-2, 40)), min_size=1, max_size=3),
    ),
    max_size=3,
).map(
    lambda entries: "/".join(
        f"{emote_id}:" + ",".join(f"{start}-{end}" for start, end in ranges)
        for emote_id, ranges in entries
    )
)
KNOWN_TAGS = st.fixed_dictionaries(
    {},
    optional={
        "emotes": EMOTE_TAG | TAG_VALUE,
        "tmi-sent-ts": st.integers(-(10**14), 10**17).map(str) | TAG_VALUE,
        "room-id": TAG_VALUE,
        "display-name": TAG_VALUE,
        "badges": TAG_VALUE,
        "bits": st.integers(-5, 10**6).map(str) | TAG_VALUE,
        "ban-duration": st.integers(-5, 10**6).map(str) | TAG_VALUE,
        "target-msg-id": TAG_VALUE,
        "msg-id": st.sampled_from(["sub", "resub", "subgift", "raid", "sharedchatnotice", "x"]),
        "source-msg-id": st.sampled_from(["raid", "announcement", ""]),
        "msg-param-viewerCount": TAG_VALUE,
        "followers-only": TAG_VALUE,
        "slow": TAG_VALUE,
    },
)


@BOUNDED
@given(
    tags=KNOWN_TAGS,
    prefix=st.sampled_from(["", ":tmi.twitch.tv ", ":a!a@a.tmi.twitch.tv ", ":!x@y "]),
    command=COMMANDS,
    channel=st.sampled_from(["#c", "#", "c", "", "#Chan"]),
    text=st.none() | st.text(max_size=40) | st.sampled_from(["\x01ACTION Kappa\x01", "\x01ACTION"]),
)
def test_structured_lines_raise_only_documented_errors(
    tags: dict[str, str], prefix: str, command: str, channel: str, text: str | None
) -> None:
    tag_section = f"@{format_tags(tags)} " if tags else ""
    trailing = "" if text is None else f" :{text}"
    _route_anything(f"{tag_section}{prefix}{command} {channel}{trailing}")


@BOUNDED
@given(IRC_NOISE.map(lambda noise: "@" + noise))
def test_line_fast_path_agrees_with_the_general_parser(line: str) -> None:
    def outcome(parser: Callable[[str], IrcMessage]) -> object:
        try:
            message = parser(line)
        except IrcParseError as error:
            return error.reason
        return (message.prefix, message.command, message.params, message.raw_tags)

    assert outcome(parse_line) == outcome(_parse_line_general)


@BOUNDED
@given(st.dictionaries(TAG_KEY, TAG_VALUE, max_size=8))
def test_escaping_then_parsing_returns_the_original_tags(tags: dict[str, str]) -> None:
    line = f"@{format_tags(tags)} :tmi.twitch.tv PING" if tags else ":tmi.twitch.tv PING"
    assert parse_line(line).tags == tags


@BOUNDED
@given(st.dictionaries(TAG_KEY, TAG_VALUE, max_size=8), TAG_KEY)
def test_get_tag_agrees_with_the_full_parse(tags: dict[str, str], other_key: str) -> None:
    line = f"@{format_tags(tags)} :tmi.twitch.tv PING" if tags else ":tmi.twitch.tv PING"
    for key in [*tags, other_key]:
        assert parse_line(line).get_tag(key) == tags.get(key)


@BOUNDED
@given(TAG_VALUE)
def test_unescape_inverts_escape(value: str) -> None:
    assert unescape_tag_value(escape_tag_value(value)) == value


@BOUNDED
@given(st.text(max_size=80))
def test_fast_and_exact_tag_parsers_agree_on_any_input(raw_tags: str) -> None:
    raw_tags = raw_tags.replace(" ", "")  # a tag section ends at the first space
    assert parse_tags(raw_tags) == _parse_tags_exact(raw_tags)


@BOUNDED
@given(tag=EMOTE_TAG | IRC_NOISE, text=st.text(max_size=40))
def test_emote_codes_are_exact_slices_or_nothing(tag: str, text: str) -> None:
    stats = ParseStats()
    codes = emote_codes(tag, text, stats)
    if not codes:
        return
    ranges, malformed = parse_emote_tag(tag)
    assert malformed == 0
    assert stats.emote_ranges_skipped == 0
    by_position = sorted(ranges, key=lambda emote_range: emote_range[1])
    assert codes == [text[start : end + 1] for _, start, end in by_position]
    assert all(code and " " not in code for code in codes)
