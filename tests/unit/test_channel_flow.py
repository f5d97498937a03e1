"""Per-channel flow (`channel_flow.py`): what each chunk adds, and the cardinality cap."""

from __future__ import annotations

from typing import Any

from twitch_ingestion.channel_flow import ChannelFlow, ChannelFlowSink
from twitch_ingestion.metrics import CHANNEL_FLOW, REGISTRY
from twitch_ingestion.records import Record, Topics

CHAT, EVENTS, RAW, DLQ = "chat-topic", "events-topic", "raw-topic", "dlq-topic"


def flow(max_channels: int = 100, now: float = 1_700_000_000.0) -> ChannelFlow:
    return ChannelFlow(
        Topics(CHAT, EVENTS, raw=RAW, dlq=DLQ), max_channels=max_channels, clock=lambda: now
    )


def record(topic: str, channel: str | None, value: bytes = b"{}") -> Record:
    return (topic, None if channel is None else channel.encode(), value, None, 0)


def family(snapshot: dict[str, object], name: str) -> dict[str, float]:
    values = snapshot[name]
    assert isinstance(values, dict)
    return {labels[0]: value for labels, value in values.items()}


def test_a_chunk_is_counted_by_kind_and_channel() -> None:
    counted = flow()
    counted.count(
        [
            record(RAW, "forsen"),
            record(CHAT, "forsen"),
            record(CHAT, "forsen"),
            record(CHAT, "xqc"),
            record(RAW, "xqc"),
            record(EVENTS, "xqc"),
        ]
    )
    snapshot = counted.snapshot()
    assert family(snapshot, "twitch_ingestion_channel_messages") == {"forsen": 2, "xqc": 1}
    assert family(snapshot, "twitch_ingestion_channel_events") == {"forsen": 0, "xqc": 1}
    assert family(snapshot, "twitch_ingestion_records_built") == {
        "chat": 3,
        "events": 1,
        "raw": 2,
        "dlq": 0,
    }
    last = family(snapshot, "twitch_ingestion_channel_last_record_timestamp_seconds")
    assert last == {"forsen": 1_700_000_000.0, "xqc": 1_700_000_000.0}


def test_a_dead_letter_without_key_is_counted_for_the_channel_its_bytes_name() -> None:
    counted = flow()
    irc_line = b"@badge-info= :a!a@a.tmi.twitch.tv PRIVMSG #Forsen :\xff broken"
    frame = b'{"event":{"broadcaster_user_login":"xqc","message":{}}}'
    counted.count([record(DLQ, None, irc_line), record(DLQ, None, frame)])
    counted.count([record(DLQ, None, b"garbage without a channel")])
    dead_letters = family(counted.snapshot(), "twitch_ingestion_channel_dead_letters")
    assert dead_letters == {"forsen": 1, "xqc": 1, "_unknown": 1}
    # A dead letter is not a line the channel said: its quiet time is unchanged.
    assert (
        family(counted.snapshot(), "twitch_ingestion_channel_last_record_timestamp_seconds") == {}
    )


def test_channels_past_the_cap_are_added_up_under_other_for_good() -> None:
    counted = flow(max_channels=2)
    counted.count([record(CHAT, "a"), record(CHAT, "b"), record(CHAT, "c"), record(CHAT, "d")])
    snapshot = counted.snapshot()
    assert family(snapshot, "twitch_ingestion_channel_messages") == {"a": 1, "b": 1, "_other": 2}
    assert snapshot["twitch_ingestion_channels_over_metrics_limit"] == 2


def test_wanted_channels_have_series_at_zero_and_their_joined_state() -> None:
    counted = flow()
    counted.watch_source(lambda: ["forsen", "xqc"], lambda: frozenset({"forsen"}))
    snapshot = counted.snapshot()
    assert family(snapshot, "twitch_ingestion_channel_messages") == {"forsen": 0, "xqc": 0}
    assert family(snapshot, "twitch_ingestion_channel_joined") == {"forsen": 1.0, "xqc": 0.0}
    assert snapshot["twitch_ingestion_channels_wanted"] == 2


def test_a_channel_no_longer_wanted_gives_its_place_to_a_later_one() -> None:
    wanted = ["a", "b"]
    counted = flow(max_channels=2)
    counted.watch_source(lambda: wanted, frozenset)
    counted.snapshot()
    wanted.remove("a")
    counted.snapshot()
    counted.count([record(CHAT, "c")])
    wanted.append("c")
    messages = family(counted.snapshot(), "twitch_ingestion_channel_messages")
    assert messages == {"b": 0, "c": 1}


async def test_the_sink_wrapper_counts_then_hands_every_record_on() -> None:
    class Collected:
        def __init__(self) -> None:
            self.records: list[Record] = []

        async def deliver(self, records: list[Record]) -> None:
            self.records += records

        def deliver_nowait(self, record: Record) -> None:
            self.records.append(record)

    counted = flow()
    inner = Collected()
    sink = ChannelFlowSink(inner, counted)
    chunk = [record(CHAT, "forsen"), record(EVENTS, "forsen")]
    await sink.deliver(list(chunk))
    sink.deliver_nowait(record(DLQ, None, b":x PRIVMSG #forsen :y"))
    assert inner.records == [*chunk, record(DLQ, None, b":x PRIVMSG #forsen :y")]
    dead_letters = family(counted.snapshot(), "twitch_ingestion_channel_dead_letters")
    assert dead_letters == {"forsen": 1}


def test_metrics_export_the_snapshot_with_channel_labels() -> None:
    counted = flow()
    counted.count([record(CHAT, "forsen")])
    CHANNEL_FLOW.watch(counted.snapshot)
    try:
        sample: Any = REGISTRY.get_sample_value
        assert sample("twitch_ingestion_channel_messages_total", {"channel": "forsen"}) == 1
        assert sample("twitch_ingestion_records_built_total", {"kind": "events"}) == 0
    finally:
        CHANNEL_FLOW.watch(None)


def test_a_chat_topic_string_that_is_equal_but_not_the_same_object_still_counts_as_chat() -> None:
    counted = flow()
    same_name = "".join(["chat-", "topic"])
    assert same_name == CHAT
    assert same_name is not CHAT
    counted.count([record(same_name, "forsen"), record(CHAT, "forsen")])
    messages = family(counted.snapshot(), "twitch_ingestion_channel_messages")
    assert messages == {"forsen": 2}
