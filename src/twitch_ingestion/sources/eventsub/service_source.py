"""The EventSub source as the service runs it: the client's results → the records stage.

`EventSubClient` (client.py) reads chat and hands each result to an `EventSubOutput`
synchronously, from its socket reader. `SinkOutput` is that output for the service: it
asks the records stage's `RecordBuilder` for each `EventSubRecord`'s record (the same
topics, key and created-at time as an IRC record) and for each dead letter's (its exact
frame bytes, the same headers as an IRC dead letter), and hands them, in batches, to the
`RecordSink` (the Kafka sink) — which never learns which source read them.

`EventSubSource` is the service's `Source` (`sources/common/source.py`): `run` (raising
`EventSubFailed`, a `SourceStopped`, when reading cannot go on), `stop(grace_s)`,
`is_ready`, `failed_channels`, the counters `/metrics` reads at scrape time, and the
fleet's `ChannelReader` (channels added and removed at run time: subscribed and
unsubscribed per channel).

Why batches: the sink's `deliver` is a coroutine that may wait for buffer room, and the
client calls the output without awaiting. Records are appended to a list (one tuple per
notification, nothing else) and a drain task hands the list to the sink as one chunk,
exactly like an IRC read chunk.

Backpressure, exactly. Twitch answers a socket that stops reading by closing the
session (4002: aiohttp answers Twitch's pings only while the reader receives), and the
notifications sent meanwhile are gone: EventSub keeps nothing for a closed session. So
while the sink is busy (Kafka slow or down, the buffer full under `block`) the reader
goes on reading, and the records wait here, at most TWITCH_EVENTSUB_MAX_HELD_RECORDS
(`max_held`; `twitch_ingestion_eventsub_held_records` shows how many). When that many
are held, BUFFER_FULL_POLICY decides, as it does for the buffer:
- `block`: the reader stops reading until the sink has taken the held records (the
  policy's "stop reading Twitch"). If that lasts past Twitch's ping timeout, Twitch closes
  the session (4002), the source reconnects and subscribes again; what Twitch sent in
  between is lost. Size the limit for the longest stall to ride out (about 1 KiB a record).
- `drop_newest`: the record read is dropped, counted in
  `buffer_records_dropped_total{reason="buffer_full"}` and warned about (throttled); the
  session stays up and reading goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence

import structlog

from twitch_ingestion.channels import normalise_logins
from twitch_ingestion.config import BufferFullPolicy
from twitch_ingestion.fleet.fence import ChannelFence
from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import (
    BUFFER_DROPPED,
    EVENTSUB,
    EVENTSUB_DESIRED_CHANNELS,
    EVENTSUB_HELD_RECORDS,
    EVENTSUB_SUBSCRIBED_CHANNELS,
)
from twitch_ingestion.records import Record, RecordSink
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.records.events import SourceDeadLetter
from twitch_ingestion.sources.common.source import SideTask, SourceStopped
from twitch_ingestion.sources.eventsub.client import EventSubClient
from twitch_ingestion.sources.eventsub.config import EventSubConfig
from twitch_ingestion.sources.eventsub.helix import ChannelProblem
from twitch_ingestion.sources.eventsub.messages import DeadLetter
from twitch_ingestion.sources.eventsub.output import SourceFailure
from twitch_ingestion.sources.eventsub.reconciler_outputs import ChannelState
from twitch_ingestion.sources.eventsub.records import EventSubRecord
from twitch_ingestion.sources.eventsub.session import SessionState

__all__ = ["AUTH_VARIABLES", "EventSubFailed", "EventSubSource", "SinkOutput"]

log = structlog.get_logger(__name__)

_HIGH_WATER = 50_000
"""Records held for the sink at most by default (TWITCH_EVENTSUB_MAX_HELD_RECORDS): tens
of seconds of a busy channel set, some 50 MiB at most."""

AUTH_VARIABLES = frozenset(
    {"TWITCH_OAUTH_TOKEN", "TWITCH_CLIENT_ID", "TWITCH_CLIENT_SECRET", "TWITCH_REFRESH_TOKEN"}
)
"""A `SourceFailure` naming one of these is a credentials problem: exit 3."""

_READING = (SessionState.RUNNING, SessionState.MIGRATING)
_SUBSCRIBED = ChannelState.SUBSCRIBED


class EventSubFailed(SourceStopped):
    """The EventSub client stopped for good; `failure.message` is one line, token-free."""

    def __init__(self, failure: SourceFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure

    @property
    def is_authentication(self) -> bool:
        return self.failure.variable in AUTH_VARIABLES

    def details(self) -> dict[str, object]:
        """One line naming the setting to fix (the client never puts a token in it)."""
        failure = self.failure
        if self.is_authentication:
            return {"variable": failure.variable, "error": str(self)}
        return {"reason": failure.reason, "variable": failure.variable, "error": str(self)}


class SinkOutput:
    """An `EventSubOutput` that hands records and dead letters to a `RecordSink`."""

    def __init__(
        self,
        sink: RecordSink,
        records: RecordBuilder,
        *,
        high_water: int = _HIGH_WATER,
        full_policy: BufferFullPolicy = BufferFullPolicy.BLOCK,
    ) -> None:
        """`high_water`: records held at most (see the module docstring); then
        `full_policy` decides."""
        self._sink = sink
        self._records = records
        self._drop_when_full = full_policy is BufferFullPolicy.DROP_NEWEST
        self.dropped = 0
        self._high_water = high_water
        self._pending: list[Record] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._errors = ThrottledLogger(log, interval_s=10.0)
        self.failed_channels: dict[str, str] = {}

    @property
    def dead_lettered(self) -> int:
        """Dead letters its builder made (or, without a dead-letter topic, counted)."""
        return self._records.dead_lettered

    @property
    def pending(self) -> int:
        """Records taken from the client and not yet handed to the sink."""
        return len(self._pending)

    # --- EventSubOutput (called from the client's socket readers) ---------------------

    def record(self, record: EventSubRecord) -> None:
        if self._drop_when_full and len(self._pending) >= self._high_water:
            self._drop_newest()
            return
        self._pending.append(self._records.record(record, record.record.received_at))
        if not self._wake.is_set():
            self._wake.set()
        if len(self._pending) >= self._high_water and not self._drop_when_full:
            self._room.clear()

    def _drop_newest(self) -> None:
        self.dropped += 1
        BUFFER_DROPPED.labels(reason="buffer_full").inc()
        self._errors.warning(
            "buffer full records dropped",
            "buffer_full",
            held=len(self._pending),
            policy="drop_newest",
            detail="EventSub records held for the sink reached TWITCH_EVENTSUB_MAX_HELD_RECORDS",
        )

    def room(self) -> Awaitable[bool] | None:
        """None while records can be held; else (`block`, `high_water` records held) an
        awaitable the reader waits on."""
        return None if self._room.is_set() else self._room.wait()

    def dead_letter(self, letter: DeadLetter) -> None:
        record = self._records.dead_letter(
            SourceDeadLetter(
                letter.frame,
                letter.reason,
                time.time_ns() // 1_000_000,
                letter.detail,
                what="eventsub frame",
            )
        )
        if record is not None:  # without a DLQ: counted and logged, nowhere to go
            self._sink.deliver_nowait(record)

    def channel_problem(self, problem: ChannelProblem) -> None:
        self.failed_channels[problem.channel] = f"{problem.reason}: {problem.message}"

    # --- the drain task -----------------------------------------------------------------

    async def run(self) -> None:
        """Hand what the client produced to the sink, chunk by chunk, until `close`d and
        empty."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                await self._sink.deliver(batch)
                if len(self._pending) < self._high_water:
                    self._room.set()
            if self._closing:
                return

    def close(self) -> None:
        """No more records will come: `run` returns once the sink has taken the rest."""
        self._closing = True
        self._wake.set()
        self._room.set()


class EventSubSource:
    """The EventSub client and its sink output: the service's `Source` for EventSub."""

    def __init__(
        self,
        records: RecordBuilder,
        sink: RecordSink,
        client_config: EventSubConfig,
        *,
        max_held_records: int,
        full_policy: BufferFullPolicy,
    ) -> None:
        """`client_config.channels`: the starting set — TWITCH_CHANNEL, fixed, or (with
        `dynamic_channels`: the fleet's, usually empty at first) changed later with
        `add_channels`/`remove_channels`. Records read while the sink is busy are held,
        `max_held_records` at most (TWITCH_EVENTSUB_MAX_HELD_RECORDS), then
        `full_policy` (BUFFER_FULL_POLICY) applies."""
        self.output = SinkOutput(
            sink, records, high_water=max_held_records, full_policy=full_policy
        )
        url = client_config.eventsub_url
        self.endpoint = (url, url.startswith("wss://"))
        """Where it reads and whether over TLS (for the service's start log)."""
        dynamic = client_config.dynamic_channels
        self._wanted = list(client_config.channels)
        self.client = EventSubClient(client_config, self.output)
        self._dynamic = dynamic
        self._running = False
        self._stopping = False
        self._done = asyncio.Event()

    @property
    def dead_lettered(self) -> int:
        return self.output.dead_lettered

    @property
    def failed_channels(self) -> dict[str, str]:
        """Wanted channels not read because something failed → `reason: detail` (unknown
        login, refused, revoked, or a temporary failure being retried)."""
        return {
            login: status.describe()
            for login, status in self.client.channel_statuses().items()
            if status.failure is not None
        }

    def subscription_summary(self) -> dict[str, object]:
        """For /readyz: how many channels are wanted and subscribed, and every channel
        that is not, with why (`pending` while the first subscription is under way)."""
        statuses = self.client.channel_statuses()
        return {
            "desired": len(statuses),
            "subscribed": sum(1 for s in statuses.values() if s.state is _SUBSCRIBED),
            "not_subscribed": {
                login: status.describe()
                for login, status in statuses.items()
                if status.state is not _SUBSCRIBED
            },
        }

    # --- the fleet's ChannelReader ------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """Every wanted channel, in the order they were added."""
        return list(self._wanted)

    @property
    def fence(self) -> ChannelFence | None:
        """Not yet: a channel moved between EventSub instances is produced twice for
        the overlap (docs/scaling.md)."""
        return None

    def joined_channels(self) -> frozenset[str]:
        """Wanted channels whose subscriptions are all in place on a live session."""
        return self.client.subscribed_logins().intersection(self._wanted)

    def add_channels(self, channels: Iterable[str]) -> None:
        wanted = set(self._wanted)
        new = tuple(c for c in normalise_logins(channels) if c not in wanted)
        if new:
            log.info("twitch channels added", count=len(new))
            self._wanted.extend(new)
            self.client.add_channels(new)

    def remove_channels(self, channels: Iterable[str]) -> None:
        gone = set(normalise_logins(channels)).intersection(self._wanted)
        if not gone:
            return
        self._wanted = [c for c in self._wanted if c not in gone]
        for channel in gone:
            self.output.failed_channels.pop(channel, None)
        self.client.remove_channels(tuple(gone))
        log.info("twitch channels removed", count=len(gone))

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot for /readyz and the fleet's reports (no secrets)."""
        return {
            "ready": self.is_ready(),
            "channels": len(self._wanted),
            "channels_joined": len(self.joined_channels()),
            "channels_failed": self.failed_channels,
            "connections": [
                {
                    "connection": connection.index,
                    "state": connection.session.state.value,
                    "channels": len(connection.channels),
                }
                for connection in self.client.connections
            ],
        }

    @property
    def records_read(self) -> int:
        return self.client.stats.records

    def lines_read(self) -> float:
        """Notifications read so far (the service's throughput log)."""
        return float(self.client.stats.records)

    def side_tasks(self) -> Sequence[SideTask]:
        """None: the token is kept valid inside the client, where Helix calls share it."""
        return ()

    def readiness_details(self) -> dict[str, object]:
        """/readyz's `channels`: wanted, subscribed, and why each other one is not."""
        return {"channels": self.subscription_summary()}

    def token_expiry(self, now: float) -> tuple[float, bool] | None:
        keeper = self.client.keeper
        return None if keeper is None else keeper.expiry(now)

    def parse_stats(self) -> Mapping[str, float]:
        """None of its own: notifications are JSON, checked as they are decoded."""
        return {}

    def is_ready(self) -> bool:
        """Every wanted channel subscribed, except those Twitch refused for good (they are
        reported, and re-checked slowly); and, for TWITCH_CHANNEL, at least one read.

        Not ready while any channel is pending or failing for a reason that may clear
        (Helix down, a limit, a reconnect): /readyz then names them (`subscription_summary`).
        """
        if not self._running or self._stopping:
            return False
        states = [status.state for status in self.client.channel_statuses().values()]
        if any(state in (ChannelState.PENDING, ChannelState.FAILING) for state in states):
            return False
        return self._dynamic or _SUBSCRIBED in states

    def counters(self) -> dict[str, float]:
        """What `/metrics` shows as `twitch_ingestion_eventsub_*` (read at scrape time)."""
        client = self.client
        stats = client.stats
        keeper = client.keeper
        connections = client.connections
        return {
            "eventsub_notifications": stats.records,
            "eventsub_dead_letters": stats.dead_letters,
            "eventsub_duplicates_dropped": client.duplicates_dropped,
            "eventsub_reconnects": len(stats.reconnects),
            "eventsub_session_migrations": stats.migrations,
            "eventsub_subscriptions_created": stats.subscriptions_created,
            "eventsub_revocations": stats.revocations,
            "eventsub_helix_rate_limited": stats.rate_limited,
            "eventsub_token_validations": keeper.validations if keeper else 0,
            "eventsub_token_refreshes": keeper.refreshes if keeper else 0,
            "eventsub_channels_not_read": len(self.failed_channels),
            "eventsub_connections_subscribed": sum(
                1 for connection in connections if connection.session.state in _READING
            ),
        }

    async def run(self) -> None:
        """Read until `stop()`; raises `EventSubFailed` when reading cannot go on."""
        self._running = True
        EVENTSUB.watch(self.counters)
        statuses = self.client.channel_statuses
        EVENTSUB_DESIRED_CHANNELS.set_function(lambda: len(statuses()))
        EVENTSUB_SUBSCRIBED_CHANNELS.set_function(
            lambda: sum(1 for s in statuses().values() if s.state is _SUBSCRIBED)
        )
        EVENTSUB_HELD_RECORDS.set_function(lambda: self.output.pending)
        drain = asyncio.create_task(self.output.run(), name="eventsub-drain")
        try:
            failure = await self.client.run()
            # Whatever the client read before it ended goes to the sink before run returns.
            self.output.close()
            await drain
        finally:
            self._running = False
            if not drain.done():
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
            self._done.set()
        if failure is not None:
            raise EventSubFailed(failure)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop reading; returns once `run` has handed every record read to the sink, or
        after `grace_s` (the service then cancels `run`)."""
        self._stopping = True
        self.client.stop()
        if not self._running:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._done.wait()
