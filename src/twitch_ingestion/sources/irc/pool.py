"""`TwitchSource`: the pool of Twitch connections the service reads chat from.

Channels are spread over *slots* of at most `twitch_channels_per_connection` channels.
Each slot keeps one live `TwitchConnection` for its channels:

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

Every connection reads on its own task and awaits the sink per chunk, so a flooded
channel slows only its own connection. Metrics are updated per chunk or per state
change, never per line; logs are per state change, never per message.

Layout: this module is the public API and the run/stop life cycle. Every change to the
pool is a command (`pool_commands`) handled by its one owner (`pool_owner.PoolOwner`);
slots are plain data (`slot`); what to decide is `pool_policy` (pure, fake-clock
tested); the per-chunk path to the sink is `chunk_route`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping

import structlog
from pydantic import SecretStr

from twitch_ingestion.channels import normalise_logins
from twitch_ingestion.sources.common.backoff import ExponentialBackoff
from twitch_ingestion.sources.irc.compiled import compiled_line_reader
from twitch_ingestion.sources.irc.config import IrcSourceConfig
from twitch_ingestion.sources.irc.connection import (
    TwitchAuthenticationError,
    TwitchConnection,
    TwitchError,
)
from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter
from twitch_ingestion.sources.irc.open_pacer import OpenPacer
from twitch_ingestion.sources.irc.pool_commands import JoinChannels, PartChannels, UseToken
from twitch_ingestion.sources.irc.pool_owner import PoolOwner
from twitch_ingestion.sources.irc.session import ConnectionStatus
from twitch_ingestion.sources.irc.slot import (
    ChatSink,
    ConnectionFactory,
    PoolConnection,
    SlotChatHandler,
    SlotEventHandler,
    TwitchGaveUp,
)

__all__ = [
    "ChatSink",
    "ConnectionFactory",
    "PoolConnection",
    "SlotChatHandler",
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

    The methods that change the pool submit a command to its owner and return once it
    took effect; the queries read the owner's slots.
    """

    def __init__(
        self,
        settings: IrcSourceConfig,
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
        self._line_reader = compiled_line_reader(settings.hot_path)  # shared: stateless
        initial = settings.twitch_channel if channels is None else channels
        self._owner = PoolOwner(
            login=self._login,
            sink=sink,
            channels=normalise_logins(initial),
            per_connection=settings.twitch_channels_per_connection,
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
            token=settings.twitch_oauth_token,
        )
        self._running = False
        self._stop_requested: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"TwitchSource(login={self._login!r}, channels={len(self.channels)}, "
            f"connections={len(self._owner.slots)})"
        )

    # --- public API --------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """Every wanted channel, in the order they were added."""
        return [c for slot in self._owner.slots for c in slot.wanted]

    @property
    def failed_channels(self) -> dict[str, str]:
        """Wanted channels Twitch refused or never confirmed → the reason (being retried)."""
        return {c: r for slot in self._owner.slots for c, r in slot.failed.items()}

    @property
    def room_ids(self) -> Mapping[str, str]:
        """Channel login → room id, as learned from ROOMSTATE (a read-only view)."""
        return self._owner.room_ids

    def joined_channels(self) -> frozenset[str]:
        """Wanted channels whose JOIN Twitch confirmed on a connection that is still live.

        During a RECONNECT hand-over a channel counts once either socket has it; after
        a disconnect its channels drop out until the new connection joins them again.
        """
        return frozenset().union(*(slot.joined() for slot in self._owner.slots))

    async def run(self) -> None:
        """Connect, join and deliver chat until `stop()`.

        Raises `TwitchAuthenticationError` (credentials rejected, no retry),
        `TwitchGaveUp` (too many failed reconnects) or whatever the sink raised.
        """
        if self._running:
            raise RuntimeError("TwitchSource.run() is already running")
        self._running = True
        self._stop_requested = self._stop_requested or asyncio.Event()
        self._finished = asyncio.Event()
        log.info(
            "twitch source starting",
            login=self._login,
            anonymous=self._settings.is_anonymous,
            channels=len(self.channels),
            connections=len(self._owner.slots),
            host=f"{self._settings.twitch_irc_host}:{self._settings.twitch_irc_port}",
        )
        fatal = self._owner.start()
        stop_wait = asyncio.create_task(self._wait_stop_requested())
        try:
            await asyncio.wait([fatal, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            await self._owner.shutdown()
            self._finished.set()
            log.info("twitch source stopped")
        if fatal.done() and not fatal.cancelled():
            fatal.result()

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
                self._owner.cancel_deliveries()
        await finished.wait()

    def add_channels(self, channels: Iterable[str]) -> None:
        """Start reading more channels (joined through the limiter when running)."""
        self._owner.submit(JoinChannels(tuple(normalise_logins(channels))))

    def remove_channels(self, channels: Iterable[str]) -> None:
        """Stop reading channels (PART them); a slot left empty closes its connection."""
        gone = normalise_logins(channels)
        if gone:
            self._owner.submit(PartChannels(tuple(gone)))

    def use_token(self, token: SecretStr) -> None:
        """A refreshed TWITCH_OAUTH_TOKEN (`sources/token_guard.py`): every connection
        opened from now on (reconnects, new slots) logs in with it."""
        self._owner.submit(UseToken(token))

    def is_ready(self) -> bool:
        """Every connection logged in and every wanted channel joined or known-failed."""
        owner = self._owner
        return self._running and not owner.stopping and all(s.is_ready() for s in owner.slots)

    def connection_statuses(self) -> dict[str, ConnectionStatus]:
        return {slot.name: slot.status for slot in self._owner.slots}

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot for /readyz and logs (no secrets)."""
        slots = self._owner.slots
        return {
            "ready": self.is_ready(),
            "channels": len(self.channels),
            "channels_joined": sum(slot.joined_count() for slot in slots),
            "channels_failed": self.failed_channels,
            "join_queue": sum(slot.join_queue_length() for slot in slots),
            "connections": [slot.describe() for slot in slots],
        }

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """`(ready, details)` in the shape `HealthServer` expects."""
        return self.is_ready(), self.status()

    # --- internals -----------------------------------------------------------------------

    def _make_connection(
        self, name: str, on_chat: SlotChatHandler, on_event: SlotEventHandler
    ) -> TwitchConnection:
        settings = self._settings
        token = self._owner.token
        return TwitchConnection(
            name=name,
            host=settings.twitch_irc_host,
            port=settings.twitch_irc_port,
            tls=settings.twitch_irc_tls,
            login=self._login,
            token=token.get_secret_value() if token is not None else None,
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
