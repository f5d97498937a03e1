"""The compiled reader's `ParsedChunk`: a read-only sequence of `IrcMessage`s whose chat
lines exist only as offsets into the read until someone indexes or iterates it.

These check the fused step's contract directly: reading and encoding a read's PRIVMSG
lines builds no `IrcMessage` at all, and whatever the chunk does build is what
`parse_line` builds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.support.record_sinks import RecordingSink
from twitch_ingestion.records import Topics
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.sources.irc.compiled import (
    EXTENSION_MODULE,
    ParsedChunk,
    compiled_chat_encoder,
)
from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line
from twitch_ingestion.sources.irc.records import IrcRecordEncoder
from twitch_ingestion.sources.irc.session import ChatLines, TwitchSession

pytestmark = pytest.mark.compiled

CHAT = [
    "@badges=;color=;display-name=Alice;emotes=;id=m-1;room-id=11;tmi-sent-ts=1700000000000;"
    "user-id=21 :alice!alice@alice.tmi.twitch.tv PRIVMSG #chan :hello there",
    "@display-name=Bob;id=m-2;room-id=11;tmi-sent-ts=1700000000001;user-id=22 "
    ":bob!bob@bob.tmi.twitch.tv PRIVMSG #chan :\x01ACTION waves\x01",
]
ROOMSTATE = "@room-id=11;slow=0 :tmi.twitch.tv ROOMSTATE #chan"
PING = "PING :tmi.twitch.tv"


class _CountingMessageType:
    """Stands in for `IrcMessage` as the reader's factory and counts what it builds."""

    def __init__(self) -> None:
        self.built = 0

    def __call__(self, *args: object) -> IrcMessage:
        self.built += 1
        return IrcMessage(*args)  # type: ignore[arg-type]


def _reader(message_type: object = IrcMessage) -> object:
    module = __import__(EXTENSION_MODULE)
    Sequence.register(module.ChatChunk)
    return module.LineReader(message_type, parse_line)


def _read(lines: list[str], message_type: object = IrcMessage) -> tuple[ParsedChunk, list[int]]:
    reader = _reader(message_type)
    parsed = reader.read_lines("".join(f"{line}\r\n" for line in lines).encode())  # type: ignore[attr-defined]
    assert parsed is not None
    chunk, controls, line_count = parsed
    assert line_count == len(lines)
    return chunk, controls


def _shape(message: IrcMessage) -> tuple[object, ...]:
    return (
        message.raw,
        message.parsed_tags,
        message.prefix,
        message.command,
        message.params,
        message.raw_tags,
    )


def test_reading_and_encoding_chat_lines_builds_no_message_object() -> None:
    counting = _CountingMessageType()
    chunk, controls = _read([*CHAT, ROOMSTATE], counting)
    assert controls == [2]
    assert counting.built == 0  # the ROOMSTATE (no trailing text) is parse_line's
    encoder = compiled_chat_encoder("compiled", schema_version=1, ingested_via="irc")
    assert encoder is not None
    records, pending = encoder.encode_chunk(chunk, 5, "chat", "raw")
    assert counting.built == 0, "encoding the chat lines built IrcMessages"
    assert pending == [(4, 2)]  # the ROOMSTATE's records come after both PRIVMSGs'
    assert [record[0] for record in records] == ["raw", "chat", "raw", "chat"]
    assert records[0] == ("raw", b"chan", CHAT[0].encode(), None, 5)
    assert records[3][2].startswith(b'{"channel_id":"chan","user_id":"22","username":"bob"')
    assert b'"message":"waves"' in records[3][2]
    assert b'"is_action":true' in records[3][2]
    # Indexing a chat line builds it, through the reader's factory.
    assert chunk[1].get_tag("id") == "m-2"
    assert counting.built == 1


def test_a_chunk_is_a_read_only_sequence_of_what_parse_line_builds() -> None:
    lines = [*CHAT, ROOMSTATE]
    chunk, _ = _read(lines)
    assert isinstance(chunk, Sequence)
    assert len(chunk) == 3
    assert bool(chunk)
    expected = [_shape(parse_line(line)) for line in lines]
    assert [_shape(message) for message in chunk] == expected
    assert [_shape(chunk[index]) for index in range(3)] == expected
    assert _shape(chunk[-1]) == expected[-1]
    assert _shape(chunk[-3]) == expected[0]
    assert [_shape(message) for message in chunk[1:]] == expected[1:]
    for index in (3, -4):
        with pytest.raises(IndexError):
            chunk[index]
    with pytest.raises(TypeError):
        chunk["0"]  # type: ignore[call-overload]
    # Control lines are built once, at read time: the same object every time.
    assert chunk[2] is chunk[2]
    # Chat lines are built on demand, as parse_line would: a fresh object each time.
    assert chunk[0] is not chunk[0]
    assert chunk[0].get_tag("id") == "m-1"


def test_without_drops_the_lines_the_session_consumed() -> None:
    chunk, controls = _read([PING, CHAT[0], ROOMSTATE, CHAT[1]])
    assert controls == [0, 2]
    kept = chunk.without({0})
    assert [message.command for message in kept] == ["PRIVMSG", "ROOMSTATE", "PRIVMSG"]
    assert len(chunk) == 4  # the original is untouched
    assert chunk.without(set()) is not chunk
    assert len(chunk.without({0, 1, 2, 3})) == 0


def test_the_session_hands_on_a_chunk_without_its_connection_level_lines() -> None:
    session = TwitchSession("justinfan1", None)
    session.line_reader = _reader()  # type: ignore[assignment]
    data = "".join(f"{line}\r\n" for line in [PING, CHAT[0], ROOMSTATE, CHAT[1]]).encode()
    events = session.receive_data(data, 0.0)
    chat = [event for event in events if isinstance(event, ChatLines)]
    assert len(chat) == 1
    assert type(chat[0].messages).__name__ == "ChatChunk"
    assert [message.command for message in chat[0].messages] == ["PRIVMSG", "ROOMSTATE", "PRIVMSG"]
    assert session.data_to_send() == b"PONG :tmi.twitch.tv\r\n"
    assert session.room_ids == {"chan": "11"}


@pytest.mark.parametrize("raw_topic", [None, "raw"])
def test_a_chunk_and_the_same_lines_as_a_list_or_tuple_give_the_same_records(
    raw_topic: str | None,
) -> None:
    lines = [CHAT[0], ROOMSTATE, CHAT[1], "@id=x;room-id=1;tmi-sent-ts=5 :u!u@u PRIVMSG chan :x"]
    chunk, _ = _read(lines)
    outputs = []
    for messages in (chunk, list(chunk), tuple(chunk)):
        sink = RecordingSink()
        encoder = IrcRecordEncoder(
            sink,
            RecordBuilder(Topics("chat", "events", raw=raw_topic, dlq="dlq")),
            hot_path="compiled",
        )
        asyncio.run(encoder.deliver(messages, 7, {}))
        outputs.append(
            [(topic, key, value, headers) for topic, key, value, headers, _ in sink.records]
        )
    assert outputs[0] == outputs[1] == outputs[2]
    # No `#` before the channel: a contract violation, dead-lettered by the Python path.
    assert [record[0] for record in outputs[0]][-1] == "dlq"
