"""EventSub simulator → `twitch-ingestion run` with TWITCH_SOURCE=eventsub → the real broker.

The service runs as a user runs it (a subprocess, per-test topics); the EventSub
simulator plays Twitch (WebSocket, OAuth, Helix) in a thread. Numbered chat
(`seq <channel> <n>`) is counted in what reached Kafka. Timeouts are shortened through
settings (keepalive 2 s, backoff 50-200 ms); every wait is a bounded condition wait.
"""

from __future__ import annotations

import collections
import copy
import json
import signal
from typing import Any

import msgspec
import pytest

from tests.integration.eventsub_helpers import (
    CHANNELS,
    assert_exactly_once,
    eventsub_env,
    subscribed,
)
from tests.integration.kafka_helpers import collect_records
from tests.integration.service_process import StartService
from tests.support.eventsub_equivalences import (
    CHAT_EQUIVALENCES,
    NOTICE_EQUIVALENCES,
    NOTICE_EVENTS,
)
from tests.support.health_endpoint import http_get, metric
from tests.support.waiting import wait_until
from twitch_ingestion.models import ChatMessage, decode_chat_event, decode_chat_message
from twitch_ingestion.simulator.eventsub_server import (
    EventSubSimulator,
    EventSubSimulatorThread,
)
from twitch_ingestion.simulator.wire import room_id_for
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.routing import route_message

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WAIT_S = 60.0
"""Bound for every condition wait: generous for a loaded 2-core machine, never reached
when things work."""


# ---------------------------------------------------------------------------------------
# Exactly once, through the three ways a session ends


@pytest.mark.parametrize("fault", ["session_reconnect", "keepalive_loss", "token_expiry"])
def test_numbered_chat_over_three_channels_reaches_kafka_exactly_once_through(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
    fault: str,
) -> None:
    token = eventsub.issue_token()
    env = {**eventsub_env(eventsub, token, CHANNELS), **topics}
    service = start_service(env)
    wait_until(subscribed(eventsub, 3), "the first subscriptions")
    wait_until(lambda: http_get(env, "/readyz")[0] == 200, "/readyz 200 once subscribed")
    eventsub.start_numbered(CHANNELS, count=150)
    wait_until(
        lambda: eventsub.stats().numbered_high_water == dict.fromkeys(CHANNELS, 150),
        "the first 150 numbers queued",
    )

    if fault == "session_reconnect":
        eventsub.call(lambda sim: sim.send_reconnect())
    elif fault == "keepalive_loss":
        eventsub.call(lambda sim: sim.go_silent())
    else:
        # The token dies under the running service; the next Helix call answers 401 and
        # the service must refresh it and carry on with the new pair.
        eventsub.call(lambda sim: sim.expire_token(token.access_token))
        eventsub.call(lambda sim: sim.close(4000))
    eventsub.start_numbered(CHANNELS, count=150, rate=600)
    wait_until(subscribed(eventsub, 3), "the subscriptions after the fault")

    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=900, timeout_s=WAIT_S
    )
    assert_exactly_once(records, CHANNELS, 300)

    stats = eventsub.stats()
    assert stats.redelivered > 0  # Twitch's at-least-once was exercised
    assert metric(env, "twitch_ingestion_eventsub_duplicates_dropped_total") == stats.redelivered
    assert metric(env, "twitch_ingestion_eventsub_notifications_total") == 900
    if fault == "session_reconnect":
        assert metric(env, "twitch_ingestion_eventsub_session_migrations_total") == 1
        assert stats.sessions_with_subscriptions == 1  # subscriptions carried over
    elif fault == "keepalive_loss":
        assert metric(env, "twitch_ingestion_eventsub_reconnects_total") == 1
    else:
        assert metric(env, "twitch_ingestion_eventsub_token_refreshes_total") == 1
        assert stats.helix_unauthorized >= 1

    assert service.stop(signal.SIGTERM) == 0
    stopped = next(e for e in service.log_events() if e["event"] == "service stopped")
    assert stopped["undelivered"] == 0
    logs = service.logs()
    assert token.access_token not in logs
    assert token.refresh_token not in logs


def test_sigterm_mid_stream_delivers_everything_read_in_order(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    token = eventsub.issue_token()
    service = start_service({**eventsub_env(eventsub, token, CHANNELS), **topics})
    wait_until(subscribed(eventsub, 3), "the subscriptions")
    eventsub.start_numbered(CHANNELS, count=1_000_000, rate=3000)
    wait_until(lambda: sum(eventsub.stats().numbered_high_water.values()) > 1500, "a stream")

    assert service.stop(signal.SIGTERM) == 0
    stopped = next(e for e in service.log_events() if e["event"] == "service stopped")
    assert stopped["undelivered"] == 0
    assert stopped["enqueued"] > 1000
    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=stopped["enqueued"]
    )
    assert len(records) == stopped["enqueued"]
    seen: dict[str, list[int]] = collections.defaultdict(list)
    for item in sorted(records, key=lambda r: (r.partition, r.offset)):
        _, channel, number = decode_chat_message(item.value).message.split(" ")
        seen[channel].append(int(number))
    for channel, got in seen.items():
        # Per channel: 1, 2, 3 … with no gap and no repeat, in partition order.
        assert got == list(range(1, len(got) + 1)), channel


# ---------------------------------------------------------------------------------------
# Credentials that cannot work: exit 3, one line naming the variable, no token


@pytest.mark.parametrize(
    ("problem", "variable"),
    [
        ("missing_scope", "TWITCH_OAUTH_TOKEN"),
        ("wrong_client_id", "TWITCH_CLIENT_ID"),
        ("expired_without_refresh", "TWITCH_OAUTH_TOKEN"),
    ],
)
def test_unusable_credentials_exit_3_naming_the_variable_never_the_token(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    problem: str,
    variable: str,
) -> None:
    if problem == "missing_scope":
        token = eventsub.issue_token(scopes=("chat:read", "chat:edit"))
    elif problem == "wrong_client_id":
        token = eventsub.issue_token(client_id="someoneelsesclientid000000000")
    else:
        token = eventsub.issue_token(lifetime_s=0)
    service = start_service({**eventsub_env(eventsub, token, CHANNELS, refresh=False), **topics})

    assert service.wait_exit(timeout_s=30) == 3
    failures = [e for e in service.log_events() if e["event"] == "twitch authentication failed"]
    assert len(failures) == 1, service.logs()
    assert failures[0]["variable"] == variable
    assert variable in failures[0]["error"]
    assert "\n" not in failures[0]["error"]
    assert "Traceback" not in service.logs()
    assert token.access_token not in service.logs()  # stdout and stderr both go there


# ---------------------------------------------------------------------------------------
# Channels that cannot be read are reported; the others keep flowing


def test_unknown_login_cost_refusal_and_429_are_reported_and_the_rest_flows(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    eventsub.call(lambda sim: sim.unknown_logins.add("nosuchuser"))
    eventsub.call(lambda sim: sim.set_cost("expensive", 100))
    eventsub.call(lambda sim: sim.rate_limit_next(2))
    token = eventsub.issue_token()
    env = {**eventsub_env(eventsub, token, [*CHANNELS, "nosuchuser", "expensive"]), **topics}
    service = start_service(env)
    wait_until(subscribed(eventsub, 3), "the readable channels' subscriptions")

    def failed_channels() -> dict[str, str]:
        status, body = http_get(env, "/readyz")
        if not body:
            return {}
        details: dict[str, Any] = json.loads(body)
        failed: dict[str, str] = details.get("failed_channels", {})
        return failed if status == 200 else {}

    wait_until(lambda: len(failed_channels()) == 2, "/readyz ready, naming two channels")
    failed = failed_channels()
    assert failed["nosuchuser"].startswith("unknown-login")
    assert failed["expensive"].startswith("limit-exceeded")
    reported = {
        e["channel"]: e["reason"]
        for e in service.log_events()
        if e["event"] == "eventsub channel not read"
    }
    assert reported == {"nosuchuser": "unknown-login", "expensive": "limit-exceeded"}
    assert metric(env, "twitch_ingestion_eventsub_helix_rate_limited_total") == 2
    assert metric(env, "twitch_ingestion_eventsub_channels_not_read") == 2

    eventsub.start_numbered(CHANNELS, count=100)
    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=300, timeout_s=WAIT_S
    )
    assert_exactly_once(records, CHANNELS, 100)
    assert service.stop() == 0


# ---------------------------------------------------------------------------------------
# The same records as IRC, through Kafka


_IGNORED = {"timestamp", "received_at", "ingested_via", "tags"}


def _differing(eventsub: msgspec.Struct, irc: msgspec.Struct) -> set[str]:
    assert type(eventsub) is type(irc)
    return {
        name
        for name in eventsub.__struct_fields__
        if name not in _IGNORED and getattr(eventsub, name) != getattr(irc, name)
    }


def test_chat_and_a_notification_reach_kafka_as_the_records_irc_gives(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    chat_event, chat_line = CHAT_EQUIVALENCES["docs example with an emote"]
    _, sub_line, sub_differences = NOTICE_EQUIVALENCES["sub"]
    notice_event = NOTICE_EVENTS["sub"]
    token = eventsub.issue_token()
    env = {**eventsub_env(eventsub, token, ["streamer"]), **topics}
    service = start_service(env)
    wait_until(subscribed(eventsub, 1), "the subscriptions")
    # The simulator names the channel's user id itself; the IRC lines say the same.
    room_id = room_id_for("streamer")

    def here(event: dict[str, Any]) -> dict[str, Any]:
        event = copy.deepcopy(event)
        event["broadcaster_user_id"] = room_id
        return event

    eventsub.call(lambda sim: sim.queue_event("streamer", "channel.chat.message", here(chat_event)))
    eventsub.call(
        lambda sim: sim.queue_event("streamer", "channel.chat.notification", here(notice_event))
    )
    chat = collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=1)
    events = collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_EVENTS"], expected=1)
    assert len(chat) == len(events) == 1
    assert chat[0].key == events[0].key == b"streamer"

    def irc(line: str) -> Any:
        routed = route_message(
            parse_line(line.replace("room-id=1971641", f"room-id={room_id}")), 0, {}
        )
        assert routed is not None
        return routed.record

    message = decode_chat_message(chat[0].value)
    assert isinstance(message, ChatMessage)
    assert message.ingested_via == "eventsub"
    assert _differing(message, irc(chat_line)) == set()
    event = decode_chat_event(events[0].value)
    assert event.ingested_via == "eventsub"
    assert json.loads(events[0].value)["event_type"] == "subscription"
    assert _differing(event, irc(sub_line)) == sub_differences
    assert service.stop() == 0


# ---------------------------------------------------------------------------------------
# Nothing readable: the service ends (exit 4) naming TWITCH_CHANNEL


@pytest.mark.parametrize("how", ["unknown_logins", "every_subscription_refused"])
def test_when_no_configured_channel_can_be_read_the_service_exits_4_naming_the_variable(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    how: str,
) -> None:
    channels = ["ghost_one", "ghost_two"]

    def refuse(sim: EventSubSimulator) -> None:
        for channel in channels:
            if how == "unknown_logins":
                sim.unknown_logins.add(channel)
            else:
                sim.set_cost(channel, 100)

    eventsub.call(refuse)
    token = eventsub.issue_token()
    service = start_service({**eventsub_env(eventsub, token, channels), **topics})

    assert service.wait_exit(timeout_s=30) == 4, service.logs()
    gave_up = [e for e in service.log_events() if e["event"] == "twitch source gave up"]
    assert len(gave_up) == 1, service.logs()
    assert gave_up[0]["variable"] == "TWITCH_CHANNEL"
    assert "TWITCH_CHANNEL" in gave_up[0]["error"]
    assert "Traceback" not in service.logs()
    reported = {
        e["channel"] for e in service.log_events() if e["event"] == "eventsub channel not read"
    }
    assert reported == set(channels)
