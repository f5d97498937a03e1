"""`Settings` → each component's own small config, in one place.

`config.Settings` is the environment, validated: one home for every variable, its default
and its check. Components do not see it: each takes its own frozen config, so that its
signature says what it depends on and a test builds one without an environment. This
module is the only mapping between the two; the service, the commands and the benchmarks
call it.
"""

from __future__ import annotations

from pydantic import SecretStr

from twitch_ingestion.buffer.config import BufferConfig
from twitch_ingestion.config import ClientType, Settings
from twitch_ingestion.fleet.config import ControlTopicsConfig, FleetConfig
from twitch_ingestion.fleet.standby import StandbyConfig
from twitch_ingestion.health import HealthConfig
from twitch_ingestion.kafka.producer_config import KafkaConnection, ProducerTuning
from twitch_ingestion.kafka.sink import KafkaSinkConfig
from twitch_ingestion.native import compiled_record_framer
from twitch_ingestion.records.topics import Topics
from twitch_ingestion.sources.eventsub.config import EventSubConfig
from twitch_ingestion.sources.irc.config import IrcSourceConfig
from twitch_ingestion.sources.token_guard import TokenGuardConfig

__all__ = [
    "buffer_config",
    "control_topics_config",
    "eventsub_config",
    "fleet_config",
    "health_config",
    "irc_source_config",
    "kafka_connection",
    "kafka_sink_config",
    "producer_tuning",
    "standby_config",
    "token_guard_config",
    "topics",
]


def buffer_config(settings: Settings) -> BufferConfig:
    """The buffer's BUFFER_* settings and the record framer HOT_PATH chose."""
    return BufferConfig(
        mode=settings.buffer_mode,
        directory=settings.buffer_dir,
        max_bytes=settings.buffer_max_bytes,
        segment_bytes=settings.buffer_segment_bytes,
        fsync_ms=settings.buffer_fsync_ms,
        full_policy=settings.buffer_full_policy,
        framer=compiled_record_framer(settings.hot_path),
    )


def kafka_connection(settings: Settings) -> KafkaConnection:
    """Every Kafka client's brokers and credentials."""
    return KafkaConnection(
        brokers=settings.kafka_brokers,
        client_id=settings.kafka_client_id,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
        ssl_ca_location=settings.kafka_ssl_ca_location,
    )


def producer_tuning(settings: Settings) -> ProducerTuning:
    """The producer's KAFKA_* settings beyond the connection."""
    return ProducerTuning(
        acks=settings.kafka_acks,
        enable_idempotence=settings.kafka_enable_idempotence,
        retries=settings.kafka_retries,
        batch_size=settings.kafka_batch_size,
        linger_ms=settings.kafka_linger_ms,
        compression=settings.kafka_compression,
        message_timeout_ms=settings.kafka_message_timeout_ms,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        retry_backoff_ms=settings.kafka_retry_backoff_ms,
        retry_backoff_max_ms=settings.kafka_retry_backoff_max_ms,
        reconnect_backoff_max_ms=settings.kafka_reconnect_backoff_max_ms,
        queue_max_messages=settings.kafka_queue_max_messages,
        queue_max_kbytes=settings.kafka_queue_max_kbytes,
    )


def topics(settings: Settings) -> Topics:
    """The topics written to (KAFKA_TOPIC_*; an empty raw or dead-letter topic: none)."""
    return Topics(
        chat=settings.kafka_topic_chat_messages,
        events=settings.kafka_topic_chat_events,
        raw=settings.kafka_topic_raw or None,
        dlq=settings.kafka_topic_dlq or None,
    )


def kafka_sink_config(settings: Settings) -> KafkaSinkConfig:
    """The sink's topics and its stall timeout (KAFKA_MESSAGE_TIMEOUT_MS: librdkafka's
    own is switched off, kafka/producer.py)."""
    return KafkaSinkConfig(
        topics=topics(settings), stall_timeout_s=settings.kafka_message_timeout_ms / 1000
    )


def _secret(value: SecretStr | None) -> str:
    return "" if value is None else value.get_secret_value()


def eventsub_config(
    settings: Settings, channels: tuple[str, ...] | None = None, **tunables: object
) -> EventSubConfig:
    """The EventSub source's config; raises `SettingsError` for what only EventSub needs.

    `channels` defaults to TWITCH_CHANNEL; `tunables` override the rest (tests, the fleet's
    `dynamic_channels`).
    """
    values: dict[str, object] = {
        "keepalive_timeout_s": settings.twitch_eventsub_keepalive_s,
        "welcome_timeout_s": settings.twitch_login_timeout_s,
        "validate_interval_s": settings.twitch_token_validate_interval_s,
        "refresh_margin_s": settings.twitch_token_refresh_margin_s,
        "backoff_base_s": settings.twitch_reconnect_base_s,
        "backoff_max_s": settings.twitch_reconnect_max_s,
        "http_timeout_s": settings.twitch_connect_timeout_s,
        "max_unproductive_sessions": settings.twitch_max_reconnect_attempts,
        "recheck_interval_s": settings.twitch_join_retry_interval_s,
        "check_interval_s": settings.twitch_eventsub_check_interval_s,
        **tunables,
    }
    return EventSubConfig(
        client_id=settings.twitch_client_id or "",
        oauth_token=_secret(settings.twitch_oauth_token),
        channels=tuple(settings.twitch_channel if channels is None else channels),
        client_secret=_secret(settings.twitch_client_secret),
        refresh_token=_secret(settings.twitch_refresh_token),
        public_client=settings.twitch_client_type is ClientType.PUBLIC,
        eventsub_url=settings.twitch_eventsub_url,
        api_url=settings.twitch_api_url,
        auth_url=settings.twitch_auth_url,
        **values,  # type: ignore[arg-type]
    )


def health_config(settings: Settings) -> HealthConfig:
    """Where the health server listens (HEALTH_HOST, HEALTH_PORT; 0: no server)."""
    return HealthConfig.from_port_setting(settings.health_host, settings.health_port)


def irc_source_config(settings: Settings) -> IrcSourceConfig:
    """The IRC source's TWITCH_* settings and HOT_PATH (the login resolved once: an
    anonymous one is a random `justinfan` guest)."""
    return IrcSourceConfig(
        twitch_login=settings.twitch_login,
        twitch_oauth_token=settings.twitch_oauth_token,
        twitch_channel=tuple(settings.twitch_channel),
        hot_path=settings.hot_path,
        twitch_irc_host=settings.twitch_irc_host,
        twitch_irc_port=settings.twitch_irc_port,
        twitch_irc_tls=settings.twitch_irc_tls,
        twitch_connect_timeout_s=settings.twitch_connect_timeout_s,
        twitch_login_timeout_s=settings.twitch_login_timeout_s,
        twitch_reconnect_base_s=settings.twitch_reconnect_base_s,
        twitch_reconnect_max_s=settings.twitch_reconnect_max_s,
        twitch_reconnect_reset_after_s=settings.twitch_reconnect_reset_after_s,
        twitch_max_reconnect_attempts=settings.twitch_max_reconnect_attempts,
        twitch_ping_interval_s=settings.twitch_ping_interval_s,
        twitch_pong_timeout_s=settings.twitch_pong_timeout_s,
        twitch_join_timeout_s=settings.twitch_join_timeout_s,
        twitch_join_retry_interval_s=settings.twitch_join_retry_interval_s,
        twitch_join_rate_limit=settings.twitch_join_rate_limit,
        twitch_join_rate_window_s=settings.twitch_join_rate_window_s,
        twitch_channels_per_connection=settings.twitch_channels_per_connection,
        twitch_connection_open_interval_s=settings.twitch_connection_open_interval_s,
        twitch_reconnect_overlap_s=settings.twitch_reconnect_overlap_s,
        twitch_read_buffer_bytes=settings.twitch_read_buffer_bytes,
    )


def token_guard_config(settings: Settings) -> TokenGuardConfig | None:
    """The IRC token guard's config; None without TWITCH_OAUTH_TOKEN (anonymous)."""
    token = settings.twitch_oauth_token
    if token is None:
        return None
    return TokenGuardConfig(
        access_token=token,
        client_id=settings.twitch_client_id or "",
        client_secret=settings.twitch_client_secret,
        refresh_token=settings.twitch_refresh_token,
        public_client=settings.twitch_client_type is ClientType.PUBLIC,
        auth_url=settings.twitch_auth_url,
        validate_interval_s=settings.twitch_token_validate_interval_s,
        refresh_margin_s=settings.twitch_token_refresh_margin_s,
        http_timeout_s=settings.twitch_connect_timeout_s,
    )


def standby_config(settings: Settings) -> StandbyConfig:
    """KAFKA_CHANNELS_REPLICAS and the standby's window (fleet/standby.py)."""
    return StandbyConfig(
        replicas=settings.kafka_channels_replicas,
        window_s=settings.kafka_channels_standby_window_s,
        window_bytes=settings.kafka_channels_standby_window_bytes,
    )


def control_topics_config(settings: Settings) -> ControlTopicsConfig:
    """The fleet's topics and group, for the commands and every member
    (KAFKA_TOPIC_CHANNELS, KAFKA_TOPIC_INSTANCES, KAFKA_CHANNELS_GROUP …)."""
    return ControlTopicsConfig(
        connection=kafka_connection(settings),
        channels_topic=settings.kafka_topic_channels,
        instances_topic=settings.kafka_topic_instances,
        group=settings.kafka_channels_group,
        channels_partitions=settings.kafka_channels_partitions,
        replication_factor=settings.kafka_topic_replication_factor,
        create_topics=settings.kafka_create_topics,
    )


def fleet_config(settings: Settings) -> FleetConfig:
    """A fleet member's config (CHANNEL_SOURCE=kafka); the login its report names is
    resolved once (an anonymous one is a random `justinfan` guest)."""
    data_topics = topics(settings)
    return FleetConfig(
        control=control_topics_config(settings),
        instance_id=settings.instance_id,
        login=settings.twitch_login,
        session_timeout_ms=settings.kafka_channels_session_timeout_ms,
        handover_timeout_s=settings.kafka_channels_handover_timeout_s,
        standby=standby_config(settings),
        tail_topics=(data_topics.chat, data_topics.events),
    )
