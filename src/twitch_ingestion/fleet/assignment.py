"""This instance's share of the fleet's channels, as the consumer group assigns it.

Every instance with CHANNEL_SOURCE=kafka joins one consumer group on the control topic
(`control_topic.py`), with the cooperative-sticky assignor (a rebalance revokes only the
partitions that move) and static membership (`group.instance.id` = INSTANCE_ID: a
restart within the session timeout gets the same partitions back, with no rebalance).
Nothing is committed: a newly assigned partition is read from its beginning, which for
a compacted topic is the current table. Its channels are then joined; records that
arrive later are applied as they come, so adding or removing a channel takes effect
within a fetch (≤ `control_reader._FETCH_WAIT_MS`) plus a JOIN.

Two halves:

* `ControlTopicReader` (`control_reader.py`), on its own thread, owns the librdkafka
  consumers and turns Kafka into small events (`events.py`), posted to the loop in order.
* `FleetMember`, here, on the loop, applies them to the `TwitchSource` (`add_channels`,
  `remove_channels`), keeps given-away channels until their new owner has them
  (`handover.py`), fences each hand-over with final marks (`fence.py`), stands by for
  other producers with KAFKA_CHANNELS_REPLICAS=2 (`standby_keeper.py`) and publishes
  this instance's report (`report_publisher.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from twitch_ingestion.fleet.config import FleetConfig
from twitch_ingestion.fleet.control_reader import ControlTopicReader
from twitch_ingestion.fleet.events import (
    ChannelReader,
    ChannelsChanged,
    FleetError,
    FleetEvent,
    MarkReceived,
    PartitionLoaded,
    PartitionsAssigned,
    PartitionsRevoked,
    ProgressReceived,
    ReportDeleted,
    ReportReceived,
)
from twitch_ingestion.fleet.fence import (
    MARK_KEY_PREFIX,
    MARK_WAIT_S,
    FinalMark,
    ReleaseOutcome,
    encode_mark,
)
from twitch_ingestion.fleet.handover import HandoverTracker
from twitch_ingestion.fleet.report_publisher import (
    ReportPublisher,
    instance_report,
    publisher_config,
)
from twitch_ingestion.fleet.standby import StandbyFence
from twitch_ingestion.fleet.standby_keeper import StandbyKeeper
from twitch_ingestion.fleet.status import InstanceReport
from twitch_ingestion.fleet.tail_read import ChannelTail, read_tail
from twitch_ingestion.kafka.producer_config import admin_config
from twitch_ingestion.kafka.topics import NO_AUTO_CREATE
from twitch_ingestion.metrics import FLEET_HANDOFFS

__all__ = ["FleetMember"]

log = structlog.get_logger(__name__)

# How often the loop side checks whether its report changed or a hand-over timed out.
_TICK_S = 0.5
# Time allowed at shutdown to delete this instance's report.
_REPORT_FLUSH_S = 5.0
# While handing off at shutdown: how often to ask whether any member is left to take over.
_GROUP_CHECK_S = 1.0


class FleetMember:
    """Turns the reader's events into `add_channels` / `remove_channels` calls.

    ```
    member = FleetMember(config, source)        # component_configs.fleet_config
    task = asyncio.create_task(member.run())   # raises FleetError if membership fails
    ...
    await member.stop()                         # before the source stops
    ```
    """

    def __init__(
        self,
        config: FleetConfig,
        source: ChannelReader,
        *,
        group_is_empty: Callable[[], bool] | None = None,
    ) -> None:
        """`group_is_empty` (blocking, run on a thread) tells a hand-off at shutdown that
        nobody is left to take the channels; by default it asks Kafka."""
        self._config = config
        self._source = source
        self._admin: AdminClient | None = None
        self._group_is_empty = group_is_empty or self._ask_group_is_empty
        self._handover = HandoverTracker(config.instance_id)
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
        self._reports = ReportPublisher(config.control.instances_topic)
        self._loaded_channels = 0
        self._loaded_partitions = 0
        self._assigned_once = False
        self._standby = self._standby_keeper(config, source)

    def _standby_keeper(self, config: FleetConfig, source: ChannelReader) -> StandbyKeeper | None:
        """With KAFKA_CHANNELS_REPLICAS=2 and a source that can stand by (IRC's gate)."""
        # Not part of `ChannelReader`: a source that cannot stand by need not say so.
        fence: StandbyFence | None = getattr(source, "standby_fence", None)
        if not config.standby.enabled or fence is None:
            return None
        tail_topics = config.tail_topics
        consumer_config = {
            **admin_config(config.control.connection),
            **NO_AUTO_CREATE,
            "client.id": f"{config.instance_id}-tail",
            "logger": logging.getLogger("librdkafka"),
        }

        def tail(
            wanted: Mapping[str, set[str]], from_ms: int, timeout_s: float
        ) -> dict[str, ChannelTail]:
            return read_tail(consumer_config, tail_topics, wanted, from_ms, timeout_s)

        return StandbyKeeper(
            config.instance_id,
            config.standby,
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
            publisher.produce(self._config.control.instances_topic, value, key)
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
        config = self._config
        log.info(
            "fleet member starting",
            instance_id=config.instance_id,
            group=config.control.group,
            topic=config.control.channels_topic,
            session_timeout_ms=config.session_timeout_ms,
        )
        self._publisher = Producer(publisher_config(config))

        def post(event: FleetEvent) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self.handle_event, event)

        self._reader = ControlTopicReader(config, post)
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
            instance_id=self._config.instance_id,
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
                    **admin_config(self._config.control.connection),
                    **NO_AUTO_CREATE,
                    "logger": logging.getLogger("librdkafka"),
                }
            )
        group = self._config.control.group
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
                self._config.control.instances_topic, None, self._config.instance_id.encode()
            )
            await asyncio.to_thread(publisher.flush, _REPORT_FLUSH_S)
        log.info("fleet member stopped", instance_id=self._config.instance_id)

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
            if report.instance_id != self._config.instance_id:
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
        if self._config.handover_timeout_s <= 0:
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
                from_instance=self._config.instance_id,
                to_instance=to_instance,
                identity=identity,
                at_ms=now_ms,
            )
            try:
                publisher.produce(
                    self._config.control.instances_topic,
                    encode_mark(mark),
                    f"{MARK_KEY_PREFIX}{channel}".encode(),
                )
            except BufferError:
                log.warning("fleet final mark not published", channel=channel)
        publisher.poll(0)

    def _on_mark(self, mark: FinalMark) -> None:
        me = self._config.instance_id
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
        late = self._not_owned(self._handover.expired(now, self._config.handover_timeout_s))
        if late:
            self._stop_producing(late, to_instance="")
            self._source.remove_channels(late)
            log.warning(
                "fleet hand-over timed out",
                channels=len(late),
                sample=late[:20],
                timeout_s=self._config.handover_timeout_s,
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
        self._reports.publish(publisher, self.report(), now, force=force)

    def report(self) -> InstanceReport:
        """This instance's report, as of now."""
        return instance_report(
            self._config,
            self._source,
            started_at_ms=self._started_at_ms,
            partitions=self._partitions,
            releasing=self._handover.channels,
            standby=self._standby.standby if self._standby is not None else [],
        )
