"""IRC line parsing: the IRCv3 message-tags rules, hand-checked, plus the whole corpus."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from tests.support.corpus import excluded_lines, index_rows, iter_raw_lines
from twitch_ingestion.sources.irc.commands import ContractViolation, ParseStats
from twitch_ingestion.sources.irc.irc import (
    IrcMessage,
    IrcParseError,
    decode_tags,
    escape_tag_value,
    format_tags,
    parse_line,
    parse_tags,
    unescape_tag_value,
)
from twitch_ingestion.sources.irc.routing import route_message

# --- tag values: unescaping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("escaped", "value"),
    [
        ("plain", "plain"),
        ("", ""),
        ("a\\sb", "a b"),
        ("a\\:b", "a;b"),
        ("a\\\\b", "a\\b"),
        ("a\\rb", "a\rb"),
        ("a\\nb", "a\nb"),
        ("\\\\s", "\\s"),  # an escaped backslash followed by `s` is not a space
        ("\\\\\\s", "\\ "),
        ("a\\bc", "abc"),  # unknown escape: the backslash is dropped
        ("\\x", "x"),
        ("trailing\\", "trailing"),  # a lone trailing backslash is dropped
        ("\\", ""),
        ("x\\s\\", "x "),
        ("Riot\\sGames\\s", "Riot Games "),
        ("\\:\\s\\\\\\r\\n", "; \\\r\n"),
        ("😂\\s👉", "😂 👉"),
    ],
)
def test_unescape_tag_value_follows_ircv3(escaped: str, value: str) -> None:
    assert unescape_tag_value(escaped) == value


@pytest.mark.parametrize(
    "value", ["", "plain", "a b", "a;b", "a\\b", "\\s", "line\r\nbreak", "; \\ \r\n", "😂 x"]
)
def test_escape_tag_value_round_trips(value: str) -> None:
    escaped = escape_tag_value(value)
    assert not any(char in escaped for char in "; \r\n")
    assert unescape_tag_value(escaped) == value


def test_format_tags_produces_what_parse_tags_reads() -> None:
    tags = {"display-name": "Riot Games ", "system-msg": "a;b\\c", "empty": ""}
    assert parse_tags(format_tags(tags)) == tags


# --- tag sections ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_tags", "tags"),
    [
        ("a=1;b=2", {"a": "1", "b": "2"}),
        ("a=;b=2", {"a": "", "b": "2"}),  # empty value
        ("a;b=2", {"a": "", "b": "2"}),  # valueless tag means the empty value
        ("a=1;a=2", {"a": "2"}),  # a repeated key keeps the last value
        ("a=1;;b=2;", {"a": "1", "b": "2"}),  # empty items are ignored
        ("=orphan;b=2", {"b": "2"}),  # no key: ignored
        ("url=https://x/?a=b;c=d", {"url": "https://x/?a=b", "c": "d"}),  # `=` in a value
        ('quote="x";c=1', {"quote": '"x"', "c": "1"}),
        ("msg=a\\sb;c=\\:", {"msg": "a b", "c": ";"}),
        (
            "+example.com/client-tag=1;vendor/key=2",
            {"+example.com/client-tag": "1", "vendor/key": "2"},
        ),
        ("ctl=\x01x", {"ctl": "\x01x"}),  # a control character: exact path
        ("lone=\ud800", {"lone": "\ud800"}),  # a lone surrogate: exact path
    ],
)
def test_parse_tags_edge_cases(raw_tags: str, tags: dict[str, str]) -> None:
    assert parse_tags(raw_tags) == tags
    assert parse_line(f"@{raw_tags} :tmi.twitch.tv PING").tags == tags


class _Picked(msgspec.Struct, rename="kebab"):
    display_name: str = ""
    room_id: str = ""


_PICKED = msgspec.json.Decoder(_Picked)


@pytest.mark.parametrize(
    "raw_tags",
    ["display-name=A;room-id=1", "display-name=A\\sB;room-id=1", 'display-name;room-id=1;x="', ""],
)
def test_decode_tags_agrees_with_the_tag_dict(raw_tags: str) -> None:
    line = f"@{raw_tags} :a!a@a PRIVMSG #c :t" if raw_tags else ":a!a@a PRIVMSG #c :t"
    fast = decode_tags(parse_line(line), _PICKED, _Picked)
    tags = parse_line(line).tags
    assert fast == _Picked(
        display_name=tags.get("display-name", ""), room_id=tags.get("room-id", "")
    )


def test_decode_tags_works_for_a_message_built_from_a_dict() -> None:
    message = IrcMessage("", {"display-name": "X"}, None, "PRIVMSG", ["#c", "t"])
    assert decode_tags(message, _PICKED, _Picked) == _Picked(display_name="X")


@pytest.mark.parametrize(
    ("raw_tags", "key", "value"),
    [
        ("id=abc;room-id=1", "id", "abc"),
        ("room-id=1;id=abc", "id", "abc"),
        ("target-msg-id=x;id=abc", "id", "abc"),  # a key that merely ends in `id`
        ("target-msg-id=x", "id", None),
        ("id=a;id=b", "id", "b"),  # the last one wins
        ("id=a;x=1;id", "id", ""),  # ... even when it is valueless
        ("id", "id", ""),
        ("display-name=A\\sB", "display-name", "A B"),
        ("url=a=b", "url", "a=b"),
        ("id=", "id", ""),
    ],
)
def test_get_tag_reads_one_tag_like_the_full_parse(
    raw_tags: str, key: str, value: str | None
) -> None:
    message = parse_line(f"@{raw_tags} :a!a@a PRIVMSG #c :t")
    assert message.get_tag(key) == value
    assert message.get_tag(key) == message.tags.get(key)  # and from the parsed dict


def test_get_tag_on_untagged_and_dict_built_messages() -> None:
    assert parse_line(":a!a@a PRIVMSG #c :t").get_tag("id") is None
    assert IrcMessage("", {"id": "x"}, None, "PRIVMSG", []).get_tag("id") == "x"


# --- whole lines -----------------------------------------------------------------------


def test_parse_privmsg_line() -> None:
    message = parse_line(
        "@badge-info=;color=#FF0000;display-name=Riot\\sGames :riotgames!riotgames@riotgames"
        ".tmi.twitch.tv PRIVMSG #RiotGames :hello :) world"
    )
    assert message.command == "PRIVMSG"
    assert message.prefix == "riotgames!riotgames@riotgames.tmi.twitch.tv"
    assert message.nick == "riotgames"
    assert message.channel == "riotgames"
    assert message.params == ["#RiotGames", "hello :) world"]
    assert message.trailing == "hello :) world"
    assert message.tags == {"badge-info": "", "color": "#FF0000", "display-name": "Riot Games"}
    assert message.raw_tags == "badge-info=;color=#FF0000;display-name=Riot\\sGames"


@pytest.mark.parametrize(
    ("line", "command", "prefix", "params"),
    [
        ("PING :tmi.twitch.tv", "PING", None, ["tmi.twitch.tv"]),
        (":tmi.twitch.tv RECONNECT", "RECONNECT", "tmi.twitch.tv", []),
        (
            ":tmi.twitch.tv CAP * ACK :twitch.tv/tags",
            "CAP",
            "tmi.twitch.tv",
            ["*", "ACK", "twitch.tv/tags"],
        ),
        (
            ":tmi.twitch.tv 001 justinfan1 :Welcome, GLHF!",
            "001",
            "tmi.twitch.tv",
            ["justinfan1", "Welcome, GLHF!"],
        ),
        (":tmi.twitch.tv CLEARCHAT #pajlada", "CLEARCHAT", "tmi.twitch.tv", ["#pajlada"]),
        (":tmi.twitch.tv CLEARMSG #pajlada sup", "CLEARMSG", "tmi.twitch.tv", ["#pajlada", "sup"]),
        ("privmsg #a :b", "PRIVMSG", None, ["#a", "b"]),  # commands are case-insensitive
        (":a!a@a PRIVMSG #c :", "PRIVMSG", "a!a@a", ["#c", ""]),  # empty trailing
        (":a!a@a PRIVMSG #c :  two leading", "PRIVMSG", "a!a@a", ["#c", "  two leading"]),
        (":a!a@a PRIVMSG #c ::)", "PRIVMSG", "a!a@a", ["#c", ":)"]),
        # Runs of spaces between parts are tolerated.
        ("@a=1   :a!a@a   PRIVMSG   #c   :t", "PRIVMSG", "a!a@a", ["#c", "t"]),
        (":a!a@a PART #c ", "PART", "a!a@a", ["#c"]),
    ],
)
def test_parse_line_structure(
    line: str, command: str, prefix: str | None, params: list[str]
) -> None:
    message = parse_line(line)
    assert (message.command, message.prefix, message.params) == (command, prefix, params)


def test_untagged_and_empty_tag_sections_have_no_tags() -> None:
    assert parse_line(":a!a@a PRIVMSG #c :t").tags == {}
    assert parse_line("@ :a!a@a PRIVMSG #c :t").tags == {}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "missing-command"),
        ("   ", "missing-command"),
        ("@a=1", "tags-without-command"),
        ("@a=1 ", "missing-command"),
        (":prefix-only", "prefix-without-command"),
        (": PRIVMSG #c :t", "empty-prefix"),
        (":a!a@a", "prefix-without-command"),
        (":a!a@a :text", "invalid-command"),
        ("PRIV-MSG #c", "invalid-command"),
        ("12 #c", "invalid-command"),
        ("ПРИВЕТ #c", "invalid-command"),
        ("١٢٣ x", "invalid-command"),  # non-ASCII digits are not a numeric reply
    ],
)
def test_not_irc_raises_irc_parse_error(line: str, reason: str) -> None:
    with pytest.raises(IrcParseError) as caught:
        parse_line(line)
    assert caught.value.reason == reason
    assert caught.value.line == line


# --- the corpus ------------------------------------------------------------------------


def test_every_corpus_line_parses_with_the_indexed_command() -> None:
    rows = index_rows()
    for line_no, line in iter_raw_lines():
        message = parse_line(line)
        assert message.command == rows[line_no - 1].command, line_no


def test_line_fast_path_matches_the_general_parser_on_every_corpus_line() -> None:
    from twitch_ingestion.sources.irc.irc import _parse_line_general

    for line_no, line in iter_raw_lines():
        fast, general = parse_line(line), _parse_line_general(line)
        assert (fast.prefix, fast.command, fast.params, fast.raw_tags, fast.tags) == (
            general.prefix,
            general.command,
            general.params,
            general.raw_tags,
            general.tags,
        ), line_no


def test_fast_tag_path_matches_the_spec_exact_parser_on_every_corpus_line() -> None:
    from twitch_ingestion.sources.irc.irc import _parse_tags_exact

    for line_no, line in iter_raw_lines():
        message = parse_line(line)
        if message.raw_tags is not None:
            assert message.tags == _parse_tags_exact(message.raw_tags), line_no


def test_excluded_robustness_lines_parse_and_route_without_surprises() -> None:
    # 321 synthetic or hand-edited lines (missing params, PRIVMSG to a user, untagged
    # CLEARMSG, …): all are IRC, and routing may only refuse them with ContractViolation.
    refused: Counter[str] = Counter()
    for record in excluded_lines():
        message = parse_line(record["raw"])
        try:
            route_message(message, 1, {}, ParseStats())
        except ContractViolation as violation:
            refused[violation.reason] += 1
    assert refused == {
        "privmsg-without-channel": 4,
        "roomstate-without-channel": 3,
        "clearmsg-without-target-message-id": 2,
        "clearchat-without-channel": 1,
        "privmsg-without-sender": 1,
    }
