"""The fleet's commands as a user meets them: `channels add|remove` say what changed,
`status` with no instance running says how to start one, and `run` in a fleet does not
count the TWITCH_CHANNEL it ignores."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import delete_topics
from tests.integration.service_process import ServiceProcess, clean_environment

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet_env(kafka_brokers: str) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    env = {
        "KAFKA_BROKERS": kafka_brokers,
        "KAFKA_TOPIC_CHANNELS": f"test-channels-{suffix}",
        "KAFKA_TOPIC_INSTANCES": f"test-instances-{suffix}",
        "KAFKA_CHANNELS_GROUP": f"test-group-{suffix}",
        "KAFKA_CHANNELS_PARTITIONS": "4",
    }
    yield env
    delete_topics(kafka_brokers, [env["KAFKA_TOPIC_CHANNELS"], env["KAFKA_TOPIC_INSTANCES"]])


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twitch_ingestion", *args],
        cwd=cwd,
        env=clean_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_channel_changes_are_reported_as_they_happened(
    fleet_env: dict[str, str], tmp_path: Path
) -> None:
    listed = tmp_path / "channels.txt"
    listed.write_text("# our channels\nforsen\n\nxqc  # and this one\n", encoding="utf-8")
    added = cli(fleet_env, tmp_path, "channels", "add", "--file", str(listed))
    assert added.returncode == 0, added.stderr
    assert added.stderr.strip().endswith(f"2 channels added ({fleet_env['KAFKA_TOPIC_CHANNELS']})")

    again = cli(fleet_env, tmp_path, "channels", "add", "forsen", "lirik")
    assert again.returncode == 0, again.stderr
    assert "1 channel added" in again.stderr
    assert "1 already in the list: forsen" in again.stderr

    removed = cli(fleet_env, tmp_path, "channels", "remove", "nosuchchannel")
    assert removed.returncode == 0, removed.stderr
    assert "0 channels removed" in removed.stderr
    assert "1 not in the list: nosuchchannel" in removed.stderr

    listing = cli(fleet_env, tmp_path, "channels", "list")
    assert listing.stdout.split() == ["forsen", "lirik", "xqc"]


def test_status_with_no_instance_running_says_how_to_start_one(
    fleet_env: dict[str, str], tmp_path: Path
) -> None:
    status = cli(fleet_env, tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert "no instance is running in this group: start one with CHANNEL_SOURCE=kafka" in (
        status.stdout
    )


def test_run_in_a_fleet_does_not_count_the_twitch_channel_it_ignores(
    fleet_env: dict[str, str], tmp_path: Path
) -> None:
    service = ServiceProcess(
        tmp_path,
        {
            **fleet_env,
            "CHANNEL_SOURCE": "kafka",
            "INSTANCE_ID": "fleet-commands-test",
            "TWITCH_CHANNEL": "forsen",
            "TWITCH_IRC_HOST": "127.0.0.1",
            "TWITCH_IRC_PORT": "1",
            "TWITCH_IRC_TLS": "false",
            "BUFFER_DIR": str(tmp_path / "buffer"),
            "KAFKA_TOPIC_CHAT_MESSAGES": f"{fleet_env['KAFKA_TOPIC_CHANNELS']}-chat",
            "KAFKA_TOPIC_CHAT_EVENTS": f"{fleet_env['KAFKA_TOPIC_CHANNELS']}-events",
            "KAFKA_TOPIC_DLQ": "",
        },
    )
    try:
        ignored = service.wait_for_log("twitch channel setting ignored in a fleet")
        assert ignored["variable"] == "TWITCH_CHANNEL"
        starting = service.wait_for_log("service starting")
        assert "channels" not in starting
        assert starting["control_topic"] == fleet_env["KAFKA_TOPIC_CHANNELS"]
        assert service.stop() == 0, service.logs()[-3000:]
    finally:
        service.close()
        delete_topics(
            fleet_env["KAFKA_BROKERS"],
            [f"{fleet_env['KAFKA_TOPIC_CHANNELS']}-{kind}" for kind in ("chat", "events")],
        )
