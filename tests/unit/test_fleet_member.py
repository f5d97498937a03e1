"""The loop side of fleet membership: assignment events in, JOIN/PART calls out; the
instance report; the `status` view; the settings. No broker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.gate import CollectedChat
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import ChannelSource, ConfigError, Settings, load_settings
from twitch_ingestion.fleet.assignment import FleetMember
from twitch_ingestion.fleet.config import FleetConfig
from twitch_ingestion.fleet.control_reader import group_consumer_config
from twitch_ingestion.fleet.events import (
    ChannelsChanged,
    MarkReceived,
    PartitionLoaded,
    PartitionsAssigned,
    PartitionsRevoked,
    ReportReceived,
)
from twitch_ingestion.fleet.fence import ChannelFence, FinalMark, decode_mark
from twitch_ingestion.fleet.status import (
    InstanceReport,
    decode_report,
    encode_report,
    fleet_view,
    render_status,
)
from twitch_ingestion.sources.irc.channel_gate import ChannelGate
from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable from the developer's shell and no .env file leaks into a case."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


class FakeSource:
    """Records add/remove calls the way `TwitchSource` would apply them."""

    def __init__(self) -> None:
        self.wanted: dict[str, None] = {}
        self.calls: list[tuple[str, list[str]]] = []
        self.ready = True
        self.joined: set[str] = set()

    @property
    def channels(self) -> list[str]:
        return list(self.wanted)

    @property
    def failed_channels(self) -> dict[str, str]:
        return {}

    def add_channels(self, channels: Iterable[str]) -> None:
        added = list(channels)
        self.calls.append(("add", added))
        self.wanted.update(dict.fromkeys(added))

    def remove_channels(self, channels: Iterable[str]) -> None:
        removed = list(channels)
        self.calls.append(("remove", removed))
        for channel in removed:
            self.wanted.pop(channel, None)

    def joined_channels(self) -> frozenset[str]:
        return frozenset(self.joined)

    def is_ready(self) -> bool:
        return self.ready

    def status(self) -> dict[str, object]:
        return {"channels_joined": len(self.wanted)}

    @property
    def fence(self) -> ChannelFence | None:
        return None


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "channel_source": "kafka",
        "instance_id": "me",
        "twitch_username": "fleetbot",
        "twitch_oauth_token": "oauth:abc123",
    }
    return load_settings(**{**base, **overrides})


def config(**overrides: Any) -> FleetConfig:
    return configs.fleet_config(settings(**overrides))


def other(
    channels: list[str], *, ready: bool = True, not_joined: list[str] | None = None
) -> ReportReceived:
    """Another instance's report; without `not_joined` in the older format."""
    return ReportReceived(
        InstanceReport(
            instance_id="other",
            host="h",
            pid=2,
            login="other",
            started_at_ms=0,
            updated_at_ms=0,
            channels=tuple(channels),
            ready=ready,
            not_joined=tuple(not_joined) if not_joined is not None else None,
        )
    )


def member(**overrides: Any) -> tuple[FleetMember, FakeSource]:
    source = FakeSource()
    return FleetMember(config(**overrides), source, group_is_empty=lambda: False), source


async def test_a_loaded_partition_s_channels_are_joined() -> None:
    fleet, source = member()
    fleet.handle_event(PartitionsAssigned((1, 2)))
    fleet.handle_event(PartitionLoaded(1, ("a", "b")))
    fleet.handle_event(PartitionLoaded(2, ()))
    assert source.channels == ["a", "b"]
    assert fleet.partitions == [1, 2]


async def test_settled_only_once_every_assigned_partition_is_loaded() -> None:
    fleet, _ = member()
    assert not fleet.settled
    fleet.handle_event(PartitionsAssigned((1, 2)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    assert not fleet.settled
    fleet.handle_event(PartitionLoaded(2, ()))
    assert fleet.settled
    fleet.handle_event(PartitionsAssigned((3,)))
    assert not fleet.settled


async def test_live_records_add_and_remove_at_once() -> None:
    fleet, source = member()
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    fleet.handle_event(ChannelsChanged(1, added=("b",), removed=()))
    fleet.handle_event(ChannelsChanged(1, added=(), removed=("a",)))
    assert source.channels == ["b"]
    assert source.calls[-1] == ("remove", ["a"])


async def test_revoked_channels_are_read_until_the_new_owner_has_joined_them() -> None:
    fleet, source = member()
    fleet.handle_event(PartitionsAssigned((1, 2)))
    fleet.handle_event(PartitionLoaded(1, ("a", "b")))
    fleet.handle_event(PartitionLoaded(2, ("c",)))
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a", "b")}, lost=False))
    assert source.channels == ["a", "b", "c"]
    assert fleet.partitions == [2]
    assert sorted(fleet.releasing) == ["a", "b"]
    fleet.handle_event(other(["a", "b"], ready=False))
    assert source.channels == ["a", "b", "c"]
    fleet.handle_event(other(["a", "b"]))
    assert source.channels == ["c"]
    assert fleet.releasing == []


async def test_a_moved_channel_is_parted_once_its_new_owner_has_joined_that_channel() -> None:
    fleet, source = member()
    fleet.handle_event(PartitionsAssigned((1, 2)))
    fleet.handle_event(PartitionLoaded(1, ("a", "b")))
    fleet.handle_event(PartitionLoaded(2, ("c",)))
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a", "b")}, lost=False))
    # The new owner has joined "a" and is still waiting for its turn to JOIN "b".
    fleet.handle_event(other(["a", "b"], ready=False, not_joined=["b"]))
    assert source.channels == ["b", "c"]
    assert fleet.releasing == ["b"]
    assert source.calls[-1] == ("remove", ["a"])
    fleet.handle_event(other(["a", "b"], ready=True, not_joined=[]))
    assert source.channels == ["c"]
    assert fleet.releasing == []


async def test_a_hand_over_nobody_completes_ends_at_the_timeout() -> None:
    fleet, source = member(kafka_channels_handover_timeout_s=30)
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a",)}, lost=True))
    released_at = asyncio.get_running_loop().time()
    fleet.tick(released_at + 29)
    assert source.channels == ["a"]
    fleet.tick(released_at + 30)
    assert source.channels == []


async def test_a_handover_timeout_of_zero_parts_at_revocation() -> None:
    fleet, source = member(kafka_channels_handover_timeout_s=0)
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a",)}, lost=False))
    assert source.channels == []


class FakeReader:
    """The reader thread, reduced to what a hand-off asks of it."""

    def __init__(self) -> None:
        self.leave_requested = False

    def request_leave(self) -> None:
        self.leave_requested = True


async def test_a_hand_off_leaves_the_group_and_returns_once_every_channel_is_taken() -> None:
    fleet, source = member()
    reader = FakeReader()
    fleet._reader = reader  # type: ignore[assignment]
    fleet.handle_event(PartitionsAssigned((1, 2)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    fleet.handle_event(PartitionLoaded(2, ("b",)))
    handing_off = asyncio.create_task(fleet.hand_off(10.0))
    await asyncio.sleep(0)
    assert reader.leave_requested
    fleet.handle_event(PartitionsRevoked((1, 2), {1: ("a",), 2: ("b",)}, lost=False))
    assert source.channels == ["a", "b"]  # still read until taken
    fleet.handle_event(other(["a"], not_joined=[]))
    await asyncio.sleep(0)
    assert not handing_off.done()
    fleet.handle_event(other(["a", "b"], not_joined=[]))
    assert await asyncio.wait_for(handing_off, 1.0) == []
    assert source.channels == []


async def test_a_hand_off_stops_waiting_once_nobody_is_left_in_the_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("twitch_ingestion.fleet.assignment._GROUP_CHECK_S", 0.01)
    source = FakeSource()
    fleet = FleetMember(config(), source, group_is_empty=lambda: True)
    fleet._reader = FakeReader()  # type: ignore[assignment]
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    handing_off = asyncio.create_task(fleet.hand_off(30.0))
    await asyncio.sleep(0)
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a",)}, lost=False))
    assert await asyncio.wait_for(handing_off, 5.0) == ["a"]


async def test_a_hand_off_nobody_completes_returns_the_channels_left() -> None:
    fleet, _ = member()
    fleet._reader = FakeReader()  # type: ignore[assignment]
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a", "b")))
    handing_off = asyncio.create_task(fleet.hand_off(0.05))
    await asyncio.sleep(0)
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a", "b")}, lost=False))
    fleet.handle_event(other(["b"], not_joined=[]))
    assert await handing_off == ["a"]


async def test_a_partition_assigned_back_during_its_hand_over_keeps_its_channels() -> None:
    fleet, source = member()
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a", "b")))
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a", "b")}, lost=False))
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))  # "b" was removed meanwhile
    assert source.channels == ["a"]
    assert fleet.releasing == []
    fleet.handle_event(other(["a"]))  # a stray report changes nothing now
    assert source.channels == ["a"]


async def test_a_channel_another_owned_partition_still_wants_is_not_parted() -> None:
    fleet, source = member()
    fleet.handle_event(PartitionsAssigned((1, 2)))
    # Written to two partitions by writers with different partitioners.
    fleet.handle_event(PartitionLoaded(1, ("dup",)))
    fleet.handle_event(PartitionLoaded(2, ("dup",)))
    fleet.handle_event(PartitionsRevoked((1,), {1: ("dup",)}, lost=False))
    fleet.handle_event(other(["dup"]))
    assert source.channels == ["dup"]


async def test_the_report_says_what_this_instance_reads_and_releases() -> None:
    fleet, source = member()
    fleet.handle_event(PartitionsAssigned((1, 2)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    fleet.handle_event(PartitionLoaded(2, ("b",)))
    fleet.handle_event(PartitionsRevoked((2,), {2: ("b",)}, lost=False))
    source.ready = False
    source.joined = {"b", "gone"}  # "gone": parted, its PART not yet answered
    report = fleet.report()
    assert report.instance_id == "me"
    assert report.login == "fleetbot"
    assert report.partitions == (1,)
    assert report.channels == ("a", "b")
    assert report.releasing == ("b",)
    assert report.ready is False
    assert report.not_joined == ("a",)
    assert decode_report(encode_report(report)) == report


async def test_an_anonymous_instance_names_one_guest_login_in_every_report() -> None:
    fleet, _ = member(twitch_username=None, twitch_oauth_token=None)
    logins = {fleet.report().login for _ in range(5)}
    assert len(logins) == 1
    assert next(iter(logins)).startswith("justinfan")


async def test_a_change_in_what_is_joined_is_published_at_the_next_tick() -> None:
    fleet, source = member()
    published: list[InstanceReport] = []

    class Publisher:
        def produce(self, _topic: str, value: bytes, _key: bytes) -> None:
            report = decode_report(value)
            assert report is not None
            published.append(report)

        def poll(self, _timeout: float) -> int:
            return 0

    fleet._publisher = Publisher()  # type: ignore[assignment]
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a", "b")))
    fleet.tick(0.0)
    source.joined = {"a"}
    fleet.tick(0.5)
    fleet.tick(1.0)  # nothing changed: nothing sent
    assert [r.not_joined for r in published] == [("a", "b"), ("b",)]


def test_reports_of_older_and_newer_versions_decode_both_ways() -> None:
    # Written by an instance from before per-channel hand-over: no `not_joined`.
    old = (
        b'{"instance_id":"old","host":"h","pid":1,"login":"bot","started_at_ms":0,'
        b'"updated_at_ms":0,"channels":["a"],"ready":true,"joined":1,"failed":0}'
    )
    decoded = decode_report(old)
    assert decoded is not None
    assert decoded.not_joined is None
    assert decoded.ready is True

    # And an older instance reads ours: its decoder ignores the field it does not know.
    class OlderReport(msgspec.Struct, frozen=True, kw_only=True):
        instance_id: str
        host: str
        pid: int
        login: str
        started_at_ms: int
        updated_at_ms: int
        channels: tuple[str, ...] = ()
        ready: bool = False

    ours = InstanceReport(
        instance_id="new",
        host="h",
        pid=2,
        login="bot",
        started_at_ms=0,
        updated_at_ms=0,
        channels=("a",),
        not_joined=(),
    )
    assert msgspec.json.decode(encode_report(ours), type=OlderReport).channels == ("a",)


def test_a_foreign_record_in_the_instances_topic_is_not_a_report() -> None:
    assert decode_report(b"hello") is None
    assert decode_report(b'{"instance_id": "x"}') is None


# --- the status view -----------------------------------------------------------------------


def test_status_sets_group_assignment_beside_the_reports() -> None:
    reports = {
        "a": InstanceReport(
            instance_id="a",
            host="h1",
            pid=1,
            login="bot_a",
            started_at_ms=0,
            updated_at_ms=9_000,
            partitions=(0,),
            channels=("x", "y"),
            standby=("z",),
            ready=True,
        ),
        "crashed": InstanceReport(
            instance_id="crashed",
            host="h3",
            pid=3,
            login="bot_c",
            started_at_ms=0,
            updated_at_ms=1_000,
        ),
    }
    status = fleet_view(
        group="g",
        group_state="STABLE",
        topic="t",
        partition_count=3,
        members=[("a", "/10.0.0.1", [0]), ("b", "/10.0.0.2", [1])],
        table={"x": 0, "y": 0, "z": 1, "orphan": 2},
        reports=reports,
        now_ms=10_000,
    )
    views = {v.instance_id: v for v in status.instances}
    assert [v.instance_id for v in status.instances] == ["a", "b", "crashed"]
    assert views["a"].assigned_channels == ["x", "y"]
    assert views["a"].report_age_s == 1.0
    assert views["b"].report is None
    assert views["crashed"].in_group is False
    assert status.unassigned_channels == ["orphan"]
    text = render_status(status)
    assert "no report" in text
    header, row_a = [line for line in text.splitlines() if line.startswith(("instance ", "a "))]
    # The standby column says how many channels `a` stands by for (KAFKA_CHANNELS_REPLICAS=2).
    assert header.split()[:8] == [
        "instance",
        "in",
        "group",
        "partitions",
        "assigned",
        "reading",
        "releasing",
        "standby",
    ]
    assert row_a.split()[:8] == ["a", "yes", "1", "2", "2", "0", "1", "yes"]
    assert "not read by any instance: 1 channels (orphan)" in text
    assert status.to_dict()["channels"] == 4
    assert "no instance is running" not in text


def test_status_with_no_instance_running_says_how_to_start_one() -> None:
    status = fleet_view(
        group="g",
        group_state="no instance has joined yet",
        topic="t",
        partition_count=3,
        members=[],
        table={"x": 0},
        reports={},
        now_ms=10_000,
    )
    text = render_status(status)
    assert "no instance is running in this group: start one with CHANNEL_SOURCE=kafka" in text


# --- settings ------------------------------------------------------------------------------


def test_kafka_channel_source_needs_no_twitch_channel() -> None:
    loaded = load_settings(channel_source="kafka")
    assert loaded.channel_source is ChannelSource.KAFKA
    assert loaded.twitch_channel == []


def test_env_channel_source_still_needs_twitch_channel() -> None:
    with pytest.raises(ConfigError, match="TWITCH_CHANNEL"):
        load_settings()


def test_instance_id_defaults_to_a_valid_host_name() -> None:
    assert load_settings(require_channels=False).instance_id


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 250])
def test_instance_id_must_be_a_valid_kafka_id(bad: str) -> None:
    with pytest.raises(ConfigError, match="INSTANCE_ID"):
        load_settings(require_channels=False, instance_id=bad)


def test_group_consumer_is_cooperative_static_and_commits_nothing() -> None:
    conf = group_consumer_config(config(kafka_channels_session_timeout_ms=6000))
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["group.instance.id"] == conf["client.id"] == "me"
    assert conf["enable.auto.commit"] is False
    assert conf["session.timeout.ms"] == 6000
    assert conf["heartbeat.interval.ms"] < 6000 / 3


# --- fenced hand-off: the member's side ------------------------------------------------


class FencedSource(FakeSource):
    def __init__(self) -> None:
        super().__init__()
        self.sink = CollectedChat()
        self.gate = ChannelGate(self.sink)

    @property
    def fence(self) -> ChannelFence | None:
        return self.gate


class FakePublisher:
    """The report producer: what was produced, by key."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, bytes]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes) -> None:
        self.produced.append((topic, value, key))

    def poll(self, timeout: float) -> int:
        return 0

    def marks(self) -> list[FinalMark]:
        return [
            mark
            for _, value, key in self.produced
            if key.startswith(b"mark/") and value is not None
            for mark in [decode_mark(value)]
            if mark is not None
        ]


def chat(channel: str, number: int) -> IrcMessage:
    return parse_line(f"@id={channel}-{number} :u!u@u.tmi.twitch.tv PRIVMSG #{channel} :{number}")


def releasing(instance: str, channels: list[str]) -> ReportReceived:
    return ReportReceived(
        InstanceReport(
            instance_id=instance,
            host="h",
            pid=2,
            login=instance,
            started_at_ms=0,
            updated_at_ms=0,
            channels=tuple(channels),
            releasing=tuple(channels),
            ready=True,
            not_joined=(),
        )
    )


async def test_the_old_owner_publishes_the_final_mark_of_each_channel_taken() -> None:
    source = FencedSource()
    fleet = FleetMember(config(), source, group_is_empty=lambda: False)
    publisher = FakePublisher()
    fleet._publisher = publisher  # type: ignore[assignment]
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    await source.gate.deliver([chat("a", 1)], 0, {})
    fleet.tick(asyncio.get_running_loop().time() + 10)  # nobody else had it: produced
    await asyncio.sleep(0)
    fleet.handle_event(PartitionsRevoked((1,), {1: ("a",)}, lost=False))
    await source.gate.deliver([chat("a", 2)], 0, {})
    fleet.handle_event(other(["a"], not_joined=[]))
    await source.gate.deliver([chat("a", 3)], 0, {})  # read before the PART: dropped

    [mark] = publisher.marks()
    assert (mark.channel, mark.from_instance, mark.to_instance, mark.identity) == (
        "a",
        "me",
        "other",
        "a-2",
    )
    assert source.sink.lines == ["1", "2"]
    assert source.channels == []


async def test_the_new_owner_holds_a_channel_being_handed_over_until_its_mark() -> None:
    source = FencedSource()
    fleet = FleetMember(config(), source, group_is_empty=lambda: False)
    fleet.handle_event(releasing("old", ["a"]))
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    await source.gate.deliver([chat("a", 4), chat("a", 5), chat("a", 6)], 0, {})
    assert source.sink.lines == []
    fleet.handle_event(
        MarkReceived(
            FinalMark(channel="a", from_instance="old", to_instance="me", identity="a-5", at_ms=0)
        )
    )
    await asyncio.sleep(0)
    assert source.sink.lines == ["6"]
