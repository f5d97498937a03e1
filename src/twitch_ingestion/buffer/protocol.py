"""What the Kafka sink (and the benchmarks) see of a buffer: `Buffer` and its results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import NamedTuple, Protocol

from twitch_ingestion.records import Headers, Record

__all__ = ["Appended", "Buffer", "BufferedRecord", "OnChunk"]


class BufferedRecord(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None
    created_at_ms: int


class Appended(NamedTuple):
    """Result of `append_batch`: records `[0, accepted)` got seqs `first_seq + i`."""

    first_seq: int
    accepted: int


# `append_all`'s hand-over: (the records of one append, what the buffer took of them).
OnChunk = Callable[[Sequence[Record], Appended], Awaitable[None]]


class Buffer(Protocol):
    """What the Kafka sink (and the benchmarks) use of a buffer; `DiskBuffer` and
    `MemoryBuffer` satisfy it."""

    def open(self) -> None: ...

    def append_batch(self, records: Sequence[Record]) -> Appended: ...

    async def append_all(
        self, records: Sequence[Record], on_chunk: OnChunk | None = None
    ) -> list[Appended]: ...

    def ack(self, seq: int) -> None: ...

    def replay(self) -> Iterator[tuple[int, BufferedRecord]]: ...

    def unacked(self) -> Iterator[tuple[int, BufferedRecord]]: ...

    def maybe_sync(self, now: float | None = None) -> bool: ...

    def spill(self) -> int:
        """Make what is only in memory survive a crash (Kafka is down); returns how
        many records were written. 0 for a buffer that writes to disk by itself."""
        ...

    def close(self) -> None: ...

    def update_metrics(self, now_ms: int | None = None) -> None: ...

    @property
    def records(self) -> int: ...
