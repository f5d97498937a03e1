"""DiskBuffer on a full disk: nothing read is lost, order holds, and it goes back to disk.

The filesystem is a real directory behind `SmallDisk`, a `SegmentFiles` that counts the
directory's bytes against a capacity and refuses what does not fit the way a full disk
does: a short write of what fits, then ENOSPC (or EDQUOT, a quota).
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import CapturingLogger

from tests.support import buffers
from tests.support.buffer_disks import DiskWithRoom
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
from twitch_ingestion.buffer import segment_log
from twitch_ingestion.buffer.config import BufferFullPolicy
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.disk_full import DISK_RETRY_S
from twitch_ingestion.buffer.errors import BufferDirectoryError, BufferLockedError
from twitch_ingestion.buffer.files import SegmentFiles
from twitch_ingestion.buffer.memory import MemoryBuffer
from twitch_ingestion.buffer.segment_log import CORRUPT, TAIL, iter_frames, segment_name

# The fixture, shared by the buffer tests: a name here, so pytest finds it.
captured_log = buffers.captured_log

SIZE = 100  # value bytes per record: ~150 bytes a frame


class SmallDisk(SegmentFiles):
    """A filesystem of `capacity` bytes holding only `directory`."""

    def __init__(self, directory: Path, capacity: int, error: int = errno.ENOSPC) -> None:
        self.directory = directory
        self.capacity = capacity
        self.error = error
        self.refused = 0

    def room(self) -> int:
        used = sum(path.stat().st_size for path in self.directory.iterdir() if path.is_file())
        return self.capacity - used

    def _refuse(self, path: Path | None = None) -> OSError:
        self.refused += 1
        return OSError(self.error, os.strerror(self.error), None if path is None else str(path))

    def write(self, fd: int, data: memoryview) -> int:
        room = self.room()
        if room <= 0:
            raise self._refuse()
        return os.write(fd, data[:room])

    def write_file(self, path: Path, data: bytes) -> None:
        room = max(0, self.room())
        if len(data) > room:
            path.write_bytes(data[:room])  # what a full disk leaves of it
            raise self._refuse(path)
        path.write_bytes(data)


def opened(directory: Path, disk: SmallDisk, **options: object) -> DiskBuffer:
    buffer = DiskBuffer(directory, files=disk, **options)  # type: ignore[arg-type]
    buffer.open()
    return buffer


def fill_until_full(buffer: DiskBuffer, start: int = 0, batch: int = 10) -> int:
    """Append batches until one is held in memory, plus one more; the next number."""
    stop = start
    while not buffer.held_in_memory:
        appended = buffer.append_batch(records(stop, stop + batch, SIZE))
        assert tuple(appended) == (stop, batch)
        stop += batch
        assert stop < 10_000, "the disk never filled"
    appended = buffer.append_batch(records(stop, stop + batch, SIZE))
    assert tuple(appended) == (stop, batch)
    return stop + batch


def assert_frames_intact(directory: Path) -> None:
    for segment in segment_files(directory):
        kinds = [kind for kind, _o, _e in iter_frames(segment.read_bytes())]
        assert CORRUPT not in kinds, segment.name
        assert TAIL not in kinds, segment.name


def seqs_of(buffer: DiskBuffer) -> list[int]:
    return [seq for seq, _record in buffer.unacked()]


def later(seconds: float = 2.0) -> float:
    """A tick past the disk's retry interval."""
    return time.monotonic() + seconds


# --- holding records ----------------------------------------------------------------


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_holds_records_in_memory_loses_none_and_warns_once(
    tmp_path: Path, captured_log: CapturingLogger, error: int
) -> None:
    disk = SmallDisk(tmp_path, capacity=4096, error=error)
    buffer = opened(tmp_path, disk)
    held_before = sample("twitch_ingestion_buffer_records_held_in_memory_total")
    stop = fill_until_full(buffer)
    for start in range(stop, stop + 30, 10):  # more records while it is full
        assert tuple(buffer.append_batch(records(start, start + 10, SIZE))) == (start, 10)
    stop += 30

    assert disk.refused >= 1
    assert buffer.disk_full
    assert sample("twitch_ingestion_buffer_disk_full") == 1
    held = buffer.held_in_memory
    assert held >= 40
    assert sample("twitch_ingestion_buffer_records_held_in_memory_total") == held_before + held
    assert buffer.records == stop
    assert seqs_of(buffer) == list(range(stop))
    assert [r for _s, r in buffer.unacked()] == [record(i, SIZE) for i in range(stop)]
    [warning] = warnings_named(captured_log, "buffer disk full")
    assert warning["error"] == os.strerror(error)
    assert "BUFFER_DIR" in str(warning["action"])
    # The write ENOSPC cut short was taken back: no torn frame for the next start to
    # count as lost.
    assert_frames_intact(tmp_path)
    buffer.abandon()


def test_when_space_returns_held_records_go_back_to_disk_in_order_and_survive_a_restart(
    tmp_path: Path, captured_log: CapturingLogger
) -> None:
    disk = SmallDisk(tmp_path, capacity=4096)
    buffer = opened(tmp_path, disk)
    stop = fill_until_full(buffer)
    first_held = stop - buffer.held_in_memory
    acked = {1, 3, first_held, first_held + 4, stop - 1}  # on disk and held, any order
    for seq in sorted(acked, reverse=True):
        buffer.ack(seq)
    buffer.maybe_sync(time.monotonic())  # the retry is not due yet: still full
    assert buffer.held_in_memory

    disk.capacity = 1 << 20
    buffer.maybe_sync(later())
    assert buffer.held_in_memory == 0
    assert not buffer.disk_full
    assert sample("twitch_ingestion_buffer_disk_full") == 0
    [back] = [c.kwargs for c in captured_log.calls if c.args == ("buffer disk writable again",)]
    assert back["records_written_back"] == stop - first_held - 3
    # Appends go to disk again, after the records written back.
    assert tuple(buffer.append_batch(records(stop, stop + 5, SIZE))) == (stop, 5)
    assert buffer.held_in_memory == 0
    expected = [i for i in range(stop + 5) if i not in acked]
    assert seqs_of(buffer) == expected

    # A second episode warns again, once.
    disk.capacity = 0
    buffer.append_batch(records(stop + 5, stop + 10, SIZE))
    buffer.append_batch(records(stop + 10, stop + 15, SIZE))
    assert len(warnings_named(captured_log, "buffer disk full")) == 2
    disk.capacity = 1 << 20
    buffer.close()  # writes the held records back first

    corrupt_before = dropped("corrupt_frame") + dropped("corrupt_tail")
    reopened = opened(tmp_path, disk)
    replayed = list(reopened.replay())
    assert [seq for seq, _r in replayed] == [i for i in range(stop + 15) if i not in acked]
    assert all(r == record(seq, SIZE) for seq, r in replayed)
    assert dropped("corrupt_frame") + dropped("corrupt_tail") == corrupt_before
    reopened.close()


def test_acks_that_free_the_full_segment_send_held_records_back_at_once(tmp_path: Path) -> None:
    disk = SmallDisk(tmp_path, capacity=4096)
    buffer = opened(tmp_path, disk)
    stop = fill_until_full(buffer)
    [full_segment] = segment_files(tmp_path)
    on_disk = stop - buffer.held_in_memory
    now = time.monotonic()  # before the retry interval is over
    buffer.maybe_sync(now)
    assert buffer.held_in_memory

    for seq in range(on_disk):
        buffer.ack(seq)
    buffer.maybe_sync(now)
    assert buffer.held_in_memory == 0
    assert not buffer.disk_full
    assert not full_segment.exists()
    assert seqs_of(buffer) == list(range(on_disk, stop))
    buffer.close()


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_the_retry_interval_runs_on_the_clock_the_buffer_was_given(tmp_path: Path) -> None:
    """The buffer reads no clock of its own: with a fake one, the held records go back
    exactly when it passes the retry interval, on ticks that pass no time."""
    clock = FakeClock()
    disk = SmallDisk(tmp_path, capacity=4096)
    buffer = opened(tmp_path, disk, clock=clock)
    stop = fill_until_full(buffer)  # refused at 5000.0
    held = buffer.held_in_memory
    disk.capacity = 1 << 20

    clock.now += DISK_RETRY_S - 0.001
    buffer.maybe_sync()
    assert buffer.held_in_memory == held
    assert buffer.disk_full

    clock.now += 0.001
    buffer.maybe_sync()
    assert buffer.held_in_memory == 0
    assert not buffer.disk_full
    assert seqs_of(buffer) == list(range(stop))
    buffer.close()


def test_held_records_count_against_the_cap_with_drop_newest(tmp_path: Path) -> None:
    disk = SmallDisk(tmp_path, capacity=2048)
    buffer = opened(tmp_path, disk, max_bytes=16384, full_policy=BufferFullPolicy.DROP_NEWEST)
    before = dropped("buffer_full")
    accepted = 0
    for start in range(0, 400, 10):
        accepted += buffer.append_batch(records(start, start + 10, SIZE)).accepted
    assert buffer.held_in_memory
    assert 0 < accepted < 400
    assert dropped("buffer_full") == before + 400 - accepted
    assert buffer.bytes <= 16384
    assert seqs_of(buffer) == list(range(accepted))
    buffer.abandon()


async def test_held_records_count_against_the_cap_and_block_waits_for_their_acks(
    tmp_path: Path,
) -> None:
    disk = SmallDisk(tmp_path, capacity=2048)
    buffer = opened(tmp_path, disk, max_bytes=16384)
    accepted = 0
    while (appended := buffer.append_batch(records(accepted, accepted + 10, SIZE))).accepted:
        accepted += appended.accepted
    assert buffer.held_in_memory
    assert buffer.bytes <= 16384

    waiter = asyncio.create_task(buffer.wait_for_room(2000))
    await asyncio.sleep(0)
    assert not waiter.done()
    for seq in range(accepted - 1, accepted // 2, -1):  # the held ones, newest first
        buffer.ack(seq)
        await asyncio.sleep(0)
    await asyncio.wait_for(waiter, 1)
    assert buffer.has_room(2000)
    buffer.abandon()


def test_a_rewind_while_held_records_go_back_to_disk_yields_each_once_in_order(
    tmp_path: Path,
) -> None:
    disk = SmallDisk(tmp_path, capacity=4096)
    buffer = opened(tmp_path, disk)
    stop = fill_until_full(buffer)
    stop = fill_until_full(buffer, stop)  # more held records
    first_held = stop - buffer.held_in_memory
    gap = first_held + 10
    buffer.ack(gap)  # two runs of held seqs: [first_held, gap) and (gap, stop)
    rewind = buffer.unacked()
    seen = [next(rewind)[0] for _ in range(3)]

    # Room for the first run only: a write-back that stops halfway.
    disk.capacity += 2500
    buffer.maybe_sync(later())
    assert 0 < buffer.held_in_memory < stop - first_held - 1
    assert buffer.disk_full
    seen += [seq for seq, _record in rewind]
    assert seen == [i for i in range(stop) if i != gap]


@pytest.mark.parametrize("room_at_close", [True, False])
def test_close_writes_held_records_back_or_counts_them_as_lost(
    tmp_path: Path, captured_log: CapturingLogger, room_at_close: bool
) -> None:
    disk = SmallDisk(tmp_path, capacity=4096)
    buffer = opened(tmp_path, disk)
    stop = fill_until_full(buffer)
    held = buffer.held_in_memory
    lost_before = dropped("disk_full")
    if room_at_close:
        disk.capacity = 1 << 20
    buffer.close()

    reopened = opened(tmp_path, SmallDisk(tmp_path, capacity=1 << 20))
    replayed = [seq for seq, _r in reopened.replay()]
    reopened.close()
    errors = [c.kwargs for c in captured_log.calls if c.args == ("buffer records lost at close",)]
    if room_at_close:
        assert replayed == list(range(stop))
        assert dropped("disk_full") == lost_before
        assert not errors
    else:
        assert replayed == list(range(stop - held))
        assert dropped("disk_full") == lost_before + held
        assert [e["records"] for e in errors] == [held]


def test_a_checkpoint_with_no_room_is_skipped_warned_once_and_written_later(
    tmp_path: Path, captured_log: CapturingLogger
) -> None:
    disk = SmallDisk(tmp_path, capacity=1 << 20)
    buffer = opened(tmp_path, disk)
    buffer.append_batch(records(0, 20, SIZE))
    disk.capacity -= disk.room()  # full from here on
    clock = time.monotonic()
    for seq in range(0, 10):
        buffer.ack(seq)
        clock += 2
        buffer.maybe_sync(clock)  # a checkpoint is due on every tick
    assert not list(tmp_path.glob("*.tmp"))
    assert not list(tmp_path.glob("*.acks"))
    assert len(warnings_named(captured_log, "buffer checkpoint skipped")) == 1

    disk.capacity = 1 << 20
    buffer.maybe_sync(clock + 2)
    assert len(list(tmp_path.glob("*.acks"))) == 1
    buffer.abandon()
    reopened = opened(tmp_path, disk)
    assert [seq for seq, _r in reopened.replay()] == list(range(10, 20))
    reopened.close()


def test_a_spill_to_a_full_disk_keeps_records_in_memory_only_until_it_has_room(
    tmp_path: Path,
) -> None:
    disk = SmallDisk(tmp_path, capacity=64)  # a segment header, no record
    buffer = MemoryBuffer(tmp_path, files=disk)
    buffer.open()
    buffer.append_batch(records(0, 10, SIZE))
    assert buffer.spill() == 0
    assert buffer.spilled == 0
    assert buffer.records == 10
    assert buffer._disk is not None
    assert buffer._disk.held_in_memory == 0  # not a second copy in memory

    disk.capacity = 1 << 20
    assert buffer.spill() == 10
    buffer._disk.abandon()  # crash
    again = MemoryBuffer(tmp_path)
    again.open()
    assert [seq for seq, _r in again.replay()] == list(range(10))
    again.close()


# --- the property ---------------------------------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(data=st.data())
def test_whatever_the_disk_does_unacked_and_replay_hold_every_unacked_record_in_order(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("disk-full")
    disk = SmallDisk(directory, capacity=1 << 20)
    buffer = opened(directory, disk, segment_bytes=2048)
    appended: list[int] = []
    acked: set[int] = set()
    clock = time.monotonic()
    for _step in range(data.draw(st.integers(1, 12), label="steps")):
        disk.capacity = data.draw(st.sampled_from([0, 1500, 3000, 6000, 1 << 20]), label="disk")
        size = data.draw(st.integers(1, 15), label="batch")
        first, count = buffer.append_batch(records(len(appended), len(appended) + size, SIZE))
        assert (first, count) == (len(appended), size)
        appended.extend(range(first, first + count))
        ack_some(buffer, data, appended, acked)
        clock += data.draw(st.sampled_from([0.0, 0.5, 2.0]), label="tick")
        buffer.maybe_sync(clock)
        assert seqs_of(buffer) == sorted(set(appended) - acked)
    disk.capacity = 1 << 20
    buffer.close()
    assert_frames_intact(directory)
    reopened = opened(directory, disk)
    assert [seq for seq, _r in reopened.replay()] == sorted(set(appended) - acked)
    reopened.close()


# --- BUFFER_DIR that cannot be used ------------------------------------------------------


def assert_one_line_naming_buffer_dir(error: BaseException, path: Path, hint: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"BUFFER_DIR {path}")
    assert hint in message


def test_buffer_dir_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "buffer"
    path.write_text("not a directory")
    with pytest.raises(BufferDirectoryError) as refused:
        DiskBuffer(path).open()
    assert_one_line_naming_buffer_dir(refused.value, path, "not a file")


def test_buffer_dir_below_a_file_cannot_be_created_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "buffer"
    with pytest.raises(BufferDirectoryError) as refused:
        DiskBuffer(path).open()
    assert_one_line_naming_buffer_dir(refused.value, path, "point BUFFER_DIR at a directory")


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (errno.EACCES, f"give this user (uid {os.getuid()}) write access"),
        (errno.EROFS, "point BUFFER_DIR at a writable filesystem"),
        (errno.ENOSPC, "free space on that disk"),
    ],
)
def test_buffer_dir_that_cannot_be_written_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, hint: str
) -> None:
    # Injected: the tests may run as root, whom permissions do not stop.
    real_open = os.open

    def refusing_open(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith(".lock"):
            raise OSError(error, os.strerror(error), str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(BufferDirectoryError) as refused:
        DiskBuffer(tmp_path).open()
    assert_one_line_naming_buffer_dir(refused.value, tmp_path, hint)
    assert os.strerror(error) in str(refused.value)


def test_a_locked_buffer_dir_is_a_buffer_dir_error_and_leaves_the_lock_alone(
    tmp_path: Path,
) -> None:
    holder = DiskBuffer(tmp_path)
    holder.open()
    with pytest.raises(BufferLockedError) as refused:
        DiskBuffer(tmp_path).open()
    assert isinstance(refused.value, BufferDirectoryError)
    assert_one_line_naming_buffer_dir(refused.value, tmp_path, "its own BUFFER_DIR")
    holder.append_batch(records(0, 1))  # still the holder's
    holder.close()


def test_a_rewind_reads_held_records_written_back_to_a_segment_with_the_same_first_seq(
    tmp_path: Path,
) -> None:
    disk = DiskWithRoom()
    buffer = DiskBuffer(tmp_path, files=disk, max_bytes=1 << 20, segment_bytes=1024)
    buffer.open()
    assert buffer.append_batch(records(0, 1, 900)).accepted == 1  # the first segment, full
    disk.room = 16  # the next segment's header fits, its records do not
    assert tuple(buffer.append_batch(records(1, 3, SIZE))) == (1, 2)
    assert buffer.held_in_memory == 2
    assert [path.name for path in segment_files(tmp_path)][-1] == segment_name(1)  # empty

    rewind = buffer.unacked()
    assert next(rewind)[0] == 0
    disk.room = None
    buffer.maybe_sync(later())  # the empty segment goes; a new one starts at seq 1 again
    assert buffer.held_in_memory == 0
    assert [seq for seq, _record in rewind] == [1, 2]
    buffer.close()


def test_a_record_too_large_for_a_frame_is_refused_while_the_disk_is_full_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_log, "MAX_BODY_BYTES", 4096)
    disk = DiskWithRoom(room=0)
    buffer = DiskBuffer(tmp_path, files=disk)
    buffer.open()
    assert buffer.append_batch(records(0, 5, SIZE)).accepted == 5
    assert buffer.held_in_memory == 5
    with pytest.raises(ValueError, match="over the buffer's limit"):
        buffer.append_batch([record(5, 5000)])
    assert buffer.append_batch(records(5, 10, SIZE)).first_seq == 5

    disk.room = None
    buffer.maybe_sync(later())  # writing them back raises nothing
    assert buffer.held_in_memory == 0
    buffer.close()
    reopened = opened(tmp_path, SmallDisk(tmp_path, capacity=1 << 20))
    assert [r for _s, r in reopened.replay()] == [record(i, SIZE) for i in range(10)]
    reopened.close()


def test_held_records_count_as_their_frames_so_the_cap_bounds_the_files_written_back(
    tmp_path: Path,
) -> None:
    cap = 65536
    disk = DiskWithRoom(room=0)
    buffer = DiskBuffer(tmp_path, files=disk, max_bytes=cap)
    buffer.open()
    topics = ["chat", "events", "other"]
    held = 0
    while True:  # records with 2 KB keys and a header, held until one is refused
        big_key = (topics[held % 3], b"k" * 2048, b"v" * 50, [("kind", b"x")], T0)
        if not buffer.append_batch([big_key]).accepted:
            break
        held += 1
    assert buffer.held_in_memory == held
    assert buffer.bytes <= cap

    disk.room = None
    buffer.maybe_sync(later())
    assert buffer.held_in_memory == 0
    files = sum(path.stat().st_size for path in segment_files(tmp_path))
    assert files == buffer.bytes
    assert files <= cap
    buffer.close()


def test_held_records_of_a_new_topic_reserve_its_definition_under_the_cap(
    tmp_path: Path,
) -> None:
    cap = 4096
    disk = DiskWithRoom()
    disk.full_after_next_create = 16  # the first segment's header fits, its record not
    buffer = DiskBuffer(tmp_path, files=disk, max_bytes=cap)
    buffer.open()
    assert buffer.append_batch([(TOPIC, None, b"", None, T0)]).accepted == 1
    assert buffer.held_in_memory == 1
    disk.room = None
    while buffer.append_batch([(EVENTS, None, b"", None, T0)]).accepted:
        pass  # held behind the first, up to the cap; their topic is new
    buffer.maybe_sync(later())
    files = sum(path.stat().st_size for path in segment_files(tmp_path))
    assert buffer.bytes <= cap
    assert files <= cap
    buffer.close()
    assert sum(path.stat().st_size for path in segment_files(tmp_path)) <= cap + 16 + 64
