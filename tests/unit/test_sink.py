"""`KafkaSink` executing its delivery decisions against a fake producer and a fake clock.

The fake stands in for librdkafka: it keeps what was produced, in order, and serves
delivery reports when the test says Kafka answered. Each test asserts what reached the
producer (which records, in what order, with which headers) and what the buffer still
holds, never the sink's internals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, Message
from structlog.testing import capture_logs

from twitch_ingestion import component_configs as configs
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.memory import MemoryBuffer
from twitch_ingestion.buffer.modes import buffer_from_config
from twitch_ingestion.config import BufferMode, Settings
from twitch_ingestion.kafka.delivery import REDELIVERY_DELAY_S, REFUSED_RETRY_DELAY_S
from twitch_ingestion.kafka.producer import DeliveryCallback, SeqDeliveryCallback
from twitch_ingestion.kafka.sink import KafkaSink
from twitch_ingestion.records import Headers, Record

pytestmark = pytest.mark.timeout(10)

CHAT = "chat"
DLQ = "chat.dlq"
STALL_S = 5.0


@dataclass
class Produced:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None
    timestamp_ms: int
    on_delivery: DeliveryCallback

    @property
    def record(self) -> Record:
        return (self.topic, self.key, self.value, self.headers, self.timestamp_ms)


class FakeMessage:
    """The parts of confluent-kafka's `Message` a delivery report carries."""

    def __init__(self, produced: Produced) -> None:
        self._produced = produced

    def topic(self) -> str:
        return self._produced.topic

    def key(self) -> bytes | None:
        return self._produced.key

    def value(self) -> bytes:
        return self._produced.value

    def headers(self) -> Headers | None:
        return self._produced.headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._produced.timestamp_ms)


class FakeProducer:
    """librdkafka as the sink sees it: a queue of records awaiting their reports."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.reachable = True
        self.capacity = capacity
        # The oldest this many outstanding records count as sent: a purge leaves them.
        self.in_flight = 0
        self.produced: list[Produced] = []  # everything ever produced, in order
        self.outstanding: list[Produced] = []  # produced, no report served yet
        self._reports: list[tuple[Produced, KafkaError | None]] = []

    def __len__(self) -> int:
        return len(self.outstanding)

    def produce_nowait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        on_delivery: DeliveryCallback,
        headers: Headers | None = None,
    ) -> None:
        if len(self.outstanding) >= self.capacity:
            raise BufferError("queue full")
        produced = Produced(topic, key, value, headers, timestamp_ms, on_delivery)
        self.produced.append(produced)
        self.outstanding.append(produced)

    def produce_batch(
        self,
        records: Sequence[Record],
        start: int,
        stop: int,
        first_seq: int,
        on_delivery: SeqDeliveryCallback,
    ) -> int:
        for index in range(start, stop):
            topic, key, value, headers, timestamp_ms = records[index]
            callback = partial(on_delivery, first_seq + index - start)
            try:
                self.produce_nowait(topic, key, value, timestamp_ms, callback, headers)
            except BufferError:
                return index
        return stop

    async def wait_for_queue_space(self) -> None:
        self.poll()
        await asyncio.sleep(0)

    def purge_queued(self) -> None:
        for produced in self.outstanding[self.in_flight :]:
            self._reports.append((produced, KafkaError(KafkaError._PURGE_QUEUE)))

    def poll(self) -> int:
        reports, self._reports = self._reports, []
        for produced, error in reports:
            self.outstanding.remove(produced)
            produced.on_delivery(error, cast(Message, FakeMessage(produced)))
        return len(reports)

    # --- what Kafka does, driven by the test ---------------------------------------------

    def acknowledge(self, count: int | None = None) -> None:
        """Kafka acknowledges the oldest `count` outstanding records (all by default)."""
        for produced in self.outstanding[:count]:
            self._reports.append((produced, None))
        self.poll()

    def fail(self, index: int, code: int) -> None:
        """The outstanding record at `index` fails with `code`."""
        self._reports.append((self.outstanding[index], KafkaError(code)))
        self.poll()

    def values_since(self, start: int) -> list[bytes]:
        return [produced.value for produced in self.produced[start:]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "twitch_channel": ["alpha"],
        "kafka_topic_chat_messages": CHAT,
        "kafka_topic_chat_events": "events",
        "kafka_topic_dlq": DLQ,
        "kafka_message_timeout_ms": int(STALL_S * 1000),
        "buffer_dir": tmp_path / "buffer",
        "buffer_mode": BufferMode.DISK,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def record(n: int, channel: str = "alpha") -> Record:
    return (CHAT, channel.encode(), f"v{n}".encode(), None, 1_700_000_000_000 + n)


def values(*numbers: int) -> list[bytes]:
    return [f"v{n}".encode() for n in numbers]


@dataclass
class Harness:
    sink: KafkaSink
    producer: FakeProducer
    clock: FakeClock
    buffer: DiskBuffer | MemoryBuffer
    closed: bool = False

    async def advance(self, seconds: float) -> None:
        """Let time pass by one maintenance tick, and let a started rewind run."""
        self.clock.now += seconds
        self.sink.maintain(self.clock.now)
        await settle()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sink.close()


async def settle() -> None:
    """Let the sink's rewind task run as far as it can."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def make_harness(tmp_path: Path) -> Any:
    opened: list[Harness] = []

    def make(capacity: int = 1_000_000, **overrides: Any) -> Harness:
        settings = make_settings(tmp_path, **overrides)
        buffer = buffer_from_config(configs.buffer_config(settings))
        buffer.open()
        producer = FakeProducer(capacity)
        clock = FakeClock()
        harness = Harness(
            KafkaSink(configs.kafka_sink_config(settings), producer, buffer, clock=clock),
            producer,
            clock,
            buffer,
        )
        opened.append(harness)
        return harness

    yield make
    for harness in opened:
        harness.close()


# --- delivered --------------------------------------------------------------------------


async def test_records_are_produced_in_order_and_forgotten_once_acknowledged(
    make_harness: Any,
) -> None:
    h: Harness = make_harness()
    await h.sink.deliver([record(0), record(1, "beta"), record(2)])
    assert [p.record for p in h.producer.produced] == [record(0), record(1, "beta"), record(2)]
    assert h.sink.pending == 3
    h.producer.acknowledge()
    assert h.sink.pending == 0
    assert (h.sink.counts.enqueued, h.sink.counts.delivered) == (3, 3)


# --- permanent refusal ------------------------------------------------------------------


async def test_refused_record_goes_to_the_dlq_with_its_headers_and_then_leaves_the_buffer(
    make_harness: Any,
) -> None:
    h: Harness = make_harness()
    await h.sink.deliver([record(0), record(1)])
    h.producer.fail(0, KafkaError.MSG_SIZE_TOO_LARGE)
    dead_letter = h.producer.produced[-1]
    assert dead_letter.record == (
        DLQ,
        b"alpha",
        b"v0",
        [
            ("dlq.reason", b"kafka-refused"),
            ("dlq.error", b"MSG_SIZE_TOO_LARGE"),
            ("dlq.received_at", b"1700000000000"),
            ("dlq.topic", b"chat"),
        ],
        1_700_000_000_000,
    )
    # Delivery goes on: nothing paused, nothing taken back.
    await h.sink.deliver([record(2)])
    assert h.producer.values_since(0) == [*values(0, 1), b"v0", *values(2)]
    assert h.sink.pending == 3
    h.producer.acknowledge()
    assert h.sink.pending == 0
    assert h.sink.counts.dead_lettered == 1


async def test_refused_record_without_dlq_is_parked_and_retried_every_30_s(
    make_harness: Any,
) -> None:
    h: Harness = make_harness(kafka_topic_dlq=None)
    await h.sink.deliver([record(0), record(1)])
    h.producer.fail(0, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    h.producer.acknowledge()
    assert len(h.producer.produced) == 2
    await h.advance(REFUSED_RETRY_DELAY_S - 0.5)
    assert len(h.producer.produced) == 2
    assert h.sink.pending == 1  # kept, not dropped
    await h.advance(0.5)
    assert h.producer.values_since(2) == values(0)
    # Refused again: another 30 s; accepted at last: the buffer forgets it.
    h.producer.fail(0, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    await h.advance(REFUSED_RETRY_DELAY_S)
    assert h.producer.values_since(2) == values(0, 0)
    h.producer.acknowledge()
    assert h.sink.pending == 0


# --- transient failure ------------------------------------------------------------------


async def test_transient_failure_takes_back_the_queue_and_resends_everything_in_order(
    make_harness: Any,
) -> None:
    h: Harness = make_harness()
    await h.sink.deliver([record(n) for n in range(5)])
    h.producer.fail(0, KafkaError._UNKNOWN_TOPIC)
    # Records 1-4 were taken back (reported as _PURGE_QUEUE): librdkafka holds nothing.
    h.producer.poll()
    assert len(h.producer) == 0
    # Paused: a new chunk is buffered, not produced.
    await h.sink.deliver([record(5), record(6)])
    assert len(h.producer.produced) == 5
    await h.advance(REDELIVERY_DELAY_S - 0.5)
    assert len(h.producer.produced) == 5
    with capture_logs() as logs:
        await h.advance(0.5)
    assert h.producer.values_since(5) == values(0, 1, 2, 3, 4, 5, 6)
    assert {
        "event": "kafka redelivery",
        "records": 7,
        "complete": True,
        "log_level": "info",
    } in logs
    # Resumed: the next chunk goes straight to the producer.
    await h.sink.deliver([record(7)])
    assert h.producer.values_since(12) == values(7)
    h.producer.acknowledge()
    assert h.sink.pending == 0


async def test_rewind_waits_for_queue_space_and_takes_records_buffered_meanwhile(
    make_harness: Any,
) -> None:
    h: Harness = make_harness(capacity=2)
    await h.sink.deliver([record(0), record(1)])
    h.producer.fail(0, KafkaError._UNKNOWN_TOPIC)
    h.producer.poll()  # record 1 taken back
    await h.sink.deliver([record(2)])  # paused: buffered only
    await h.advance(REDELIVERY_DELAY_S)
    assert h.producer.values_since(2) == values(0, 1)  # the queue is full: 2 waits
    await h.sink.deliver([record(3)])  # still paused: buffered only
    assert h.producer.values_since(2) == values(0, 1)
    h.producer.acknowledge()
    await settle()
    assert h.producer.values_since(2) == values(0, 1, 2, 3)
    h.producer.acknowledge()
    await settle()
    # Resumed once a pass found nothing new.
    await h.sink.deliver([record(4)])
    assert h.producer.values_since(2) == values(0, 1, 2, 3, 4)
    h.producer.acknowledge()
    assert h.sink.pending == 0


async def test_stall_that_keeps_librdkafka_full_never_resends_what_it_holds(
    make_harness: Any,
) -> None:
    h: Harness = make_harness()
    await h.sink.deliver([record(0), record(1)])
    for _ in range(100):
        await h.advance(STALL_S)
    assert h.producer.values_since(0) == values(0, 1)
    assert h.sink.pending == 2


# --- stall ------------------------------------------------------------------------------


async def test_stall_pauses_then_waits_for_librdkafka_to_drain_then_rewinds(
    make_harness: Any,
) -> None:
    h: Harness = make_harness()
    await h.sink.deliver([record(0), record(1)])
    await h.advance(STALL_S - 0.5)
    with capture_logs() as logs:
        await h.advance(0.5)
    assert [entry["event"] for entry in logs] == ["kafka delivery stalled"]
    assert logs[0]["outstanding"] == 2
    # Paused: what arrives now waits in the buffer; nothing is taken back or re-sent.
    await h.sink.deliver([record(2)])
    await h.advance(60)
    assert h.producer.values_since(0) == values(0, 1)
    # Kafka answers: librdkafka delivers what it held, and then the rewind runs.
    h.producer.acknowledge()
    await h.advance(0.01)
    assert h.producer.values_since(0) == values(0, 1, 2)  # no duplicate of 0 or 1
    await h.sink.deliver([record(3)])
    assert h.producer.values_since(0) == values(0, 1, 2, 3)
    h.producer.acknowledge()
    assert h.sink.pending == 0


# --- records outside the buffer, dead letters from a source -----------------------------


async def test_record_handed_over_when_the_queue_is_full_is_produced_on_a_later_tick(
    make_harness: Any,
) -> None:
    h: Harness = make_harness(capacity=1)
    await h.sink.deliver([record(0)])
    h.sink.deliver_nowait((DLQ, None, b"\xff raw", [("dlq.reason", b"x")], 1))
    assert h.producer.values_since(0) == values(0)
    await h.advance(0.01)
    assert h.producer.values_since(0) == values(0)  # still full
    h.producer.acknowledge()
    await h.advance(0.01)
    assert h.producer.values_since(1) == [b"\xff raw"]
    h.producer.acknowledge()
    assert h.sink.pending == 0


async def test_record_the_full_buffer_dropped_is_retried_on_its_own_after_a_failure(
    make_harness: Any,
) -> None:
    # drop_newest and room for one record: the second one gets no seq (-1).
    h: Harness = make_harness(
        buffer_mode=BufferMode.MEMORY, buffer_max_bytes=1024, buffer_full_policy="drop_newest"
    )
    big = [(CHAT, b"alpha", bytes([n]) * 800, None, n) for n in range(2)]
    await h.sink.deliver([big[0]])
    h.sink.deliver_nowait(big[1])
    assert h.producer.values_since(0) == [big[0][2], big[1][2]]
    assert h.sink.pending == 1
    h.producer.fail(1, KafkaError._UNKNOWN_TOPIC)
    await h.advance(REDELIVERY_DELAY_S)
    assert h.producer.values_since(2) == [big[1][2]]
    h.producer.acknowledge()
    assert h.sink.pending == 0


# --- held until the topics exist ----------------------------------------------------------


async def test_a_held_sink_produces_nothing_until_released_then_everything_in_order(
    tmp_path: Path,
) -> None:
    # An earlier run left records 0 and 1 unacknowledged in the buffer.
    settings = make_settings(tmp_path)
    earlier = buffer_from_config(configs.buffer_config(settings))
    earlier.open()
    earlier.append_batch([record(0), record(1)])
    earlier.close()

    buffer = buffer_from_config(configs.buffer_config(settings))
    buffer.open()
    producer = FakeProducer()
    clock = FakeClock()
    sink = KafkaSink(configs.kafka_sink_config(settings), producer, buffer, clock=clock)
    sink.hold()
    await sink.deliver([record(2), record(3)])
    sink.deliver_nowait((DLQ, None, b"v4", [("dlq.reason", b"x")], 1))
    for _ in range(3):
        clock.now += 10
        sink.maintain(clock.now)
        await settle()
    assert producer.produced == []  # the topics may not exist yet: nothing was produced
    assert sink.pending == 5

    sink.release()
    sink.maintain(clock.now)
    await settle()
    assert producer.values_since(0) == [*values(0, 1, 2, 3), b"v4"]
    assert not sink.held
    await sink.deliver([record(5)])  # produced directly again
    assert producer.values_since(5) == values(5)
    producer.acknowledge()
    assert sink.pending == 0
    assert sink.counts.replayed == 2
    sink.close()


# --- shutdown ---------------------------------------------------------------------------


async def test_shutdown_with_records_outstanding_keeps_them_for_the_next_start(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    buffer = buffer_from_config(configs.buffer_config(settings))
    buffer.open()
    producer = FakeProducer()
    sink = KafkaSink(configs.kafka_sink_config(settings), producer, buffer, clock=FakeClock())
    await sink.deliver([record(n) for n in range(4)])
    producer.acknowledge(1)
    assert sink.pending == 3
    sink.close()

    reopened = buffer_from_config(configs.buffer_config(settings))
    reopened.open()
    producer = FakeProducer()
    sink = KafkaSink(configs.kafka_sink_config(settings), producer, reopened, clock=FakeClock())
    assert await sink.replay_buffered() == 3
    assert producer.values_since(0) == values(1, 2, 3)
    producer.acknowledge()
    assert sink.pending == 0
    sink.close()


async def test_memory_buffer_spills_to_disk_while_kafka_is_unreachable(
    make_harness: Any, tmp_path: Path
) -> None:
    h: Harness = make_harness(buffer_mode=BufferMode.MEMORY)
    h.producer.reachable = False
    await h.sink.deliver([record(0), record(1)])
    await h.advance(1.0)
    h.close()
    # A crash now loses nothing: the next start replays the spilled records.
    reopened = MemoryBuffer(tmp_path / "buffer")
    reopened.open()
    assert [r.value for _, r in reopened.replay()] == values(0, 1)
    reopened.close()
