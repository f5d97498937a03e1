"""Making sure the topics exist before the first record is produced.

A missing topic with broker auto-create off would otherwise surface as a stream of
UNKNOWN_TOPIC_OR_PART delivery errors long after startup; checking here turns it into
one clear message. A broker that is unreachable is not fatal: the service starts,
reports not-ready and keeps records until the broker answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = ["TopicCheck", "TopicSpec", "ensure_topics"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = -1
    config: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TopicCheck:
    """What `ensure_topics` found: which topics exist now and why others do not."""

    reachable: bool
    existing: frozenset[str]
    problems: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems


def ensure_topics(
    admin: AdminClient, specs: list[TopicSpec], *, create: bool, timeout_s: float = 10.0
) -> TopicCheck:
    """Create the topics in `specs` that are missing (when `create`), and report."""
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return TopicCheck(False, frozenset(), {"*": f"Kafka is unreachable: {exc.args[0]}"})
    existing = {name for name, topic in metadata.topics.items() if topic.error is None}
    missing = [spec for spec in specs if spec.name not in existing]
    problems: dict[str, str] = {}
    if missing and not create:
        for spec in missing:
            problems[spec.name] = (
                f"topic {spec.name!r} does not exist and KAFKA_CREATE_TOPICS=false: "
                "create it, or set KAFKA_CREATE_TOPICS=true"
            )
        return TopicCheck(True, frozenset(existing), problems)
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=spec.replication_factor,
                    config=dict(spec.config),
                )
                for spec in missing
            ],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
                existing.add(name)
                log.info("kafka topic created", topic=name)
            except KafkaException as exc:
                error = exc.args[0]
                if not isinstance(error, KafkaError):
                    problems[name] = f"could not create topic {name!r}: {error}"
                    continue
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    existing.add(name)
                    continue
                problems[name] = (
                    f"could not create topic {name!r}: {error.str()} ({error.name()}); "
                    "check the broker's ACLs and topic policy, or create it yourself"
                )
    return TopicCheck(True, frozenset(existing), problems)
