"""A fleet of real `twitch-ingestion run` processes on one control topic (issues 7, 18).

One home for what `test_fleet.py` and `zero_gap.py` both need: fresh control topics and
group per test, the environment that makes a fleet fast to test (the broker's minimum
session timeout, every Twitch timer shrunk), starting instances as separate accounts
(the simulator's per-connection `nick` says which instance holds a channel), and waiting
until the fleet is settled — as the group, the instances' reports and the simulator all
say.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.kafka_helpers import delete_topics
from tests.integration.service_process import ServiceProcess, StartService, clean_environment
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import Settings, load_settings
from twitch_ingestion.fleet.status import FleetStatus, describe_fleet
from twitch_ingestion.simulator import SimulatorStats, SimulatorThread

__all__ = ["FAST_FLEET", "SESSION_TIMEOUT_S", "Fleet", "channel_holders", "fleet_on_fresh_topics"]

# The broker's group.min.session.timeout.ms: the fastest a crash can be noticed.
SESSION_TIMEOUT_S = 6.0

FAST_FLEET = {
    "CHANNEL_SOURCE": "kafka",
    "KAFKA_CHANNELS_SESSION_TIMEOUT_MS": str(int(SESSION_TIMEOUT_S * 1000)),
    "TWITCH_CONNECT_TIMEOUT_S": "1",
    "TWITCH_LOGIN_TIMEOUT_S": "2",
    "TWITCH_RECONNECT_BASE_S": "0.1",
    "TWITCH_RECONNECT_MAX_S": "0.5",
    "TWITCH_JOIN_TIMEOUT_S": "3",
    "TWITCH_CONNECTION_OPEN_INTERVAL_S": "0.05",
    "KAFKA_LINGER_MS": "5",
    "STATS_LOG_INTERVAL_S": "60",
}
"""Every fleet test's environment; each adds its partitions, join limit, timeouts."""


def channel_holders(stats: SimulatorStats) -> dict[str, list[str]]:
    """Channel → nicks (instances) of the open connections that have it joined."""
    holders: dict[str, list[str]] = defaultdict(list)
    for conn in stats.connections.values():
        for channel in conn.channels:
            holders[channel].append(conn.nick or "?")
    return dict(holders)


@dataclass
class Fleet:
    """A control topic, a group, the instances started on it, and ways to look at them."""

    brokers: str
    simulator: SimulatorThread
    start_service: StartService
    workdir: Path
    env: dict[str, str]
    instances: dict[str, ServiceProcess] = field(default_factory=dict)
    started: list[ServiceProcess] = field(default_factory=list)
    """Every process started, restarted ones included."""

    @property
    def chat_topic(self) -> str:
        return self.env["KAFKA_TOPIC_CHAT_MESSAGES"]

    @property
    def partitions(self) -> int:
        return int(self.env["KAFKA_CHANNELS_PARTITIONS"])

    @property
    def replicas(self) -> int:
        return int(self.env.get("KAFKA_CHANNELS_REPLICAS", "1"))

    def settings(self) -> Settings:
        return load_settings(require_channels=False, **{k.lower(): v for k, v in self.env.items()})

    def start(self, name: str, **extra: str) -> ServiceProcess:
        service = self.start_service(
            {
                **self.env,
                "INSTANCE_ID": name,
                "TWITCH_USERNAME": name,
                "TWITCH_OAUTH_TOKEN": "oauth:fleettoken",
                "BUFFER_DIR": str(self.workdir / f"buffer-{name}"),
                **extra,
            }
        )
        self.instances[name] = service
        self.started.append(service)
        return service

    def cli(self, *args: str) -> None:
        """Run `twitch-ingestion <args>` as a user would, until it exits."""
        result = subprocess.run(
            [sys.executable, "-m", "twitch_ingestion", *args],
            cwd=self.workdir,
            env=clean_environment(self.env),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()

    def running(self) -> set[str]:
        return {n for n, s in self.instances.items() if s.process.poll() is None}

    def status(self) -> FleetStatus:
        return describe_fleet(configs.control_topics_config(self.settings()), timeout_s=10)

    def wait_settled(self, channels: Iterable[str], timeout_s: float = 60.0) -> SimulatorStats:
        """Until the group is stable, every running instance reports itself ready with
        exactly its assigned channels and nothing left to hand over, and the simulator
        sees each wanted channel joined by exactly `replicas` connections (with 2: one
        owner, one standby, as the reports say)."""
        wanted = set(channels)
        running = self.running()
        deadline = time.monotonic() + timeout_s
        why: str | None = "not checked"
        while time.monotonic() < deadline:
            why = _unsettled(self.status(), running, wanted, self.partitions, self.replicas)
            if why is None:
                stats = self.simulator.stats()
                holders = channel_holders(stats)
                wrong = {c: h for c, h in holders.items() if len(h) != self.replicas}
                if set(holders) == wanted and not wrong:
                    return stats
                why = f"simulator: missing {sorted(wanted - set(holders))[:5]}, wrong {wrong}"
            time.sleep(0.3)
        logs = "\n".join(f"--- {n}\n{s.logs()[-3000:]}" for n, s in self.instances.items())
        raise AssertionError(f"fleet not settled within {timeout_s} s: {why}\n{logs}")


def _unsettled(
    status: FleetStatus, running: set[str], wanted: set[str], partitions: int, replicas: int
) -> str | None:
    members = {v.instance_id: v for v in status.instances if v.in_group}
    if status.group_state != "STABLE" or set(members) != running:
        return f"group {status.group_state} with {sorted(members)}"
    if sum(len(v.partitions) for v in members.values()) != partitions:
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
    if assigned != wanted:
        return "control topic lags"
    if replicas > 1:
        standby = [c for v in members.values() if v.report for c in v.report.standby]
        if sorted(standby) != sorted(wanted):
            return f"{len(set(standby))} of {len(wanted)} channels have one standby"
    return None


@contextmanager
def fleet_on_fresh_topics(
    brokers: str,
    topics: dict[str, str],
    simulator: SimulatorThread,
    start_service: StartService,
    workdir: Path,
    env: dict[str, str],
) -> Iterator[Fleet]:
    """A fleet on its own control topics and group (deleted afterwards); `env` adds to
    `FAST_FLEET` (KAFKA_CHANNELS_PARTITIONS at least)."""
    suffix = uuid.uuid4().hex[:10]
    control = {
        "KAFKA_TOPIC_CHANNELS": f"test-channels-{suffix}",
        "KAFKA_TOPIC_INSTANCES": f"test-instances-{suffix}",
        "KAFKA_CHANNELS_GROUP": f"test-fleet-{suffix}",
    }
    full_env = {
        **FAST_FLEET,
        **env,
        **topics,
        **control,
        "KAFKA_BROKERS": brokers,
        "KAFKA_TOPIC_PARTITIONS": "3",
        "TWITCH_IRC_HOST": simulator.host,
        "TWITCH_IRC_PORT": str(simulator.port),
        "TWITCH_IRC_TLS": "false",
    }
    try:
        yield Fleet(brokers, simulator, start_service, workdir, full_env)
    finally:
        delete_topics(brokers, [control["KAFKA_TOPIC_CHANNELS"], control["KAFKA_TOPIC_INSTANCES"]])
