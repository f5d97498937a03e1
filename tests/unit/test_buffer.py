"""DiskBuffer: nothing read from Twitch is lost across restarts, crashes and damage."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import CapturingLogger

from tests.support import buffers
from tests.support.buffers import (
    EVENTS,
    PROPERTY_SETTINGS,
    T0,
    TOPIC,
    ack_some,
    dropped,
    record,
    records,
    sample,
    segment_files,
    warnings_named,
)
from tests.support.loop_watchdog import loop_watchdog
from twitch_ingestion import component_configs as configs
from twitch_ingestion.buffer import segment_log
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.errors import BufferLockedError, DurableBufferError
from twitch_ingestion.buffer.memory import MemoryBuffer
from twitch_ingestion.buffer.modes import buffer_from_config
from twitch_ingestion.buffer.protocol import Buffer, BufferedRecord
from twitch_ingestion.buffer.segment_log import CORRUPT, KIND_RECORD, iter_frames
from twitch_ingestion.config import BufferFullPolicy, BufferMode, load_settings

# The fixture, shared by the buffer tests: a name here, so pytest finds it.
captured_log = buffers.captured_log


def opened(directory: Path, **options: object) -> DiskBuffer:
    buffer = DiskBuffer(directory, **options)  # type: ignore[arg-type]
    buffer.open()
    return buffer


def replay_all(buffer: Buffer) -> list[tuple[int, BufferedRecord]]:
    return list(buffer.replay())


def test_append_then_replay_returns_every_field_in_append_order(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    appended = [buffer.append_batch(records(0, 30)), buffer.append_batch(records(30, 31))]
    assert [tuple(a) for a in appended] == [(0, 30), (30, 1)]
    buffer.close()

    reopened = opened(tmp_path)
    assert replay_all(reopened) == [(i, record(i)) for i in range(31)]
    assert reopened.replayed == 31
    reopened.close()


def test_a_batch_is_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 1))  # creates the segment: header write
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes | memoryview) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    buffer.append_batch(records(1, 500))
    assert len(writes) == 1
    buffer.close()


def test_seqs_keep_increasing_across_restarts(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 10))
    buffer.close()
    reopened = opened(tmp_path)
    assert reopened.append_batch(records(10, 12)).first_seq == 10
    reopened.close()


def test_an_empty_batch_is_accepted_and_uses_no_seq(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    assert tuple(buffer.append_batch([])) == (0, 0)
    assert buffer.append_batch(records(0, 1)).first_seq == 0
    buffer.close()


# --- acks ----------------------------------------------------------------------------


def test_out_of_order_acks_then_reopen_replays_only_the_unacked_in_order(
    tmp_path: Path,
) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 100))
    acked = set(random.Random(7).sample(range(100), 60))
    for seq in sorted(acked, key=lambda s: (s % 6, -s)):  # six partitions, each backwards
        buffer.ack(seq)
    buffer.ack(3)  # duplicates and unknown seqs are harmless
    buffer.ack(10_000)
    buffer.ack(-5)
    assert buffer.records == 40 - (0 if 3 in acked else 1)
    buffer.close()

    reopened = opened(tmp_path)
    expected = [i for i in range(100) if i not in acked and i != 3]
    assert [seq for seq, _record in replay_all(reopened)] == expected
    reopened.close()


def test_replayed_records_are_acked_with_the_seq_replay_gave_them(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 20))
    buffer.close()
    reopened = opened(tmp_path)
    for seq, _record in reopened.replay():
        reopened.ack(seq)
    reopened.append_batch(records(20, 25))
    reopened.close()
    again = opened(tmp_path)
    assert [seq for seq, _record in replay_all(again)] == [20, 21, 22, 23, 24]
    again.close()


def test_replay_skips_records_acked_while_replaying_and_runs_once(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 10))
    buffer.close()
    reopened = opened(tmp_path)
    seen = []
    for seq, _record in reopened.replay():
        seen.append(seq)
        reopened.ack(seq + 1)
    assert seen == [0, 2, 4, 6, 8]
    assert replay_all(reopened) == []
    reopened.close()


def test_unacked_reads_back_everything_not_yet_acked_including_the_active_segment(
    tmp_path: Path,
) -> None:
    buffer = opened(tmp_path, segment_bytes=1024, max_bytes=1 << 20)
    for start in range(0, 60, 6):
        buffer.append_batch(records(start, start + 6))
    for seq in range(0, 60, 2):
        buffer.ack(seq)
    assert list(buffer.unacked()) == [(i, record(i)) for i in range(1, 60, 2)]
    buffer.close()


# --- segments ------------------------------------------------------------------------


def test_segments_rotate_at_segment_bytes_and_go_once_fully_acked(tmp_path: Path) -> None:
    buffer = opened(tmp_path, segment_bytes=2048, max_bytes=1 << 20, fsync_ms=0)
    for start in range(0, 200, 10):
        buffer.append_batch(records(start, start + 10))
    files = segment_files(tmp_path)
    assert len(files) > 3
    assert all(path.stat().st_size <= 2048 for path in files)
    assert buffer.bytes == sum(path.stat().st_size for path in files)

    first_two = [int(path.stem) for path in files[:3]]
    for seq in range(first_two[0], first_two[2]):  # the first two segments, backwards
        buffer.ack(first_two[2] - 1 - (seq - first_two[0]))
    buffer.maybe_sync()
    assert segment_files(tmp_path) == files[2:]
    assert buffer.bytes == sum(path.stat().st_size for path in files[2:])

    for seq in range(200):
        buffer.ack(seq)
    buffer.maybe_sync()
    assert segment_files(tmp_path) == files[-1:]  # the active one stays until close
    assert buffer.records == 0
    buffer.close()
    assert segment_files(tmp_path) == []
    assert not list(tmp_path.glob("*.acks"))


def test_a_segment_never_exceeds_a_quarter_of_the_cap(tmp_path: Path) -> None:
    buffer = opened(tmp_path, segment_bytes=1 << 30, max_bytes=16 * 1024)
    for start in range(0, 200, 10):
        buffer.append_batch(records(start, start + 10))
    assert all(path.stat().st_size <= 4096 for path in segment_files(tmp_path))
    buffer.close()


# --- damage --------------------------------------------------------------------------


def _last_record_frame(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return [(offset, end) for kind, offset, end in iter_frames(data) if kind == KIND_RECORD][-1]


def test_a_tail_cut_at_every_offset_of_the_last_frame_keeps_every_intact_record(
    tmp_path: Path, captured_log: CapturingLogger
) -> None:
    source = tmp_path / "source"
    buffer = opened(source)
    buffer.append_batch(records(0, 5))
    buffer.close()
    [segment] = segment_files(source)
    original = segment.read_bytes()
    last_offset, last_end = _last_record_frame(segment)
    assert last_end == len(original)

    for cut in range(last_offset, last_end):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / segment.name).write_bytes(original[:cut])
        before = dropped("corrupt_tail")
        captured_log.calls.clear()

        reopened = opened(directory)
        assert replay_all(reopened) == [(i, record(i)) for i in range(4)]
        reopened.close()

        warnings = warnings_named(captured_log, "buffer segment tail cut")
        if cut == last_offset:  # a clean frame boundary: nothing torn
            assert warnings == []
            assert dropped("corrupt_tail") == before
        else:
            assert warnings == [
                {
                    "segment": segment.name,
                    "offset": last_offset,
                    "bytes_cut": cut - last_offset,
                    "records_lost": 1,
                }
            ]
            assert dropped("corrupt_tail") == before + 1
        assert (directory / segment.name).stat().st_size == last_offset
        shutil.rmtree(directory)


def test_a_cut_tail_is_not_reported_twice(tmp_path: Path, captured_log: CapturingLogger) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 5))
    buffer.close()
    [segment] = segment_files(tmp_path)
    os.truncate(segment, segment.stat().st_size - 3)
    opened(tmp_path).close()
    captured_log.calls.clear()
    reopened = opened(tmp_path)
    assert len(replay_all(reopened)) == 4
    assert warnings_named(captured_log, "buffer segment tail cut") == []
    reopened.close()


def test_a_flipped_byte_in_the_middle_is_skipped_counted_and_later_records_replayed(
    tmp_path: Path, captured_log: CapturingLogger
) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 20))
    buffer.close()
    [segment] = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    frames = [(o, e) for kind, o, e in iter_frames(bytes(data)) if kind == KIND_RECORD]
    offset, end = frames[7]
    data[offset + 30] ^= 0xFF
    segment.write_bytes(bytes(data))
    before = dropped("corrupt_frame")

    reopened = opened(tmp_path)
    assert replay_all(reopened) == [(i, record(i)) for i in range(20) if i != 7]
    assert dropped("corrupt_frame") == before + 1
    assert warnings_named(captured_log, "buffer segment damaged") == [
        {
            "segment": segment.name,
            "offset": offset,
            "bytes_skipped": end - offset,
            "records_lost": 1,
        }
    ]
    # The damaged record counts as gone, so the segment can still be deleted.
    for seq in range(20):
        if seq != 7:
            reopened.ack(seq)
    reopened.maybe_sync()
    assert segment not in segment_files(tmp_path)
    reopened.close()


def test_a_zeroed_hole_loses_exactly_the_records_in_it(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 30))
    buffer.close()
    [segment] = segment_files(tmp_path)
    data = segment.read_bytes()
    frames = [(o, e) for kind, o, e in iter_frames(data) if kind == KIND_RECORD]
    start, stop = frames[10][0], frames[15][0] + 3  # records 10..14 and the head of 15
    segment.write_bytes(data[:start] + bytes(stop - start) + data[stop:])
    before = dropped("corrupt_frame")
    reopened = opened(tmp_path)
    assert [seq for seq, _r in replay_all(reopened)] == [*range(10), *range(16, 30)]
    assert dropped("corrupt_frame") == before + 6
    reopened.close()


def test_a_damaged_segment_header_only_costs_the_ack_checkpoint(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 10))
    for seq in range(5):
        buffer.ack(seq)
    buffer.close()
    [segment] = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    data[0] ^= 0xFF
    segment.write_bytes(bytes(data))
    reopened = opened(tmp_path)
    # Without a trustworthy id the checkpoint is ignored: duplicates, never loss.
    assert [seq for seq, _r in replay_all(reopened)] == list(range(10))
    reopened.close()


def test_one_damaged_topic_definition_is_covered_by_its_repeats(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    for i in range(70):  # topic definitions repeat every 64 batches
        buffer.append_batch([("only-topic", None, b"value %d" % i, None, T0)])
    buffer.close()
    [segment] = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    first_topic_frame = next(o for kind, o, _e in iter_frames(bytes(data)) if kind != KIND_RECORD)
    data[first_topic_frame + 8] ^= 0x01
    segment.write_bytes(bytes(data))
    reopened = opened(tmp_path)
    replayed = replay_all(reopened)
    assert [r.value for _s, r in replayed] == [b"value %d" % i for i in range(70)]
    assert {r.topic for _s, r in replayed} == {"only-topic"}
    reopened.close()


def test_a_record_whose_topic_is_unknowable_is_dropped_not_fatal(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 3))
    buffer.close()
    [segment] = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    for kind, offset, _end in list(iter_frames(bytes(data))):
        if kind != KIND_RECORD:
            data[offset + 8] ^= 0x01
    segment.write_bytes(bytes(data))
    before = dropped("corrupt_frame")
    reopened = opened(tmp_path)
    assert replay_all(reopened) == []
    assert dropped("corrupt_frame") == before + 3
    reopened.close()


def test_garbage_files_in_the_directory_do_not_stop_the_buffer(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000000.log").write_bytes(b"\x00" * 10)
    (tmp_path / "00000000000000000005.log").write_bytes(os.urandom(3000))
    (tmp_path / "notes.log").write_text("not a segment")
    (tmp_path / "00000000000000000009.acks").write_bytes(b"stale")
    buffer = opened(tmp_path)
    assert replay_all(buffer) == []
    buffer.append_batch(records(0, 3))
    buffer.close()
    reopened = opened(tmp_path)
    assert [r for _s, r in replay_all(reopened)] == [record(i) for i in range(3)]
    reopened.close()


# --- capacity ------------------------------------------------------------------------


def test_drop_newest_keeps_what_fits_and_counts_the_rest(tmp_path: Path) -> None:
    buffer = opened(
        tmp_path, max_bytes=8192, segment_bytes=2048, full_policy=BufferFullPolicy.DROP_NEWEST
    )
    before = dropped("buffer_full")
    accepted = 0
    for start in range(0, 400, 20):
        accepted += buffer.append_batch(records(start, start + 20, size=100)).accepted
    assert 0 < accepted < 400
    assert dropped("buffer_full") == before + 400 - accepted
    assert buffer.bytes <= 8192
    assert not buffer.has_room(200)
    buffer.close()
    reopened = opened(tmp_path)
    assert [r for _s, r in replay_all(reopened)] == [record(i, 100) for i in range(accepted)]
    reopened.close()


def test_an_empty_buffer_takes_a_record_larger_than_the_cap(tmp_path: Path) -> None:
    buffer = opened(tmp_path, max_bytes=1024, full_policy=BufferFullPolicy.BLOCK)
    big = [("t", None, b"x" * 5000, None, T0)]
    assert buffer.append_batch(big).accepted == 1
    assert buffer.append_batch(big).accepted == 0
    buffer.ack(0)
    assert buffer.append_batch(big).accepted == 1
    buffer.close()


async def test_block_accepts_what_fits_and_wait_for_room_resolves_after_acks(
    tmp_path: Path,
) -> None:
    buffer = opened(tmp_path, max_bytes=8192, segment_bytes=2048)
    before = dropped("buffer_full")
    accepted = 0
    while (appended := buffer.append_batch(records(accepted, accepted + 10, size=100))).accepted:
        accepted += appended.accepted
    assert 30 < accepted < 60

    waiter = asyncio.create_task(buffer.wait_for_room(1000))
    await asyncio.sleep(0)
    assert not waiter.done()
    for seq in range(accepted // 2):
        buffer.ack(seq)
        await asyncio.sleep(0)
    await asyncio.wait_for(waiter, 1)
    assert buffer.has_room(1000)
    assert dropped("buffer_full") == before  # block never drops
    buffer.close()


def test_a_refused_batch_does_not_lose_the_definition_of_its_new_topic(tmp_path: Path) -> None:
    buffer = opened(
        tmp_path, max_bytes=4096, segment_bytes=1024, full_policy=BufferFullPolicy.DROP_NEWEST
    )
    for _ in range(3):  # three segments of one large record each
        buffer.append_batch([(TOPIC, None, b"x" * 1000, None, T0)])
    buffer.append_batch([(TOPIC, None, b"y" * 50, None, T0)])  # a fourth, mostly empty
    late = [("late-topic", None, b"z" * 700, None, T0)]
    assert buffer.append_batch(late).accepted == 0  # over the cap, fits the segment
    buffer.ack(0)  # frees the first segment
    assert buffer.append_batch(late).accepted == 1
    assert len(segment_files(tmp_path)) == 3  # written to the same (fourth) segment
    buffer.close()
    reopened = opened(tmp_path)
    assert [r.topic for _s, r in replay_all(reopened)][-1] == "late-topic"
    reopened.close()


def test_a_failed_write_is_taken_back_whole_and_raised_with_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An I/O error, not a full disk (that one holds records: test_buffer_disk_full.py).
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 5))
    [segment] = segment_files(tmp_path)
    size_before = segment.stat().st_size
    real_write = os.write
    calls = 0

    def failing_disk(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "write", failing_disk)
    with pytest.raises(DurableBufferError, match=r"Input/output error.*BUFFER_DIR"):
        buffer.append_batch([("new-topic", None, b"v", None, T0), *records(5, 10)])
    monkeypatch.setattr(os, "write", real_write)
    assert segment.stat().st_size == size_before
    assert buffer.append_batch([("new-topic", None, b"w", None, T0)]).first_seq == 5
    buffer.close()
    reopened = opened(tmp_path)
    assert [(s, r.topic) for s, r in replay_all(reopened)][-2:] == [(4, TOPIC), (5, "new-topic")]
    reopened.close()


# --- checkpoints and crashes -------------------------------------------------------


def test_the_ack_checkpoint_survives_a_crash_after_it_was_written(tmp_path: Path) -> None:
    buffer = opened(tmp_path, checkpoint_interval_ms=1000)
    buffer.append_batch(records(0, 50))
    for seq in range(0, 50, 2):
        buffer.ack(seq)
    buffer.maybe_sync(time.monotonic() + 2)  # the tick that writes the checkpoint
    for seq in range(1, 10, 2):  # acked after the checkpoint: may come back
        buffer.ack(seq)
    buffer.abandon()

    reopened = opened(tmp_path)
    assert [seq for seq, _r in replay_all(reopened)] == list(range(1, 50, 2))
    reopened.close()


def test_a_crash_without_close_loses_nothing_that_was_appended(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from twitch_ingestion.buffer.disk import DiskBuffer
        buffer = DiskBuffer(Path({str(tmp_path)!r}), segment_bytes=4096, fsync_ms=10_000)
        buffer.open()
        for start in range(0, 300, 30):
            batch = [("topic", b"k", b"value %d" % i, None, i) for i in range(start, start + 30)]
            buffer.append_batch(batch)
        for seq in range(0, 300, 3):
            buffer.ack(seq)
        os._exit(9)  # no close(), no fsync, no checkpoint: a kill -9
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert result.returncode == 9
    buffer = opened(tmp_path)
    replayed = dict(buffer.replay())
    unacked = [seq for seq in range(300) if seq % 3]
    assert set(unacked) <= set(replayed)
    assert all(replayed[seq].value == b"value %d" % seq for seq in replayed)
    buffer.close()


def test_a_torn_batch_from_a_crash_mid_write_is_cut_and_the_buffer_carries_on(
    tmp_path: Path,
) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 10))
    buffer.append_batch(records(10, 15))
    buffer.abandon()
    [segment] = segment_files(tmp_path)
    frames = [
        offset for kind, offset, _e in iter_frames(segment.read_bytes()) if kind == KIND_RECORD
    ]
    os.truncate(segment, frames[12] + 5)  # the kill landed inside record 12
    reopened = opened(tmp_path)
    assert [seq for seq, _r in replay_all(reopened)] == list(range(12))
    assert reopened.append_batch(records(12, 14)).first_seq == 12
    reopened.close()
    again = opened(tmp_path)
    assert [r for _s, r in replay_all(again)] == [record(i) for i in range(14)]
    again.close()


def test_intact_frames_out_of_seq_order_are_ignored(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 10))
    buffer.close()
    [segment] = segment_files(tmp_path)
    data = segment.read_bytes()
    segment.write_bytes(data + data[16:])  # every frame again: seqs 0..9 a second time
    reopened = opened(tmp_path)
    assert [seq for seq, _r in replay_all(reopened)] == list(range(10))
    reopened.close()


@PROPERTY_SETTINGS
@given(data=st.data())
def test_reopen_replays_every_unacked_record_and_nothing_acked_before_a_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("property")
    buffer = opened(directory, segment_bytes=1024, max_bytes=1 << 24)
    appended: list[int] = []
    acked: set[int] = set()
    acked_at_checkpoint: set[int] = set()
    clock = time.monotonic()
    for size in data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=10), label="batches"):
        first, count = buffer.append_batch(records(len(appended), len(appended) + size))
        appended.extend(range(first, first + count))
        ack_some(buffer, data, appended, acked)
        if data.draw(st.booleans(), label="tick"):
            clock += 10
            buffer.maybe_sync(clock)
            acked_at_checkpoint = set(acked)
    clean = data.draw(st.booleans(), label="close")
    if clean:
        buffer.close()
    else:
        buffer.abandon()

    reopened = opened(directory)
    replayed = replay_all(reopened)
    reopened.close()
    seqs = [seq for seq, _record in replayed]
    assert seqs == sorted(seqs)
    assert all(r == record(seq) for seq, r in replayed)
    assert set(appended) - acked <= set(seqs)  # no loss
    assert not set(seqs) & acked_at_checkpoint  # checkpointed acks stay acked
    if clean:
        assert set(seqs) == set(appended) - acked
    shutil.rmtree(directory)


# --- lifecycle, stats, metrics -----------------------------------------------------


def test_a_second_process_cannot_open_the_same_directory(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    with pytest.raises(BufferLockedError, match="BUFFER_DIR"):
        opened(tmp_path)
    buffer.close()
    opened(tmp_path).close()


def test_close_is_idempotent_and_a_closed_buffer_refuses_appends(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 3))
    buffer.close()
    buffer.close()
    with pytest.raises(DurableBufferError, match="not open"):
        buffer.append_batch(records(3, 4))
    assert buffer.maybe_sync() is False


def test_fsync_is_grouped_by_fsync_ms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[int] = []
    monkeypatch.setattr(os, "fdatasync", syncs.append)
    buffer = opened(tmp_path, fsync_ms=50)
    now = time.monotonic()
    buffer.append_batch(records(0, 10))
    assert buffer.maybe_sync(now + 0.001) is False or len(syncs) == 1
    buffer.maybe_sync(now + 1)
    synced = len(syncs)
    assert synced >= 1
    assert buffer.maybe_sync(now + 2) is False  # nothing new written
    buffer.close()

    every_batch = opened(tmp_path / "zero", fsync_ms=0)
    before = len(syncs)
    for start in range(0, 30, 10):
        every_batch.append_batch(records(start, start + 10))
    assert len(syncs) - before == 3
    every_batch.close()


def test_stats_and_metrics_follow_appends_acks_and_replay(tmp_path: Path) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 10))
    assert buffer.records == 10
    assert buffer.oldest_unacked_age_s(T0 + 2500) == pytest.approx(2.5)
    for seq in range(4):
        buffer.ack(seq)
    assert buffer.records == 6
    assert buffer.oldest_unacked_age_s(T0 + 2500) <= 2.5
    buffer.update_metrics(T0 + 5000)
    assert sample("twitch_ingestion_buffer_records") == 6
    assert sample("twitch_ingestion_buffer_bytes") == buffer.bytes > 0
    assert 0 < sample("twitch_ingestion_buffer_oldest_unacked_age_seconds") <= 5
    buffer.close()

    replayed_before = sample("twitch_ingestion_buffer_records_replayed_total")
    reopened = opened(tmp_path)
    assert len(replay_all(reopened)) == 6
    assert reopened.replayed == 6
    assert sample("twitch_ingestion_buffer_records_replayed_total") == replayed_before + 6
    for seq in range(10):
        reopened.ack(seq)
    assert reopened.records == 0
    assert reopened.oldest_unacked_age_s(T0 + 9999) == 0.0
    reopened.close()


def test_buffer_from_config_follows_buffer_mode(tmp_path: Path) -> None:
    disk = load_settings(twitch_channel="a", buffer_dir=tmp_path, buffer_segment_bytes=4096)
    memory = load_settings(twitch_channel="a", buffer_dir=tmp_path, buffer_mode=BufferMode.MEMORY)
    assert isinstance(buffer_from_config(configs.buffer_config(disk)), DiskBuffer)
    assert isinstance(buffer_from_config(configs.buffer_config(memory)), MemoryBuffer)
    for buffer in (
        buffer_from_config(configs.buffer_config(disk)),
        buffer_from_config(configs.buffer_config(memory)),
    ):
        checked: Buffer = buffer  # both satisfy the protocol (mypy checks this line)
        checked.open()
        checked.append_batch(records(0, 2))
        checked.close()


def test_damage_in_the_middle_is_counted_at_the_first_start_only(
    tmp_path: Path, captured_log: CapturingLogger
) -> None:
    buffer = opened(tmp_path)
    buffer.append_batch(records(0, 20))
    buffer.close()
    [segment] = segment_files(tmp_path)
    data = bytearray(segment.read_bytes())
    frames = [(o, e) for kind, o, e in iter_frames(bytes(data)) if kind == KIND_RECORD]
    data[frames[7][0] + 30] ^= 0xFF
    segment.write_bytes(bytes(data))
    before = dropped("corrupt_frame")

    for _start in range(3):  # nothing acked: every start replays the same records
        reopened = opened(tmp_path)
        assert replay_all(reopened) == [(i, record(i)) for i in range(20) if i != 7]
        reopened.close()
    assert dropped("corrupt_frame") == before + 1
    assert len(warnings_named(captured_log, "buffer segment damaged")) == 1
    kinds = [kind for kind, _o, _e in iter_frames(segment.read_bytes())]
    assert CORRUPT not in kinds  # repaired: the damaged bytes are gone, the gap stays


def test_a_batch_refused_as_too_large_registers_none_of_its_topics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_log, "MAX_BODY_BYTES", 4096)
    buffer = opened(tmp_path)
    buffer.append_batch([(TOPIC, None, b"first", None, T0)])
    refused = [(EVENTS, None, b"new topic", None, T0), (TOPIC, None, b"x" * 5000, None, T0)]
    with pytest.raises(ValueError, match="over the buffer's limit"):
        buffer.append_batch(refused)
    assert buffer.next_seq == 1
    buffer.append_batch([(EVENTS, None, b"next", None, T0)])  # same segment, same topic
    buffer.close()

    reopened = opened(tmp_path)
    assert [(r.topic, r.value) for _s, r in replay_all(reopened)] == [
        (TOPIC, b"first"),
        (EVENTS, b"next"),
    ]
    reopened.close()


async def test_append_all_awaits_when_the_room_left_fits_the_record_but_not_a_new_segment(
    tmp_path: Path,
) -> None:
    """The cap counts a possible new segment's header and topic definitions (`extra`):
    `wait_for_room` must count them too, or `append_all` spins without ever awaiting."""
    for filler in range(10, 60):  # fill to the cap; keep the first that leaves >= 35 bytes
        buffer = opened(tmp_path / str(filler), max_bytes=4096)
        while buffer.append_batch([(TOPIC, None, b"x" * filler, None, T0)]).accepted:
            pass
        room = 4096 - buffer.bytes
        if room >= 35:
            break
        buffer.close()
    # A record whose frame (35 bytes + value) fits the room left, but not with a segment
    # header (16) and the topic's definition (33).
    fits_alone = (TOPIC, None, b"y" * (room - 35), None, T0)
    assert not buffer.append_batch([fits_alone]).accepted
    async with loop_watchdog():
        appending = asyncio.create_task(buffer.append_all([fits_alone]))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not appending.done()  # it awaits room: nothing was acked
        for seq in range(buffer.next_seq):
            buffer.ack(seq)
        chunks = await asyncio.wait_for(appending, 5)
    assert [chunk.accepted for chunk in chunks] == [1]
    buffer.close()
