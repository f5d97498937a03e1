"""`make demo` and `make tail` as a newcomer runs them: the demo creates its topics with
the service's settings, and its summary gives a command that really shows its records."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.kafka_helpers import delete_topics
from tests.integration.service_process import clean_environment
from twitch_ingestion.service import ExitCode

pytestmark = pytest.mark.integration

TOPIC_NAMES = ("twitch-chat-messages", "twitch-chat-events", "twitch-chat-messages.dlq")


@pytest.fixture
def demo_prefix(kafka_brokers: str) -> Iterator[str]:
    """A topic prefix of this test's own (the real demo's is `demo.`)."""
    prefix = f"test-demo-{uuid.uuid4().hex[:10]}."
    yield prefix
    delete_topics(kafka_brokers, [prefix + name for name in TOPIC_NAMES])


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twitch_ingestion", *args],
        cwd=cwd,  # a fresh folder: no checkout around, no .env
        env=clean_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_demo_creates_its_topics_alike_and_names_the_command_that_shows_its_records(
    kafka_brokers: str, demo_prefix: str, tmp_path: Path
) -> None:
    env = {"KAFKA_BROKERS": kafka_brokers, "KAFKA_TOPIC_PARTITIONS": "3", "LOG_LEVEL": "warning"}
    demo = _run(["demo", "--quiet", "--rate", "0", "--topic-prefix", demo_prefix], env, tmp_path)
    assert demo.returncode == 0, demo.stderr[-4000:]
    assert "Traceback" not in demo.stderr

    chat_topic = demo_prefix + "twitch-chat-messages"
    # Every topic made up front with the same configuration, none left to auto-create.
    metadata = AdminClient({"bootstrap.servers": kafka_brokers}).list_topics(timeout=10)
    partitions = {name: len(metadata.topics[demo_prefix + name].partitions) for name in TOPIC_NAMES}
    assert partitions == dict.fromkeys(TOPIC_NAMES, 3)

    # The summary names the exact commands; the CLI one, run as printed, shows records.
    assert f"make tail TOPIC={chat_topic}" in demo.stderr
    command = f"twitch-ingestion tail --topic {chat_topic}"
    assert command in demo.stderr
    tail_args = command.split()[1:]
    tail = _run([*tail_args, "--max-records", "5", "--idle-timeout-s", "20"], env, tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert f"reading topic {chat_topic!r}" in tail.stderr
    records = tail.stdout.splitlines()
    assert len(records) == 5
    assert all(line.split("\t", 1)[1].startswith("{") for line in records)


def test_a_demo_whose_service_cannot_start_ends_at_once_with_its_one_line(
    kafka_brokers: str, demo_prefix: str, tmp_path: Path
) -> None:
    # Another demo holds the buffer directory: the service refuses to start, and the demo
    # must pass that on rather than wait for joins that never come and end in a traceback.
    buffer_dir = tmp_path / "data" / "demo-buffer"
    buffer_dir.mkdir(parents=True)
    with (buffer_dir / ".lock").open("w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        env = {"KAFKA_BROKERS": kafka_brokers, "KAFKA_TOPIC_PARTITIONS": "3"}
        demo = _run(["demo", "--quiet", "--topic-prefix", demo_prefix], env, tmp_path)
    assert demo.returncode == int(ExitCode.BUFFER), demo.stderr[-4000:]
    assert "Traceback" not in demo.stderr
    assert "BUFFER_DIR" in demo.stderr
    assert "did not join" not in demo.stderr
    assert demo.stdout == ""
