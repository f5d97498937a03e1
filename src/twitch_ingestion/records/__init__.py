"""The records stage: between the sources and the sink.

A source hands typed source events (`events.py`) to the one `RecordBuilder`
(`builder.py`), made once from the topic settings (`topics.py`), which turns them into
`Record` tuples (`record.py`) — dead letters included (`dead_letters.py`) — for a
`RecordSink`. `identity.py` says which Twitch event each record is, the same for every
reader. Nothing here imports a source or Kafka: both import this.
"""

from __future__ import annotations

from twitch_ingestion.records.dead_letters import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_REASON,
    DLQ_HEADER_RECEIVED_AT,
    DLQ_HEADER_TOPIC,
    DLQ_REASON_KAFKA_REFUSED,
    dead_letter_record,
)
from twitch_ingestion.records.record import Headers, Record, RecordSink
from twitch_ingestion.records.topics import Destination, Topics

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_RECEIVED_AT",
    "DLQ_HEADER_TOPIC",
    "DLQ_REASON_KAFKA_REFUSED",
    "Destination",
    "Headers",
    "Record",
    "RecordSink",
    "Topics",
    "dead_letter_record",
]
