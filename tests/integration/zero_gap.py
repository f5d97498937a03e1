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
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.kafka_helpers import ConsumedRecord, collect_records, delete_topics
from tests.integration.service_process import ServiceProcess, clean_environment
from twitch_ingestion.config import Settings, load_settings
from twitch_ingestion.fleet.status import FleetStatus, describe_fleet
from twitch_ingestion.simulator import SimulatorStats, SimulatorThread

__all__ = ["Tally", "ZeroGapFleet", "channel_holders", "tally", "zero_gap_fleet"]

StartService = Callable[[dict[str, str]], ServiceProcess]

# The broker's group.min.session.timeout.ms: the fastest a crash can be noticed.
SESSION_TIMEOUT_S = 6.0
PARTITIONS = 16
JOIN_LIMIT, JOIN_WINDOW_S = 100, 1.0
SHUTDOWN_TIMEOUT_S = 15.0

FAST_FLEET = {
    "CHANNEL_SOURCE": "kafka",
    "KAFKA_CHANNELS_PARTITIONS": str(PARTITIONS),
    "KAFKA_CHANNELS_SESSION_TIMEOUT_MS": str(int(SESSION_TIMEOUT_S * 1000)),
    "KAFKA_CHANNELS_HANDOVER_TIMEOUT_S": "20",
    "TWITCH_CONNECT_TIMEOUT_S": "1",
    "TWITCH_LOGIN_TIMEOUT_S": "2",
    "TWITCH_RECONNECT_BASE_S": "0.1",
    "TWITCH_RECONNECT_MAX_S": "0.5",
    "TWITCH_JOIN_TIMEOUT_S": "3",
    "TWITCH_JOIN_RATE_LIMIT": str(JOIN_LIMIT),
    "TWITCH_JOIN_RATE_WINDOW_S": str(JOIN_WINDOW_S),
    "TWITCH_CONNECTION_OPEN_INTERVAL_S": "0.05",
    "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
    "KAFKA_LINGER_MS": "5",
    "STATS_LOG_INTERVAL_S": "60",
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


def channel_holders(stats: SimulatorStats) -> dict[str, list[str]]:
    """Channel → nicks (instances) of the open connections that have it joined."""
    holders: dict[str, list[str]] = defaultdict(list)
    for conn in stats.connections.values():
        for channel in conn.channels:
            holders[channel].append(conn.nick or "?")
    return dict(holders)


@dataclass
class ZeroGapFleet:
    """A control topic, a group, its instances, and a numbered stream on its channels."""

    brokers: str
    simulator: SimulatorThread
    start_service: StartService
    workdir: Path
    env: dict[str, str]
    channels: list[str] = field(default_factory=list)
    instances: dict[str, ServiceProcess] = field(default_factory=dict)
    started: list[ServiceProcess] = field(default_factory=list)
    """Every process started, restarted ones included."""

    @property
    def chat_topic(self) -> str:
        return self.env["KAFKA_TOPIC_CHAT_MESSAGES"]

    def settings(self) -> Settings:
        return load_settings(require_channels=False, **{k.lower(): v for k, v in self.env.items()})

    def add_channels(self, channels: list[str]) -> None:
        self.channels = channels
        result = subprocess.run(
            [sys.executable, "-m", "twitch_ingestion", "channels", "add", *channels],
            cwd=self.workdir,
            env=clean_environment(self.env),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()

    def start(self, name: str) -> ServiceProcess:
        service = self.start_service(
            {
                **self.env,
                "INSTANCE_ID": name,
                "TWITCH_USERNAME": name,
                "TWITCH_OAUTH_TOKEN": "oauth:fleettoken",
                "BUFFER_DIR": str(self.workdir / f"buffer-{name}"),
            }
        )
        self.instances[name] = service
        self.started.append(service)
        return service

    def sigterm(self, name: str) -> tuple[int, float]:
        """SIGTERM `name` and wait for it: its exit code and how long it took (s)."""
        service = self.instances[name]
        started = time.monotonic()
        code = service.stop(signal.SIGTERM, timeout_s=SHUTDOWN_TIMEOUT_S + 30)
        return code, time.monotonic() - started

    def running(self) -> set[str]:
        return {n for n, s in self.instances.items() if s.process.poll() is None}

    def status(self) -> FleetStatus:
        return describe_fleet(self.settings(), timeout_s=10)

    def wait_settled(self, timeout_s: float = 60.0) -> SimulatorStats:
        """Until the group is stable, every running instance reports itself ready with
        exactly its assigned channels and nothing left to hand over, and the simulator
        sees each channel joined by exactly one connection."""
        wanted = set(self.channels)
        running = self.running()
        deadline = time.monotonic() + timeout_s
        why: str | None = "not checked"
        while time.monotonic() < deadline:
            why = _unsettled(self.status(), running, wanted)
            if why is None:
                stats = self.simulator.stats()
                holders = channel_holders(stats)
                doubled = {c: h for c, h in holders.items() if len(h) > 1}
                if set(holders) == wanted and not doubled:
                    return stats
                why = f"simulator: missing {sorted(wanted - set(holders))[:5]}, doubled {doubled}"
            time.sleep(0.3)
        logs = "\n".join(f"--- {n}\n{s.logs()[-3000:]}" for n, s in self.instances.items())
        raise AssertionError(f"fleet not settled within {timeout_s} s: {why}\n{logs}")

    def records(self, stats: SimulatorStats, timeout_s: float = 20.0) -> list[ConsumedRecord]:
        """The chat topic once it holds every line some instance heard (or `timeout_s`)."""
        unheard = sum(stats.numbered_undelivered_count(c) for c in stats.numbered_high_water)
        expected = sum(stats.numbered_high_water.values()) - unheard
        return collect_records(
            self.brokers, self.chat_topic, expected=expected, timeout_s=timeout_s
        )


def _unsettled(status: FleetStatus, running: set[str], wanted: set[str]) -> str | None:
    members = {v.instance_id: v for v in status.instances if v.in_group}
    if status.group_state != "STABLE" or set(members) != running:
        return f"group {status.group_state} with {sorted(members)}"
    if sum(len(v.partitions) for v in members.values()) != PARTITIONS:
        return "not every partition assigned"
    for view in members.values():
        report = view.report
        if report is None:
            return f"{view.instance_id}: no report"
        if list(report.partitions) != view.partitions or report.releasing or not report.ready:
            return f"{view.instance_id}: report {report.partitions} ready={report.ready}"
        if set(report.channels) != set(view.assigned_channels):
            return f"{view.instance_id}: reads {len(report.channels)} of its channels"
    assigned = {c for v in members.values() for c in v.assigned_channels}
    return None if assigned == wanted else "control topic lags"


@contextmanager
def zero_gap_fleet(
    brokers: str,
    topics: dict[str, str],
    simulator: SimulatorThread,
    start_service: StartService,
    workdir: Path,
) -> Iterator[ZeroGapFleet]:
    """A fleet on fresh control topics (deleted afterwards)."""
    suffix = uuid.uuid4().hex[:10]
    control = {
        "KAFKA_TOPIC_CHANNELS": f"test-channels-{suffix}",
        "KAFKA_TOPIC_INSTANCES": f"test-instances-{suffix}",
        "KAFKA_CHANNELS_GROUP": f"test-zero-gap-{suffix}",
    }
    env = {
        **FAST_FLEET,
        **topics,
        **control,
        "KAFKA_BROKERS": brokers,
        "KAFKA_TOPIC_PARTITIONS": "3",
        "TWITCH_IRC_HOST": simulator.host,
        "TWITCH_IRC_PORT": str(simulator.port),
        "TWITCH_IRC_TLS": "false",
    }
    try:
        yield ZeroGapFleet(brokers, simulator, start_service, workdir, env)
    finally:
        delete_topics(brokers, [control["KAFKA_TOPIC_CHANNELS"], control["KAFKA_TOPIC_INSTANCES"]])
