"""What a source hands to a sink: Kafka records as plain tuples, and where they go.

The pipeline is source → records → sink. A source (Twitch IRC or EventSub) turns what
it reads into `Record`s with its own encoder (`sources/irc/records.py`,
`sources/eventsub/service_source.py`) and hands them to a `RecordSink`; the sink (`kafka/sink.py`)
buffers and produces records and never asks where they came from. Nothing here
imports a source or Kafka.

A record is a plain tuple, not a class: the hot path builds one per chat line, and a
tuple is the cheapest object CPython makes (`BufferedRecord` in `kafka/buffer.py` is the
same shape with names, for the cold paths).
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_RECEIVED_AT",
    "DLQ_HEADER_TOPIC",
    "DLQ_REASON_KAFKA_REFUSED",
    "Headers",
    "Record",
    "RecordSink",
]

Headers = list[tuple[str, bytes]]
# (topic, key, value, headers, created_at_ms). The key decides the partition, so every
# record of one channel carries the same key and keeps its order.
Record = tuple[str, bytes | None, bytes, Headers | None, int]

# Headers of a dead letter (the record's value is kept as it was: the exact raw line, or
# the refused record's bytes). Consumers of the dead-letter topic read these names.
DLQ_HEADER_REASON: Final = "dlq.reason"
"""Why: a contract violation's reason, or `kafka-refused`."""
DLQ_HEADER_RECEIVED_AT: Final = "dlq.received_at"
"""When the line was read, Unix ms, as ASCII digits."""
DLQ_HEADER_ERROR: Final = "dlq.error"
"""For `kafka-refused`: Kafka's error name (`MSG_SIZE_TOO_LARGE`, …)."""
DLQ_HEADER_TOPIC: Final = "dlq.topic"
"""For `kafka-refused`: the topic that refused the record."""
DLQ_REASON_KAFKA_REFUSED: Final = "kafka-refused"


class RecordSink(Protocol):
    """Where a source hands its records; `KafkaSink` implements it."""

    async def deliver(self, records: list[Record]) -> None:
        """Take one read chunk's records, in order (each key's order is kept).

        May wait for buffer room: the source stops reading until it returns, which is the
        backpressure. The list is the sink's from then on.
        """

    def deliver_nowait(self, record: Record) -> None:
        """Take one record now, without waiting for room (a rare dead letter).

        For callers that cannot await; the record skips the buffer when it is full.
        """
