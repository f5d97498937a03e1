"""`TwitchSource`: the pool of Twitch connections the service reads chat from.

Channels are spread over *slots* of at most `twitch_channels_per_connection` channels.
Each slot keeps one live `TwitchConnection` for its channels and owns its life cycle:

* connect (no faster than one socket per `twitch_connection_open_interval_s` across the
  pool), log in, JOIN every channel through the account-wide `JoinRateLimiter`;
* after any disconnect, reconnect with `ExponentialBackoff` and JOIN everything again;
  `twitch_max_reconnect_attempts` failed attempts in a row end `run()` with
  `TwitchGaveUp`; rejected credentials end it at once with `TwitchAuthenticationError`;
* on a server RECONNECT, log in and join a *second* connection before closing the first,
  keep both for up to `twitch_reconnect_overlap_s`, and drop lines seen on both by their
  `id` tag — so a hand-over loses and doubles nothing;
* channels Twitch refuses (NOTICE) or never confirms (no JOIN echo in time) are logged
  once, listed in `failed_channels` and retried every `twitch_join_retry_interval_s`,
  while the slot's other channels keep flowing.

Every slot reads on its own task and awaits the sink per chunk, so a flooded channel
slows only its own connection. Metrics are updated per chunk or per state change, never
per line; logs are per state change, never per message.

Layout: this module is the pool itself — the public API, which slot a channel goes to,
start/stop, readiness and the pool-wide metrics. One slot's life cycle is `twitch.slot`.
What to decide (which slot a channel goes to, when a failed channel is retried, how long
a hand-over overlaps and when the old connection is dropped) is `twitch.pool_policy`,
pure code tested with a fake clock. A slot gets everything it uses from the pool as one
explicit `SlotContext` — the sink, the shared room-id map, the join limiter, the open
pacer, a connection factory and the callbacks through which it reports back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping

import structlog
from pydantic import SecretStr

from twitch_ingestion.channels import normalise_logins
from twitch_ingestion.config import Settings
from twitch_ingestion.metrics import (
    CHANNELS_FAILED,
    CHANNELS_JOINED,
    CONNECTION_STATES,
    JOIN_QUEUE_LENGTH,
)
from twitch_ingestion.sources.irc.backoff import ExponentialBackoff
from twitch_ingestion.sources.irc.compiled import compiled_line_reader
from twitch_ingestion.sources.irc.connection import (
    TwitchAuthenticationError,
    TwitchConnection,
    TwitchError,
)
from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter
from twitch_ingestion.sources.irc.malformed_log import MalformedLineLog
from twitch_ingestion.sources.irc.open_pacer import OpenPacer
from twitch_ingestion.sources.irc.pool_policy import assign_channels
from twitch_ingestion.sources.irc.session import ConnectionStatus, MalformedLine
from twitch_ingestion.sources.irc.slot import (
    ChatSink,
    ConnectionFactory,
    PoolConnection,
    Slot,
    SlotChatHandler,
    SlotContext,
    SlotEventHandler,
    TwitchGaveUp,
)

__all__ = [
    "ChatSink",
    "ConnectionFactory",
    "PoolConnection",
    "SlotChatHandler",
    "SlotContext",
    "SlotEventHandler",
    "TwitchAuthenticationError",
    "TwitchError",
    "TwitchGaveUp",
    "TwitchSource",
]

log = structlog.get_logger(__name__)


class TwitchSource:
    """Reads chat of a set of channels from Twitch and hands it to a `ChatSink`.

    ```
    source = TwitchSource(settings, sink)
    task = asyncio.create_task(source.run())   # raises TwitchAuthenticationError/TwitchGaveUp
    ...
    await source.stop()                         # stop reading, close sockets
    ```
    """

    def __init__(
        self,
        settings: Settings,
        sink: ChatSink,
        *,
        channels: Iterable[str] | None = None,
        join_limiter: JoinRateLimiter | None = None,
        connection_factory: ConnectionFactory | None = None,
    ) -> None:
        """`join_limiter` may be shared with other sources of the same account;
        `connection_factory` replaces the real sockets (tests)."""
        self._settings = settings
        self._login = settings.twitch_login
        self._token = settings.twitch_oauth_token
        self._line_reader = compiled_line_reader(settings.hot_path)  # shared: stateless
        self._room_ids: dict[str, str] = {}
        self._malformed_log = MalformedLineLog()
        self._slot_context = SlotContext(
            sink=sink,
            room_ids=self._room_ids,
            limiter=join_limiter
            or JoinRateLimiter(settings.twitch_join_rate_limit, settings.twitch_join_rate_window_s),
            pacer=OpenPacer(settings.twitch_connection_open_interval_s),
            open_connection=connection_factory or self._make_connection,
            new_backoff=lambda: ExponentialBackoff(
                settings.twitch_reconnect_base_s,
                settings.twitch_reconnect_max_s,
                reset_after_s=settings.twitch_reconnect_reset_after_s,
                max_attempts=settings.twitch_max_reconnect_attempts,
            ),
            join_retry_interval_s=settings.twitch_join_retry_interval_s,
            join_timeout_s=settings.twitch_join_timeout_s,
            reconnect_overlap_s=settings.twitch_reconnect_overlap_s,
            malformed=lambda event, at_ms: self._malformed(sink, event, at_ms),
            fatal=self._fail,
            is_stopping=lambda: self._stopping,
            channels_changed=self._refresh_channel_metrics,
            status_changed=self._refresh_connection_metrics,
            join_queue_changed=self._refresh_join_queue,
        )
        self._slots: list[Slot] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._retiring_slots: list[Slot] = []
        self._next_slot_id = 1
        self._running = False
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._fatal: asyncio.Future[None] | None = None
        self._finished: asyncio.Event | None = None
        initial = settings.twitch_channel if channels is None else channels
        self._assign(normalise_logins(initial))

    def __repr__(self) -> str:
        return (
            f"TwitchSource(login={self._login!r}, channels={len(self.channels)}, "
            f"connections={len(self._slots)})"
        )

    # --- public API --------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """Every wanted channel, in the order they were added."""
        return [c for slot in self._slots for c in slot.wanted]

    @property
    def failed_channels(self) -> dict[str, str]:
        """Wanted channels Twitch refused or never confirmed → the reason (being retried)."""
        return {c: r for slot in self._slots for c, r in slot.failed.items()}

    @property
    def room_ids(self) -> Mapping[str, str]:
        return self._room_ids

    def joined_channels(self) -> frozenset[str]:
        """Wanted channels whose JOIN Twitch confirmed on a connection that is still live.

        During a RECONNECT hand-over a channel counts once either socket has it; after
        a disconnect its channels drop out until the new connection joins them again.
        """
        return frozenset().union(*(slot.joined() for slot in self._slots))

    async def run(self) -> None:
        """Connect, join and deliver chat until `stop()`.

        Raises `TwitchAuthenticationError` (credentials rejected, no retry),
        `TwitchGaveUp` (too many failed reconnects) or whatever the sink raised.
        """
        if self._running:
            raise RuntimeError("TwitchSource.run() is already running")
        self._running = True
        loop = asyncio.get_running_loop()
        self._stop_requested = self._stop_requested or asyncio.Event()
        self._fatal = loop.create_future()
        self._finished = asyncio.Event()
        log.info(
            "twitch source starting",
            login=self._login,
            anonymous=self._settings.is_anonymous,
            channels=len(self.channels),
            connections=len(self._slots),
            host=f"{self._settings.twitch_irc_host}:{self._settings.twitch_irc_port}",
        )
        for slot in self._slots:
            slot.start()
        self._refresh_connection_metrics()
        stop_wait = asyncio.create_task(self._wait_stop_requested())
        try:
            await asyncio.wait([self._fatal, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            self._stopping = True
            await asyncio.gather(
                *(slot.stop() for slot in self._slots), *self._retiring, return_exceptions=True
            )
            self._refresh_connection_metrics()
            self._refresh_channel_metrics()
            self._finished.set()
            log.info("twitch source stopped")
        if self._fatal.done() and not self._fatal.cancelled():
            self._fatal.result()

    async def _wait_stop_requested(self) -> None:
        assert self._stop_requested is not None
        await self._stop_requested.wait()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop reading and close every socket; returns once `run()` has wound down.

        A chunk being delivered when stop() is called is still delivered. If the sink
        is still blocked after `grace_s` seconds (None: wait as long as it takes), those
        chunks are abandoned — cancelled inside `deliver()` — so shutdown can go on.
        """
        if self._stop_requested is None:
            self._stop_requested = asyncio.Event()
        self._stop_requested.set()
        finished = self._finished
        if finished is None:
            return
        if grace_s is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), grace_s)
            if not finished.is_set():
                log.warning(
                    "twitch source abandoning chunks at shutdown",
                    grace_s=grace_s,
                    reason="sink still blocked",
                )
                for slot in [*self._slots, *self._retiring_slots]:
                    slot.cancel_deliveries()
        await finished.wait()

    def add_channels(self, channels: Iterable[str]) -> None:
        """Start reading more channels (joined through the limiter when running)."""
        wanted = set(self.channels)
        new = [c for c in normalise_logins(channels) if c not in wanted]
        if new:
            log.info("twitch channels added", count=len(new))
            self._assign(new)

    def remove_channels(self, channels: Iterable[str]) -> None:
        """Stop reading channels (PART them); a slot left empty closes its connection."""
        gone = set(normalise_logins(channels))
        if not gone:
            return
        for slot in list(self._slots):
            mine = [c for c in slot.wanted if c in gone]
            if not mine:
                continue
            slot.remove(mine)
            if not slot.wanted:
                self._slots.remove(slot)
                if self._running:
                    retiring = asyncio.get_running_loop().create_task(slot.stop())
                    self._retiring.add(retiring)
                    self._retiring_slots.append(slot)
                    retiring.add_done_callback(self._retire_done(slot))
        log.info("twitch channels removed", count=len(gone))
        self._refresh_connection_metrics()
        self._refresh_channel_metrics()

    def use_token(self, token: SecretStr) -> None:
        """A refreshed TWITCH_OAUTH_TOKEN (`sources/token_guard.py`): every connection
        opened from now on (reconnects, new slots) logs in with it."""
        self._token = token

    def is_ready(self) -> bool:
        """Every connection logged in and every wanted channel joined or known-failed."""
        return self._running and not self._stopping and all(s.is_ready() for s in self._slots)

    def connection_statuses(self) -> dict[str, ConnectionStatus]:
        return {slot.name: slot.status for slot in self._slots}

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot for /readyz and logs (no secrets)."""
        failed = self.failed_channels
        return {
            "ready": self.is_ready(),
            "channels": len(self.channels),
            "channels_joined": sum(slot.joined_count() for slot in self._slots),
            "channels_failed": failed,
            "join_queue": self._join_queue_length(),
            "connections": [slot.describe() for slot in self._slots],
        }

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """`(ready, details)` in the shape `HealthServer` expects."""
        return self.is_ready(), self.status()

    # --- internals -----------------------------------------------------------------------

    def _assign(self, channels: list[str]) -> None:
        open_slots = [(slot.id, len(slot.wanted)) for slot in self._slots if not slot.stopped]
        plan = assign_channels(open_slots, channels, self._settings.twitch_channels_per_connection)
        for slot in self._slots:
            if slot.id in plan.into_existing:
                slot.add(plan.into_existing[slot.id])
        for group in plan.new_slots:
            slot = Slot(self._slot_context, self._next_slot_id, group)
            self._next_slot_id += 1
            self._slots.append(slot)
            if self._running and not self._stopping:
                slot.start()
        self._refresh_connection_metrics()

    def _retire_done(self, slot: Slot) -> Callable[[asyncio.Task[None]], None]:
        def forget(task: asyncio.Task[None]) -> None:
            self._retiring.discard(task)
            self._retiring_slots.remove(slot)

        return forget

    def _make_connection(
        self, name: str, on_chat: SlotChatHandler, on_event: SlotEventHandler
    ) -> TwitchConnection:
        settings = self._settings
        token = self._token.get_secret_value() if self._token is not None else None
        return TwitchConnection(
            name=name,
            host=settings.twitch_irc_host,
            port=settings.twitch_irc_port,
            tls=settings.twitch_irc_tls,
            login=self._login,
            token=token,
            on_chat=on_chat,
            on_event=on_event,
            connect_timeout_s=settings.twitch_connect_timeout_s,
            login_timeout_s=settings.twitch_login_timeout_s,
            ping_interval_s=settings.twitch_ping_interval_s,
            pong_timeout_s=settings.twitch_pong_timeout_s,
            join_timeout_s=settings.twitch_join_timeout_s,
            read_buffer_bytes=settings.twitch_read_buffer_bytes,
            line_reader=self._line_reader,
        )

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is not None and not self._fatal.done():
            if isinstance(exc, TwitchAuthenticationError):
                log.error(
                    "twitch rejected the credentials", login=self._login, notice=exc.notice_text
                )
            elif isinstance(exc, TwitchGaveUp):
                log.error("twitch source gave up", error=str(exc))
            self._fatal.set_exception(exc)

    def _malformed(self, sink: ChatSink, event: MalformedLine, received_at_ms: int) -> None:
        self._malformed_log.record(event.raw, event.reason, time.monotonic())
        sink.dead_letter(event.raw, event.reason, received_at_ms)

    def _join_queue_length(self) -> int:
        return sum(slot.join_queue_length() for slot in self._slots)

    def _refresh_join_queue(self) -> None:
        JOIN_QUEUE_LENGTH.set(self._join_queue_length())

    def _refresh_channel_metrics(self) -> None:
        CHANNELS_JOINED.set(sum(slot.joined_count() for slot in self._slots))
        CHANNELS_FAILED.set(sum(len(slot.failed) for slot in self._slots))

    def _refresh_connection_metrics(self) -> None:
        counts = dict.fromkeys(ConnectionStatus, 0)
        for slot in self._slots:
            counts[slot.status] += 1
        for status, count in counts.items():
            CONNECTION_STATES.labels(state=status.value).set(count)
