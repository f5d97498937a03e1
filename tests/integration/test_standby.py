"""Issue 18, crashes: with KAFKA_CHANNELS_REPLICAS=2 every channel is also read by a hot
standby, which takes over when its producer dies — so a SIGKILL loses nothing and
repeats nothing; a standby window too small for the take-over reports its gap.

Three real instances, 30 always-talking channels (5 numbered lines/s each), the real
broker. Figures (said, delivered, lost, repeated; take-over times; each instance's CPU
and memory) are printed with `pytest -s`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service_process import ServiceProcess
from tests.integration.zero_gap import (
    JOIN_LIMIT,
    JOIN_WINDOW_S,
    Tally,
    ZeroGapFleet,
    tally,
    zero_gap_fleet,
)
from tests.support.health_endpoint import metric
from tests.support.ports import free_port
from twitch_ingestion.simulator import SimulatorConfig, SimulatorStats, SimulatorThread

pytestmark = pytest.mark.integration

CHANNELS = [f"sb_{i:02d}" for i in range(30)]
RATE_PER_CHANNEL = 5.0
NAMES = ["fleet_a", "fleet_b", "fleet_c"]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    config = SimulatorConfig(seed=18, join_limit=JOIN_LIMIT, join_window_s=JOIN_WINDOW_S)
    with SimulatorThread(config) as running:
        yield running


FleetFactory = Callable[..., ZeroGapFleet]


@pytest.fixture
def standby_fleet(
    kafka_brokers: str,
    topics: dict[str, str],
    simulator: SimulatorThread,
    start_service: Callable[[dict[str, str]], ServiceProcess],
    tmp_path: Path,
) -> Iterator[FleetFactory]:
    """Three instances on the stream's channels, settled, with `env` (replicas 2 …)."""
    with_fleets: list[Any] = []

    def make(**env: str) -> ZeroGapFleet:
        context = zero_gap_fleet(kafka_brokers, topics, simulator, start_service, tmp_path, **env)
        fleet = context.__enter__()
        with_fleets.append(context)
        fleet.add_channels(CHANNELS)
        for name in NAMES:
            fleet.start(name, HEALTH_PORT=str(free_port()))
        fleet.wait_settled()
        return fleet

    yield make
    for context in with_fleets:
        context.__exit__(None, None, None)


def _holders_of(fleet: ZeroGapFleet, name: str) -> list[str]:
    """Channels `name` produces (its report's channels)."""
    for view in fleet.status().instances:
        if view.instance_id == name and view.report is not None:
            return sorted(view.report.channels)
    raise AssertionError(f"no report of {name}")


def _sent_more(simulator: SimulatorThread, per_channel: int) -> None:
    """Until every channel said `per_channel` more lines: a count of the stream."""
    base = simulator.stats().numbered_high_water

    def said(stats: SimulatorStats) -> bool:
        high = stats.numbered_high_water
        return all(high.get(c, 0) >= base.get(c, 0) + per_channel for c in CHANNELS)

    simulator.wait_until(said, timeout=60)


def _cost(service: ServiceProcess) -> dict[str, float]:
    """CPU seconds (user + system) and resident memory (MiB) of a running instance."""
    pid = service.process.pid
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return {"cpu_s": round(cpu_s, 2), "rss_mib": round(rss_kb / 1024, 1)}


def _at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00")).timestamp()


def _events(fleet: ZeroGapFleet, event: str) -> list[dict[str, Any]]:
    return [e for s in fleet.started for e in s.log_events() if e.get("event") == event]


def _assert_exactly_once(result: Tally) -> None:
    assert result.lost_by_channel == {}
    assert result.repeated_by_channel == {}
    assert (result.unheard, result.out_of_order) == (0, 0)
    assert result.delivered == result.said


def _report(scenario: str, result: Tally, **more: object) -> None:
    figures = {**result.figures(), **more}
    print(f"\n[standby] {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def _kill_mid_stream(fleet: ZeroGapFleet, victim: str) -> tuple[Tally, float, list[str]]:
    """Talk, SIGKILL `victim`, talk until the survivors settled, count."""
    victims = _holders_of(fleet, victim)
    assert victims
    stream = fleet.simulator.start_numbered(CHANNELS, rate=RATE_PER_CHANNEL * len(CHANNELS))
    _sent_more(fleet.simulator, 5)
    killed_at = time.time()
    fleet.instances[victim].process.send_signal(signal.SIGKILL)
    fleet.instances[victim].wait_exit(10)
    fleet.wait_settled(timeout_s=90)
    _sent_more(fleet.simulator, 5)
    stream.stop()
    stats = fleet.simulator.stats()
    result = tally(stats, fleet.records(stats))
    assert result.said == result.delivered + result.lost + result.unheard
    return result, killed_at, victims


def test_a_crashed_instance_loses_nothing_and_repeats_nothing_with_a_standby(
    standby_fleet: FleetFactory,
) -> None:
    fleet = standby_fleet(KAFKA_CHANNELS_REPLICAS="2")
    result, killed_at, victims = _kill_mid_stream(fleet, "fleet_c")

    takeovers = _events(fleet, "fleet take-over complete")
    assert takeovers, "no standby took over"
    taken = sum(int(e["channels"]) for e in takeovers)
    first = min(_at(e) for e in takeovers) - killed_at
    last = max(_at(e) for e in takeovers) - killed_at
    survivors = {n: _cost(fleet.instances[n]) for n in ("fleet_a", "fleet_b")}
    _report(
        "SIGKILL one of 3, replicas 2",
        result,
        channels_killed=len(victims),
        taken_over=taken,
        first_takeover_s=round(first, 2),
        all_taken_over_s=round(last, 2),
        outcomes=[e["outcomes"] for e in takeovers],
        costs=survivors,
    )
    assert taken == len(victims)
    _assert_exactly_once(result)
    assert _events(fleet, "fleet take-over lost lines") == []
    assert _events(fleet, "fleet producer back") == []


def test_a_standby_window_too_small_for_the_take_over_reports_its_gap(
    standby_fleet: FleetFactory,
) -> None:
    # ~3 lines per channel: far less than the lines said while the death is noticed.
    fleet = standby_fleet(KAFKA_CHANNELS_REPLICAS="2", KAFKA_CHANNELS_STANDBY_WINDOW_BYTES="1024")
    result, _, victims = _kill_mid_stream(fleet, "fleet_c")

    gaps = _events(fleet, "fleet take-over lost lines")
    _report("SIGKILL one of 3, replicas 2, 1 KiB window", result, gaps=len(gaps))
    gap_channels = {str(e["channel"]) for e in gaps}
    # Every loss is in a channel whose gap was reported, with its time span, and counted.
    assert gap_channels
    assert set(result.lost_by_channel) <= gap_channels <= set(victims)
    for entry in gaps:
        assert entry["lost_from"]
        assert entry["lost_to"]
    counted = sum(
        metric(
            fleet.env | {"HEALTH_PORT": _health_port(fleet, name)},
            'twitch_ingestion_fleet_takeovers_total{outcome="gap"}',
            default=0.0,
        )
        for name in ("fleet_a", "fleet_b")
    )
    assert counted == len(gaps)
    # Nothing else lost, and nothing anywhere repeated.
    assert result.repeated_by_channel == {}
    assert (result.unheard, result.out_of_order) == (0, 0)


def _health_port(fleet: ZeroGapFleet, name: str) -> str:
    service = fleet.instances[name]
    for entry in service.log_events():
        if entry.get("event") == "health server listening":
            return str(entry["port"])
    raise AssertionError(f"{name}: no health server")


def test_a_rolling_restart_with_standbys_hands_off_without_take_overs(
    standby_fleet: FleetFactory,
) -> None:
    # Issue test 3 with replicas 2: a SIGTERM hands off (fleet/fence.py); no standby may
    # mistake it for a crash.
    fleet = standby_fleet(KAFKA_CHANNELS_REPLICAS="2")
    stream = fleet.simulator.start_numbered(CHANNELS, rate=RATE_PER_CHANNEL * len(CHANNELS))
    _sent_more(fleet.simulator, 5)
    for name in NAMES:
        code, _ = fleet.sigterm(name)
        assert code == 0
        fleet.start(name, HEALTH_PORT=str(free_port()))
        fleet.wait_settled(timeout_s=90)
    _sent_more(fleet.simulator, 5)
    stream.stop()
    stats = fleet.simulator.stats()
    result = tally(stats, fleet.records(stats))
    _report("rolling restart of 3, replicas 2", result)
    _assert_exactly_once(result)
    assert _events(fleet, "fleet producer dead") == []
    inexact = [
        entry
        for service in fleet.started
        for entry in service.log_events()
        if str(entry.get("event")).startswith("fleet hand-over may have")
    ]
    assert inexact == []


@pytest.mark.parametrize("replicas", ["1", "2"])
def test_the_cost_of_a_standby(standby_fleet: FleetFactory, replicas: str) -> None:
    """The same stream with and without standbys: each instance's CPU and memory
    (printed), and every line once either way."""
    fleet = standby_fleet(KAFKA_CHANNELS_REPLICAS=replicas)
    before = {name: _cost(fleet.instances[name]) for name in NAMES}
    stream = fleet.simulator.start_numbered(CHANNELS, rate=RATE_PER_CHANNEL * len(CHANNELS))
    _sent_more(fleet.simulator, 100)
    stream.stop()
    after = {name: _cost(fleet.instances[name]) for name in NAMES}
    stats = fleet.simulator.stats()
    result = tally(stats, fleet.records(stats))
    cpu = {n: round(after[n]["cpu_s"] - before[n]["cpu_s"], 2) for n in NAMES}
    rss = {n: after[n]["rss_mib"] for n in NAMES}
    window = {
        n: metric(int(_health_port(fleet, n)), "twitch_ingestion_fleet_standby_window_bytes")
        for n in NAMES
    }
    _report(
        f"steady 100 lines/channel, replicas {replicas}",
        result,
        cpu_s=cpu,
        rss_mib=rss,
        window_bytes=window,
    )
    assert all(held > 0 for held in window.values()) == (replicas == "2")
    assert _events(fleet, "fleet producer dead") == []  # no false alarm under load
    _assert_exactly_once(result)


def _wait_event(fleet: ZeroGapFleet, event: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _events(fleet, event):
        assert time.monotonic() < deadline, f"no {event!r} within {timeout_s} s"
        time.sleep(0.1)


def test_a_producer_paused_past_the_threshold_is_a_false_alarm_without_loss(
    standby_fleet: FleetFactory,
) -> None:
    # SIGSTOP for longer than the 3 s threshold, shorter than the session timeout: its
    # standbys take over, then give the channels back when its progress resumes.
    fleet = standby_fleet(KAFKA_CHANNELS_REPLICAS="2")
    victim = fleet.instances["fleet_c"]
    stream = fleet.simulator.start_numbered(CHANNELS, rate=RATE_PER_CHANNEL * len(CHANNELS))
    _sent_more(fleet.simulator, 5)
    victim.process.send_signal(signal.SIGSTOP)
    try:
        _wait_event(fleet, "fleet take-over complete")
    finally:
        victim.process.send_signal(signal.SIGCONT)
    _wait_event(fleet, "fleet take-over given back")
    fleet.wait_settled(timeout_s=90)
    _sent_more(fleet.simulator, 5)
    stream.stop()
    stats = fleet.simulator.stats()
    result = tally(stats, fleet.records(stats))
    _report("SIGSTOP one of 3 past the threshold, replicas 2", result)
    assert result.lost_by_channel == {}
    assert result.unheard == 0
    assert _events(fleet, "fleet producer back")
