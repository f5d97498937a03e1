"""`RecordSink`s for tests: one that keeps every record in order, one that keeps nothing."""

from __future__ import annotations

from twitch_ingestion.records import Record


class RecordingSink:
    """Keeps what it is handed, in order: all records, and the `deliver` calls' lists."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.chunks: list[list[Record]] = []
        self.nowait: list[Record] = []

    async def deliver(self, records: list[Record]) -> None:
        self.chunks.append(records)
        self.records.extend(records)

    def deliver_nowait(self, record: Record) -> None:
        self.nowait.append(record)
        self.records.append(record)


class NullRecordSink:
    """Takes every record and keeps none."""

    async def deliver(self, records: list[Record]) -> None:
        return None

    def deliver_nowait(self, record: Record) -> None:
        return None
