"""The buffer's on-disk format, sans-I/O: frames in bytes, damage found in place."""

from __future__ import annotations

import pytest

from twitch_ingestion.buffer.segment_log import (
    CORRUPT,
    KIND_RECORD,
    KIND_TOPIC,
    MAX_BODY_BYTES,
    SEGMENT_HEADER_BYTES,
    TAIL,
    FrameEncoder,
    decode_acks,
    decode_record,
    decode_topic,
    encode_acks,
    encode_segment_header,
    iter_frames,
    parse_segment_header,
    record_seq_and_time,
)

SEGMENT_ID = b"\x01\x02\x03\x04\x05\x06\x07\x08"

Rec = tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int]


def _segment(records: list[Rec], first_seq: int = 0) -> tuple[bytes, FrameEncoder]:
    encoder = FrameEncoder()
    parts, _size, topics = encoder.encode(records, first_seq)
    return encode_segment_header(SEGMENT_ID) + topics + b"".join(parts), encoder


def _records(data: bytes) -> list[tuple[int, bytes]]:
    return [
        (seq_and_time[0], decode_record(data, offset, end).value)
        for kind, offset, end in iter_frames(data)
        if kind == KIND_RECORD
        for seq_and_time in [record_seq_and_time(data, offset)]
    ]


def test_every_field_survives_encoding_including_none_and_empty() -> None:
    records: list[Rec] = [
        ("chat", b"k", b"v", [("a", b"1"), ("b\u00e9", b"")], 11),
        ("events", None, b"", None, 12),
        ("chat", b"", b"\x00\xff", [], -1),
    ]
    data, encoder = _segment(records, first_seq=40)
    frames = list(iter_frames(data))
    assert [kind for kind, _o, _e in frames] == [KIND_TOPIC, KIND_TOPIC] + [KIND_RECORD] * 3
    names = dict(decode_topic(data, offset, end) for _k, offset, end in frames[:2])
    assert names == {0: "chat", 1: "events"} == encoder.topic_names
    decoded = [decode_record(data, offset, end) for _k, offset, end in frames[2:]]
    assert [
        (d.seq, names[d.topic_id], d.key, d.value, d.headers, d.created_at_ms) for d in decoded
    ] == [(40 + i, *record[:4], record[4]) for i, record in enumerate(records)]


def test_encode_reports_the_exact_size_of_the_record_frames() -> None:
    parts, size, _topics = FrameEncoder().encode([("t", b"key", b"x" * 100, None, 0)] * 3, 0)
    assert size == sum(map(len, parts))
    assert len(parts) == 6


def test_a_record_larger_than_any_kafka_message_is_refused_with_its_size() -> None:
    with pytest.raises(ValueError, match="limit"):
        FrameEncoder().encode([("t", None, b"x" * (MAX_BODY_BYTES + 1), None, 0)], 0)


def test_a_topic_is_defined_once_per_encoder() -> None:
    encoder = FrameEncoder()
    _parts, _size, first = encoder.encode([("t", None, b"", None, 0)], 0)
    _parts, _size, second = encoder.encode([("t", None, b"", None, 0)], 1)
    assert first
    assert not second
    assert encoder.all_topic_frames == first


def test_a_torn_last_frame_is_reported_as_tail_at_its_start() -> None:
    data, _encoder = _segment([("t", None, b"record %d" % i, None, 0) for i in range(3)])
    last_offset = list(iter_frames(data))[-1][1]
    for cut in range(last_offset + 1, len(data)):
        frames = list(iter_frames(data[:cut]))
        assert frames[-1] == (TAIL, last_offset, cut)
        assert [kind for kind, _o, _e in frames].count(KIND_RECORD) == 2


def test_damage_between_intact_frames_is_corrupt_and_reading_resumes() -> None:
    data, _encoder = _segment([("t", None, b"record %d" % i, None, 0) for i in range(5)])
    offsets = [offset for kind, offset, _end in iter_frames(data) if kind == KIND_RECORD]
    damaged = bytearray(data)
    damaged[offsets[2] + 20] ^= 0x40
    frames = list(iter_frames(bytes(damaged)))
    assert (CORRUPT, offsets[2], offsets[3]) in frames
    assert [seq for seq, _value in _records(bytes(damaged))] == [0, 1, 3, 4]


def test_a_zeroed_hole_is_skipped_like_any_other_damage() -> None:
    data, _encoder = _segment([("t", None, b"record %d" % i, None, 0) for i in range(6)])
    offsets = [offset for kind, offset, _end in iter_frames(data) if kind == KIND_RECORD]
    holed = data[: offsets[1]] + bytes(offsets[4] - offsets[1]) + data[offsets[4] :]
    assert [seq for seq, _value in _records(holed)] == [0, 4, 5]


def test_a_damaged_length_field_cannot_swallow_the_rest_of_the_segment() -> None:
    data, _encoder = _segment([("t", None, b"record %d" % i, None, 0) for i in range(4)])
    offsets = [offset for kind, offset, _end in iter_frames(data) if kind == KIND_RECORD]
    damaged = bytearray(data)
    damaged[offsets[1] + 2] ^= 0x01  # body_len
    assert [seq for seq, _value in _records(bytes(damaged))] == [0, 2, 3]


def test_segment_header_carries_the_segment_id_or_none_when_damaged() -> None:
    header = encode_segment_header(SEGMENT_ID)
    assert len(header) == SEGMENT_HEADER_BYTES
    assert parse_segment_header(header) == SEGMENT_ID
    assert parse_segment_header(b"X" + header[1:]) is None
    assert parse_segment_header(header[:5]) is None


def test_ack_checkpoint_applies_only_to_its_own_segment_incarnation() -> None:
    acked = bytearray(b"\x01\x01\x00\x01" * 1000)
    stored = encode_acks(SEGMENT_ID, 7, acked)
    assert len(stored) < 200  # runs and periodic holes compress to almost nothing
    assert decode_acks(stored, SEGMENT_ID, 7) == bytes(acked)
    assert decode_acks(stored, b"another!", 7) is None
    assert decode_acks(stored, SEGMENT_ID, 8) is None
    damaged = bytearray(stored)
    damaged[30] ^= 1
    assert decode_acks(bytes(damaged), SEGMENT_ID, 7) is None
    assert decode_acks(stored[:10], SEGMENT_ID, 7) is None
