"""The hot standby inside `FleetMember` (replicas 2): reports and progress records in,
JOINs, a standby window, a take-over and its hand-over out. A fake source behind the
real `ChannelGate`, a fake tail of the topics, an explicit clock. No broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.gate import CollectedChat
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import Settings, load_settings
from twitch_ingestion.fleet.assignment import FleetMember
from twitch_ingestion.fleet.events import (
    PartitionLoaded,
    PartitionsAssigned,
    ProgressReceived,
    ReportReceived,
)
from twitch_ingestion.fleet.fence import ChannelFence, FinalMark, decode_mark
from twitch_ingestion.fleet.standby import (
    DEAD_AFTER_S,
    ProgressMark,
    StandbyFence,
    decode_progress,
)
from twitch_ingestion.fleet.status import InstanceReport
from twitch_ingestion.fleet.tail_read import ChannelTail
from twitch_ingestion.sources.irc.channel_gate import ChannelGate
from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


class Source:
    """What the pool would read (every channel joined at once), behind a real gate."""

    def __init__(self) -> None:
        self.wanted: dict[str, None] = {}
        self.sink = CollectedChat()
        self.gate = ChannelGate(self.sink)

    @property
    def channels(self) -> list[str]:
        return list(self.wanted)

    @property
    def failed_channels(self) -> dict[str, str]:
        return {}

    def add_channels(self, channels: Iterable[str]) -> None:
        self.wanted.update(dict.fromkeys(channels))

    def remove_channels(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.wanted.pop(channel, None)

    def joined_channels(self) -> frozenset[str]:
        return frozenset(self.wanted)

    def is_ready(self) -> bool:
        return True

    def status(self) -> dict[str, object]:
        return {"channels_joined": len(self.wanted)}

    @property
    def fence(self) -> ChannelFence | None:
        return self.gate

    @property
    def standby_fence(self) -> StandbyFence | None:
        return self.gate


class Publisher:
    def __init__(self) -> None:
        self.produced: list[tuple[bytes | None, bytes]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes) -> None:
        self.produced.append((value, key))

    def poll(self, timeout: float) -> int:
        return 0

    def marks(self) -> list[FinalMark]:
        found = [decode_mark(v) for v, k in self.produced if k.startswith(b"mark/") and v]
        return [mark for mark in found if mark is not None]

    def progress(self) -> list[ProgressMark]:
        found = [decode_progress(v) for v, k in self.produced if k == b"progress/me" and v]
        return [mark for mark in found if mark is not None]


def owner_report(instance: str, channels: list[str]) -> ReportReceived:
    return ReportReceived(
        InstanceReport(
            instance_id=instance,
            host="h",
            pid=2,
            login=instance,
            started_at_ms=0,
            updated_at_ms=0,
            channels=tuple(channels),
            ready=True,
            not_joined=(),
        )
    )


def alive(instance: str, **identities: str) -> ProgressReceived:
    return ProgressReceived(
        instance, ProgressMark(instance_id=instance, at_ms=0, identities=identities)
    )


def chat(channel: str, number: int) -> IrcMessage:
    return parse_line(f"@id={channel}-{number} :u!u@u.tmi.twitch.tv PRIVMSG #{channel} :{number}")


def standby_member(**overrides: Any) -> tuple[FleetMember, Source, Publisher]:
    source = Source()
    fleet = FleetMember(
        configs.fleet_config(
            load_settings(
                channel_source="kafka",
                instance_id="me",
                twitch_username="fleetbot",
                twitch_oauth_token="oauth:abc123",
                kafka_channels_replicas=2,
                **overrides,
            )
        ),
        source,
        group_is_empty=lambda: False,
    )
    publisher = Publisher()
    fleet._publisher = publisher  # type: ignore[assignment]
    return fleet, source, publisher


async def settle_take_overs(fleet: FleetMember) -> None:
    keeper = fleet._standby
    assert keeper is not None
    await asyncio.gather(*keeper._tasks)
    for _ in range(3):
        await asyncio.sleep(0)  # let the flush run


async def test_replicas_1_has_no_standby_and_publishes_no_progress() -> None:
    source = Source()
    fleet = FleetMember(
        configs.fleet_config(
            load_settings(
                channel_source="kafka",
                instance_id="me",
                twitch_username="fleetbot",
                twitch_oauth_token="oauth:abc123",
            )
        ),
        source,
        group_is_empty=lambda: False,
    )
    publisher = Publisher()
    fleet._publisher = publisher  # type: ignore[assignment]
    fleet.handle_event(owner_report("owner", ["a"]))
    fleet.handle_event(alive("owner"))
    fleet.tick(asyncio.get_running_loop().time())
    assert fleet._standby is None
    assert source.channels == []
    assert publisher.progress() == []
    assert fleet.report().standby == ()


async def test_a_standby_joins_and_holds_what_another_owns_and_says_so_apart() -> None:
    fleet, source, publisher = standby_member()
    fleet.handle_event(owner_report("owner", ["a"]))
    fleet.handle_event(alive("owner"))
    fleet.tick(asyncio.get_running_loop().time())
    assert source.channels == ["a"]
    await source.gate.deliver([chat("a", 1)], 0, {})
    assert source.sink.lines == []
    report = fleet.report()
    assert (report.channels, report.standby) == ((), ("a",))
    assert publisher.progress()  # alive, every tick


async def test_the_owner_is_never_its_own_standby_and_publishes_where_it_stands() -> None:
    fleet, source, publisher = standby_member()
    fleet.handle_event(alive("other"))
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))
    await source.gate.deliver([chat("a", 1), chat("a", 2)], 0, {})
    now = asyncio.get_running_loop().time()
    fleet.tick(now + 5)  # nobody else reads it: produced after the grace
    for _ in range(3):
        await asyncio.sleep(0)  # let the flush run
    fleet.tick(now + 5.5)
    assert fleet.report().standby == ()
    assert publisher.progress()[-1].identities == {"a": "a-2"}


async def test_a_dead_owners_channel_is_produced_after_kafkas_copy_then_handed_over() -> None:
    fleet, source, publisher = standby_member()
    keeper = fleet._standby
    assert keeper is not None
    asked: list[tuple[dict[str, set[str]], int]] = []

    def tail(
        wanted: Mapping[str, set[str]], from_ms: int, timeout_s: float
    ) -> dict[str, ChannelTail]:
        asked.append(({c: set(i) for c, i in wanted.items()}, from_ms))
        return {"a": ChannelTail(produced={"a-1", "a-2"}, last_ms=read_ms)}

    keeper._read_tail = tail
    read_ms = int(time.time() * 1000)  # the window keeps the last 60 s of the wall clock
    now = asyncio.get_running_loop().time()
    fleet.handle_event(owner_report("owner", ["a"]))
    fleet.handle_event(alive("owner", a="a-2"))
    fleet.tick(now)
    await source.gate.deliver([chat("a", 1), chat("a", 2), chat("a", 3)], read_ms, {})

    fleet.tick(now + DEAD_AFTER_S - 0.1)
    assert source.sink.lines == []
    fleet.tick(now + DEAD_AFTER_S + 0.1)
    await settle_take_overs(fleet)

    # From before the line the last progress record named, to the end.
    assert asked == [({"a": {"a-1", "a-2", "a-3"}}, read_ms - 10_000)]
    assert source.sink.lines == ["3"]
    assert fleet.report().releasing == ("a",)
    # The group's new owner reports it joined: a final mark on the last line handed on.
    await source.gate.deliver([chat("a", 4)], read_ms, {})
    fleet.handle_event(owner_report("new", ["a"]))
    [mark] = publisher.marks()
    assert (mark.channel, mark.to_instance, mark.identity) == ("a", "new", "a-4")
    assert source.sink.lines == ["3", "4"]


async def test_a_take_over_of_a_channel_the_group_gave_us_meanwhile_just_goes_on() -> None:
    fleet, source, publisher = standby_member()
    keeper = fleet._standby
    assert keeper is not None
    keeper._read_tail = lambda wanted, from_ms, timeout_s: {
        "a": ChannelTail(produced={"a-1"}, last_ms=0)
    }
    now = asyncio.get_running_loop().time()
    fleet.handle_event(owner_report("owner", ["a"]))
    fleet.handle_event(alive("owner"))
    fleet.tick(now)
    await source.gate.deliver([chat("a", 1), chat("a", 2)], int(time.time() * 1000), {})
    fleet.tick(now + DEAD_AFTER_S + 0.1)
    fleet.handle_event(PartitionsAssigned((1,)))
    fleet.handle_event(PartitionLoaded(1, ("a",)))  # before the tail was read
    await settle_take_overs(fleet)
    await source.gate.deliver([chat("a", 3)], 0, {})
    assert source.sink.lines == ["2", "3"]
    assert fleet.report().releasing == ()
    assert publisher.marks() == []


async def test_a_clean_stop_is_not_taken_over() -> None:
    fleet, source, _ = standby_member()
    now = asyncio.get_running_loop().time()
    fleet.handle_event(owner_report("owner", ["a"]))
    fleet.handle_event(alive("owner"))
    fleet.tick(now)
    fleet.handle_event(ProgressReceived("owner", None))  # its tombstone
    fleet.tick(now + 60)
    assert fleet._standby is not None
    assert fleet._standby.taking_over == frozenset()
    assert source.sink.lines == []


async def test_a_producer_back_from_the_dead_gets_its_channels_back() -> None:
    fleet, source, publisher = standby_member()
    keeper = fleet._standby
    assert keeper is not None
    keeper._read_tail = lambda wanted, from_ms, timeout_s: {
        "a": ChannelTail(produced={"a-1"}, last_ms=0)
    }
    now = asyncio.get_running_loop().time()
    fleet.handle_event(owner_report("owner", ["a"]))
    fleet.handle_event(alive("owner"))
    fleet.tick(now)
    await source.gate.deliver([chat("a", 1), chat("a", 2)], int(time.time() * 1000), {})
    fleet.tick(now + DEAD_AFTER_S + 0.1)
    await settle_take_overs(fleet)
    assert source.sink.lines == ["2"]

    fleet.handle_event(alive("owner"))  # a false alarm: it was only slow

    [mark] = publisher.marks()
    assert (mark.channel, mark.to_instance, mark.identity) == ("a", "owner", "a-2")
    assert fleet.report().releasing == ()
    fleet.tick(now + 0.5)  # heard again just now: standing by for it again
    await source.gate.deliver([chat("a", 3)], int(time.time() * 1000), {})
    assert source.sink.lines == ["2"]
    assert fleet.report().standby == ("a",)


async def test_a_channel_the_group_moved_meanwhile_is_not_given_back() -> None:
    fleet, _, publisher = standby_member()
    keeper = fleet._standby
    assert keeper is not None
    keeper._read_tail = lambda wanted, from_ms, timeout_s: {}
    now = asyncio.get_running_loop().time()
    fleet.handle_event(owner_report("owner", ["a"]))
    fleet.handle_event(alive("owner"))
    fleet.tick(now)
    fleet.tick(now + DEAD_AFTER_S + 0.1)
    await settle_take_overs(fleet)
    fleet.handle_event(
        ReportReceived(
            InstanceReport(
                instance_id="new",
                host="h",
                pid=3,
                login="new",
                started_at_ms=0,
                updated_at_ms=0,
                channels=("a",),
                ready=False,
                not_joined=("a",),
            )
        )
    )
    fleet.handle_event(alive("owner"))
    assert publisher.marks() == []
    assert fleet.report().releasing == ("a",)
