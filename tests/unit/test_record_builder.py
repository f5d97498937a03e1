"""`RecordBuilder`: one topic list, one key cache, one dead-letter format for every source."""

from __future__ import annotations

import asyncio

from tests.support.record_sinks import RecordingSink
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import load_settings
from twitch_ingestion.kafka.delivery import DeadLetter, DeliveryState, Failure
from twitch_ingestion.models import ChatMessage, encode_record
from twitch_ingestion.records import Destination, Topics
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.records.events import SourceDeadLetter, SourceRecord
from twitch_ingestion.service import topic_specs
from twitch_ingestion.sources.eventsub.messages import DeadLetter as EventSubDeadLetter
from twitch_ingestion.sources.eventsub.records import EventSubRecord
from twitch_ingestion.sources.eventsub.service_source import SinkOutput
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.records import IrcRecordEncoder
from twitch_ingestion.sources.irc.routing import route_message

RECEIVED_AT = 1_700_000_000_123
TOPICS = Topics("chat", "events", raw="raw", dlq="dlq")


def chat_message(channel: str) -> ChatMessage:
    routed = route_message(parse_line(f"@id=m-1 :u!u@u PRIVMSG #{channel} :hi"), RECEIVED_AT, {})
    assert routed is not None
    assert isinstance(routed.record, ChatMessage)
    return routed.record


def test_the_topic_check_and_the_builder_read_one_topic_list() -> None:
    settings = load_settings(
        require_channels=False, kafka_topic_raw="the-raw", kafka_topic_dlq="the-dlq"
    )
    topics = RecordBuilder(configs.topics(settings)).topics
    assert [spec.name for spec in topic_specs(settings)] == topics.names
    assert topics.names == [
        settings.kafka_topic_chat_messages,
        settings.kafka_topic_chat_events,
        "the-raw",
        "the-dlq",
    ]
    assert list(topics.kinds.values()) == ["chat", "events", "raw", "dlq"]
    bare = configs.topics(load_settings(require_channels=False, kafka_topic_dlq=""))
    assert (bare.raw, bare.dlq, len(bare.names)) == (None, None, 2)


def test_a_source_record_is_encoded_unless_the_source_already_did() -> None:
    builder = RecordBuilder(TOPICS)
    message = chat_message("alpha")
    encoded = builder.record(SourceRecord(Destination.CHAT, "alpha", message), RECEIVED_AT)
    finished = builder.record(
        SourceRecord(Destination.EVENTS, "alpha", message, b"as-given"), RECEIVED_AT
    )
    assert encoded == ("chat", b"alpha", encode_record(message), None, RECEIVED_AT)
    assert finished == ("events", b"alpha", b"as-given", None, RECEIVED_AT)


def test_both_sources_share_one_builder_and_its_key_cache() -> None:
    builder = RecordBuilder(TOPICS)
    sink = RecordingSink()
    irc = IrcRecordEncoder(sink, builder, hot_path="python")
    eventsub = SinkOutput(sink, builder)
    line = "@id=x;room-id=1;tmi-sent-ts=1 :a!a@a PRIVMSG #alpha :hi"
    asyncio.run(irc.deliver([parse_line(line)], RECEIVED_AT, {}))
    eventsub.record(EventSubRecord(Destination.CHAT, "alpha", chat_message("alpha"), b"v"))
    irc_key = sink.records[-1][1]
    assert eventsub._pending[0][1] is irc_key  # one cache: the very same bytes object
    eventsub.dead_letter(EventSubDeadLetter("invalid-json", "line 1", b"{"))
    irc.dead_letter(b"\xff", "invalid-utf8", RECEIVED_AT)
    assert builder.dead_lettered == irc.dead_lettered == eventsub.dead_lettered == 2


def test_build_lines_keeps_line_order_raw_copy_first_then_record_or_dead_letter() -> None:
    lines = [
        parse_line("@id=x;room-id=1;tmi-sent-ts=1 :a!a@a PRIVMSG #alpha :hi"),
        parse_line(":a!a@a PRIVMSG :no channel"),
        parse_line("PING :tmi.twitch.tv"),
    ]
    records = RecordBuilder(TOPICS).build_lines(lines, RECEIVED_AT, route_message, {})
    assert [(topic, key) for topic, key, *_ in records] == [
        ("raw", b"alpha"),
        ("chat", b"alpha"),
        ("raw", b""),
        ("dlq", None),
        ("raw", b""),
    ]


def test_a_source_dead_letter_and_a_refused_record_share_one_format() -> None:
    """Consumers of the dead-letter topic read one format: the same header names, in the
    same order, whether a source could not read a line or Kafka refused a record."""
    source = RecordBuilder(TOPICS).dead_letter(
        SourceDeadLetter(b"\xff raw", "invalid-utf8", RECEIVED_AT)
    )
    assert source == (
        "dlq",
        None,
        b"\xff raw",
        [("dlq.reason", b"invalid-utf8"), ("dlq.received_at", b"1700000000123")],
        RECEIVED_AT,
    )
    delivery = DeliveryState(dlq_topic="dlq", stall_timeout_s=30.0, now=0.0)
    refused = ("chat", b"alpha", b"{}", None, RECEIVED_AT)
    [action] = delivery.on_failed(7, refused, Failure.PERMANENT, "MSG_SIZE_TOO_LARGE", 0.0)
    assert action == DeadLetter(
        7,
        (
            "dlq",
            b"alpha",
            b"{}",
            [
                ("dlq.reason", b"kafka-refused"),
                ("dlq.error", b"MSG_SIZE_TOO_LARGE"),
                ("dlq.received_at", b"1700000000123"),
                ("dlq.topic", b"chat"),
            ],
            RECEIVED_AT,
        ),
        "MSG_SIZE_TOO_LARGE",
    )
