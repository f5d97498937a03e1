"""`TwitchSource` wired to fake connections: the pool's orchestration without sockets.

Each fake connection holds a real (sans-I/O) `TwitchSession`; the test plays Twitch by
feeding it bytes, and sees what the pool asked for (JOINs, PARTs, closes) in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from tests.support.irc_pool import RecordingChatSink, running, settings
from tests.support.waiting import eventually
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.sources.irc.connection import DisconnectCause
from twitch_ingestion.sources.irc.pool import (
    PoolConnection,
    SlotChatHandler,
    SlotEventHandler,
    TwitchSource,
)
from twitch_ingestion.sources.irc.pool_commands import ConnectionEvent, PartChannels
from twitch_ingestion.sources.irc.session import (
    ChatLines,
    ConnectionStatus,
    MalformedLine,
    TwitchSession,
)

NICK = "poolbot"


class FakeTwitch:
    """Hands out fake connections and keeps one ordered log of what happened to them."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.log: list[tuple[str, str]] = []

    def open(
        self, name: str, on_chat: SlotChatHandler, on_event: SlotEventHandler
    ) -> PoolConnection:
        conn = FakeConnection(name, on_chat, on_event, self.log)
        self.connections.append(conn)
        return conn


class FakeConnection:
    def __init__(
        self,
        name: str,
        on_chat: SlotChatHandler,
        on_event: SlotEventHandler,
        log: list[tuple[str, str]],
    ) -> None:
        self.name = name
        self.session = TwitchSession(NICK, None)
        self.logged_in_at: float | None = None
        self.joins: list[str] = []
        self.parts: list[str] = []
        self._on_chat = on_chat
        self._on_event = on_event
        self._log = log
        self._ended = asyncio.Event()
        self._closing = False
        self._cause = DisconnectCause.CLOSED

    # --- what the pool calls ---------------------------------------------------------

    async def connect(self) -> None:
        now = asyncio.get_running_loop().time()
        self.session.initiate(now)
        self.session.receive_data(b":tmi.twitch.tv 001 poolbot :Welcome, GLHF!\r\n", now)
        self.logged_in_at = now
        self._log.append(("connected", self.name))

    def join(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        self.session.join(channels, asyncio.get_running_loop().time())
        self.joins.extend(channels)

    def part(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        self.session.part(channels)
        self.parts.extend(channels)

    def close(self, cause: DisconnectCause = DisconnectCause.CLOSED) -> None:
        if not self._closing:
            self._closing, self._cause = True, cause
            self._log.append(("closed", self.name))
            self._ended.set()

    async def disconnect(self) -> None:
        self.close()

    async def wait_closed(self) -> DisconnectCause:
        await self._ended.wait()
        return self._cause

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def cancel_reading(self) -> None:
        self.close()

    def is_connected(self) -> bool:
        return self.logged_in_at is not None and not self._closing

    @property
    def is_closing(self) -> bool:
        return self._closing

    # --- what Twitch says ------------------------------------------------------------

    async def receive(self, *lines: str) -> None:
        data = "".join(line + "\r\n" for line in lines).encode()
        for event in self.session.receive_data(data, asyncio.get_running_loop().time()):
            if isinstance(event, ChatLines):
                await self._on_chat(self, event.messages, 0)
            else:
                self._on_event(self, event, 0)

    async def echo_joins(self) -> None:
        channels = list(self.session.pending_joins)
        await self.receive(*(f":{NICK}!{NICK}@{NICK}.tmi.twitch.tv JOIN #{c}" for c in channels))
        self._log.append(("joined", self.name))


def source_with(
    fake: FakeTwitch, channels: list[str], **overrides: Any
) -> tuple[TwitchSource, RecordingChatSink]:
    sink = RecordingChatSink()
    config = settings(1, channels, **overrides)
    return TwitchSource(config, sink, connection_factory=fake.open), sink


def chat(message_id: str, channel: str = "alpha") -> str:
    return f"@id={message_id} :u!u@u.tmi.twitch.tv PRIVMSG #{channel} :{message_id}"


async def test_a_reconnect_drops_the_old_connection_only_after_the_new_one_joined() -> None:
    fake = FakeTwitch()
    source, sink = source_with(fake, ["alpha", "beta"], twitch_reconnect_overlap_s=0.05)

    async with running(source):
        await eventually(lambda: len(fake.connections) == 1)
        old = fake.connections[0]
        await eventually(lambda: len(old.joins) == 2)
        await old.echo_joins()
        assert source.is_ready()

        await old.receive(":tmi.twitch.tv RECONNECT")
        await eventually(lambda: len(fake.connections) == 2)
        new = fake.connections[1]
        await eventually(lambda: sorted(new.joins) == ["alpha", "beta"])
        # Both read the channels now: a line seen on both is delivered once.
        await old.receive(chat("1"), chat("2"))
        await new.receive(chat("2"), chat("3"))
        assert old.is_connected(), "kept until the replacement has joined"

        await new.echo_joins()
        await eventually(lambda: old.is_closing)
        await eventually(lambda: source.status()["connections"][0]["handing_over"] is False)  # type: ignore[index]

        assert [m.trailing for m in sink.messages] == ["1", "2", "3"]
        assert fake.log.index(("joined", new.name)) < fake.log.index(("closed", old.name))
        assert new.is_connected()
        assert source.joined_channels() == {"alpha", "beta"}
        assert source.connection_statuses() == {"twitch-1": ConnectionStatus.CONNECTED}


async def test_room_ids_learned_on_a_connection_travel_with_every_chunk() -> None:
    fake = FakeTwitch()
    source, sink = source_with(fake, ["alpha"])

    async with running(source):
        await eventually(lambda: len(fake.connections) == 1 and fake.connections[0].joins != [])
        conn = fake.connections[0]
        await conn.echo_joins()
        await conn.receive("@room-id=42 :tmi.twitch.tv ROOMSTATE #alpha", chat("1"))

    assert sink.room_ids == {"alpha": "42"}
    assert source.room_ids == {"alpha": "42"}


async def test_a_refused_channel_is_joined_again_when_its_retry_is_due() -> None:
    fake = FakeTwitch()
    source, _ = source_with(fake, ["alpha", "gone"], twitch_join_retry_interval_s=0.05)

    async with running(source):
        await eventually(lambda: len(fake.connections) == 1)
        conn = fake.connections[0]
        await eventually(lambda: len(conn.joins) == 2)
        await conn.receive(
            f":{NICK}!{NICK}@{NICK}.tmi.twitch.tv JOIN #alpha",
            "@msg-id=msg_channel_suspended :tmi.twitch.tv NOTICE #gone :This channel is gone.",
        )
        assert "msg_channel_suspended" in source.failed_channels["gone"]
        assert source.is_ready(), "a failed channel does not hold readiness"

        await eventually(lambda: conn.joins.count("gone") == 2)
        await conn.echo_joins()

        assert source.failed_channels == {}
        assert source.joined_channels() == {"alpha", "gone"}


async def test_a_lost_connection_is_replaced_and_joins_everything_again() -> None:
    fake = FakeTwitch()
    source, _ = source_with(fake, ["alpha", "beta"])
    before = (
        REGISTRY.get_sample_value("twitch_ingestion_irc_reconnects_total", {"cause": "join_limit"})
        or 0
    )

    async with running(source):
        await eventually(lambda: len(fake.connections) == 1)
        first = fake.connections[0]
        await eventually(lambda: len(first.joins) == 2)
        first.close(DisconnectCause.CONNECTION_LOST)  # with both JOINs unanswered

        await eventually(lambda: len(fake.connections) == 2)
        second = fake.connections[1]
        await eventually(lambda: sorted(second.joins) == ["alpha", "beta"])
        await second.echo_joins()
        await eventually(source.is_ready)

    after = REGISTRY.get_sample_value(
        "twitch_ingestion_irc_reconnects_total", {"cause": "join_limit"}
    )
    assert after == before + 1, "a close with JOINs in flight looks like the join limit"


async def test_channels_removed_while_their_join_is_in_flight_are_parted() -> None:
    fake = FakeTwitch()
    source, _ = source_with(fake, ["alpha", "beta"])

    async with running(source):
        await eventually(lambda: len(fake.connections) == 1)
        conn = fake.connections[0]
        await eventually(lambda: len(conn.joins) == 2)
        source.remove_channels(["#Beta"])
        assert conn.parts == ["beta"]
        # Twitch had already taken the JOIN: its echo comes anyway.
        await conn.receive(*(f":{NICK}!{NICK}@{NICK}.tmi.twitch.tv JOIN #{c}" for c in conn.joins))

        # The session knows our PART follows that echo: no second PART, not joined.
        assert conn.parts == ["beta"], "the late echo is not a join to undo"
        assert source.channels == ["alpha"]
        assert source.joined_channels() == {"alpha"}
        assert conn.session.joined_channels == {"alpha"}


# --- one owner: every change is a command, handled in order --------------------------------


async def test_a_command_submitted_while_another_is_handled_waits_its_turn() -> None:
    wanted_when_asked: list[list[str]] = []

    class PartingSink(RecordingChatSink):
        """A sink that, asked to keep a bad line, asks the pool to part a channel."""

        def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
            super().dead_letter(raw, reason, received_at_ms)
            owner.submit(PartChannels(("alpha",)))
            wanted_when_asked.append(list(owner.slots[0].wanted))

    sink = PartingSink()
    owner = TwitchSource(settings(1, ["alpha", "beta"]), sink)._owner

    conn = FakeConnection("twitch-1.1", sink.deliver, lambda *_: None, [])  # type: ignore[arg-type]
    owner.submit(ConnectionEvent(1, conn, MalformedLine(b"\x00bad", "invalid-command"), 0))

    assert sink.dead == [(b"\x00bad", "invalid-command")]
    assert wanted_when_asked == [["alpha", "beta"]], "not handled inside the other command"
    assert list(owner.slots[0].wanted) == ["beta"], "handled before submit() returned"


async def test_events_of_a_connection_the_slot_no_longer_uses_change_nothing() -> None:
    fake = FakeTwitch()
    source, _ = source_with(fake, ["alpha"])

    async with running(source):
        await eventually(lambda: len(fake.connections) == 1 and fake.connections[0].joins != [])
        first = fake.connections[0]
        first.close(DisconnectCause.CONNECTION_LOST)
        await eventually(lambda: len(fake.connections) == 2 and fake.connections[1].joins != [])
        second = fake.connections[1]
        await second.echo_joins()

        # Its events still carry the slot's id, but the slot reads on `second` now.
        await first.receive(
            "@msg-id=msg_channel_suspended :tmi.twitch.tv NOTICE #alpha :This channel is gone."
        )

        assert source.failed_channels == {}
        assert source.joined_channels() == {"alpha"}
        assert source.is_ready()


async def test_a_sink_that_fails_on_a_dead_letter_ends_run_with_its_error() -> None:
    class BrokenDeadLetters(RecordingChatSink):
        def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
            raise RuntimeError("dead-letter topic unwritable")

    fake = FakeTwitch()
    source = TwitchSource(settings(1, ["alpha"]), BrokenDeadLetters(), connection_factory=fake.open)
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: len(fake.connections) == 1 and fake.connections[0].joins != [])
        await fake.connections[0].receive("\x00garbage")

        with pytest.raises(RuntimeError, match="dead-letter topic unwritable"):
            await asyncio.wait_for(task, 5)
    finally:
        await source.stop()
    assert fake.connections[0].is_closing, "run() closed its sockets on the way out"


def test_room_ids_are_a_read_only_view_outside_the_owner() -> None:
    source, _ = source_with(FakeTwitch(), ["alpha"])

    with pytest.raises(TypeError):
        source.room_ids["alpha"] = "42"  # type: ignore[index]
