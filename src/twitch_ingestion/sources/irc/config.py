"""The IRC source's config: what the pool and its connections read of the environment.

`component_configs.irc_source_config` derives it from `Settings`. Each field keeps the
name of its setting (`twitch_irc_host` is TWITCH_IRC_HOST), so the pool reads as it did
when it took `Settings`, and the field names the variable to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from twitch_ingestion.native import HotPath

__all__ = ["IrcSourceConfig"]


@dataclass(frozen=True)
class IrcSourceConfig:
    """TWITCH_* settings of the IRC source, and HOT_PATH (its line reader, its encoder)."""

    twitch_login: str
    """The IRC nick: TWITCH_USERNAME, or the `justinfan` guest of an anonymous login."""
    twitch_oauth_token: SecretStr | None = field(repr=False)
    twitch_channel: tuple[str, ...]
    hot_path: HotPath
    twitch_irc_host: str
    twitch_irc_port: int
    twitch_irc_tls: bool
    twitch_connect_timeout_s: float
    twitch_login_timeout_s: float
    twitch_reconnect_base_s: float
    twitch_reconnect_max_s: float
    twitch_reconnect_reset_after_s: float
    twitch_max_reconnect_attempts: int | None
    twitch_ping_interval_s: float
    twitch_pong_timeout_s: float
    twitch_join_timeout_s: float
    twitch_join_retry_interval_s: float
    twitch_join_rate_limit: int
    twitch_join_rate_window_s: float
    twitch_channels_per_connection: int
    twitch_connection_open_interval_s: float
    twitch_reconnect_overlap_s: float
    twitch_read_buffer_bytes: int

    @property
    def is_anonymous(self) -> bool:
        return self.twitch_oauth_token is None
