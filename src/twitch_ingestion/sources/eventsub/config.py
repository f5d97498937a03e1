"""The EventSub source's config: what `EventSubClient` needs, checked once when it is made.

`component_configs.eventsub_config` derives it from `Settings`; tests build one directly
with shortened tunables. A missing or malformed value raises `SettingsError`, which names
the environment variable to fix (the service's exit code 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twitch_ingestion.sources.eventsub.helix import (
    CONNECTIONS_PER_USER,
    SUBSCRIPTIONS_PER_CONNECTION,
)
from twitch_ingestion.sources.eventsub.http_messages import strip_oauth_prefix
from twitch_ingestion.sources.eventsub.reconciler import CHECK_INTERVAL_S, RECHECK_INTERVAL_S
from twitch_ingestion.sources.eventsub.session import (
    DEFAULT_KEEPALIVE_MARGIN_S,
    DEFAULT_WELCOME_TIMEOUT_S,
)
from twitch_ingestion.sources.eventsub.tokens import (
    REFRESH_MARGIN_S,
    REFRESH_RETRY_S,
    VALIDATE_INTERVAL_S,
)

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_AUTH_URL",
    "DEFAULT_EVENTSUB_URL",
    "EventSubConfig",
    "SettingsError",
]

DEFAULT_EVENTSUB_URL = "wss://eventsub.wss.twitch.tv/ws"
DEFAULT_API_URL = "https://api.twitch.tv/helix"
DEFAULT_AUTH_URL = "https://id.twitch.tv/oauth2"


class SettingsError(ValueError):
    """A setting is missing or malformed; `variable` names it, the message says how."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True)
class EventSubConfig:
    """What the EventSub source needs, with the environment names of issue 11.

    Secrets are excluded from `repr`. The tunables below the URLs have Twitch's values
    by default; tests shorten them instead of waiting real-world durations.
    """

    client_id: str
    """TWITCH_CLIENT_ID: the app the token was issued to."""
    oauth_token: str = field(repr=False)
    """TWITCH_OAUTH_TOKEN: a user access token with `user:read:chat`, `oauth:` or not."""
    channels: tuple[str, ...] = ()
    """Channel logins (TWITCH_CHANNEL, or the fleet's assignment)."""
    client_secret: str = field(default="", repr=False)
    """TWITCH_CLIENT_SECRET: with TWITCH_REFRESH_TOKEN, lets the token be refreshed."""
    refresh_token: str = field(default="", repr=False)
    """TWITCH_REFRESH_TOKEN."""
    public_client: bool = False
    """TWITCH_CLIENT_TYPE=public: the app has no secret; the refresh token alone refreshes."""
    eventsub_url: str = DEFAULT_EVENTSUB_URL
    """TWITCH_EVENTSUB_URL (wss://, or ws:// for local tests)."""
    api_url: str = DEFAULT_API_URL
    """TWITCH_API_URL (https://, or http:// for local tests)."""
    auth_url: str = DEFAULT_AUTH_URL
    """TWITCH_AUTH_URL (https://, or http:// for local tests)."""
    keepalive_timeout_s: int | None = None
    """Asked for with `?keepalive_timeout_seconds=` (Twitch: 10-600); None: Twitch's 10."""
    keepalive_margin_s: float = DEFAULT_KEEPALIVE_MARGIN_S
    welcome_timeout_s: float = DEFAULT_WELCOME_TIMEOUT_S
    validate_interval_s: float = VALIDATE_INTERVAL_S
    refresh_margin_s: float = REFRESH_MARGIN_S
    refresh_retry_s: float = REFRESH_RETRY_S
    backoff_base_s: float = 1.0
    """Reconnects and temporary subscription failures back off from this…"""
    backoff_max_s: float = 60.0
    """…doubling up to this (TWITCH_RECONNECT_BASE_S / TWITCH_RECONNECT_MAX_S)."""
    http_timeout_s: float = 10.0
    subscribe_concurrency: int = 10
    """Helix subscription calls in flight at once per connection: 300 calls must fit in
    the 10 s after a welcome, and one Helix round trip is ~100 ms from Europe."""
    max_unproductive_sessions: int | None = None
    """TWITCH_MAX_RECONNECT_ATTEMPTS: sessions in a row that may end before a
    subscription before the source gives up; None: never give up."""
    recheck_interval_s: float = RECHECK_INTERVAL_S
    """TWITCH_JOIN_RETRY_INTERVAL_S: how often a permanently refused channel is retried."""
    check_interval_s: float = CHECK_INTERVAL_S
    """TWITCH_EVENTSUB_CHECK_INTERVAL_S: how often the live subscriptions are listed."""
    max_connections: int = CONNECTIONS_PER_USER
    subscriptions_per_connection: int = SUBSCRIPTIONS_PER_CONNECTION
    dynamic_channels: bool = False
    """True in a fleet (CHANNEL_SOURCE=kafka): channels come and go at run time through
    `add_channels`/`remove_channels`, and an empty channel list is not a failure."""

    def __post_init__(self) -> None:
        if not self.client_id.strip():
            raise SettingsError("TWITCH_CLIENT_ID", "TWITCH_CLIENT_ID is required for EventSub")
        token = strip_oauth_prefix(self.oauth_token)
        if not token or any(char.isspace() for char in token):
            raise SettingsError(
                "TWITCH_OAUTH_TOKEN",
                "TWITCH_OAUTH_TOKEN is empty or malformed; set a user access token with"
                " the scope user:read:chat",
            )
        if self.client_secret and not self.refresh_token:
            raise SettingsError(
                "TWITCH_REFRESH_TOKEN",
                "TWITCH_REFRESH_TOKEN is needed too: refreshing the token takes both"
                " TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN",
            )
        if self.refresh_token and not self.client_secret and not self.public_client:
            raise SettingsError(
                "TWITCH_CLIENT_SECRET",
                "TWITCH_CLIENT_SECRET is needed too: refreshing the token takes both"
                " TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN (or TWITCH_CLIENT_TYPE=public"
                " for an app without a secret)",
            )
        if self.validate_interval_s > VALIDATE_INTERVAL_S:
            raise SettingsError(
                "TWITCH_TOKEN_VALIDATE_INTERVAL_S",
                f"TWITCH_TOKEN_VALIDATE_INTERVAL_S is {self.validate_interval_s:g}; Twitch"
                f" requires validating tokens at least hourly (at most {VALIDATE_INTERVAL_S:g})",
            )
        for variable, value, schemes in (
            ("TWITCH_EVENTSUB_URL", self.eventsub_url, ("wss://", "ws://")),
            ("TWITCH_API_URL", self.api_url, ("https://", "http://")),
            ("TWITCH_AUTH_URL", self.auth_url, ("https://", "http://")),
        ):
            if not value.lower().startswith(schemes) or len(value) <= len(schemes[0]):
                raise SettingsError(
                    variable, f"{variable} must be a {' or '.join(schemes)} URL, not {value!r}"
                )
