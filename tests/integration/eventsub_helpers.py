"""What the EventSub integration tests share: waiting until the simulator holds the
subscriptions of N channels on one live session."""

from __future__ import annotations

import collections
from collections.abc import Callable

from twitch_ingestion.simulator.eventsub_server import EventSubSimulator, EventSubSimulatorThread
from twitch_ingestion.sources.eventsub.records import CHAT_SUBSCRIPTION_TYPES

__all__ = ["subscribed"]


def subscribed(sim: EventSubSimulatorThread, channels: int) -> Callable[[], bool]:
    """True once one live session holds every chat subscription of `channels` channels."""
    wanted = channels * len(CHAT_SUBSCRIPTION_TYPES)

    def check() -> bool:
        def count(simulator: EventSubSimulator) -> int:
            per_session = collections.Counter(s for s, _, _ in simulator.subscriptions())
            return max(per_session.values(), default=0)

        return sim.call(count) == wanted

    return check
