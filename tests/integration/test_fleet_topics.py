"""Issue 13: no command of this project lets the broker create a topic.

The shared test broker runs with Kafka's default `auto.create.topics.enable=true`
(scripts/kafka-local), as most brokers do: a client that merely asks for a missing
topic's metadata gets it created, with one partition and `cleanup.policy=delete`. For
the control topic that means one instance gets all the work and retention deletes the
channel list. Each fleet command must create the fleet's topics as documented before
touching them, or refuse them in one line when they exist with the wrong policy.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from tests.integration.conftest import KAFKA_LOCAL
from tests.integration.kafka_helpers import delete_topics
from tests.integration.service_process import ServiceProcess, clean_environment
from twitch_ingestion.simulator import SimulatorThread

pytestmark = pytest.mark.integration

PARTITIONS = 6


@dataclass(frozen=True)
class Described:
    partitions: int
    cleanup_policy: str


@dataclass
class FleetTopics:
    """Fresh names for one test's fleet topics, and ways to look at the broker."""

    brokers: str
    workdir: Path
    env: dict[str, str]

    @property
    def control(self) -> str:
        return self.env["KAFKA_TOPIC_CHANNELS"]

    @property
    def instances(self) -> str:
        return self.env["KAFKA_TOPIC_INSTANCES"]

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.brokers})

    def describe(self, topic: str) -> Described | None:
        """The topic as the broker has it, or None; asks for all topics, so that the
        question itself never creates it."""
        admin = self.admin()
        found = admin.list_topics(timeout=10).topics.get(topic)
        if found is None:
            return None
        resource = ConfigResource(ResourceType.TOPIC, topic)
        config = admin.describe_configs([resource])[resource].result(timeout=10)
        return Described(len(found.partitions), config["cleanup.policy"].value)

    def create(self, topic: str, partitions: int, cleanup_policy: str) -> None:
        new = NewTopic(topic, partitions, 1, config={"cleanup.policy": cleanup_policy})
        admin = self.admin()  # kept alive until the futures resolve
        for future in admin.create_topics([new]).values():
            future.result(timeout=30)

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`twitch-ingestion <args>` as a user runs it; its exit code is not checked."""
        return subprocess.run(
            [sys.executable, "-m", "twitch_ingestion", *args],
            cwd=self.workdir,
            env=clean_environment({**self.env, **env}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def broker_auto_creates(kafka_brokers: str) -> None:
    """What makes these tests mean something: asking this broker about a missing topic
    by name, as librdkafka's producer and admin clients do by default, creates it."""
    probe = f"test-autocreate-probe-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_brokers})
    try:
        admin.list_topics(probe, timeout=10)
        created = probe in admin.list_topics(timeout=10).topics
    finally:
        delete_topics(kafka_brokers, [probe])
    if not created:
        pytest.skip(f"the broker at {kafka_brokers} does not auto-create topics ({KAFKA_LOCAL})")


@pytest.fixture
def fleet_topics(
    kafka_brokers: str, broker_auto_creates: None, tmp_path: Path
) -> Iterator[FleetTopics]:
    suffix = uuid.uuid4().hex[:10]
    env = {
        "KAFKA_BROKERS": kafka_brokers,
        "KAFKA_TOPIC_CHANNELS": f"test-channels-{suffix}",
        "KAFKA_TOPIC_INSTANCES": f"test-instances-{suffix}",
        "KAFKA_CHANNELS_GROUP": f"test-fleet-{suffix}",
        "KAFKA_CHANNELS_PARTITIONS": str(PARTITIONS),
        "KAFKA_TOPIC_CHAT_MESSAGES": f"test-chat-{suffix}",
        "KAFKA_TOPIC_CHAT_EVENTS": f"test-events-{suffix}",
        "KAFKA_TOPIC_DLQ": f"test-chat-{suffix}.dlq",
        "KAFKA_TOPIC_PARTITIONS": "1",
    }
    yield FleetTopics(kafka_brokers, tmp_path, env)
    delete_topics(
        kafka_brokers,
        [v for k, v in env.items() if k.startswith("KAFKA_TOPIC_")],
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [("status",), ("channels", "list")])
def test_reading_commands_create_both_fleet_topics_compacted_with_the_configured_partitions(
    fleet_topics: FleetTopics, command: tuple[str, ...]
) -> None:
    result = fleet_topics.cli(*command)

    assert result.returncode == 0, result.stderr
    assert fleet_topics.describe(fleet_topics.control) == Described(PARTITIONS, "compact")
    assert fleet_topics.describe(fleet_topics.instances) == Described(1, "compact")


def test_a_control_topic_with_cleanup_policy_delete_is_refused_in_one_line(
    fleet_topics: FleetTopics,
) -> None:
    # What an auto-create on the broker's defaults leaves behind.
    fleet_topics.create(fleet_topics.control, 1, "delete")

    for command in (("channels", "add", "forsen"), ("channels", "list"), ("status",)):
        result = fleet_topics.cli(*command)
        assert result.returncode != 0, command
        assert "Traceback" not in result.stderr
        (line,) = _lines(result.stderr)
        assert fleet_topics.control in line
        assert "cleanup.policy=delete" in line
        assert "compact" in line
        assert result.stdout == ""
    # Refused means untouched: nothing written, the instances topic not created either.
    low_high = _watermarks(fleet_topics, fleet_topics.control)
    assert low_high == (0, 0)
    assert fleet_topics.describe(fleet_topics.instances) is None
    assert fleet_topics.describe(fleet_topics.control) == Described(1, "delete")


def test_an_instances_topic_with_cleanup_policy_delete_is_refused_too(
    fleet_topics: FleetTopics,
) -> None:
    fleet_topics.create(fleet_topics.instances, 1, "delete")

    result = fleet_topics.cli("channels", "add", "forsen")

    assert result.returncode != 0
    (line,) = _lines(result.stderr)
    assert fleet_topics.instances in line
    assert "cleanup.policy=delete" in line
    assert fleet_topics.describe(fleet_topics.control) is None


def test_run_refuses_a_control_topic_with_cleanup_policy_delete_in_one_line(
    fleet_topics: FleetTopics, simulator: SimulatorThread, tmp_path: Path
) -> None:
    fleet_topics.create(fleet_topics.control, 1, "delete")
    service = ServiceProcess(
        tmp_path,
        {
            **fleet_topics.env,
            "CHANNEL_SOURCE": "kafka",
            "INSTANCE_ID": "refused-1",
            "BUFFER_DIR": str(tmp_path / "buffer"),
            "TWITCH_IRC_HOST": simulator.host,
            "TWITCH_IRC_PORT": str(simulator.port),
            "TWITCH_IRC_TLS": "false",
            "SHUTDOWN_TIMEOUT_S": "5",
        },
    )
    try:
        code = service.wait_exit(60)
        logs = service.logs()
    finally:
        service.close()

    assert code != 0
    assert "Traceback" not in logs
    errors = [e for e in service.log_events() if e.get("level") in {"error", "critical"}]
    assert len(errors) == 1, errors
    (error,) = errors
    assert error["event"] == "fleet membership failed"
    assert fleet_topics.control in error["error"]
    assert "cleanup.policy=delete" in error["error"]
    assert _watermarks(fleet_topics, fleet_topics.control) == (0, 0)
    assert fleet_topics.describe(fleet_topics.instances) is None


def test_fewer_partitions_than_configured_is_a_warning_not_a_refusal(
    fleet_topics: FleetTopics,
) -> None:
    fleet_topics.create(fleet_topics.control, 2, "compact")

    result = fleet_topics.cli("channels", "add", "forsen")

    assert result.returncode == 0, result.stderr
    warnings = [line for line in _lines(result.stderr) if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert f"has 2 partitions, fewer than the {PARTITIONS} configured" in warnings[0]
    listed = fleet_topics.cli("channels", "list")
    assert listed.stdout.split() == ["forsen"]


def test_tail_of_a_missing_topic_does_not_create_it(fleet_topics: FleetTopics) -> None:
    missing = fleet_topics.env["KAFKA_TOPIC_CHAT_MESSAGES"]

    result = fleet_topics.cli("tail", "--topic", missing, "--idle-timeout-s", "2")

    assert result.returncode == 0, result.stderr
    assert "\t" not in result.stdout  # no record
    assert fleet_topics.describe(missing) is None


def _watermarks(fleet_topics: FleetTopics, topic: str) -> tuple[int, int]:
    """Summed low and high watermarks of `topic` (0, 0: never written)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": fleet_topics.brokers,
            "group.id": f"test-{uuid.uuid4()}",
            "allow.auto.create.topics": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        low = high = 0
        for partition in partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            low, high = low + lo, high + hi
        return low, high
    finally:
        consumer.close()
