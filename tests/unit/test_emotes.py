"""The `emotes` tag: grammar, code-point slicing and Twitch's misaligned ranges."""

from __future__ import annotations

import functools
from typing import NamedTuple

import pytest

from tests.support.corpus import index_rows, iter_raw_lines
from twitch_ingestion.sources.common.fields import unwrap_action
from twitch_ingestion.sources.irc.commands import ParseStats
from twitch_ingestion.sources.irc.emotes import emote_codes, parse_emote_tag
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.routing import route_message

# Lines the index flags `emote-index-anomaly` (see SOURCES.md, caveat 3), by kind.
# `emote-tag-unparseable` is a tag other parsers fail on (`80481_/3:7-14`, an id with a
# `/`); its ranges are right, and this parser reads it.
PEER_UNPARSEABLE = "emote-tag-unparseable"


@pytest.mark.parametrize(
    ("tag", "ranges", "malformed"),
    [
        ("25:0-4", [("25", 0, 4)], 0),
        ("25:0-4,6-10/1902:12-16", [("25", 0, 4), ("25", 6, 10), ("1902", 12, 16)], 0),
        ("80481_/3:7-14", [("80481_/3", 7, 14)], 0),
        ("25:0-4/80481_/3:7-14", [("25", 0, 4), ("80481_/3", 7, 14)], 0),
        (
            "emotesv2_dc24652ada1e4c84a5e3ceebae4de709:0-9",
            [("emotesv2_dc24652ada1e4c84a5e3ceebae4de709", 0, 9)],
            0,
        ),
        ("a/b/c:1-2", [("a/b/c", 1, 2)], 0),
        ("25:0-4,x-3", [("25", 0, 4)], 1),
        ("25:0-4/garbage", [("25", 0, 4)], 1),
        ("25:0-4/", [("25", 0, 4)], 0),
        ("25:", [], 1),
    ],
)
def test_parse_emote_tag(tag: str, ranges: list[tuple[str, int, int]], malformed: int) -> None:
    assert parse_emote_tag(tag) == (ranges, malformed)


@pytest.mark.parametrize(
    ("tag", "text"),
    [
        ("25:0-4", "Kappa"),
        ("25:2-6/1902:11-15", "🦀 Kappa 🦀🦀 Keepo"),
        ("25:6-10/1902:0-4", "Keepo Kappa"),
        ("80481_/3:7-14", "\U000e0000-tags pajaW_/3.0"),
        ("25:0-5", "Kappa"),
        ("25:0-4,0-4", "Kappa"),
        ("25:1-5", "Kappa Kappa"),
        ("25:0-4/xyz", "Kappa"),
    ],
)
def test_fast_codes_agree_with_the_full_tag_parser(tag: str, text: str) -> None:
    ranges, malformed = parse_emote_tag(tag)
    ranges.sort(key=lambda emote_range: emote_range[1])
    slices = [text[start : end + 1] for _, start, end in ranges]
    fits = (
        not malformed
        and all(0 <= start <= end < len(text) for _, start, end in ranges)
        and all(ranges[i][2] < ranges[i + 1][1] for i in range(len(ranges) - 1))
        and not any(" " in code for code in slices)
    )
    assert emote_codes(tag, text, ParseStats()) == (slices if fits else [])


class EmoteRecord(NamedTuple):
    line_no: int
    tag: str
    text: str
    """The text the ranges index: the trailing parameter without the ACTION wrapper."""
    codes: list[str]
    stats: ParseStats


@functools.cache
def records_with_emote_tags() -> tuple[EmoteRecord, ...]:
    """Every corpus PRIVMSG/USERNOTICE with a non-empty emotes tag and text, routed."""
    found = []
    for line_no, line in iter_raw_lines():
        message = parse_line(line)
        tag = message.tags.get("emotes")
        if message.command not in {"PRIVMSG", "USERNOTICE"} or not tag or len(message.params) < 2:
            continue
        stats = ParseStats()
        routed = route_message(message, 0, {}, stats)
        assert routed is not None
        text = unwrap_action(message.params[1])[0]
        found.append(EmoteRecord(line_no, tag, text, routed.record.emotes, stats))
    return tuple(found)


def test_corpus_emote_anomalies_are_skipped_and_counted_and_all_other_codes_are_exact() -> None:
    rows = index_rows()
    anomalies = 0
    checked_codes = 0
    for record in records_with_emote_tags():
        anomaly = rows[record.line_no - 1].emote_anomaly
        if anomaly is not None and anomaly != PEER_UNPARSEABLE:
            anomalies += 1
            assert record.codes == [], record.line_no
            assert record.stats.emote_ranges_skipped > 0, record.line_no
            assert record.stats.emote_tags_rejected == 1, record.line_no
            continue
        ranges, malformed = parse_emote_tag(record.tag)
        assert malformed == 0, record.line_no
        assert record.stats.emote_ranges_skipped == 0, record.line_no
        by_position = sorted(ranges, key=lambda emote_range: emote_range[1])
        assert record.codes == [record.text[start : end + 1] for _, start, end in by_position]
        assert all(code and " " not in code for code in record.codes), record.line_no
        checked_codes += len(record.codes)
    # Linkoping ×2, some_1_happy, xSpeedHack, StreamElements /me, jhoelsc ×2, USERNOTICE /me.
    assert anomalies == 8
    assert checked_codes > 3000


def test_peer_unparseable_emote_tag_is_read_correctly() -> None:
    rows = index_rows()
    unparseable = [
        record
        for record in records_with_emote_tags()
        if rows[record.line_no - 1].emote_anomaly == PEER_UNPARSEABLE
    ]
    assert [(record.tag, record.codes) for record in unparseable] == [
        ("80481_/3:7-14", ["pajaW_/3"])
    ]


def test_corpus_action_lines_with_emotes_slice_the_unwrapped_text() -> None:
    actions = [
        record
        for record in records_with_emote_tags()
        if "action" in index_rows()[record.line_no - 1].features and record.codes
    ]
    assert len(actions) > 40
    assert {"PogChamp", "Kappa", ":)"} <= {code for record in actions for code in record.codes}
