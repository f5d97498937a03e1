"""One socket to Twitch (against the simulator, or a tiny server where it cannot misbehave)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from tests.support.waiting import eventually
from twitch_ingestion.simulator import SimulatorConfig, TwitchSimulator
from twitch_ingestion.sources.irc.connection import (
    DisconnectCause,
    TwitchAuthenticationError,
    TwitchConnectError,
    TwitchConnection,
)
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.session import (
    ChannelJoined,
    ConnectionStatus,
    Event,
    PongReceived,
    RoomIdLearned,
)

TOKEN = "oauth:connectiontesttoken000000000000"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[IrcMessage] = []
        self.events: list[Event] = []
        self.chunks = 0

    async def on_chat(
        self, conn: TwitchConnection, messages: Sequence[IrcMessage], at: int
    ) -> None:
        assert at > 1_600_000_000_000, "received_at_ms is wall-clock milliseconds"
        self.chunks += 1
        self.messages.extend(messages)

    def on_event(self, conn: TwitchConnection, event: Event, at: int) -> None:
        self.events.append(event)


def connection(port: int, recorder: Recorder, **kwargs: object) -> TwitchConnection:
    options: dict[str, object] = {
        "name": "test",
        "host": "127.0.0.1",
        "port": port,
        "tls": False,
        "login": "bot",
        "token": TOKEN,
        "on_chat": recorder.on_chat,
        "on_event": recorder.on_event,
        "connect_timeout_s": 0.5,
        "login_timeout_s": 0.5,
        "ping_interval_s": 5.0,
        "pong_timeout_s": 1.0,
        "join_timeout_s": 1.0,
    }
    options.update(kwargs)
    return TwitchConnection(**options)  # type: ignore[arg-type]


@pytest.fixture
async def sim() -> AsyncIterator[TwitchSimulator]:
    async with TwitchSimulator(SimulatorConfig(seed=1)) as simulator:
        yield simulator


async def test_logs_in_joins_and_delivers_chat_in_bulk(sim: TwitchSimulator) -> None:
    recorder = Recorder()
    conn = connection(sim.port, recorder)

    await conn.connect()
    assert conn.is_connected()
    assert conn.status is ConnectionStatus.CONNECTED
    conn.join(["alpha"])
    await sim.wait_for_joined(["alpha"], timeout=2)
    stream = sim.start_numbered(["alpha"], count=3000)
    await stream.wait(5)
    await eventually(lambda: len(recorder.messages) >= 3000)

    assert ChannelJoined("alpha") in recorder.events
    assert RoomIdLearned("alpha", sim.room_id_for("alpha")) in recorder.events
    assert recorder.chunks < 3000 / 10, "reads are bulk, not line by line"
    await conn.disconnect()
    assert await conn.wait_closed() is DisconnectCause.CLOSED
    assert not conn.is_connected()


async def test_rejected_credentials_raise_authentication_error_naming_the_settings() -> None:
    config = SimulatorConfig(valid_tokens=frozenset({"oauth:theonlygoodtoken"}))
    async with TwitchSimulator(config) as sim:
        conn = connection(sim.port, Recorder())
        with pytest.raises(TwitchAuthenticationError) as caught:
            await conn.connect()

    message = str(caught.value)
    assert "TWITCH_OAUTH_TOKEN" in message
    assert "TWITCH_USERNAME" in message
    assert "Login authentication failed" in message
    assert TOKEN not in message


async def test_connection_refused_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    with pytest.raises(TwitchConnectError, match="could not connect"):
        await connection(port, Recorder()).connect()


async def test_a_server_that_never_confirms_the_login_times_out() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = connection(port, Recorder(), login_timeout_s=0.1)
        with pytest.raises(TwitchConnectError, match="did not confirm the login"):
            await conn.connect()
        assert not conn.is_connected()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_silent_server_is_declared_dead_by_the_keepalive(sim: TwitchSimulator) -> None:
    conn = connection(sim.port, Recorder(), ping_interval_s=0.1, pong_timeout_s=0.1)
    await conn.connect()
    sim.go_silent()

    # The timeout only turns a hang into a failure; the session's deadlines themselves
    # are tested with a fake clock in test_session.py.
    cause = await asyncio.wait_for(conn.wait_closed(), 10)

    assert cause is DisconnectCause.KEEPALIVE_TIMEOUT, "our keepalive, not the server, ended it"
    assert not conn.is_connected()


async def test_a_quiet_but_alive_server_answers_our_ping(sim: TwitchSimulator) -> None:
    recorder = Recorder()
    conn = connection(sim.port, recorder, ping_interval_s=0.05, pong_timeout_s=0.2)
    await conn.connect()

    await eventually(lambda: sum(isinstance(e, PongReceived) for e in recorder.events) >= 3)

    assert conn.is_connected(), "three PING/PONG rounds, each within the pong timeout"
    await conn.disconnect()


async def test_a_slow_sink_is_backpressure_not_a_dead_connection(sim: TwitchSimulator) -> None:
    class SlowRecorder(Recorder):
        async def on_chat(
            self, conn: TwitchConnection, messages: Sequence[IrcMessage], at: int
        ) -> None:
            await asyncio.sleep(0.3)  # longer than ping interval + pong timeout
            await super().on_chat(conn, messages, at)

    recorder = SlowRecorder()
    conn = connection(sim.port, recorder, ping_interval_s=0.05, pong_timeout_s=0.05)
    await conn.connect()
    conn.join(["alpha"])
    await sim.wait_for_joined(["alpha"], timeout=2)
    await sim.start_numbered(["alpha"], count=5).wait(2)
    await eventually(lambda: len(recorder.messages) >= 5)

    assert conn.is_connected()
    await conn.disconnect()


async def test_server_drop_ends_the_connection_as_lost(sim: TwitchSimulator) -> None:
    conn = connection(sim.port, Recorder())
    await conn.connect()

    sim.drop_connections()

    assert await asyncio.wait_for(conn.wait_closed(), 2) is DisconnectCause.CONNECTION_LOST


async def test_a_failing_callback_surfaces_from_wait_closed(sim: TwitchSimulator) -> None:
    class Broken(Recorder):
        async def on_chat(
            self, conn: TwitchConnection, messages: Sequence[IrcMessage], at: int
        ) -> None:
            raise ValueError("sink bug")

    conn = connection(sim.port, Broken())
    await conn.connect()
    conn.join(["alpha"])  # the ROOMSTATE after the JOIN echo is the first chat line

    with pytest.raises(ValueError, match="sink bug"):
        await asyncio.wait_for(conn.wait_closed(), 2)
