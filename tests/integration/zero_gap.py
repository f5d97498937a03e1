"""Counting what moving channels between instances loses or repeats (issue 18).

A fleet of real `twitch-ingestion run` processes on the real broker, one simulator with
always-talking channels (`seq <channel> <n>` lines, numbered per channel), and a tally
of what reached the chat topic against what the simulator said:

* **lost**: said while at least one instance had the channel joined, never in Kafka;
* **unheard**: said while no instance had the channel joined (Twitch sends it to nobody);
* **repeated**: in Kafka more than once (every copy after the first counts);
* **out of order**: a channel's first copies not in increasing order in its partition.

Used by `test_zero_gap.py`; its figures are printed with `pytest -s`.
"""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.kafka_helpers import ConsumedRecord, collect_records
from tests.integration.service_process import StartService
from tests.support.fleet import Fleet, channel_holders, fleet_on_fresh_topics
from twitch_ingestion.simulator import SimulatorStats, SimulatorThread

__all__ = ["Tally", "ZeroGapFleet", "channel_holders", "tally", "zero_gap_fleet"]

PARTITIONS = 16
JOIN_LIMIT, JOIN_WINDOW_S = 100, 1.0
SHUTDOWN_TIMEOUT_S = 15.0

ZERO_GAP_ENV = {
    "KAFKA_CHANNELS_PARTITIONS": str(PARTITIONS),
    "KAFKA_CHANNELS_HANDOVER_TIMEOUT_S": "20",
    "TWITCH_JOIN_RATE_LIMIT": str(JOIN_LIMIT),
    "TWITCH_JOIN_RATE_WINDOW_S": str(JOIN_WINDOW_S),
    "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
}


# --- the tally --------------------------------------------------------------------------


@dataclass
class Tally:
    said: int = 0
    delivered: int = 0
    lost: int = 0
    unheard: int = 0
    repeated: int = 0
    out_of_order: int = 0
    lost_by_channel: dict[str, list[int]] = field(default_factory=dict)
    repeated_by_channel: dict[str, int] = field(default_factory=dict)

    def figures(self) -> dict[str, int]:
        return {
            "said": self.said,
            "delivered": self.delivered,
            "lost": self.lost,
            "repeated": self.repeated,
            "unheard": self.unheard,
            "out_of_order": self.out_of_order,
        }


def numbers_in_kafka(records: Iterable[ConsumedRecord]) -> dict[str, list[int]]:
    """Channel → the numbers of its `seq` lines in the order Kafka holds them (a
    channel's records share a key, so one partition, so one order)."""
    by_channel: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = json.loads(record.value)
        words = value["message"].split()
        if len(words) == 3 and words[0] == "seq":
            by_channel[words[1]].append(int(words[2]))
    return dict(by_channel)


def tally(stats: SimulatorStats, records: Iterable[ConsumedRecord]) -> Tally:
    """What the simulator said, per channel, against what Kafka holds."""
    got = numbers_in_kafka(records)
    result = Tally()
    for channel, high in stats.numbered_high_water.items():
        unheard: set[int] = set()
        for first, last in stats.numbered_undelivered.get(channel, ()):
            unheard.update(range(first, last + 1))
        numbers = got.get(channel, [])
        seen: set[int] = set()
        previous = 0
        for number in numbers:
            if number in seen:
                result.repeated += 1
                result.repeated_by_channel[channel] = result.repeated_by_channel.get(channel, 0) + 1
                continue
            seen.add(number)
            if number < previous:
                result.out_of_order += 1
            previous = number
        lost = [n for n in range(1, high + 1) if n not in seen and n not in unheard]
        if lost:
            result.lost_by_channel[channel] = lost
        result.said += high
        result.delivered += len(seen)
        result.lost += len(lost)
        result.unheard += len(unheard - seen)
    return result


# --- the fleet ------------------------------------------------------------------------


@dataclass
class ZeroGapFleet(Fleet):
    """A `Fleet` with a numbered stream on its channels, counted against Kafka."""

    channels: list[str] = field(default_factory=list)

    def add_channels(self, channels: list[str]) -> None:
        self.channels = channels
        self.cli("channels", "add", *channels)

    def sigterm(self, name: str) -> tuple[int, float]:
        """SIGTERM `name` and wait for it: its exit code and how long it took (s)."""
        service = self.instances[name]
        started = time.monotonic()
        code = service.stop(signal.SIGTERM, timeout_s=SHUTDOWN_TIMEOUT_S + 30)
        return code, time.monotonic() - started

    def wait_settled(
        self, channels: Iterable[str] | None = None, timeout_s: float = 60.0
    ) -> SimulatorStats:
        return super().wait_settled(self.channels if channels is None else channels, timeout_s)

    def records(self, stats: SimulatorStats, timeout_s: float = 20.0) -> list[ConsumedRecord]:
        """The chat topic once it holds every line some instance heard (or `timeout_s`)."""
        unheard = sum(stats.numbered_undelivered_count(c) for c in stats.numbered_high_water)
        expected = sum(stats.numbered_high_water.values()) - unheard
        return collect_records(
            self.brokers, self.chat_topic, expected=expected, timeout_s=timeout_s
        )


@contextmanager
def zero_gap_fleet(
    brokers: str,
    topics: dict[str, str],
    simulator: SimulatorThread,
    start_service: StartService,
    workdir: Path,
    **env: str,
) -> Iterator[ZeroGapFleet]:
    """A fleet on fresh control topics (deleted afterwards); `env` adds settings."""
    with fleet_on_fresh_topics(
        brokers, topics, simulator, start_service, workdir, {**ZERO_GAP_ENV, **env}
    ) as fleet:
        yield ZeroGapFleet(
            fleet.brokers, fleet.simulator, fleet.start_service, fleet.workdir, fleet.env
        )
