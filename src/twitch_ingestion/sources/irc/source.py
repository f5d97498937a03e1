"""The IRC source as the service runs it: the connection pool, its hand-over to the
records stage, and the token guard — the service's `Source` for TWITCH_SOURCE=irc.

`TwitchSource` (`pool.py`) reads the channels and hands each read chunk to the
`IrcRecordEncoder` (`records.py`), which asks the shared `RecordBuilder` for the records
and hands them to the sink. With a TWITCH_OAUTH_TOKEN, `TokenGuard` validates (and
refreshes) it beside the pool, as a side task: its end ends the service like the pool's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog

from twitch_ingestion.fleet.fence import ChannelFence
from twitch_ingestion.fleet.standby import StandbyFence
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.records import RecordSink
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.sources.common.source import SideTask
from twitch_ingestion.sources.irc.channel_gate import ChannelGate
from twitch_ingestion.sources.irc.chunk_route import ChatSink
from twitch_ingestion.sources.irc.config import IrcSourceConfig
from twitch_ingestion.sources.irc.pool import TwitchSource
from twitch_ingestion.sources.irc.records import IrcRecordEncoder
from twitch_ingestion.sources.irc.routing import DEFAULT_PARSE_STATS
from twitch_ingestion.sources.token_guard import TokenGuard, TokenGuardConfig

__all__ = ["IrcSource"]

log = structlog.get_logger(__name__)


def _token_check_failed(**fields: Any) -> None:
    """The token guard ended with an unexpected error (a bug): one error line."""
    log.error("twitch token check failed", **fields)


class IrcSource:
    """Twitch IRC: the pool, its record encoder and its token guard."""

    def __init__(
        self,
        settings: IrcSourceConfig,
        records: RecordBuilder,
        sink: RecordSink,
        *,
        channels: Iterable[str] | None = None,
        token: TokenGuardConfig | None,
    ) -> None:
        """`channels` None: TWITCH_CHANNEL; a list (the fleet's, usually empty at first):
        the starting set, changed later with `add_channels`/`remove_channels`, and the
        chunks pass a `ChannelGate` first, which fences channels moved between instances.
        `token`: the guard's config when TWITCH_OAUTH_TOKEN is set (none: anonymous, no
        guard)."""
        self.encoder = IrcRecordEncoder.for_hot_path(settings.hot_path, sink, records)
        self.gate = ChannelGate(self.encoder) if channels is not None else None
        chat_sink: ChatSink = self.gate if self.gate is not None else self.encoder
        self.pool = TwitchSource(settings, chat_sink, channels=channels)
        self.token_guard = (
            None if token is None else TokenGuard(token, on_refreshed=self.pool.use_token)
        )
        self.endpoint = (
            f"{settings.twitch_irc_host}:{settings.twitch_irc_port}",
            settings.twitch_irc_tls,
        )
        """Where it reads and whether over TLS (for the service's start log)."""

    async def run(self) -> None:
        """Read until `stop()`; raises `TwitchAuthenticationError` or `TwitchGaveUp`.

        With a token, the pool logs in only after the guard's first check (its side task,
        started beside this): a dead token with a refresh token is refreshed first."""
        if self.token_guard is not None:
            await self.token_guard.first_check_over.wait()
        await self.pool.run()

    async def stop(self, grace_s: float | None = None) -> None:
        await self.pool.stop(grace_s)

    def side_tasks(self) -> Sequence[SideTask]:
        """The token guard, with a token (it raises `TokenRejected` when Twitch says no)."""
        guard = self.token_guard
        if guard is None:
            return ()
        return (SideTask("twitch-token", guard.run, _token_check_failed),)

    def is_ready(self) -> bool:
        return self.pool.is_ready()

    def lines_read(self) -> float:
        """IRC lines read so far, every connection (the service's throughput log)."""
        return REGISTRY.get_sample_value("twitch_ingestion_irc_lines_received_total") or 0.0

    def readiness_details(self) -> dict[str, object]:
        """Nothing beyond `failed_channels`, which /readyz shows for every source."""
        return {}

    def token_expiry(self, now: float) -> tuple[float, bool] | None:
        keeper = None if self.token_guard is None else self.token_guard.keeper
        return None if keeper is None else keeper.expiry(now)

    def parse_stats(self) -> Mapping[str, float]:
        """The parsers' data-quality counters (`ParseStats`): emote ranges skipped …"""
        return {
            f"twitch_ingestion_irc_{name}": value
            for name, value in DEFAULT_PARSE_STATS.as_dict().items()
        }

    # --- the fleet's ChannelReader ------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        return self.pool.channels

    @property
    def failed_channels(self) -> dict[str, str]:
        return self.pool.failed_channels

    def joined_channels(self) -> frozenset[str]:
        return self.pool.joined_channels()

    def add_channels(self, channels: Iterable[str]) -> None:
        self.pool.add_channels(channels)

    def remove_channels(self, channels: Iterable[str]) -> None:
        self.pool.remove_channels(channels)

    def status(self) -> dict[str, object]:
        return self.pool.status()

    @property
    def fence(self) -> ChannelFence | None:
        return self.gate

    @property
    def standby_fence(self) -> StandbyFence | None:
        """The gate also stands by for channels (KAFKA_CHANNELS_REPLICAS=2)."""
        return self.gate
