"""Giving channels away: read them until the new owner reports them joined."""

from __future__ import annotations

from twitch_ingestion.fleet.handover import HandoverTracker
from twitch_ingestion.fleet.status import InstanceReport


def report(
    instance_id: str,
    channels: list[str],
    *,
    ready: bool = True,
    releasing: list[str] | None = None,
) -> InstanceReport:
    return InstanceReport(
        instance_id=instance_id,
        host="h",
        pid=1,
        login=instance_id,
        started_at_ms=0,
        updated_at_ms=0,
        channels=tuple(channels),
        releasing=tuple(releasing or ()),
        ready=ready,
    )


def test_released_channels_are_kept_until_the_new_owner_reports_them_joined() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a", "b"], 9: ["c"]}, now=0.0)
    assert sorted(tracker.channels) == ["a", "b", "c"]
    assert tracker.on_report(report("other", ["a", "c", "x"])) == ["a", "c"]
    assert tracker.channels == ["b"]


def test_a_new_owner_still_joining_is_not_enough() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a"]}, now=0.0)
    assert tracker.on_report(report("other", ["a"], ready=False)) == []
    assert tracker.on_report(report("other", ["a"], ready=True)) == ["a"]


def test_a_report_from_before_the_release_does_not_count() -> None:
    tracker = HandoverTracker("me")
    # Arrived before the release (e.g. the last report of an instance that then crashed
    # while holding the channel): it says nothing about who holds it now.
    tracker.on_report(report("crashed", ["a"]))
    tracker.release({4: ["a"]}, now=0.0)
    assert "a" in tracker
    assert tracker.on_report(report("new_owner", ["b"])) == []
    assert tracker.on_report(report("new_owner", ["a", "b"])) == ["a"]


def test_our_own_report_never_completes_a_hand_over() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a"]}, now=0.0)
    assert tracker.on_report(report("me", ["a"])) == []


def test_a_channel_the_reporter_is_itself_releasing_does_not_count() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a"]}, now=0.0)
    assert tracker.on_report(report("other", ["a"], releasing=["a"])) == []


def test_hand_overs_time_out() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a"]}, now=0.0)
    tracker.release({5: ["b"]}, now=5.0)
    assert tracker.expired(now=9.9, timeout_s=10.0) == []
    assert tracker.expired(now=10.0, timeout_s=10.0) == ["a"]
    assert tracker.expired(now=15.0, timeout_s=10.0) == ["b"]
    assert len(tracker) == 0


def test_a_partition_assigned_back_keeps_its_channels_and_drops_the_removed_ones() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a", "b"], 5: ["c"]}, now=0.0)
    # Partition 4 came back, and "b" was removed from the table in the meantime.
    assert tracker.reclaim(4, ["a", "new"]) == ["b"]
    assert tracker.channels == ["c"]
