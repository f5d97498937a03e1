"""Records, metrics and log capture for the buffer tests (disk, memory, disk full)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from structlog.testing import CapturingLogger

from twitch_ingestion.buffer import disk, reading, recovery
from twitch_ingestion.buffer.protocol import Buffer, BufferedRecord
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.records import Record

TOPIC = "twitch-chat-messages"
EVENTS = "twitch-chat-events"
T0 = 1_700_000_000_000


def record(i: int, size: int = 40) -> BufferedRecord:
    body = f"message {i} ".encode()
    return BufferedRecord(
        EVENTS if i % 7 == 3 else TOPIC,
        None if i % 5 == 4 else f"channel{i % 3}".encode(),
        (body * (size // len(body) + 1))[:size],
        [("kind", b"privmsg")] if i % 11 == 5 else None,
        T0 + i,
    )


def records(start: int, stop: int, size: int = 40) -> list[Record]:
    return [record(i, size) for i in range(start, stop)]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def dropped(reason: str) -> float:
    return sample("twitch_ingestion_buffer_records_dropped_total", reason=reason)


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


@pytest.fixture
def captured_log(monkeypatch: pytest.MonkeyPatch) -> CapturingLogger:
    """Every buffer log line: the disk buffer's, recovery's at open, reading back's."""
    capture = CapturingLogger()
    for module in (disk, reading, recovery):
        monkeypatch.setattr(module, "log", capture)
    return capture


# Property tests open real buffers in temporary directories: slow, and they share one.
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def warnings_named(capture: CapturingLogger, event: str) -> list[dict[str, object]]:
    return [
        call.kwargs
        for call in capture.calls
        if call.method_name == "warning" and call.args and call.args[0] == event
    ]


# --- round trip and order ----------------------------------------------------------


def ack_some(buffer: Buffer, data: st.DataObject, appended: list[int], acked: set[int]) -> None:
    """Ack a drawn subset, in a drawn order, of the appended records not yet acked."""
    candidates = sorted(set(appended) - acked)
    to_ack = data.draw(st.lists(st.sampled_from(candidates), unique=True), label="acks")
    for seq in to_ack:
        buffer.ack(seq)
    acked.update(to_ack)


def memory_record(i: int, size: int = 40) -> BufferedRecord:
    """The `i`th record of the MemoryBuffer tests (one topic, other keys and headers)."""
    return BufferedRecord(
        "twitch-chat-messages",
        None if i % 4 == 0 else b"channel%d" % (i % 3),
        (b"message %d " % i * size)[:size],
        [("kind", b"notice")] if i % 9 == 1 else None,
        T0 + i,
    )


def memory_records(start: int, stop: int, size: int = 40) -> list[Record]:
    return [memory_record(i, size) for i in range(start, stop)]
