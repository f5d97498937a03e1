"""buffer: CPU per record of the buffer alone, append + ack, without Kafka or a broker.

~400-byte chat records (the JSON the sink builds) are appended in batches of
`--buffer-batch`, every record is acked right after its batch, and the tick
(`maybe_sync`) runs once per batch. fsync and ack checkpoints are pushed out of the way
(`BUFFER_FSYNC_MS` and the checkpoint interval 10 s), so the figure is the buffer's own
cost per record; `hotpath` measures it with the service's defaults on the corpus mix.

Figures: one per BUFFER_MODE in `--modes`, and the disk buffer while its disk is full
(every write refused with ENOSPC through the `SegmentFiles` seam, so records are held in
memory). Calling-thread CPU time, best of `--buffer-rounds` rounds.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.hotpath import best_ns_per_item
from bench.report import Result
from twitch_ingestion.buffer.config import BufferOptions
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.files import SegmentFiles
from twitch_ingestion.buffer.memory import MemoryBuffer
from twitch_ingestion.buffer.protocol import Buffer
from twitch_ingestion.records import Record

__all__ = ["NAME", "add_arguments", "run"]

NAME = "buffer"

_QUIET_MS = 10_000  # fsync and checkpoint intervals: far beyond one round
_T0 = 1_700_000_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("buffer")
    group.add_argument(
        "--buffer-rounds", type=int, default=5, help="rounds per figure; the best is kept"
    )
    group.add_argument("--buffer-records", type=int, default=20_000, help="records per round")
    group.add_argument("--buffer-batch", type=int, default=500, help="records per append")


class _FullDisk(SegmentFiles):
    """A filesystem with no room left: every write is refused as a full disk refuses it."""

    def create(self, path: Path) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def write(self, fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write_file(self, path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _chat_batch(count: int) -> list[Record]:
    value = (
        b'{"id":"7c2b1f0e-8d5a-4c3e-9f21-6a0d4b7e9c13","channel":"xqc","user_login":"viewer",'
        + b'"text":"'
        + b"x" * 250
        + b'","badges":[],"emotes":[],"received_at_ms":1700000000000}'
    )
    return [("twitch-chat-messages", b"xqc", value, None, _T0 + i) for i in range(count)]


def _append_ack_us(
    open_buffer: Callable[[Path], Buffer], scratch: Path, args: argparse.Namespace
) -> float:
    """µs of CPU per record to append a batch, ack each of its records and tick."""
    batch = _chat_batch(args.buffer_batch)
    batches = max(1, args.buffer_records // len(batch))

    def body() -> None:
        directory = Path(tempfile.mkdtemp(dir=scratch))
        buffer = open_buffer(directory)
        buffer.open()
        ack = buffer.ack
        for _ in range(batches):
            first_seq, accepted = buffer.append_batch(batch)
            for seq in range(first_seq, first_seq + accepted):
                ack(seq)
            buffer.maybe_sync()
        buffer.close()
        shutil.rmtree(directory)

    return best_ns_per_item(args.buffer_rounds, batches * len(batch), body) / 1000


def run(args: argparse.Namespace) -> Result:
    result = Result(NAME)
    quiet = BufferOptions(fsync_ms=_QUIET_MS, checkpoint_interval_ms=_QUIET_MS)
    buffers: dict[str, Callable[[Path], Buffer]] = {}
    if "memory" in args.modes:
        buffers["memory buffer append+ack"] = lambda path: MemoryBuffer(path, **quiet)
    if "disk" in args.modes:
        buffers["disk buffer append+ack"] = lambda path: DiskBuffer(path, **quiet)
        full_disk: BufferOptions = {**quiet, "files": _FullDisk()}
        buffers["disk buffer append+ack, disk full (held in memory)"] = lambda path: DiskBuffer(
            path, **full_disk
        )
    scratch = Path(tempfile.mkdtemp(prefix="bench-buffer-"))
    try:
        costs = {
            label: _append_ack_us(open_buffer, scratch, args)
            for label, open_buffer in buffers.items()
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.details = {
        "records_per_round": args.buffer_records,
        "records_per_batch": args.buffer_batch,
        "us_per_record": costs,
    }
    note = f"~400-byte records, {args.buffer_batch}/batch"
    for label, value in costs.items():
        result.add(label, value, "µs/record", note=note)
    return result
