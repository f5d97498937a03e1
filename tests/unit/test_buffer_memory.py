"""MemoryBuffer: holds records until acked, survives a crash only for what was spilled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.buffers import dropped, memory_record, memory_records
from twitch_ingestion.buffer import segment_log
from twitch_ingestion.buffer.config import BufferFullPolicy
from twitch_ingestion.buffer.memory import MemoryBuffer

T0 = 1_700_000_000_000


def opened(directory: Path, **options: object) -> MemoryBuffer:
    buffer = MemoryBuffer(directory, **options)  # type: ignore[arg-type]
    buffer.open()
    return buffer


def test_records_stay_until_acked_and_come_back_for_a_retry(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    first, count = buffer.append_batch(memory_records(0, 10))
    assert (first, count) == (0, 10)
    for seq in (9, 0, 4):
        buffer.ack(seq)
    buffer.ack(4)  # duplicate
    assert buffer.records == 7
    assert list(buffer.unacked()) == [
        (i, memory_record(i)) for i in range(10) if i not in (0, 4, 9)
    ]
    assert buffer.oldest_unacked_age_s(T0 + 1001) == 1.0
    buffer.close()


def test_nothing_touches_the_disk_unless_spilled(tmp_path: Path) -> None:
    directory = tmp_path / "spill"
    buffer = opened(directory)
    buffer.append_batch(memory_records(0, 10))
    buffer.maybe_sync(time.monotonic() + 10)
    buffer.close()
    assert not directory.exists()


def test_a_crash_loses_what_was_only_in_memory(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(memory_records(0, 10))
    del buffer  # a crash: nothing written anywhere
    assert list(opened(tmp_path).replay()) == []


def test_spilled_records_survive_a_crash_and_are_replayed_first(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(memory_records(0, 10))
    buffer.ack(2)
    assert buffer.spill() == 9
    assert buffer.spill() == 0  # nothing new
    buffer.append_batch(memory_records(10, 15))
    assert buffer.spill() == 5
    buffer.append_batch(memory_records(15, 20))  # not spilled: lost in the crash
    for seq in (0, 1, 12):  # acks reach the spilled copy too
        buffer.ack(seq)
    assert buffer.spilled == 11
    buffer.maybe_sync(time.monotonic() + 10)  # the tick: fsync and ack checkpoint
    assert buffer._disk is not None
    buffer._disk.abandon()  # crash

    restarted = opened(tmp_path)
    replayed = list(restarted.replay())
    expected = [i for i in range(15) if i not in (0, 1, 2, 12)]
    assert [r for _seq, r in replayed] == [memory_record(i) for i in expected]
    assert restarted.replayed == len(expected)
    assert restarted.records == len(expected)

    # Replayed seqs and new seqs do not collide, and acks of both land.
    first, _count = restarted.append_batch(memory_records(100, 103))
    assert first > max(seq for seq, _r in replayed)
    for seq, _r in replayed:
        restarted.ack(seq)
    restarted.ack(first)
    assert restarted.records == 2
    assert [r for _s, r in restarted.unacked()] == [memory_record(101), memory_record(102)]
    restarted.close()

    again = opened(tmp_path)
    assert list(again.replay()) == []
    again.close()


def test_a_crash_before_the_ack_checkpoint_repeats_spilled_records_never_loses_them(
    tmp_path: Path,
) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(memory_records(0, 10))
    buffer.spill()
    for seq in range(0, 10, 2):
        buffer.ack(seq)
    assert buffer._disk is not None
    buffer._disk.abandon()
    restarted = opened(tmp_path)
    assert [r for _s, r in restarted.replay()] == [memory_record(i) for i in range(10)]
    restarted.close()


def test_drop_newest_counts_what_does_not_fit_in_memory(tmp_path: Path) -> None:
    buffer = opened(tmp_path, max_bytes=4096, full_policy=BufferFullPolicy.DROP_NEWEST)
    before = dropped("buffer_full")
    appended = buffer.append_batch(memory_records(0, 100, size=100))
    assert 0 < appended.accepted < 100
    assert dropped("buffer_full") == before + 100 - appended.accepted
    assert buffer.bytes <= 4096
    assert not buffer.has_room(300)
    buffer.close()


def test_a_record_too_large_for_a_frame_stays_in_memory_and_the_rest_is_spilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_log, "MAX_BODY_BYTES", 4096)
    buffer = opened(tmp_path)
    big = ("twitch-chat-messages", None, b"x" * 5000, None, T0)
    assert buffer.append_batch([memory_record(0), big, memory_record(2)]).accepted == 3
    assert buffer.spill() == 2  # no ValueError, on this tick or the next
    assert buffer.spill() == 0
    buffer.maybe_sync(time.monotonic() + 5)
    assert [seq for seq, _r in buffer.unacked()] == [0, 1, 2]  # still sent from memory
    buffer.abandon()

    reopened = opened(tmp_path)
    assert [r for _s, r in reopened.replay()] == [memory_record(0), memory_record(2)]
    reopened.close()
