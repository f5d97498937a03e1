"""A full BUFFER_DIR does not stop ingestion: the real service on a 512 KiB tmpfs.

A tester saw the service exit after ~1,300 lines with BUFFER_DIR on a 512 KiB filesystem
(the segment grew until ENOSPC). Here `twitch-ingestion run` streams a few thousand
numbered lines from the simulator into the real broker with BUFFER_DIR on such a tmpfs:
the disk fills again and again, and every line must still reach Kafka, once and in
order per channel, with the service running throughout.

Mounting needs root (CAP_SYS_ADMIN); elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import twitch_env
from tests.integration.kafka_helpers import collect_records
from tests.integration.numbered_chat import assert_exactly_once_in_order, numbers_by_channel
from tests.integration.service_process import StartService, stop_cleanly
from tests.support.health_endpoint import metric
from tests.support.log_events import events
from tests.support.ports import free_port
from twitch_ingestion.simulator import SimulatorThread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


CHANNELS = ["alpha", "beta", "gamma"]
PER_CHANNEL = 1000  # ~1.4 MB of records: the tmpfs fills several times over
RATE = 1500.0
TMPFS_SIZE = "512k"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs, unmounted afterwards; skips the test when mounting is not allowed."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 512 KiB tmpfs for BUFFER_DIR needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        unmounted = subprocess.run(["umount", str(mount_point)], check=False)
        if unmounted.returncode != 0:  # still busy: detach it now, freed when unused
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_buffer_dir_holds_records_in_memory_and_every_line_reaches_kafka(
    small_disk: Path,
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    env = {
        **twitch_env(simulator, CHANNELS),
        **topics,
        "BUFFER_DIR": str(small_disk / "buffer"),
        "HEALTH_HOST": "127.0.0.1",
        "HEALTH_PORT": str(free_port()),
    }
    service = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    service.wait_for_log("kafka topics ready")

    simulator.start_numbered(CHANNELS, rate=RATE, count=PER_CHANNEL).wait(timeout=60)
    stats = simulator.stats()
    assert not stats.sent_while_unjoined
    last = {channel: stats.numbered_high_water.get(channel, 0) for channel in CHANNELS}
    assert last == dict.fromkeys(CHANNELS, PER_CHANNEL)

    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=PER_CHANNEL * len(CHANNELS)
    )
    assert_exactly_once_in_order(numbers_by_channel(records), last)

    assert service.process.poll() is None, service.logs()[-4000:]
    full = events(service, "buffer disk full")
    assert full, "the disk never filled: the test proves nothing"
    assert full[0]["level"] == "warning"
    assert events(service, "buffer disk writable again"), "it never went back to disk"
    assert metric(env, "twitch_ingestion_buffer_records_held_in_memory_total", default=0.0) > 0
    stop_cleanly(service)
