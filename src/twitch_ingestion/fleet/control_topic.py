"""The fleet's channel table, kept in a compacted Kafka topic: the *control topic*.

Key: the channel login (UTF-8). Value: the channel's desired state as a JSON object,
today `{"enabled": true}`; `{"enabled": false}` or a tombstone (no value) removes it.
Compaction keeps the newest record per key, so a partition read from its beginning is
the current table for the channels that hash to it — which is all an instance needs to
know about the partitions the consumer group gave it.

`decode_record` and `ChannelTable` are pure (records in, changes out, unit-tested
without a broker); the rest writes and reads the topic for the CLI.

No client here lets the broker create a topic (`allow.auto.create.topics=false`): an
auto-created control topic has one partition and `cleanup.policy=delete`, so one
instance would get all the work and retention would delete the channel list. The topics
are created as specified by `require_control_topics` (or the fleet reader) instead, and
an existing one with the wrong cleanup policy is refused.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from twitch_ingestion.channels import InvalidLogin, normalise_login
from twitch_ingestion.fleet.config import ControlTopicsConfig
from twitch_ingestion.kafka.producer_config import (
    KafkaConnection,
    ProducerTuning,
    admin_config,
    producer_config,
)
from twitch_ingestion.kafka.topics import NO_AUTO_CREATE, TopicCheck, TopicSpec, ensure_topics

__all__ = [
    "ChannelChange",
    "ChannelRecord",
    "ChannelTable",
    "ControlTopicError",
    "InvalidRecord",
    "control_topic_specs",
    "decode_record",
    "encode_state",
    "ensure_control_topics",
    "read_channel_table",
    "read_topic",
    "require_control_topics",
    "write_channels",
]

# Both topics hold one small record per key; compaction is what makes "read from the
# beginning" mean "read the current state".
_COMPACTED = (("cleanup.policy", "compact"),)
# An existing topic without it is refused: retention would delete channels or reports.
_MUST_BE_COMPACTED = frozenset({"cleanup.policy"})


class ControlTopicError(Exception):
    """The fleet's topics cannot be used: missing, unreachable or wrongly configured."""


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """One control-topic record: `channel` is wanted (enabled) or not (removed)."""

    channel: str
    wanted: bool


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """A record no instance can act on; ignored, with this reason logged."""

    key: str
    reason: str


def encode_state(*, enabled: bool = True) -> bytes:
    return json.dumps({"enabled": enabled}, separators=(",", ":")).encode()


def decode_record(key: bytes | None, value: bytes | None) -> ChannelRecord | InvalidRecord:
    """A control-topic record as the fleet understands it.

    A value that is not a JSON object with a boolean `enabled` counts as *not wanted*:
    a channel must be asked for explicitly, and a garbled write must not make every
    instance join something nobody meant.
    """
    shown = repr(key[:40]) if key is not None else "None"
    if key is None:
        return InvalidRecord(shown, "record without a key (the key must be a channel login)")
    try:
        login = normalise_login(key.decode("ascii"))
    except UnicodeDecodeError:
        return InvalidRecord(shown, "key is not a Twitch channel login (not ASCII)")
    if isinstance(login, InvalidLogin):
        return InvalidRecord(shown, f"key is not a Twitch channel login: {login.reason}")
    if value is None:
        return ChannelRecord(login, wanted=False)
    try:
        state = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return ChannelRecord(login, wanted=False)
    enabled = state.get("enabled") if isinstance(state, dict) else None
    return ChannelRecord(login, wanted=enabled is True)


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelChange:
    """What one record changed in the set of channels this instance should read."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class ChannelTable:
    """The wanted channels of the partitions this instance is assigned, per partition.

    A partition is *loading* from its assignment until the consumer first reaches its
    end: its records are only collected, so a channel added and removed again in a tail
    that compaction has not cleaned yet is never joined. `caught_up` then hands over the
    partition's channels at once; after that every record is a change.
    """

    def __init__(self) -> None:
        self._loading: dict[int, dict[str, None]] = {}
        self._loaded: dict[int, dict[str, None]] = {}

    @property
    def partitions(self) -> list[int]:
        return sorted(self._loading.keys() | self._loaded.keys())

    def channels(self) -> set[str]:
        """Channels of the loaded partitions: those this instance should be reading."""
        return {channel for table in self._loaded.values() for channel in table}

    def is_loading(self, partition: int) -> bool:
        return partition in self._loading

    def assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            if partition not in self._loaded:
                self._loading.setdefault(partition, {})

    def apply(self, partition: int, record: ChannelRecord) -> ChannelChange:
        """Apply one record of `partition`; the change to act on (empty while loading)."""
        loading = self._loading.get(partition)
        if loading is not None:
            _set_wanted(loading, record)
            return ChannelChange()
        table = self._loaded.get(partition)
        if table is None:  # a record fetched just before the partition was revoked
            return ChannelChange()
        was_wanted = record.channel in table
        _set_wanted(table, record)
        if record.wanted and not was_wanted:
            return ChannelChange(added=(record.channel,))
        if was_wanted and not record.wanted:
            return ChannelChange(removed=(record.channel,))
        return ChannelChange()

    def caught_up(self, partition: int) -> tuple[str, ...] | None:
        """The consumer reached the end of `partition`: its channels, the first time."""
        table = self._loading.pop(partition, None)
        if table is None:
            return None
        self._loaded[partition] = table
        return tuple(table)

    def revoke(self, partitions: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """Forget `partitions`; the channels of those that were loaded (and so joined)."""
        released: dict[int, tuple[str, ...]] = {}
        for partition in partitions:
            self._loading.pop(partition, None)
            table = self._loaded.pop(partition, None)
            if table:
                released[partition] = tuple(table)
        return released


def _set_wanted(table: dict[str, None], record: ChannelRecord) -> None:
    if record.wanted:
        table[record.channel] = None
    else:
        table.pop(record.channel, None)


# --- the topics -----------------------------------------------------------------------------


def control_topic_specs(control: ControlTopicsConfig) -> list[TopicSpec]:
    """The control topic and the instances' report topic, both compacted."""
    replication = control.replication_factor
    return [
        TopicSpec(
            control.channels_topic,
            control.channels_partitions,
            replication,
            _COMPACTED,
            required_config=_MUST_BE_COMPACTED,
            # Fewer partitions work (each channel is still read), but cap the instances
            # that get work; refusing would stop a running fleet at its next restart,
            # and the fix (a new topic, docs/scaling.md) cannot be done in place.
            warn_fewer_partitions=True,
            fewer_partitions_effect="at most that many instances can get work",
        ),
        # One partition: a handful of small records, each read by every instance.
        # Reports are re-sent every 30 s; hourly segments let compaction drop the old ones
        # (the default, 7 days, would keep a week of them in the active segment).
        TopicSpec(
            control.instances_topic,
            1,
            replication,
            (*_COMPACTED, ("segment.ms", str(3600 * 1000))),
            required_config=_MUST_BE_COMPACTED,
        ),
    ]


def ensure_control_topics(
    control: ControlTopicsConfig, admin: AdminClient | None = None
) -> TopicCheck:
    """Create the fleet's topics if missing (KAFKA_CREATE_TOPICS), check them if not."""
    admin = admin or AdminClient(
        {
            **admin_config(control.connection),
            **NO_AUTO_CREATE,
            "logger": logging.getLogger("librdkafka"),
        }
    )
    return ensure_topics(admin, control_topic_specs(control), create=control.create_topics)


def require_control_topics(control: ControlTopicsConfig) -> dict[str, str]:
    """`ensure_control_topics` for the CLI: its warnings, or `ControlTopicError` with
    every problem in one line."""
    check = ensure_control_topics(control)
    if not check.ok:
        raise ControlTopicError("; ".join(check.problems.values()))
    return check.warnings


def write_channels(
    control: ControlTopicsConfig,
    tuning: ProducerTuning,
    channels: Iterable[str],
    *,
    enabled: bool,
    timeout_s: float = 30.0,
) -> int:
    """Add (`enabled`) or remove (tombstone) channels; returns how many were written.

    Written with the producer settings the service uses, so the partitioner is the Java
    client's murmur2: any other tool writing the topic must use the same one, or a
    tombstone could land in another partition than the record it should remove. The
    caller makes sure the topic is right first (`require_control_topics`); a missing one
    fails the writes rather than being auto-created.
    """
    producer = Producer(
        {
            **producer_config(control.connection, tuning),
            **NO_AUTO_CREATE,
        }
    )
    value = encode_state(enabled=True) if enabled else None
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(f"{message.key()!r}: {error.str()}")

    count = 0
    for channel in channels:
        producer.produce(control.channels_topic, value, channel.encode(), on_delivery=delivered)
        producer.poll(0)
        count += 1
    remaining = producer.flush(timeout_s)
    if remaining:
        raise RuntimeError(f"{remaining} records not acknowledged by Kafka within {timeout_s} s")
    if failures:
        raise RuntimeError("some records were not written: " + "; ".join(failures[:5]))
    return count


def read_topic(
    connection: KafkaConnection, topic: str, *, timeout_s: float = 30.0
) -> Iterator[Message]:
    """Every record of `topic` up to its current end, partition by partition in order.

    A throwaway consumer with manual assignment: it joins no group and commits nothing.
    """
    conf = admin_config(connection)
    conf.update(
        {
            "group.id": f"twitch-ingestion-read-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "logger": logging.getLogger("librdkafka"),
            **NO_AUTO_CREATE,
        }
    )
    consumer = Consumer(conf)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            return
        deadline = time.monotonic() + timeout_s
        ends: dict[int, int] = {}
        for partition in described.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, partition), deadline)
            if high > low:
                ends[partition] = high
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic!r} to its end within {timeout_s} s")
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                if error is not None:
                    raise KafkaException(error)
                number, offset = message.partition(), message.offset()
                if number is None or offset is None or number not in ends:
                    continue
                yield message
                if offset + 1 >= ends[number]:
                    del ends[number]
    finally:
        consumer.close()


# Just after a topic is created, its partitions may not have a leader for a moment.
_LEADER_PENDING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
_LEADER_RETRY_S = 0.1


def _watermarks(consumer: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    while True:
        try:
            watermarks = consumer.get_watermark_offsets(
                partition, timeout=max(0.1, deadline - time.monotonic())
            )
        except KafkaException as exc:
            error = exc.args[0]
            retriable = isinstance(error, KafkaError) and error.code() in _LEADER_PENDING
            if not retriable or time.monotonic() + _LEADER_RETRY_S > deadline:
                raise
            time.sleep(_LEADER_RETRY_S)
            continue
        if watermarks is None:
            raise TimeoutError(
                f"no offsets for {partition.topic!r} partition {partition.partition}"
            )
        low, high = watermarks
        return low, high


def read_channel_table(control: ControlTopicsConfig, *, timeout_s: float = 30.0) -> dict[str, int]:
    """The control topic's wanted channels now → the partition each lives in."""
    table: dict[str, int] = {}
    topic = control.channels_topic
    for message in read_topic(control.connection, topic, timeout_s=timeout_s):
        record = decode_record(message.key(), message.value())
        if isinstance(record, InvalidRecord):
            continue
        if record.wanted:
            table[record.channel] = message.partition() or 0
        else:
            table.pop(record.channel, None)
    return table
