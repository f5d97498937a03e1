"""The Kafka sink: records in, records on their topics out, nothing dropped.

A source hands over each read chunk's records (`deliver`, the `RecordSink` protocol of
`records/record.py`); the sink never asks where they came from, nor looks inside a
value. The chunk's records are appended to the buffer (on disk before anything else, in
`disk` mode) and then enqueued in librdkafka, each with its buffer sequence number; a
delivery report acknowledges that number, which is what lets the buffer forget it.

What to do when a record fails, when Kafka stalls and when to rewind is decided by
`DeliveryState` (`kafka/delivery.py`, which explains how channel order survives an
outage without duplicates). This module is the shell around it: it reads Kafka's error
codes (`_PERMANENT_ERRORS`), feeds the decisions the events and the time, and executes
their answers against a `Producer` and a `Buffer`, with the metrics and the logs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import structlog
from confluent_kafka import KafkaError, Message

from twitch_ingestion.buffer.protocol import Appended, Buffer
from twitch_ingestion.kafka.delivery import (
    Action,
    DeadLetter,
    DeliveryState,
    Failure,
    PurgeQueue,
    Stalled,
    StartRewind,
)
from twitch_ingestion.kafka.producer import DeliveryCallback, SeqDeliveryCallback
from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import (
    BUFFER_REPLAYED,
    DEAD_LETTERS,
    DELIVERY_ERRORS,
    DELIVERY_LATENCY,
    LATENCY_SAMPLE_EVERY,
    MESSAGES_PRODUCED,
)
from twitch_ingestion.records import DLQ_REASON_KAFKA_REFUSED, Headers, Record, Topics

__all__ = ["DeliveryCounts", "KafkaSink", "KafkaSinkConfig", "Producer"]

log = structlog.get_logger(__name__)

# Kafka will never accept these records as they are: retrying would loop for ever.
_PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError._INVALID_ARG,
    }
)
# Maintenance cadence: group commit of the buffer, redelivery, gauges.
_TICK_S = 0.01
# Gauges and the in-memory buffer's spill (while Kafka is unreachable) run this often.
_METRICS_INTERVAL_S = 1.0
# Prometheus observations cost a lock each; on the hot path they are counted locally
# and published once per tick, and delivery latency is sampled one record in this many
# (the histogram's help says so).
_LATENCY_SAMPLE_EVERY = LATENCY_SAMPLE_EVERY


class Producer(Protocol):
    """What the sink needs from a producer; `KafkaProducer` satisfies it, tests fake it."""

    @property
    def reachable(self) -> bool:
        """A broker connection is up (the in-memory buffer spills to disk while not)."""

    def __len__(self) -> int:
        """Records enqueued and not yet reported (acknowledged or failed)."""

    def produce_nowait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        on_delivery: DeliveryCallback,
        headers: Headers | None = None,
    ) -> None:
        """Enqueue one record; raises `BufferError` when the local queue is full."""

    def produce_batch(
        self,
        records: Sequence[Record],
        start: int,
        stop: int,
        first_seq: int,
        on_delivery: SeqDeliveryCallback,
    ) -> int:
        """Enqueue `records[start:stop]` (sequence numbers from `first_seq`) until the
        local queue is full; returns the index of the first record not enqueued."""

    async def wait_for_queue_space(self) -> None:
        """Serve delivery reports for a moment, so the queue can make room."""

    def purge_queued(self) -> None:
        """Take back every record queued but not sent (each reported as _PURGE_QUEUE)."""

    def poll(self) -> int:
        """Serve pending delivery reports now."""


@dataclass(slots=True)
class DeliveryCounts:
    """Totals since start, for the periodic throughput summary and for tests."""

    enqueued: int = 0
    delivered: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    """Records Kafka refused for good and sent to the DLQ (a source counts its own)."""
    failed: int = 0
    replayed: int = 0


@dataclass(frozen=True, slots=True)
class KafkaSinkConfig:
    """The topics written to (their kinds label the metrics; the dead-letter topic takes
    what Kafka refuses for good) and how long a record may wait for its acknowledgement
    before the sink calls the delivery stalled (KAFKA_MESSAGE_TIMEOUT_MS)."""

    topics: Topics
    stall_timeout_s: float


class KafkaSink:
    """Buffers and produces every record a source delivers; a `RecordSink`."""

    def __init__(
        self,
        config: KafkaSinkConfig,
        producer: Producer,
        buffer: Buffer,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._buffer = buffer
        self._clock = clock
        topics = config.topics
        self._kind_by_topic = topics.kinds
        self._delivered_by_topic: dict[str, int] = {}
        self._latency_tick = 0
        self._delivery = DeliveryState(
            dlq_topic=topics.dlq,
            stall_timeout_s=config.stall_timeout_s,
            now=clock(),
        )
        self._rewind_task: asyncio.Task[None] | None = None
        # Records an earlier run left in the buffer, sent by the rewind that ends `hold`
        # (-1: not held, or that rewind is done).
        self._held_from_before = -1
        self._metrics_at = float("-inf")
        self._errors = ThrottledLogger(log, interval_s=10.0)
        self.counts = DeliveryCounts()

    @property
    def pending(self) -> int:
        """Records not yet acknowledged by Kafka (in the buffer)."""
        return self._buffer.records

    # --- hot path ---------------------------------------------------------------------

    async def deliver(self, records: list[Record]) -> None:
        """Buffer and produce one read chunk; waits only for buffer room or queue space."""
        if not records:
            return
        offset = 0
        for appended in await self._buffer.append_all(records, self._produce_chunk):
            offset += appended.accepted
        self.counts.enqueued += offset
        if offset < len(records):
            # BUFFER_FULL_POLICY=drop_newest and the buffer is full: the buffer counted them
            # (twitch_ingestion_buffer_records_dropped_total{reason="buffer_full"}); say so.
            self._errors.warning(
                "buffer full records dropped",
                "buffer_full",
                dropped=len(records) - offset,
                policy="drop_newest",
            )
        self._producer.poll()

    async def _produce_chunk(self, chunk: Sequence[Record], appended: Appended) -> None:
        await self._produce_all(chunk, 0, appended.accepted, appended.first_seq)

    async def _produce_all(
        self, records: Sequence[Record], start: int, count: int, first_seq: int
    ) -> None:
        # `delivery.paused` changes only in delivery reports and maintenance, which run
        # at awaits (never inside produce_batch): checking it around the waits is
        # checking it before every record.
        delivery = self._delivery
        index, stop = start, start + count
        while index < stop:
            if delivery.paused:
                # Kafka stalled or a record failed: these stay in the buffer, and the
                # rewind produces them after every older record.
                return
            index = self._producer.produce_batch(
                records, index, stop, first_seq + index - start, self._on_delivery
            )
            if index < stop:
                # librdkafka's queue is full. Wait for room while Kafka makes progress;
                # once the stall watchdog pauses delivery, stop waiting (librdkafka
                # never times records out, so the room may not come before the broker
                # does) and let the buffer keep the rest.
                if delivery.paused:
                    return
                await self._producer.wait_for_queue_space()

    def deliver_nowait(self, record: Record) -> None:
        """Buffer (if there is room) and produce one record without waiting."""
        appended = self._buffer.append_batch([record])
        if appended.accepted:
            self.counts.enqueued += 1
            if self._delivery.paused:
                return  # in the buffer: the rewind produces it after every older record
        self._produce_now(appended.first_seq if appended.accepted else -1, record)

    def _produce_now(self, seq: int, record: Record) -> None:
        """Hand a record to librdkafka now, or to a later tick when its queue is full."""
        topic, key, value, headers, timestamp_ms = record
        try:
            self._producer.produce_nowait(
                topic, key, value, timestamp_ms, partial(self._on_delivery, seq), headers
            )
        except BufferError:
            self._delivery.on_queue_full(seq, record, self._clock())

    # --- delivery reports -----------------------------------------------------------------

    def _on_delivery(self, seq: int, error: KafkaError | None, message: Message) -> None:
        if error is None:
            if seq >= 0:
                self._buffer.ack(seq)
            self.counts.delivered += 1
            topic = message.topic() or ""
            self._delivered_by_topic[topic] = self._delivered_by_topic.get(topic, 0) + 1
            self._latency_tick += 1
            if self._latency_tick >= _LATENCY_SAMPLE_EVERY:
                self._latency_tick = 0
                _, timestamp_ms = message.timestamp()
                DELIVERY_LATENCY.observe(max(0.0, time.time() - timestamp_ms / 1000.0))
            return
        self._on_delivery_failed(seq, error, message)

    def _on_delivery_failed(self, seq: int, error: KafkaError, message: Message) -> None:
        record = _record_of(message)
        code = error.code()
        if code == KafkaError._PURGE_QUEUE:
            failure = Failure.PURGED
        else:
            failure = Failure.PERMANENT if code in _PERMANENT_ERRORS else Failure.TRANSIENT
            self.counts.failed += 1
            DELIVERY_ERRORS.labels(error.name()).inc()
            topic, key, value, _, created_at_ms = record
            # The record is named by what the tuple holds (its value is never decoded
            # here): channel and time find it in the topic, `seq` in the buffer, and a
            # record refused for good in the DLQ with these and `dlq.topic`.
            self._errors.warning(
                "kafka delivery failed",
                error.name(),
                error=error.str(),
                code=error.name(),
                topic=topic,
                channel=key.decode(errors="replace") if key is not None else None,
                created_at_ms=created_at_ms,
                size=len(value),
                seq=seq,
                retrying=failure is Failure.TRANSIENT,
            )
        now = self._clock()
        self._execute(self._delivery.on_failed(seq, record, failure, error.name(), now), now)

    def _execute(self, actions: list[Action], now: float) -> None:
        for action in actions:
            match action:
                case DeadLetter(seq=seq, record=record):
                    # One bounded label (as in the dlq.reason header); Kafka's error
                    # name is in the dlq.error header and delivery_errors_total{error}.
                    DEAD_LETTERS.labels(DLQ_REASON_KAFKA_REFUSED).inc()
                    self.counts.dead_lettered += 1
                    self._produce_now(seq, record)
                case PurgeQueue():
                    self._producer.purge_queued()
                case Stalled(outstanding=outstanding, stalled_s=stalled_s):
                    self._errors.warning(
                        "kafka delivery stalled",
                        "stalled",
                        outstanding=outstanding,
                        stalled_s=stalled_s,
                        action="new records are kept in the buffer until Kafka answers",
                    )
                case StartRewind():
                    # A task of its own: a large backlog must not hold up group commit.
                    self._rewind_task = asyncio.create_task(self._rewind(), name="kafka-rewind")

    async def _rewind(self) -> None:
        """Produce every unacknowledged record again, in append order, then resume."""
        delivery = self._delivery
        produce = self._producer.produce_nowait
        on_delivery = self._on_delivery
        produced = 0
        try:
            while not delivery.rewind_interrupted:
                before = produced
                for seq, buffered in delivery.rewind_pass(self._buffer.unacked()):
                    topic, key, value, headers, timestamp_ms = buffered
                    callback = partial(on_delivery, seq)
                    while True:
                        try:
                            produce(topic, key, value, timestamp_ms, callback, headers)
                            break
                        except BufferError:
                            await self._producer.wait_for_queue_space()
                    produced += 1
                if produced == before:
                    break
        except Exception as error:  # any failure: log it, rewind again later
            log.error("kafka redelivery failed", error=repr(error))
            delivery.rewind_failed(self._clock())
            return
        complete = delivery.end_rewind()
        if self._held_from_before >= 0:
            # The rewind that ended the start-up hold: the earlier run's records went first.
            if complete:
                self._count_replayed(min(produced, self._held_from_before))
            return
        self.counts.redelivered += produced
        log.info("kafka redelivery", records=produced, complete=complete)

    # --- startup and maintenance -------------------------------------------------------------

    def hold(self) -> None:
        """Produce nothing until `release` (the topics are not known to exist yet): what
        the source delivers meanwhile, and what an earlier run left, waits in the buffer."""
        self._held_from_before = self._buffer.records
        self._delivery.hold()

    def release(self) -> None:
        """The topics exist: everything buffered goes out in append order (the earlier
        run's records first), then records are produced as they come."""
        self._delivery.release(self._clock())

    @property
    def held(self) -> bool:
        return self._delivery.held

    async def replay_buffered(self) -> int:
        """Produce, in order, what an earlier run buffered and Kafka never acknowledged."""
        replayed = 0
        batch: list[Record] = []
        first_seq = -1
        for seq, record in self._buffer.replay():
            if batch and seq != first_seq + len(batch):
                await self._produce_all(batch, 0, len(batch), first_seq)
                batch = []
            if not batch:
                first_seq = seq
            batch.append(tuple(record))  # type: ignore[arg-type]
            replayed += 1
            if len(batch) >= 1000:
                await self._produce_all(batch, 0, len(batch), first_seq)
                batch = []
                self._producer.poll()
        if batch:
            await self._produce_all(batch, 0, len(batch), first_seq)
        self._count_replayed(replayed)
        return replayed

    def _count_replayed(self, replayed: int) -> None:
        self._held_from_before = -1
        if replayed:
            BUFFER_REPLAYED.inc(replayed)
            log.info("buffered records replayed", records=replayed)
        self.counts.replayed = replayed

    async def run_maintenance(self) -> None:
        """`maintain` every few milliseconds, until cancelled."""
        while True:
            self.maintain(self._clock())
            await asyncio.sleep(_TICK_S)

    def maintain(self, now: float) -> None:
        """Group commit, stall watch, rewind start, redelivery, spill-when-down, metrics."""
        buffer = self._buffer
        producer = self._producer
        delivery = self._delivery
        buffer.maybe_sync(now)
        self._execute(
            delivery.tick(now, in_flight=len(producer), delivered=self.counts.delivered), now
        )
        while (due := delivery.due_redelivery(now)) is not None:
            seq, record = due
            topic, key, value, headers, timestamp_ms = record
            try:
                producer.produce_nowait(
                    topic, key, value, timestamp_ms, partial(self._on_delivery, seq), headers
                )
            except BufferError:
                break  # librdkafka's queue is full: next tick (never block this loop)
            delivery.redelivered()
            self.counts.redelivered += 1
        if now - self._metrics_at >= _METRICS_INTERVAL_S:
            self._metrics_at = now
            self.publish_metrics()
            if not producer.reachable:
                buffer.spill()

    def publish_metrics(self) -> None:
        for topic, count in self._delivered_by_topic.items():
            if count:
                MESSAGES_PRODUCED.labels(self._kind_by_topic.get(topic, "other")).inc(count)
        self._delivered_by_topic.clear()
        self._buffer.update_metrics()

    def close(self) -> None:
        """Persist the buffer (what is unacknowledged stays for the next start)."""
        if self._rewind_task is not None:
            self._rewind_task.cancel()
        self.publish_metrics()
        self._buffer.close()


def _record_of(message: Message) -> Record:
    _, timestamp_ms = message.timestamp()
    headers = message.headers()
    return (
        message.topic() or "",
        message.key(),
        message.value() or b"",
        list(headers) if headers else None,
        timestamp_ms,
    )
