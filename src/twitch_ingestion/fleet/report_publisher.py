"""This instance's report (`status.py`'s `InstanceReport`) and how it is published.

The report says what this instance reads, gives away and stands by for; the other
instances' hand-overs (`handover.py`) and `twitch-ingestion status` read it. It goes to
the compacted instances topic, keyed by INSTANCE_ID, when what it says changes (asked
every tick of `FleetMember`) and every `_HEARTBEAT_S` otherwise. The producer that
sends it also carries the final marks (`fence.py`), the progress records
(`standby_keeper.py`) and, at a clean stop, the report's tombstone: `FleetMember` owns
it, `publisher_config` is its configuration.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Producer

from twitch_ingestion.fleet.config import FleetConfig
from twitch_ingestion.fleet.events import ChannelReader
from twitch_ingestion.fleet.status import InstanceReport, encode_report
from twitch_ingestion.kafka.producer_config import admin_config
from twitch_ingestion.kafka.topics import NO_AUTO_CREATE

__all__ = ["ReportPublisher", "instance_report", "publisher_config"]

# A report is re-sent this often even when nothing changed, so `status` can tell a live
# instance from the leftover report of a crashed one.
_HEARTBEAT_S = 30.0


def publisher_config(config: FleetConfig) -> dict[str, Any]:
    """The producer of everything this instance writes to the instances topic."""
    conf = admin_config(config.control.connection)
    conf.update(
        {
            "client.id": f"{config.instance_id}-reports",
            # Channel logins compress well: a report of 10,000 channels is ~40 KB.
            "compression.type": "lz4",
            "linger.ms": 20,
            "acks": "all",
            "logger": logging.getLogger("librdkafka"),
            **NO_AUTO_CREATE,
        }
    )
    return conf


def instance_report(
    config: FleetConfig,
    source: ChannelReader,
    *,
    started_at_ms: int,
    partitions: Iterable[int],
    releasing: Iterable[str],
    standby: list[str],
) -> InstanceReport:
    """This instance's report, as of now: `source`'s channels beside the partitions it
    owns, the channels it is handing over and those it stands by for."""
    joined = source.status().get("channels_joined", 0)
    if standby:
        # Read but not produced here: a standby's channels must not look like its
        # own to the hand-over of their owner (`handover.py`).
        stood_by = set(standby)
        channels = tuple(c for c in source.channels if c not in stood_by)
    else:
        channels = tuple(source.channels)
    joined_set = source.joined_channels()
    return InstanceReport(
        instance_id=config.instance_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        login=config.login,
        started_at_ms=started_at_ms,
        updated_at_ms=int(time.time() * 1000),
        partitions=tuple(sorted(partitions)),
        channels=channels,
        releasing=tuple(releasing),
        ready=source.is_ready(),
        joined=joined if isinstance(joined, int) else 0,
        failed=len(source.failed_channels),
        not_joined=tuple(c for c in channels if c not in joined_set),
        standby=tuple(standby),
    )


class ReportPublisher:
    """Sends a report when it says something new, or when the last one sent is
    `_HEARTBEAT_S` old; the time it is given is the loop's."""

    def __init__(self, topic: str) -> None:
        self._topic = topic
        self._last_published: tuple[object, ...] | None = None
        self._last_published_at = 0.0

    def publish(
        self, publisher: Producer, report: InstanceReport, now: float, *, force: bool = False
    ) -> None:
        fingerprint = (
            report.partitions,
            report.channels,
            report.releasing,
            report.ready,
            report.joined,
            report.failed,
            report.not_joined,
            report.standby,
        )
        if (
            not force
            and fingerprint == self._last_published
            and now - self._last_published_at < _HEARTBEAT_S
        ):
            publisher.poll(0)
            return
        try:
            publisher.produce(self._topic, encode_report(report), report.instance_id.encode())
        except BufferError:  # Kafka unreachable for a while: the next tick tries again
            publisher.poll(0)
            return
        publisher.poll(0)
        self._last_published = fingerprint
        self._last_published_at = now
