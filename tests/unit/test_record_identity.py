"""Record identity: the same Twitch event gets the same identity on every reader."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import pytest

from twitch_ingestion.models import encode_record
from twitch_ingestion.records.identity import (
    IDENTITY_RULES,
    eventsub_identity,
    irc_identity,
    last_identities,
    record_identity,
)
from twitch_ingestion.sources.eventsub.messages import Notification, decode_frame
from twitch_ingestion.sources.eventsub.records import EventSubRecord, notification_record
from twitch_ingestion.sources.irc.compiled import compiled_line_reader, extension_available
from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line
from twitch_ingestion.sources.irc.routing import route_message
from twitch_ingestion.sources.irc.session import ChatLines, TwitchSession

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]

PRIVMSG = "@id=m-1;room-id=1;tmi-sent-ts=1700000000001 :a!a@a PRIVMSG #chan :hi"
USERNOTICE = (
    "@id=n-1;msg-id=raid;room-id=1;tmi-sent-ts=1700000000002 :tmi.twitch.tv USERNOTICE #chan"
)
CLEARCHAT = (
    "@room-id=1;target-user-id=42;tmi-sent-ts=1700000000003 :tmi.twitch.tv CLEARCHAT #chan :bad"
)
CLEARMSG = (
    "@login=bad;room-id=;target-msg-id=m-1;tmi-sent-ts=1700000000004 "
    ":tmi.twitch.tv CLEARMSG #chan :hi"
)
ROOMSTATE = (
    "@emote-only=0;followers-only=-1;r9k=0;room-id=1;slow=0;subs-only=0 "
    ":tmi.twitch.tv ROOMSTATE #chan"
)


def identity(line: str) -> str | None:
    return irc_identity(parse_line(line))


def test_a_line_with_an_id_tag_is_that_id() -> None:
    assert identity(PRIVMSG) == "m-1"
    assert identity(USERNOTICE) == "n-1"


def test_lines_without_an_id_are_named_by_command_channel_time_and_target() -> None:
    assert identity(CLEARCHAT) == "CLEARCHAT/chan/1700000000003/42"
    assert identity("@tmi-sent-ts=7 :tmi.twitch.tv CLEARCHAT #chan") == "CLEARCHAT/chan/7/"
    assert identity(CLEARMSG) == "CLEARMSG/chan/1700000000004/m-1"
    assert identity(ROOMSTATE) == (
        "ROOMSTATE/chan//emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0"
    )
    assert identity("@slow=10 :tmi.twitch.tv ROOMSTATE #chan") == "ROOMSTATE/chan//slow=10"
    assert identity("@msg-id=x :tmi.twitch.tv NOTICE #chan :text") == "NOTICE/chan//"


def test_lines_of_no_channel_have_none() -> None:
    assert identity("PING :tmi.twitch.tv") is None
    assert identity(":tmi.twitch.tv 001 justinfan1 :Welcome, GLHF!") is None


def test_two_connections_reading_one_event_compute_one_identity() -> None:
    """Only what Twitch set counts: not the order of the tags, not a tag one edge server
    adds and another does not, not the time either connection read the line."""
    reordered = (
        "@tmi-sent-ts=1700000000003;target-user-id=42;room-id=1;new-tag=x "
        ":tmi.twitch.tv CLEARCHAT #chan :bad"
    )
    assert identity(reordered) == identity(CLEARCHAT)
    state = "@subs-only=0;slow=0;room-id=1;r9k=0;followers-only=-1;emote-only=0;x=1"
    assert identity(f"{state} :tmi.twitch.tv ROOMSTATE #chan") == identity(ROOMSTATE)
    # …while two different events of the same kind differ.
    assert identity(CLEARCHAT.replace("42", "43")) != identity(CLEARCHAT)


class _CountingSequence(Sequence[IrcMessage]):
    """A chunk that counts the lines looked at (a compiled chunk builds each one)."""

    def __init__(self, lines: list[IrcMessage]) -> None:
        self._lines = lines
        self.looked_at = 0

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> IrcMessage: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[IrcMessage]: ...
    def __getitem__(self, index: int | slice) -> IrcMessage | Sequence[IrcMessage]:
        if isinstance(index, slice):
            raise NotImplementedError
        self.looked_at += 1
        return self._lines[index]

    def __iter__(self) -> Iterator[IrcMessage]:
        raise AssertionError("a mark must not walk the whole chunk forward")


def _chat(channel: str, number: int) -> str:
    return f"@id={channel}-{number};tmi-sent-ts={number} :a!a@a PRIVMSG #{channel} :{number}"


def test_last_identities_walk_back_and_stop_once_every_channel_is_found() -> None:
    lines = [_chat(("alpha", "bravo")[n % 2], n) for n in range(1000)]
    lines += [ROOMSTATE.replace("#chan", "#alpha"), "PING :tmi.twitch.tv"]
    chunk = _CountingSequence([parse_line(line) for line in lines])
    marks = last_identities(chunk, {"alpha", "bravo"})
    # ROOMSTATE is not markable (a JOIN's answer is one connection's alone).
    assert marks == {"alpha": "alpha-998", "bravo": "bravo-999"}
    assert chunk.looked_at == 4


def test_last_identities_without_channels_names_every_channel_of_the_chunk() -> None:
    lines = [_chat("alpha", 1), CLEARCHAT, _chat("alpha", 2), CLEARMSG.replace("#chan", "#bravo")]
    marks = last_identities([parse_line(line) for line in lines])
    assert marks == {
        "alpha": "alpha-2",
        "chan": "CLEARCHAT/chan/1700000000003/42",
        "bravo": "CLEARMSG/bravo/1700000000004/m-1",
    }


def _chat_lines(data: bytes, hot_path: str) -> list[Sequence[IrcMessage]]:
    session = TwitchSession("justinfan1", None)
    session.line_reader = compiled_line_reader("compiled" if hot_path == "compiled" else "python")
    return [event.messages for event in session.receive_data(data, 0.0) if type(event) is ChatLines]


@pytest.mark.skipif(not extension_available(), reason="compiled extension not built")
def test_both_hot_paths_give_every_line_the_same_identity() -> None:
    """The compiled reader's chunk (PRIVMSG lines built only when indexed) and the Python
    reader's list name the same lines alike, and a mark reads the same from both."""
    text = (FIXTURES / "twitch-irc" / "generated-chat.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line][:2000]
    lines += [CLEARCHAT, ROOMSTATE, USERNOTICE, CLEARMSG]
    data = "".join(f"{line}\r\n" for line in lines).encode()
    python, compiled = _chat_lines(data, "python"), _chat_lines(data, "compiled")
    assert [len(chunk) for chunk in compiled] == [len(chunk) for chunk in python]
    for python_chunk, compiled_chunk in zip(python, compiled, strict=True):
        assert [irc_identity(line) for line in compiled_chunk] == [
            irc_identity(line) for line in python_chunk
        ]
        assert last_identities(compiled_chunk) == last_identities(python_chunk)


def _notification_record(frame: bytes) -> EventSubRecord:
    message = decode_frame(frame)
    assert isinstance(message, Notification)
    result = notification_record(message, 1)
    assert isinstance(result, EventSubRecord)
    return result


def test_an_eventsub_chat_message_has_the_identity_of_the_same_privmsg() -> None:
    frame = (FIXTURES / "eventsub" / "channel.chat.message.json").read_bytes()
    same_line = (
        "@id=cc106a89-1814-919d-454c-f4f2f970aae7;room-id=1971641;tmi-sent-ts=1700129470000 "
        ":viewer32!viewer32@viewer32.tmi.twitch.tv PRIVMSG #streamer :Hi chat Kappa"
    )
    assert eventsub_identity(_notification_record(frame).record) == identity(same_line)


def test_an_eventsub_deletion_is_named_by_the_message_it_deletes() -> None:
    frame = (
        b'{"metadata":{"message_id":"n-9","message_type":"notification",'
        b'"message_timestamp":"2023-11-16T10:11:12.464757833Z",'
        b'"subscription_type":"channel.chat.message_delete","subscription_version":"1"},'
        b'"payload":{"subscription":{"id":"s","status":"enabled",'
        b'"type":"channel.chat.message_delete","version":"1","condition":{},'
        b'"transport":{"method":"websocket"},"created_at":"2023-11-06T18:11:47Z","cost":0},'
        b'"event":{"broadcaster_user_id":"1","broadcaster_user_login":"chan",'
        b'"broadcaster_user_name":"Chan","target_user_id":"2","target_user_login":"bad",'
        b'"target_user_name":"Bad","message_id":"m-1"}}}'
    )
    record = _notification_record(frame).record
    assert record.message_id == "n-9"  # the notification's: unchanged in the value
    assert eventsub_identity(record) == "channel.chat.message_delete/chan/m-1"


def test_the_rules_are_in_the_published_contract() -> None:
    contract = (REPO / "docs" / "contract.md").read_text(encoding="utf-8")
    assert f"## Record identity\n\n{IDENTITY_RULES}" in contract


@pytest.mark.parametrize("raw", [PRIVMSG, USERNOTICE, CLEARCHAT, CLEARMSG])
def test_a_record_read_back_from_kafka_has_the_identity_of_its_line(raw: str) -> None:
    # What a standby compares: its held lines with the tail of the topics (issue 18).
    line = parse_line(raw)
    routed = route_message(line, 1700000000999, {})
    assert routed is not None
    value = encode_record(routed.record)
    assert record_identity(routed.key.encode(), value) == irc_identity(line)


def test_records_without_a_markable_identity_have_none() -> None:
    routed = route_message(parse_line(ROOMSTATE), 1, {})
    assert routed is not None
    assert record_identity(b"chan", encode_record(routed.record)) is None
    assert record_identity(b"chan", b"not json") is None
    assert record_identity(b"chan", None) is None
