"""Topics are made as configured, before the first record is produced.

A private broker that auto-creates topics (Kafka's default) with 2 partitions, started
after the service: if the service produced before its topic check had created the
topics, the broker would make them with 2 partitions instead of `KAFKA_TOPIC_PARTITIONS`.
A topic that already exists with fewer partitions is used, with a warning.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.broker import LocalBroker
from tests.integration.kafka_helpers import collect_records, create_topic, delete_topics
from tests.integration.service_process import ServiceProcess
from twitch_ingestion.simulator import SimulatorThread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BROKER_DEFAULT_PARTITIONS = 2
CONFIGURED_PARTITIONS = 6
CHANNELS = ["alpha", "beta"]
COUNT = 100


@pytest.fixture
def late_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A private broker that auto-creates topics with 2 partitions, not started yet."""
    broker = LocalBroker(
        tmp_path / "kafka", auto_create_topics=True, num_partitions=BROKER_DEFAULT_PARTITIONS
    )
    try:
        yield broker
    finally:
        broker.destroy()


def topic_names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "KAFKA_TOPIC_CHAT_MESSAGES": f"chat-{suffix}",
        "KAFKA_TOPIC_CHAT_EVENTS": f"events-{suffix}",
        "KAFKA_TOPIC_DLQ": f"chat-{suffix}.dlq",
    }


def partition_counts(brokers: str) -> dict[str, int]:
    topics = AdminClient({"bootstrap.servers": brokers}).list_topics(timeout=10).topics
    return {name: len(topic.partitions) for name, topic in topics.items()}


def start_service(
    tmp_path: Path, brokers: str, simulator: SimulatorThread, topics: dict[str, str]
) -> ServiceProcess:
    return ServiceProcess(
        tmp_path,
        {
            **topics,
            "TWITCH_CHANNEL": ",".join(CHANNELS),
            "TWITCH_IRC_HOST": simulator.host,
            "TWITCH_IRC_PORT": str(simulator.port),
            "TWITCH_IRC_TLS": "false",
            "KAFKA_BROKERS": brokers,
            "KAFKA_TOPIC_PARTITIONS": str(CONFIGURED_PARTITIONS),
            "KAFKA_REQUEST_TIMEOUT_MS": "3000",
            "BUFFER_DIR": str(tmp_path / "buffer"),
            "SHUTDOWN_TIMEOUT_S": "15",
        },
    )


def stream_and_collect(
    brokers: str, simulator: SimulatorThread, service: ServiceProcess, chat_topic: str
) -> None:
    simulator.wait_for_joined(CHANNELS, timeout=30)
    simulator.start_numbered(CHANNELS, rate=500, count=COUNT).wait(timeout=30)
    records = collect_records(brokers, chat_topic, expected=COUNT * len(CHANNELS))
    assert len(records) >= COUNT * len(CHANNELS)


def test_a_broker_that_comes_up_after_the_service_gets_topics_with_our_partitions(
    late_broker: LocalBroker, simulator: SimulatorThread, tmp_path: Path
) -> None:
    topics = topic_names()
    service = start_service(tmp_path, late_broker.bootstrap, simulator, topics)
    try:
        simulator.wait_for_joined(CHANNELS, timeout=30)
        # Read and buffered while Kafka is down; produced only once the topics exist.
        simulator.start_numbered(CHANNELS, rate=500, count=COUNT).wait(timeout=30)
        late_broker.start()
        records = collect_records(
            late_broker.bootstrap,
            topics["KAFKA_TOPIC_CHAT_MESSAGES"],
            expected=COUNT * len(CHANNELS),
        )
        assert len(records) == COUNT * len(CHANNELS)
        counts = partition_counts(late_broker.bootstrap)
        assert {name: counts.get(name) for name in topics.values()} == dict.fromkeys(
            topics.values(), CONFIGURED_PARTITIONS
        )
        assert service.stop() == 0, service.logs()[-3000:]
    finally:
        service.close()


def test_an_existing_topic_with_fewer_partitions_is_used_with_a_warning(
    kafka_brokers: str, simulator: SimulatorThread, tmp_path: Path
) -> None:
    # The shared broker auto-creates too (Kafka's default, kafka-local's).
    topics = topic_names()
    events = topics["KAFKA_TOPIC_CHAT_EVENTS"]
    create_topic(kafka_brokers, events, partitions=1)
    service = start_service(tmp_path, kafka_brokers, simulator, topics)
    try:
        warning = service.wait_for_log("kafka topic warning", timeout_s=60)
        assert warning["topic"] == events
        assert f"has 1 partitions, fewer than the {CONFIGURED_PARTITIONS}" in warning["warning"]
        stream_and_collect(kafka_brokers, simulator, service, topics["KAFKA_TOPIC_CHAT_MESSAGES"])
        counts = partition_counts(kafka_brokers)
        assert counts[events] == 1
        assert counts[topics["KAFKA_TOPIC_CHAT_MESSAGES"]] == CONFIGURED_PARTITIONS
        assert counts[topics["KAFKA_TOPIC_DLQ"]] == CONFIGURED_PARTITIONS
        assert service.stop() == 0, service.logs()[-3000:]
    finally:
        service.close()
        delete_topics(kafka_brokers, list(topics.values()))
