"""The service under test: `twitch-ingestion run` as a subprocess, fed by the simulator.

`running_service()` creates fresh topics on the real broker (so a benchmark can set
topic configs such as `message.timestamp.type=LogAppendTime` before the service sees
them), starts the service pointed at the simulator with a fresh buffer directory, waits
until its channels are joined and its producer has reached Kafka, and on exit stops it
with SIGTERM and deletes the topics and the buffer. Everything else is the service's
default configuration unless a benchmark passes `env`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tests.integration.service_process import ServiceProcess

from bench.process_stats import ProcessStats
from twitch_ingestion.simulator import SimulatorThread

__all__ = [
    "DEFAULT_BROKERS",
    "BenchTopics",
    "RunningService",
    "TopicCounter",
    "broker_problem",
    "local_broker_stats",
    "running_service",
]

DEFAULT_BROKERS = "127.0.0.1:9092"
# The service's default KAFKA_TOPIC_PARTITIONS: the topics are created as it would.
_PARTITIONS = 6
# How much of the service's log to show when a run fails.
_LOG_TAIL_CHARS = 4000
_LOCAL_BROKER_PID_FILE = Path(__file__).resolve().parents[1] / ".kafka-local" / "broker.pid"


def local_broker_stats(brokers: str) -> ProcessStats | None:
    """The local broker's process (`scripts/kafka-local`), when `brokers` is it: on this
    machine its CPU competes with the service's, so the benchmarks report it too."""
    if brokers not in (DEFAULT_BROKERS, "localhost:9092"):
        return None
    try:
        stats = ProcessStats(int(_LOCAL_BROKER_PID_FILE.read_text().strip()))
        stats.cpu_seconds()
    except (OSError, ValueError):
        return None
    return stats


@dataclass(frozen=True, slots=True)
class BenchTopics:
    chat: str
    events: str
    dlq: str

    @classmethod
    def fresh(cls, label: str) -> BenchTopics:
        suffix = f"{label}-{uuid.uuid4().hex[:8]}"
        return cls(f"bench-chat-{suffix}", f"bench-events-{suffix}", f"bench-chat-{suffix}.dlq")

    @property
    def names(self) -> list[str]:
        return [self.chat, self.events, self.dlq]

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_TOPIC_CHAT_MESSAGES": self.chat,
            "KAFKA_TOPIC_CHAT_EVENTS": self.events,
            "KAFKA_TOPIC_DLQ": self.dlq,
        }


def broker_problem(brokers: str, timeout_s: float) -> str | None:
    """None when a Kafka broker at `brokers` answers within `timeout_s`, else one line
    saying what is missing and what to start (rather than a timeout's traceback later,
    from the first topic a benchmark creates)."""
    # log_level 0: librdkafka would print each refused connection to stderr itself.
    admin = AdminClient({"bootstrap.servers": brokers, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(exc)
        return (
            f"no Kafka broker answers at {brokers} within {timeout_s:g} s ({reason}): start one"
            " with `make broker`, or point --brokers (or KAFKA_BROKERS) at yours"
        )
    return None


def create_topics(brokers: str, topics: BenchTopics, chat_config: Mapping[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    new = [
        NewTopic(
            name,
            num_partitions=_PARTITIONS,
            replication_factor=1,
            config=dict(chat_config) if name == topics.chat else {},
        )
        for name in topics.names
    ]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(timeout=30)


def delete_topics(brokers: str, names: Sequence[str]) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.delete_topics(list(names), operation_timeout=30).values():
        with contextlib.suppress(KafkaException):
            future.result(timeout=30)


class TopicCounter:
    """Records in a topic, from its partitions' watermarks (cheap: no consuming)."""

    def __init__(self, brokers: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": brokers, "group.id": f"bench-offsets-{uuid.uuid4()}"}
        )

    def count(self, topic: str) -> int:
        total = 0
        for partition in range(_PARTITIONS):
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            total += high - low
        return int(total)

    def close(self) -> None:
        self._consumer.close()


@dataclass(slots=True)
class RunningService:
    simulator: SimulatorThread
    service: ServiceProcess
    topics: BenchTopics
    channels: list[str]
    stats: ProcessStats
    counter: TopicCounter
    workdir: Path
    stopped: dict[str, Any] = field(default_factory=dict)
    """The service's `service stopped` log event, once `stop()` returned."""
    exit_code: int | None = None

    def records(self) -> int:
        """Records in the chat, events and dead-letter topics together."""
        return sum(self.counter.count(name) for name in self.topics.names)

    def chat_records(self) -> int:
        return self.counter.count(self.topics.chat)

    def wait_for_chat_records(
        self, expected: int, *, timeout_s: float = 60.0, stall_s: float = 15.0
    ) -> int:
        """Poll the chat topic until it holds `expected` records, or until it stops
        growing for `stall_s` (or `timeout_s` passes); returns the last count."""
        deadline = time.monotonic() + timeout_s
        last, last_change = -1, time.monotonic()
        while True:
            count = self.chat_records()
            now = time.monotonic()
            if count != last:
                last, last_change = count, now
            if count >= expected or now >= deadline or now - last_change >= stall_s:
                return count
            time.sleep(0.25)

    def stop(self, timeout_s: float = 90.0) -> int:
        if self.exit_code is None:
            self.exit_code = self.service.stop(signal.SIGTERM, timeout_s)
            for event in self.service.log_events():
                if event.get("event") == "service stopped":
                    self.stopped = event
        return self.exit_code


@contextlib.contextmanager
def running_service(
    simulator: SimulatorThread,
    channels: Sequence[str],
    *,
    label: str,
    buffer_mode: str,
    brokers: str = DEFAULT_BROKERS,
    env: Mapping[str, str] | None = None,
    chat_topic_config: Mapping[str, str] | None = None,
    ready_timeout_s: float = 60.0,
) -> Iterator[RunningService]:
    topics = BenchTopics.fresh(label)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    create_topics(brokers, topics, chat_topic_config or {})
    counter = TopicCounter(brokers)
    service: ServiceProcess | None = None
    try:
        service_env = {
            "TWITCH_CHANNEL": ",".join(channels),
            "TWITCH_IRC_HOST": simulator.host,
            "TWITCH_IRC_PORT": str(simulator.port),
            "TWITCH_IRC_TLS": "false",
            "KAFKA_BROKERS": brokers,
            "BUFFER_MODE": buffer_mode,
            "BUFFER_DIR": str(workdir / "buffer"),
            **topics.env(),
            **(env or {}),
        }
        service = ServiceProcess(workdir, service_env)
        run = RunningService(
            simulator,
            service,
            topics,
            list(channels),
            ProcessStats(service.process.pid),
            counter,
            workdir,
        )
        try:
            simulator.wait_for_joined(channels, timeout=ready_timeout_s)
            service.wait_for_log("kafka reachable", timeout_s=ready_timeout_s)
            yield run
            run.stop()
        except BaseException:
            print(f"--- service log ({service.log_path}), last lines:", file=sys.stderr)
            print(service.logs()[-_LOG_TAIL_CHARS:], file=sys.stderr)
            raise
    finally:
        if service is not None:
            service.close()
        counter.close()
        delete_topics(brokers, topics.names)
        shutil.rmtree(workdir, ignore_errors=True)
