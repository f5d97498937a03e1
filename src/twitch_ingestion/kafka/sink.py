"""The Kafka sink: Twitch lines in, records on their topics out, nothing dropped.

Per read chunk the source hands over its parsed lines; each is routed (chat message,
community/moderation event, or connection-level line that stays internal), encoded
to JSON and enqueued in librdkafka. Lines that break the contract and records Kafka
refuses for good go to the dead-letter topic with the exact raw bytes; records whose
delivery failed for a transient reason are enqueued again after a pause, so a broker
outage delays records but never loses them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
import structlog
from confluent_kafka import KafkaError, Message

from twitch_ingestion.config import Settings
from twitch_ingestion.kafka.producer import KafkaProducer
from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import (
    DEAD_LETTERS,
    DELIVERY_ERRORS,
    DELIVERY_LATENCY,
    MESSAGES_PARSED,
    MESSAGES_PRODUCED,
)
from twitch_ingestion.twitch.irc import IrcMessage
from twitch_ingestion.twitch.routing import ContractViolation, Destination, route_message

__all__ = ["DLQ_HEADER_ERROR", "DLQ_HEADER_REASON", "DLQ_HEADER_RECEIVED_AT", "KafkaSink"]

log = structlog.get_logger(__name__)

DLQ_HEADER_REASON = "dlq.reason"
DLQ_HEADER_RECEIVED_AT = "dlq.received_at"
DLQ_HEADER_ERROR = "dlq.error"

# Kafka will never accept these records as they are: retrying would loop for ever.
_PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError._MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.INVALID_TOPIC_EXCEPTION,
        KafkaError._INVALID_ARG,
    }
)
# A failed record waits this long before it is enqueued again (librdkafka has already
# retried it `KAFKA_RETRIES` times within `KAFKA_MESSAGE_TIMEOUT_MS`).
_REDELIVERY_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """A record to enqueue (again): everything `produce` needs."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: list[tuple[str, bytes]] | None = None

    @classmethod
    def from_message(cls, message: Message) -> PendingRecord:
        _, timestamp_ms = message.timestamp()
        headers = message.headers()
        return cls(
            message.topic() or "",
            message.key(),
            message.value() or b"",
            timestamp_ms,
            list(headers) if headers else None,
        )


@dataclass(slots=True)
class DeliveryCounts:
    """Totals since start, for the periodic throughput summary and for tests."""

    enqueued: int = 0
    delivered: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    failed: int = 0


class KafkaSink:
    """Routes, encodes and produces every line the Twitch source delivers."""

    def __init__(self, settings: Settings, producer: KafkaProducer) -> None:
        self._producer = producer
        self._topics = {
            Destination.CHAT: settings.kafka_topic_chat_messages,
            Destination.EVENTS: settings.kafka_topic_chat_events,
        }
        self._kind_by_topic = {
            settings.kafka_topic_chat_messages: "chat",
            settings.kafka_topic_chat_events: "events",
        }
        self._raw_topic = settings.kafka_topic_raw
        if self._raw_topic:
            self._kind_by_topic[self._raw_topic] = "raw"
        self._dlq_topic = settings.kafka_topic_dlq
        if self._dlq_topic:
            self._kind_by_topic[self._dlq_topic] = "dlq"
        self._encode = msgspec.json.Encoder().encode
        self._key_cache: dict[str, bytes] = {}
        self._redelivery: deque[tuple[float, PendingRecord]] = deque()
        self._errors = ThrottledLogger(log, interval_s=10.0)
        self.counts = DeliveryCounts()

    @property
    def pending(self) -> int:
        """Records not yet acknowledged: in librdkafka plus waiting for redelivery."""
        return len(self._producer) + len(self._redelivery)

    async def deliver(
        self, messages: list[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        """Produce one read chunk's lines; waits (only) while librdkafka's queue is full."""
        producer = self._producer
        topics = self._topics
        encode = self._encode
        on_delivery = self._on_delivery
        raw_topic = self._raw_topic
        parsed = 0
        for message in messages:
            if raw_topic is not None:
                await producer.produce(
                    raw_topic,
                    self._key(message.channel or ""),
                    message.raw.encode(),
                    received_at_ms,
                    on_delivery,
                )
            try:
                routed = route_message(message, received_at_ms, room_ids)
            except ContractViolation as violation:
                self.dead_letter(message.raw.encode(), violation.reason, received_at_ms)
                continue
            if routed is None:
                continue
            parsed += 1
            value = encode(routed.record)
            try:
                producer.produce_nowait(
                    topics[routed.destination],
                    self._key(routed.key),
                    value,
                    received_at_ms,
                    on_delivery,
                )
            except BufferError:
                await producer.produce(
                    topics[routed.destination],
                    self._key(routed.key),
                    value,
                    received_at_ms,
                    on_delivery,
                )
        self.counts.enqueued += parsed
        if parsed:
            MESSAGES_PARSED.labels("routed").inc(parsed)
        producer.poll()

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        """Keep a line the contract cannot hold: exact bytes, reason and time as headers."""
        DEAD_LETTERS.labels(reason).inc()
        self.counts.dead_lettered += 1
        self._errors.warning("line dead-lettered", reason, reason=reason, size=len(raw))
        if self._dlq_topic is None:
            return
        headers = [
            (DLQ_HEADER_REASON, reason.encode()),
            (DLQ_HEADER_RECEIVED_AT, str(received_at_ms).encode()),
        ]
        self._enqueue(PendingRecord(self._dlq_topic, None, raw, received_at_ms, headers))

    def _enqueue(self, record: PendingRecord, delay_s: float = 0.0) -> None:
        """Hand a record to librdkafka now, or to the redelivery queue if it is full."""
        if not delay_s:
            try:
                self._producer.produce_nowait(
                    record.topic,
                    record.key,
                    record.value,
                    record.timestamp_ms,
                    self._on_delivery,
                    record.headers,
                )
                return
            except BufferError:
                pass
        self._redelivery.append((time.monotonic() + delay_s, record))

    def _key(self, channel: str) -> bytes:
        key = self._key_cache.get(channel)
        if key is None:
            key = self._key_cache[channel] = channel.encode()
        return key

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.counts.delivered += 1
            kind = self._kind_by_topic.get(message.topic() or "", "other")
            MESSAGES_PRODUCED.labels(kind).inc()
            _, timestamp_ms = message.timestamp()
            DELIVERY_LATENCY.observe(max(0.0, time.time() - timestamp_ms / 1000.0))
            return
        self.counts.failed += 1
        DELIVERY_ERRORS.labels(error.name()).inc()
        key = message.key()
        channel = key.decode(errors="replace") if isinstance(key, bytes) else None
        message_id = _message_id(message.value())
        self._errors.warning(
            "kafka delivery failed",
            error.name(),
            error=error.str(),
            code=error.name(),
            topic=message.topic(),
            channel=channel,
            message_id=message_id,
        )
        record = PendingRecord.from_message(message)
        if error.code() not in _PERMANENT_ERRORS:
            self._enqueue(record, _REDELIVERY_DELAY_S)
        elif self._dlq_topic is None or record.topic == self._dlq_topic:
            # Nowhere to put it: keep retrying slowly rather than drop it, and keep saying so.
            self._enqueue(record, _REDELIVERY_DELAY_S * 30)
        else:
            DEAD_LETTERS.labels(error.name()).inc()
            self.counts.dead_lettered += 1
            headers = [
                (DLQ_HEADER_REASON, b"kafka-refused"),
                (DLQ_HEADER_ERROR, error.name().encode()),
                (DLQ_HEADER_RECEIVED_AT, str(record.timestamp_ms).encode()),
            ]
            self._enqueue(
                PendingRecord(self._dlq_topic, record.key, record.value, record.timestamp_ms, headers)
            )

    async def run_redelivery(self) -> None:
        """Enqueue again, in their original order, records whose delivery failed."""
        while True:
            now = time.monotonic()
            while self._redelivery and self._redelivery[0][0] <= now:
                _, record = self._redelivery.popleft()
                self.counts.redelivered += 1
                await self._producer.produce(
                    record.topic,
                    record.key,
                    record.value,
                    record.timestamp_ms,
                    self._on_delivery,
                    record.headers,
                )
            await asyncio.sleep(0.1)


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
