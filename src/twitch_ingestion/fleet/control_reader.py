"""The reader thread of fleet membership: the control topic's consumer group and the
instances topic, turned into `FleetEvent`s (`events.py`) for `FleetMember`.

`ControlTopicReader`, on its own thread, owns the librdkafka consumers. Their calls
block (`consume`, the rebalance callbacks that must call `incremental_assign` before
returning, `close`, metadata requests) and a thread keeps all of that off the event
loop, which carries the chat firehose; polling with timeout 0 from the loop would still
block it in `close` and on metadata, and would delay rebalance callbacks whenever the
loop is busy. The thread only turns Kafka into small events, posted to the loop with
`call_soon_threadsafe`, in order: the partitions assigned and revoked, each partition's
channels once read to its end and every change after that, and the other instances'
reports, final marks and progress records.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from twitch_ingestion.fleet.config import FleetConfig
from twitch_ingestion.fleet.control_topic import (
    ChannelTable,
    InvalidRecord,
    decode_record,
    ensure_control_topics,
)
from twitch_ingestion.fleet.events import (
    ChannelsChanged,
    FleetError,
    FleetEvent,
    MarkReceived,
    PartitionLoaded,
    PartitionsAssigned,
    PartitionsRevoked,
    ProgressReceived,
    ReaderFailed,
    ReportDeleted,
    ReportReceived,
)
from twitch_ingestion.fleet.fence import MARK_KEY_PREFIX, decode_mark
from twitch_ingestion.fleet.standby import PROGRESS_KEY_PREFIX, decode_progress
from twitch_ingestion.fleet.status import decode_report
from twitch_ingestion.kafka.producer_config import admin_config
from twitch_ingestion.kafka.topics import NO_AUTO_CREATE
from twitch_ingestion.log_throttle import ThrottledLogger

__all__ = ["ControlTopicReader", "group_consumer_config", "reports_consumer_config"]

log = structlog.get_logger(__name__)

# How long the broker may hold a fetch when there is nothing new: the latency of a
# channel added or removed through the control topic (librdkafka's default is 500 ms).
_FETCH_WAIT_MS = 200
# The reader thread's blocking wait per round; also how soon it notices a stop request.
_POLL_TIMEOUT_S = 0.1
_CONSUME_BATCH = 1000
# Heartbeats this many times per session timeout: a dead peer is one session timeout
# away, but a rebalance is noticed on the next heartbeat, so they should be frequent.
_HEARTBEATS_PER_SESSION = 10
_MAX_HEARTBEAT_INTERVAL_MS = 3000
# Waiting for missing topics (KAFKA_CREATE_TOPICS=false, broker down) before retrying.
_TOPIC_RETRY_S = 5.0


def group_consumer_config(config: FleetConfig) -> dict[str, Any]:
    """The control topic's group consumer: cooperative-sticky, static, nothing committed."""
    session_ms = config.session_timeout_ms
    conf = admin_config(config.control.connection)
    conf.update(
        {
            # INSTANCE_ID as client.id too, so the group's description names the instance.
            "client.id": config.instance_id,
            "group.id": config.control.group,
            "group.instance.id": config.instance_id,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(
                100, min(_MAX_HEARTBEAT_INTERVAL_MS, session_ms // _HEARTBEATS_PER_SESSION)
            ),
            # No offsets: every assignment reads its partitions from the beginning.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # The end of a partition is where its initial table is complete.
            "enable.partition.eof": True,
            "fetch.wait.max.ms": _FETCH_WAIT_MS,
            **NO_AUTO_CREATE,
        }
    )
    return conf


def reports_consumer_config(config: FleetConfig) -> dict[str, Any]:
    conf = admin_config(config.control.connection)
    conf.update(
        {
            "client.id": f"{config.instance_id}-reports",
            # Required by the client, unused: the partition is assigned, not subscribed.
            "group.id": f"twitch-ingestion-reports-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": _FETCH_WAIT_MS,
            **NO_AUTO_CREATE,
        }
    )
    return conf


class ControlTopicReader:
    """Follows the control topic's assigned partitions and the instance reports on a
    thread of its own; everything it learns is handed to `post`, in order."""

    def __init__(self, config: FleetConfig, post: Callable[[FleetEvent], None]) -> None:
        self._config = config
        self._post = post
        self._table = ChannelTable()
        self._stop = threading.Event()
        self._leave = threading.Event()
        self._closing = False
        self._fatal: KafkaError | None = None
        self._throttled = ThrottledLogger(log, interval_s=30.0)
        self._thread = threading.Thread(target=self._run, name="fleet-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def request_leave(self) -> None:
        """Leave the consumer group now (its partitions move at once, each revoked with
        a `PartitionsRevoked`), but go on reading the instance reports until stopped."""
        self._leave.set()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:
            self._post(ReaderFailed(exc))

    def _follow(self) -> None:
        if not self._wait_for_topics():
            return
        conf = group_consumer_config(self._config)
        conf["error_cb"] = self._on_error
        conf["logger"] = logging.getLogger("librdkafka")
        group = Consumer(conf)
        reports = Consumer(reports_consumer_config(self._config))
        try:
            group.subscribe(
                [self._config.control.channels_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._assign_reports(reports)
            subscribed = True
            while not self._stop.is_set():
                if subscribed and self._leave.is_set():
                    # A static member's close() does not leave the group (KIP-345: its
                    # partitions wait a session timeout for it); unsubscribe does, with
                    # the revoke callback run by the next consume.
                    subscribed = False
                    group.unsubscribe()
                for message in group.consume(_CONSUME_BATCH, _POLL_TIMEOUT_S):
                    self._on_control_message(message)
                for message in reports.consume(_CONSUME_BATCH, 0):
                    self._on_report_message(message)
                if self._fatal is not None:
                    raise FleetError(
                        f"the control topic's consumer failed: {self._fatal.str()} "
                        f"({self._fatal.name()}); if it says fenced, another running "
                        f"instance has INSTANCE_ID={self._config.instance_id!r}"
                    )
        finally:
            # A static member leaves no group on close: its partitions wait for it for
            # a session timeout, which is what lets a restart keep its channels.
            self._closing = True
            with contextlib.suppress(Exception):
                group.close()
            with contextlib.suppress(Exception):
                reports.close()

    def _wait_for_topics(self) -> bool:
        while not self._stop.is_set():
            check = ensure_control_topics(self._config.control)
            if check.misconfigured:
                # Reading a wrongly configured control topic would look like working.
                raise FleetError(
                    "; ".join(check.problems[topic] for topic in sorted(check.misconfigured))
                )
            if check.ok:
                for topic, warning in check.warnings.items():
                    log.warning("fleet topic warning", topic=topic, warning=warning)
                return True
            for topic, problem in check.problems.items():
                self._throttled.error("fleet topic problem", topic, problem=problem)
            self._stop.wait(_TOPIC_RETRY_S)
        return False

    def _assign_reports(self, reports: Consumer) -> None:
        topic = self._config.control.instances_topic
        metadata = reports.list_topics(topic, timeout=10)
        described = metadata.topics.get(topic)
        partitions = sorted(described.partitions) if described is not None else [0]
        # Only reports sent from now on matter to a hand-over, so no history is read.
        reports.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])

    # --- rebalance callbacks (run inside group.consume, on this thread) ------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = tuple(sorted(tp.partition for tp in partitions))
        self._table.assign(numbers)
        topic = self._config.control.channels_topic
        # From the beginning whatever may have been committed: the table is the topic.
        consumer.incremental_assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in numbers])
        self._post(PartitionsAssigned(numbers))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoke(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoke(consumer, partitions, lost=True)

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition], *, lost: bool) -> None:
        numbers = tuple(sorted(tp.partition for tp in partitions))
        released = self._table.revoke(numbers)
        consumer.incremental_unassign(partitions)
        if not self._closing:  # at shutdown the service closes every connection anyway
            self._post(PartitionsRevoked(numbers, released, lost))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
            return
        self._throttled.warning(
            "fleet consumer error", error.name(), error=error.str(), retrying=True
        )

    # --- records -------------------------------------------------------------------------

    def _on_control_message(self, message: Message) -> None:
        partition = message.partition()
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                channels = self._table.caught_up(partition)
                if channels is not None:
                    self._post(PartitionLoaded(partition, channels))
            elif error.fatal():
                self._fatal = error
            else:
                self._throttled.warning(
                    "fleet consumer error", error.name(), error=error.str(), retrying=True
                )
            return
        if partition is None:
            return
        record = decode_record(message.key(), message.value())
        if isinstance(record, InvalidRecord):
            self._throttled.warning(
                "control topic record ignored",
                record.reason,
                record_key=record.key,
                reason=record.reason,
            )
            return
        change = self._table.apply(partition, record)
        if change:
            self._post(ChannelsChanged(partition, change.added, change.removed))

    def _on_report_message(self, message: Message) -> None:
        if message.error() is not None:
            return
        value = message.value()
        key = (message.key() or b"").decode(errors="replace")
        if key.startswith(PROGRESS_KEY_PREFIX):
            progress = decode_progress(value) if value is not None else None
            if value is None or progress is not None:
                self._post(ProgressReceived(key[len(PROGRESS_KEY_PREFIX) :], progress))
            return
        if key.startswith(MARK_KEY_PREFIX):
            mark = decode_mark(value) if value is not None else None
            if mark is not None:
                self._post(MarkReceived(mark))
            return
        if value is None:
            self._post(ReportDeleted(key))
            return
        report = decode_report(value)
        if report is not None:
            self._post(ReportReceived(report))
