"""The Kafka sink: Twitch lines in, records on their topics out, nothing dropped.

Per read chunk the source hands over its parsed lines; each is routed (chat message,
community/moderation event, or connection-level line that stays internal) and encoded
to JSON. The chunk's records are appended to the buffer (on disk before anything else,
in `disk` mode) and then enqueued in librdkafka, each with its buffer sequence number;
a delivery report acknowledges that number, which is what lets the buffer forget it.

Lines that break the contract go to the dead-letter topic with the exact raw bytes,
through the buffer like any record. Records Kafka refuses for good (too large, not
authorised) are dead-lettered, or kept and retried slowly when there is no DLQ.

Outages keep each channel's order and add no duplicates. librdkafka never gives a record
up (`KafkaProducer` sets its `message.timeout.ms` to infinite): a record already sent
when the broker died may have been written without the acknowledgement coming back, and
only librdkafka's idempotent retry of that same request (same producer id and sequence)
lets the broker recognise it; a record re-produced after a timeout would be a duplicate.
Instead, when Kafka has acknowledged nothing for `KAFKA_MESSAGE_TIMEOUT_MS` while records
are outstanding, the sink *pauses*: new records only go to the buffer (which is sized
for an outage; librdkafka's queue is not), librdkafka keeps and later delivers what it
holds, and once it holds nothing the sink *rewinds*: it produces every unacknowledged
record from the buffer, in append order, then resumes.

A record that fails for another transient reason (an unknown topic, retries exhausted)
rewinds too, after taking back what librdkafka has queued but not sent, since younger
records would otherwise overtake it; retrying just the failed record, as a per-record
retry queue would, breaks the order. This rare path can duplicate a record librdkafka had
queued for a retry after an acknowledgement was lost.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import msgspec
import structlog
from confluent_kafka import KafkaError, Message

from twitch_ingestion.config import Settings
from twitch_ingestion.kafka.buffer import Appended, Buffer, MemoryBuffer, Record
from twitch_ingestion.kafka.producer import KafkaProducer
from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import (
    BUFFER_REPLAYED,
    DEAD_LETTERS,
    DELIVERY_ERRORS,
    DELIVERY_LATENCY,
    MESSAGES_PARSED,
    MESSAGES_PRODUCED,
)
from twitch_ingestion.twitch.irc import IrcMessage
from twitch_ingestion.twitch.routing import ContractViolation, Destination, route_message

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_RECEIVED_AT",
    "DeliveryCounts",
    "KafkaSink",
]

log = structlog.get_logger(__name__)

DLQ_HEADER_REASON = "dlq.reason"
DLQ_HEADER_RECEIVED_AT = "dlq.received_at"
DLQ_HEADER_ERROR = "dlq.error"

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
# After a stall or a transient failure the rewind waits this long before producing again.
_REDELIVERY_DELAY_S = 1.0
# With no DLQ to take a refused record, it is retried this rarely (and logged each time).
_REFUSED_RETRY_DELAY_S = 30.0
# Maintenance cadence: group commit of the buffer, redelivery, gauges.
_TICK_S = 0.01
# Prometheus observations cost a lock each; on the hot path they are counted locally
# and published once per tick, and delivery latency is sampled one record in this many.
_LATENCY_SAMPLE_EVERY = 8


@dataclass(slots=True)
class DeliveryCounts:
    """Totals since start, for the periodic throughput summary and for tests."""

    enqueued: int = 0
    delivered: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    failed: int = 0
    replayed: int = 0


class KafkaSink:
    """Routes, encodes, buffers and produces every line the Twitch source delivers."""

    def __init__(self, settings: Settings, producer: KafkaProducer, buffer: Buffer) -> None:
        self._producer = producer
        self._buffer = buffer
        self._topics = {
            Destination.CHAT: settings.kafka_topic_chat_messages,
            Destination.EVENTS: settings.kafka_topic_chat_events,
        }
        kinds = {
            settings.kafka_topic_chat_messages: "chat",
            settings.kafka_topic_chat_events: "events",
        }
        self._raw_topic = settings.kafka_topic_raw
        if self._raw_topic:
            kinds[self._raw_topic] = "raw"
        self._dlq_topic = settings.kafka_topic_dlq
        if self._dlq_topic:
            kinds[self._dlq_topic] = "dlq"
        self._kind_by_topic = kinds
        self._delivered_by_topic: dict[str, int] = {}
        self._latency_tick = 0
        self._encode = msgspec.json.Encoder().encode
        self._key_cache: dict[str, bytes] = {}
        self._redelivery: deque[tuple[float, int, Record]] = deque()
        # Buffer seqs waiting in `_redelivery` (refused records retried slowly); a rewind
        # leaves them to it.
        self._parked: set[int] = set()
        # Rewind state (see the module docstring). `_paused`: new records are buffered but
        # not produced. `_purged`: librdkafka's queue was taken back since the last rewind.
        # `_rewind_due`: a rewind is wanted, not before this monotonic time.
        # `_rewind_task`: the rewind producing right now.
        self._paused = False
        self._purged = False
        self._rewind_due: float | None = None
        self._rewind_task: asyncio.Task[None] | None = None
        # Stall watchdog: Kafka has acknowledged nothing for this long while records were
        # outstanding -> rewind. `_progress_at` is when the last acknowledgement (or an
        # empty librdkafka queue) was seen, `_progress_count` the delivered count then.
        self._stall_timeout_s = settings.kafka_message_timeout_ms / 1000
        self._progress_at = time.monotonic()
        self._progress_count = 0
        self._errors = ThrottledLogger(log, interval_s=10.0)
        self.counts = DeliveryCounts()

    @property
    def pending(self) -> int:
        """Records not yet acknowledged by Kafka (in the buffer)."""
        return self._buffer.records

    # --- hot path ---------------------------------------------------------------------

    async def deliver(
        self, messages: list[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        """Buffer and produce one read chunk; waits only for buffer room or queue space."""
        chat_topic = self._topics[Destination.CHAT]
        events_topic = self._topics[Destination.EVENTS]
        chat = Destination.CHAT
        encode = self._encode
        key_for = self._key
        raw_topic = self._raw_topic
        records: list[Record] = []
        append = records.append
        for message in messages:
            if raw_topic is not None:
                append(
                    (
                        raw_topic,
                        key_for(message.channel or ""),
                        message.raw.encode(),
                        None,
                        received_at_ms,
                    )
                )
            try:
                routed = route_message(message, received_at_ms, room_ids)
            except ContractViolation as violation:
                append(
                    self._dead_letter_record(message.raw.encode(), violation.reason, received_at_ms)
                )
                continue
            if routed is not None:
                append(
                    (
                        # An identity test, not a dict lookup: Enum.__hash__ runs in Python.
                        chat_topic if routed.destination is chat else events_topic,
                        key_for(routed.key),
                        encode(routed.record),
                        None,
                        received_at_ms,
                    )
                )
        if not records:
            return
        MESSAGES_PARSED.labels("routed").inc(len(records))
        offset = 0
        for appended in await self._buffer.append_all(records, self._produce_chunk):
            offset += appended.accepted
        self.counts.enqueued += offset
        if offset < len(records):
            # BUFFER_FULL_POLICY=drop_newest and the buffer is full: the buffer counted
            # them (buffer_records_dropped_total{reason="buffer_full"}); say so too.
            self._errors.warning(
                "buffer full; records dropped",
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
        produce = self._producer.produce_nowait
        on_delivery = self._on_delivery
        seq = first_seq
        for index in range(start, start + count):
            if self._paused:
                # Kafka stalled or a record failed: these stay in the buffer, and the
                # rewind produces them after every older record.
                return
            topic, key, value, headers, timestamp_ms = records[index]
            callback = partial(on_delivery, seq)
            while True:
                try:
                    produce(topic, key, value, timestamp_ms, callback, headers)
                    break
                except BufferError:
                    # librdkafka's queue is full. Wait for room while Kafka makes progress;
                    # once the stall watchdog pauses the sink, stop waiting (librdkafka
                    # never times records out, so the room may not come before the broker
                    # does) and let the buffer keep the rest.
                    if self._paused:
                        return
                    await self._producer.wait_for_queue_space()
            seq += 1

    def _key(self, channel: str) -> bytes:
        key = self._key_cache.get(channel)
        if key is None:
            key = self._key_cache[channel] = channel.encode()
        return key

    # --- dead letters -------------------------------------------------------------------

    def _dead_letter_record(self, raw: bytes, reason: str, received_at_ms: int) -> Record:
        DEAD_LETTERS.labels(reason).inc()
        self.counts.dead_lettered += 1
        self._errors.warning("line dead-lettered", reason, reason=reason, size=len(raw))
        headers = [
            (DLQ_HEADER_REASON, reason.encode()),
            (DLQ_HEADER_RECEIVED_AT, str(received_at_ms).encode()),
        ]
        topic = self._dlq_topic
        if topic is None:
            # No DLQ configured: the line is still counted and logged above; keeping it
            # would mean retrying a record that has nowhere to go.
            return ("", None, raw, headers, received_at_ms)
        return (topic, None, raw, headers, received_at_ms)

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        """Keep a line the source could not even decode: exact bytes, reason, time."""
        record = self._dead_letter_record(raw, reason, received_at_ms)
        if not record[0]:
            return
        appended = self._buffer.append_batch([record])
        seq = appended.first_seq if appended.accepted else -1
        self._enqueue(seq, record)

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
        if error.code() == KafkaError._PURGE_QUEUE:
            # Taken back unsent by `_pause_for_rewind`: the rewind produces it again.
            if seq < 0:
                self._enqueue(seq, _record_of(message), _REDELIVERY_DELAY_S)
            return
        self.counts.failed += 1
        DELIVERY_ERRORS.labels(error.name()).inc()
        record = _record_of(message)
        key = record[1]
        self._errors.warning(
            "kafka delivery failed",
            error.name(),
            error=error.str(),
            code=error.name(),
            topic=record[0],
            channel=key.decode(errors="replace") if key is not None else None,
            message_id=_message_id(record[2]),
            retrying=error.code() not in _PERMANENT_ERRORS,
        )
        if error.code() not in _PERMANENT_ERRORS:
            if seq < 0:
                # Not in the buffer (it refused the record), so no rewind would find it.
                self._enqueue(seq, record, _REDELIVERY_DELAY_S)
            else:
                self._pause_for_rewind(failed=True)
        elif self._dlq_topic is None or record[0] == self._dlq_topic:
            # Nowhere to put it: keep it and retry slowly rather than drop it.
            if seq >= 0:
                self._parked.add(seq)
            self._enqueue(seq, record, _REFUSED_RETRY_DELAY_S)
        else:
            DEAD_LETTERS.labels(error.name()).inc()
            self.counts.dead_lettered += 1
            headers = [
                (DLQ_HEADER_REASON, b"kafka-refused"),
                (DLQ_HEADER_ERROR, error.name().encode()),
                (DLQ_HEADER_RECEIVED_AT, str(record[4]).encode()),
                ("dlq.topic", record[0].encode()),
            ]
            # Same seq: the buffer forgets the record once its dead letter is acknowledged.
            self._enqueue(seq, (self._dlq_topic, record[1], record[2], headers, record[4]))

    def _enqueue(self, seq: int, record: Record, delay_s: float = 0.0) -> None:
        """Hand a record to librdkafka now, or to the redelivery queue."""
        if not delay_s:
            topic, key, value, headers, timestamp_ms = record
            try:
                self._producer.produce_nowait(
                    topic, key, value, timestamp_ms, partial(self._on_delivery, seq), headers
                )
                return
            except BufferError:
                pass
        self._redelivery.append((time.monotonic() + delay_s, seq, record))

    def _pause_for_rewind(self, *, failed: bool) -> None:
        """Stop producing new records until a rewind has run.

        `failed`: a record failed, so the younger records librdkafka has queued for its
        partition would reach Kafka before its redelivery; they are taken back (reported
        as _PURGE_QUEUE; they stay in the buffer for the rewind). On a mere stall nothing
        is taken back: librdkafka delivers what it holds, in order, once Kafka answers.
        """
        self._paused = True
        if self._rewind_due is None:
            self._rewind_due = time.monotonic() + _REDELIVERY_DELAY_S
        if failed and not self._purged:
            # Once per rewind: while paused nothing new reaches librdkafka's queue.
            self._purged = True
            self._producer.purge_queued()

    async def _rewind(self) -> None:
        """Produce every unacknowledged record again, in append order, then resume.

        Runs when librdkafka holds nothing of ours, so no record is produced twice at
        once. Records buffered meanwhile are picked up by another pass; the pass that
        finds nothing new runs without awaiting, so nothing can slip in before `deliver`
        produces directly again. A failure during the rewind ends it; the next one
        starts once librdkafka is empty again.
        """
        self._rewind_due = None
        self._purged = False
        produced = 0
        last = -1
        while self._rewind_due is None:
            progressed = False
            for seq, buffered in self._buffer.unacked():
                if seq <= last or seq in self._parked:
                    continue
                if self._rewind_due is not None:
                    break
                topic, key, value, headers, timestamp_ms = buffered
                await self._producer.produce(
                    topic, key, value, timestamp_ms, partial(self._on_delivery, seq), headers
                )
                last = seq
                progressed = True
                produced += 1
            if not progressed:
                break
        if self._rewind_due is None:
            self._paused = False
        self.counts.redelivered += produced
        log.info(
            "kafka redelivery",
            records=produced,
            complete=not self._paused,
        )

    # --- startup and maintenance -------------------------------------------------------------

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
        if replayed:
            BUFFER_REPLAYED.inc(replayed)
            log.info("buffered records replayed", records=replayed)
        self.counts.replayed = replayed
        return replayed

    async def run_maintenance(self) -> None:
        """Group commit, redelivery, spill-when-down and metrics, every few milliseconds."""
        buffer = self._buffer
        last_metrics = 0.0
        while True:
            now = time.monotonic()
            buffer.maybe_sync(now)
            rewind = self._rewind_task
            if rewind is not None and rewind.done():
                if not rewind.cancelled() and rewind.exception() is not None:
                    log.error("kafka redelivery failed", error=repr(rewind.exception()))
                    self._rewind_due = now + _REDELIVERY_DELAY_S
                self._rewind_task = rewind = None
            self._watch_for_stall(now)
            if (
                rewind is None
                and self._rewind_due is not None
                and now >= self._rewind_due
                and not len(self._producer)
            ):
                # A task of its own: a large backlog must not hold up group commit.
                self._rewind_task = asyncio.create_task(self._rewind(), name="kafka-rewind")
            while self._redelivery and self._redelivery[0][0] <= now:
                _, seq, record = self._redelivery[0]
                topic, key, value, headers, timestamp_ms = record
                try:
                    self._producer.produce_nowait(
                        topic, key, value, timestamp_ms, partial(self._on_delivery, seq), headers
                    )
                except BufferError:
                    break  # librdkafka's queue is full: next tick (never block this loop)
                self._redelivery.popleft()
                self._parked.discard(seq)
                self.counts.redelivered += 1
            if now - last_metrics >= 1.0:
                last_metrics = now
                self.publish_metrics()
                if isinstance(buffer, MemoryBuffer) and not self._producer.reachable:
                    buffer.spill()
            await asyncio.sleep(_TICK_S)

    def _watch_for_stall(self, now: float) -> None:
        delivered = self.counts.delivered
        if delivered != self._progress_count or not len(self._producer):
            self._progress_at = now
            self._progress_count = delivered
        elif not self._paused and now - self._progress_at >= self._stall_timeout_s:
            self._errors.warning(
                "kafka delivery stalled",
                "stalled",
                outstanding=len(self._producer),
                stalled_s=round(now - self._progress_at, 1),
                action="new records are kept in the buffer until Kafka answers",
            )
            self._pause_for_rewind(failed=False)

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


def _message_id(value: bytes | None) -> str | None:
    if not value or not value.startswith(b"{"):
        return None
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, dict):
        message_id = decoded.get("message_id")
        return message_id if isinstance(message_id, str) else None
    return None
