"""examples/consume_chat.py against the demo's records, as docs/consuming.md promises:
every chat record once (a replayed duplicate dropped by `message_id`), the events, and
a dead letter read by its headers, never parsed as chat."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.integration.kafka_helpers import collect_records, delete_topics
from tests.integration.service_process import clean_environment
from twitch_ingestion.records import DLQ_HEADER_REASON, DLQ_HEADER_RECEIVED_AT

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "consume_chat.py"
TOPIC_NAMES = ("twitch-chat-messages", "twitch-chat-events", "twitch-chat-messages.dlq")


@pytest.fixture
def demo_prefix(kafka_brokers: str) -> Iterator[str]:
    prefix = f"test-consumer-{uuid.uuid4().hex[:10]}."
    yield prefix
    delete_topics(kafka_brokers, [prefix + name for name in TOPIC_NAMES])


def record_count(brokers: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": brokers})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"count-{uuid.uuid4()}"})
    try:
        total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            total += high - low
        return total
    finally:
        consumer.close()


def test_the_example_consumer_reads_each_demo_record_once_and_the_dead_letters(
    kafka_brokers: str, demo_prefix: str, tmp_path: Path
) -> None:
    env = {"KAFKA_BROKERS": kafka_brokers, "LOG_LEVEL": "warning"}
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "twitch_ingestion",
            "demo",
            "--quiet",
            "--rate",
            "0",
            "--topic-prefix",
            demo_prefix,
        ],
        cwd=tmp_path,
        env=clean_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    chat, events, dlq = (demo_prefix + name for name in TOPIC_NAMES)
    chat_records = record_count(kafka_brokers, chat)
    assert chat_records > 100

    # What at-least-once allows (a record sent again after a crash), and a dead letter.
    [first] = collect_records(kafka_brokers, chat, expected=1, settle_s=0)[:1]
    producer = Producer({"bootstrap.servers": kafka_brokers})
    producer.produce(chat, first.value, first.key)
    producer.produce(
        dlq,
        b"@badges= :broken PRIVMSG\r",
        None,
        headers=[(DLQ_HEADER_REASON, b"privmsg-without-channel"), (DLQ_HEADER_RECEIVED_AT, b"17")],
    )
    assert producer.flush(10) == 0

    consumer = subprocess.run(
        [
            *(sys.executable, str(EXAMPLE), "--brokers", kafka_brokers, "--group", "example"),
            *("--chat-topic", chat, "--events-topic", events, "--dlq-topic", dlq),
            *("--idle-timeout-s", "5"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert consumer.returncode == 0, consumer.stderr
    lines = [json.loads(line) for line in consumer.stdout.splitlines()]
    chat_lines = [line for line in lines if line["kind"] == "chat"]
    assert len(chat_lines) == chat_records  # the duplicate dropped
    assert len({line["message_id"] for line in chat_lines}) == chat_records
    assert any(line["kind"] == "event" for line in lines)
    [dead] = [line for line in lines if line["kind"] == "dead_letter"]
    assert dead["reason"] == "privmsg-without-channel"
    assert dead["received_at"] == 17
    assert "duplicates dropped" in consumer.stderr
