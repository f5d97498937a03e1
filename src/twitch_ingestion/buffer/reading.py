"""Reading records back from a segment file: what `replay()` and `unacked()` yield."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog

from twitch_ingestion.buffer.protocol import BufferedRecord
from twitch_ingestion.buffer.segment import Segment
from twitch_ingestion.buffer.segment_log import (
    KIND_RECORD,
    decode_record,
    iter_frames,
    record_seq_and_time,
)
from twitch_ingestion.metrics import BUFFER_DROPPED

__all__ = ["read_unacked"]

log = structlog.get_logger(__name__)


def read_unacked(
    segment: Segment, ack: Callable[[int], None]
) -> Iterator[tuple[int, BufferedRecord]]:
    """The records of `segment` unacked when the reader gets to them, in seq order.

    Nothing for a deleted segment. A record that cannot be decoded (or whose topic has no
    intact definition) is logged, counted as `reason="corrupt_frame"` and acked through
    `ack`, so that it is not read again.
    """
    if segment.deleted:
        return
    try:
        data = segment.path.read_bytes()
    except FileNotFoundError:
        return
    last = segment.first_seq - 1
    for kind, offset, end in iter_frames(data):
        if kind != KIND_RECORD:
            continue
        seq, _created_at_ms = record_seq_and_time(data, offset)
        if seq <= last:  # out of place, as `open()` found
            continue
        last = seq
        index = seq - segment.first_seq
        if not 0 <= index < segment.count or segment.acked[index]:
            continue
        record = _decode(segment, data, offset, end, ack)
        if record is not None:
            yield seq, record


def _decode(
    segment: Segment, data: bytes, offset: int, end: int, ack: Callable[[int], None]
) -> BufferedRecord | None:
    try:
        decoded = decode_record(data, offset, end)
    except ValueError as exc:
        problem = str(exc)
        seq, _created_at_ms = record_seq_and_time(data, offset)
    else:
        seq = decoded.seq
        topic = segment.topics.get(decoded.topic_id)
        if topic is not None:
            return BufferedRecord(
                topic, decoded.key, decoded.value, decoded.headers, decoded.created_at_ms
            )
        problem = f"no intact definition of topic id {decoded.topic_id}"
    log.warning("buffer record unreadable", segment=segment.path.name, seq=seq, problem=problem)
    BUFFER_DROPPED.labels(reason="corrupt_frame").inc()
    ack(seq)
    return None
