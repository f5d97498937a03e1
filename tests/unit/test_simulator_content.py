"""The simulator's pure parts: wire formats, the JOIN limiter, corpus replay, chat generation."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.corpus import CORPORA_WITH_FIXTURE_FILE, GENERATED_CHAT_FILE
from twitch_ingestion.models import ChatEventRecord, ChatMessage
from twitch_ingestion.simulator import wire
from twitch_ingestion.simulator.chatgen import GLOBAL_EMOTES, ChatGenerator
from twitch_ingestion.simulator.join_limit import JoinRateLimiter
from twitch_ingestion.simulator.replay import (
    BUNDLED_CORPUS_NAME,
    DEFAULT_REPLAY_COMMANDS,
    CorpusFileError,
    load_corpus,
)
from twitch_ingestion.simulator.sample import sample_chat_lines
from twitch_ingestion.simulator.stats import StreamStats
from twitch_ingestion.simulator.streams import NumberedSource, RatePacer, ReplaySource
from twitch_ingestion.sources.irc.commands import ParseStats
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.routing import route_message

# `event_type` of every record struct on the events topic.
_EVENT_TYPE_TAGS = frozenset(
    str(struct.__struct_config__.tag) for struct in typing.get_args(ChatEventRecord)
)

every_corpus = pytest.mark.parametrize("corpus_path", CORPORA_WITH_FIXTURE_FILE)


def raw_corpus_lines(path: Path | None) -> list[str]:
    """The file's lines, or the bundled sample chat's, read without the replay code."""
    if path is None:
        return sample_chat_lines()
    return path.read_text(encoding="utf-8").splitlines()


def corpus_command_counts(path: Path | None, commands: frozenset[str]) -> Counter[str]:
    """Independent count: the command word of every line whose first param is a channel."""
    counts: Counter[str] = Counter()
    for raw in raw_corpus_lines(path):
        words = raw.split(" ")
        if words[0].startswith("@"):
            words = words[1:]
        if words and words[0].startswith(":"):
            words = words[1:]
        if len(words) > 1 and words[0] in commands and words[1].startswith("#"):
            counts[words[0]] += 1
    return counts


def replay_source(
    path: Path | None,
    loops: int | None,
    *,
    rewrite_channel: bool = True,
    fresh_timestamps: bool = True,
) -> ReplaySource:
    corpus = load_corpus(path)
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


@every_corpus
def test_corpus_templates_render_every_line_byte_identical(corpus_path: Path | None) -> None:
    corpus = load_corpus(corpus_path)
    assert corpus.lines
    for line in corpus.lines:
        assert line.render(line.originals) == line.raw + "\r\n"


@every_corpus
def test_corpus_selection_matches_an_independent_count_per_command(
    corpus_path: Path | None,
) -> None:
    corpus = load_corpus(corpus_path)
    expected = corpus_command_counts(corpus_path, DEFAULT_REPLAY_COMMANDS)
    assert corpus.count_by_command(DEFAULT_REPLAY_COMMANDS) == dict(expected)
    assert expected["PRIVMSG"] > {None: 3000, GENERATED_CHAT_FILE: 400}.get(corpus_path, 7000)
    assert set(expected) == DEFAULT_REPLAY_COMMANDS


@every_corpus
def test_first_replay_pass_without_rewrites_sends_the_corpus_lines_unchanged(
    corpus_path: Path | None,
) -> None:
    source = replay_source(corpus_path, 1, rewrite_channel=False, fresh_timestamps=False)
    sent = source.take(100_000, [], 0)
    corpus_lines = load_corpus(corpus_path).select(DEFAULT_REPLAY_COMMANDS)
    unchanged = [
        item[2] == line.raw + "\r\n" for item, line in zip(sent, corpus_lines, strict=True)
    ]
    # Only lines whose id repeats an earlier line's id get a fresh one.
    assert unchanged.count(False) == sum(1 for line in corpus_lines if line.id_occurrence)
    assert source.exhausted()


@every_corpus
def test_replay_keeps_ids_unique_across_loops_and_clearmsg_follows_its_target(
    corpus_path: Path | None,
) -> None:
    source = replay_source(corpus_path, 3)
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


@every_corpus
def test_replay_rewrites_channel_room_id_and_timestamp(corpus_path: Path | None) -> None:
    source = replay_source(corpus_path, 1)
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


# --------------------------------------------------------------------------- bundled chat


def test_default_replay_needs_no_file_outside_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As in a `pip install` or the Docker image: no shared corpus anywhere.
    monkeypatch.setattr(
        "twitch_ingestion.simulator.replay.default_corpus_path", lambda: tmp_path / "absent.txt"
    )
    corpus = load_corpus(None)
    assert corpus.path is None
    assert corpus.name == BUNDLED_CORPUS_NAME
    assert corpus.count_by_command(DEFAULT_REPLAY_COMMANDS).keys() == DEFAULT_REPLAY_COMMANDS


def test_bundled_chat_covers_every_feature_and_event_kind() -> None:
    seen: Counter[str] = Counter()
    event_types: Counter[str] = Counter()
    stats = ParseStats()
    for line in sample_chat_lines():
        message = parse_line(line)
        routed = route_message(message, 1, {}, stats)
        assert routed is not None, line
        record = routed.record
        if isinstance(record, ChatMessage):
            seen["action"] += record.is_action
            seen["emotes"] += bool(record.emotes)
            seen["reply"] += record.reply_parent_message_id is not None
            seen["bits"] += record.bits > 0
            seen["non-ascii"] += not record.message.isascii()
            seen["astral"] += any(ord(char) > 0xFFFF for char in record.message)
            seen["shared-chat"] += "source-room-id" in message.tags
        else:
            event_types[str(type(record).__struct_config__.tag)] += 1
            if message.tags.get("msg-id") == "sharedchatnotice":
                seen["shared-chat-notice"] += 1
    assert set(seen) == {
        "action", "emotes", "reply", "bits", "non-ascii", "astral", "shared-chat",
        "shared-chat-notice",
    }, seen  # fmt: skip
    assert all(seen.values()), seen
    assert set(event_types) == _EVENT_TYPE_TAGS, event_types
    # Every emote range of the bundled chat fits its text: nothing skipped.
    assert stats.emote_ranges_skipped == 0


def test_generated_chat_fixture_is_the_generator_output() -> None:
    text = GENERATED_CHAT_FILE.read_text(encoding="utf-8")
    assert text.splitlines() == sample_chat_lines(count=500), (
        "regenerate tests/fixtures/twitch-irc/generated-chat.txt (see its README)"
    )


def test_bundled_chat_is_the_same_in_every_process() -> None:
    # Tests count on its content: it must not depend on str hashing (PYTHONHASHSEED).
    script = (
        "import hashlib; from twitch_ingestion.simulator.sample import sample_chat_lines; "
        "print(hashlib.sha256('\\n'.join(sample_chat_lines()).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert digests == {hashlib.sha256("\n".join(sample_chat_lines()).encode()).hexdigest()}
    assert sample_chat_lines(count=50) == sample_chat_lines()[:50]


@pytest.mark.parametrize(
    ("make_path", "problem"),
    [
        (lambda tmp: tmp / "missing.txt", "does not exist"),
        (lambda tmp: tmp, "is not a file"),
        (lambda tmp: _write(tmp / "latin1.txt", b"caf\xe9\n"), "is not UTF-8 text"),
    ],
)
def test_a_bad_replay_file_is_one_clear_error(
    tmp_path: Path, make_path: Callable[[Path], Path], problem: str
) -> None:
    path = make_path(tmp_path)
    with pytest.raises(CorpusFileError) as caught:
        load_corpus(path)
    message = str(caught.value)
    assert problem in message
    assert str(path) in message
    assert "\n" not in message


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- pacing


def test_rate_pacer_sends_rate_lines_per_second_of_made_up_time() -> None:
    pacer = RatePacer(200.0, batch_lines=2048, now=0.0, min_wait_s=0.001)
    assert pacer.due(0.0) == 0
    assert pacer.wait_s(0.0) == pytest.approx(0.005)  # the first line is due at 1/200 s
    assert pacer.due(0.25) == 50
    pacer.sent(50)
    assert pacer.due(0.25) == 0
    assert pacer.wait_s(0.25) == pytest.approx(0.005)
    assert pacer.due(1.0) == 150  # 200 in the first second, all told
    pacer.sent(150)
    # A late wake-up catches up, but never more than a batch at once.
    assert pacer.due(100.0) == 2048


def test_rate_pacer_restart_does_not_burst_what_nobody_could_receive() -> None:
    pacer = RatePacer(100.0, batch_lines=2048, now=0.0, min_wait_s=0.005)
    pacer.restart(50.0)  # e.g. 50 s with no channel joined
    assert pacer.due(50.0) == 0
    assert pacer.due(50.25) == 25


def test_rate_pacer_without_a_rate_always_sends_a_full_batch() -> None:
    pacer = RatePacer(0.0, batch_lines=512, now=0.0, min_wait_s=0.005)
    assert pacer.due(0.0) == 512
    pacer.sent(512)
    assert pacer.due(0.0) == 512
    assert pacer.wait_s(0.0) == 0.0
