"""Who reads what: each instance's own report, and the fleet view `status` prints.

Every instance publishes an `InstanceReport` (key = INSTANCE_ID) to the compacted
instances topic when what it reads changes, and every 30 s otherwise
(`report_publisher.py`); a clean stop deletes it (tombstone). The reports serve two
readers:

* the other instances: one that gave a partition away keeps reading its channels until
  the new owner's report says it has joined them (see `handover.py`);
* `twitch-ingestion status`, which sets them beside what Kafka itself says — the
  consumer group's members and their partitions — so a crashed instance (a stale report,
  no group member) or a member that never reported both show up as what they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from twitch_ingestion.fleet.config import ControlTopicsConfig
from twitch_ingestion.fleet.control_topic import read_channel_table, read_topic
from twitch_ingestion.kafka.producer_config import admin_config
from twitch_ingestion.kafka.topics import NO_AUTO_CREATE

__all__ = [
    "FleetStatus",
    "InstanceReport",
    "InstanceView",
    "decode_report",
    "describe_fleet",
    "encode_report",
]


class InstanceReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one instance says it is doing, as of `updated_at_ms`."""

    instance_id: str
    host: str
    pid: int
    login: str
    """The Twitch account it reads as (its own join limit)."""
    started_at_ms: int
    updated_at_ms: int
    partitions: tuple[int, ...] = ()
    """Control-topic partitions the consumer group gave it."""
    channels: tuple[str, ...] = ()
    """Every channel it reads, including `releasing`."""
    releasing: tuple[str, ...] = ()
    """Channels moved to another instance, read until that one reports them joined."""
    ready: bool = False
    """Every channel in `channels` is joined, or refused by Twitch."""
    joined: int = 0
    failed: int = 0
    not_joined: tuple[str, ...] | None = None
    """Channels of `channels` not joined: still waiting for their JOIN, or refused. The
    rest of `channels` is joined, which is what hands a moved channel over, channel by
    channel (`handover.py`). Sent as the complement of the joined set so that a settled
    instance's report stays as small as its channel list. None in the report of an
    instance older than per-channel hand-over, which said only `ready`."""
    standby: tuple[str, ...] = ()
    """Channels read as a hot standby (KAFKA_CHANNELS_REPLICAS=2): held in a window,
    produced only if their owner dies; not in `channels`."""


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(InstanceReport)


def encode_report(report: InstanceReport) -> bytes:
    return _ENCODER.encode(report)


def decode_report(value: bytes) -> InstanceReport | None:
    """The report in `value`, or None for something else (a foreign or broken record)."""
    try:
        return _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


# --- the fleet view -----------------------------------------------------------------------


@dataclass(slots=True)
class InstanceView:
    """One instance as the group and its own report describe it."""

    instance_id: str
    in_group: bool
    host: str = ""
    partitions: list[int] = field(default_factory=list)
    assigned_channels: list[str] = field(default_factory=list)
    """Channels of the partitions the group assigned it (from the control topic)."""
    report: InstanceReport | None = None
    report_age_s: float | None = None

    def to_dict(self) -> dict[str, object]:
        report = self.report
        return {
            "instance_id": self.instance_id,
            "in_group": self.in_group,
            "host": self.host,
            "partitions": self.partitions,
            "assigned_channels": self.assigned_channels,
            "report": msgspec.to_builtins(report) if report is not None else None,
            "report_age_s": self.report_age_s,
        }


@dataclass(slots=True)
class FleetStatus:
    group: str
    group_state: str
    topic: str
    partitions: int
    channels: int
    instances: list[InstanceView]
    unassigned_channels: list[str]
    """Wanted channels whose partition no group member holds: nobody reads them."""

    def to_dict(self) -> dict[str, object]:
        return {
            "group": self.group,
            "group_state": self.group_state,
            "topic": self.topic,
            "partitions": self.partitions,
            "channels": self.channels,
            "instances": [view.to_dict() for view in self.instances],
            "unassigned_channels": self.unassigned_channels,
        }


def fleet_view(
    *,
    group: str,
    group_state: str,
    topic: str,
    partition_count: int,
    members: Iterable[tuple[str, str, list[int]]],
    table: Mapping[str, int],
    reports: Mapping[str, InstanceReport],
    now_ms: int,
) -> FleetStatus:
    """Put the group's members `(instance id, host, partitions)`, the channel table and
    the reports side by side (pure: the I/O is in `describe_fleet`)."""
    by_partition: dict[int, list[str]] = {}
    for channel, partition in table.items():
        by_partition.setdefault(partition, []).append(channel)
    views: dict[str, InstanceView] = {}
    held: set[int] = set()
    for instance_id, host, partitions in members:
        held.update(partitions)
        assigned = sorted(c for p in partitions for c in by_partition.get(p, ()))
        views[instance_id] = InstanceView(
            instance_id, True, host, sorted(partitions), assigned_channels=assigned
        )
    for instance_id, report in reports.items():
        view = views.setdefault(instance_id, InstanceView(instance_id, False, report.host))
        view.report = report
        view.report_age_s = round(max(0, now_ms - report.updated_at_ms) / 1000, 1)
    unassigned = sorted(c for p, cs in by_partition.items() if p not in held for c in cs)
    return FleetStatus(
        group=group,
        group_state=group_state,
        topic=topic,
        partitions=partition_count,
        channels=len(table),
        instances=sorted(views.values(), key=lambda v: (not v.in_group, v.instance_id)),
        unassigned_channels=unassigned,
    )


def read_reports(
    control: ControlTopicsConfig, *, timeout_s: float = 30.0
) -> dict[str, InstanceReport]:
    """The newest report of every instance that has not deleted its own."""
    reports: dict[str, InstanceReport] = {}
    topic = control.instances_topic
    for message in read_topic(control.connection, topic, timeout_s=timeout_s):
        key = (message.key() or b"").decode(errors="replace")
        value = message.value()
        report = decode_report(value) if value is not None else None
        if report is None:
            reports.pop(key, None)
        else:
            reports[report.instance_id] = report
    return reports


def describe_fleet(control: ControlTopicsConfig, *, timeout_s: float = 30.0) -> FleetStatus:
    """The consumer group's assignment, the channel table and the instances' reports."""
    # librdkafka's own lines go through logging (stderr, structured), not raw to stderr.
    admin = AdminClient(
        {
            **admin_config(control.connection),
            **NO_AUTO_CREATE,
            "logger": logging.getLogger("librdkafka"),
        }
    )
    topic = control.channels_topic
    group = control.group
    future = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group]
    members: list[tuple[str, str, list[int]]] = []
    try:
        # The stubs say dict; confluent-kafka returns one ConsumerGroupDescription.
        description: Any = future.result()
    except KafkaException as exc:
        error = exc.args[0]
        if not isinstance(error, KafkaError) or error.code() != KafkaError.GROUP_ID_NOT_FOUND:
            raise
        state = "no instance has joined yet"
    else:
        state = getattr(description.state, "name", str(description.state))
        for member in description.members:
            partitions = [
                tp.partition for tp in member.assignment.topic_partitions if tp.topic == topic
            ]
            # INSTANCE_ID is both the group.instance.id and the client.id of the member.
            instance_id = member.group_instance_id or member.client_id
            members.append((instance_id, member.host, partitions))
    metadata = admin.list_topics(topic, timeout=timeout_s)
    described = metadata.topics.get(topic)
    partition_count = len(described.partitions) if described is not None else 0
    return fleet_view(
        group=group,
        group_state=state,
        topic=topic,
        partition_count=partition_count,
        members=members,
        table=read_channel_table(control, timeout_s=timeout_s),
        reports=read_reports(control, timeout_s=timeout_s),
        now_ms=int(time.time() * 1000),
    )


def render_status(status: FleetStatus) -> str:
    """The `status` command's table."""
    lines = [
        f"group {status.group} ({status.group_state}) on {status.topic}: "
        f"{status.partitions} partitions, {status.channels} channels, "
        f"{sum(v.in_group for v in status.instances)} instances",
        "",
        f"{'instance':<24} {'in group':<8} {'partitions':>10} {'assigned':>8} "
        f"{'reading':>7} {'releasing':>9} {'standby':>7} {'ready':<5} {'report age':>10}  account",
    ]
    for view in status.instances:
        report = view.report
        reading = str(len(report.channels)) if report is not None else "-"
        releasing = str(len(report.releasing)) if report is not None else "-"
        standby = str(len(report.standby)) if report is not None else "-"
        ready = ("yes" if report.ready else "no") if report is not None else "-"
        age = f"{view.report_age_s:.0f} s" if view.report_age_s is not None else "no report"
        login = report.login if report is not None else "-"
        lines.append(
            f"{view.instance_id:<24} {'yes' if view.in_group else 'NO':<8} "
            f"{len(view.partitions):>10} {len(view.assigned_channels):>8} {reading:>7} "
            f"{releasing:>9} {standby:>7} {ready:<5} {age:>10}  {login}"
        )
    if not any(view.in_group for view in status.instances):
        lines.append("")
        lines.append(
            "no instance is running in this group: start one with CHANNEL_SOURCE=kafka "
            f"(and KAFKA_CHANNELS_GROUP={status.group}); README: Running several instances"
        )
    if status.unassigned_channels:
        shown = ", ".join(status.unassigned_channels[:20])
        more = len(status.unassigned_channels) - 20
        lines.append("")
        lines.append(
            f"not read by any instance: {len(status.unassigned_channels)} channels "
            f"({shown}{f', … {more} more' if more > 0 else ''})"
        )
    return "\n".join(lines)
