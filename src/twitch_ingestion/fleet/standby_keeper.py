"""The hot standby on the loop (`KAFKA_CHANNELS_REPLICAS=2`): `standby.py`'s decisions,
applied to the source, with the progress records and the tail of the topics as inputs.

`FleetMember` owns one and feeds it the instances topic (reports, progress records,
tombstones) and its ticks. It:

* publishes this instance's progress every tick (`ProgressMark`: alive, and the last
  identity of each channel produced since the last one);
* keeps the owner of every channel, from the reports of the live instances, and the set
  of channels this instance stands by for (`standby_channels`), joining and parting them
  and putting them in the gate's standby mode;
* declares an instance dead when its progress stops (`Liveness`), and takes over the
  channels it stood by for under that instance: reads the tail of the topics
  (`tail_read.py`), produces what it holds after Kafka's copy, and hands each channel
  to the group's new owner like any moved channel (`FleetMember.taken_over`: released,
  tracked, final mark when the new owner reports it joined).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import structlog

from twitch_ingestion.fleet.standby import (
    PROGRESS_KEY_PREFIX,
    TAIL_SLACK_MS,
    Liveness,
    ProgressMark,
    StandbyConfig,
    StandbyFence,
    TakeOver,
    TakeOverOutcome,
    encode_progress,
    standby_channels,
)
from twitch_ingestion.fleet.status import InstanceReport
from twitch_ingestion.fleet.tail_read import ChannelTail
from twitch_ingestion.metrics import FLEET_TAKEOVERS

__all__ = ["StandbyKeeper", "StandbySource"]

log = structlog.get_logger(__name__)

# How long a take-over may spend reading the tail before it falls back to the progress
# records (a few seconds of the fleet's traffic normally takes well under a second).
TAIL_TIMEOUT_S = 10.0

ReadTail = Callable[[Mapping[str, set[str]], int, float], dict[str, ChannelTail]]
"""(channel → identities held, from_ms, timeout_s) → what the tail holds (blocking)."""


class StandbySource(Protocol):
    def add_channels(self, channels: Iterable[str]) -> None: ...

    def remove_channels(self, channels: Iterable[str]) -> None: ...


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class StandbyKeeper:
    """Stands by for the channels rendezvous gives this instance; takes them over."""

    def __init__(
        self,
        instance_id: str,
        config: StandbyConfig,
        fence: StandbyFence,
        source: StandbySource,
        *,
        read_tail: ReadTail,
        publish: Callable[[bytes, bytes | None], None],
        busy: Callable[[], set[str]],
        taken_over: Callable[[list[str]], None],
        give_back: Callable[[list[str], str], None],
    ) -> None:
        """`publish(key, value)` writes to the instances topic; `busy()` is what this
        instance produces or hands over (never stood by for); `taken_over(channels)`
        hands channels now produced here to whoever the group names their owner;
        `give_back(channels, instance)` ends a take-over whose producer came back."""
        self._me = instance_id
        self._config = config
        self._fence = fence
        self._source = source
        self._read_tail = read_tail
        self._publish = publish
        self._busy = busy
        self._taken_over = taken_over
        self._give_back = give_back
        # Channel → the instance it was taken over from, while it is handed on.
        self._taken_from: dict[str, str] = {}
        self._liveness = Liveness(config.dead_after_s)
        self._owned_by: dict[str, frozenset[str]] = {}
        self._progress: dict[str, str] = {}
        self._standby: set[str] = set()
        self._taking_over: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirty = False
        self.report_wanted = False
        """A new instance appeared: it learns who owns what from the reports, so ours
        should go out now rather than at the next heartbeat."""
        fence.enable_progress()

    @property
    def standby(self) -> list[str]:
        return sorted(self._standby)

    @property
    def taking_over(self) -> frozenset[str]:
        return frozenset(self._taking_over)

    def window_bytes(self) -> int:
        return self._fence.window_bytes()

    def changed(self) -> None:
        """What this instance owns changed: recompute at the next tick."""
        self._dirty = True

    # --- the instances topic ----------------------------------------------------------------

    def on_report(self, report: InstanceReport) -> None:
        if report.instance_id == self._me:
            return
        owned = frozenset(report.channels).difference(report.releasing)
        if self._owned_by.get(report.instance_id) != owned:
            self._owned_by[report.instance_id] = owned
            self._dirty = True

    def on_report_deleted(self, instance_id: str) -> None:
        self._liveness.gone(instance_id)
        self._owned_by.pop(instance_id, None)
        self._dirty = True

    def on_progress(self, instance_id: str, mark: ProgressMark | None, now: float) -> None:
        if instance_id == self._me:
            return
        if mark is None:  # stopped cleanly: it handed its channels off
            self.on_report_deleted(instance_id)
            return
        if self._liveness.new(instance_id):
            self.report_wanted = True
            self._dirty = True
        if self._liveness.heard(instance_id, now):
            self._dirty = True
            back = self._returnable(instance_id)
            log.warning(
                "fleet producer back",
                instance=instance_id,
                given_back=len(back),
                reason="progress resumed after it was declared dead: what was read of "
                "the channels taken over from it meanwhile may be in Kafka twice",
            )
            if back:
                self._give_back(back, instance_id)
        self._progress.update(mark.identities)

    def _returnable(self, instance_id: str) -> list[str]:
        """Channels taken over from `instance_id` that no other instance reports as its
        own (else the group moved them: their hand-over to the new owner goes on)."""
        back: list[str] = []
        for channel, taken_from in list(self._taken_from.items()):
            if taken_from != instance_id:
                continue
            del self._taken_from[channel]
            moved = any(
                channel in owned
                for instance, owned in self._owned_by.items()
                if instance != instance_id
            )
            if not moved:
                back.append(channel)
        return back

    # --- periodic -------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        now_ms = int(time.time() * 1000)
        mark = ProgressMark(instance_id=self._me, at_ms=now_ms, identities=self._fence.progress())
        self._publish(f"{PROGRESS_KEY_PREFIX}{self._me}".encode(), encode_progress(mark))
        self._fence.expire_windows(now_ms)
        for dead in self._liveness.newly_dead(now):
            self._dirty = True
            owned = self._owned_by.get(dead, frozenset())
            channels = sorted(c for c in self._standby if c in owned)
            log.warning(
                "fleet producer dead",
                instance=dead,
                silent_s=self._config.dead_after_s,
                taking_over=len(channels),
            )
            if channels:
                self._standby.difference_update(channels)
                self._taking_over.update(channels)
                task = asyncio.get_running_loop().create_task(
                    self._take_over(dead, channels, now_ms), name=f"fleet-take-over-{dead}"
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self._dirty:
            self._dirty = False
            self._recompute()

    def stopped(self) -> None:
        """At shutdown: delete our progress record, so nobody takes our channels over."""
        self._publish(f"{PROGRESS_KEY_PREFIX}{self._me}".encode(), None)
        for task in self._tasks:
            task.cancel()

    def _recompute(self) -> None:
        live = self._liveness.live()
        owners: dict[str, str] = {}
        for instance, channels in self._owned_by.items():
            if instance in live:
                for channel in channels:
                    owners[channel] = instance
        busy = self._busy()
        wanted = standby_channels(self._me, owners, live | {self._me})
        wanted -= busy
        wanted -= self._taking_over
        added = sorted(wanted - self._standby)
        gone = sorted(self._standby - wanted)
        if gone:
            self._fence.stop_standing_by(gone)
            self._source.remove_channels([c for c in gone if c not in busy])
        if added:
            self._fence.stand_by(added, self._config)
            self._source.add_channels(added)
        self._standby = wanted
        if added or gone:
            log.info(
                "fleet standby changed",
                added=len(added),
                removed=len(gone),
                standby=len(wanted),
                members=len(live) + 1,
            )

    # --- take-over ------------------------------------------------------------------------------

    async def _take_over(self, dead: str, channels: list[str], detected_ms: int) -> None:
        fence = self._fence
        fence.freeze(channels)
        starts: dict[str, int] = {}
        for channel in channels:
            start = fence.tail_start_ms(channel, self._progress.get(channel))
            if start is not None:
                starts[channel] = start
        from_ms = (min(starts.values()) if starts else detected_ms) - TAIL_SLACK_MS
        tails: dict[str, ChannelTail] | None = {}
        if starts:
            wanted = {channel: fence.window_identities(channel) for channel in starts}
            try:
                tails = await asyncio.to_thread(self._read_tail, wanted, from_ms, TAIL_TIMEOUT_S)
            except Exception as error:  # TailUnreadableError, or a client error
                tails = None
                log.warning(
                    "fleet take-over tail unreadable",
                    instance=dead,
                    error=str(error),
                    action="starting after the dead producer's last progress record",
                )
        outcomes: dict[str, int] = {}
        handed: list[str] = []
        busy = self._busy()
        for channel in channels:
            if channel not in self._taking_over:
                continue
            if tails is None:
                last = self._progress.get(channel)
                produced: set[str] = {last} if last is not None else set()
                last_ms = from_ms
            else:
                tail = tails.get(channel)
                produced = tail.produced if tail is not None else set()
                last_ms = tail.last_ms if tail is not None and tail.last_ms is not None else from_ms
            owned_here = channel in busy
            decision = fence.take_over(
                channel, produced, last_produced_ms=last_ms, track=not owned_here
            )
            if decision is None:
                continue
            self._count(channel, dead, decision)
            outcomes[decision.outcome.value] = outcomes.get(decision.outcome.value, 0) + 1
            if not owned_here:
                handed.append(channel)
        self._taking_over.difference_update(channels)
        if handed:
            self._taken_over(handed)
            self._taken_from.update(dict.fromkeys(handed, dead))
            if dead in self._liveness.live():  # came back while the tail was read
                back = self._returnable(dead)
                if back:
                    self._give_back(back, dead)
        self._dirty = True
        log.info(
            "fleet take-over complete",
            instance=dead,
            channels=len(channels),
            outcomes=outcomes,
            detected_at=_iso(detected_ms),
            took_s=round((time.time() * 1000 - detected_ms) / 1000, 3),
            tail_from=_iso(from_ms),
        )

    def _count(self, channel: str, dead: str, decision: TakeOver) -> None:
        FLEET_TAKEOVERS.labels(decision.outcome.value).inc()
        if decision.outcome is TakeOverOutcome.GAP:
            log.warning(
                "fleet take-over lost lines",
                channel=channel,
                instance=dead,
                lost_from=_iso(decision.gap_from_ms),
                lost_to=_iso(decision.gap_to_ms),
                reason="the standby window dropped lines its dead producer never got to "
                "Kafka (KAFKA_CHANNELS_STANDBY_WINDOW_S / _BYTES too small for the time "
                "it took to notice)",
            )
