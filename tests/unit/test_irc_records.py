"""`IrcRecordEncoder`: one read chunk of IRC lines in, the chunk's Kafka records out."""

from __future__ import annotations

import msgspec
import pytest

from tests.support.record_sinks import RecordingSink
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.records import Topics
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.records import IrcRecordEncoder

RECEIVED_AT = 1_700_000_000_123
ROOM_IDS = {"pajlada": "11148817"}
PRIVMSG = "@id=x;tmi-sent-ts=1 :a!a@a PRIVMSG #pajlada :hi"
USERNOTICE = "@msg-id=raid;id=y :tmi.twitch.tv USERNOTICE #pajlada"
BROKEN = ":a!a@a PRIVMSG :text"  # no channel: breaks the contract
PING = "PING :tmi.twitch.tv"


def encoder(
    sink: RecordingSink, *, raw: str | None = None, dlq: str | None = "dlq"
) -> IrcRecordEncoder:
    return IrcRecordEncoder(sink, RecordBuilder(Topics("chat", "events", raw=raw, dlq=dlq)))


def dead_letters(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("twitch_ingestion_dead_letters_total", {"reason": reason}) or 0.0
    )


async def test_one_chunk_becomes_one_hand_over_of_its_records_in_line_order() -> None:
    sink = RecordingSink()
    lines = [PRIVMSG, PING, USERNOTICE, BROKEN]
    await encoder(sink).deliver([parse_line(line) for line in lines], RECEIVED_AT, ROOM_IDS)
    assert len(sink.chunks) == 1
    (chat, event, dead) = sink.chunks[0]
    assert chat[:2] == ("chat", b"pajlada")
    assert msgspec.json.decode(chat[2])["message"] == "hi"
    assert (chat[3], chat[4]) == (None, RECEIVED_AT)
    assert event[:2] == ("events", b"pajlada")
    assert msgspec.json.decode(event[2])["room_id"] == "11148817"
    assert dead == (
        "dlq",
        None,
        BROKEN.encode(),
        [("dlq.reason", b"privmsg-without-channel"), ("dlq.received_at", b"1700000000123")],
        RECEIVED_AT,
    )


async def test_raw_topic_gets_every_line_byte_for_byte_before_its_record() -> None:
    sink = RecordingSink()
    lines = [PRIVMSG, PING]
    await encoder(sink, raw="raw").deliver(
        [parse_line(line) for line in lines], RECEIVED_AT, ROOM_IDS
    )
    topics = [(r[0], r[1]) for r in sink.chunks[0]]
    assert topics == [("raw", b"pajlada"), ("chat", b"pajlada"), ("raw", b"")]
    assert [r[2] for r in sink.chunks[0] if r[0] == "raw"] == [PRIVMSG.encode(), PING.encode()]


async def test_chunk_without_publishable_lines_hands_nothing_over() -> None:
    sink = RecordingSink()
    await encoder(sink).deliver([parse_line(PING)], RECEIVED_AT, ROOM_IDS)
    assert sink.chunks == []


async def test_contract_violation_without_dlq_is_counted_but_not_handed_over() -> None:
    sink = RecordingSink()
    encoding = encoder(sink, dlq=None)
    before = dead_letters("privmsg-without-channel")
    await encoding.deliver([parse_line(BROKEN), parse_line(PRIVMSG)], RECEIVED_AT, ROOM_IDS)
    assert [r[0] for r in sink.chunks[0]] == ["chat"]
    assert encoding.dead_lettered == 1
    assert dead_letters("privmsg-without-channel") == before + 1


@pytest.mark.parametrize("dlq", ["dlq", None])
def test_undecodable_line_is_dead_lettered_at_once_with_its_exact_bytes(dlq: str | None) -> None:
    sink = RecordingSink()
    encoding = encoder(sink, dlq=dlq)
    encoding.dead_letter(b"\xff\xfe not utf-8", "invalid-utf8", RECEIVED_AT)
    expected = [
        (
            "dlq",
            None,
            b"\xff\xfe not utf-8",
            [("dlq.reason", b"invalid-utf8"), ("dlq.received_at", b"1700000000123")],
            RECEIVED_AT,
        )
    ]
    assert sink.nowait == (expected if dlq else [])
    assert encoding.dead_lettered == 1
