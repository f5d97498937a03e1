"""EventSub heals itself (issue 19): Twitch's temporary failures are retried until they
work, permanent ones are reported, readiness says the truth, and only refused credentials
end the service with exit 3.

First the client against the EventSub simulator over real sockets (fast, no Kafka), then
`twitch-ingestion run` against the simulator and the real broker, counting numbered chat
in Kafka. Faults are the simulator's (`fail_helix`, `dead_session_linger_s`,
`conflict_across_sessions`, `unreachable`, `vanish`, pings); timeouts are shortened
through settings, and every wait is a bounded condition wait.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest

from tests.integration.eventsub_helpers import (
    CHANNELS,
    Collector,
    Running,
    assert_exactly_once,
    eventsub_env,
    exactly_once,
    settings_for,
    subscribed,
)
from tests.integration.kafka_helpers import collect_records
from tests.integration.service_process import StartService
from tests.support.health_endpoint import http_get, metric
from tests.support.ports import free_port
from tests.support.waiting import eventually, wait_until
from twitch_ingestion.simulator.eventsub_server import EventSubSimulator, EventSubSimulatorThread
from twitch_ingestion.sources.eventsub.client import EventSubClient
from twitch_ingestion.sources.eventsub.output import SourceFailure
from twitch_ingestion.sources.eventsub.records import CHAT_SUBSCRIPTION_TYPES
from twitch_ingestion.sources.eventsub.service_source import EventSubFailed
from twitch_ingestion.sources.eventsub.session import ReconnectKind

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SUBSCRIPTIONS = len(CHANNELS) * len(CHAT_SUBSCRIPTION_TYPES)


# ---------------------------------------------------------------------------------------
# The client alone


async def test_bursts_of_5xx_and_timeouts_from_helix_are_retried_until_every_channel_is_in(
    eventsub: EventSubSimulatorThread,
) -> None:
    # Ten creates hang past the client's timeout, then twenty answer 503 or 500.
    def faults(sim: EventSubSimulator) -> None:
        sim.fail_helix(504, count=10, hang_s=1.0)
        sim.fail_helix(503, count=10)
        sim.fail_helix(500, count=10)

    eventsub.call(faults)
    token = eventsub.issue_token()
    settings = settings_for(eventsub, token, http_timeout_s=0.5, subscribe_concurrency=5)
    async with Running(settings) as running:
        client, output = running.client, running.output
        await eventually(subscribed(eventsub, 3), "every subscription despite the faults")
        await eventually(lambda: client.subscribed_logins() == set(CHANNELS), "the client knows it")
        assert eventsub.stats().helix_faults == 30
        assert client.stats.subscription_failures >= 30
        assert output.problems == []  # temporary: nothing reported as "not read"
        eventsub.start_numbered(CHANNELS, count=20)
        await eventually(lambda: exactly_once(output, 20), "chat")


async def test_get_users_failing_at_start_up_is_retried_instead_of_ending_the_source(
    eventsub: EventSubSimulatorThread,
) -> None:
    eventsub.call(lambda sim: sim.fail_helix(503, endpoints=("users",), count=3))
    token = eventsub.issue_token()
    async with Running(settings_for(eventsub, token)) as running:
        await eventually(
            lambda: any(
                status.failure is not None and "503" in status.failure.message
                for status in running.client.channel_statuses().values()
            ),
            "the channels shown failing while Get Users fails",
        )
        await eventually(subscribed(eventsub, 3), "the subscriptions once Helix answers")
        assert eventsub.stats().users_calls == 4
        assert running.output.problems == []


async def test_twitch_max_reconnect_attempts_ends_an_outage_with_a_give_up_not_exit_3(
    eventsub: EventSubSimulatorThread,
) -> None:
    token = eventsub.issue_token()
    dead_url = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens there
    settings = settings_for(eventsub, token, eventsub_url=dead_url, max_unproductive_sessions=3)
    client = EventSubClient(settings, Collector())
    async with asyncio.timeout(30):
        failure = await client.run()
    assert isinstance(failure, SourceFailure)
    assert failure.variable == "TWITCH_MAX_RECONNECT_ATTEMPTS"
    assert not EventSubFailed(failure).is_authentication  # exit 4, not 3
    assert len(client.stats.reconnects) == 2


async def test_a_429_without_ratelimit_reset_waits_a_moment_and_goes_on(
    eventsub: EventSubSimulatorThread,
) -> None:
    eventsub.call(lambda sim: sim.rate_limit_next(2, reset=False))
    token = eventsub.issue_token()
    async with Running(settings_for(eventsub, token)) as running:
        await eventually(subscribed(eventsub, 3), "the subscriptions")
        assert running.client.stats.rate_limited == 2
        assert running.output.problems == []


async def test_a_subscription_that_vanishes_without_a_revocation_is_found_and_recreated(
    eventsub: EventSubSimulatorThread,
) -> None:
    token = eventsub.issue_token()
    async with Running(settings_for(eventsub, token, check_interval_s=0.5)) as running:
        await eventually(subscribed(eventsub, 3), "the subscriptions")
        created = eventsub.stats().subscriptions_created
        assert eventsub.call(lambda sim: sim.vanish("bravo", "channel.chat.message")) == 1
        await eventually(
            lambda: eventsub.stats().subscriptions_created == created + 1, "the re-creation"
        )
        await eventually(subscribed(eventsub, 3), "all subscriptions again")
        assert eventsub.stats().lists >= 1
        eventsub.start_numbered(CHANNELS, count=20)
        await eventually(lambda: exactly_once(running.output, 20), "chat on all three")


async def test_an_authorization_revoked_revocation_validates_at_once_and_a_dead_token_ends_it(
    eventsub: EventSubSimulatorThread,
) -> None:
    token = eventsub.issue_token()
    output = Collector()
    client = EventSubClient(settings_for(eventsub, token, refresh=False), output)
    task = asyncio.create_task(client.run())
    try:
        await eventually(subscribed(eventsub, 3), "the subscriptions")
        validations = eventsub.stats().validate_calls
        # The user disconnected the app: the token dies and Twitch revokes.
        eventsub.call(lambda sim: sim.expire_token(token.access_token))
        eventsub.call(
            lambda sim: sim.revoke("alpha", "channel.chat.message", "authorization_revoked")
        )
        async with asyncio.timeout(10):  # not the hourly validation: at once
            failure = await task
    finally:
        client.stop()
    assert isinstance(failure, SourceFailure)
    assert failure.variable == "TWITCH_OAUTH_TOKEN"
    assert failure.reason == "token-invalid"
    assert eventsub.stats().validate_calls == validations + 1


async def test_a_public_client_refreshes_its_token_without_a_secret(
    eventsub: EventSubSimulatorThread,
) -> None:
    eventsub.call(lambda sim: setattr(sim.config, "public_client", True))
    token = eventsub.issue_token(lifetime_s=3.0)
    settings = settings_for(
        eventsub, token, client_secret="", public_client=True, refresh_margin_s=2.0
    )
    async with Running(settings) as running:
        await eventually(subscribed(eventsub, 3), "the subscriptions")
        keeper = running.client.keeper
        assert keeper is not None
        await eventually(lambda: keeper.refreshes == 1, "a refresh without the secret")
        assert keeper.access_token != token.access_token


async def test_a_reader_that_stops_reading_misses_twitchs_ping_and_gets_4002(
    eventsub: EventSubSimulatorThread,
) -> None:
    """What BUFFER_FULL_POLICY=block costs once the held records overflow: the reader
    stops, Twitch's ping goes unanswered, and the session is closed (then re-made)."""

    def pings(sim: EventSubSimulator) -> None:
        sim.config.ping_interval_s = 0.3
        sim.config.pong_timeout_s = 0.6

    eventsub.call(pings)
    gate = asyncio.Event()
    gate.set()

    class Full(Collector):
        def room(self) -> Any:
            return None if gate.is_set() else gate.wait()

    token = eventsub.issue_token()
    client = EventSubClient(settings_for(eventsub, token, keepalive_timeout_s=10), Full())
    task = asyncio.create_task(client.run())
    try:
        await eventually(subscribed(eventsub, 3), "the subscriptions")
        await eventually(lambda: eventsub.stats().pongs_received >= 2, "pongs while reading")
        # The held records overflow: the next frame blocks the reader, nothing is answered.
        gate.clear()
        eventsub.start_numbered(CHANNELS, count=1)
        await eventually(lambda: eventsub.stats().closes_sent.get(4002) == 1, "Twitch's 4002")
        gate.set()
        await eventually(lambda: client.stats.reconnects != [], "the reconnect")
        # Twitch drops the connection after its close frame: a reader that resumes late
        # fails on the pong it owes before it reads the code, and just sees it closed.
        assert client.stats.reconnects[0] in (
            ("close-4002", ReconnectKind.IMMEDIATE),
            ("closed", ReconnectKind.BACKOFF),
        )
        await eventually(subscribed(eventsub, 3), "subscribed again")
    finally:
        client.stop()
        async with asyncio.timeout(10):
            assert await task is None


# ---------------------------------------------------------------------------------------
# The service, the simulator and the real broker


def readyz(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    status, body = http_get(env, "/readyz")
    return status, (json.loads(body) if body else {})


def log_channels(events: list[dict[str, Any]], event: str) -> set[str]:
    return {e["channel"] for e in events if e["event"] == event}


HELIX_DOWN_S = 20.0


def test_helix_answering_503_to_every_create_for_20_s_ends_with_every_channel_subscribed(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    eventsub.call(lambda sim: setattr(sim.config, "subscribe_deadline_s", 4.0))
    eventsub.call(lambda sim: sim.fail_helix(503, endpoints=("create",), for_s=HELIX_DOWN_S))
    token = eventsub.issue_token()
    env = {**eventsub_env(eventsub, token, CHANNELS), **topics}
    service = start_service(env)
    # Chat goes on throughout: half while Helix refuses, half once it is back.
    eventsub.start_numbered(CHANNELS, count=50, rate=10)

    def names_every_channel() -> bool:
        status, body = readyz(env)
        missing = body.get("channels", {}).get("not_subscribed", {})
        return status == 503 and all(
            "transient" in missing.get(channel, "") and "503" in missing.get(channel, "")
            for channel in CHANNELS
        )

    wait_until(names_every_channel, "/readyz 503 naming each channel and the 503")
    body = readyz(env)[1]
    assert body["channels"]["desired"] == 3
    assert body["channels"]["subscribed"] == 0
    assert metric(env, "twitch_ingestion_eventsub_desired_channels") == 3
    assert metric(env, "twitch_ingestion_eventsub_subscribed_channels") == 0
    assert service.process.poll() is None

    wait_until(subscribed(eventsub, 3), "every channel subscribed once Helix is back")
    wait_until(lambda: readyz(env)[0] == 200, "/readyz 200")
    assert readyz(env)[1]["channels"] == {"desired": 3, "subscribed": 3, "not_subscribed": {}}
    assert metric(env, "twitch_ingestion_eventsub_subscribed_channels") == 3
    assert (
        metric(env, 'twitch_ingestion_eventsub_subscription_failures_total{reason="transient"}') > 0
    )
    eventsub.start_numbered(CHANNELS, count=50, rate=600)
    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=300, timeout_s=60
    )
    assert_exactly_once(records, CHANNELS, 100)
    events = service.log_events()
    assert log_channels(events, "eventsub channel unsubscribed") == set(CHANNELS)
    assert log_channels(events, "eventsub channel subscribed") == set(CHANNELS)
    assert "eventsub channel not read" not in {e["event"] for e in events}
    assert service.stop(signal.SIGTERM) == 0


LINGER_S = 10.0


def test_a_reconnect_while_the_dead_session_still_counts_drops_nothing_and_never_exits(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    def one_transport_and_a_slow_twitch(sim: EventSubSimulator) -> None:
        sim.config.connections_per_user = 1
        sim.config.dead_session_linger_s = LINGER_S

    eventsub.call(one_transport_and_a_slow_twitch)
    token = eventsub.issue_token()
    env = {**eventsub_env(eventsub, token, CHANNELS), **topics}
    service = start_service(env)
    wait_until(subscribed(eventsub, 3), "the first subscriptions")
    wait_until(lambda: readyz(env)[0] == 200, "/readyz 200")
    eventsub.start_numbered(CHANNELS, count=30)

    eventsub.call(lambda sim: sim.close(4000))
    # Twitch still counts the dead session's transport: 429 for every create.
    wait_until(
        lambda: eventsub.stats().subscription_refusals.get(429, 0) >= SUBSCRIPTIONS,
        "the 429s of the transport limit",
    )
    assert readyz(env)[0] == 503
    eventsub.start_numbered(CHANNELS, count=30, rate=10)
    wait_until(lambda: not eventsub.call(lambda sim: sim.lingering_session_ids()), "the linger")
    wait_until(subscribed(eventsub, 3), "every channel subscribed again")
    wait_until(lambda: readyz(env)[0] == 200, "/readyz 200 again")
    assert service.process.poll() is None

    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=180, timeout_s=60
    )
    assert_exactly_once(records, CHANNELS, 60)
    assert (
        metric(
            env, 'twitch_ingestion_eventsub_subscription_failures_total{reason="limit-exceeded"}'
        )
        > 0
    )
    reported = [e for e in service.log_events() if e["event"] == "eventsub channel not read"]
    assert {e["reason"] for e in reported} == {"limit-exceeded"}
    assert all("transports limit exceeded" in e["detail"] for e in reported)
    assert service.stop(signal.SIGTERM) == 0


def test_a_stale_409_held_by_a_dead_session_is_deleted_and_created_anew(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    def stale_subscriptions(sim: EventSubSimulator) -> None:
        sim.config.dead_session_linger_s = 120.0  # far longer than the test
        sim.config.conflict_across_sessions = True

    eventsub.call(stale_subscriptions)
    token = eventsub.issue_token()
    env = {**eventsub_env(eventsub, token, CHANNELS), **topics}
    service = start_service(env)
    wait_until(subscribed(eventsub, 3), "the first subscriptions")
    eventsub.start_numbered(CHANNELS, count=30)
    eventsub.call(lambda sim: sim.close(4000))

    wait_until(
        lambda: eventsub.stats().subscription_refusals.get(409, 0) >= SUBSCRIPTIONS,
        "a 409 for every subscription (the dead session holds them)",
    )
    wait_until(subscribed(eventsub, 3), "subscribed on the new session")
    # The dead session still lingers: the stale ones were deleted, not waited out.
    assert eventsub.call(lambda sim: sim.lingering_session_ids())
    assert eventsub.stats().deletes >= SUBSCRIPTIONS
    eventsub.start_numbered(CHANNELS, count=30, rate=600)
    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=180, timeout_s=60
    )
    assert_exactly_once(records, CHANNELS, 60)
    wait_until(lambda: readyz(env)[0] == 200, "/readyz 200")
    assert service.stop(signal.SIGTERM) == 0


UNREACHABLE_S = 30.0


def test_helix_and_the_websocket_unreachable_for_30_s_never_exit_and_recover(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    token = eventsub.issue_token()
    env = {
        **eventsub_env(eventsub, token, CHANNELS),
        **topics,
        "TWITCH_RECONNECT_BASE_S": "0.5",
        "TWITCH_RECONNECT_MAX_S": "2",
    }
    service = start_service(env)
    wait_until(subscribed(eventsub, 3), "the subscriptions")
    wait_until(lambda: readyz(env)[0] == 200, "/readyz 200")
    eventsub.start_numbered(CHANNELS, count=20)

    started = time.monotonic()
    eventsub.run(eventsub.simulator.unreachable(UNREACHABLE_S))
    eventsub.start_numbered(CHANNELS, count=20)  # said while nobody can be subscribed
    wait_until(lambda: readyz(env)[0] == 503, "/readyz 503 while Twitch is unreachable")
    wait_until(
        lambda: sum(e["event"] == "eventsub reconnect" for e in service.log_events()) >= 3,
        "reconnect attempts",
    )
    wait_until(subscribed(eventsub, 3), "subscribed again", timeout_s=UNREACHABLE_S + 60)
    back_after = time.monotonic() - started
    assert back_after >= UNREACHABLE_S
    assert service.process.poll() is None  # never exited, never exit 3
    wait_until(lambda: readyz(env)[0] == 200, "/readyz 200 again")

    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=120, timeout_s=60
    )
    assert_exactly_once(records, CHANNELS, 40)
    reconnects = [e for e in service.log_events() if e["event"] == "eventsub reconnect"]
    assert any("connect" in str(e.get("failing")) for e in reconnects), reconnects[-3:]
    assert max(e["retry_in_s"] for e in reconnects) <= 2 * 1.2  # the backoff's cap
    assert "twitch authentication failed" not in {e["event"] for e in service.log_events()}
    assert service.stop(signal.SIGTERM) == 0
