"""librdkafka settings built from `Settings`, and a secret-free view of them for logs."""

from __future__ import annotations

from typing import Any

from twitch_ingestion.config import Settings

__all__ = ["admin_config", "producer_config", "redacted"]

_SECRET_CONFIG_KEYS = frozenset({"sasl.password", "ssl.key.password", "sasl.oauthbearer.config"})


def _connection_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_brokers,
        "client.id": settings.kafka_client_id,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        conf["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        conf["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_location:
        conf["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return conf


def producer_config(settings: Settings) -> dict[str, Any]:
    """The seed's producer settings (acks=all, retries 5, 32 KB batches, linger 10 ms)."""
    conf = _connection_config(settings)
    conf.update(
        {
            "acks": settings.kafka_acks,
            # Idempotence keeps per-partition order and removes duplicates caused by
            # librdkafka's own retries; it needs acks=all and at most 5 in flight.
            "enable.idempotence": settings.kafka_enable_idempotence,
            "retries": settings.kafka_retries,
            "batch.size": settings.kafka_batch_size,
            "linger.ms": settings.kafka_linger_ms,
            "compression.type": settings.kafka_compression,
            "message.timeout.ms": settings.kafka_message_timeout_ms,
            "request.timeout.ms": settings.kafka_request_timeout_ms,
            "retry.backoff.ms": settings.kafka_retry_backoff_ms,
            "retry.backoff.max.ms": settings.kafka_retry_backoff_max_ms,
            # librdkafka's default (10 s) would leave records waiting up to 10 s after the
            # broker is back; a second is still gentle on a broker that is restarting.
            "reconnect.backoff.max.ms": settings.kafka_reconnect_backoff_max_ms,
            "queue.buffering.max.messages": settings.kafka_queue_max_messages,
            "queue.buffering.max.kbytes": settings.kafka_queue_max_kbytes,
            # The key is the channel: the default murmur2_random partitioner matches the
            # Java client, so every consumer stack agrees on where a channel lives.
            "partitioner": "murmur2_random",
        }
    )
    return conf


def admin_config(settings: Settings) -> dict[str, Any]:
    return _connection_config(settings)


def redacted(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy of a librdkafka config that is safe to log."""
    return {k: ("**********" if k in _SECRET_CONFIG_KEYS else v) for k, v in conf.items()}
