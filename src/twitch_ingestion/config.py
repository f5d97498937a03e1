"""Settings from the environment and `.env`, validated once at startup.

Every tunable lives here with its default, type and unit, and the README table lists
them all. Secrets are `SecretStr`, so `repr()`/logging of a `Settings` never shows them,
and validation errors are re-rendered without the offending input (pydantic would
otherwise echo a bad token back into the terminal).
"""

from __future__ import annotations

import random
import re
import socket
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from twitch_ingestion.channels import LOGIN_RULE, InvalidLogin, normalise_login

__all__ = [
    "BufferFullPolicy",
    "BufferMode",
    "ChannelSource",
    "ConfigError",
    "LogFormat",
    "Settings",
    "load_settings",
]

_ANONYMOUS_PREFIX = "justinfan"
# Twitch tokens are ASCII letters and digits; anything else is a paste error (quotes,
# whitespace, a second "oauth:") that Twitch would answer with "Improperly formatted auth".
_TOKEN_BODY = re.compile(r"^[A-Za-z0-9_-]+$")
# Kafka accepts these characters in a group.instance.id (as in topic names), up to 249.
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class BufferMode(StrEnum):
    DISK = "disk"
    MEMORY = "memory"


class BufferFullPolicy(StrEnum):
    BLOCK = "block"
    DROP_NEWEST = "drop_newest"


class ChannelSource(StrEnum):
    """Where the channels to read come from: TWITCH_CHANNEL, or the fleet's control topic."""

    ENV = "env"
    KAFKA = "kafka"


class LogFormat(StrEnum):
    AUTO = "auto"
    CONSOLE = "console"
    JSON = "json"


class ConfigError(Exception):
    """Invalid configuration: one message per problem, naming the variable, no secrets."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class Settings(BaseSettings):
    """The service's configuration; field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        hide_input_in_errors=True,
    )

    # --- Twitch -------------------------------------------------------------------
    twitch_channel: Annotated[list[str], NoDecode] = Field(default_factory=list)
    twitch_username: str | None = None
    twitch_oauth_token: SecretStr | None = None
    twitch_irc_host: str = "irc.chat.twitch.tv"
    twitch_irc_port: int = Field(default=6697, ge=1, le=65535)
    twitch_irc_tls: bool = True
    twitch_connect_timeout_s: float = Field(default=10.0, gt=0)
    twitch_login_timeout_s: float = Field(default=15.0, gt=0)
    # The seed's schedule: 1 s, 2 s, 4 s, 8 s … capped at 60 s.
    twitch_reconnect_base_s: float = Field(default=1.0, gt=0)
    twitch_reconnect_max_s: float = Field(default=60.0, gt=0)
    twitch_reconnect_reset_after_s: float = Field(default=60.0, ge=0)
    twitch_max_reconnect_attempts: int | None = Field(default=None, ge=1)
    # Twitch pings every ~5 minutes; a silent socket for 30 s earns our own PING.
    twitch_ping_interval_s: float = Field(default=30.0, gt=0)
    twitch_pong_timeout_s: float = Field(default=5.0, gt=0)
    twitch_join_timeout_s: float = Field(default=10.0, gt=0)
    twitch_join_retry_interval_s: float = Field(default=3600.0, gt=0)
    # Twitch's documented limit for ordinary accounts: 20 JOINs per 10 s.
    twitch_join_rate_limit: int = Field(default=20, ge=1)
    twitch_join_rate_window_s: float = Field(default=10.0, gt=0)
    twitch_channels_per_connection: int = Field(default=50, ge=1)
    twitch_connection_open_interval_s: float = Field(default=2.0, ge=0)
    twitch_reconnect_overlap_s: float = Field(default=5.0, ge=0)
    twitch_read_buffer_bytes: int = Field(default=256 * 1024, ge=4096)

    # --- Kafka --------------------------------------------------------------------
    kafka_brokers: str = "localhost:9092"
    kafka_topic_chat_messages: str = "twitch-chat-messages"
    kafka_topic_chat_events: str = "twitch-chat-events"
    kafka_topic_raw: str | None = None
    kafka_topic_dlq: str | None = "twitch-chat-messages.dlq"
    kafka_client_id: str = "twitch-ingestion-service"
    kafka_create_topics: bool = True
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_topic_replication_factor: int = Field(default=-1)
    # The seed's producer settings, set explicitly.
    kafka_acks: str = "all"
    kafka_enable_idempotence: bool = True
    kafka_retries: int = Field(default=5, ge=0)
    kafka_batch_size: int = Field(default=32768, ge=1)
    kafka_linger_ms: int = Field(default=10, ge=0)
    kafka_compression: str = "lz4"
    kafka_message_timeout_ms: int = Field(default=120_000, ge=1)
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1)
    kafka_reconnect_backoff_max_ms: int = Field(default=1000, ge=1)
    kafka_retry_backoff_ms: int = Field(default=100, ge=1)
    kafka_retry_backoff_max_ms: int = Field(default=1000, ge=1)
    kafka_queue_max_messages: int = Field(default=500_000, ge=1)
    kafka_queue_max_kbytes: int = Field(default=1_048_576, ge=1)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None

    # --- Fleet: several instances sharing the channels of a control topic (docs/scaling.md)
    channel_source: ChannelSource = ChannelSource.ENV
    # Static membership: an instance restarted within the session timeout keeps its channels.
    instance_id: str = Field(default_factory=lambda: _default_instance_id())
    kafka_topic_channels: str = "twitch-channels"
    kafka_topic_instances: str = "twitch-ingestion-instances"
    kafka_channels_group: str = "twitch-ingestion"
    # The unit of hand-over: 64 lets up to 64 instances share the work evenly enough.
    kafka_channels_partitions: int = Field(default=64, ge=1)
    # The broker only accepts group.min/max.session.timeout.ms (6 s … 30 min by default).
    kafka_channels_session_timeout_ms: int = Field(default=15_000, ge=1000)
    # A released channel is read until its new owner reports it joined, at most this long.
    kafka_channels_handover_timeout_s: float = Field(default=600.0, ge=0)

    # --- Durable buffer -----------------------------------------------------------
    buffer_mode: BufferMode = BufferMode.DISK
    buffer_dir: Path = Path("data/buffer")
    buffer_fsync_ms: int = Field(default=50, ge=0)
    buffer_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    buffer_segment_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    buffer_full_policy: BufferFullPolicy = BufferFullPolicy.BLOCK

    # --- Service ------------------------------------------------------------------
    log_level: str = "info"
    log_format: LogFormat = LogFormat.AUTO
    health_port: int = Field(default=8080, ge=0, le=65535)
    health_host: str = "0.0.0.0"
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    stats_log_interval_s: float = Field(default=30.0, gt=0)

    @field_validator("twitch_channel", mode="before")
    @classmethod
    def _split_channels(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(",")) if part]
        return value

    @field_validator("twitch_channel")
    @classmethod
    def _normalise_channels(cls, channels: list[str]) -> list[str]:
        normalised: list[str] = []
        for channel in channels:
            login = normalise_login(channel)
            if isinstance(login, InvalidLogin):
                raise ValueError(
                    f"{channel!r} is not a Twitch channel login ({LOGIN_RULE}): {login.reason}"
                )
            if login not in normalised:
                normalised.append(login)
        return normalised

    @field_validator("instance_id")
    @classmethod
    def _valid_instance_id(cls, value: str) -> str:
        if not _INSTANCE_ID.match(value):
            raise ValueError(
                "must be 1-249 letters, digits, '.', '_' or '-' (it becomes the Kafka "
                "group.instance.id and client.id)"
            )
        return value

    @field_validator("twitch_username", "kafka_topic_raw", "kafka_topic_dlq", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("twitch_oauth_token", "kafka_sasl_password", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in {"debug", "info", "warning", "warn", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return "warning" if level == "warn" else level

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        token = self.twitch_oauth_token
        if (self.twitch_username is None) != (token is None):
            missing = "TWITCH_OAUTH_TOKEN" if token is None else "TWITCH_USERNAME"
            raise ValueError(
                f"{missing} is not set: set both TWITCH_USERNAME and TWITCH_OAUTH_TOKEN "
                "to log in, or neither to read chat anonymously"
            )
        if token is not None:
            value = token.get_secret_value()
            if not value.startswith("oauth:"):
                raise ValueError(
                    "TWITCH_OAUTH_TOKEN must start with 'oauth:' (e.g. oauth:abc123…); "
                    "prefix the token you were given with 'oauth:'"
                )
            if not _TOKEN_BODY.match(value.removeprefix("oauth:")):
                raise ValueError(
                    "TWITCH_OAUTH_TOKEN has nothing usable after 'oauth:' (it must be the "
                    "token's letters and digits, with no spaces or quotes)"
                )
        if self.twitch_reconnect_max_s < self.twitch_reconnect_base_s:
            raise ValueError("TWITCH_RECONNECT_MAX_S must be >= TWITCH_RECONNECT_BASE_S")
        return self

    @property
    def is_anonymous(self) -> bool:
        return self.twitch_oauth_token is None

    @cached_property
    def twitch_login(self) -> str:
        """The IRC nick: the configured username, or a `justinfan` guest for read-only."""
        if self.twitch_username is not None:
            return self.twitch_username.lower()
        return f"{_ANONYMOUS_PREFIX}{_anonymous_suffix()}"


def _default_instance_id() -> str:
    # Stable across restarts wherever the host name is (a StatefulSet pod, a VM), which is
    # what static membership needs; several instances on one host must set INSTANCE_ID.
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:249]
    return name or "twitch-ingestion"


def _anonymous_suffix() -> int:
    # Not a secret: Twitch only wants a number that makes the guest nick unique.
    return random.randint(10_000, 99_999_999)


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not location:
        return message
    return f"{location.upper()}: {message}"


def load_settings(*, require_channels: bool = True, **overrides: Any) -> Settings:
    """Load and validate settings; raise `ConfigError` with secret-free messages.

    `require_channels=False` serves commands that never join chat (`tail`); with
    CHANNEL_SOURCE=kafka the channels come from the control topic, not TWITCH_CHANNEL.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError([_describe(dict(err)) for err in exc.errors()]) from None
    from_env = settings.channel_source is ChannelSource.ENV
    if require_channels and from_env and not settings.twitch_channel:
        raise ConfigError(
            ["TWITCH_CHANNEL is not set: give one channel login or a comma-separated list"]
        )
    return settings
