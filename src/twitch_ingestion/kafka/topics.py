"""Making sure the topics exist before the first record is produced.

A missing topic with broker auto-create off would otherwise surface as a stream of
UNKNOWN_TOPIC_OR_PART delivery errors long after startup; checking here turns it into
one clear message. A broker that is unreachable is not fatal: the service starts,
reports not-ready and keeps records until the broker answers.

A topic that exists is not always the topic we would have created: the broker may have
auto-created it (1 partition, `cleanup.policy=delete`) for a client that merely asked
for its metadata, or someone made it by hand. For topics whose configuration carries
meaning (`TopicSpec.required_config`, e.g. the fleet's compacted control topic), an
existing one is described and refused when it differs: waiting does not fix that, so
`TopicCheck.misconfigured` tells the caller to stop rather than retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

__all__ = ["NO_AUTO_CREATE", "TopicCheck", "TopicSpec", "ensure_topics"]

log = structlog.get_logger(__name__)

# For a client's config: asking about a topic (metadata, subscribe, produce) must never
# make the broker create it with its defaults. librdkafka's producer (and so the admin
# client) defaults to true, its consumer to false; set it on both, explicitly.
NO_AUTO_CREATE: Mapping[str, object] = MappingProxyType({"allow.auto.create.topics": False})

# Errors of DescribeConfigs that retrying cannot fix: the client may not look at the
# topic's configuration. Not being able to check is not proof of a wrong one.
_NOT_ALLOWED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.INVALID_REQUEST,
    }
)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = -1
    config: tuple[tuple[str, str], ...] = ()
    required_config: frozenset[str] = frozenset()
    """Keys of `config` an existing topic must have with the same value, or it is
    refused (`TopicCheck.misconfigured`)."""
    warn_fewer_partitions: bool = False
    """An existing topic with fewer than `partitions` partitions gets a warning."""
    fewer_partitions_effect: str = "fewer consumers of one group can share its records"
    """What fewer partitions mean for this topic, ending that warning."""


@dataclass(frozen=True, slots=True)
class TopicCheck:
    """What `ensure_topics` found: which topics exist now and why others do not."""

    reachable: bool
    existing: frozenset[str]
    problems: dict[str, str]
    misconfigured: frozenset[str] = frozenset()
    """Topics in `problems` that exist with a configuration their spec refuses: unlike a
    missing topic or an unreachable broker, no retry will fix them."""
    warnings: dict[str, str] = field(default_factory=dict)
    """Usable topics that differ from their spec in a way worth telling the operator."""

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems


def ensure_topics(
    admin: AdminClient, specs: list[TopicSpec], *, create: bool, timeout_s: float = 10.0
) -> TopicCheck:
    """Check the configuration of the topics in `specs` that exist (see
    `TopicSpec.required_config`), create the missing ones (when `create`), and report.

    A refused topic stops everything: nothing is created next to a topic that is not
    going to be used."""
    try:
        counts = _partition_counts(admin, timeout_s)
    except KafkaException as exc:
        return _unreachable(exc)
    existing = set(counts)
    problems: dict[str, str] = {}
    misconfigured: set[str] = set()
    warnings: dict[str, str] = {}
    present = [spec for spec in specs if spec.name in counts]
    _check_existing(admin, present, counts, problems, misconfigured, warnings, timeout_s)
    missing = [spec for spec in specs if spec.name not in counts]
    if missing and not create:
        for spec in missing:
            problems[spec.name] = (
                f"topic {spec.name!r} does not exist and KAFKA_CREATE_TOPICS=false: "
                "create it, or set KAFKA_CREATE_TOPICS=true"
            )
    elif missing and not misconfigured:
        created, raced = _create(admin, missing, problems, timeout_s)
        existing.update(created, raced)
        if raced:  # someone else created it between our look and our create: look at it
            try:
                counts = _partition_counts(admin, timeout_s)
            except KafkaException as exc:
                return _unreachable(exc)
            others = [spec for spec in missing if spec.name in raced]
            _check_existing(admin, others, counts, problems, misconfigured, warnings, timeout_s)
    return TopicCheck(True, frozenset(existing), problems, frozenset(misconfigured), warnings)


def _partition_counts(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    """Every topic of the cluster → its partition count. All topics, never one by name:
    a metadata request naming a topic makes a broker with auto-create on create it."""
    metadata = admin.list_topics(timeout=timeout_s)
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if topic.error is None
    }


def _unreachable(exc: KafkaException) -> TopicCheck:
    return TopicCheck(False, frozenset(), {"*": f"Kafka is unreachable: {exc.args[0]}"})


def _check_existing(
    admin: AdminClient,
    specs: list[TopicSpec],
    counts: Mapping[str, int],
    problems: dict[str, str],
    misconfigured: set[str],
    warnings: dict[str, str],
    timeout_s: float,
) -> None:
    _check_partitions(specs, counts, warnings)
    _check_configs(admin, specs, problems, misconfigured, warnings, timeout_s)


def _create(
    admin: AdminClient, missing: list[TopicSpec], problems: dict[str, str], timeout_s: float
) -> tuple[set[str], set[str]]:
    """Create `missing`; the names created, and those someone else created meanwhile."""
    created: set[str] = set()
    raced: set[str] = set()
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
            created.add(name)
            log.info("kafka topic created", topic=name)
        except KafkaException as exc:
            error = exc.args[0]
            if not isinstance(error, KafkaError):
                problems[name] = f"could not create topic {name!r}: {error}"
                continue
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                raced.add(name)
                continue
            problems[name] = (
                f"could not create topic {name!r}: {error.str()} ({error.name()}); "
                "check the broker's ACLs and topic policy, or create it yourself"
            )
    return created, raced


def _check_partitions(
    specs: list[TopicSpec], counts: Mapping[str, int], warnings: dict[str, str]
) -> None:
    for spec in specs:
        count = counts.get(spec.name)
        if spec.warn_fewer_partitions and count is not None and count < spec.partitions:
            warnings[spec.name] = (
                f"topic {spec.name!r} has {count} partitions, fewer than the {spec.partitions} "
                f"configured: {spec.fewer_partitions_effect}"
            )


def _check_configs(
    admin: AdminClient,
    specs: list[TopicSpec],
    problems: dict[str, str],
    misconfigured: set[str],
    warnings: dict[str, str],
    timeout_s: float,
) -> None:
    """Describe the existing topics with required settings; refuse those that differ."""
    wanted = {spec.name: spec for spec in specs if spec.required_config}
    if not wanted:
        return
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name) for name in wanted],
        request_timeout=timeout_s,
    )
    for resource, future in futures.items():
        spec = wanted[resource.name]
        try:
            entries = future.result()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() in _NOT_ALLOWED:
                warnings[spec.name] = (
                    f"could not check the configuration of topic {spec.name!r}: {error.str()}"
                )
            else:
                problems[spec.name] = (
                    f"could not read the configuration of topic {spec.name!r}: {error}"
                )
            continue
        expected = dict(spec.config)
        wrong = [
            f"{key}={_value(entries, key)} (needs {expected[key]})"
            for key in sorted(spec.required_config)
            if _value(entries, key) != expected[key]
        ]
        if wrong:
            misconfigured.add(spec.name)
            settings = " ".join(f"{key}={expected[key]}" for key in sorted(spec.required_config))
            problems[spec.name] = (
                f"topic {spec.name!r} exists with {', '.join(wrong)}: change it "
                f"(kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} "
                f"--add-config {settings}) or configure another topic"
            )


def _value(entries: Mapping[str, object], key: str) -> str | None:
    entry = entries.get(key)
    value = getattr(entry, "value", None)
    return value if isinstance(value, str) else None
