"""EventSub in a fleet: channels added and removed at run time become subscriptions
created and deleted per channel.

First the client alone (no Kafka): `dynamic_channels` with add/remove against the
EventSub simulator. Then the service as operators run it: two `twitch-ingestion run`
instances with CHANNEL_SOURCE=kafka and TWITCH_SOURCE=eventsub share the control
topic's channels, each channel subscribed by exactly one of them.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.eventsub_helpers import (
    Running,
    assert_exactly_once,
    eventsub_env,
    exactly_once,
    settings_for,
)
from tests.integration.kafka_helpers import collect_records, delete_topics
from tests.integration.service_process import StartService, clean_environment
from tests.support.ports import free_port
from tests.support.waiting import eventually
from twitch_ingestion.simulator.eventsub_server import (
    EventSubSimulator,
    EventSubSimulatorThread,
)
from twitch_ingestion.simulator.wire import room_id_for
from twitch_ingestion.sources.eventsub.records import CHAT_SUBSCRIPTION_TYPES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TYPES = len(CHAT_SUBSCRIPTION_TYPES)


def subscriptions_by_channel(sim: EventSubSimulatorThread) -> dict[str, collections.Counter[str]]:
    """Broadcaster id → session id → how many subscriptions it holds there."""

    def read(simulator: EventSubSimulator) -> dict[str, collections.Counter[str]]:
        found: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for session_id, _, broadcaster in simulator.subscriptions():
            found[broadcaster][session_id] += 1
        return dict(found)

    return sim.call(read)


def each_subscribed_once(sim: EventSubSimulatorThread, channels: list[str]) -> Callable[[], bool]:
    """Exactly `channels` are subscribed, each fully and on one session only."""
    wanted = {room_id_for(channel) for channel in channels}

    def check() -> bool:
        found = subscriptions_by_channel(sim)
        return set(found) == wanted and all(
            list(sessions.values()) == [TYPES] for sessions in found.values()
        )

    return check


# ---------------------------------------------------------------------------------------
# The client alone


async def test_channels_added_and_removed_at_run_time_are_subscribed_and_unsubscribed(
    eventsub: EventSubSimulatorThread,
) -> None:
    token = eventsub.issue_token()
    settings = settings_for(eventsub, token, [], dynamic_channels=True)
    async with Running(settings) as running:
        client, output = running.client, running.output
        await asyncio.sleep(0.2)
        assert not running.task.done()  # type: ignore[union-attr]  # no channels: fine

        client.add_channels(("alpha", "bravo"))
        client.add_channels(("charlie",))
        await eventually(each_subscribed_once(eventsub, ["alpha", "bravo", "charlie"]), "3")
        await eventually(lambda: client.subscribed_logins() == {"alpha", "bravo", "charlie"}, "j")
        assert len(client.connections) == 1  # 60 channels fit on one connection
        eventsub.start_numbered(["alpha", "bravo", "charlie"], count=50)
        await eventually(lambda: exactly_once(output, 50), "chat on all three")

        client.remove_channels(("charlie",))
        await eventually(each_subscribed_once(eventsub, ["alpha", "bravo"]), "charlie gone")
        assert client.subscribed_logins() == {"alpha", "bravo"}

        client.add_channels(("charlie", "nosuchuser"))
        eventsub.call(lambda sim: sim.unknown_logins.add("nosuchuser"))
        await eventually(each_subscribed_once(eventsub, ["alpha", "bravo", "charlie"]), "back")
        await eventually(lambda: len(output.problems) == 1, "the unknown login reported")
        assert output.problems[0].channel == "nosuchuser"

        client.remove_channels(("alpha", "bravo", "charlie", "nosuchuser"))
        await eventually(lambda: subscriptions_by_channel(eventsub) == {}, "everything removed")
        await eventually(lambda: client.connections == [], "the empty connection closed")
        assert not running.task.done()  # type: ignore[union-attr]


async def test_channels_beyond_one_connection_open_another(
    eventsub: EventSubSimulatorThread,
) -> None:
    eventsub.call(lambda sim: setattr(sim.config, "rate_limit_points", 10_000))
    token = eventsub.issue_token()
    settings = settings_for(eventsub, token, [], dynamic_channels=True)
    channels = [f"chan{index}" for index in range(70)]
    async with Running(settings) as running:
        running.client.add_channels(tuple(channels[:40]))
        await eventually(lambda: len(running.client.subscribed_logins()) == 40, "40 channels")
        running.client.add_channels(tuple(channels[40:]))
        await eventually(each_subscribed_once(eventsub, channels), "70 channels")
        assert sorted(len(c.channels) for c in running.client.connections) == [10, 60]


# ---------------------------------------------------------------------------------------
# Two service instances sharing the control topic


def test_two_eventsub_instances_share_the_control_topics_channels(
    eventsub: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:10]
    control = {
        "KAFKA_TOPIC_CHANNELS": f"test-channels-{suffix}",
        "KAFKA_TOPIC_INSTANCES": f"test-instances-{suffix}",
        "KAFKA_CHANNELS_GROUP": f"test-fleet-{suffix}",
    }
    channels = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    token = eventsub.issue_token()
    env = {
        **eventsub_env(eventsub, token, []),
        **topics,
        **control,
        "TWITCH_CHANNEL": "",
        "CHANNEL_SOURCE": "kafka",
        "KAFKA_CHANNELS_PARTITIONS": "8",
        "KAFKA_CHANNELS_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_BROKERS": kafka_brokers,
    }
    try:
        subprocess.run(
            [sys.executable, "-m", "twitch_ingestion", "channels", "add", *channels],
            cwd=tmp_path,
            env=clean_environment(env),
            capture_output=True,
            timeout=60,
            check=True,
        )
        instances = [
            start_service(
                {
                    **env,
                    "INSTANCE_ID": name,
                    "BUFFER_DIR": str(tmp_path / f"buffer-{name}"),
                    "HEALTH_PORT": str(free_port()),
                }
            )
            for name in ("es_a", "es_b")
        ]
        deadline = time.monotonic() + 90
        while not each_subscribed_once(eventsub, channels)():
            assert time.monotonic() < deadline, "channels not subscribed once each"
            time.sleep(0.2)
        # Both instances read some: two sessions hold the subscriptions.
        sessions = {s for c in subscriptions_by_channel(eventsub).values() for s in c}
        wait_settled = time.monotonic() + 60
        while len(sessions) != 2 or not each_subscribed_once(eventsub, channels)():
            assert time.monotonic() < wait_settled, f"not shared: {sessions}" + "".join(
                f"\n--- {i}\n{service.logs()[-4000:]}" for i, service in enumerate(instances)
            )
            time.sleep(0.2)
            sessions = {s for c in subscriptions_by_channel(eventsub).values() for s in c}

        eventsub.start_numbered(channels, count=100)
        records = collect_records(
            kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=600, timeout_s=60
        )
        assert_exactly_once(records, channels, 100)

        subprocess.run(
            [sys.executable, "-m", "twitch_ingestion", "channels", "remove", "foxtrot"],
            cwd=tmp_path,
            env=clean_environment(env),
            capture_output=True,
            timeout=60,
            check=True,
        )
        deadline = time.monotonic() + 60
        while not each_subscribed_once(eventsub, channels[:-1])():
            assert time.monotonic() < deadline, "foxtrot still subscribed"
            time.sleep(0.2)
        for service in instances:
            assert service.stop() == 0, service.logs()[-3000:]
            assert token.access_token not in service.logs()
    finally:
        delete_topics(
            kafka_brokers, [control["KAFKA_TOPIC_CHANNELS"], control["KAFKA_TOPIC_INSTANCES"]]
        )
