"""The pool's decisions (`sources/irc/pool_policy.py`) and small parts, driven by a fake clock."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.sources.irc.connection import DisconnectCause
from twitch_ingestion.sources.irc.dedup import RecentIds
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.malformed_log import MalformedLineLog
from twitch_ingestion.sources.irc.open_pacer import OpenPacer
from twitch_ingestion.sources.irc.pool_policy import (
    ChannelPlan,
    HandoverPlan,
    HandoverStep,
    JoinOutcome,
    assign_channels,
    reconnect_cause,
)

RETRY_S = 60.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- assign_channels ------------------------------------------------------------------------


def test_new_channels_fill_open_slots_in_order_before_opening_new_ones() -> None:
    plan = assign_channels([(1, 2), (2, 3), (4, 1)], list("abcdefghij"), per_connection=3)

    assert plan.into_existing == {1: ["a"], 4: ["b", "c"]}
    assert plan.new_slots == [["d", "e", "f"], ["g", "h", "i"], ["j"]]


def test_no_channels_means_no_change() -> None:
    plan = assign_channels([(1, 0)], [], per_connection=50)

    assert plan.into_existing == {}
    assert plan.new_slots == []


# --- ChannelPlan: joining and retrying ----------------------------------------------------


def test_a_fresh_connection_joins_every_wanted_channel_not_waiting_for_a_retry() -> None:
    plan = ChannelPlan(["a", "b", "c"], RETRY_S)
    plan.refused("b", "msg_banned: gone", now=100.0)

    assert plan.to_join() == ["a", "c"]


def test_a_refused_channel_is_retried_after_the_interval_not_before() -> None:
    plan = ChannelPlan(["a"], RETRY_S)

    assert plan.refused("a", "msg_channel_suspended: x", now=100.0) is True
    assert plan.next_retry_at() == 160.0
    assert plan.take_due(159.9) == []
    assert plan.take_due(160.0) == ["a"]
    assert plan.next_retry_at() is None
    assert plan.take_due(1000.0) == [], "taken once"
    assert plan.failed == {"a": "msg_channel_suspended: x"}, "failed until joined"
    assert plan.to_join() == ["a"], "off the schedule: the next connection joins it"


def test_a_channel_failing_again_is_logged_once_and_rescheduled() -> None:
    plan = ChannelPlan(["a"], RETRY_S)

    assert plan.timed_out("a", "no echo", now=0.0) is True
    assert plan.take_due(60.0) == ["a"]
    assert plan.timed_out("a", "no echo", now=61.0) is False
    assert plan.next_retry_at() == 121.0


def test_the_next_retry_is_the_earliest_scheduled() -> None:
    plan = ChannelPlan(["a", "b"], RETRY_S)
    plan.refused("a", "r", now=10.0)
    plan.parted("b", now=5.0)

    assert plan.next_retry_at() == 65.0
    assert plan.failed["b"] == "parted by the server"
    assert plan.take_due(65.0) == ["b"]


def test_a_join_echo_clears_the_failure_and_says_it_recovered() -> None:
    plan = ChannelPlan(["a", "b"], RETRY_S)
    plan.refused("a", "r", now=0.0)

    assert plan.joined("a") is JoinOutcome.RECOVERED
    assert plan.joined("b") is JoinOutcome.JOINED
    assert plan.failed == {}
    assert plan.next_retry_at() is None


def test_a_join_echo_for_a_removed_channel_means_part_it() -> None:
    plan = ChannelPlan(["a"], RETRY_S)
    plan.remove(["a"])

    assert plan.joined("a") is JoinOutcome.UNWANTED


def test_failures_of_channels_no_longer_wanted_are_ignored() -> None:
    plan = ChannelPlan(["a"], RETRY_S)

    assert plan.refused("zzz", "r", now=0.0) is False
    assert plan.timed_out("zzz", "r", now=0.0) is False
    assert plan.failed == {}
    assert plan.next_retry_at() is None


def test_removing_a_failed_channel_cancels_its_retry() -> None:
    plan = ChannelPlan(["a", "b"], RETRY_S)
    plan.refused("a", "r", now=0.0)
    plan.remove(["a"])

    assert plan.failed == {}
    assert plan.next_retry_at() is None
    assert plan.to_join() == ["b"]


def test_join_timeouts_of_a_dead_connection_are_joined_again_at_once() -> None:
    plan = ChannelPlan(["quiet", "banned", "ok"], RETRY_S)
    plan.timed_out("quiet", "no JOIN echo", now=0.0)
    plan.refused("banned", "msg_banned: x", now=0.0)

    plan.connection_lost()

    assert plan.to_join() == ["quiet", "ok"], "the silence was the connection's"
    assert plan.next_retry_at() == 60.0, "a NOTICE refusal keeps its schedule"


def test_a_refusal_after_a_timeout_is_the_channels_fault() -> None:
    plan = ChannelPlan(["a"], RETRY_S)
    plan.timed_out("a", "no JOIN echo", now=0.0)
    plan.refused("a", "msg_banned: x", now=1.0)

    plan.connection_lost()

    assert plan.to_join() == []
    assert plan.next_retry_at() == 61.0


def test_settled_means_every_wanted_channel_joined_or_failed() -> None:
    plan = ChannelPlan(["a", "b", "c"], RETRY_S)
    plan.refused("c", "r", now=0.0)

    assert not plan.settled({"a"})
    assert plan.not_yet_joined({"a"}) == ["b"]
    assert plan.settled({"a", "b"})
    assert plan.not_yet_joined({"a", "b"}) == []


# --- HandoverPlan -------------------------------------------------------------------------


def handover(opened_at: float = 0.0) -> HandoverPlan:
    plan = HandoverPlan(join_timeout_s=10.0, overlap_s=5.0)
    plan.successor_opened(opened_at)
    return plan


def test_a_hand_over_waits_for_the_new_connection_to_join_then_overlaps() -> None:
    plan = handover()
    alive = {"successor_alive": True, "old_closing": False}

    assert plan.step(0.0, settled=False, **alive) == (HandoverStep.WAIT, 21.0)
    assert plan.step(3.0, settled=True, **alive) == (HandoverStep.WAIT, 8.0)
    assert plan.step(7.9, settled=True, **alive) == (HandoverStep.WAIT, 8.0)
    assert plan.step(8.0, settled=True, **alive) == (HandoverStep.DROP_OLD, 8.0)
    assert plan.done


def test_joins_that_take_too_long_do_not_hold_the_hand_over_forever() -> None:
    plan = handover(opened_at=100.0)
    alive = {"successor_alive": True, "old_closing": False}

    assert plan.step(120.9, settled=False, **alive) == (HandoverStep.WAIT, 121.0)
    assert plan.step(121.0, settled=False, **alive) == (HandoverStep.WAIT, 126.0)
    assert plan.step(126.0, settled=False, **alive)[0] is HandoverStep.DROP_OLD


def test_the_old_connection_closing_ends_the_hand_over_at_once() -> None:
    plan = handover()

    step = plan.step(2.0, settled=False, successor_alive=True, old_closing=True)

    assert step == (HandoverStep.DROP_OLD, 2.0)


def test_the_old_connection_closing_during_the_overlap_ends_it() -> None:
    plan = handover()
    plan.step(1.0, settled=True, successor_alive=True, old_closing=False)

    assert plan.step(2.0, settled=True, successor_alive=True, old_closing=True)[0] is (
        HandoverStep.DROP_OLD
    )


def test_a_dead_successor_stops_the_join_wait_but_the_old_one_keeps_reading() -> None:
    plan = handover()

    assert plan.step(1.0, settled=False, successor_alive=False, old_closing=False) == (
        HandoverStep.WAIT,
        6.0,
    )


def test_deduplication_outlives_the_hand_over_by_the_overlap_at_least_a_second() -> None:
    assert HandoverPlan(10.0, overlap_s=5.0).dedup_expires_at(100.0) == 105.0
    assert HandoverPlan(10.0, overlap_s=0.0).dedup_expires_at(100.0) == 101.0


def test_a_hand_over_step_needs_an_opened_successor() -> None:
    with pytest.raises(RuntimeError):
        HandoverPlan(10.0, 5.0).step(0.0, settled=True, successor_alive=True, old_closing=False)


# --- reconnect causes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "joins_pending", "label"),
    [
        (DisconnectCause.CONNECTION_LOST, True, "join_limit"),
        (DisconnectCause.CONNECTION_LOST, False, "connection_lost"),
        (DisconnectCause.KEEPALIVE_TIMEOUT, True, "keepalive_timeout"),
        (DisconnectCause.CLOSED, False, "connection_lost"),
    ],
)
def test_reconnect_cause_labels(cause: DisconnectCause, joins_pending: bool, label: str) -> None:
    assert reconnect_cause(cause, joins_pending=joins_pending) == label


# --- small parts ------------------------------------------------------------------------------


def test_the_open_pacer_hands_out_one_turn_per_interval() -> None:
    pacer = OpenPacer(interval_s=2.0)

    assert pacer.reserve(10.0) == 0.0
    assert pacer.reserve(10.0) == 2.0
    assert pacer.reserve(10.5) == 3.5, "queued behind the turn at 12"
    assert pacer.reserve(30.0) == 0.0, "idle time is not saved up"


def test_recent_ids_let_each_line_through_once_and_count_the_rest() -> None:
    lines = [
        parse_line("@id=1 :a!a@a PRIVMSG #c :one"),
        parse_line("@id=2 :a!a@a PRIVMSG #c :two"),
        parse_line("@room-id=9;tmi-sent-ts=5 :tmi.twitch.tv ROOMSTATE #c"),
    ]
    again = [parse_line(line.raw) for line in lines]
    dedup = RecentIds()
    before = sample("twitch_ingestion_irc_duplicate_messages_dropped_total")

    assert dedup.fresh(lines) == lines
    assert dedup.fresh([*again, parse_line("@id=3 :a!a@a PRIVMSG #c :three")])[0].raw.endswith(
        "three"
    )
    assert sample("twitch_ingestion_irc_duplicate_messages_dropped_total") == before + 3


def test_recent_ids_forget_the_oldest_beyond_their_capacity() -> None:
    dedup = RecentIds(capacity=2)
    first, second, third = (parse_line(f"@id={i} :a!a@a PRIVMSG #c :x") for i in range(3))
    dedup.fresh([first, second, third])

    assert dedup.fresh([parse_line(first.raw)]) != [], "evicted"
    assert dedup.fresh([parse_line(third.raw)]) == []


def test_recent_ids_expire_only_once_given_an_end() -> None:
    dedup = RecentIds()
    assert not dedup.expired(1e9)

    dedup.expires_at = 10.0
    assert not dedup.expired(9.99)
    assert dedup.expired(10.0)


def test_malformed_lines_log_the_first_per_reason_then_a_summary_per_interval() -> None:
    malformed = MalformedLineLog(summary_interval_s=10.0)
    before = sample("twitch_ingestion_irc_malformed_lines_total", reason="test-reason")

    with capture_logs() as logs:
        malformed.record(b"\xffbad", "test-reason", now=100.0)
        for at in (101.0, 102.0, 109.9):
            malformed.record(b"bad", "test-reason", now=at)
        malformed.record(b"bad", "test-reason", now=110.0)
        malformed.record(b"bad", "test-reason", now=111.0)

    assert [entry["event"] for entry in logs] == [
        "malformed twitch line dead-lettered",
        "malformed twitch lines since last report",
    ]
    assert logs[0]["sample"] == "\\xffbad"
    assert logs[1]["counts"] == {"test-reason": 4}
    assert sample("twitch_ingestion_irc_malformed_lines_total", reason="test-reason") == before + 6
