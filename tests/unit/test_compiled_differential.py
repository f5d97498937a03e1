"""The compiled hot path against the pure-Python reference: byte-identical records.

Every input goes through the real `TwitchSession` (split, decode, parse, control lines),
then each read's chat lines (on the compiled path the reader's `ParsedChunk`, so the
fused step — PRIVMSG lines encoded straight from the read's text — is what runs) go to
two `IrcRecordEncoder`s, one with `HOT_PATH=python` and one with `HOT_PATH=compiled`;
their records (topic, key, value, headers, timestamp,
dead letters included) and the data-quality counters they bump must be equal. Inputs:
the IRC lines quoted in this project's unit tests, generated chat (`chatgen`), the
shared corpus, and hypothesis-generated lines (valid, malformed, hostile).

`DIFFERENTIAL_EXAMPLES` (env) raises the hypothesis example counts for a longer fuzz.
"""

from __future__ import annotations

import ast
import asyncio
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.corpus import RAW_LINES_PATH, SHARED_CORPUS_SKIP_REASON
from tests.support.irc_lines import MALFORMED, TRICKY, malformed_bytes, tagged
from tests.support.record_sinks import RecordingSink
from twitch_ingestion.records import Record, Topics
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.sample import sample_chat_lines
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS
from twitch_ingestion.sources.irc.compiled import (
    HotPathChoice,
    LineReader,
    ParsedChunk,
    compiled_line_reader,
)
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.records import IrcRecordEncoder
from twitch_ingestion.sources.irc.session import ChatLines, TwitchSession

pytestmark = pytest.mark.compiled

RECEIVED_AT = 1_700_000_000_123
EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", "0")) or None
UNIT_TESTS = Path(__file__).parent


def _shape(message: IrcMessage) -> tuple[object, ...]:
    """What an `IrcMessage` holds (its equality is identity)."""
    return (
        message.raw,
        message.parsed_tags,
        message.prefix,
        message.command,
        message.params,
        message.raw_tags,
    )


class _Differential:
    """Feeds reads to a session and an encoder per path; counts what it tried."""

    def __init__(self, *, raw_topic: str | None = None) -> None:
        self.lines_tried = 0
        self.compiled_took = 0
        self.reads_compiled = 0
        """Reads the compiled line reader parsed (the others it left to Python)."""
        self._raw_topic = raw_topic

    def _encoder(self, sink: RecordingSink, hot_path: HotPathChoice) -> IrcRecordEncoder:
        encoder = IrcRecordEncoder(
            sink,
            RecordBuilder(Topics("chat", "events", raw=self._raw_topic, dlq="dlq")),
            hot_path=hot_path,
        )
        assert encoder.hot_path == hot_path
        return encoder

    def check_chunks(self, chunks: Iterable[bytes], room_ids: dict[str, str] | None = None) -> None:
        """Both paths from read bytes: session events and state, then the records."""
        reads = list(chunks)
        outcomes = []
        for hot_path in _PATHS:
            session = TwitchSession("justinfan12345", None)
            reader = compiled_line_reader(hot_path)
            assert (reader is None) == (hot_path == "python")
            session.line_reader = None if reader is None else _CountingReader(reader, self)
            seen: list[object] = []
            chat: list[Sequence[IrcMessage]] = []
            for read in reads:
                for event in session.receive_data(read, 0.0):
                    if isinstance(event, ChatLines):
                        chat.append(event.messages)
                        seen.append([_shape(message) for message in event.messages])
                    else:
                        seen.append(event)
            state = (
                session.lines_received,
                session.bytes_received,
                dict(session.room_ids),
                set(session.joined_channels),
                session.data_to_send(),
                session.state,
            )
            encoded = self._encode(chat, {**session.room_ids, **(room_ids or {})}, hot_path)
            outcomes.append((seen, state, *encoded))
        python, compiled = outcomes
        assert compiled[:2] == python[:2], "session events or state differ"
        assert compiled[2] == python[2], "records differ"
        assert compiled[3:] == python[3:], "counters or dead letters differ"

    def _encode(
        self,
        chunks: list[Sequence[IrcMessage]],
        room_ids: dict[str, str],
        hot_path: HotPathChoice,
    ) -> tuple[list[Record], dict[str, int], int]:
        sink = RecordingSink()
        encoder = self._encoder(sink, hot_path)
        before = DEFAULT_PARSE_STATS.as_dict()

        async def deliver_all() -> None:
            for chunk in chunks:
                await encoder.deliver(chunk, RECEIVED_AT, room_ids)

        asyncio.run(deliver_all())
        after = DEFAULT_PARSE_STATS.as_dict()
        if hot_path == "compiled":
            messages = [message for chunk in chunks for message in chunk]
            self.lines_tried += len(messages)
            compiled = encoder._encode_privmsg
            assert compiled is not None
            self.compiled_took += sum(
                1
                for message in messages
                if message.command == "PRIVMSG" and compiled(message, RECEIVED_AT) is not None
            )
        stats_delta = {name: after[name] - before[name] for name in after}
        return sink.records, stats_delta, encoder.dead_lettered


_PATHS: tuple[HotPathChoice, HotPathChoice] = ("python", "compiled")


class _CountingReader:
    def __init__(self, inner: LineReader, differential: _Differential) -> None:
        self._inner = inner
        self._differential = differential

    def read_lines(self, complete: bytes) -> tuple[ParsedChunk, list[int], int] | None:
        parsed = self._inner.read_lines(complete)
        if parsed is not None:
            self._differential.reads_compiled += 1
        return parsed


def _lines(text: str) -> bytes:
    return "".join(line + "\r\n" for line in text.splitlines()).encode()


def _irc_lines_quoted_in_unit_tests() -> list[str]:
    """The IRC lines the unit tests spell out: whole-line string constants, and every
    `tagged(...)` call of `test_privmsg.py` with constant arguments, rebuilt with it."""

    commands = (" PRIVMSG ", " USERNOTICE ", " CLEARCHAT ", " CLEARMSG ", " ROOMSTATE ")
    found: list[str] = []
    for name in ("test_privmsg.py", "test_events.py", "test_routing.py", "test_irc.py",
                 "test_emotes.py", "test_irc_records.py", "test_session.py"):  # fmt: skip
        path = UNIT_TESTS / name
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if value[:1] in "@:" and any(command in value for command in commands):
                    found.append(value.rstrip("\r\n"))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "tagged"
                and all(isinstance(arg, ast.Constant) for arg in node.args)
                and all(isinstance(kw.value, ast.Constant) and kw.arg for kw in node.keywords)
            ):
                args = [str(arg.value) for arg in node.args if isinstance(arg, ast.Constant)]
                kwargs = {
                    kw.arg: str(kw.value.value)
                    for kw in node.keywords
                    if kw.arg and isinstance(kw.value, ast.Constant)
                }
                found.append(tagged(*args, **kwargs))
    return found


# --- the project's own inputs -------------------------------------------------------------


def test_lines_quoted_in_the_unit_tests_encode_identically() -> None:
    lines = _irc_lines_quoted_in_unit_tests()
    assert len(lines) > 40  # the scan found the fixtures, not nothing
    differential = _Differential(raw_topic="raw")
    for line in lines:
        differential.check_chunks([(line + "\r\n").encode()], {"pajlada": "11148817"})
    assert differential.compiled_took > 10


def test_fixture_lines_tricky_and_malformed_encode_identically() -> None:
    """`tests/fixtures/twitch-irc/`: each line alone, then all in one read."""
    lines = [case["raw"].encode() for case in TRICKY] + [malformed_bytes(c) for c in MALFORMED]
    differential = _Differential(raw_topic="raw")
    for line in lines:
        differential.check_chunks([line + b"\r\n"], {"pajlada": "11148817"})
    differential.check_chunks([b"".join(line + b"\r\n" for line in lines)])
    assert differential.lines_tried >= len(TRICKY)
    assert differential.compiled_took > 5
    assert differential.reads_compiled > len(TRICKY) // 2


def test_bundled_sample_chat_encodes_identically() -> None:
    """The simulator's bundled chat (every event kind, `/me`, replies, Shared Chat)."""
    data = "".join(line + "\r\n" for line in sample_chat_lines()).encode()
    differential = _Differential(raw_topic="raw")
    differential.check_chunks(data[at : at + 65_536] for at in range(0, len(data), 65_536))
    assert differential.lines_tried > 3000
    assert differential.compiled_took > 2500


def test_generated_chat_encodes_identically_and_takes_the_compiled_path() -> None:
    generator = ChatGenerator(seed=12)
    differential = _Differential()
    chunk = "\r\n".join(
        generator.privmsg(f"channel{index % 7}", str(1000 + index % 7), 1_700_000_000_000 + index)
        for index in range(5000)
    )
    differential.check_chunks([(chunk + "\r\n").encode()])
    assert differential.lines_tried == 5000
    assert differential.compiled_took == 5000
    assert differential.reads_compiled == 1


def test_shared_corpus_encodes_identically() -> None:
    if not RAW_LINES_PATH.exists():
        pytest.skip(SHARED_CORPUS_SKIP_REASON)
    data = RAW_LINES_PATH.read_bytes()
    differential = _Differential(raw_topic="raw")
    # Cut into reads at odd offsets, as a socket would, so lines straddle reads.
    step = 65_521
    differential.check_chunks(data[at : at + step] for at in range(0, len(data), step))
    assert differential.lines_tried > 7000
    assert differential.compiled_took > 6500  # the compiled path carries the corpus
    assert differential.reads_compiled > 0


# --- hypothesis: valid, malformed and hostile lines ----------------------------------------

_TAG_KEYS = (
    "badges", "bits", "display-name", "emotes", "first-msg", "id", "reply-parent-msg-id",
    "room-id", "source-id", "source-room-id", "tmi-sent-ts", "user-id", "color", "mod",
    "badge-info", "", "client-nonce",
)  # fmt: skip
_NASTY = st.sampled_from(
    ["\\", "\\s", "\\:", "\\\\", "\\n", "\\r", "\\x", ";", "=", " ", "\x00", "\x01", '"',
     "é", "😂", "\u2028", "\x7f", ",", "/", ":", "-", "#", "!", "@", "İ", "ß"]
)  # fmt: skip
_VALUE = st.one_of(
    st.text(max_size=12),
    st.lists(st.one_of(_NASTY, st.text(max_size=3)), max_size=6).map("".join),
    st.integers(min_value=-5, max_value=10**20).map(str),
)
_EMOTE_NUMBER = st.one_of(
    st.integers(min_value=0, max_value=40).map(str),
    st.sampled_from(["", "+1", " 2", "1_0", "٣", "99999999999999999999", "-1", "007"]),
)
_EMOTE_TAG = (
    st.lists(
        st.tuples(
            st.sampled_from(["25", "emotesv2_abc", "80481_/3", "", "1/2/3"]),
            st.lists(st.tuples(_EMOTE_NUMBER, _EMOTE_NUMBER).map("-".join), max_size=4).map(
                ",".join
            ),
        ).map(":".join),
        max_size=4,
    ).map("/".join)
    | _VALUE
)
_BADGES = st.lists(
    st.tuples(st.sampled_from(["subscriber", "moderator", "", "vip", "bits"]), _VALUE).map(
        "/".join
    ),
    max_size=5,
).map(",".join)


@st.composite
def _privmsg_lines(draw: st.DrawFn) -> str:
    tags: list[str] = []
    if draw(st.booleans()):
        tags.append(f"tmi-sent-ts={draw(st.integers(min_value=0, max_value=10**15))}")
    if draw(st.booleans()):
        tags.append(f"room-id={draw(st.sampled_from(['11148817', '', '1']))}")
    tags.append(f"emotes={draw(_EMOTE_TAG)}")
    tags.append(f"badges={draw(_BADGES)}")
    for key, value in draw(st.lists(st.tuples(st.sampled_from(_TAG_KEYS), _VALUE), max_size=8)):
        tags.append(key if value == "" and draw(st.booleans()) else f"{key}={value}")
    draw(st.randoms()).shuffle(tags)
    tag_section = ";".join(tags).replace("\r", "").replace("\n", "")
    nick = draw(st.sampled_from(["alice", "Bob", "", "Zoë", "x!y", "KİRA"]))
    channel = draw(st.sampled_from(["#pajlada", "#Forsen", "#", "pajlada", "#Ünï", "#a b"]))
    text = draw(
        st.one_of(
            st.text(max_size=60),
            st.lists(st.one_of(_NASTY, st.sampled_from(["Kappa", "LUL", " "])), max_size=20).map(
                "".join
            ),
        )
    )
    if draw(st.booleans()):
        text = "\x01ACTION" + draw(st.sampled_from([" ", "", "S", "\x01"])) + text
        if draw(st.booleans()):
            text += "\x01"
    line = f"@{tag_section} :{nick}!{nick}@{nick}.tmi.twitch.tv PRIVMSG {channel} :{text}"
    return line.replace("\r", "").replace("\n", "")


@settings(
    max_examples=EXAMPLES or 600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(lines=st.lists(_privmsg_lines(), min_size=1, max_size=4))
def test_generated_privmsg_lines_encode_identically(lines: list[str]) -> None:
    _Differential(raw_topic="raw").check_chunks(
        [("\r\n".join(lines) + "\r\n").encode()], {"pajlada": "42"}
    )


_HOSTILE_PIECES = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b" ", b"@", b":", b";",
     b"=", b"\\", b"PRIVMSG", b" PRIVMSG #c :", b"@emotes=0-99999999999999999999;tmi-sent-ts=1",
     b"@room-id=1;tmi-sent-ts=5;emotes=1:0-0,0-0 :a!a@a PRIVMSG #c :", b"\xf0\x9f\x98\x82",
     b"USERNOTICE #c", b"CLEARCHAT #c :", b"ROOMSTATE #c", b":tmi.twitch.tv 001 j :hi",
     b":justinfan12345!j@j JOIN #c", b"PING :x", b"@room-id=7 :tmi.twitch.tv ROOMSTATE #c",
     b"@msg-id=msg_banned :tmi.twitch.tv NOTICE #c :banned", b"RECONNECT", b"@a=b :p CAP * :x"]
)  # fmt: skip


@settings(
    max_examples=EXAMPLES or 400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    pieces=st.lists(st.one_of(_HOSTILE_PIECES, st.binary(max_size=20)), max_size=40),
    cut=st.integers(min_value=1, max_value=64),
)
def test_hostile_bytes_encode_identically(pieces: list[bytes], cut: int) -> None:
    data = b"".join(pieces) + b"\r\n"
    _Differential(raw_topic="raw").check_chunks(
        data[at : at + cut] for at in range(0, len(data), cut)
    )


def test_thousands_of_tags_and_absurd_emote_ranges_encode_identically() -> None:
    many_tags = ";".join(f"k{index}=v{index}" for index in range(5000))
    ranges = ",".join(f"{index}-{index}" for index in range(3000))
    text = "a" * 3000
    lines = [
        f"@{many_tags};room-id=1;tmi-sent-ts=7 :a!a@a PRIVMSG #c :hello",
        f"@room-id=1;tmi-sent-ts=7;emotes=1:{ranges} :a!a@a PRIVMSG #c :{text}",
        f"@room-id=1;tmi-sent-ts=7;emotes=1:{ranges} :a!a@a PRIVMSG #c :{'é' * 3000}",
        "@room-id=1;tmi-sent-ts=7;emotes=1:0-18446744073709551615 :a!a@a PRIVMSG #c :x",
        "@room-id=1;tmi-sent-ts=7;emotes=1:18446744073709551616-1 :a!a@a PRIVMSG #c :x",
        f"@room-id=1;tmi-sent-ts=7;badges={','.join(f'b{i}/1' for i in range(2000))}"
        " :a!a@a PRIVMSG #c :x",
        "@room-id=1;tmi-sent-ts=7 :a!a@a PRIVMSG #c :" + "x" * 60_000,
        "@room-id=1;tmi-sent-ts=7;display-name=" + "\\" * 30_001 + " :a!a@a PRIVMSG #c :x",
    ]
    differential = _Differential(raw_topic="raw")
    for line in lines:
        differential.check_chunks([(line + "\r\n").encode()])
    assert differential.lines_tried == len(lines)
    assert differential.compiled_took >= 4  # they were not all left to Python


def test_hot_path_python_never_uses_the_extension() -> None:
    encoder = IrcRecordEncoder(
        RecordingSink(), RecordBuilder(Topics("chat", "events")), hot_path="python"
    )
    assert encoder.hot_path == "python"
    assert encoder._encode_privmsg is None


def test_json_escapes_at_every_offset_of_the_eight_byte_steps() -> None:
    """The compiled JSON writer skips clean text eight bytes a step: every character
    msgspec escapes, at every offset of two such steps, must still come out the same."""
    escaped = [chr(code) for code in range(0x20)] + ['"', "\\"]
    lines = [
        "@room-id=1;tmi-sent-ts=5;display-name=A;id=x :a!a@a PRIVMSG #c :"
        + "k" * offset
        + char
        + "é" * (offset % 3)
        + "z" * (17 - offset)
        for char in escaped
        if char not in "\r\n\x00"
        for offset in range(17)
    ]
    differential = _Differential()
    differential.check_chunks([("\r\n".join(lines) + "\r\n").encode()])
    assert differential.compiled_took == len(lines)
