"""librdkafka settings built from the Kafka clients' own configs (`KafkaConnection`,
`ProducerTuning`), a secret-free view of them for logs, and the check that librdkafka
accepts them before anything starts."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from twitch_ingestion.config import ConfigProblem
from twitch_ingestion.kafka.topics import NO_AUTO_CREATE
from twitch_ingestion.logging import LIBRDKAFKA_LOGGER

__all__ = [
    "KafkaConnection",
    "ProducerTuning",
    "admin_config",
    "librdkafka_problems",
    "producer_config",
    "redacted",
]

_SECRET_CONFIG_KEYS = frozenset({"sasl.password", "ssl.key.password", "sasl.oauthbearer.config"})


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaConnection:
    """Where the brokers are and how to log in: what every Kafka client of the service
    (producer, admin, consumers) shares. KAFKA_BROKERS, KAFKA_CLIENT_ID,
    KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CA_LOCATION."""

    brokers: str
    client_id: str
    security_protocol: str
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerTuning:
    """The producer's own settings (KAFKA_ACKS … KAFKA_QUEUE_MAX_KBYTES); their
    defaults, the seed's, live with the variables in config.py."""

    acks: str
    enable_idempotence: bool
    retries: int
    batch_size: int
    linger_ms: int
    compression: str
    message_timeout_ms: int
    request_timeout_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    reconnect_backoff_max_ms: int
    queue_max_messages: int
    queue_max_kbytes: int


def _connection_config(connection: KafkaConnection) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": connection.brokers,
        "client.id": connection.client_id,
        "security.protocol": connection.security_protocol,
        # Every client: a produce or a metadata request for a topic that does not exist
        # must not make the broker create it with its own defaults (kafka/topics.py
        # creates ours, with KAFKA_TOPIC_PARTITIONS, before anything is produced).
        **NO_AUTO_CREATE,
    }
    if connection.sasl_mechanism:
        conf["sasl.mechanism"] = connection.sasl_mechanism
    if connection.sasl_username:
        conf["sasl.username"] = connection.sasl_username
    if connection.sasl_password is not None:
        conf["sasl.password"] = connection.sasl_password.get_secret_value()
    if connection.ssl_ca_location:
        conf["ssl.ca.location"] = connection.ssl_ca_location
    return conf


def producer_config(connection: KafkaConnection, tuning: ProducerTuning) -> dict[str, Any]:
    """The seed's producer settings (acks=all, retries 5, 32 KB batches, linger 10 ms)."""
    conf = _connection_config(connection)
    conf.update(
        {
            "acks": tuning.acks,
            # Idempotence keeps per-partition order and removes duplicates caused by
            # librdkafka's own retries; it needs acks=all and at most 5 in flight.
            "enable.idempotence": tuning.enable_idempotence,
            "retries": tuning.retries,
            "batch.size": tuning.batch_size,
            "linger.ms": tuning.linger_ms,
            "compression.type": tuning.compression,
            "message.timeout.ms": tuning.message_timeout_ms,
            "request.timeout.ms": tuning.request_timeout_ms,
            "retry.backoff.ms": tuning.retry_backoff_ms,
            "retry.backoff.max.ms": tuning.retry_backoff_max_ms,
            # librdkafka's default (10 s) would leave records waiting up to 10 s after the
            # broker is back; a second is still gentle on a broker that is restarting.
            "reconnect.backoff.max.ms": tuning.reconnect_backoff_max_ms,
            "queue.buffering.max.messages": tuning.queue_max_messages,
            "queue.buffering.max.kbytes": tuning.queue_max_kbytes,
            # The key is the channel: the default murmur2_random partitioner matches the
            # Java client, so every consumer stack agrees on where a channel lives.
            "partitioner": "murmur2_random",
        }
    )
    return conf


def admin_config(connection: KafkaConnection) -> dict[str, Any]:
    """Connection settings for admin clients and consumers (which add their own).

    librdkafka's log lines go through `logging` — formatted like every other line and
    with repeats held back (logging.py) — rather than raw `%3|…` lines on stderr. A
    client logs when it is polled; an admin client nobody polls logs nothing.
    """
    conf = _connection_config(connection)
    conf["logger"] = logging.getLogger(LIBRDKAFKA_LOGGER)
    return conf


def redacted(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy of a librdkafka config that is safe to log."""
    return {k: ("**********" if k in _SECRET_CONFIG_KEYS else v) for k, v in conf.items()}


# librdkafka names a property by its canonical name, which is not always the alias this
# module sets (compression.type → compression.codec, linger.ms → queue.buffering.max.ms).
_VARIABLE_FOR_PROPERTY = {
    "bootstrap.servers": "KAFKA_BROKERS",
    "metadata.broker.list": "KAFKA_BROKERS",
    "client.id": "KAFKA_CLIENT_ID",
    "security.protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.mechanisms": "KAFKA_SASL_MECHANISM",
    "sasl.username": "KAFKA_SASL_USERNAME",
    "sasl.password": "KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "KAFKA_SSL_CA_LOCATION",
    "acks": "KAFKA_ACKS",
    "request.required.acks": "KAFKA_ACKS",
    "enable.idempotence": "KAFKA_ENABLE_IDEMPOTENCE",
    "retries": "KAFKA_RETRIES",
    "message.send.max.retries": "KAFKA_RETRIES",
    "batch.size": "KAFKA_BATCH_SIZE",
    "linger.ms": "KAFKA_LINGER_MS",
    "queue.buffering.max.ms": "KAFKA_LINGER_MS",
    "compression.type": "KAFKA_COMPRESSION",
    "compression.codec": "KAFKA_COMPRESSION",
    "message.timeout.ms": "KAFKA_MESSAGE_TIMEOUT_MS",
    "request.timeout.ms": "KAFKA_REQUEST_TIMEOUT_MS",
    "retry.backoff.ms": "KAFKA_RETRY_BACKOFF_MS",
    "retry.backoff.max.ms": "KAFKA_RETRY_BACKOFF_MAX_MS",
    "reconnect.backoff.max.ms": "KAFKA_RECONNECT_BACKOFF_MAX_MS",
    "queue.buffering.max.messages": "KAFKA_QUEUE_MAX_MESSAGES",
    "queue.buffering.max.kbytes": "KAFKA_QUEUE_MAX_KBYTES",
    "group.id": "KAFKA_CHANNELS_GROUP",
    "group.instance.id": "INSTANCE_ID",
    "session.timeout.ms": "KAFKA_CHANNELS_SESSION_TIMEOUT_MS",
    "heartbeat.interval.ms": "KAFKA_CHANNELS_SESSION_TIMEOUT_MS",
}
_PROPERTY_NAME = re.compile(r"[a-z]+(?:\.[a-z]+)+")
_CREATE_FAILED = re.compile(r"^Failed to create [\w ]+?: ")
# Refusals that name no property.
_VARIABLE_FOR_PHRASE = {"SASL mechanism": "KAFKA_SASL_MECHANISM"}
# The check's clients have no brokers, so librdkafka would warn that they cannot
# connect; what the check wants to know arrives as an exception instead.
_CHECK_LOGGER = logging.getLogger("twitch_ingestion.kafka.config_check")
_CHECK_LOGGER.addHandler(logging.NullHandler())
_CHECK_LOGGER.propagate = False


def librdkafka_problems(
    connection: KafkaConnection,
    tuning: ProducerTuning,
    consumer_configs: Iterable[dict[str, Any]] = (),
) -> list[ConfigProblem]:
    """What librdkafka refuses in the producer and admin configurations, and in the
    `consumer_configs` the caller builds (the fleet's: kafka/ imports no component).

    Each client is created and destroyed at once, without `bootstrap.servers`: that
    makes librdkafka validate every property (ranges, enumerations, combinations such
    as idempotence with acks, the TLS CA file, SASL support in this build) without
    resolving a host or opening a connection. The host:port list is checked in config.
    """

    def make_producer(conf: dict[str, Any]) -> None:
        Producer(conf)  # destroyed when the reference goes: nothing was produced

    def make_admin(conf: dict[str, Any]) -> None:
        AdminClient(conf)

    def make_consumer(conf: dict[str, Any]) -> None:
        Consumer(conf).close()

    clients: list[tuple[Callable[[dict[str, Any]], None], dict[str, Any]]] = [
        (make_producer, producer_config(connection, tuning)),
        (make_admin, admin_config(connection)),
        *((make_consumer, conf) for conf in consumer_configs),
    ]
    problems: list[ConfigProblem] = []
    for make, conf in clients:
        conf = {k: v for k, v in conf.items() if k != "bootstrap.servers"}
        conf["logger"] = _CHECK_LOGGER
        try:
            make(conf)
        except KafkaException as exc:
            problem = _describe_refusal(exc, connection.sasl_password)
            if problem not in problems:
                problems.append(problem)
    return problems


def _describe_refusal(exc: KafkaException, password: SecretStr | None) -> ConfigProblem:
    error = exc.args[0] if exc.args else None
    text = error.str() if isinstance(error, KafkaError) else str(exc)
    text = _CREATE_FAILED.sub("", text.strip())
    if password is not None and password.get_secret_value():
        text = text.replace(password.get_secret_value(), "**********")
    found = [
        _VARIABLE_FOR_PROPERTY[name]
        for name in _PROPERTY_NAME.findall(text)
        if name in _VARIABLE_FOR_PROPERTY
    ]
    found += [variable for phrase, variable in _VARIABLE_FOR_PHRASE.items() if phrase in text]
    variables = tuple(dict.fromkeys(found))
    named = ", ".join(variables) if variables else "Kafka settings (KAFKA_*)"
    return ConfigProblem(variables, f"{named}: librdkafka refuses it: {text}")
