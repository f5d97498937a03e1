"""What the EventSub integration tests share: the EventSub client run in the test's loop
(its settings, an output that collects, exactly-once checks), the service's settings for
the EventSub simulator, and waiting until the simulator holds N channels' subscriptions."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from tests.integration.kafka_helpers import ConsumedRecord
from tests.support.ports import free_port
from twitch_ingestion.models import ChatMessage, decode_chat_message
from twitch_ingestion.simulator.eventsub_server import (
    EventSubSimulator,
    EventSubSimulatorThread,
    IssuedToken,
)
from twitch_ingestion.simulator.streams import NUMBERED_SENDER
from twitch_ingestion.sources.eventsub.client import EventSubClient
from twitch_ingestion.sources.eventsub.config import EventSubConfig
from twitch_ingestion.sources.eventsub.helix import ChannelProblem
from twitch_ingestion.sources.eventsub.messages import DeadLetter
from twitch_ingestion.sources.eventsub.output import SourceFailure
from twitch_ingestion.sources.eventsub.records import CHAT_SUBSCRIPTION_TYPES, EventSubRecord

__all__ = [
    "CHANNELS",
    "WAIT_S",
    "Collector",
    "Running",
    "assert_exactly_once",
    "eventsub_env",
    "exactly_once",
    "numbers",
    "settings_for",
    "subscribed",
]

CHANNELS = ["alpha", "bravo", "charlie"]
WAIT_S = 30.0
"""Bound for every condition wait on a client in the test's loop (`waiting.eventually`'s
default): generous for a loaded 2-core machine, never reached when things work (the waits
end as soon as the condition holds)."""


def subscribed(sim: EventSubSimulatorThread, channels: int) -> Callable[[], bool]:
    """True once one live session holds every chat subscription of `channels` channels."""
    wanted = channels * len(CHAT_SUBSCRIPTION_TYPES)

    def check() -> bool:
        def count(simulator: EventSubSimulator) -> int:
            per_session = collections.Counter(s for s, _, _ in simulator.subscriptions())
            return max(per_session.values(), default=0)

        return sim.call(count) == wanted

    return check


class Collector:
    """An `EventSubOutput` that keeps everything."""

    def __init__(self) -> None:
        self.records: list[EventSubRecord] = []
        self.dead_letters: list[DeadLetter] = []
        self.problems: list[ChannelProblem] = []

    def record(self, record: EventSubRecord) -> None:
        self.records.append(record)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)

    def channel_problem(self, problem: ChannelProblem) -> None:
        self.problems.append(problem)

    def numbers(self) -> collections.Counter[tuple[str, int]]:
        """(channel, n) → how many times `seq <channel> <n>` arrived."""
        counts: collections.Counter[tuple[str, int]] = collections.Counter()
        for item in self.records:
            record = item.record
            if isinstance(record, ChatMessage) and record.username == NUMBERED_SENDER:
                _, channel, number = record.message.split(" ")
                assert channel == record.channel_id == item.key
                counts[channel, int(number)] += 1
        return counts


def settings_for(
    sim: EventSubSimulatorThread,
    token: IssuedToken,
    channels: list[str] | None = None,
    *,
    refresh: bool = True,
    **overrides: object,
) -> EventSubConfig:
    urls = sim.urls
    values: dict[str, object] = {
        "client_id": sim.config.client_id,
        "oauth_token": f"oauth:{token.access_token}",
        "channels": tuple(channels if channels is not None else CHANNELS),
        "client_secret": sim.config.client_secret if refresh else "",
        "refresh_token": token.refresh_token if refresh else "",
        "eventsub_url": urls["TWITCH_EVENTSUB_URL"],
        "api_url": urls["TWITCH_API_URL"],
        "auth_url": urls["TWITCH_AUTH_URL"],
        "keepalive_timeout_s": 2,
        "keepalive_margin_s": 1.0,
        "welcome_timeout_s": 5.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "refresh_retry_s": 0.5,
        "http_timeout_s": 5.0,
    }
    values.update(overrides)
    return EventSubConfig(**values)  # type: ignore[arg-type]


class Running:
    """A client running in the test's loop, stopped at the end of the `async with`."""

    def __init__(self, settings: EventSubConfig) -> None:
        self.output = Collector()
        self.client = EventSubClient(settings, self.output)
        self.task: asyncio.Task[SourceFailure | None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.client.run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.task is not None
        self.client.stop()
        async with asyncio.timeout(10):
            result = await self.task
        if exc_info[0] is None:
            assert result is None, result


def exactly_once(output: Collector, per_channel: int) -> bool:
    numbers = output.numbers()
    return all(
        numbers.get((channel, n), 0) == 1 for channel in CHANNELS for n in range(1, per_channel + 1)
    )


def eventsub_env(
    sim: EventSubSimulatorThread,
    token: IssuedToken,
    channels: list[str],
    *,
    refresh: bool = True,
) -> dict[str, str]:
    """Settings that point the service's EventSub source at the simulator."""
    env = {
        "TWITCH_SOURCE": "eventsub",
        "TWITCH_CHANNEL": ",".join(channels),
        "TWITCH_CLIENT_ID": sim.config.client_id,
        "TWITCH_OAUTH_TOKEN": token.access_token,
        **sim.urls,
        "TWITCH_EVENTSUB_KEEPALIVE_S": "2",
        "TWITCH_RECONNECT_BASE_S": "0.05",
        "TWITCH_RECONNECT_MAX_S": "0.2",
        "TWITCH_LOGIN_TIMEOUT_S": "5",
        "TWITCH_CONNECT_TIMEOUT_S": "5",
        "SHUTDOWN_TIMEOUT_S": "15",
        "HEALTH_PORT": str(free_port()),
        "HEALTH_HOST": "127.0.0.1",
    }
    if refresh:
        env["TWITCH_CLIENT_SECRET"] = sim.config.client_secret
        env["TWITCH_REFRESH_TOKEN"] = token.refresh_token
    return env


def numbers(records: list[ConsumedRecord]) -> collections.Counter[tuple[str, int]]:
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    for item in records:
        record = decode_chat_message(item.value)
        assert record.ingested_via == "eventsub"
        assert item.key == record.channel_id.encode()
        if record.username == NUMBERED_SENDER:
            _, channel, number = record.message.split(" ")
            assert channel == record.channel_id
            counts[channel, int(number)] += 1
    return counts


def assert_exactly_once(
    records: list[ConsumedRecord], channels: list[str], per_channel: int
) -> None:
    counted = numbers(records)
    expected = {(channel, n) for channel in channels for n in range(1, per_channel + 1)}
    missing = expected - set(counted)
    assert not missing, f"never reached Kafka: {sorted(missing)[:10]} ({len(missing)} in all)"
    repeated = {key: count for key, count in counted.items() if count != 1}
    assert not repeated, f"reached Kafka more than once: {sorted(repeated)[:10]}"
    assert set(counted) == expected
