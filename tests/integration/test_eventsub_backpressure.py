"""EventSub under backpressure (issue 19): with the sink blocked for longer than the
keepalive, the session survives (Twitch's pings are answered) and nothing is lost once
Kafka is back.

The sink is blocked for real: a private broker (`LocalBroker`, never the shared one) is
paused (SIGSTOP), and a 64 KiB buffer with BUFFER_FULL_POLICY=block fills, so `deliver`
waits until the broker is resumed.
The EventSub simulator pings every second and closes with 4002 when a pong is 2 s late.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.broker import LocalBroker
from tests.integration.eventsub_helpers import (
    assert_exactly_once,
    eventsub_env,
    subscribed,
)
from tests.integration.kafka_helpers import collect_records, create_topic
from tests.integration.service_process import StartService
from tests.support.health_endpoint import metric
from tests.support.waiting import wait_until
from twitch_ingestion.simulator.eventsub_server import EventSubSimulator, EventSubSimulatorThread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CHANNELS = ["alpha", "bravo", "charlie"]
PER_CHANNEL = 4000
"""12 000 records of ~600 bytes: far more than the 64 KiB buffer, more than the 10 000 at
which the reader used to stop reading (issue 19), fewer than the records the source now
holds (TWITCH_EVENTSUB_MAX_HELD_RECORDS, 50 000)."""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    with LocalBroker(tmp_path_factory.mktemp("kafka"), auto_create_topics=False) as running:
        yield running


def test_a_blocked_sink_longer_than_the_keepalive_keeps_the_session_and_loses_nothing(
    broker: LocalBroker,
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topics = {
        "KAFKA_TOPIC_CHAT_MESSAGES": f"bp-chat-{suffix}",
        "KAFKA_TOPIC_CHAT_EVENTS": f"bp-events-{suffix}",
        "KAFKA_TOPIC_DLQ": f"bp-chat-{suffix}.dlq",
    }
    for name in topics.values():
        create_topic(broker.bootstrap, name)

    def twitch_pings(sim: EventSubSimulator) -> None:
        sim.config.ping_interval_s = 1.0
        sim.config.pong_timeout_s = 2.0

    eventsub.call(twitch_pings)
    token = eventsub.issue_token()
    env = {
        **eventsub_env(eventsub, token, CHANNELS),
        **topics,
        "KAFKA_BROKERS": broker.bootstrap,
        "BUFFER_DIR": str(tmp_path / "buffer"),
        "BUFFER_MAX_BYTES": str(64 * 1024),
        "BUFFER_FULL_POLICY": "block",
        "KAFKA_MESSAGE_TIMEOUT_MS": "3000",
        "KAFKA_REQUEST_TIMEOUT_MS": "3000",
    }
    service = start_service(env)
    wait_until(subscribed(eventsub, 3), "the subscriptions")
    wait_until(lambda: metric(env, "twitch_ingestion_kafka_reachable") == 1, "Kafka reachable")
    total = PER_CHANNEL * len(CHANNELS)
    held = "twitch_ingestion_eventsub_held_records"
    broker.pause()
    try:
        eventsub.start_numbered(CHANNELS, count=PER_CHANNEL, rate=3000)
        wait_until(lambda: eventsub.stats().notifications_sent >= total, "every number sent")
        wait_until(lambda: metric(env, held) > 0, "records held for the blocked sink")
        # Longer than the keepalive (2 s), several pings: answered while the sink is stuck.
        pongs = eventsub.stats().pongs_received
        wait_until(lambda: eventsub.stats().pongs_received >= pongs + 4, "4 pings answered")
        assert metric(env, held) > 0, "the sink took the records: it was not blocked"
        assert metric(env, "twitch_ingestion_buffer_bytes") <= 64 * 1024
        assert eventsub.stats().closes_sent == {}
    finally:
        broker.resume()
    records = collect_records(
        broker.bootstrap, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=total, timeout_s=90
    )
    assert_exactly_once(records, CHANNELS, PER_CHANNEL)
    stats = eventsub.stats()
    assert stats.closes_sent == {}  # no 4002: the session survived
    assert stats.sessions_with_subscriptions == 1
    assert metric(env, "twitch_ingestion_eventsub_reconnects_total") == 0
    wait_until(lambda: metric(env, held) == 0, "nothing held once Kafka is back")
    assert service.stop(signal.SIGTERM) == 0
