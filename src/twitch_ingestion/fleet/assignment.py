"""This instance's share of the fleet's channels, as the consumer group assigns it.

Every instance with CHANNEL_SOURCE=kafka joins one consumer group on the control topic
(`control_topic.py`), with the cooperative-sticky assignor (a rebalance revokes only the
partitions that move) and static membership (`group.instance.id` = INSTANCE_ID: a
restart within the session timeout gets the same partitions back, with no rebalance).
Nothing is committed: a newly assigned partition is read from its beginning, which for
a compacted topic is the current table. Its channels are then joined; records that
arrive later are applied as they come, so adding or removing a channel takes effect
within a fetch (≤ `_FETCH_WAIT_MS`) plus a JOIN.

Two halves:

* `ControlTopicReader`, on its own thread, owns the librdkafka consumers. Their calls
  block (`consume`, the rebalance callbacks that must call `incremental_assign` before
  returning, `close`, metadata requests) and a thread keeps all of that off the event
  loop, which carries the chat firehose; polling with timeout 0 from the loop would
  still block it in `close` and on metadata, and would delay rebalance callbacks
  whenever the loop is busy. The thread only turns Kafka into small events, posted to
  the loop with `call_soon_threadsafe`, in order.
* `FleetMember`, on the loop, applies them to the `TwitchSource` (`add_channels`,
  `remove_channels`), keeps given-away channels until their new owner has them
  (`handover.py`) and publishes this instance's report (`status.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import Settings
from twitch_ingestion.fleet.control_topic import (
    ChannelTable,
    InvalidRecord,
    decode_record,
    ensure_control_topics,
)
from twitch_ingestion.fleet.fence import (
    MARK_KEY_PREFIX,
    MARK_WAIT_S,
    ChannelFence,
    FinalMark,
    ReleaseOutcome,
    decode_mark,
    encode_mark,
)
from twitch_ingestion.fleet.handover import HandoverTracker
from twitch_ingestion.fleet.standby import (
    PROGRESS_KEY_PREFIX,
    ProgressMark,
    StandbyFence,
    decode_progress,
)
from twitch_ingestion.fleet.standby_keeper import StandbyKeeper
from twitch_ingestion.fleet.status import InstanceReport, decode_report, encode_report
from twitch_ingestion.fleet.tail_read import ChannelTail, read_tail
from twitch_ingestion.kafka.producer_config import admin_config
from twitch_ingestion.kafka.topics import NO_AUTO_CREATE
from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import FLEET_HANDOFFS

__all__ = ["ChannelReader", "ControlTopicReader", "FleetError", "FleetMember"]

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
# How often the loop side checks whether its report changed or a hand-over timed out.
_TICK_S = 0.5
# A report is re-sent this often even when nothing changed, so `status` can tell a live
# instance from the leftover report of a crashed one.
_HEARTBEAT_S = 30.0
# Waiting for missing topics (KAFKA_CREATE_TOPICS=false, broker down) before retrying.
_TOPIC_RETRY_S = 5.0
# Time allowed at shutdown to delete this instance's report.
_REPORT_FLUSH_S = 5.0
# While handing off at shutdown: how often to ask whether any member is left to take over.
_GROUP_CHECK_S = 1.0


class FleetError(Exception):
    """The fleet membership cannot go on (e.g. another live instance has our INSTANCE_ID)."""


class ChannelReader(Protocol):
    """What `FleetMember` needs of the Twitch source (`TwitchSource` is one)."""

    @property
    def channels(self) -> list[str]: ...

    @property
    def failed_channels(self) -> dict[str, str]: ...

    def joined_channels(self) -> frozenset[str]: ...

    def add_channels(self, channels: Iterable[str]) -> None: ...

    def remove_channels(self, channels: Iterable[str]) -> None: ...

    def is_ready(self) -> bool: ...

    def status(self) -> dict[str, object]: ...

    @property
    def fence(self) -> ChannelFence | None:
        """Per-channel hold/track/drop for fenced hand-offs (`fence.py`); None: the
        source cannot, and a moved channel is produced twice for the overlap."""


# --- events: reader thread → event loop -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionsAssigned:
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PartitionLoaded:
    """Read to its end for the first time since assigned: its channels, to join."""

    partition: int
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChannelsChanged:
    partition: int
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartitionsRevoked:
    partitions: tuple[int, ...]
    channels: Mapping[int, tuple[str, ...]]
    """Channels of the revoked partitions that were loaded (and so are joined)."""
    lost: bool
    """The session expired: another instance may already hold them."""


@dataclass(frozen=True, slots=True)
class ReportReceived:
    report: InstanceReport


@dataclass(frozen=True, slots=True)
class ReportDeleted:
    """An instance stopped cleanly (its report's tombstone)."""

    instance_id: str


@dataclass(frozen=True, slots=True)
class MarkReceived:
    mark: FinalMark


@dataclass(frozen=True, slots=True)
class ProgressReceived:
    """An instance's progress record (replicas 2); mark None: deleted, it stopped."""

    instance_id: str
    mark: ProgressMark | None


@dataclass(frozen=True, slots=True)
class ReaderFailed:
    error: BaseException


FleetEvent = (
    PartitionsAssigned
    | PartitionLoaded
    | ChannelsChanged
    | PartitionsRevoked
    | ReportReceived
    | ReportDeleted
    | MarkReceived
    | ProgressReceived
    | ReaderFailed
)


# --- the reader thread ------------------------------------------------------------------


def group_consumer_config(settings: Settings) -> dict[str, Any]:
    """The control topic's group consumer: cooperative-sticky, static, nothing committed."""
    session_ms = settings.kafka_channels_session_timeout_ms
    conf = admin_config(configs.kafka_connection(settings))
    conf.update(
        {
            # INSTANCE_ID as client.id too, so the group's description names the instance.
            "client.id": settings.instance_id,
            "group.id": settings.kafka_channels_group,
            "group.instance.id": settings.instance_id,
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


def reports_consumer_config(settings: Settings) -> dict[str, Any]:
    conf = admin_config(configs.kafka_connection(settings))
    conf.update(
        {
            "client.id": f"{settings.instance_id}-reports",
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

    def __init__(self, settings: Settings, post: Callable[[FleetEvent], None]) -> None:
        self._settings = settings
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
        conf = group_consumer_config(self._settings)
        conf["error_cb"] = self._on_error
        conf["logger"] = logging.getLogger("librdkafka")
        group = Consumer(conf)
        reports = Consumer(reports_consumer_config(self._settings))
        try:
            group.subscribe(
                [self._settings.kafka_topic_channels],
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
                        f"instance has INSTANCE_ID={self._settings.instance_id!r}"
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
            check = ensure_control_topics(self._settings)
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
        topic = self._settings.kafka_topic_instances
        metadata = reports.list_topics(topic, timeout=10)
        described = metadata.topics.get(topic)
        partitions = sorted(described.partitions) if described is not None else [0]
        # Only reports sent from now on matter to a hand-over, so no history is read.
        reports.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])

    # --- rebalance callbacks (run inside group.consume, on this thread) ------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = tuple(sorted(tp.partition for tp in partitions))
        self._table.assign(numbers)
        topic = self._settings.kafka_topic_channels
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


# --- the loop side ----------------------------------------------------------------------


class FleetMember:
    """Turns the reader's events into `add_channels` / `remove_channels` calls.

    ```
    member = FleetMember(settings, source)
    task = asyncio.create_task(member.run())   # raises FleetError if membership fails
    ...
    await member.stop()                         # before the source stops
    ```
    """

    def __init__(
        self,
        settings: Settings,
        source: ChannelReader,
        *,
        group_is_empty: Callable[[], bool] | None = None,
    ) -> None:
        """`group_is_empty` (blocking, run on a thread) tells a hand-off at shutdown that
        nobody is left to take the channels; by default it asks Kafka."""
        self._settings = settings
        self._source = source
        self._admin: AdminClient | None = None
        self._group_is_empty = group_is_empty or self._ask_group_is_empty
        self._handover = HandoverTracker(settings.instance_id)
        self._fence = source.fence
        # Other instances → the channels their latest report says they are handing over
        # (`releasing`): one of those, joined here, is held until its final mark. A
        # channel a crashed instance read is not in it: nobody will send its mark.
        self._releasing_elsewhere: dict[str, frozenset[str]] = {}
        self._partitions: set[int] = set()
        # Channels of each loaded partition, as the reader reported them.
        self._owned: dict[int, set[str]] = {}
        self._reader: ControlTopicReader | None = None
        self._publisher: Producer | None = None
        self._failure: BaseException | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._leaving: asyncio.Event | None = None
        self._started_at_ms = int(time.time() * 1000)
        self._last_published: tuple[object, ...] | None = None
        self._last_published_at = 0.0
        self._loaded_channels = 0
        self._loaded_partitions = 0
        self._assigned_once = False
        self._standby = self._standby_keeper(settings, source)

    def _standby_keeper(self, settings: Settings, source: ChannelReader) -> StandbyKeeper | None:
        """With KAFKA_CHANNELS_REPLICAS=2 and a source that can stand by (IRC's gate)."""
        config = configs.standby_config(settings)
        # Not part of `ChannelReader`: a source that cannot stand by need not say so.
        fence: StandbyFence | None = getattr(source, "standby_fence", None)
        if not config.enabled or fence is None:
            return None
        topics = configs.topics(settings)
        consumer_config = {
            **admin_config(configs.kafka_connection(settings)),
            **NO_AUTO_CREATE,
            "client.id": f"{settings.instance_id}-tail",
            "logger": logging.getLogger("librdkafka"),
        }

        def tail(
            wanted: Mapping[str, set[str]], from_ms: int, timeout_s: float
        ) -> dict[str, ChannelTail]:
            return read_tail(
                consumer_config, (topics.chat, topics.events), wanted, from_ms, timeout_s
            )

        return StandbyKeeper(
            settings.instance_id,
            config,
            fence,
            source,
            read_tail=tail,
            publish=self._publish_instances_record,
            busy=self._busy,
            taken_over=self._taken_over,
            give_back=self._give_back,
        )

    def _publish_instances_record(self, key: bytes, value: bytes | None) -> None:
        publisher = self._publisher
        if publisher is None:
            return
        # BufferError: Kafka unreachable for a while; the next tick says it again.
        with contextlib.suppress(BufferError):
            publisher.produce(self._settings.kafka_topic_instances, value, key)
        publisher.poll(0)

    def _busy(self) -> set[str]:
        """Channels produced or handed over here: never stood by for."""
        busy = set(self._handover.channels)
        for channels in self._owned.values():
            busy.update(channels)
        return busy

    def _taken_over(self, channels: list[str]) -> None:
        """A standby's take-over: produced here now, handed to the group's new owner
        like a moved channel (read until it reports it joined, then a final mark)."""
        now = asyncio.get_running_loop().time()
        self._handover.release({-1: channels}, now)
        self._publish_report(now, force=True)

    def _give_back(self, channels: list[str], instance_id: str) -> None:
        """A false alarm: the producer of channels taken over is alive and still owns
        them. Stop producing them (a final mark nobody waits for) and part them."""
        mine = [c for c in channels if c in self._handover]
        if not mine:
            return
        self._handover.keep(mine)
        gone = self._not_owned(mine)
        self._stop_producing(gone, to_instance=instance_id)
        self._source.remove_channels(gone)
        if self._standby is not None:
            self._standby.changed()
        log.info("fleet take-over given back", channels=len(gone), to=instance_id)
        self._publish_report(asyncio.get_running_loop().time(), force=True)

    @property
    def standby_channels(self) -> list[str]:
        return self._standby.standby if self._standby is not None else []

    @property
    def standby_window_bytes(self) -> int:
        return self._standby.window_bytes() if self._standby is not None else 0

    @property
    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    @property
    def releasing(self) -> list[str]:
        return self._handover.channels

    @property
    def settled(self) -> bool:
        """The group has assigned this instance its partitions and each has been read to
        its end (its channels handed to the source): until then `/readyz` says not ready,
        since the instance does not yet read what it owns."""
        return self._assigned_once and self._partitions <= self._owned.keys()

    async def run(self) -> None:
        """Follow the assignment until `stop()`; raises `FleetError` if it cannot."""
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        settings = self._settings
        log.info(
            "fleet member starting",
            instance_id=settings.instance_id,
            group=settings.kafka_channels_group,
            topic=settings.kafka_topic_channels,
            session_timeout_ms=settings.kafka_channels_session_timeout_ms,
        )
        self._publisher = Producer(self._publisher_config())

        def post(event: FleetEvent) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self.handle_event, event)

        self._reader = ControlTopicReader(settings, post)
        self._reader.start()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), _TICK_S)
            self._wakeup.clear()
            if self._failure is not None:
                error = self._failure
                if isinstance(error, FleetError):
                    raise error
                # A bug, not a condition the operator can fix: keep its traceback here,
                # the FleetError that stops the service is logged as one line.
                log.error("fleet reader crashed", error=repr(error), exc_info=error)
                raise FleetError(f"the fleet reader failed: {error!r}") from error
            self.tick(loop.time())

    async def hand_off(self, timeout_s: float) -> list[str]:
        """SIGTERM in a fleet: leave the group at once, so that its partitions move now
        rather than after the session timeout, and go on reading every channel until
        its new owner reports it joined (`handover.py`), at most `timeout_s`. Returns
        the channels not handed over by then (logged, by name); `stop()` comes next.
        """
        reader = self._reader
        if reader is None or self._stopping:
            return []
        started = time.monotonic()
        leaving = self._leaving = asyncio.Event()
        log.info(
            "fleet hand-off starting",
            instance_id=self._settings.instance_id,
            channels=len(self._source.channels),
            timeout_s=timeout_s,
        )
        reader.request_leave()
        self._check_left()
        watch = asyncio.create_task(self._until_group_empty(leaving), name="fleet-hand-off")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leaving.wait(), timeout_s)
        finally:
            watch.cancel()
        left = sorted(set(self._handover.channels) | {c for cs in self._owned.values() for c in cs})
        elapsed = round(time.monotonic() - started, 2)
        if left:
            log.warning(
                "fleet hand-off incomplete",
                channels=len(left),
                not_handed_off=left,
                waited_s=elapsed,
                reason="no new owner reported them joined in time (SHUTDOWN_TIMEOUT_S)",
            )
        else:
            log.info("fleet hand-off complete", waited_s=elapsed)
        return left

    async def _until_group_empty(self, leaving: asyncio.Event) -> None:
        """Stop waiting once the group has no member left to take the channels (the
        last instance, or the whole fleet, stopping): nobody will report them joined."""
        while not leaving.is_set():
            await asyncio.sleep(_GROUP_CHECK_S)
            if await asyncio.to_thread(self._group_is_empty):
                log.info("fleet hand-off has nobody to hand to")
                leaving.set()

    def _ask_group_is_empty(self) -> bool:
        """No member in the group (False when Kafka cannot say: keep waiting). Blocks."""
        admin = self._admin
        if admin is None:
            admin = self._admin = AdminClient(
                {
                    **admin_config(configs.kafka_connection(self._settings)),
                    **NO_AUTO_CREATE,
                    "logger": logging.getLogger("librdkafka"),
                }
            )
        group = self._settings.kafka_channels_group
        try:
            future = admin.describe_consumer_groups([group], request_timeout=5)[group]
            # The stubs say dict; confluent-kafka returns one ConsumerGroupDescription.
            description: Any = future.result()
        except Exception:
            return False
        return not description.members

    def _check_left(self) -> None:
        """While handing off: every partition revoked and every channel handed over."""
        leaving = self._leaving
        if leaving is not None and not self._partitions and not self._handover:
            leaving.set()

    async def stop(self) -> None:
        """Leave the work where it is: close the consumer (a static member does not leave
        the group, so a quick restart keeps its partitions) and delete our report."""
        self._stopping = True
        if self._standby is not None:
            self._standby.stopped()
        if self._wakeup is not None:
            self._wakeup.set()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.request_stop()
            await asyncio.to_thread(reader.join, 30.0)
        # Channels not handed over (hand-off cut short): whoever holds them gets a mark.
        self._stop_producing(self._handover.channels, to_instance="")
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.produce(
                self._settings.kafka_topic_instances, None, self._settings.instance_id.encode()
            )
            await asyncio.to_thread(publisher.flush, _REPORT_FLUSH_S)
        log.info("fleet member stopped", instance_id=self._settings.instance_id)

    # --- events --------------------------------------------------------------------------

    def handle_event(self, event: FleetEvent) -> None:
        """Apply one event of the reader (called on the loop, in the reader's order)."""
        if self._stopping:
            return
        source = self._source
        if isinstance(event, PartitionLoaded):
            self._owned[event.partition] = set(event.channels)
            releasing = set(self._handover.channels)
            gone = self._not_owned(self._handover.reclaim(event.partition, event.channels))
            if gone:
                self._stop_producing(gone, to_instance="")
                source.remove_channels(gone)
            fence = self._fence
            standby = self._standby
            if standby is not None:
                # Taken over from a dead producer: ours now, whatever partition it was in.
                self._handover.keep(event.channels)
                standby.changed()
            taking_over = standby.taking_over if standby is not None else frozenset()
            if fence is not None and event.channels:
                # Still read and produced here (given away, taken back before the hand-over
                # ended): go on. The rest is new here: held until the old owner's mark —
                # except what a take-over under way here is about to produce.
                kept = [c for c in event.channels if c in releasing]
                fence.produce(kept)
                fence.hold(
                    [c for c in event.channels if c not in releasing and c not in taking_over],
                    read_elsewhere=self._read_elsewhere(event.channels),
                )
            if event.channels:
                source.add_channels(event.channels)
            self._loaded_partitions += 1
            self._loaded_channels += len(event.channels)
        elif isinstance(event, ChannelsChanged):
            owned = self._owned.setdefault(event.partition, set())
            owned.difference_update(event.removed)
            owned.update(event.added)
            removed = self._not_owned(event.removed)
            if removed:
                if self._fence is not None:
                    self._fence.forget(removed)
                source.remove_channels(removed)
            if event.added:
                if self._fence is not None:
                    self._fence.produce(event.added)  # new to the fleet: nobody to fence
                source.add_channels(event.added)
            log.info(
                "fleet channels changed",
                partition=event.partition,
                added=list(event.added),
                removed=list(event.removed),
            )
        elif isinstance(event, ReportReceived):
            report = event.report
            if self._standby is not None:
                self._standby.on_report(report)
            if report.instance_id != self._settings.instance_id:
                handing = frozenset(report.releasing)
                self._releasing_elsewhere[report.instance_id] = handing
                if self._fence is not None and handing:
                    self._fence.expect_mark([c for c in self._fence.holding() if c in handing])
            taken = self._not_owned(self._handover.on_report(report))
            if taken:
                self._stop_producing(taken, to_instance=report.instance_id)
                source.remove_channels(taken)
                if self._standby is not None:
                    self._standby.changed()
                log.info(
                    "fleet hand-over complete",
                    channels=len(taken),
                    to=event.report.instance_id,
                    still_releasing=len(self._handover),
                )
        elif isinstance(event, PartitionsAssigned):
            self._assigned_once = True
            self._partitions.update(event.partitions)
            log.info(
                "fleet partitions assigned",
                partitions=list(event.partitions),
                total=len(self._partitions),
            )
        elif isinstance(event, PartitionsRevoked):
            self._on_revoked(event)
        elif isinstance(event, ReportDeleted):
            self._releasing_elsewhere.pop(event.instance_id, None)
            if self._standby is not None:
                self._standby.on_report_deleted(event.instance_id)
        elif isinstance(event, ProgressReceived):
            if self._standby is not None:
                self._standby.on_progress(
                    event.instance_id, event.mark, asyncio.get_running_loop().time()
                )
        elif isinstance(event, MarkReceived):
            self._on_mark(event.mark)
        else:
            self._failure = event.error
            if self._wakeup is not None:
                self._wakeup.set()
        self._check_left()

    def _on_revoked(self, event: PartitionsRevoked) -> None:
        if self._standby is not None:
            self._standby.changed()
        self._partitions.difference_update(event.partitions)
        for partition in event.partitions:
            self._owned.pop(partition, None)
        released = sum(len(channels) for channels in event.channels.values())
        log.info(
            "fleet partitions revoked",
            partitions=list(event.partitions),
            total=len(self._partitions),
            channels=released,
            lost=event.lost,
        )
        if self._settings.kafka_channels_handover_timeout_s <= 0:
            gone = self._not_owned([c for cs in event.channels.values() for c in cs])
            self._stop_producing(gone, to_instance="")
            self._source.remove_channels(gone)
            return
        now = asyncio.get_running_loop().time()
        self._handover.release(event.channels, now)
        if self._fence is not None:
            self._fence.track(c for cs in event.channels.values() for c in cs)
        # At once, not at the next tick: the new owner holds what it reads of a channel
        # only if it knows that another instance reads it.
        self._publish_report(now)

    def _read_elsewhere(self, channels: Iterable[str]) -> set[str]:
        releasing = self._releasing_elsewhere.values()
        return {c for c in channels if any(c in given for given in releasing)}

    def _stop_producing(self, channels: list[str], *, to_instance: str) -> None:
        """Stop producing `channels` (parted next) and publish the final mark of each
        that was fenced, so that its new owner produces exactly what follows."""
        fence = self._fence
        if fence is None or not channels:
            return
        marks = fence.stop(channels)
        publisher = self._publisher
        if publisher is None:
            return
        now_ms = int(time.time() * 1000)
        for channel, identity in marks.items():
            mark = FinalMark(
                channel=channel,
                from_instance=self._settings.instance_id,
                to_instance=to_instance,
                identity=identity,
                at_ms=now_ms,
            )
            try:
                publisher.produce(
                    self._settings.kafka_topic_instances,
                    encode_mark(mark),
                    f"{MARK_KEY_PREFIX}{channel}".encode(),
                )
            except BufferError:
                log.warning("fleet final mark not published", channel=channel)
        publisher.poll(0)

    def _on_mark(self, mark: FinalMark) -> None:
        me = self._settings.instance_id
        fence = self._fence
        if fence is None or mark.from_instance == me or mark.to_instance not in ("", me):
            return
        release = fence.release(mark.channel, mark)
        if release is not None:
            self._released(mark.channel, release.outcome, mark.from_instance)

    def _released(self, channel: str, outcome: ReleaseOutcome, old_owner: str) -> None:
        FLEET_HANDOFFS.labels(outcome.value).inc()
        if outcome is ReleaseOutcome.POSSIBLE_GAP:
            log.warning(
                "fleet hand-over may have lost lines",
                channel=channel,
                old_owner=old_owner,
                reason="the old owner's final mark is older than what was held here "
                "(the hold window overflowed)",
            )
        elif outcome is ReleaseOutcome.NO_MARK:
            log.warning(
                "fleet hand-over may have repeated lines",
                channel=channel,
                reason=f"no final mark within {MARK_WAIT_S:g} s: everything read since "
                "the JOIN was produced, some of which the old owner may have produced too",
            )
        else:
            log.debug("fleet hand-over fenced", channel=channel, outcome=outcome.value)

    def _not_owned(self, channels: Iterable[str]) -> list[str]:
        """`channels` minus those a partition we still own wants: a key written to two
        partitions (by a writer with another partitioner) must not be parted by one."""
        owned = self._owned
        return [c for c in channels if not any(c in table for table in owned.values())]

    # --- periodic: hand-over deadlines and this instance's report --------------------------

    def tick(self, now: float) -> None:
        """Periodic work (every `_TICK_S` while running): hand-over deadlines, report."""
        if self._loaded_partitions:
            log.info(
                "fleet partitions loaded",
                partitions=self._loaded_partitions,
                channels=self._loaded_channels,
                reading=len(self._source.channels),
            )
            self._loaded_partitions = self._loaded_channels = 0
        late = self._not_owned(
            self._handover.expired(now, self._settings.kafka_channels_handover_timeout_s)
        )
        if late:
            self._stop_producing(late, to_instance="")
            self._source.remove_channels(late)
            log.warning(
                "fleet hand-over timed out",
                channels=len(late),
                sample=late[:20],
                timeout_s=self._settings.kafka_channels_handover_timeout_s,
                action="parting channels no instance reported joined",
            )
        if self._fence is not None:
            for channel, release in self._fence.expire(now).items():
                self._released(channel, release.outcome, "")
        standby = self._standby
        if standby is not None:
            standby.tick(now)
            if standby.report_wanted:
                standby.report_wanted = False
                self._publish_report(now, force=True)
        self._publish_report(now)
        self._check_left()

    def _publish_report(self, now: float, *, force: bool = False) -> None:
        publisher = self._publisher
        if publisher is None:
            return
        report = self.report()
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
            publisher.produce(
                self._settings.kafka_topic_instances,
                encode_report(report),
                report.instance_id.encode(),
            )
        except BufferError:  # Kafka unreachable for a while: the next tick tries again
            publisher.poll(0)
            return
        publisher.poll(0)
        self._last_published = fingerprint
        self._last_published_at = now

    def report(self) -> InstanceReport:
        """This instance's report, as of now."""
        source = self._source
        joined = source.status().get("channels_joined", 0)
        standby = self._standby.standby if self._standby is not None else []
        if standby:
            # Read but not produced here: a standby's channels must not look like its
            # own to the hand-over of their owner (`handover.py`).
            stood_by = set(standby)
            channels = tuple(c for c in source.channels if c not in stood_by)
        else:
            channels = tuple(source.channels)
        joined_set = source.joined_channels()
        return InstanceReport(
            instance_id=self._settings.instance_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            login=self._settings.twitch_login,
            started_at_ms=self._started_at_ms,
            updated_at_ms=int(time.time() * 1000),
            partitions=tuple(sorted(self._partitions)),
            channels=channels,
            releasing=tuple(self._handover.channels),
            ready=source.is_ready(),
            joined=joined if isinstance(joined, int) else 0,
            failed=len(source.failed_channels),
            not_joined=tuple(c for c in channels if c not in joined_set),
            standby=tuple(standby),
        )

    def _publisher_config(self) -> dict[str, Any]:
        conf = admin_config(configs.kafka_connection(self._settings))
        conf.update(
            {
                "client.id": f"{self._settings.instance_id}-reports",
                # Channel logins compress well: a report of 10,000 channels is ~40 KB.
                "compression.type": "lz4",
                "linger.ms": 20,
                "acks": "all",
                "logger": logging.getLogger("librdkafka"),
                **NO_AUTO_CREATE,
            }
        )
        return conf
