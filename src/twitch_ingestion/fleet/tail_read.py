"""Where Kafka's copy of some channels ends: the tail of the chat and events topics.

A standby taking over a dead producer's channels (`standby.py`) must know which of the
lines it holds already reached Kafka. The producer's progress records say what it handed
its sink, not what got through: records still in its buffer when it died are not in
Kafka (a disk buffer delivers them when that instance starts again). So the standby
reads the topics themselves, from a little before the oldest line whose fate it must
settle to their end, and collects, per channel (the record key), the identities of the
records (`records/identity.py`) among those it holds, and the read time of the last one.

Every partition of both topics is read (a key's partition depends on the producer's
partitioner, which the standby does not assume): the cost is the fleet's whole traffic
for the span read, once per take-over. Blocking; the loop runs it on a thread.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from twitch_ingestion.records.identity import record_identity

__all__ = ["ChannelTail", "TailUnreadableError", "read_tail"]

_BATCH = 5000
_POLL_S = 0.2


class TailUnreadableError(Exception):
    """The tail could not be read to its end in time (Kafka unreachable, slow)."""


@dataclass(slots=True)
class ChannelTail:
    """What the tail holds of one channel."""

    produced: set[str] = field(default_factory=set)
    """Identities of its records among those asked about."""
    last_ms: int | None = None
    """Read time (record timestamp) of its last record in the tail."""


def read_tail(
    consumer_config: Mapping[str, Any],
    topics: Iterable[str],
    wanted: Mapping[str, set[str]],
    from_ms: int,
    timeout_s: float,
) -> dict[str, ChannelTail]:
    """For each channel of `wanted`, the identities of `wanted[channel]` found in
    `topics` from the records timestamped `from_ms` on, up to the end as of the call."""
    conf = dict(consumer_config)
    conf.update(
        {
            "group.id": f"twitch-ingestion-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 100,
        }
    )
    deadline = time.monotonic() + timeout_s
    consumer = Consumer(conf)
    try:
        starts, ends = _bounds(consumer, list(topics), from_ms, deadline)
        tails = {channel: ChannelTail() for channel in wanted}
        if not starts:
            return tails
        consumer.assign(starts)
        remaining = {(tp.topic, tp.partition): ends[(tp.topic, tp.partition)] for tp in starts}
        keys = {channel.encode(): channel for channel in wanted}
        while remaining:
            if time.monotonic() > deadline:
                raise TailUnreadableError(f"{len(remaining)} partitions not read to their end")
            for message in consumer.consume(_BATCH, _POLL_S):
                if message.error() is not None:
                    continue
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if topic is None or partition is None or offset is None:
                    continue
                channel = keys.get(message.key() or b"")
                if channel is not None:
                    tail = tails[channel]
                    _, timestamp = message.timestamp()
                    if tail.last_ms is None or timestamp > tail.last_ms:
                        tail.last_ms = timestamp
                    identity = record_identity(message.key(), message.value())
                    if identity is not None and identity in wanted[channel]:
                        tail.produced.add(identity)
                end = remaining.get((topic, partition))
                if end is not None and offset + 1 >= end:
                    del remaining[(topic, partition)]
        return tails
    except KafkaException as error:
        raise TailUnreadableError(str(error)) from error
    finally:
        consumer.close()


def _bounds(
    consumer: Consumer, topics: list[str], from_ms: int, deadline: float
) -> tuple[list[TopicPartition], dict[tuple[str, int], int]]:
    """Where to start each partition (the first offset at `from_ms`) and where it ends
    now; partitions with nothing from `from_ms` on are left out."""
    wait = max(1.0, deadline - time.monotonic())
    asked: list[TopicPartition] = []
    for topic in topics:
        described = consumer.list_topics(topic, timeout=wait).topics.get(topic)
        if described is None or described.error is not None:
            continue
        asked.extend(TopicPartition(topic, p, from_ms) for p in sorted(described.partitions))
    if not asked:
        return [], {}
    found = consumer.offsets_for_times(asked, timeout=wait)
    starts: list[TopicPartition] = []
    ends: dict[tuple[str, int], int] = {}
    for tp in found:
        if tp.offset < 0:
            continue  # nothing at or after from_ms
        _, high = consumer.get_watermark_offsets(tp, timeout=wait, cached=False)
        if tp.offset >= high:
            continue
        starts.append(TopicPartition(tp.topic, tp.partition, tp.offset))
        ends[(tp.topic, tp.partition)] = high
    return starts, ends
