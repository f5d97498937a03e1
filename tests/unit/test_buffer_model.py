"""The buffers against a model: random runs of appends, acks, rewinds, crashes, full disks.

Like Vector's disk buffer tests: a hypothesis state machine drives `DiskBuffer` (and
`MemoryBuffer` with its spill) through their public API, and the filesystem seam
(`SegmentFiles`) refuses writes the way a full disk does. After every step the buffer
must agree with a model that is only a dict of the records appended and a set of acks:

* a restart (clean, or a crash: the buffer dropped without close, its newest segment
  torn or a byte of a record flipped) replays every record that was unacked and written
  to disk, in append order, and no record that never was appended; acked records come
  back only after a crash (their ack was not checkpointed yet), never after a clean
  close; a damaged record is lost alone and counted once, not again at the next start;
* a rewind (`unacked()`), interleaved with everything else, yields in append order every
  record unacked when it began and still unacked when it ends, and no record acked
  before it began;
* `records` and `bytes` are what the model counts: segment files on disk plus held
  records counted as the frames they will be; the bytes stay under BUFFER_MAX_BYTES;
* once every record is acked the space comes back (one active segment at most, none
  after close);
* `append_all` under `BUFFER_FULL_POLICY=block` appends or awaits, on an event loop that
  fails the test if it runs 2 s without yielding (tests/support/loop_watchdog.py);
* nothing raises but the documented ValueError for a record over the frame limit, which
  changes nothing.

Both record framers run: the pure-Python reference and the compiled one.

`make test` runs a fixed seed and a small budget; `make test-buffer-model` a long run:
BUFFER_MODEL_EXAMPLES (runs per machine and framer), BUFFER_MODEL_STEPS (steps per run),
BUFFER_MODEL_SEED.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.support.buffer_disks import DiskWithRoom
from tests.support.loop_watchdog import loop_watchdog
from twitch_ingestion.buffer import segment_log
from twitch_ingestion.buffer.config import BufferFullPolicy
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.memory import MemoryBuffer
from twitch_ingestion.buffer.protocol import BufferedRecord
from twitch_ingestion.buffer.segment_log import KIND_RECORD, iter_frames, record_seq_and_time
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.native import RecordFramer, compiled_record_framer
from twitch_ingestion.records import Record

EXAMPLES = int(os.environ.get("BUFFER_MODEL_EXAMPLES", "60"))
STEPS = int(os.environ.get("BUFFER_MODEL_STEPS", "50"))
SEED = int(os.environ.get("BUFFER_MODEL_SEED", "20261207"))

# A small frame limit so that records over it are cheap to make.
MAX_BODY = 3000
TOPICS = ("twitch-chat-messages", "twitch-chat-events", "twitch-chat-other")
T0 = 1_700_000_000_000
_MEMORY_RECORD_OVERHEAD = 160


def frame_size(record: Record) -> int:
    """What a record's frame takes on disk (segment_log's format, counted by hand)."""
    _topic, key, value, headers, _t = record
    size = 35 + len(value) + (len(key) if key is not None else 0)
    for name, header_value in headers or ():
        size += 6 + len(name.encode()) + len(header_value)
    return size


def dropped(reason: str) -> float:
    labels = {"reason": reason}
    return REGISTRY.get_sample_value("twitch_ingestion_buffer_records_dropped_total", labels) or 0


def damage_counted() -> float:
    return dropped("corrupt_frame") + dropped("corrupt_tail")


# --- records ---------------------------------------------------------------------------

_payload_sizes = st.one_of(
    st.integers(0, 40), st.integers(40, 400), st.integers(400, 1500), st.just(MAX_BODY + 1)
)
_keys = st.one_of(
    st.none(),
    st.sampled_from([b"", b"channel0", b"channel1"]),
    st.integers(100, 1200).map(lambda n: b"k" * n),
)
_headers: st.SearchStrategy[list[tuple[str, bytes]] | None] = st.one_of(
    st.none(), st.just([]), st.just([("kind", b"privmsg")]), st.just([("a", b""), ("b", b"xy")])
)
_record_shapes = st.tuples(st.sampled_from(TOPICS), _keys, _payload_sizes, _headers)
_batches = st.lists(_record_shapes, min_size=0, max_size=12)


class BufferModel(RuleBasedStateMachine):
    """What both machines share: records with unique values, the model's dict and acks,
    the clock, the event loop with its watchdog, the checks of a rewind, and the rules
    that drive both buffers alike (appends, `append_all`, acks, ticks, disk space,
    rewinds). A subclass opens its buffer, says what it owes after a restart and how
    its bytes are counted."""

    framer_choice: ClassVar[str] = "python"
    # Whether a record over the frame limit is refused at append (DiskBuffer) or kept,
    # in memory only (MemoryBuffer).
    refuses_oversized: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="buffer-model-"))
        self.disk = DiskWithRoom()
        self.framer: RecordFramer | None = (
            compiled_record_framer("compiled") if self.framer_choice == "compiled" else None
        )
        self.buffer: DiskBuffer | MemoryBuffer | None = None
        self.loop = asyncio.new_event_loop()
        self.counter = 0
        self.clock_offset = 0.0
        # The model: every record the buffer took and still owes (seq -> record), acks.
        self.unacked: dict[int, Record] = {}
        self.options: dict[str, Any] = {}
        self.rewind: Iterator[tuple[int, BufferedRecord]] | None = None
        self.rewind_start: set[int] = set()
        self.rewind_acked: set[int] = set()
        self.rewind_last = -1
        self.patches = pytest.MonkeyPatch()
        self.patches.setattr(segment_log, "MAX_BODY_BYTES", MAX_BODY)

    def teardown(self) -> None:
        self.patches.undo()
        self.abandon()
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def abandon(self) -> None:
        if self.buffer is not None:
            self.buffer.abandon()
            self.buffer = None

    # --- what a subclass says -----------------------------------------------------------

    def took(self, first_seq: int, batch: list[Record], accepted: int) -> None:
        """The buffer took `batch[:accepted]` under seqs from `first_seq`."""
        for offset, record in enumerate(batch[:accepted]):
            seq = first_seq + offset
            assert seq not in self.unacked
            self.unacked[seq] = record
            self.handed_out(seq, record)

    def handed_out(self, seq: int, record: Record) -> None:
        """Remember a record the buffer took, for what it may yield later."""
        raise NotImplementedError

    def handed_out_record(self, seq: int) -> Record | None:
        """The record handed out under `seq` (this run, or replayed at its start)."""
        raise NotImplementedError

    def holds_nothing(self) -> bool:
        """Whether the buffer counts as empty (it then takes any one record)."""
        raise NotImplementedError

    def ack_one(self, seq: int) -> None:
        """Kafka acked `seq`: the buffer and the model."""
        assert self.buffer is not None
        self.buffer.ack(seq)
        self.ack_model(seq)

    # --- helpers --------------------------------------------------------------------

    def make(
        self, shapes: list[tuple[str, bytes | None, int, list[tuple[str, bytes]] | None]]
    ) -> list[Record]:
        batch: list[Record] = []
        for topic, key, size, headers in shapes:
            self.counter += 1
            tag = f"{self.counter}:".encode()
            value = (tag + b"v" * size)[: max(size, len(tag))]
            batch.append((topic, key, value, headers, T0 + self.counter))
        return batch

    @staticmethod
    def oversized(batch: list[Record]) -> bool:
        return any(frame_size(record) - 10 > MAX_BODY for record in batch)

    def now(self) -> float:
        return time.monotonic() + self.clock_offset

    def files_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.directory.glob("*.log"))

    def run(self, coroutine: Any) -> Any:
        async def watched() -> Any:
            async with loop_watchdog():
                return await coroutine

        return self.loop.run_until_complete(watched())

    def ack_model(self, seq: int) -> None:
        self.unacked.pop(seq, None)
        if self.rewind is not None:
            self.rewind_acked.add(seq)

    # --- rewinds --------------------------------------------------------------------

    def start_rewind(self, iterator: Iterator[tuple[int, BufferedRecord]]) -> None:
        self.rewind = iterator
        self.rewind_start = set(self.unacked)
        self.rewind_acked = set()
        self.rewind_last = -1

    def check_rewound(self, seq: int, record: BufferedRecord) -> None:
        assert seq > self.rewind_last, f"rewind went back from {self.rewind_last} to {seq}"
        self.rewind_last = seq
        expected = self.rewind_expected(seq)
        assert expected is not None, f"rewind yielded {seq}, acked before it began"
        assert tuple(record) == tuple(expected)

    def rewind_expected(self, seq: int) -> Record | None:
        if seq in self.rewind_start or seq in self.rewind_acked or seq in self.unacked:
            return self.handed_out_record(seq)
        return None

    def end_rewind(self) -> None:
        missed = {
            seq
            for seq in self.rewind_start - self.rewind_acked
            if seq > self.rewind_last and seq in self.unacked
        }
        assert not missed, f"the rewind missed unacked records {sorted(missed)}"
        self.rewind = None

    def step_rewind(self, count: int) -> None:
        assert self.rewind is not None
        for _ in range(count):
            item = next(self.rewind, None)
            if item is None:
                self.end_rewind()
                return
            self.check_rewound(*item)

    # --- rules both buffers follow --------------------------------------------------

    @rule(shapes=_batches)
    def append(self, shapes: list[Any]) -> None:
        assert self.buffer is not None
        batch = self.make(shapes)
        next_seq = self.buffer.next_seq
        if self.refuses_oversized and self.oversized(batch):
            with pytest.raises(ValueError, match="over the buffer's limit"):
                self.buffer.append_batch(batch)
            assert self.buffer.next_seq == next_seq
            return
        appended = self.buffer.append_batch(batch)
        assert appended.first_seq == next_seq
        assert 0 <= appended.accepted <= len(batch)
        if batch and self.holds_nothing():
            assert appended.accepted >= 1, "an empty buffer always takes one record"
        self.took(appended.first_seq, batch, appended.accepted)

    @precondition(lambda self: self.options.get("full_policy") is BufferFullPolicy.BLOCK)
    @rule(shapes=_batches, ack_every=st.integers(1, 4))
    def append_all_blocking(self, shapes: list[Any], ack_every: int) -> None:
        """`append_all` with a Kafka that acks everything handed to it, a little late,
        and the maintenance tick running: it must finish, never spin."""
        buffer = self.buffer
        assert buffer is not None
        batch = [record for record in self.make(shapes) if frame_size(record) - 10 <= MAX_BODY]

        async def scenario() -> None:
            done = False

            async def on_chunk(chunk: Any, appended: Any) -> None:
                self.took(appended.first_seq, list(chunk), appended.accepted)

            async def kafka() -> None:
                while not done:
                    for seq in sorted(self.unacked)[:ack_every]:
                        self.ack_one(seq)
                    buffer.maybe_sync(self.now())
                    await asyncio.sleep(0)

            acker = asyncio.create_task(kafka())
            try:
                await asyncio.wait_for(buffer.append_all(batch, on_chunk), 10)
            finally:
                done = True
                await acker

        if batch:
            self.run(scenario())

    @precondition(lambda self: bool(self.unacked))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        assert self.buffer is not None
        seqs = sorted(self.unacked)
        chosen: list[int] = data.draw(
            st.one_of(
                st.just(seqs[: len(seqs) // 2 + 1]),  # oldest first
                st.lists(st.sampled_from(seqs), max_size=8, unique=True),  # any order
                st.just(seqs),
            )
        )
        for seq in chosen:
            self.ack_one(seq)
        duplicate: bool = data.draw(st.booleans())
        if chosen and duplicate:
            self.buffer.ack(chosen[0])  # a duplicate ack changes nothing

    @rule(advance=st.sampled_from([0.0, 0.06, 1.5]))
    def tick(self, advance: float) -> None:
        assert self.buffer is not None
        self.clock_offset += advance
        self.buffer.maybe_sync(self.now())

    @rule(room=st.sampled_from([None, None, 0, 16, 40, 300, 1500]), no_inodes=st.booleans())
    def disk_space(self, room: int | None, no_inodes: bool) -> None:
        self.disk.room = room
        self.disk.refuse_create = no_inodes

    @rule()
    def start_a_rewind(self) -> None:
        assert self.buffer is not None
        self.start_rewind(self.buffer.unacked())

    @precondition(lambda self: self.rewind is not None)
    @rule(count=st.integers(1, 30))
    def continue_the_rewind(self, count: int) -> None:
        self.step_rewind(count)


class DiskBufferModel(BufferModel):
    """DiskBuffer: the records the model holds are exactly what it must replay."""

    refuses_oversized = True

    def __init__(self) -> None:
        super().__init__()
        self.buffer: DiskBuffer | None = None
        # Every record handed out under a seq and not acked since the last checkpoint a
        # clean close wrote: what a crash may replay besides `unacked`.
        self.may_replay: dict[int, Record] = {}
        # A close that wrote held records back may leave the files a little over the cap.
        self.over_cap_allowed = False
        self.unrepaired = False

    @initialize(
        max_bytes=st.sampled_from([4096, 6000, 16384]),
        fsync_ms=st.sampled_from([0, 50]),
        policy=st.sampled_from(list(BufferFullPolicy)),
    )
    def open_buffer(self, max_bytes: int, fsync_ms: int, policy: BufferFullPolicy) -> None:
        self.options = {
            "max_bytes": max_bytes,
            "segment_bytes": 1024,
            "fsync_ms": fsync_ms,
            "full_policy": policy,
            "checkpoint_interval_ms": 1000,
        }
        self.reopen(expect_exact=True)

    def reopen(self, *, expect_exact: bool, allowed_lost: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        before = damage_counted()
        buffer = DiskBuffer(self.directory, files=self.disk, framer=self.framer, **self.options)
        buffer.open()
        self.buffer = buffer
        replayed: dict[int, Record] = {}
        last = -1
        for seq, record in buffer.replay():
            assert seq > last
            last = seq
            expected = self.may_replay.get(seq)
            assert expected is not None, f"replayed {seq}, never appended or acked at close"
            assert tuple(record) == tuple(expected)
            replayed[seq] = expected
        must = set(self.unacked) - allowed_lost
        missing = must - set(replayed)
        assert not missing, f"records lost across the restart: {sorted(missing)}"
        if expect_exact:
            extra = set(replayed) - set(self.unacked)
            assert not extra, f"acked records replayed after a clean close: {sorted(extra)}"
        self.damage_delta = damage_counted() - before
        # A full disk has no room to repair damage: the next start counts it again.
        if self.disk.room is None:
            self.unrepaired = False
        elif self.damage_delta:
            self.unrepaired = True
        self.unacked = dict(replayed)
        self.may_replay = dict(replayed)
        assert buffer.records == len(self.unacked)

    def handed_out(self, seq: int, record: Record) -> None:
        self.may_replay[seq] = record

    def handed_out_record(self, seq: int) -> Record | None:
        return self.may_replay.get(seq)

    def holds_nothing(self) -> bool:
        return not self.unacked

    def held_seqs(self) -> list[int]:
        """The records held in memory: always the newest unacked ones."""
        assert self.buffer is not None
        held = self.buffer.held_in_memory
        return sorted(self.unacked)[len(self.unacked) - held :] if held else []

    # --- rules of the disk buffer alone -----------------------------------------------

    @rule(shapes=_batches)
    def append_more(self, shapes: list[Any]) -> None:
        """Appends are most of what a buffer sees: a second rule doubles their share."""
        self.append(shapes)

    @rule(value_size=st.sampled_from([0, 5, 60]), topic=st.sampled_from(TOPICS))
    def fill_to_the_cap(self, value_size: int, topic: str) -> None:
        """Small records until one is refused: the cap's edge, where the bugs live."""
        for _ in range(400):
            before = len(self.unacked)
            self.append([(topic, b"channel0", value_size, None)])
            if len(self.unacked) == before:
                return

    @rule()
    def sync_and_checkpoint(self) -> None:
        assert self.buffer is not None
        self.buffer.sync()
        self.buffer.checkpoint()

    @rule(room=st.sampled_from([16, 60]))
    def disk_fills_at_the_next_rotation(self, room: int) -> None:
        """The disk fills just as a segment is created: with 16 bytes its header fits
        and its records do not (the active segment is then empty)."""
        self.disk.room = None
        self.disk.full_after_next_create = room

    @rule(space_returns=st.booleans())
    def restart_cleanly(self, space_returns: bool) -> None:
        assert self.buffer is not None
        if space_returns:
            self.disk.room = None
        lost = set(self.held_seqs())
        self.buffer.close()
        # close() writes held records back when the disk has room, past the cap if it
        # must (by the headers and topic definitions of their segments); the rest are lost.
        if self.disk.room is None:
            self.over_cap_allowed = self.over_cap_allowed or bool(lost)
            lost = set()
        self.rewind = None
        unrepaired = self.unrepaired
        self.reopen(expect_exact=self.disk.room is None, allowed_lost=lost)
        if not unrepaired:
            assert self.damage_delta == 0

    @rule(damage=st.sampled_from(["none", "torn", "flipped"]), data=st.data())
    def crash(self, damage: str, data: st.DataObject) -> None:
        assert self.buffer is not None
        lost = set(self.held_seqs())
        self.buffer.abandon()
        self.buffer = None
        self.rewind = None
        frames = self.record_frames()
        if damage != "none" and frames:
            path, seq, offset, end = data.draw(st.sampled_from(frames))
            contents = path.read_bytes()
            if damage == "torn":
                cut = data.draw(st.integers(offset, end - 1))
                path.write_bytes(contents[:cut])
                lost |= {s for p, s, _o, e in frames if p == path and e > cut}
            else:
                at = data.draw(st.integers(offset, end - 1))
                flipped = bytearray(contents)
                flipped[at] ^= 0x5A
                path.write_bytes(bytes(flipped))
                lost.add(seq)
        self.disk.room = None if data.draw(st.booleans()) else self.disk.room
        unrepaired = self.unrepaired
        self.reopen(expect_exact=False, allowed_lost=lost)
        if damage == "none" and not unrepaired:
            assert self.damage_delta == 0
        if self.disk.room is None:
            # A second start finds nothing new to count: damage is counted once.
            assert self.buffer is not None
            self.buffer.close()
            self.reopen(expect_exact=True)
            assert self.damage_delta == 0, "damage counted again at the next start"

    def record_frames(self) -> list[tuple[Path, int, int, int]]:
        frames = []
        for path in sorted(self.directory.glob("*.log")):
            contents = path.read_bytes()
            for kind, offset, end in iter_frames(contents):
                if kind == KIND_RECORD:
                    seq, _t = record_seq_and_time(contents, offset)
                    frames.append((path, seq, offset, end))
        return frames

    # --- invariants -----------------------------------------------------------------

    @invariant()
    def counts_and_bytes_agree_with_the_model(self) -> None:
        buffer = self.buffer
        if buffer is None:
            return
        assert buffer.records == len(self.unacked)
        held = self.held_seqs()
        held_bytes = sum(frame_size(self.unacked[seq]) for seq in held)
        files = self.files_bytes()
        assert buffer.bytes == files + held_bytes, (buffer.bytes, files, held_bytes)
        cap = self.options["max_bytes"]
        if files + held_bytes <= cap:
            self.over_cap_allowed = False
        elif len(self.unacked) > 1 and not self.over_cap_allowed:
            raise AssertionError(f"{files} + {held_bytes} bytes over a cap of {cap}")

    @invariant()
    def space_comes_back_once_everything_is_acked(self) -> None:
        buffer = self.buffer
        if buffer is None or self.unacked or buffer.held_in_memory:
            return
        buffer.maybe_sync(self.now())
        assert len(list(self.directory.glob("*.log"))) <= 1


class MemoryBufferModel(BufferModel):
    """MemoryBuffer: in memory until acked; what was spilled survives a restart."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer: MemoryBuffer | None = None
        # Records on disk (spilled, or an earlier run's) by their value: a spilled record
        # gets a seq of the spill directory's own.
        self.spilled: dict[bytes, Record] = {}
        self.unspilled_from = 0
        self.ever_spilled: dict[bytes, Record] = {}
        self.from_before: set[int] = set()
        # Every record of this run and the earlier one's replayed, by seq.
        self.seen: dict[int, Record] = {}

    @initialize(
        max_bytes=st.sampled_from([4096, 16384]),
        policy=st.sampled_from(list(BufferFullPolicy)),
    )
    def open_buffer(self, max_bytes: int, policy: BufferFullPolicy) -> None:
        self.options = {
            "max_bytes": max_bytes,
            "segment_bytes": 1024,
            "fsync_ms": 50,
            "full_policy": policy,
            "checkpoint_interval_ms": 1000,
        }
        self.reopen(must=set(), may={})

    def reopen(self, *, must: set[bytes], may: dict[bytes, Record]) -> None:
        buffer = MemoryBuffer(self.directory, files=self.disk, framer=self.framer, **self.options)
        buffer.open()
        self.buffer = buffer
        replayed: dict[int, Record] = {}
        last = -1
        for seq, record in buffer.replay():
            assert seq > last
            last = seq
            assert record.value in may, f"replayed {record.value[:20]!r}, never spilled"
            assert tuple(record) == tuple(may[record.value])
            replayed[seq] = tuple(record)  # type: ignore[assignment]
        missing = must - {record[2] for record in replayed.values()}
        assert not missing, f"{len(missing)} spilled records lost across the restart"
        self.unacked = replayed
        self.from_before = set(replayed)
        self.spilled = {record[2]: record for record in replayed.values()}
        self.ever_spilled = dict(self.spilled)
        self.unspilled_from = buffer.next_seq
        assert buffer.records == len(self.unacked)

    def handed_out(self, seq: int, record: Record) -> None:
        self.seen[seq] = record

    def handed_out_record(self, seq: int) -> Record | None:
        return self.seen.get(seq)

    def holds_nothing(self) -> bool:
        return not self.in_memory()

    def ack_one(self, seq: int) -> None:
        record = self.unacked.get(seq)
        if record is not None:
            self.spilled.pop(record[2], None)
        super().ack_one(seq)

    def in_memory(self) -> list[int]:
        return sorted(seq for seq in self.unacked if seq not in self.from_before)

    # --- rules of the memory buffer alone ---------------------------------------------

    @rule()
    def spill(self) -> None:
        assert self.buffer is not None
        candidates = [
            seq
            for seq in self.in_memory()
            if seq >= self.unspilled_from and not self.oversized([self.unacked[seq]])
        ]
        written = self.buffer.spill()
        assert 0 <= written <= len(candidates)
        for seq in candidates[:written]:
            record = self.unacked[seq]
            self.spilled[record[2]] = record
            self.ever_spilled[record[2]] = record
        if candidates:
            if written == len(candidates):
                self.unspilled_from = self.buffer.next_seq
            else:
                self.unspilled_from = candidates[written]
        else:
            self.unspilled_from = self.buffer.next_seq
        assert self.buffer.spilled == sum(
            1 for seq in self.in_memory() if self.unacked[seq][2] in self.spilled
        )

    @rule(clean=st.booleans())
    def restart(self, clean: bool) -> None:
        assert self.buffer is not None
        unacked_values = {record[2] for record in self.unacked.values()}
        must = {value for value in self.spilled if value in unacked_values}
        # Spilled records acked since the last checkpoint may come back after a crash.
        may = self.ever_spilled
        if clean:
            self.buffer.close()
        else:
            self.buffer.abandon()
        self.buffer = None
        self.rewind = None
        self.seen = {}
        self.reopen(must=must, may=may)
        for seq, record in self.unacked.items():
            self.seen[seq] = record

    @invariant()
    def counts_and_bytes_agree_with_the_model(self) -> None:
        buffer = self.buffer
        if buffer is None:
            return
        assert buffer.records == len(self.unacked)
        memory = sum(
            len(self.unacked[seq][2]) + _MEMORY_RECORD_OVERHEAD for seq in self.in_memory()
        )
        assert buffer.bytes == memory + self.files_bytes()
        if len(self.in_memory()) > 1:
            assert memory <= self.options["max_bytes"]


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class PythonDiskBufferModel(DiskBufferModel):
    framer_choice = "python"


class CompiledDiskBufferModel(DiskBufferModel):
    framer_choice = "compiled"


class PythonMemoryBufferModel(MemoryBufferModel):
    framer_choice = "python"


class CompiledMemoryBufferModel(MemoryBufferModel):
    framer_choice = "compiled"


def _run(machine: type[BufferModel]) -> None:
    machine._hypothesis_internal_use_seed = SEED  # type: ignore[attr-defined,unused-ignore]
    run_state_machine_as_test(machine, settings=SETTINGS)


def test_disk_buffer_agrees_with_the_model_python_framer() -> None:
    _run(PythonDiskBufferModel)


@pytest.mark.compiled
def test_disk_buffer_agrees_with_the_model_compiled_framer() -> None:
    _run(CompiledDiskBufferModel)


def test_memory_buffer_agrees_with_the_model_python_framer() -> None:
    _run(PythonMemoryBufferModel)


@pytest.mark.compiled
def test_memory_buffer_agrees_with_the_model_compiled_framer() -> None:
    _run(CompiledMemoryBufferModel)
