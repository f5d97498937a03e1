"""Issue 18, planned moves: three real instances share 30 always-talking channels on the
real broker; one is stopped for good, all three are restarted one after the other, a
fourth is added — and every numbered line any instance heard reaches Kafka once, in order.

Figures (said, delivered, lost, repeated, unheard) are printed with `pytest -s`; the
tally is `zero_gap.tally` (lost: heard by some instance, never in Kafka; unheard: said
while no instance had the channel joined).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.service_process import ServiceProcess
from tests.integration.zero_gap import (
    JOIN_LIMIT,
    JOIN_WINDOW_S,
    SHUTDOWN_TIMEOUT_S,
    Tally,
    ZeroGapFleet,
    channel_holders,
    tally,
    zero_gap_fleet,
)
from twitch_ingestion.simulator import SimulatorConfig, SimulatorThread

pytestmark = pytest.mark.integration

CHANNELS = [f"zg_{i:02d}" for i in range(30)]
RATE_PER_CHANNEL = 5.0
NAMES = ["fleet_a", "fleet_b", "fleet_c"]


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    config = SimulatorConfig(seed=18, join_limit=JOIN_LIMIT, join_window_s=JOIN_WINDOW_S)
    with SimulatorThread(config) as running:
        yield running


@pytest.fixture
def fleet(
    kafka_brokers: str,
    topics: dict[str, str],
    simulator: SimulatorThread,
    start_service: Callable[[dict[str, str]], ServiceProcess],
    tmp_path: Path,
) -> Iterator[ZeroGapFleet]:
    with zero_gap_fleet(kafka_brokers, topics, simulator, start_service, tmp_path) as running:
        running.add_channels(CHANNELS)
        for name in NAMES:
            running.start(name)
        running.wait_settled()
        yield running


def _streamed(fleet: ZeroGapFleet, move: Callable[[], None]) -> Tally:
    """Talk in every channel, make the move, talk a little longer, count."""
    stream = fleet.simulator.start_numbered(CHANNELS, rate=RATE_PER_CHANNEL * len(CHANNELS))
    time.sleep(1.0)
    move()
    time.sleep(1.0)
    stream.stop()
    stats = fleet.simulator.stats()
    result = tally(stats, fleet.records(stats))
    assert result.said == result.delivered + result.lost + result.unheard
    return result


def _assert_exactly_once(result: Tally) -> None:
    """Every line said reached Kafka once, in order: no instance ever left a channel
    unread (unheard), dropped what it read (lost) or produced what another did."""
    assert result.lost_by_channel == {}
    assert result.repeated_by_channel == {}
    assert (result.unheard, result.out_of_order) == (0, 0)
    assert result.delivered == result.said


def _events(fleet: ZeroGapFleet, name: str) -> list[str]:
    return [str(e.get("event")) for e in fleet.instances[name].log_events()]


def _inexact_hand_overs(fleet: ZeroGapFleet) -> list[str]:
    """Hand-overs that fell back to producing everything held (fleet/fence.py)."""
    return [
        str(entry.get("event"))
        for service in fleet.started
        for entry in service.log_events()
        if str(entry.get("event")).startswith("fleet hand-over may have")
    ]


def _report(scenario: str, result: Tally, **more: object) -> None:
    figures = {**result.figures(), **more}
    print(f"\n[zero-gap] {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    if result.lost_by_channel:
        worst = max(result.lost_by_channel.items(), key=lambda item: len(item[1]))
        print(f"[zero-gap]   most lost: {worst[0]} {len(worst[1])} lines")


def test_an_instance_stopped_for_good_hands_its_channels_over(fleet: ZeroGapFleet) -> None:
    took: list[float] = []

    def stop_c() -> None:
        code, seconds = fleet.sigterm("fleet_c")
        assert code == 0
        took.append(seconds)
        fleet.wait_settled()

    result = _streamed(fleet, stop_c)
    _report("SIGTERM one of 3 for good", result, exit_s=round(took[0], 1))
    assert took[0] < SHUTDOWN_TIMEOUT_S
    assert "fleet hand-off complete" in _events(fleet, "fleet_c")
    _assert_exactly_once(result)
    assert _inexact_hand_overs(fleet) == []


def test_a_rolling_restart_of_all_three(fleet: ZeroGapFleet) -> None:
    def roll() -> None:
        for name in NAMES:
            code, _ = fleet.sigterm(name)
            assert code == 0
            fleet.start(name)
            fleet.wait_settled()

    result = _streamed(fleet, roll)
    _report("rolling restart of 3", result)
    _assert_exactly_once(result)
    assert _inexact_hand_overs(fleet) == []


def test_a_fourth_instance_added(fleet: ZeroGapFleet) -> None:
    taken: list[int] = []

    def add_d() -> None:
        fleet.start("fleet_d")
        stats = fleet.wait_settled()
        taken.append(sum(nicks == ["fleet_d"] for nicks in channel_holders(stats).values()))

    result = _streamed(fleet, add_d)
    _report("4th instance added", result, moved=taken[0])
    assert taken[0] > 0
    _assert_exactly_once(result)
    assert _inexact_hand_overs(fleet) == []


def test_the_last_instance_stopped_does_not_wait_for_a_new_owner(
    kafka_brokers: str,
    topics: dict[str, str],
    simulator: SimulatorThread,
    start_service: Callable[[dict[str, str]], ServiceProcess],
    tmp_path: Path,
) -> None:
    with zero_gap_fleet(kafka_brokers, topics, simulator, start_service, tmp_path) as fleet:
        fleet.add_channels(["solo_1", "solo_2"])
        fleet.start("fleet_a")
        fleet.wait_settled()

        code, _ = fleet.sigterm("fleet_a")

        assert code == 0
        events = {str(e.get("event")): e for e in fleet.instances["fleet_a"].log_events()}
        assert "fleet hand-off has nobody to hand to" in events
        assert events["fleet hand-off incomplete"]["not_handed_off"] == ["solo_1", "solo_2"]
