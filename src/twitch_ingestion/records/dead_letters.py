"""The dead-letter record: its headers and its one builder.

Two things become dead letters: what a source read and could not turn into a record
(`RecordBuilder.dead_letter`: the exact bytes, the reason), and a record Kafka refused
for good (`kafka/delivery.py`: the same bytes and key, Kafka's error, the topic that
refused it). Both are built here, so consumers of the dead-letter topic read one format.
"""

from __future__ import annotations

from typing import Final

from twitch_ingestion.records.record import Headers, Record

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_RECEIVED_AT",
    "DLQ_HEADER_TOPIC",
    "DLQ_REASON_KAFKA_REFUSED",
    "dead_letter_record",
]

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


def dead_letter_record(
    dlq_topic: str,
    value: bytes,
    reason: str,
    received_at_ms: int,
    *,
    key: bytes | None = None,
    error: str | None = None,
    refused_by: str | None = None,
) -> Record:
    """The dead letter of `value`: on `dlq_topic`, created at `received_at_ms`.

    `error` and `refused_by` (Kafka's error name, the refusing topic) are for records
    Kafka refused; a source's dead letter has neither, and no key.
    """
    headers: Headers = [(DLQ_HEADER_REASON, reason.encode())]
    if error is not None:
        headers.append((DLQ_HEADER_ERROR, error.encode()))
    headers.append((DLQ_HEADER_RECEIVED_AT, str(received_at_ms).encode()))
    if refused_by is not None:
        headers.append((DLQ_HEADER_TOPIC, refused_by.encode()))
    return (dlq_topic, key, value, headers, received_at_ms)
