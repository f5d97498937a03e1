"""`ensure_topics` against a fake admin client: what it creates, what it refuses, what it
only warns about. The real broker's side is tests/integration/test_fleet_topics.py."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import load_settings
from twitch_ingestion.fleet.control_topic import control_topic_specs
from twitch_ingestion.kafka.topics import TopicSpec, ensure_topics

COMPACT = (("cleanup.policy", "compact"),)


@dataclass
class Entry:
    value: str


@dataclass
class Topic:
    partitions: dict[int, object]
    error: KafkaError | None = None


@dataclass
class Metadata:
    topics: dict[str, Topic]


def resolved(value: object) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def failed(code: int) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(KafkaException(KafkaError(code)))
    return future


@dataclass
class FakeAdmin:
    """Topics → (partition count, cleanup.policy); records what was asked of it."""

    topics: dict[str, tuple[int, str]]
    created_by_someone_else: dict[str, tuple[int, str]] = field(default_factory=dict)
    describe_error: int | None = None
    created: list[str] = field(default_factory=list)
    described: list[str] = field(default_factory=list)
    metadata_requests: list[str | None] = field(default_factory=list)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Metadata:
        self.metadata_requests.append(topic)
        return Metadata(
            {name: Topic(dict.fromkeys(range(count))) for name, (count, _) in self.topics.items()}
        )

    def create_topics(self, new: list[NewTopic], **_: Any) -> dict[str, Future[Any]]:
        futures: dict[str, Future[Any]] = {}
        for topic in new:
            raced = self.created_by_someone_else.get(topic.topic)
            if raced is not None:
                self.topics[topic.topic] = raced
                futures[topic.topic] = failed(KafkaError.TOPIC_ALREADY_EXISTS)
                continue
            self.created.append(topic.topic)
            policy = (topic.config or {}).get("cleanup.policy", "delete")
            self.topics[topic.topic] = (topic.num_partitions, policy)
            futures[topic.topic] = resolved(None)
        return futures

    def describe_configs(
        self, resources: list[ConfigResource], **_: Any
    ) -> dict[ConfigResource, Future[Any]]:
        futures: dict[ConfigResource, Future[Any]] = {}
        for resource in resources:
            self.described.append(resource.name)
            if self.describe_error is not None:
                futures[resource] = failed(self.describe_error)
            else:
                policy = self.topics[resource.name][1]
                futures[resource] = resolved({"cleanup.policy": Entry(policy)})
        return futures


def check(admin: FakeAdmin, specs: list[TopicSpec], *, create: bool = True) -> Any:
    fake: Any = admin
    client: AdminClient = fake
    return ensure_topics(client, specs, create=create)


def fleet_specs(partitions: int = 8) -> list[TopicSpec]:
    settings = load_settings(
        require_channels=False,
        kafka_topic_channels="control",
        kafka_topic_instances="reports",
        kafka_channels_partitions=partitions,
    )
    return control_topic_specs(configs.control_topics_config(settings))


def test_missing_fleet_topics_are_created_compacted_and_never_asked_for_by_name() -> None:
    admin = FakeAdmin({})

    result = check(admin, fleet_specs(partitions=8))

    assert result.ok
    assert admin.topics == {"control": (8, "compact"), "reports": (1, "compact")}
    # A metadata request naming a topic is what makes a broker auto-create it.
    assert admin.metadata_requests == [None]
    assert admin.described == []  # created by us: as specified


def test_a_control_topic_that_is_not_compacted_is_refused_and_nothing_is_created() -> None:
    admin = FakeAdmin({"control": (1, "delete")})

    result = check(admin, fleet_specs())

    assert not result.ok
    assert result.misconfigured == {"control"}
    assert "cleanup.policy=delete (needs compact)" in result.problems["control"]
    assert "--add-config cleanup.policy=compact" in result.problems["control"]
    assert admin.created == []  # not even the reports topic


def test_compact_and_delete_is_not_compacted_enough() -> None:
    admin = FakeAdmin({"control": (8, "compact,delete"), "reports": (1, "compact")})

    assert check(admin, fleet_specs()).misconfigured == {"control"}


def test_fewer_partitions_than_configured_is_only_a_warning() -> None:
    admin = FakeAdmin({"control": (2, "compact"), "reports": (1, "compact")})

    result = check(admin, fleet_specs(partitions=8))

    assert result.ok
    assert "has 2 partitions, fewer than the 8 configured" in result.warnings["control"]
    assert "reports" not in result.warnings


def test_a_topic_someone_else_created_meanwhile_is_checked_too() -> None:
    admin = FakeAdmin({}, created_by_someone_else={"control": (1, "delete")})

    result = check(admin, fleet_specs())

    assert result.misconfigured == {"control"}
    assert admin.created == ["reports"]


def test_a_configuration_we_may_not_read_is_a_warning_not_a_refusal() -> None:
    admin = FakeAdmin(
        {"control": (8, "compact"), "reports": (1, "compact")},
        describe_error=KafkaError.TOPIC_AUTHORIZATION_FAILED,
    )

    result = check(admin, fleet_specs())

    assert result.ok
    assert "could not check the configuration" in result.warnings["control"]


def test_a_missing_topic_without_create_is_a_problem_but_not_a_misconfiguration() -> None:
    admin = FakeAdmin({"reports": (1, "compact")})

    result = check(admin, fleet_specs(), create=False)

    assert not result.ok
    assert result.misconfigured == frozenset()
    assert "KAFKA_CREATE_TOPICS=false" in result.problems["control"]


def test_topics_without_required_settings_are_not_described() -> None:
    admin = FakeAdmin({"chat": (1, "delete")})

    result = check(admin, [TopicSpec("chat", 3), TopicSpec("events", 3)])

    assert result.ok
    assert admin.described == []
    assert admin.created == ["events"]
    assert result.warnings == {}
