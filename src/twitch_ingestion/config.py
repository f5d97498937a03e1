"""Settings from the environment and `.env`, validated once at startup.

Every tunable lives here with its default, type and unit, and the README table lists
them all. Secrets are `SecretStr`, so `repr()`/logging of a `Settings` never shows them,
and validation errors are re-rendered without the offending input (pydantic would
otherwise echo a bad token back into the terminal).

Why one module of some 1,000 lines: it is the one place for every environment variable
(its default, type, unit and check), the rules across variables, and how the environment
and `.env` are read and refused, so adding or auditing a setting touches one file, read
beside the README table. The pieces are not separable: `Settings` runs the cross-field
rules, which read `Settings`. What each component gets is `component_configs.py`'s work.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import random
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from dotenv.parser import parse_stream
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The buffer's own enums, BUFFER_MODE and BUFFER_FULL_POLICY: Settings' fields, and
# re-exported (the buffer package defines them, so that it needs nothing from here).
from twitch_ingestion.buffer.config import BufferFullPolicy, BufferMode
from twitch_ingestion.channels import LOGIN_RULE, InvalidLogin, normalise_login
from twitch_ingestion.native import HotPath

__all__ = [
    "BufferFullPolicy",
    "BufferMode",
    "ChannelSource",
    "ClientType",
    "ConfigError",
    "ConfigProblem",
    "LogFormat",
    "Settings",
    "SourceKind",
    "UnknownSetting",
    "default_buffer_dir",
    "dotenv_lines",
    "load_settings",
    "topic_name_problem",
    "unknown_settings",
]

_ANONYMOUS_PREFIX = "justinfan"
# Twitch tokens are ASCII letters and digits; anything else is a paste error (quotes,
# whitespace, a second "oauth:") that Twitch would answer with "Improperly formatted auth".
_TOKEN_BODY = re.compile(r"^[A-Za-z0-9_-]+$")
# Kafka accepts these characters in a group.instance.id (as in topic names), up to 249.
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Kafka's rule for topic names (kafka.common.internals.Topic): the same set, and neither
# "." nor "..".
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# One bootstrap server: an optional `PROTOCOL://` (librdkafka accepts and ignores it), a
# host name, IPv4 address or bracketed IPv6 address, and a port. librdkafka would take
# a bare host (port 9092), but a missing port is more often a paste error than intent.
_BROKER = re.compile(
    r"^(?:[A-Za-z_]+://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})$"
)
# Twitch's endpoints (issue 11); ws:// and http:// are accepted for local testing.
_DEFAULT_EVENTSUB_URL = "wss://eventsub.wss.twitch.tv/ws"
_DEFAULT_API_URL = "https://api.twitch.tv/helix"
_DEFAULT_AUTH_URL = "https://id.twitch.tv/oauth2"
_URL_SCHEMES = {
    "twitch_eventsub_url": ("wss://", "ws://"),
    "twitch_api_url": ("https://", "http://"),
    "twitch_auth_url": ("https://", "http://"),
}
# What .env.example used to ship: copying it unchanged must not look like a login.
_PLACEHOLDER_USERNAMES = frozenset({"your_bot_username"})
_PLACEHOLDER_TOKENS = frozenset({"oauth:your_token_here"})

# The values librdkafka 2.x accepts, spelled as the README documents them.
_COMPRESSION_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
# acks=all and -1 are the same; librdkafka would take any number up to 1000, but the
# broker refuses anything but -1, 0 and 1 (INVALID_REQUIRED_ACKS) on every request.
_ACKS = ("all", "-1", "0", "1")
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
# Mechanisms that authenticate with KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD.
_SASL_PASSWORD_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# librdkafka's ranges (CONFIGURATION.md), so an out-of-range value is refused here,
# naming the variable, rather than by librdkafka at start-up.
_INT32_MAX = 2_147_483_647
_LIBRDKAFKA_MAX_LINGER_MS = 900_000
_LIBRDKAFKA_MAX_REQUEST_TIMEOUT_MS = 900_000
_LIBRDKAFKA_MAX_RETRY_BACKOFF_MS = 300_000
_LIBRDKAFKA_MAX_RECONNECT_BACKOFF_MS = 3_600_000
_LIBRDKAFKA_MAX_SESSION_TIMEOUT_MS = 3_600_000
# Kafka stores a replication factor as int16.
_MAX_REPLICATION_FACTOR = 32_767

# A variable whose name starts like this service's settings but names none of them is
# most likely a typo (KAFKA_BROKER for KAFKA_BROKERS): it would be ignored in silence.
SETTING_PREFIXES = (
    "TWITCH_",
    "KAFKA_",
    "BUFFER_",
    "HEALTH_",
    "LOG_",
    "CHANNEL_",
    "INSTANCE_",
    "HOT_PATH",
)
# Variables with those prefixes that other programs read legitimately: scripts/kafka-local
# (KAFKA_LOCAL_*) and Apache Kafka's own launch scripts (bin/kafka-run-class.sh).
_FOREIGN_PREFIXES = ("KAFKA_LOCAL_",)
_FOREIGN_NAMES = frozenset(
    {
        "KAFKA_HOME",
        "KAFKA_OPTS",
        "KAFKA_HEAP_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_DEBUG",
        "KAFKA_CLUSTER_ID",
    }
)
# difflib's ratio below which a known name is too different to suggest.
_SUGGESTION_CUTOFF = 0.6

# While `load_settings` builds a Settings, it runs the cross-field checks itself (so that
# they run even when a field failed); a Settings built directly runs them in its model
# validator.
_CROSS_CHECKS_DEFERRED: ContextVar[bool] = ContextVar("cross_checks_deferred", default=False)


class ClientType(StrEnum):
    """The Twitch app's client type (dev.twitch.tv/console): a confidential app has a
    secret; a public one (device code flow) has none and refreshes without it."""

    CONFIDENTIAL = "confidential"
    PUBLIC = "public"


class SourceKind(StrEnum):
    """How chat is read (TWITCH_SOURCE): Twitch IRC, or an EventSub WebSocket."""

    IRC = "irc"
    EVENTSUB = "eventsub"


class ChannelSource(StrEnum):
    """Where the channels to read come from: TWITCH_CHANNEL, or the fleet's control topic."""

    ENV = "env"
    KAFKA = "kafka"


class LogFormat(StrEnum):
    AUTO = "auto"
    CONSOLE = "console"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the settings: a one-line message and the variables involved.

    `variables` lets `load_settings` drop a cross-field complaint about a variable that
    already failed on its own (its value was replaced by the default to run the check).
    """

    variables: tuple[str, ...]
    message: str


# A check run on loaded settings (the librdkafka check in kafka/producer_config.py).
SettingsCheck = Callable[["Settings"], Iterable[ConfigProblem]]


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
    # First: the token's validator reads it (EventSub takes a token without `oauth:`).
    twitch_source: SourceKind = SourceKind.IRC
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
    # --- Twitch API, tokens and EventSub (issue 11) -------------------------------
    twitch_client_id: str | None = None
    twitch_client_secret: SecretStr | None = None
    twitch_refresh_token: SecretStr | None = None
    # `public`: an app without a secret (device code flow) refreshes with the refresh
    # token alone, as Twitch allows for public clients.
    twitch_client_type: ClientType = ClientType.CONFIDENTIAL
    twitch_eventsub_url: str = _DEFAULT_EVENTSUB_URL
    twitch_api_url: str = _DEFAULT_API_URL
    twitch_auth_url: str = _DEFAULT_AUTH_URL
    # Asked of Twitch with `?keepalive_timeout_seconds=` (Twitch takes 10-600); unset:
    # Twitch's default of 10 s. Below 10 only the simulator accepts it (tests).
    twitch_eventsub_keepalive_s: int | None = Field(default=None, ge=1, le=600)
    # Twitch requires apps to validate their tokens hourly: an hour at most.
    twitch_token_validate_interval_s: float = Field(default=3600.0, gt=0)
    # Refresh this long before the token expires (with TWITCH_REFRESH_TOKEN).
    twitch_token_refresh_margin_s: float = Field(default=600.0, ge=0)
    # The live EventSub subscriptions are listed this often, to catch any that vanished.
    twitch_eventsub_check_interval_s: float = Field(default=300.0, gt=0)
    # Notifications read and held while the sink is busy (Kafka slow or down), so that
    # the socket is read on and Twitch's pings answered; past this, BUFFER_FULL_POLICY.
    twitch_eventsub_max_held_records: int = Field(default=50_000, ge=1)

    # --- Kafka --------------------------------------------------------------------
    kafka_brokers: str = "localhost:9092"
    kafka_topic_chat_messages: str = "twitch-chat-messages"
    kafka_topic_chat_events: str = "twitch-chat-events"
    kafka_topic_raw: str | None = None
    kafka_topic_dlq: str | None = "twitch-chat-messages.dlq"
    kafka_client_id: str = "twitch-ingestion-service"
    kafka_create_topics: bool = True
    kafka_topic_partitions: int = Field(default=6, ge=1, le=_INT32_MAX)
    kafka_topic_replication_factor: int = Field(default=-1, ge=-1, le=_MAX_REPLICATION_FACTOR)
    # The seed's producer settings, set explicitly.
    kafka_acks: str = "all"
    kafka_enable_idempotence: bool = True
    kafka_retries: int = Field(default=5, ge=0, le=_INT32_MAX)
    kafka_batch_size: int = Field(default=32768, ge=1, le=_INT32_MAX)
    kafka_linger_ms: int = Field(default=10, ge=0, le=_LIBRDKAFKA_MAX_LINGER_MS)
    kafka_compression: str = "lz4"
    kafka_message_timeout_ms: int = Field(default=120_000, ge=1, le=_INT32_MAX)
    kafka_request_timeout_ms: int = Field(
        default=30_000, ge=1, le=_LIBRDKAFKA_MAX_REQUEST_TIMEOUT_MS
    )
    kafka_reconnect_backoff_max_ms: int = Field(
        default=1000, ge=1, le=_LIBRDKAFKA_MAX_RECONNECT_BACKOFF_MS
    )
    kafka_retry_backoff_ms: int = Field(default=100, ge=1, le=_LIBRDKAFKA_MAX_RETRY_BACKOFF_MS)
    kafka_retry_backoff_max_ms: int = Field(default=1000, ge=1, le=_LIBRDKAFKA_MAX_RETRY_BACKOFF_MS)
    kafka_queue_max_messages: int = Field(default=500_000, ge=1, le=_INT32_MAX)
    kafka_queue_max_kbytes: int = Field(default=1_048_576, ge=1, le=_INT32_MAX)
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
    kafka_channels_partitions: int = Field(default=64, ge=1, le=_INT32_MAX)
    # The broker only accepts group.min/max.session.timeout.ms (6 s … 30 min by default).
    kafka_channels_session_timeout_ms: int = Field(
        default=15_000, ge=1000, le=_LIBRDKAFKA_MAX_SESSION_TIMEOUT_MS
    )
    # A released channel is read until its new owner reports it joined, at most this long.
    kafka_channels_handover_timeout_s: float = Field(default=600.0, ge=0)
    # Readers per channel: 1 = its owner alone; 2 = plus one hot standby that takes over
    # a crashed owner's channels (fleet/standby.py). More would need more than rendezvous
    # of one standby; refused rather than silently read as 2.
    kafka_channels_replicas: int = Field(default=1, ge=1, le=2)
    # What a standby keeps of each channel: the last this many seconds, at most this many
    # bytes per channel; a take-over later than that has a gap (counted and logged).
    kafka_channels_standby_window_s: float = Field(default=60.0, gt=0, le=3600)
    kafka_channels_standby_window_bytes: int = Field(default=1_048_576, ge=1024, le=_INT32_MAX)

    # --- Durable buffer -----------------------------------------------------------
    buffer_mode: BufferMode = BufferMode.DISK
    # Absolute, so that a restart from another directory finds what the last run left.
    buffer_dir: Path = Field(default_factory=lambda: default_buffer_dir())
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
    hot_path: HotPath = "auto"  # the compiled extension or pure Python (native.py)
    # Channels with /metrics series of their own (channel_flow.py); the rest are added
    # up under channel="_other". Five series a channel: 1,000 channels are 5,000 series.
    metrics_channels_max: int = Field(default=1000, ge=0, le=_INT32_MAX)

    @field_validator("twitch_token_validate_interval_s")
    @classmethod
    def _validate_at_least_hourly(cls, value: float) -> float:
        if value > 3600:
            raise ValueError(
                f"{value:g} is more than 3600: Twitch requires apps to validate their"
                " tokens at least hourly"
            )
        return value

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

    @field_validator(
        "twitch_username",
        "twitch_client_id",
        "twitch_eventsub_keepalive_s",
        "twitch_max_reconnect_attempts",
        "kafka_topic_raw",
        "kafka_topic_dlq",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_ssl_ca_location",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `VAR=` in .env (as .env.example ships the credentials) means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "twitch_oauth_token",
        "twitch_client_secret",
        "twitch_refresh_token",
        "kafka_sasl_password",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("twitch_username")
    @classmethod
    def _valid_username(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.lower() in _PLACEHOLDER_USERNAMES:
            raise ValueError(
                "is still the .env.example placeholder: set your bot account's login, or "
                "leave TWITCH_USERNAME and TWITCH_OAUTH_TOKEN empty to read chat anonymously"
            )
        # An account login follows the channel-login rule (a channel is its owner's login).
        # The value is not echoed: a token pasted into the wrong line must not be printed.
        login = normalise_login(value)
        if isinstance(login, InvalidLogin) or value.strip().startswith("#"):
            reason = login.reason if isinstance(login, InvalidLogin) else "starts with '#'"
            raise ValueError(
                f"is not a Twitch login (1-25 letters, digits or underscores): it {reason}"
            )
        return value.strip()

    @field_validator("twitch_oauth_token")
    @classmethod
    def _valid_token(cls, token: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # The messages never quote the value: it is a secret even when malformed.
        if token is None:
            return None
        value = token.get_secret_value()
        if info.data.get("twitch_source") is SourceKind.EVENTSUB:
            # Helix and EventSub take the bare token; `oauth:` is IRC's spelling of it.
            if value in _PLACEHOLDER_TOKENS or not _TOKEN_BODY.match(value.removeprefix("oauth:")):
                raise ValueError(
                    "is not a user access token (it must be the token's letters and digits,"
                    " with or without 'oauth:', no spaces or quotes)"
                )
            return token
        if value in _PLACEHOLDER_TOKENS:
            raise ValueError(
                "is still the .env.example placeholder: put your bot's token here "
                "(oauth:…), or leave TWITCH_USERNAME and TWITCH_OAUTH_TOKEN empty to read "
                "chat anonymously"
            )
        if not value.startswith("oauth:"):
            raise ValueError(
                "must start with 'oauth:' (e.g. oauth:abc123…); prefix the token you were "
                "given with 'oauth:'"
            )
        if not _TOKEN_BODY.match(value.removeprefix("oauth:")):
            raise ValueError(
                "has nothing usable after 'oauth:' (it must be the token's letters and "
                "digits, with no spaces or quotes)"
            )
        return token

    @field_validator("twitch_client_secret", "twitch_refresh_token")
    @classmethod
    def _valid_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and not _TOKEN_BODY.match(secret.get_secret_value()):
            raise ValueError("must be letters and digits only (no spaces or quotes)")
        return secret

    @field_validator("twitch_client_id")
    @classmethod
    def _valid_client_id(cls, value: str | None) -> str | None:
        if value is not None and not _TOKEN_BODY.match(value.strip()):
            raise ValueError("is not a client id (letters and digits, as the console shows it)")
        return None if value is None else value.strip()

    @field_validator("twitch_eventsub_url", "twitch_api_url", "twitch_auth_url")
    @classmethod
    def _valid_twitch_url(cls, value: str, info: ValidationInfo) -> str:
        schemes = _URL_SCHEMES[info.field_name or ""]
        url = value.strip().rstrip("/")
        scheme, _, rest = url.partition("://")
        if f"{scheme.lower()}://" not in schemes or not rest or any(c.isspace() for c in url):
            raise ValueError(f"must be a {' or '.join(schemes)} URL, not {value!r}")
        return url

    @field_validator("twitch_irc_host", "health_host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        host = value.strip()
        if not host:
            raise ValueError("must not be empty")
        if "://" in host or "/" in host:
            raise ValueError(f"{value!r} is not a host name: give only the host, no scheme")
        if ":" in host and not _is_ipv6(host):
            raise ValueError(
                f"{value!r} is not a host name or address (a port goes in its own setting)"
            )
        if any(ch.isspace() for ch in host):
            raise ValueError(f"{value!r} is not a host name (it contains spaces)")
        return host

    @field_validator("kafka_brokers")
    @classmethod
    def _valid_brokers(cls, value: str) -> str:
        entries = [part.strip() for part in value.split(",")]
        servers = [entry for entry in entries if entry]
        if not servers:
            raise ValueError("must not be empty: give host:port, e.g. localhost:9092")
        bad = [entry for entry in servers if not _valid_broker(entry)]
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))} is not host:port (e.g. localhost:9092; "
                "several are comma-separated, ports 1-65535)"
            )
        return ",".join(servers)

    @field_validator(
        "kafka_topic_chat_messages",
        "kafka_topic_chat_events",
        "kafka_topic_raw",
        "kafka_topic_dlq",
        "kafka_topic_channels",
        "kafka_topic_instances",
    )
    @classmethod
    def _valid_topic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = topic_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("kafka_client_id", "kafka_channels_group")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("kafka_topic_replication_factor")
    @classmethod
    def _valid_replication_factor(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (the broker's default) or at least 1")
        return value

    @field_validator("kafka_compression", mode="before")
    @classmethod
    def _known_compression(cls, value: Any) -> Any:
        return _one_of(value, _COMPRESSION_CODECS, str.lower)

    @field_validator("kafka_acks", mode="before")
    @classmethod
    def _known_acks(cls, value: Any) -> Any:
        return _one_of(value, _ACKS, str.lower)

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _known_security_protocol(cls, value: Any) -> Any:
        return _one_of(value, _SECURITY_PROTOCOLS, str.upper)

    @field_validator("kafka_sasl_mechanism", mode="after")
    @classmethod
    def _known_sasl_mechanism(cls, value: str | None) -> str | None:
        return None if value is None else _one_of(value, _SASL_MECHANISMS, str.upper)

    @field_validator("kafka_ssl_ca_location")
    @classmethod
    def _existing_ca_location(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).exists():
            raise ValueError(f"{value!r} does not exist (a CA bundle file or a directory)")
        return value

    @field_validator("buffer_dir")
    @classmethod
    def _buffer_dir_is_a_directory(cls, value: Path) -> Path:
        # Made absolute (against the working directory) once, here: logs and check-config
        # then name the directory the records are really in.
        value = value.expanduser().absolute()
        if value.exists() and not value.is_dir():
            raise ValueError(f"{str(value)!r} exists and is not a directory")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "warn":
            return "warning"
        return _one_of(value, _LOG_LEVELS, str.lower)

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if not _CROSS_CHECKS_DEFERRED.get():
            problems = cross_field_problems(self)
            if problems:
                raise ValueError("; ".join(problem.message for problem in problems))
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


def default_buffer_dir() -> Path:
    """BUFFER_DIR's default: the XDG state directory (`$XDG_STATE_HOME`, else
    `~/.local/state`) — records that must outlive the process, but are not user data."""
    state = os.environ.get("XDG_STATE_HOME", "")
    if not Path(state).is_absolute():  # unset, or relative (the spec says: ignore it)
        try:
            state = str(Path.home() / ".local" / "state")
        except RuntimeError:  # no home directory at all: the working directory
            state = str(Path("state").absolute())
    return Path(state) / "twitch-ingestion" / "buffer"


def _default_instance_id() -> str:
    # Stable across restarts wherever the host name is (a StatefulSet pod, a VM), which is
    # what static membership needs; several instances on one host must set INSTANCE_ID.
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:249]
    return name or "twitch-ingestion"


def _anonymous_suffix() -> int:
    # Not a secret: Twitch only wants a number that makes the guest nick unique.
    return random.randint(10_000, 99_999_999)


def topic_name_problem(name: str) -> str | None:
    """Why `name` cannot be a Kafka topic, or None if it can."""
    if not _TOPIC_NAME.match(name) or name in {".", ".."}:
        return f"{name!r} is not a Kafka topic name (1-249 letters, digits, '.', '_' or '-')"
    return None


def _one_of(value: Any, allowed: Sequence[str], normalise: Callable[[str], str]) -> Any:
    """`value` normalised if it is one of `allowed`; anything not a string is left to pydantic."""
    if not isinstance(value, str):
        return value
    normalised = normalise(value.strip())
    if normalised not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return normalised


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _valid_broker(entry: str) -> bool:
    match = _BROKER.match(entry)
    if match is None:
        return False
    host = match["host"]
    if host.startswith("[") and not _is_ipv6(host):
        return False
    return 1 <= int(match["port"]) <= 65535


def cross_field_problems(settings: Settings) -> list[ConfigProblem]:
    """Problems that only show in a combination of settings, each naming its variables."""
    s = settings
    problems: list[ConfigProblem] = []

    def problem(*variables: str, message: str) -> None:
        problems.append(ConfigProblem(variables, message))

    problems.extend(_twitch_api_problems(s))
    if s.twitch_source is SourceKind.IRC and (
        (s.twitch_username is None) != (s.twitch_oauth_token is None)
    ):
        missing = "TWITCH_OAUTH_TOKEN" if s.twitch_oauth_token is None else "TWITCH_USERNAME"
        problem(
            "TWITCH_USERNAME",
            "TWITCH_OAUTH_TOKEN",
            message=f"{missing} is not set: set both TWITCH_USERNAME and TWITCH_OAUTH_TOKEN "
            "to log in, or neither to read chat anonymously",
        )
    if s.twitch_reconnect_max_s < s.twitch_reconnect_base_s:
        problem(
            "TWITCH_RECONNECT_MAX_S",
            "TWITCH_RECONNECT_BASE_S",
            message="TWITCH_RECONNECT_MAX_S must be >= TWITCH_RECONNECT_BASE_S",
        )
    if s.kafka_enable_idempotence and s.kafka_acks not in {"all", "-1"}:
        problem(
            "KAFKA_ACKS",
            "KAFKA_ENABLE_IDEMPOTENCE",
            message=f"KAFKA_ACKS={s.kafka_acks} needs KAFKA_ENABLE_IDEMPOTENCE=false: the "
            "idempotent producer only works with KAFKA_ACKS=all",
        )
    if s.kafka_retry_backoff_max_ms < s.kafka_retry_backoff_ms:
        problem(
            "KAFKA_RETRY_BACKOFF_MAX_MS",
            "KAFKA_RETRY_BACKOFF_MS",
            message="KAFKA_RETRY_BACKOFF_MAX_MS must be >= KAFKA_RETRY_BACKOFF_MS",
        )
    problems.extend(_sasl_problems(s))
    return problems


def _twitch_api_problems(s: Settings) -> list[ConfigProblem]:
    """TWITCH_SOURCE=eventsub's requirements, and the refresh pair (for either source)."""
    problems: list[ConfigProblem] = []
    public = s.twitch_client_type is ClientType.PUBLIC
    if public and s.twitch_client_secret is not None:
        problems.append(
            ConfigProblem(
                ("TWITCH_CLIENT_SECRET", "TWITCH_CLIENT_TYPE"),
                "TWITCH_CLIENT_SECRET is set but TWITCH_CLIENT_TYPE=public: a public app has "
                "no secret; unset TWITCH_CLIENT_SECRET, or set TWITCH_CLIENT_TYPE=confidential",
            )
        )
    elif not public and (s.twitch_client_secret is None) != (s.twitch_refresh_token is None):
        missing = (
            "TWITCH_REFRESH_TOKEN" if s.twitch_refresh_token is None else ("TWITCH_CLIENT_SECRET")
        )
        problems.append(
            ConfigProblem(
                ("TWITCH_CLIENT_SECRET", "TWITCH_REFRESH_TOKEN"),
                f"{missing} is not set: refreshing the token takes both TWITCH_CLIENT_SECRET "
                "and TWITCH_REFRESH_TOKEN; set both, or neither (an app without a secret: "
                "TWITCH_CLIENT_TYPE=public and TWITCH_REFRESH_TOKEN alone)",
            )
        )
    elif s.twitch_refresh_token is not None and s.twitch_client_id is None:
        problems.append(
            ConfigProblem(
                ("TWITCH_CLIENT_ID", "TWITCH_REFRESH_TOKEN"),
                "TWITCH_CLIENT_ID is not set: refreshing the token (TWITCH_REFRESH_TOKEN) "
                "needs the client id of the app that issued it",
            )
        )
    if s.twitch_source is not SourceKind.EVENTSUB:
        return problems
    if s.twitch_client_id is None:
        problems.append(
            ConfigProblem(
                ("TWITCH_CLIENT_ID", "TWITCH_SOURCE"),
                "TWITCH_CLIENT_ID is not set: TWITCH_SOURCE=eventsub needs the client id of "
                "the app the token was issued to (dev.twitch.tv/console)",
            )
        )
    if s.twitch_oauth_token is None:
        problems.append(
            ConfigProblem(
                ("TWITCH_OAUTH_TOKEN", "TWITCH_SOURCE"),
                "TWITCH_OAUTH_TOKEN is not set: TWITCH_SOURCE=eventsub needs a user access "
                "token of the bot account with the scope user:read:chat",
            )
        )
    return problems


def _sasl_problems(s: Settings) -> list[ConfigProblem]:
    protocol = s.kafka_security_protocol
    mechanism = s.kafka_sasl_mechanism
    if protocol.startswith("SASL_"):
        if mechanism is None:
            return [
                ConfigProblem(
                    ("KAFKA_SASL_MECHANISM", "KAFKA_SECURITY_PROTOCOL"),
                    f"KAFKA_SASL_MECHANISM is not set, and KAFKA_SECURITY_PROTOCOL={protocol} "
                    "needs one (e.g. PLAIN or SCRAM-SHA-512)",
                )
            ]
        missing = [
            name
            for name, value in (
                ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password),
            )
            if value is None
        ]
        if mechanism in _SASL_PASSWORD_MECHANISMS and missing:
            return [
                ConfigProblem(
                    ("KAFKA_SASL_MECHANISM", *missing),
                    f"{' and '.join(missing)} must be set for KAFKA_SASL_MECHANISM={mechanism}",
                )
            ]
        return []
    stray = [
        name
        for name, value in (
            ("KAFKA_SASL_MECHANISM", mechanism),
            ("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
            ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password),
        )
        if value is not None
    ]
    if stray:
        # Otherwise the credentials would be silently unused and the broker would answer
        # with a disconnect that does not say why.
        return [
            ConfigProblem(
                ("KAFKA_SECURITY_PROTOCOL", *stray),
                f"{', '.join(stray)} set, but KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                "SASL: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)",
            )
        ]
    return []


def _variable(error: Mapping[str, Any]) -> str | None:
    location = error.get("loc", ())
    return str(location[0]).upper() if location else None


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    variable = _variable(error)
    return message if variable is None else f"{variable}: {message}"


# A value made only of these is written to .env as it is; anything else is single-quoted
# (python-dotenv then takes it literally: no `${…}` expansion, no `#` comment).
_DOTENV_BARE = re.compile(r"^[A-Za-z0-9_.,:/@+=-]*$")


def dotenv_lines(settings: Settings) -> list[str]:
    """`settings` as `.env` lines that `load_settings` reads back to the same settings.

    Secrets are not written: a set one is a comment saying so (the file then reads back
    with it unset), an unset one an empty value, as `.env.example` has them.
    """
    lines: list[str] = []
    for name in sorted(Settings.model_fields):
        value = getattr(settings, name)
        variable = name.upper()
        if isinstance(value, SecretStr):
            lines.append(f"# {variable} is set (a secret: not shown)")
            continue
        lines.append(f"{variable}={_dotenv_value(value)}")
    return lines


def _dotenv_value(value: object) -> str:
    if value is None:
        return ""  # every optional setting reads an empty value as unset
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, StrEnum):
        text = value.value
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, list):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    if _DOTENV_BARE.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class UnknownSetting:
    """A variable that looks like a setting (`SETTING_PREFIXES`) but is none."""

    name: str
    source: str
    """Where it was found: "the environment" or ".env"."""
    suggestion: str | None
    """The closest setting name, if one is close."""

    @property
    def message(self) -> str:
        found = f"{self.name} (in {self.source}) is not a setting"
        if self.suggestion is not None:
            return f"{found}: did you mean {self.suggestion}?"
        return f"{found} (the README's Settings table lists them)"


def unknown_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> list[UnknownSetting]:
    """Variables of `environ` (default: the process's) and of the `.env` file (default:
    the one `Settings` reads) that look like settings but name none."""
    environ = os.environ if environ is None else environ
    if dotenv_path is None:
        dotenv_path = Path(str(Settings.model_config.get("env_file") or ".env"))
    known = sorted(name.upper() for name in Settings.model_fields)
    found: dict[str, UnknownSetting] = {}
    for source, names in (("the environment", list(environ)), (".env", _dotenv_names(dotenv_path))):
        for name in names:
            upper = name.upper()
            if upper in found or not _looks_like_a_setting(upper) or upper in known:
                continue
            close = difflib.get_close_matches(upper, known, n=1, cutoff=_SUGGESTION_CUTOFF)
            found[upper] = UnknownSetting(name, source, close[0] if close else None)
    return list(found.values())


def _looks_like_a_setting(name: str) -> bool:
    return (
        name.startswith(SETTING_PREFIXES)
        and not name.startswith(_FOREIGN_PREFIXES)
        and name not in _FOREIGN_NAMES
    )


def _dotenv_names(path: Path) -> list[str]:
    """The names a `.env` file sets; none when it is missing or unreadable (reading the
    settings reports that)."""
    try:
        with path.open(encoding="utf-8") as stream:
            return [binding.key for binding in parse_stream(stream) if binding.key]
    except (OSError, UnicodeDecodeError):
        return []


def load_settings(
    checks: Sequence[SettingsCheck] = (),
    /,
    *,
    require_channels: bool = True,
    **overrides: Any,
) -> Settings:
    """Load and validate settings; raise `ConfigError` listing every problem, secret-free.

    Every field is validated, then the combinations and `checks` (the librdkafka check)
    run too, even when a field failed — with that field at its default, and ignoring
    what they say about it — so one run reports everything there is to fix.

    `require_channels=False` serves commands that never join chat (`tail`); with
    CHANNEL_SOURCE=kafka the channels come from the control topic, not TWITCH_CHANNEL.
    """
    token = _CROSS_CHECKS_DEFERRED.set(True)
    try:
        with _unparsable_dotenv_lines() as unparsable:
            settings, problems, failed = _validate_fields(overrides)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f".env is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"]
        ) from None
    except OSError as exc:
        raise ConfigError([f".env cannot be read: {exc.strerror or exc}"]) from None
    finally:
        _CROSS_CHECKS_DEFERRED.reset(token)
    problems[:0] = unparsable
    if settings is not None:
        later = cross_field_problems(settings)
        if require_channels and "TWITCH_CHANNEL" not in failed:
            from_env = settings.channel_source is ChannelSource.ENV
            if from_env and not settings.twitch_channel:
                later.append(
                    ConfigProblem(
                        ("TWITCH_CHANNEL",),
                        "TWITCH_CHANNEL is not set: give one channel login or a "
                        "comma-separated list, in .env (first `cp .env.example .env`, then "
                        "edit it) or in the environment",
                    )
                )
        for check in checks:
            later.extend(check(settings))
        for found in later:
            if found.message not in problems and not failed.intersection(found.variables):
                problems.append(found.message)
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings


@contextmanager
def _unparsable_dotenv_lines() -> Iterator[list[str]]:
    """Collect python-dotenv's "could not parse" warnings as problems.

    python-dotenv skips a line it cannot parse and only logs it, so a setting on such a
    line (`KAFKA_BROKERS="kafka:9092` without its closing quote) would silently keep its
    default while check-config called the configuration valid.
    """
    problems: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = re.search(r"line (\d+)", record.getMessage())
            where = f".env line {line.group(1)}" if line else ".env"
            problem = f"{where} is not NAME=value: fix it (close any quote) or remove it"
            if problem not in problems:
                problems.append(problem)

    logger = logging.getLogger("dotenv.main")
    handler = Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield problems
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _validate_fields(
    overrides: dict[str, Any],
) -> tuple[Settings | None, list[str], set[str]]:
    """Settings (failed fields at their defaults), one message per field error, and the
    names of the variables that failed."""
    try:
        return Settings(**overrides), [], set()
    except ValidationError as exc:
        errors = exc.errors()
    problems = list(dict.fromkeys(_describe(error) for error in errors))
    failed = {name for error in errors if (name := _variable(error)) is not None}
    defaults = {
        name.lower(): Settings.model_fields[name.lower()].get_default(call_default_factory=True)
        for name in failed
        if name.lower() in Settings.model_fields
    }
    try:
        settings = Settings(**{**overrides, **defaults})
    except ValidationError:
        # Cannot happen with valid defaults; the field errors are reported either way.
        settings = None
    return settings, problems, failed
