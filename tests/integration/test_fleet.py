"""Issue 7 as operators live it: several `twitch-ingestion run` processes with
CHANNEL_SOURCE=kafka share the channels of a control topic, with the real broker's
consumer group as the only coordinator, against one Twitch simulator.

Each instance logs in with its own account (`fleet_a`, `fleet_b` …), so the simulator's
per-connection `nick` says which instance holds a channel, and its join limit is
enforced per account as Twitch does. Numbered streams (`seq <channel> <n>`) make loss
and duplication exact. Session timeouts are the broker's minimum (6 s) so a crash is
noticed quickly; every Twitch timer is shrunk as in the resilience tests.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kafka_helpers import ConsumedRecord, collect_records
from tests.integration.service_process import ServiceProcess, StartService
from tests.support.fleet import Fleet, channel_holders, fleet_on_fresh_topics
from twitch_ingestion.simulator import SimulatorConfig, SimulatorStats, SimulatorThread

pytestmark = pytest.mark.integration


# The broker's default group.min.session.timeout.ms: the fastest a crash can be noticed.
SESSION_TIMEOUT_S = 6.0
PARTITIONS = 64
# Per account, as the service is told and as the simulator enforces (Twitch: 20 / 10 s;
# faster here so that joining 100 channels takes a second, not a minute).
JOIN_LIMIT, JOIN_WINDOW_S = 100, 1.0

FLEET_ENV = {
    "KAFKA_CHANNELS_PARTITIONS": str(PARTITIONS),
    "TWITCH_JOIN_RATE_LIMIT": str(JOIN_LIMIT),
    "TWITCH_JOIN_RATE_WINDOW_S": str(JOIN_WINDOW_S),
    "SHUTDOWN_TIMEOUT_S": "10",
}


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    config = SimulatorConfig(seed=7, join_limit=JOIN_LIMIT, join_window_s=JOIN_WINDOW_S)
    with SimulatorThread(config) as running:
        yield running


def sent_for(
    simulator: SimulatorThread,
    channels: list[str],
    per_channel: int,
    since: SimulatorStats | None = None,
) -> None:
    """Until the running numbered stream has sent `per_channel` more numbers on each of
    `channels` than at `since`: a count of the stream, not a sleep."""
    base = since.numbered_high_water if since is not None else {}

    def sent(stats: SimulatorStats) -> bool:
        high = stats.numbered_high_water
        return all(high.get(c, 0) >= base.get(c, 0) + per_channel for c in channels)

    simulator.wait_until(sent, timeout=30)


def delta(after: dict[str, int], before: dict[str, int], channel: str) -> int:
    return after.get(channel, 0) - before.get(channel, 0)


def numbered(records: Iterable[ConsumedRecord]) -> dict[str, dict[int, int]]:
    """`seq <channel> <n>` records → channel → number → emission time (ms); repeats
    (hand-over overlap) collapse, as a consumer de-duplicating on message_id would."""
    seen: dict[str, dict[int, int]] = defaultdict(dict)
    for record in records:
        value = json.loads(record.value)
        _, channel, number = value["message"].split()
        seen[channel][int(number)] = value["timestamp"]
    return dict(seen)


def channel_names(count: int, prefix: str = "ch") -> list[str]:
    return [f"{prefix}_{i:04d}" for i in range(count)]


@pytest.fixture
def fleet(
    kafka_brokers: str,
    topics: dict[str, str],
    simulator: SimulatorThread,
    start_service: StartService,
    tmp_path: Path,
) -> Iterator[Fleet]:
    with fleet_on_fresh_topics(
        kafka_brokers, topics, simulator, start_service, tmp_path, FLEET_ENV
    ) as running:
        yield running


def started(fleet: Fleet, names: Iterable[str]) -> None:
    for name in names:
        fleet.start(name)
    for name in names:
        fleet.instances[name].wait_for_log("fleet partitions assigned", timeout_s=30)


def report(message: str, **values: Any) -> None:
    """Numbers for the report: shown with `pytest -s`."""
    print(f"\n[fleet] {message}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


# --- 1 -------------------------------------------------------------------------------------


def test_three_instances_share_300_channels_each_read_by_exactly_one(fleet: Fleet) -> None:
    channels = channel_names(300)
    fleet.cli("channels", "add", *channels)
    started(fleet, ["fleet_a", "fleet_b", "fleet_c"])

    stats = fleet.wait_settled(channels)

    holders = channel_holders(stats)
    per_instance = Counter(nicks[0] for nicks in holders.values())
    assert set(per_instance) == {"fleet_a", "fleet_b", "fleet_c"}
    # Started one after another, some channels legitimately moved (joined by the first
    # instance, handed to a later one): every JOIN but the current one was a hand-over,
    # followed by its PART.
    for channel in channels:
        assert stats.joins_by_channel[channel] - stats.parts_by_channel.get(channel, 0) == 1
    joins = Counter(stats.joins_by_channel[c] for c in channels)
    assert stats.join_limit_violations == 0
    report("300 channels on 3 instances", per_instance=dict(per_instance), joins=dict(joins))

    fleet.simulator.start_numbered(channels, rate=0, count=2).wait(timeout=30)
    records = collect_records(fleet.brokers, fleet.chat_topic, expected=600, timeout_s=60)
    got = numbered(records)
    assert {c: sorted(got.get(c, {})) for c in channels} == {c: [1, 2] for c in channels}


# --- 2 -------------------------------------------------------------------------------------


def test_a_killed_instance_s_channels_are_taken_over_within_the_session_timeout(
    fleet: Fleet,
) -> None:
    channels = channel_names(60)
    fleet.cli("channels", "add", *channels)
    started(fleet, ["fleet_a", "fleet_b", "fleet_c"])
    before = fleet.wait_settled(channels)
    victims = {c for c, nicks in channel_holders(before).items() if nicks == ["fleet_c"]}
    assert victims

    rate_per_channel = 5.0
    # The session timeout, a rebalance, loading the table and the JOINs.
    window_s = SESSION_TIMEOUT_S + 10.0
    stream = fleet.simulator.start_numbered(channels, rate=rate_per_channel * len(channels))
    sent_for(fleet.simulator, channels, int(rate_per_channel))  # a second of chat
    killed_at = time.monotonic()
    fleet.instances["fleet_c"].process.send_signal(signal.SIGKILL)
    fleet.instances["fleet_c"].wait_exit(10)
    # Taken over within the window, or this fails.
    fleet.simulator.wait_for_joined(channels, timeout=window_s)
    taken_over_s = time.monotonic() - killed_at
    sent_for(fleet.simulator, channels, int(rate_per_channel), since=fleet.simulator.stats())
    stream.stop()
    after = fleet.wait_settled(channels)

    assert {nicks[0] for nicks in channel_holders(after).values()} == {"fleet_a", "fleet_b"}
    final = fleet.simulator.stats()
    high = final.numbered_high_water
    unsent = sum(final.numbered_undelivered_count(c) for c in victims)
    # Besides what Twitch sent to nobody, the victim may have read a few lines it never
    # produced (they wait in its disk buffer for its next start): wait for the rest.
    slack = int(rate_per_channel) * len(victims)
    records = collect_records(
        fleet.brokers, fleet.chat_topic, expected=sum(high.values()) - unsent - slack
    )
    got = numbered(records)
    worst_missing, worst_gap_s = 0, 0.0
    for channel in channels:
        present = sorted(got[channel])
        assert present[-1] == high[channel], channel  # the stream ends read, not lost
        for prev, nxt in itertools.pairwise(present):
            if nxt - prev > 1:
                worst_missing = max(worst_missing, nxt - prev - 1)
                worst_gap_s = max(worst_gap_s, (got[channel][nxt] - got[channel][prev]) / 1000)
        if channel not in victims:
            # The survivors' own channels never stopped.
            assert present == list(range(1, high[channel] + 1)), channel
    missing = sum(high[c] - len(got[c]) for c in victims)
    report(
        "SIGKILL take-over",
        channels_moved=len(victims),
        taken_over_after_s=round(taken_over_s, 1),
        worst_gap_s=worst_gap_s,
        worst_gap_messages=worst_missing,
        rate_per_channel=rate_per_channel,
        sent_to_nobody=unsent,
        missing_in_kafka=missing,
    )
    # Only what Twitch sent while nobody had joined is missing (and at most what the
    # victim read but had not produced when it was killed).
    assert unsent <= missing <= unsent + slack
    # The longest stretch a victim's channel went unread, counted in messages: some, and
    # fewer than the window's worth.
    assert 0 < worst_missing < rate_per_channel * window_s


# --- 3 -------------------------------------------------------------------------------------


def test_a_fourth_instance_takes_some_channels_and_the_others_are_never_parted(
    fleet: Fleet,
) -> None:
    channels = channel_names(120)
    fleet.cli("channels", "add", *channels)
    started(fleet, ["fleet_a", "fleet_b", "fleet_c"])
    before = fleet.wait_settled(channels)
    stream = fleet.simulator.start_numbered(channels, rate=2.0 * len(channels))

    started(fleet, ["fleet_d"])
    after = fleet.wait_settled(channels)
    stream.stop()

    old, new = channel_holders(before), channel_holders(after)
    moved = {c for c in channels if new[c] != old[c]}
    assert moved, "the fourth instance got nothing"
    assert len(moved) < len(channels) / 2
    assert {new[c][0] for c in moved} == {"fleet_d"}
    for channel in channels:
        parts = delta(after.parts_by_channel, before.parts_by_channel, channel)
        joins = delta(after.joins_by_channel, before.joins_by_channel, channel)
        assert (parts, joins) == ((1, 1) if channel in moved else (0, 0)), channel
    # The old owner read each moved channel until the new one had joined it: no line
    # of the stream found nobody, and every one reached Kafka, once (the fenced
    # hand-off: test_zero_gap.py).
    final = fleet.simulator.stats()
    assert not any(final.numbered_undelivered.values())
    high = final.numbered_high_water
    records = collect_records(
        fleet.brokers, fleet.chat_topic, expected=sum(high.values()), timeout_s=30
    )
    got = numbered(records)
    for channel in channels:
        assert sorted(got[channel]) == list(range(1, high[channel] + 1)), channel
    assert len(records) == sum(high.values())
    report(
        "fourth instance",
        moved=len(moved),
        of=len(channels),
        records=len(records),
        distinct=sum(high.values()),
    )


# --- 4 -------------------------------------------------------------------------------------


def test_channels_removed_or_added_with_the_cli_are_parted_or_joined_within_seconds(
    fleet: Fleet,
) -> None:
    channels = channel_names(20)
    fleet.cli("channels", "add", *channels)
    started(fleet, ["fleet_a", "fleet_b"])
    before = fleet.wait_settled(channels)

    gone = channels[3]
    # Timed from the command's start: it includes the CLI's own ~1 s of start-up.
    written_at = time.monotonic()
    fleet.cli("channels", "remove", gone)
    fleet.simulator.wait_until(lambda s: gone not in s.joined_channels(), timeout=5)
    parted_s = time.monotonic() - written_at

    written_at = time.monotonic()
    fleet.cli("channels", "add", "newcomer")
    fleet.simulator.wait_for_joined(["newcomer"], timeout=5)
    joined_s = time.monotonic() - written_at

    stats = fleet.wait_settled([*channels[:3], *channels[4:], "newcomer"])
    assert delta(stats.parts_by_channel, before.parts_by_channel, gone) == 1
    assert stats.joins_by_channel["newcomer"] == 1
    report("CLI changes", parted_after_s=round(parted_s, 2), joined_after_s=round(joined_s, 2))


# --- 5 -------------------------------------------------------------------------------------


def _rebalance_logs(service: ServiceProcess) -> int:
    wanted = {"fleet partitions assigned", "fleet partitions revoked"}
    return sum(1 for e in service.log_events() if e.get("event") in wanted)


def test_a_restart_after_a_crash_within_the_session_timeout_keeps_its_channels_without_rebalance(
    fleet: Fleet,
) -> None:
    channels = channel_names(60)
    fleet.cli("channels", "add", *channels)
    # Room for a restart on a busy machine (the others use the broker's minimum, 6 s).
    session_timeout_s = 10.0
    fleet.env["KAFKA_CHANNELS_SESSION_TIMEOUT_MS"] = str(int(session_timeout_s * 1000))
    started(fleet, ["fleet_a", "fleet_b", "fleet_c"])
    before = fleet.wait_settled(channels)
    others = [fleet.instances["fleet_a"], fleet.instances["fleet_c"]]
    rebalances = [_rebalance_logs(service) for service in others]
    kept = {c for c, nicks in channel_holders(before).items() if nicks == ["fleet_b"]}

    # SIGKILL: a SIGTERM hands the channels over instead (test_zero_gap.py); static
    # membership is what lets a crashed instance that comes straight back keep them.
    stopping = time.monotonic()
    fleet.instances["fleet_b"].stop(signal.SIGKILL, timeout_s=20)
    restarted = fleet.start("fleet_b")
    restarted.wait_for_log("fleet partitions loaded", timeout_s=20)
    back_after_s = time.monotonic() - stopping
    after = fleet.wait_settled(channels)

    # Back within the session timeout is what no rebalance shows; the time only explains.
    assert [_rebalance_logs(service) for service in others] == rebalances, (
        f"the others rebalanced: fleet_b was back after {back_after_s:.1f} s, "
        f"session timeout {session_timeout_s} s"
    )
    assert {c for c, nicks in channel_holders(after).items() if nicks == ["fleet_b"]} == kept
    for channel in set(channels) - kept:
        assert delta(after.joins_by_channel, before.joins_by_channel, channel) == 0, channel
        assert delta(after.parts_by_channel, before.parts_by_channel, channel) == 0, channel
    report("restart after a crash", channels_kept=len(kept), back_after_s=round(back_after_s, 1))
