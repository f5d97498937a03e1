"""`append_all` against a Kafka that acknowledges a little late, on the real clock.

A task plays Kafka, acknowledging what was appended every millisecond; the buffer must
take the whole batch in chunks as acknowledgements free room, in order. The buffers' other
tests are unit tests (`tests/unit/test_buffer*.py`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.buffers import memory_records, records
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.memory import MemoryBuffer


async def test_append_all_waits_for_acks_and_keeps_every_record_in_order(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, max_bytes=8192, segment_bytes=2048)
    buffer.open()
    batch = records(0, 300, size=100)

    async def kafka() -> None:  # acks whatever is appended, a little late
        acked = 0
        while acked < 300:
            await asyncio.sleep(0.001)
            while acked < buffer.next_seq:
                buffer.ack(acked)
                acked += 1

    acker = asyncio.create_task(kafka())
    chunks = await asyncio.wait_for(buffer.append_all(batch), 5)
    await asyncio.wait_for(acker, 5)
    assert len(chunks) > 1
    assert sum(chunk.accepted for chunk in chunks) == 300
    assert [chunk.first_seq for chunk in chunks] == [
        sum(c.accepted for c in chunks[:i]) for i in range(len(chunks))
    ]
    buffer.close()


async def test_block_waits_for_acks_to_free_memory(tmp_path: Path) -> None:
    buffer = MemoryBuffer(tmp_path, max_bytes=4096)
    buffer.open()

    async def kafka() -> None:  # acks whatever has a seq, a little late
        acked = 0
        while acked < 100:
            await asyncio.sleep(0.001)
            while acked < buffer.next_seq:
                buffer.ack(acked)
                acked += 1

    acker = asyncio.create_task(kafka())
    chunks = await asyncio.wait_for(buffer.append_all(memory_records(0, 100, size=100)), 5)
    await asyncio.wait_for(acker, 5)
    assert len(chunks) > 1
    assert sum(c.accepted for c in chunks) == 100
    assert buffer.records == 0
    buffer.close()
