"""The service → Kafka over TLS (KAFKA_SECURITY_PROTOCOL=SSL), as production brokers run.

A private broker (`LocalBroker`, so the shared one is never touched) serves an SSL
listener whose certificate is signed by a CA made for this test run (trustme); the
service is told to trust that CA with KAFKA_SSL_CA_LOCATION. Told to trust another CA,
the service must say so in one line naming the setting, and keep what it read."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives import serialization

from tests.integration.broker import LocalBroker
from tests.integration.conftest import twitch_env
from tests.integration.service_process import StartService
from tests.support.ports import free_port
from twitch_ingestion.simulator import SimulatorThread

CHANNELS = ["alpha", "beta"]


@pytest.fixture(scope="module")
def kafka_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """The CA that signed the broker's certificate, and its certificate as a PEM file."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("kafka-ca") / "kafka-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="module")
def tls_broker(
    tmp_path_factory: pytest.TempPathFactory, kafka_ca: tuple[trustme.CA, Path]
) -> Iterator[LocalBroker]:
    """A private broker with an SSL listener for 127.0.0.1, stopped after the module."""
    folder = tmp_path_factory.mktemp("kafka-tls")
    leaf = kafka_ca[0].issue_cert("127.0.0.1", "localhost")
    chain = folder / "broker-chain.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    # trustme writes a traditional ("BEGIN EC PRIVATE KEY") key; Kafka's PEM key store
    # reads PKCS#8 only.
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    key_file = folder / "broker-key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with LocalBroker(folder / "state", ssl_cert=chain, ssl_key=key_file) as running:
        yield running


def _service_env(
    simulator: SimulatorThread, broker: LocalBroker, ca_file: Path, buffer_dir: Path
) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        **twitch_env(simulator, CHANNELS),
        "KAFKA_TOPIC_CHAT_MESSAGES": f"tls-chat-{suffix}",
        "KAFKA_TOPIC_CHAT_EVENTS": f"tls-events-{suffix}",
        "KAFKA_TOPIC_DLQ": f"tls-chat-{suffix}.dlq",
        "KAFKA_BROKERS": broker.ssl_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_LOCATION": str(ca_file),
        "BUFFER_DIR": str(buffer_dir),
        "SHUTDOWN_TIMEOUT_S": "5",
        "HEALTH_HOST": "127.0.0.1",
        "HEALTH_PORT": str(free_port()),
    }


def _ssl_client_config(broker: LocalBroker, ca_file: Path) -> dict[str, str]:
    return {
        "bootstrap.servers": broker.ssl_bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca_file),
    }


def _read_numbers(
    broker: LocalBroker, ca_file: Path, topic: str, *, expected: int, timeout_s: float = 60.0
) -> dict[str, list[int]]:
    """`seq <channel> <n>` records of `topic`, read back over SSL: channel → numbers in
    partition order. Stops at `expected` records, then reads 1 s more for duplicates."""
    consumer = Consumer(
        {
            **_ssl_client_config(broker, ca_file),
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    consumer.subscribe([topic])
    numbers: dict[str, list[int]] = defaultdict(list)
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() in (
                        KafkaError.UNKNOWN_TOPIC_OR_PART,
                        KafkaError._PARTITION_EOF,
                    ):
                        continue
                    raise KafkaException(error)
                _, channel, number = json.loads(message.value() or b"")["message"].split()
                numbers[channel].append(int(number))
                seen += 1
            if seen >= expected:
                deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        consumer.close()
    return dict(numbers)


def _readiness(env: dict[str, str]) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{env['HEALTH_PORT']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _stream(simulator: SimulatorThread, count: int) -> None:
    simulator.wait_for_joined(CHANNELS, timeout=30)
    simulator.start_numbered(CHANNELS, rate=2000.0, count=count).wait(timeout=60)


def test_service_delivers_every_record_over_tls(
    tls_broker: LocalBroker,
    kafka_ca: tuple[trustme.CA, Path],
    simulator: SimulatorThread,
    start_service: StartService,
    tmp_path: Path,
) -> None:
    ca_file = kafka_ca[1]
    env = _service_env(simulator, tls_broker, ca_file, tmp_path / "buffer")
    service = start_service(env)
    count = 500
    _stream(simulator, count)

    assert service.stop() == 0
    stopped = next(e for e in service.log_events() if e["event"] == "service stopped")
    assert stopped["undelivered"] == 0
    numbers = _read_numbers(
        tls_broker, ca_file, env["KAFKA_TOPIC_CHAT_MESSAGES"], expected=count * len(CHANNELS)
    )
    # Per channel: 1, 2, 3 … with no gap and no repeat, in partition order.
    assert numbers == {channel: list(range(1, count + 1)) for channel in CHANNELS}
    assert "Traceback" not in service.logs()


def test_untrusted_broker_certificate_is_one_clear_line_and_loses_nothing(
    tls_broker: LocalBroker,
    kafka_ca: tuple[trustme.CA, Path],
    simulator: SimulatorThread,
    start_service: StartService,
    tmp_path: Path,
) -> None:
    wrong_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong_ca))
    buffer_dir = tmp_path / "buffer"
    env = _service_env(simulator, tls_broker, wrong_ca, buffer_dir)
    service = start_service(env)
    count = 50
    _stream(simulator, count)

    failed = service.wait_for_log("kafka tls handshake failed")
    assert "KAFKA_SSL_CA_LOCATION" in failed["problem"]
    assert failed["level"] == "error"
    status, details = _readiness(env)
    assert status == 503
    assert details["kafka"] == "not ready"
    assert service.process.poll() is None, "the service must keep running"
    # Nothing reached the broker: not even the topics were created.
    trusted = AdminClient(_ssl_client_config(tls_broker, kafka_ca[1]))
    assert env["KAFKA_TOPIC_CHAT_MESSAGES"] not in trusted.list_topics(timeout=10).topics

    service.stop()
    logs = service.logs()
    assert "Traceback" not in logs
    stopped = next(e for e in service.log_events() if e["event"] == "service stopped")
    assert stopped["undelivered"] >= count * len(CHANNELS)

    # Nothing lost: restarted with the right CA, the service delivers what it buffered.
    fixed = start_service({**env, "KAFKA_SSL_CA_LOCATION": str(kafka_ca[1])})
    numbers = _read_numbers(
        tls_broker, kafka_ca[1], env["KAFKA_TOPIC_CHAT_MESSAGES"], expected=count * len(CHANNELS)
    )
    assert numbers == {channel: list(range(1, count + 1)) for channel in CHANNELS}
    assert fixed.stop() == 0
