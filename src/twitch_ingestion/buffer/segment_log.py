"""The durable buffer's on-disk format, sans-I/O: bytes in, frames out.

A buffer directory holds *segment files* named after the sequence number of their first
record (`00000000000000001234.log`) and, beside each, an optional *ack checkpoint*
(`00000000000000001234.acks`). Nothing here opens a file: `DiskBuffer` (`disk.py`) and
`recovery.py` read and write, this module only frames, validates and decodes, so every
corruption case is a unit test with bytes in and frames out.

Segment file::

    header  16 bytes   SEGMENT_MAGIC (8, carries the format version) | segment id (8, random)
    frame*             one per record or topic definition, back to back

Frame (little endian)::

    magic      u16     FRAME_MAGIC, so a reader can find the next frame after damage
    body_len   u32     length of the body that follows
    body       ...     kind u8, then the kind's fields (below)
    crc32      u32     zlib.crc32 of magic + body_len + body

    kind 1, record:  seq u64 | created_at_ms i64 | topic id u16 | key_len i32 (-1: None)
                     | header_count i16 (-1: None) | key | headers | value
                     each header: name_len u16 | value_len u32 | name (UTF-8) | value
    kind 2, topic:   topic id u16 | name (UTF-8)

Topic names repeat on nearly every record, so a record carries a 2-byte topic id and the
segment defines ids with topic frames: all known topics at the start of a segment and again
every `TOPIC_DEFS_EVERY_BATCHES` batches, a new topic in the batch that first uses it.
A reader collects every intact definition in the segment before decoding records, so one
damaged definition costs nothing while any copy survives.

The CRC covers the length field too, so a torn write (a frame cut short by a crash) and a
flipped bit anywhere in a frame are both detected; after a bad frame the reader searches
for the next `FRAME_MAGIC` that starts a frame with a valid CRC ("resync"), like a
Kafka log segment recovery or Filebeat's disk queue.

Ack checkpoint::

    ACKS_MAGIC (8) | segment id (8) | first_seq u64 | count u64 | zlib(ack map) | crc32 u32

The ack map has one byte per record of the segment (1 = acknowledged). Acks arrive out of
order across partitions, so a contiguous low-water mark alone would replay every acked
record above the oldest straggler; the full map costs little because it compresses to
almost nothing in the common shapes (long runs of 1s, periodic holes). The segment id ties
a checkpoint to one incarnation of a segment file, so a stale checkpoint can never mark
records of a newer file with the same name as acknowledged.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from twitch_ingestion.native import RecordFramer

__all__ = [
    "ACKS_SUFFIX",
    "CORRUPT",
    "FRAME_MAGIC_BYTES",
    "FRAME_OVERHEAD",
    "KIND_RECORD",
    "KIND_TOPIC",
    "MAX_BODY_BYTES",
    "RECORD_HEAD",
    "RECORD_OVERHEAD",
    "SEGMENT_HEADER_BYTES",
    "SEGMENT_SUFFIX",
    "TAIL",
    "TOPIC_DEFS_EVERY_BATCHES",
    "DecodedRecord",
    "FrameEncoder",
    "decode_acks",
    "decode_record",
    "decode_topic",
    "encode_acks",
    "encode_headers",
    "encode_segment_header",
    "encode_topic",
    "iter_frames",
    "parse_segment_header",
    "record_frame_sizes",
    "record_seq_and_time",
    "segment_name",
]

SEGMENT_SUFFIX: Final = ".log"
ACKS_SUFFIX: Final = ".acks"

# Version 1 of the format; a future layout gets a new magic and an upgrade path.
SEGMENT_MAGIC: Final = b"TWBUFv1\n"
ACKS_MAGIC: Final = b"TWACKv1\n"
_SEGMENT_HEADER = struct.Struct("<8s8s")
SEGMENT_HEADER_BYTES: Final = _SEGMENT_HEADER.size

FRAME_MAGIC: Final = 0xF7A5
FRAME_MAGIC_BYTES: Final = struct.pack("<H", FRAME_MAGIC)
_FRAME_HEAD = struct.Struct("<HI")
_CRC = struct.Struct("<I")
FRAME_OVERHEAD: Final = _FRAME_HEAD.size + _CRC.size

KIND_RECORD: Final = 1
KIND_TOPIC: Final = 2

# Frame head and a record's fixed fields in one struct, so the hot path packs once.
RECORD_HEAD: Final = struct.Struct("<HIBQqHih")
_RECORD_FIELDS = struct.Struct("<BQqHih")
_RECORD_SEQ_TIME = struct.Struct("<Qq")
# Bytes a record costs on disk besides its key, headers and value.
RECORD_OVERHEAD: Final = RECORD_HEAD.size + _CRC.size
_TOPIC_HEAD = struct.Struct("<HIBH")
_HEADER_HEAD = struct.Struct("<HI")

# Kafka's own default message.max.bytes is 1 MiB; a frame claiming more than 64 MiB is
# damage, not data, and bounding it keeps a flipped length bit from swallowing the file.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_MIN_BODY_BYTES: Final = 1 + 2  # a topic frame with an empty name

TOPIC_DEFS_EVERY_BATCHES: Final = 64

# Statuses `iter_frames` yields besides a frame's kind.
CORRUPT: Final = -1
TAIL: Final = -2

_ACKS_HEAD = struct.Struct("<8s8sQQ")


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record has `first_seq`; sorts by seq."""
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def encode_segment_header(segment_id: bytes) -> bytes:
    return _SEGMENT_HEADER.pack(SEGMENT_MAGIC, segment_id)


def parse_segment_header(data: bytes) -> bytes | None:
    """The segment id, or None when the header is missing or damaged."""
    if len(data) < SEGMENT_HEADER_BYTES:
        return None
    magic, segment_id = _SEGMENT_HEADER.unpack_from(data)
    return segment_id if magic == SEGMENT_MAGIC else None


def encode_topic(topic_id: int, name: str) -> bytes:
    encoded = name.encode()
    head = _TOPIC_HEAD.pack(FRAME_MAGIC, 3 + len(encoded), KIND_TOPIC, topic_id) + encoded
    return head + _CRC.pack(zlib.crc32(head))


def decode_topic(data: bytes, offset: int, end: int) -> tuple[int, str]:
    """(topic id, name) of the valid topic frame at `offset` (as yielded by iter_frames)."""
    _magic, _length, _kind, topic_id = _TOPIC_HEAD.unpack_from(data, offset)
    name = data[offset + _TOPIC_HEAD.size : end - _CRC.size].decode(errors="replace")
    return topic_id, name


# Header names are a handful of constants; cache their encodings, but do not let a caller
# that puts user input in header names grow the cache without bound.
_HEADER_NAME_CACHE: dict[str, bytes] = {}
_HEADER_NAME_CACHE_MAX: Final = 256


def encode_headers(headers: list[tuple[str, bytes]]) -> bytes:
    parts: list[bytes] = []
    cache = _HEADER_NAME_CACHE
    for name, value in headers:
        encoded = cache.get(name)
        if encoded is None:
            encoded = name.encode()
            if len(cache) < _HEADER_NAME_CACHE_MAX:
                cache[name] = encoded
        parts += (_HEADER_HEAD.pack(len(encoded), len(value)), encoded, value)
    return b"".join(parts)


class FrameEncoder:
    """Frames records for one writer; owns the topic ids, which are stable for its lifetime.

    A new encoder (a new process) starts a new segment, so a segment's topic ids always
    come from one encoder.
    """

    __slots__ = ("_all_topics", "_framer", "_topic_ids", "_topic_names")

    def __init__(self, framer: RecordFramer | None = None) -> None:
        self._framer = framer
        """The compiled framer (`native.compiled_record_framer`), or None: Python only."""
        self._topic_ids: dict[str, int] = {}
        self._topic_names: dict[int, str] = {}
        self._all_topics = b""

    @property
    def topic_names(self) -> dict[int, str]:
        return self._topic_names

    @property
    def all_topic_frames(self) -> bytes:
        """A topic frame per known topic: what a new segment starts with."""
        return self._all_topics

    def define_topics(self, topics: Iterator[str] | Sequence[str]) -> None:
        """Give these topics ids now, as `encode` would (records that are not encoded yet
        but will be: the next segment starts with their definitions too)."""
        known = len(self._topic_ids)
        try:
            for topic in topics:
                if topic not in self._topic_ids:
                    self._new_topic(topic, [])
        except BaseException:
            self._forget_topics_from(known)
            raise

    def _new_topic(self, topic: str, new_frames: list[bytes]) -> int:
        topic_id = len(self._topic_ids)
        if topic_id > 0xFFFF:
            raise ValueError(f"more than 65536 distinct topics; {topic!r} cannot be buffered")
        self._topic_ids[topic] = topic_id
        self._topic_names[topic_id] = topic
        frame = encode_topic(topic_id, topic)
        self._all_topics += frame
        new_frames.append(frame)
        return topic_id

    def encode(
        self,
        records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int]],
        first_seq: int,
    ) -> tuple[list[bytes], int, bytes]:
        """Frame `records` with seqs from `first_seq`.

        Returns `(parts, size, new_topic_frames)`: two parts per record (frame without
        CRC, then its CRC), so record `i` is `parts[2*i] + parts[2*i+1]` and a prefix of
        records is a prefix of parts; `size` is their total length; the topic frames for
        topics first seen here must be written before the records.
        """
        known = len(self._topic_ids)
        try:
            return self._encode(records, first_seq)
        except BaseException:
            # A refused batch registers nothing: a topic it defined would otherwise be
            # taken as defined, and its next record written without a definition.
            self._forget_topics_from(known)
            raise

    def _forget_topics_from(self, topic_id: int) -> None:
        for name in [name for name, known in self._topic_ids.items() if known >= topic_id]:
            del self._topic_ids[name]
        for known in [known for known in self._topic_names if known >= topic_id]:
            del self._topic_names[known]
        self._all_topics = b"".join(
            encode_topic(known, name) for known, name in self._topic_names.items()
        )

    def _encode(
        self,
        records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int]],
        first_seq: int,
    ) -> tuple[list[bytes], int, bytes]:
        framer = self._framer
        if framer is not None:
            # The compiled framer takes a batch of known topics, bytes keys and no
            # headers (the chat); it leaves any other batch to the reference below.
            framed = framer(records, first_seq, self._topic_ids)
            if framed is not None:
                parts, size = framed
                if size > MAX_BODY_BYTES:
                    _check_frame_sizes(parts)
                return parts, size, b""
        # The hot path: one struct pack, one concatenation and one CRC per record, with
        # everything it touches in locals.
        parts = []
        append = parts.append
        pack = RECORD_HEAD.pack
        pack_crc = _CRC.pack
        crc32 = zlib.crc32
        fixed = _RECORD_FIELDS.size
        magic = FRAME_MAGIC
        kind = KIND_RECORD
        topic_ids = self._topic_ids
        new_frames: list[bytes] = []
        seq = first_seq
        for topic, key, value, headers, created_at_ms in records:
            topic_id = topic_ids.get(topic)
            if topic_id is None:
                topic_id = self._new_topic(topic, new_frames)
            if key is None:
                key_len = -1
                key_and_headers = b""
            else:
                key_len = len(key)
                key_and_headers = key
            if headers is None:
                header_count = -1
            else:
                header_count = len(headers)
                key_and_headers += encode_headers(headers)
            frame = (
                pack(
                    magic,
                    fixed + len(key_and_headers) + len(value),
                    kind,
                    seq,
                    created_at_ms,
                    topic_id,
                    key_len,
                    header_count,
                )
                + key_and_headers
                + value
            )
            append(frame)
            append(pack_crc(crc32(frame)))
            seq += 1
        size = sum(map(len, parts))
        if size > MAX_BODY_BYTES:
            _check_frame_sizes(parts)
        return parts, size, b"".join(new_frames)


def record_frame_sizes(
    records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int]],
) -> list[int]:
    """The bytes each record's frame takes on disk, exactly what `FrameEncoder.encode`
    writes for it, without encoding it; raises ValueError as `encode` does for a record
    over `MAX_BODY_BYTES`."""
    sizes = []
    fixed = _RECORD_FIELDS.size
    for _topic, key, value, headers, _created_at_ms in records:
        body = fixed + len(value) + (0 if key is None else len(key))
        if headers:
            for name, header_value in headers:
                body += _HEADER_HEAD.size + len(name.encode()) + len(header_value)
        if body > MAX_BODY_BYTES:
            raise ValueError(
                f"a record of {_FRAME_HEAD.size + body} bytes is over the buffer's limit of "
                f"{MAX_BODY_BYTES} bytes (Kafka would refuse it too)"
            )
        sizes.append(_FRAME_HEAD.size + body + _CRC.size)
    return sizes


def _check_frame_sizes(parts: list[bytes]) -> None:
    """Only a large batch can hide a record too large for a frame; find it."""
    for frame in parts[::2]:
        if len(frame) - _FRAME_HEAD.size > MAX_BODY_BYTES:
            raise ValueError(
                f"a record of {len(frame)} bytes is over the buffer's limit of "
                f"{MAX_BODY_BYTES} bytes (Kafka would refuse it too)"
            )


class DecodedRecord(NamedTuple):
    seq: int
    created_at_ms: int
    topic_id: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None


def record_seq_and_time(data: bytes, offset: int) -> tuple[int, int]:
    """(seq, created_at_ms) of the valid record frame at `offset`, without decoding it."""
    seq, created_at_ms = _RECORD_SEQ_TIME.unpack_from(data, offset + _FRAME_HEAD.size + 1)
    return seq, created_at_ms


def decode_record(data: bytes, offset: int, end: int) -> DecodedRecord:
    """Decode the valid record frame at `offset`; raise ValueError if its fields disagree."""
    start = offset + _FRAME_HEAD.size
    body_end = end - _CRC.size
    _kind, seq, created_at_ms, topic_id, key_len, header_count = _RECORD_FIELDS.unpack_from(
        data, start
    )
    pos = start + _RECORD_FIELDS.size
    key: bytes | None = None
    if key_len >= 0:
        key = data[pos : pos + key_len]
        pos += key_len
    headers: list[tuple[str, bytes]] | None = None
    if header_count >= 0:
        headers = []
        for _ in range(header_count):
            name_len, value_len = _HEADER_HEAD.unpack_from(data, pos)
            pos += _HEADER_HEAD.size
            name = data[pos : pos + name_len].decode(errors="replace")
            pos += name_len
            headers.append((name, data[pos : pos + value_len]))
            pos += value_len
    if pos > body_end:
        raise ValueError(f"record {seq} fields overrun its frame by {pos - body_end} bytes")
    return DecodedRecord(seq, created_at_ms, topic_id, key, data[pos:body_end], headers)


def _frame_end(data: bytes, view: memoryview, offset: int, size: int) -> int:
    """End offset of the valid frame at `offset`, or -1 if there is none."""
    if size - offset < _FRAME_HEAD.size + _MIN_BODY_BYTES + _CRC.size:
        return -1
    magic: int
    body_len: int
    magic, body_len = _FRAME_HEAD.unpack_from(data, offset)
    if magic != FRAME_MAGIC or not _MIN_BODY_BYTES <= body_len <= MAX_BODY_BYTES:
        return -1
    body_end = offset + _FRAME_HEAD.size + body_len
    if body_end + _CRC.size > size:
        return -1
    if zlib.crc32(view[offset:body_end]) != _CRC.unpack_from(data, body_end)[0]:
        return -1
    if data[offset + _FRAME_HEAD.size] not in (KIND_RECORD, KIND_TOPIC):
        return -1
    return body_end + _CRC.size


def iter_frames(data: bytes, start: int = SEGMENT_HEADER_BYTES) -> Iterator[tuple[int, int, int]]:
    """Walk a segment's bytes: yield `(kind, offset, end)` per valid frame.

    Damage is reported in place as `(CORRUPT, offset, end)` when valid frames follow it
    (the reader resynchronised on the next frame magic with a valid CRC), or as
    `(TAIL, offset, len(data))` when nothing valid follows: a write torn by a crash,
    or the unwritten end of a file after a power loss.
    """
    view = memoryview(data)
    size = len(data)
    pos = start
    damaged_from = -1
    find = data.find
    while pos < size:
        end = _frame_end(data, view, pos, size)
        if end < 0:
            if damaged_from < 0:
                damaged_from = pos
            pos = find(FRAME_MAGIC_BYTES, pos + 1)
            if pos < 0:
                yield TAIL, damaged_from, size
                return
            continue
        if damaged_from >= 0:
            yield CORRUPT, damaged_from, pos
            damaged_from = -1
        yield data[pos + _FRAME_HEAD.size], pos, end
        pos = end


def encode_acks(segment_id: bytes, first_seq: int, acked: bytes | bytearray) -> bytes:
    body = _ACKS_HEAD.pack(ACKS_MAGIC, segment_id, first_seq, len(acked)) + zlib.compress(acked, 1)
    return body + _CRC.pack(zlib.crc32(body))


def decode_acks(data: bytes, segment_id: bytes, first_seq: int) -> bytes | None:
    """The ack map stored for this segment incarnation, or None if it does not apply."""
    if len(data) < _ACKS_HEAD.size + _CRC.size:
        return None
    if zlib.crc32(memoryview(data)[: -_CRC.size]) != _CRC.unpack_from(data, len(data) - 4)[0]:
        return None
    magic, stored_id, stored_first, count = _ACKS_HEAD.unpack_from(data)
    if magic != ACKS_MAGIC or stored_id != segment_id or stored_first != first_seq:
        return None
    try:
        acked = zlib.decompress(data[_ACKS_HEAD.size : -_CRC.size])
    except zlib.error:
        return None
    return acked if len(acked) == count else None
