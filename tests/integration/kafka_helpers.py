"""Reading what really reached the broker, for integration tests."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = ["ConsumedRecord", "collect_records", "create_topic", "delete_topics"]


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def collect_records(
    brokers: str,
    topic: str,
    *,
    expected: int,
    timeout_s: float = 60.0,
    settle_s: float = 1.5,
) -> list[ConsumedRecord]:
    """Read `topic` from the beginning until `expected` records arrived (or `timeout_s`),
    then keep reading for `settle_s` more so that extra (duplicate) records show up too."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    consumer.subscribe([topic])
    records: list[ConsumedRecord] = []
    deadline = time.monotonic() + timeout_s
    settle_deadline: float | None = None
    try:
        while True:
            now = time.monotonic()
            if settle_deadline is None and len(records) >= expected:
                settle_deadline = now + settle_s
            if now >= (settle_deadline if settle_deadline is not None else deadline):
                break
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() in (
                        KafkaError.UNKNOWN_TOPIC_OR_PART,
                        KafkaError._PARTITION_EOF,
                    ):
                        continue
                    raise KafkaException(error)
                _, timestamp_ms = message.timestamp()
                records.append(
                    ConsumedRecord(
                        message.topic() or topic,
                        message.partition() or 0,
                        message.offset() or 0,
                        timestamp_ms,
                        message.key(),
                        message.value() or b"",
                        dict(message.headers() or ()),
                    )
                )
    finally:
        consumer.close()
    return records


def create_topic(brokers: str, name: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=30)


def delete_topics(brokers: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [name for name in names if name in existing]
    if not doomed:
        return
    for future in admin.delete_topics(doomed, operation_timeout=30).values():
        with contextlib.suppress(KafkaException):
            future.result(timeout=30)
