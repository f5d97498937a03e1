"""Fenced hand-off decisions (`fleet/fence.py`) and the IRC source's `ChannelGate` that
applies them: identities, marks and a fake clock in, what is produced out. No broker."""

from __future__ import annotations

import asyncio

from tests.support.gate import CollectedChat, line, read
from twitch_ingestion.fleet.fence import (
    MARK_WAIT_S,
    NO_OWNER_GRACE_S,
    FinalMark,
    HoldWindow,
    Release,
    ReleaseOutcome,
    decode_mark,
    encode_mark,
    lines_after_mark,
)
from twitch_ingestion.sources.irc.channel_gate import ChannelGate


def mark(identity: str | None, channel: str = "a") -> FinalMark:
    return FinalMark(
        channel=channel, from_instance="old", to_instance="new", identity=identity, at_ms=0
    )


# --- which held lines are produced after a mark ------------------------------------------


def test_the_lines_after_the_mark_are_produced() -> None:
    assert lines_after_mark(["1", "2", "3", "4"], "2", overflowed=False) == Release(
        2, ReleaseOutcome.AFTER_MARK
    )


def test_a_mark_on_the_last_held_line_produces_nothing_held() -> None:
    assert lines_after_mark(["1", "2"], "2", overflowed=False).start == 2


def test_lines_without_identity_never_match_a_mark() -> None:
    # A ROOMSTATE answering our JOIN has no identity here: only markable lines count.
    assert lines_after_mark([None, "7", None, "8"], "7", overflowed=False).start == 2


def test_no_record_since_the_release_produces_everything_held() -> None:
    assert lines_after_mark(["1", "2"], None, overflowed=False) == Release(
        0, ReleaseOutcome.NOTHING_PRODUCED
    )


def test_a_mark_older_than_a_complete_window_produces_everything_exactly() -> None:
    release = lines_after_mark(["5", "6"], "4", overflowed=False)
    assert release == Release(0, ReleaseOutcome.MARK_BEFORE_WINDOW)
    assert release.outcome.exact


def test_a_mark_missing_from_an_overflowed_window_is_a_possible_gap() -> None:
    release = lines_after_mark(["5", "6"], "2", overflowed=True)
    assert release == Release(0, ReleaseOutcome.POSSIBLE_GAP)
    assert not release.outcome.exact


# --- the window, with a fake clock ----------------------------------------------------------


def test_a_window_keeps_the_newest_lines_and_says_it_overflowed() -> None:
    window: HoldWindow[int] = HoldWindow(expects_mark=True, max_lines=3)
    for number in range(1, 6):
        window.add(str(number), number, float(number))
    assert window.overflowed
    items, release = window.release(mark("4"))
    assert (items, release.outcome) == ([5], ReleaseOutcome.AFTER_MARK)
    assert len(window) == 0


def test_the_wait_for_a_mark_starts_with_the_first_line_held() -> None:
    # Joined only after minutes in the JOIN queue: until then nothing is held or late.
    window: HoldWindow[int] = HoldWindow(expects_mark=True, max_lines=10)
    assert not window.expired(1_000.0)
    window.add("1", 1, 1_000.0)
    assert not window.expired(1_000.0 + MARK_WAIT_S - 0.1)
    assert window.expired(1_000.0 + MARK_WAIT_S)


def test_no_mark_by_the_deadline_produces_everything_as_possible_repeats() -> None:
    window: HoldWindow[int] = HoldWindow(expects_mark=True, max_lines=10)
    window.add("1", 1, 100.0)
    assert window.expired(100.0 + MARK_WAIT_S)
    items, release = window.release(None)
    assert (items, release.outcome) == ([1], ReleaseOutcome.NO_MARK)
    assert not release.outcome.exact


def test_a_channel_nobody_else_read_is_produced_after_the_grace() -> None:
    window: HoldWindow[int] = HoldWindow(expects_mark=False, max_lines=10)
    window.add("1", 1, 0.0)
    assert not window.expired(NO_OWNER_GRACE_S - 0.1)
    assert window.expired(NO_OWNER_GRACE_S)
    assert window.release(None)[1].outcome is ReleaseOutcome.NO_OTHER_READER


def test_a_report_of_a_hand_over_during_the_grace_waits_for_its_mark() -> None:
    window: HoldWindow[int] = HoldWindow(expects_mark=False, max_lines=10)
    window.add("1", 1, 0.0)
    window.expect_mark()
    assert not window.expired(NO_OWNER_GRACE_S)
    assert window.expired(MARK_WAIT_S)
    assert window.release(None)[1].outcome is ReleaseOutcome.NO_MARK


def test_marks_round_trip_and_foreign_records_are_not_marks() -> None:
    assert decode_mark(encode_mark(mark("x"))) == mark("x")
    assert decode_mark(b'{"instance_id": "a"}') is None
    assert decode_mark(b"garbage") is None


# --- the IRC gate ---------------------------------------------------------------------------


async def test_the_old_owner_marks_the_last_line_it_handed_on_and_drops_the_rest() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    await read(gate, line("a", 1), line("b", 1))
    gate.track(["a"])
    await read(gate, line("a", 2), line("b", 2), line("a", 3))
    assert gate.stop(["a"]) == {"a": "a-3"}
    await read(gate, line("a", 4), line("b", 3))
    assert sink.lines == ["a1", "b1", "a2", "b2", "a3", "b3"]


async def test_a_channel_given_away_before_saying_anything_marks_none() -> None:
    gate = ChannelGate(CollectedChat())
    gate.track(["a"])
    assert gate.stop(["a"]) == {"a": None}


async def test_the_new_owner_produces_only_what_follows_the_mark_then_goes_on() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.hold(["a"], read_elsewhere={"a"})
    await read(gate, line("a", 2), line("b", 1), line("a", 3), line("a", 4))
    assert sink.lines == ["b1"]
    release = gate.release("a", mark("a-3"))
    assert release == Release(2, ReleaseOutcome.AFTER_MARK)  # held: a2 a3 | a4
    await read(gate, line("a", 5))
    assert sink.lines == ["b1", "a4", "a5"]
    assert gate.holding() == []


async def test_a_held_channel_waits_for_its_mark_until_the_deadline() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.hold(["a"], read_elsewhere={"a"})
    held_at = asyncio.get_running_loop().time()
    await read(gate, line("a", 1))
    assert gate.expire(held_at + MARK_WAIT_S - 1) == {}
    expired = gate.expire(asyncio.get_running_loop().time() + MARK_WAIT_S)
    assert expired["a"].outcome is ReleaseOutcome.NO_MARK
    await read(gate)
    assert sink.lines == ["a1"]


async def test_lines_read_while_a_window_is_flushed_queue_behind_it() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.hold(["a"], read_elsewhere={"a"})
    await gate.deliver([line("a", 1), line("a", 2)], 0, {})
    gate.release("a", mark(None))
    await gate.deliver([line("a", 3)], 1, {})  # before the flush task ran
    await read(gate, line("a", 4))
    assert sink.lines == ["a1", "a2", "a3", "a4"]


async def test_a_held_channel_given_away_again_hands_on_all_it_held_and_marks_its_end() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.hold(["a"], read_elsewhere={"a"})
    await read(gate, line("a", 1), line("a", 2))
    assert gate.stop(["a"]) == {"a": "a-2"}
    await read(gate, line("a", 3))
    assert sink.lines == ["a1", "a2"]


async def test_a_channel_given_away_while_held_is_tracked_once_produced() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.hold(["a"], read_elsewhere=set())
    await read(gate, line("a", 1))
    gate.track(["a"])
    gate.expire(asyncio.get_running_loop().time() + NO_OWNER_GRACE_S)
    await read(gate, line("a", 2))
    assert gate.stop(["a"]) == {"a": "a-2"}
    assert sink.lines == ["a1", "a2"]


async def test_a_channel_taken_back_is_produced_again() -> None:
    sink = CollectedChat()
    gate = ChannelGate(sink)
    gate.track(["a"])
    gate.produce(["a"])
    await read(gate, line("a", 1))
    assert gate.stop(["a"]) == {}
    assert sink.lines == ["a1"]
