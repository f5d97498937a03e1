"""`SinkOutput`: EventSub results become the records the IRC encoder makes, in the same sink."""

from __future__ import annotations

import asyncio

import pytest

from twitch_ingestion.config import BufferFullPolicy
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.models import ChatMessage
from twitch_ingestion.records import (
    DLQ_HEADER_REASON,
    DLQ_HEADER_RECEIVED_AT,
    Destination,
    Record,
    Topics,
)
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.sources.eventsub.helix import ChannelProblem
from twitch_ingestion.sources.eventsub.messages import DeadLetter
from twitch_ingestion.sources.eventsub.output import SourceFailure
from twitch_ingestion.sources.eventsub.records import EventSubRecord
from twitch_ingestion.sources.eventsub.service_source import (
    EventSubFailed,
    SinkOutput,
)


class FakeSink:
    """A `RecordSink` that keeps what it is given; `gate` holds `deliver` while clear."""

    def __init__(self) -> None:
        self.chunks: list[list[Record]] = []
        self.nowait: list[Record] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def deliver(self, records: list[Record]) -> None:
        await self.gate.wait()
        self.chunks.append(records)

    def deliver_nowait(self, record: Record) -> None:
        self.nowait.append(record)


def chat(channel: str, text: str, received_at: int = 1_700_000_000_123) -> EventSubRecord:
    record = ChatMessage(
        channel_id=channel,
        user_id="1",
        username="u",
        message=text,
        timestamp=received_at - 5,
        emotes=[],
        message_id=text,
        room_id="9",
        display_name="U",
        badges={},
        is_action=False,
        bits=0,
        reply_parent_message_id=None,
        first_message=False,
        received_at=received_at,
        ingested_via="eventsub",
    )
    return EventSubRecord(Destination.CHAT, channel, record, f"value-{text}".encode())


def output(sink: FakeSink, *, dlq: str | None = "dlq", high_water: int = 10_000) -> SinkOutput:
    return SinkOutput(sink, RecordBuilder(Topics("chat", "events", dlq=dlq)), high_water=high_water)


async def test_records_reach_the_sink_in_order_with_the_irc_topic_key_and_time() -> None:
    sink = FakeSink()
    out = output(sink)
    drain = asyncio.create_task(out.run())
    first, second = chat("alpha", "1"), chat("bravo", "2", 1_700_000_000_999)
    events = EventSubRecord(Destination.EVENTS, "alpha", first.record, b"event")
    for item in (first, second, events):
        out.record(item)
    out.close()
    await asyncio.wait_for(drain, 5)
    delivered = [record for chunk in sink.chunks for record in chunk]
    assert delivered == [
        ("chat", b"alpha", b"value-1", None, 1_700_000_000_123),
        ("chat", b"bravo", b"value-2", None, 1_700_000_000_999),
        ("events", b"alpha", b"event", None, 1_700_000_000_123),
    ]


async def test_a_dead_letter_keeps_its_exact_frame_and_the_dlq_headers() -> None:
    sink = FakeSink()
    out = output(sink)
    out.dead_letter(DeadLetter("invalid-json", "line 1", b"{not json"))
    assert out.dead_lettered == 1
    [(topic, key, value, headers, _)] = sink.nowait
    assert (topic, key, value) == ("dlq", None, b"{not json")
    assert headers is not None
    assert dict(headers)[DLQ_HEADER_REASON] == b"invalid-json"
    assert dict(headers)[DLQ_HEADER_RECEIVED_AT].isdigit()


def test_without_a_dlq_a_dead_letter_is_counted_and_dropped() -> None:
    sink = FakeSink()
    out = output(sink, dlq=None)
    out.dead_letter(DeadLetter("invalid-json", "line 1", b"{"))
    assert (out.dead_lettered, sink.nowait) == (1, [])


async def test_the_reader_waits_while_the_sink_is_behind_by_the_high_water_mark() -> None:
    sink = FakeSink()
    sink.gate.clear()  # the sink cannot take anything (buffer full)
    out = output(sink, high_water=3)
    drain = asyncio.create_task(out.run())
    for n in range(2):
        out.record(chat("alpha", str(n)))
    assert out.room() is None
    await asyncio.sleep(0)  # the drain task takes the two and blocks in the sink
    for n in range(2, 5):
        out.record(chat("alpha", str(n)))
    waiter = out.room()
    assert waiter is not None
    sink.gate.set()
    await asyncio.wait_for(waiter, 5)
    out.close()
    await asyncio.wait_for(drain, 5)
    assert [r[2] for chunk in sink.chunks for r in chunk] == [
        f"value-{n}".encode() for n in range(5)
    ]


def test_channel_problems_are_kept_for_readyz() -> None:
    out = output(FakeSink())
    out.channel_problem(ChannelProblem("nosuchuser", "unknown-login", "Twitch has no user"))
    assert out.failed_channels == {"nosuchuser": "unknown-login: Twitch has no user"}


@pytest.mark.parametrize(
    ("variable", "authentication"),
    [
        ("TWITCH_OAUTH_TOKEN", True),
        ("TWITCH_CLIENT_ID", True),
        ("TWITCH_REFRESH_TOKEN", True),
        ("TWITCH_CHANNEL", False),
        ("TWITCH_API_URL", False),
    ],
)
def test_credential_failures_are_told_apart_from_the_rest(
    variable: str, authentication: bool
) -> None:
    failure = EventSubFailed(SourceFailure("r", variable, f"{variable} is wrong"))
    assert failure.is_authentication is authentication
    assert str(failure) == f"{variable} is wrong"


async def test_records_are_held_while_the_sink_is_busy_and_past_the_limit_block_waits() -> None:
    sink = FakeSink()
    sink.gate.clear()
    out = output(sink, high_water=3)
    drain = asyncio.create_task(out.run())
    out.record(chat("alpha", "0"))
    await asyncio.sleep(0)  # the drain task takes it and waits in the sink
    for n in range(1, 4):
        out.record(chat("alpha", str(n)))
    assert out.pending == 3
    waiter = out.room()
    assert waiter is not None  # block: the reader stops here
    sink.gate.set()
    await asyncio.wait_for(waiter, 5)
    out.close()
    await asyncio.wait_for(drain, 5)
    assert [r[2] for chunk in sink.chunks for r in chunk] == [
        f"value-{n}".encode() for n in range(4)
    ]


async def test_past_the_limit_drop_newest_drops_counts_and_never_stops_the_reader() -> None:
    sink = FakeSink()
    sink.gate.clear()
    out = SinkOutput(
        sink,
        RecordBuilder(Topics("chat", "events", dlq="dlq")),
        high_water=2,
        full_policy=BufferFullPolicy.DROP_NEWEST,
    )
    drain = asyncio.create_task(out.run())
    out.record(chat("alpha", "0"))
    await asyncio.sleep(0)  # taken by the drain task, stuck in the sink
    dropped_before = (
        REGISTRY.get_sample_value(
            "twitch_ingestion_buffer_records_dropped_total", {"reason": "buffer_full"}
        )
        or 0.0
    )
    for n in range(1, 6):
        out.record(chat("alpha", str(n)))
        assert out.room() is None  # the reader never waits
    assert (out.pending, out.dropped) == (2, 3)
    dropped_after = REGISTRY.get_sample_value(
        "twitch_ingestion_buffer_records_dropped_total", {"reason": "buffer_full"}
    )
    assert dropped_after == dropped_before + 3
    sink.gate.set()
    out.close()
    await asyncio.wait_for(drain, 5)
    # What was kept is what came first.
    assert [r[2] for chunk in sink.chunks for r in chunk] == [
        f"value-{n}".encode() for n in range(3)
    ]
