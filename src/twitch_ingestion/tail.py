"""`twitch-ingestion tail`: print a topic's records, like the seed's console-consumer check.

It reads with a throwaway consumer group and commits nothing, so it never disturbs
real consumers' offsets.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import Settings
from twitch_ingestion.kafka.producer_config import admin_config

__all__ = ["TailedRecord", "iter_records", "tail"]


@dataclass(frozen=True, slots=True)
class TailedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def iter_records(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    idle_timeout_s: float | None = None,
    max_records: int | None = None,
    stop: threading.Event | None = None,
) -> Iterator[TailedRecord]:
    """Yield records of `topic` until `max_records`, no record for `idle_timeout_s`, or
    `stop` is set."""
    conf = admin_config(configs.kafka_connection(settings))
    conf.update(
        {
            "group.id": f"twitch-ingestion-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.partition.eof": False,
            "allow.auto.create.topics": False,  # tailing a missing topic must not create it
        }
    )
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    seen = 0
    idle = 0.0
    try:
        while max_records is None or seen < max_records:
            if stop is not None and stop.is_set():
                return
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                if idle_timeout_s is not None and idle >= idle_timeout_s:
                    return
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise KafkaException(error)
            idle = 0.0
            seen += 1
            _, timestamp_ms = message.timestamp()
            yield TailedRecord(
                message.topic() or topic,
                message.partition() or 0,
                message.offset() or 0,
                timestamp_ms,
                message.key(),
                message.value(),
                tuple(message.headers() or ()),
            )
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str, timeout_s: float = 10.0) -> int:
    """Total number of records ever written to `topic` (sum of high watermarks)."""
    conf = admin_config(configs.kafka_connection(settings))
    conf["group.id"] = f"twitch-ingestion-offsets-{uuid.uuid4()}"
    consumer = Consumer(conf)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        partitions = metadata.topics[topic].partitions
        total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s
            )
            total += high - low
        return total
    finally:
        consumer.close()


def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    idle_timeout_s: float | None,
    max_records: int | None,
) -> int:
    """Print `key<TAB>value` per record to stdout; returns the number printed.

    Says on stderr which topic it waits on first: an empty topic (a demo that wrote
    elsewhere, a typo) otherwise looks exactly like a hung command.
    """
    start = "from the beginning" if from_beginning else "new records only"
    print(
        f"tail: reading topic {topic!r} on {settings.kafka_brokers} ({start}); "
        "waiting for records, Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    printed = 0
    out = sys.stdout
    for record in iter_records(
        settings,
        topic,
        from_beginning=from_beginning,
        idle_timeout_s=idle_timeout_s,
        max_records=max_records,
    ):
        key = record.key.decode(errors="replace") if record.key is not None else "null"
        value = record.value.decode(errors="replace") if record.value is not None else "null"
        out.write(f"{key}\t{value}\n")
        out.flush()
        printed += 1
    return printed
