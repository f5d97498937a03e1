"""Fixtures for tests against the real local Kafka broker and the Twitch simulator."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.integration.kafka_helpers import delete_topics
from tests.integration.service_process import ServiceProcess
from twitch_ingestion.simulator import SimulatorConfig, SimulatorThread
from twitch_ingestion.simulator.eventsub_server import (
    EventSubSimulatorConfig,
    EventSubSimulatorThread,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO_ROOT / "scripts" / "kafka-local"


def _broker_answers(brokers: str) -> bool:
    host, _, port = brokers.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_brokers() -> str:
    """The broker the tests use: TEST_KAFKA_BROKERS, else the project's local broker."""
    brokers = os.environ.get("TEST_KAFKA_BROKERS", "127.0.0.1:9092")
    if "TEST_KAFKA_BROKERS" not in os.environ and not _broker_answers(brokers):
        subprocess.run([str(KAFKA_LOCAL), "start"], check=True, stdin=subprocess.DEVNULL)
    return brokers


@pytest.fixture
def topics(kafka_brokers: str) -> Iterator[dict[str, str]]:
    """Fresh topic names for one test (deleted afterwards) and the env naming them."""
    suffix = uuid.uuid4().hex[:10]
    names = {
        "KAFKA_TOPIC_CHAT_MESSAGES": f"test-chat-{suffix}",
        "KAFKA_TOPIC_CHAT_EVENTS": f"test-events-{suffix}",
        "KAFKA_TOPIC_DLQ": f"test-chat-{suffix}.dlq",
    }
    yield names
    delete_topics(kafka_brokers, list(names.values()))


@pytest.fixture
def start_service(
    tmp_path: Path, kafka_brokers: str
) -> Iterator[Callable[[dict[str, str]], ServiceProcess]]:
    """Start `twitch-ingestion run` subprocesses; every one is killed at teardown."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        full_env = {
            "KAFKA_BROKERS": kafka_brokers,
            "BUFFER_DIR": str(tmp_path / "buffer"),
            "KAFKA_TOPIC_PARTITIONS": "3",
            **env,
        }
        service = ServiceProcess(tmp_path, full_env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    """A Twitch IRC simulator on an ephemeral port, in a background thread."""
    with SimulatorThread(SimulatorConfig(seed=7)) as running:
        yield running


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority, made for this test run and trusted by nothing
    else: the simulator's certificate is signed by it."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tls_ca`'s certificate as a PEM file, for the service's SSL_CERT_FILE."""
    path = tmp_path_factory.mktemp("tls") / "test-ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def tls_simulator(tls_ca: trustme.CA) -> Iterator[SimulatorThread]:
    """The simulator serving TLS, as Twitch does on its default port: the production
    setting TWITCH_IRC_TLS=true, with a certificate for 127.0.0.1 signed by `tls_ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with SimulatorThread(SimulatorConfig(seed=7, ssl_context=context)) as running:
        yield running


def twitch_env(
    simulator: SimulatorThread, channels: list[str], *, ca_file: Path | None = None
) -> dict[str, str]:
    """Settings that point the service at the simulator instead of Twitch.

    For a TLS simulator, `ca_file` is the CA the service is told to trust
    (SSL_CERT_FILE, which Python's default TLS context reads); without it the service
    trusts only the system's CAs, which never signed the simulator's certificate.
    """
    env = {
        "TWITCH_CHANNEL": ",".join(channels),
        "TWITCH_IRC_HOST": simulator.host,
        "TWITCH_IRC_PORT": str(simulator.port),
        "TWITCH_IRC_TLS": "true" if simulator.tls else "false",
    }
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    return env


@pytest.fixture
def eventsub() -> Iterator[EventSubSimulatorThread]:
    """The EventSub simulator (WebSocket + OAuth + Helix) on an ephemeral port, in a thread;
    deadlines long enough for a loaded machine."""
    config = EventSubSimulatorConfig(subscribe_deadline_s=10.0, reconnect_grace_s=10.0)
    with EventSubSimulatorThread(config) as running:
        yield running
