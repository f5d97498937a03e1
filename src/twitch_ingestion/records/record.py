"""What the records stage hands to a sink: Kafka records as plain tuples.

The pipeline is source → records → sink. A source turns what it reads into source
events; the `RecordBuilder` (`builder.py`) turns those into `Record`s, and the source
hands them to a `RecordSink`; the sink (`kafka/sink.py`) buffers and produces records
and never asks where they came from.

A record is a plain tuple, not a class: the hot path builds one per chat line, and a
tuple is the cheapest object CPython makes (`BufferedRecord` in `buffer/protocol.py` is the
same shape with names, for the cold paths). Its identity (`identity.py`) does not travel
in it: see `docs/architecture.md`, "Record identity".
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Headers", "Record", "RecordSink"]

Headers = list[tuple[str, bytes]]
# (topic, key, value, headers, created_at_ms). The key decides the partition, so every
# record of one channel carries the same key and keeps its order.
Record = tuple[str, bytes | None, bytes, Headers | None, int]


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
