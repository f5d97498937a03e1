"""The simulator's pure parts: wire formats, the JOIN limiter, corpus replay, chat generation."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from twitch_ingestion.simulator import wire
from twitch_ingestion.simulator.chatgen import GLOBAL_EMOTES, ChatGenerator
from twitch_ingestion.simulator.join_limit import JoinRateLimiter
from twitch_ingestion.simulator.replay import (
    DEFAULT_REPLAY_COMMANDS,
    default_corpus_path,
    load_corpus,
)
from twitch_ingestion.simulator.stats import StreamStats
from twitch_ingestion.simulator.streams import NumberedSource, ReplaySource
from twitch_ingestion.sources.irc.irc import parse_line

CORPUS = default_corpus_path()
needs_corpus = pytest.mark.skipif(not CORPUS.exists(), reason=f"{CORPUS} is not present")


def corpus_command_counts(path: Path, commands: frozenset[str]) -> Counter[str]:
    """Independent count: the command word of every line whose first param is a channel."""
    counts: Counter[str] = Counter()
    for raw in path.read_text(encoding="utf-8").splitlines():
        words = raw.split(" ")
        if words[0].startswith("@"):
            words = words[1:]
        if words and words[0].startswith(":"):
            words = words[1:]
        if len(words) > 1 and words[0] in commands and words[1].startswith("#"):
            counts[words[0]] += 1
    return counts


def replay_source(
    loops: int | None, *, rewrite_channel: bool = True, fresh_timestamps: bool = True
) -> ReplaySource:
    corpus = load_corpus(CORPUS)
    passes = iter(range(1_000_000))
    return ReplaySource(
        corpus.select(DEFAULT_REPLAY_COMMANDS),
        line_span=corpus.line_span,
        loops=loops,
        channels=None,
        rewrite_channel=rewrite_channel,
        fresh_timestamps=fresh_timestamps,
        room_id_for=wire.room_id_for,
        next_pass=lambda: next(passes),
        stats=StreamStats(stream_id=1, kind="replay", rate=0),
    )


# --------------------------------------------------------------------------- wire


def test_tag_values_are_escaped_per_ircv3() -> None:
    assert wire.escape_tag_value("a b;c\\d\re\nf") == "a\\sb\\:c\\\\d\\re\\nf"


def test_room_ids_are_stable_numeric_and_distinct_per_channel() -> None:
    assert wire.room_id_for("forsen") == wire.room_id_for("Forsen")
    assert wire.room_id_for("forsen").isdigit()
    assert wire.room_id_for("forsen") != wire.room_id_for("pajlada")


def test_join_reply_matches_twitchs_sequence() -> None:
    assert wire.join_reply_lines("bar", "twitchdev", "141981764", anonymous=False) == [
        ":bar!bar@bar.tmi.twitch.tv JOIN #twitchdev",
        ":bar.tmi.twitch.tv 353 bar = #twitchdev :bar",
        ":bar.tmi.twitch.tv 366 bar #twitchdev :End of /NAMES list",
        "@badge-info=;badges=;color=;display-name=bar;emote-sets=0;mod=0;subscriber=0;user-type="
        " :tmi.twitch.tv USERSTATE #twitchdev",
        "@emote-only=0;followers-only=-1;r9k=0;room-id=141981764;slow=0;subs-only=0"
        " :tmi.twitch.tv ROOMSTATE #twitchdev",
    ]
    anonymous = wire.join_reply_lines("justinfan1", "a", "1", anonymous=True)
    assert not any("USERSTATE" in line for line in anonymous)


def test_lines_are_adapted_to_a_clients_capabilities() -> None:
    line = "@room-id=1 :tmi.twitch.tv ROOMSTATE #a"
    assert wire.adapt_line_for_caps(line, "ROOMSTATE", tags=False, commands=True) == (
        ":tmi.twitch.tv ROOMSTATE #a"
    )
    assert wire.adapt_line_for_caps(line, "ROOMSTATE", tags=True, commands=False) is None
    privmsg = "@id=x :a!a@a.tmi.twitch.tv PRIVMSG #a :hi"
    assert wire.adapt_line_for_caps(privmsg, "PRIVMSG", tags=True, commands=False) == privmsg


def test_command_of_skips_tags_and_prefix() -> None:
    assert wire.command_of("@a=b :x!x@x PRIVMSG #c :d") == "PRIVMSG"
    assert wire.command_of("PING :tmi.twitch.tv") == "PING"
    assert wire.command_of(":tmi.twitch.tv RECONNECT") == "RECONNECT"


# --------------------------------------------------------------------------- JOIN limit


def test_join_limiter_allows_the_limit_per_window_then_refuses() -> None:
    limiter = JoinRateLimiter(limit=3, window_s=10.0)
    assert [limiter.try_acquire("bot", t) for t in (0.0, 1.0, 2.0, 3.0)] == [
        True,
        True,
        True,
        False,
    ]
    assert limiter.try_acquire("other", 3.0)  # per account


def test_join_limiter_window_slides() -> None:
    limiter = JoinRateLimiter(limit=2, window_s=10.0)
    assert limiter.try_acquire("bot", 0.0)
    assert limiter.try_acquire("bot", 5.0)
    assert not limiter.try_acquire("bot", 9.9)
    assert limiter.try_acquire("bot", 10.0)  # the attempt at 0.0 has left the window
    assert limiter.in_window("bot", 10.0) == 2


# --------------------------------------------------------------------------- replay


@needs_corpus
def test_corpus_templates_render_every_line_byte_identical() -> None:
    corpus = load_corpus(CORPUS)
    assert corpus.lines
    for line in corpus.lines:
        assert line.render(line.originals) == line.raw + "\r\n"


@needs_corpus
def test_corpus_selection_matches_an_independent_count_per_command() -> None:
    corpus = load_corpus(CORPUS)
    expected = corpus_command_counts(CORPUS, DEFAULT_REPLAY_COMMANDS)
    assert corpus.count_by_command(DEFAULT_REPLAY_COMMANDS) == dict(expected)
    assert expected["PRIVMSG"] > 7000


@needs_corpus
def test_first_replay_pass_without_rewrites_sends_the_corpus_lines_unchanged() -> None:
    source = replay_source(1, rewrite_channel=False, fresh_timestamps=False)
    sent = source.take(100_000, [], 0)
    corpus_lines = load_corpus(CORPUS).select(DEFAULT_REPLAY_COMMANDS)
    unchanged = [
        item[2] == line.raw + "\r\n" for item, line in zip(sent, corpus_lines, strict=True)
    ]
    # Only lines whose id repeats an earlier line's id get a fresh one.
    assert unchanged.count(False) == sum(1 for line in corpus_lines if line.id_occurrence)
    assert source.exhausted()


@needs_corpus
def test_replay_keeps_ids_unique_across_loops_and_clearmsg_follows_its_target() -> None:
    source = replay_source(3)
    ids: list[str] = []
    targets: list[str] = []
    while not source.exhausted():
        for _, _, line, _ in source.take(4096, ["a", "b"], 1_700_000_000_000):
            message = parse_line(line.removesuffix("\r\n"))
            if "id" in message.tags:
                ids.append(message.tags["id"])
            if "target-msg-id" in message.tags:
                targets.append(message.tags["target-msg-id"])
    assert len(ids) == len(set(ids))
    sent_ids = set(ids)
    # Every pass, each CLEARMSG whose PRIVMSG is in the corpus points at that pass's copy.
    followed = [t for t in targets if t in sent_ids]
    assert followed
    assert len(followed) % 3 == 0


@needs_corpus
def test_replay_rewrites_channel_room_id_and_timestamp() -> None:
    source = replay_source(1)
    for channel, _, line, _ in source.take(50, ["x", "y"], 1_700_000_000_123):
        message = parse_line(line.removesuffix("\r\n"))
        assert message.channel == channel
        assert channel in ("x", "y")
        if "room-id" in message.tags:
            assert message.tags["room-id"] == wire.room_id_for(channel)
        if "tmi-sent-ts" in message.tags:
            assert message.tags["tmi-sent-ts"] == "1700000000123"


# --------------------------------------------------------------------------- numbered


def test_numbered_stream_counts_per_channel_and_continues_from_high_water() -> None:
    high_water = {"a": 41}
    source = NumberedSource(
        ["a", "b"], count=2, high_water=high_water, room_id_for=wire.room_id_for, id_salt=7
    )
    batch = source.take(100, [], 1)
    texts = [parse_line(line.removesuffix("\r\n")).trailing for _, _, line, _ in batch]
    assert texts == ["seq a 42", "seq b 1", "seq a 43", "seq b 2"]
    assert [seq for *_, seq in batch] == [42, 1, 43, 2]
    assert high_water == {"a": 43, "b": 2}
    assert source.exhausted()
    ids = [parse_line(line.removesuffix("\r\n")).tags["id"] for _, _, line, _ in batch]
    assert len(set(ids)) == 4
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )


# --------------------------------------------------------------------------- generated


def test_generated_privmsgs_have_full_tags_and_code_point_emote_ranges() -> None:
    generator = ChatGenerator(seed=1234)
    emote_codes = dict(GLOBAL_EMOTES)
    seen: Counter[str] = Counter()
    for _ in range(3000):
        line = generator.privmsg("forsen", "22484632", 1_700_000_000_000)
        message = parse_line(line)
        tags = message.tags
        assert message.command == "PRIVMSG"
        assert message.channel == "forsen"
        for required in (
            "badge-info", "badges", "color", "display-name", "emotes", "first-msg", "flags",
            "id", "mod", "returning-chatter", "room-id", "subscriber", "tmi-sent-ts", "turbo",
            "user-id", "user-type",
        ):  # fmt: skip
            assert required in tags, (required, line)
        assert list(tags) == sorted(tags)  # Twitch sends tags alphabetically
        assert tags["room-id"] == "22484632"
        text = message.trailing or ""
        if text.startswith("\x01ACTION "):
            seen["action"] += 1
            text = text.removeprefix("\x01ACTION ").removesuffix("\x01")
        for emote in filter(None, tags["emotes"].split("/")):
            seen["emotes"] += 1
            emote_id, _, ranges = emote.partition(":")
            for span in ranges.split(","):
                start, end = map(int, span.split("-"))
                # Python indexes code points, as Twitch's ranges do.
                assert text[start : end + 1] == emote_codes[emote_id], (emote, text)
        if not text.isascii():
            seen["non-ascii"] += 1
        if "reply-parent-msg-id" in tags:
            seen["reply"] += 1
            assert text.startswith(f"@{tags['reply-parent-display-name']} ")
            assert "reply-thread-parent-msg-id" in tags
        if "bits" in tags:
            seen["bits"] += 1
            assert f"Cheer{tags['bits']}" in text
    assert {"action", "emotes", "non-ascii", "reply", "bits"} <= seen.keys(), seen


def test_generated_chat_is_deterministic_for_a_seed() -> None:
    first, second = ChatGenerator(seed=9), ChatGenerator(seed=9)
    assert [first.privmsg("a", "1", 0) for _ in range(20)] == [
        second.privmsg("a", "1", 0) for _ in range(20)
    ]
