"""Hot-standby decisions (`fleet/standby.py`): who stands by, who is dead, which held
lines a take-over produces. Identities, reports and a fake clock in; no broker."""

from __future__ import annotations

import itertools

from tests.support.gate import CollectedChat, line, read
from twitch_ingestion.fleet.fence import FinalMark
from twitch_ingestion.fleet.standby import (
    Liveness,
    ProgressMark,
    StandbyConfig,
    StandbyWindow,
    TakeOver,
    TakeOverOutcome,
    decode_progress,
    encode_progress,
    standby_channels,
    standby_for,
    takeover_start,
)
from twitch_ingestion.sources.irc.channel_gate import ChannelGate

CHANNELS = [f"ch_{i:03d}" for i in range(300)]

# --- who is standby ----------------------------------------------------------------------------


def test_the_standby_is_never_the_owner() -> None:
    members = ["a", "b", "c"]
    for channel in CHANNELS:
        for owner in members:
            assert standby_for(channel, owner, members) not in (owner, None)


def test_every_instance_agrees_whatever_order_it_knows_the_members_in() -> None:
    members = ["a", "b", "c", "d"]
    for channel in CHANNELS[:50]:
        chosen = {standby_for(channel, "a", order) for order in itertools.permutations(members)}
        assert len(chosen) == 1


def test_no_other_member_means_no_standby() -> None:
    assert standby_for("x", "a", ["a"]) is None
    assert standby_for("x", "a", []) is None


def test_standby_spreads_over_the_members() -> None:
    counts = {"b": 0, "c": 0, "d": 0}
    for channel in CHANNELS:
        chosen = standby_for(channel, "a", ["a", "b", "c", "d"])
        assert chosen is not None
        counts[chosen] += 1
    assert all(count > 60 for count in counts.values()), counts


def test_a_member_leaving_moves_only_the_channels_it_stood_by_for() -> None:
    before = {c: standby_for(c, "a", ["a", "b", "c", "d"]) for c in CHANNELS}
    after = {c: standby_for(c, "a", ["a", "b", "c"]) for c in CHANNELS}
    moved = {c for c in CHANNELS if before[c] != after[c]}
    assert moved == {c for c in CHANNELS if before[c] == "d"}


def test_each_channel_has_exactly_one_standby_among_the_members() -> None:
    members = {"a", "b", "c"}
    owners = {c: ["a", "b", "c"][i % 3] for i, c in enumerate(CHANNELS)}
    per_member = {m: standby_channels(m, owners, members) for m in members}
    for channel, owner in owners.items():
        holders = [m for m, channels in per_member.items() if channel in channels]
        assert len(holders) == 1
        assert holders[0] != owner


def test_a_channel_whose_owner_is_not_live_has_no_standby() -> None:
    # Its owner died: the take-over (or the group) decides, not a new standby.
    assert standby_channels("b", {"x": "dead"}, {"b", "c"}) == set()


# --- who is alive --------------------------------------------------------------------------


def test_an_instance_is_dead_after_the_threshold_without_progress() -> None:
    liveness = Liveness(dead_after_s=3.0)
    liveness.heard("a", now=10.0)
    assert liveness.newly_dead(12.9) == []
    assert liveness.newly_dead(13.0) == ["a"]
    assert liveness.live() == set()


def test_progress_keeps_an_instance_alive() -> None:
    liveness = Liveness(dead_after_s=3.0)
    for tick in range(20):
        liveness.heard("a", now=tick * 0.5)
        assert liveness.newly_dead(tick * 0.5 + 0.4) == []
    assert liveness.live() == {"a"}


def test_a_dead_instance_is_declared_once() -> None:
    liveness = Liveness(dead_after_s=3.0)
    liveness.heard("a", now=0.0)
    assert liveness.newly_dead(5.0) == ["a"]
    assert liveness.newly_dead(9.0) == []


def test_progress_after_death_is_a_false_alarm_and_revives() -> None:
    liveness = Liveness(dead_after_s=3.0)
    liveness.heard("a", now=0.0)
    liveness.newly_dead(4.0)
    assert liveness.heard("a", now=4.5) is True
    assert liveness.live() == {"a"}
    assert liveness.heard("a", now=5.0) is False


def test_a_clean_stop_is_not_a_death() -> None:
    liveness = Liveness(dead_after_s=3.0)
    liveness.heard("a", now=0.0)
    liveness.gone("a")
    assert liveness.newly_dead(100.0) == []
    assert liveness.new("a")


def test_progress_records_round_trip_and_foreign_values_are_ignored() -> None:
    mark = ProgressMark(instance_id="a", at_ms=5, identities={"x": "id-1"})
    assert decode_progress(encode_progress(mark)) == mark
    assert decode_progress(b"not json") is None
    assert decode_progress(b'{"at_ms": 1}') is None


# --- which held lines are produced ---------------------------------------------------------


def test_what_follows_kafkas_last_record_is_produced() -> None:
    decision = takeover_start(
        ["1", "2", "3", "4"],
        {"1", "2"},
        last_produced_ms=0,
        dropped_until_ms=None,
        oldest_held_ms=0,
    )
    assert decision == TakeOver(2, TakeOverOutcome.AFTER_TAIL)


def test_the_newest_produced_line_wins_over_older_ones() -> None:
    # Kafka holds 3 too (only the tail of the topics is read; order is the window's).
    decision = takeover_start(
        ["1", "2", "3", "4"], {"3", "1"}, last_produced_ms=0, dropped_until_ms=5, oldest_held_ms=0
    )
    assert decision.start == 3
    assert decision.outcome.exact


def test_lines_without_identity_never_match() -> None:
    decision = takeover_start(
        [None, "7", None], {"7"}, last_produced_ms=0, dropped_until_ms=None, oldest_held_ms=0
    )
    assert decision.start == 2


def test_nothing_in_kafka_and_nothing_dropped_produces_everything_held() -> None:
    decision = takeover_start(
        ["5", "6"], set(), last_produced_ms=1_000, dropped_until_ms=None, oldest_held_ms=2_000
    )
    assert decision == TakeOver(0, TakeOverOutcome.BEFORE_WINDOW)


def test_lines_dropped_before_kafkas_last_record_are_no_gap() -> None:
    # A quiet channel: what the window dropped long ago was produced long ago.
    decision = takeover_start(
        ["9"], set(), last_produced_ms=50_000, dropped_until_ms=10_000, oldest_held_ms=55_000
    )
    assert decision.outcome is TakeOverOutcome.BEFORE_WINDOW


def test_lines_dropped_after_kafkas_last_record_are_a_gap_with_its_span() -> None:
    decision = takeover_start(
        ["9", "10"], {"4"}, last_produced_ms=1_000, dropped_until_ms=1_500, oldest_held_ms=1_600
    )
    assert decision == TakeOver(0, TakeOverOutcome.GAP, gap_from_ms=1_000, gap_to_ms=1_600)
    assert not decision.outcome.exact


# --- the rolling window ----------------------------------------------------------------------


def test_the_window_drops_lines_older_than_its_length() -> None:
    window: StandbyWindow[int] = StandbyWindow(window_s=1.0, max_bytes=10_000)
    for n in range(10):
        window.add(str(n), n, read_ms=n * 200, size=10)
    assert window.identities() == ["4", "5", "6", "7", "8", "9"]
    assert window.dropped_until_ms == 600


def test_a_quiet_channels_window_expires_by_the_clock() -> None:
    window: StandbyWindow[int] = StandbyWindow(window_s=1.0, max_bytes=10_000)
    window.add("1", 1, read_ms=0, size=10)
    window.expire(now_ms=999)
    assert len(window) == 1
    window.expire(now_ms=1_001)
    assert len(window) == 0
    assert window.bytes == 0


def test_the_window_drops_the_oldest_lines_beyond_its_byte_cap() -> None:
    window: StandbyWindow[int] = StandbyWindow(window_s=60.0, max_bytes=100)
    for n in range(5):
        window.add(str(n), n, read_ms=n, size=40)
    assert window.identities() == ["3", "4"]
    assert window.bytes == 80
    assert window.dropped_until_ms == 2


def test_a_frozen_window_keeps_old_lines_but_not_beyond_the_cap() -> None:
    window: StandbyWindow[int] = StandbyWindow(window_s=1.0, max_bytes=100)
    window.add("1", 1, read_ms=0, size=40)
    window.frozen = True
    window.expire(now_ms=10_000)
    assert len(window) == 1
    window.add("2", 2, read_ms=10_000, size=40)
    window.add("3", 3, read_ms=10_001, size=40)
    assert window.identities() == ["2", "3"]


def test_take_hands_out_the_lines_after_kafkas_copy_and_empties_the_window() -> None:
    window: StandbyWindow[str] = StandbyWindow(window_s=60.0, max_bytes=10_000)
    for n in range(1, 6):
        window.add(f"id{n}", f"line{n}", read_ms=n, size=10)
    assert window.read_ms_of("id3") == 3
    items, decision = window.take({"id3"}, last_produced_ms=3)
    assert items == ["line4", "line5"]
    assert decision.outcome is TakeOverOutcome.AFTER_TAIL
    assert len(window) == 0


def test_a_take_over_after_an_overflow_reports_the_gap() -> None:
    window: StandbyWindow[str] = StandbyWindow(window_s=60.0, max_bytes=20)
    for n in range(1, 6):
        window.add(f"id{n}", f"line{n}", read_ms=n * 100, size=10)
    # Kafka's last record is line 1 (read at 100): lines 2-3 were dropped unproduced.
    items, decision = window.take({"id1"}, last_produced_ms=100)
    assert items == ["line4", "line5"]
    assert decision == TakeOver(0, TakeOverOutcome.GAP, gap_from_ms=100, gap_to_ms=400)


# --- the IRC gate standing by ----------------------------------------------------------------


CONFIG = StandbyConfig(replicas=2, window_s=60.0, window_bytes=1_000_000)


async def test_a_standby_produces_nothing_of_its_channels() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.stand_by(["a"], CONFIG)
    await read(gate, line("a", 1), line("b", 1), line("a", 2))
    assert sink.lines == ["b1"]
    assert gate.standing_by() == ["a"]
    assert gate.window_identities("a") == {"a-1", "a-2"}
    assert gate.window_bytes() > 0


async def test_a_take_over_produces_what_follows_kafkas_copy_then_the_channel() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.stand_by(["a"], CONFIG)
    await read(gate, line("a", 1), line("a", 2), line("a", 3), at_ms=1_000)
    gate.freeze(["a"])
    assert gate.tail_start_ms("a", "a-2") == 1_000
    decision = gate.take_over("a", {"a-1", "a-2"}, last_produced_ms=1_000, track=True)
    assert decision is not None
    assert decision.outcome is TakeOverOutcome.AFTER_TAIL
    await read(gate, line("a", 4))
    assert sink.lines == ["a3", "a4"]
    # Tracked: the group's new owner gets a final mark on the last line handed on.
    assert gate.stop(["a"]) == {"a": "a-4"}


async def test_a_take_over_of_a_channel_not_stood_by_does_nothing() -> None:
    gate = ChannelGate(CollectedChat())
    assert gate.take_over("a", set(), last_produced_ms=0, track=False) is None
    assert gate.tail_start_ms("a", None) is None


async def test_a_standby_made_owner_is_fenced_like_any_new_owner() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.stand_by(["a"], CONFIG)
    await read(gate, line("a", 1))
    gate.hold(["a"], read_elsewhere={"a"})
    assert gate.standing_by() == []
    await read(gate, line("a", 2), line("a", 3))
    gate.release(
        "a", FinalMark(channel="a", from_instance="o", to_instance="", identity="a-2", at_ms=0)
    )
    await read(gate)
    assert sink.lines == ["a3"]


async def test_no_longer_standby_drops_the_window_and_what_is_read_until_parted() -> None:
    # The owner produces the channel: a line the standby reads between the decision and
    # its PART taking effect must not reach Kafka a second time (issue 18's rolling
    # restart with replicas 2 repeated one line this way).
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.stand_by(["a"], CONFIG)
    await read(gate, line("a", 1))
    gate.stop_standing_by(["a"])
    await read(gate, line("a", 2), line("b", 1))
    assert gate.standing_by() == []
    assert sink.lines == ["b1"]


async def test_a_channel_no_longer_stood_by_is_produced_once_it_is_ours() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.stand_by(["a", "b"], CONFIG)
    gate.stop_standing_by(["a", "b"])
    gate.produce(["a"])  # given to us with nobody else reading it
    gate.hold(["b"], read_elsewhere=set())
    await read(gate, line("a", 1), line("b", 1))
    gate.expire(float("inf"))
    await read(gate)
    assert sorted(sink.lines) == ["a1", "b1"]


async def test_a_standby_channel_removed_from_the_fleet_is_not_produced_by_the_standby() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.stand_by(["a"], CONFIG)
    gate.forget(["a"])
    await read(gate, line("a", 1))
    assert gate.standing_by() == []
    assert sink.lines == []


async def test_progress_names_the_last_line_of_each_channel_produced_since_the_last_one() -> None:
    gate = ChannelGate(CollectedChat())
    gate.enable_progress()
    await read(gate, line("a", 1), line("b", 1), line("a", 2))
    await read(gate, line("b", 2))
    assert gate.progress() == {"a": "a-2", "b": "b-2"}
    assert gate.progress() == {}
    gate.stand_by(["c"], CONFIG)
    await read(gate, line("c", 1), line("a", 3))
    assert gate.progress() == {"a": "a-3"}


async def test_without_replicas_the_gate_remembers_nothing_for_progress() -> None:
    gate = ChannelGate(CollectedChat())
    await read(gate, line("a", 1))
    assert gate.progress() == {}
