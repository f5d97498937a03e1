"""Driving the IRC pool (`TwitchSource`) in a test: its settings, a sink that records, a run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import Settings
from twitch_ingestion.simulator import NUMBERED_SENDER
from twitch_ingestion.sources.irc.config import IrcSourceConfig
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.pool import TwitchSource

TOKEN = "oauth:pooltestsecrettoken0123456789ab"


class RecordingChatSink:
    """A `ChatSink` keeping what the pool hands it: messages, dead letters, room ids."""

    def __init__(self) -> None:
        self.messages: list[IrcMessage] = []
        self.dead: list[tuple[bytes, str]] = []
        self.room_ids: dict[str, str] = {}

    async def deliver(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        self.messages.extend(messages)
        self.room_ids = dict(room_ids)

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        self.dead.append((raw, reason))

    def numbers(self, channel: str) -> list[int]:
        """Sequence numbers of the simulator's numbered stream received for `channel`."""
        out = []
        for message in self.messages:
            if message.command == "PRIVMSG" and message.nick == NUMBERED_SENDER:
                _, chan, n = (message.trailing or "").split()
                if chan == channel:
                    out.append(int(n))
        return out


def settings(port: int, channels: list[str], **overrides: Any) -> IrcSourceConfig:
    """The config of a pool against the simulator on `port`: short timeouts, fast retries."""
    values: dict[str, Any] = {
        "twitch_channel": channels,
        "twitch_username": "poolbot",
        "twitch_oauth_token": TOKEN,
        "twitch_irc_host": "127.0.0.1",
        "twitch_irc_port": port,
        "twitch_irc_tls": False,
        "twitch_connect_timeout_s": 0.5,
        "twitch_login_timeout_s": 0.5,
        "twitch_reconnect_base_s": 0.02,
        "twitch_reconnect_max_s": 0.1,
        "twitch_ping_interval_s": 5.0,
        "twitch_pong_timeout_s": 1.0,
        "twitch_join_timeout_s": 0.3,
        "twitch_join_retry_interval_s": 60.0,
        "twitch_join_rate_limit": 200,
        "twitch_join_rate_window_s": 0.5,
        "twitch_channels_per_connection": 50,
        "twitch_connection_open_interval_s": 0.0,
        "twitch_reconnect_overlap_s": 1.0,
    }
    values.update(overrides)
    # No .env file: a developer's local settings must not leak into a case.
    return configs.irc_source_config(Settings(_env_file=None, **values))  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running(source: TwitchSource) -> AsyncIterator[asyncio.Task[None]]:
    """`source.run()` as a task for the `async with`; stopped (and awaited) at its end."""
    task = asyncio.create_task(source.run())
    try:
        yield task
    finally:
        await source.stop()
        with contextlib.suppress(Exception):
            await task
