"""The compiled record framer against `FrameEncoder`'s Python: byte-identical frames.

The disk buffer frames every record it writes (`buffer/segment_log.py`); with the
extension (`HOT_PATH`), batches of the common shape — known topics, bytes keys, no
headers — are framed in Rust. Both encoders get the same batches in the same order
(topic ids are state) and must return the same parts, size and topic frames, or raise
the same error.
"""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twitch_ingestion.buffer.segment_log import (
    MAX_BODY_BYTES,
    FrameEncoder,
    decode_record,
    iter_frames,
)
from twitch_ingestion.native import compiled_record_framer
from twitch_ingestion.records import Record

pytestmark = pytest.mark.compiled

EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", "0")) or None


def _encoders() -> tuple[FrameEncoder, FrameEncoder]:
    framer = compiled_record_framer("compiled")
    assert framer is not None
    return FrameEncoder(), FrameEncoder(framer)


def _outcome(encoder: FrameEncoder, batch: list[Record], first_seq: int) -> object:
    try:
        return encoder.encode(batch, first_seq)
    except (ValueError, OverflowError, struct.error, TypeError) as error:
        return (type(error), str(error))


def _check(batches: list[tuple[list[Record], int]]) -> None:
    python, compiled = _encoders()
    for batch, first_seq in batches:
        assert _outcome(compiled, batch, first_seq) == _outcome(python, batch, first_seq)
        assert compiled.all_topic_frames == python.all_topic_frames
        assert compiled.topic_names == python.topic_names


CHAT: Record = ("twitch-chat-messages", b"somechannel", b'{"message":"hi"}', None, 1_700_000)


def test_the_chat_batch_is_framed_in_rust_and_reads_back() -> None:
    python, compiled = _encoders()
    batch = [
        CHAT,
        (*CHAT[:2], b"", None, -5),
        ("twitch-chat-messages", b"", b"x" * 70_000, None, 0),
    ]
    # The first batch defines the topic: the Python encoder frames it (it owns topic ids).
    assert compiled.encode(batch, 7) == python.encode(batch, 7)
    framed = compiled.encode(batch, 10)
    assert framed == python.encode(batch, 10)
    parts, size, new_topics = framed
    assert new_topics == b""
    assert size == sum(map(len, parts))
    data = b"".join(parts)
    frames = list(iter_frames(data, 0))
    assert len(frames) == 3
    decoded = [decode_record(data, offset, end) for _kind, offset, end in frames]
    assert [(r.seq, r.created_at_ms, r.key, r.value, r.headers) for r in decoded] == [
        (10, 1_700_000, b"somechannel", b'{"message":"hi"}', None),
        (11, -5, b"somechannel", b"", None),
        (12, 0, b"", b"x" * 70_000, None),
    ]
    assert parts[1] == struct.pack("<I", zlib.crc32(parts[0]))


def test_batches_of_another_shape_are_left_to_python() -> None:
    framer = compiled_record_framer("compiled")
    assert framer is not None
    known = {"chat": 0}
    assert framer([("chat", b"k", b"v", None, 1)], 0, known) is not None
    for odd in (
        ("events", b"k", b"v", None, 1),  # a topic not defined yet
        ("chat", None, b"v", None, 1),  # no key (a dead letter)
        ("chat", b"k", b"v", [("dlq.reason", b"x")], 1),  # headers
        ("chat", b"k", b"v", None, 2**63),  # beyond i64: struct.pack's error
        ("chat", bytearray(b"k"), b"v", None, 1),  # not bytes
    ):
        assert framer([("chat", b"k", b"v", None, 1), odd], 0, known) is None
    assert framer([("chat", b"k", b"v", None, 1)], 2**64 - 1, known) is not None
    assert framer([("chat", b"k", b"v", None, 1)] * 2, 2**64 - 1, known) is None


def test_a_record_over_the_frame_limit_is_the_same_error() -> None:
    python, compiled = _encoders()
    python.encode([CHAT], 0)
    compiled.encode([CHAT], 0)
    huge: Record = (CHAT[0], b"k", b"v" * (MAX_BODY_BYTES + 1), None, 1)
    assert _outcome(compiled, [CHAT, huge], 1) == _outcome(python, [CHAT, huge], 1)
    assert _outcome(compiled, [huge], 1)[0] is ValueError  # type: ignore[index]


_TOPICS = st.sampled_from(["twitch-chat-messages", "twitch-chat-events", "dlq", "raw", "é"])
_RECORDS = st.tuples(
    _TOPICS,
    st.one_of(st.binary(max_size=40), st.none()),
    st.binary(max_size=300),
    st.one_of(
        st.none(),
        st.lists(
            st.tuples(st.sampled_from(["dlq.reason", "h"]), st.binary(max_size=8)), max_size=3
        ),
    ),
    st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.integers(min_value=2**63, max_value=2**64),
        st.integers(max_value=-(2**63) - 1, min_value=-(2**64)),
    ),
)
_BATCHES = st.lists(
    st.tuples(
        st.lists(_RECORDS, min_size=1, max_size=12),
        st.one_of(st.integers(min_value=0, max_value=2**40), st.just(2**64 - 3)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=EXAMPLES or 300, deadline=None)
@given(_BATCHES)
def test_any_batches_frame_alike_on_both_paths(batches: list[tuple[list[Record], int]]) -> None:
    _check(batches)


@settings(max_examples=EXAMPLES or 200, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=2000)), min_size=1, max_size=50)
)
def test_chat_batches_after_the_first_are_framed_alike(pairs: list[tuple[bytes, bytes]]) -> None:
    batch: list[Record] = [
        ("twitch-chat-messages", key, value, None, 1_700_000_000_000) for key, value in pairs
    ]
    _check([(batch, 0), (batch, len(batch)), (batch, 2**32)])
