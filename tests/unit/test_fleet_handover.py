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
    not_joined: list[str] | None = None,
) -> InstanceReport:
    """A report; without `not_joined`, as an instance older than per-channel hand-over
    writes it (no joined set, only `ready`)."""
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
        not_joined=tuple(not_joined) if not_joined is not None else None,
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


# --- per channel -----------------------------------------------------------------------------


def test_each_channel_is_handed_over_as_soon_as_the_new_owner_has_joined_it() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a", "b", "c"]}, now=0.0)
    # The new owner is still joining (not ready): what it has joined is handed over.
    has_a = report("other", ["a", "b", "c"], ready=False, not_joined=["b", "c"])
    has_b = report("other", ["a", "b", "c"], ready=False, not_joined=["c"])
    assert tracker.on_report(has_a) == ["a"]
    assert tracker.on_report(has_b) == ["b"]
    assert sorted(tracker.channels) == ["c"]
    assert tracker.on_report(report("other", ["a", "b", "c"], not_joined=[])) == ["c"]
    assert len(tracker) == 0


def test_a_channel_the_new_owner_could_not_join_stays_although_it_reports_ready() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a", "refused"]}, now=0.0)
    # `ready` counts channels Twitch refused: it is no longer what decides.
    assert tracker.on_report(report("other", ["a", "refused"], not_joined=["refused"])) == ["a"]
    assert tracker.channels == ["refused"]
    assert tracker.expired(now=10.0, timeout_s=10.0) == ["refused"]


def test_a_joined_channel_the_reporter_is_itself_releasing_does_not_count() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a"]}, now=0.0)
    assert tracker.on_report(report("other", ["a"], releasing=["a"], not_joined=[])) == []


def test_a_report_of_an_older_instance_hands_over_everything_once_it_is_ready() -> None:
    tracker = HandoverTracker("me")
    tracker.release({4: ["a", "b"]}, now=0.0)
    assert tracker.on_report(report("old", ["a", "b"], ready=False)) == []
    assert tracker.on_report(report("old", ["a", "b"], ready=True)) == ["a", "b"]


def test_per_channel_reports_still_count_only_after_the_release() -> None:
    tracker = HandoverTracker("me")
    tracker.on_report(report("crashed", ["a"], not_joined=[]))
    tracker.release({4: ["a"]}, now=0.0)
    assert tracker.on_report(report("new_owner", ["a"], not_joined=["a"])) == []
    assert tracker.on_report(report("new_owner", ["a"], not_joined=[])) == ["a"]
