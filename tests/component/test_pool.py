"""`TwitchSource` against the Twitch simulator: reconnects, hand-overs, limits, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.support.irc_pool import TOKEN, RecordingChatSink, running, settings
from tests.support.waiting import eventually
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.simulator import (
    ChannelBehaviour,
    SimulatorConfig,
    TwitchSimulator,
)
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.pool import TwitchAuthenticationError, TwitchGaveUp, TwitchSource
from twitch_ingestion.sources.irc.session import ConnectionStatus


def reconnects(cause: str) -> float:
    return (
        REGISTRY.get_sample_value("twitch_ingestion_irc_reconnects_total", {"cause": cause}) or 0.0
    )


def duplicates_dropped() -> float:
    return REGISTRY.get_sample_value("twitch_ingestion_irc_duplicate_messages_dropped_total") or 0.0


def source_tasks() -> list[str]:
    """Names of the asyncio tasks a `TwitchSource` runs (slots, readers, joiners…)."""
    return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("twitch-"))


def assert_exactly_once(sink: RecordingChatSink, channel: str, count: int) -> None:
    numbers = sink.numbers(channel)
    assert sorted(numbers) == list(range(1, count + 1)), (
        f"{channel}: {len(numbers)} received, {len(set(numbers))} distinct, "
        f"missing {sorted(set(range(1, count + 1)) - set(numbers))[:10]}"
    )


@pytest.fixture
async def sim() -> AsyncIterator[TwitchSimulator]:
    config = SimulatorConfig(seed=7, join_limit=200, join_window_s=0.5)
    async with TwitchSimulator(config) as simulator:
        yield simulator


async def test_reads_every_channel_and_reports_ready(sim: TwitchSimulator) -> None:
    sink = RecordingChatSink()
    source = TwitchSource(settings(sim.port, ["alpha", "beta"]), sink)

    async with running(source):
        await eventually(source.is_ready)
        await sim.start_numbered(["alpha", "beta"], count=200).wait(5)
        await eventually(lambda: len(sink.numbers("beta")) == 200)

        assert_exactly_once(sink, "alpha", 200)
        assert sink.room_ids == {c: sim.room_id_for(c) for c in ("alpha", "beta")}
        ready, details = source.readiness()
        assert ready
        assert details["channels_joined"] == 2
        assert source.connection_statuses() == {"twitch-1": ConnectionStatus.CONNECTED}

    assert not source.is_ready()


async def test_joined_channels_are_those_twitch_confirmed_on_a_live_connection() -> None:
    config = SimulatorConfig(channel_behaviours={"quiet": ChannelBehaviour.NO_ECHO})
    async with TwitchSimulator(config) as sim:
        source = TwitchSource(settings(sim.port, ["alpha", "beta", "quiet"]), RecordingChatSink())
        assert source.joined_channels() == frozenset()

        async with running(source):
            await eventually(source.is_ready)
            assert source.joined_channels() == {"alpha", "beta"}, "no echo, not joined"

            sim.pause_accepting()
            sim.drop_connections()
            await eventually(
                lambda: source.connection_statuses()["twitch-1"] is ConnectionStatus.RECONNECTING
            )
            assert source.joined_channels() == frozenset(), "the connection is gone"

            await sim.resume_accepting()
            await eventually(lambda: source.joined_channels() == {"alpha", "beta"})

            source.remove_channels(["beta"])
            assert source.joined_channels() == {"alpha"}, "no longer read once removed"


async def test_connection_refused_then_server_appears_connects_with_backoff(
    sim: TwitchSimulator,
) -> None:
    sim.pause_accepting()
    failures_before = reconnects("connect_failed")
    source = TwitchSource(settings(sim.port, ["alpha"]), RecordingChatSink())

    async with running(source):
        await eventually(lambda: reconnects("connect_failed") >= failures_before + 3)
        assert not source.is_ready()
        assert source.connection_statuses()["twitch-1"] is ConnectionStatus.CONNECTING

        await sim.resume_accepting()
        await eventually(source.is_ready)


async def test_rejected_credentials_stop_the_source_without_retrying() -> None:
    config = SimulatorConfig(valid_tokens=frozenset({"oauth:somethingelse"}))
    async with TwitchSimulator(config) as sim:
        source = TwitchSource(settings(sim.port, ["alpha"]), RecordingChatSink())
        with capture_logs() as logs, pytest.raises(TwitchAuthenticationError) as caught:
            await asyncio.wait_for(source.run(), 2)
        assert sim.stats.login_failures_by_reason == {"Login authentication failed": 1}

    assert "TWITCH_OAUTH_TOKEN" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(source)
    assert all(TOKEN not in repr(entry) for entry in logs)


async def test_gives_up_after_max_reconnect_attempts(sim: TwitchSimulator) -> None:
    sim.pause_accepting()
    source = TwitchSource(
        settings(sim.port, ["alpha"], twitch_max_reconnect_attempts=3), RecordingChatSink()
    )

    with pytest.raises(TwitchGaveUp, match="3 failed connection attempts"):
        await asyncio.wait_for(source.run(), 3)


async def test_a_silent_connection_is_replaced_and_rejoined(sim: TwitchSimulator) -> None:
    sink = RecordingChatSink()
    source = TwitchSource(
        settings(sim.port, ["alpha"], twitch_ping_interval_s=0.1, twitch_pong_timeout_s=0.1),
        sink,
    )
    timeouts_before = reconnects("keepalive_timeout")

    async with running(source):
        await eventually(source.is_ready)
        [stalled] = sim.connection_ids()
        sim.go_silent(connection_id=stalled)

        await eventually(lambda: reconnects("keepalive_timeout") > timeouts_before, within_s=2)
        await eventually(source.is_ready, within_s=2)
        assert stalled not in sim.connection_ids()
        await sim.start_numbered(["alpha"], count=50).wait(2)
        await eventually(lambda: len(sink.numbers("alpha")) == 50, within_s=2)


async def test_a_dropped_connection_reconnects_and_rejoins_mid_stream(
    sim: TwitchSimulator,
) -> None:
    sink = RecordingChatSink()
    source = TwitchSource(settings(sim.port, ["alpha", "beta"]), sink)

    async with running(source):
        await eventually(source.is_ready)
        stream = sim.start_numbered(["alpha", "beta"], rate=2000, count=600)
        await eventually(lambda: len(sink.numbers("alpha")) > 100)
        sim.drop_connections()
        await eventually(lambda: sim.stats.joins_by_channel.get("beta") == 2)
        await stream.wait(5)
        await eventually(lambda: sink.numbers("beta")[-1:] == [600])

    lost = sim.stats.numbered_undelivered_count("alpha") + sim.stats.numbered_undelivered_count(
        "beta"
    )
    received = len(sink.numbers("alpha")) + len(sink.numbers("beta"))
    assert received + lost >= 1200 - 50, "at most what was in flight when the socket died"
    for channel in ("alpha", "beta"):
        numbers = sink.numbers(channel)
        assert len(numbers) == len(set(numbers)), "nothing doubled"


async def test_server_reconnect_hands_over_without_losing_or_doubling(
    sim: TwitchSimulator,
) -> None:
    channels = [f"chan{i}" for i in range(5)]
    sink = RecordingChatSink()
    source = TwitchSource(settings(sim.port, channels), sink)
    duplicates_before = duplicates_dropped()

    async with running(source):
        await eventually(source.is_ready)
        stream = sim.start_numbered(channels, rate=4000, count=400)
        await eventually(lambda: len(sink.messages) > 300)
        sim.send_reconnect(close_after_s=0.3)
        await stream.wait(5)
        await eventually(lambda: all(len(sink.numbers(c)) >= 400 for c in channels))
        # Anything doubled would be read before a line sent after the stream: wait for
        # the old socket to be gone and for such a marker on the one left.
        await eventually(lambda: sim.stats.connections_current == 1)
        await eventually(lambda: not source.status()["connections"][0]["handing_over"])  # type: ignore[index]
        sim.send_raw([b"@id=marker :m!m@m.tmi.twitch.tv PRIVMSG #chan0 :marker"])
        await eventually(lambda: any(m.trailing == "marker" for m in sink.messages))

        for channel in channels:
            assert_exactly_once(sink, channel, 400)
        assert sim.stats.numbered_undelivered == {}
        assert sim.stats.connections_accepted == 2
        assert source.is_ready()
        assert duplicates_dropped() > duplicates_before, (
            "both connections were reading during the overlap"
        )


async def test_unjoinable_channels_are_reported_and_the_others_flow() -> None:
    config = SimulatorConfig(
        channel_behaviours={
            "gone": ChannelBehaviour.SUSPENDED,
            "quiet": ChannelBehaviour.NO_ECHO,
        }
    )
    async with TwitchSimulator(config) as sim:
        sink = RecordingChatSink()
        source = TwitchSource(settings(sim.port, ["alpha", "gone", "quiet"]), sink)
        with capture_logs() as logs:
            async with running(source):
                await eventually(source.is_ready)
                failed = source.failed_channels
                await sim.start_numbered(["alpha"], count=20).wait(2)
                await eventually(lambda: len(sink.numbers("alpha")) == 20)

    assert set(failed) == {"gone", "quiet"}
    assert "msg_channel_suspended" in failed["gone"]
    assert "no JOIN echo" in failed["quiet"]
    warnings = [e for e in logs if e["event"].startswith("twitch channel could not be joined")]
    assert sorted(e["channel"] for e in warnings) == ["gone", "quiet"]


async def test_failed_channels_are_retried_and_recover() -> None:
    config = SimulatorConfig(channel_behaviours={"late": ChannelBehaviour.SUSPENDED})
    async with TwitchSimulator(config) as sim:
        source = TwitchSource(
            settings(sim.port, ["late"], twitch_join_retry_interval_s=0.2), RecordingChatSink()
        )
        async with running(source):
            await eventually(lambda: "late" in source.failed_channels)
            sim.set_channel_behaviour("late", ChannelBehaviour.NORMAL)
            await eventually(lambda: source.failed_channels == {} and source.is_ready(), within_s=2)


async def test_a_thousand_channels_join_within_the_rate_limit() -> None:
    # A 1 s window: the limiter's safety margin (10 %) then covers event-loop delays on
    # a loaded 2-core CI machine, as it covers network jitter against real Twitch.
    config = SimulatorConfig(seed=7, join_limit=200, join_window_s=1.0)
    channels = [f"ch{i:04d}" for i in range(1000)]
    async with TwitchSimulator(config) as sim:
        source = TwitchSource(
            settings(
                sim.port,
                channels,
                twitch_connection_open_interval_s=0.01,
                twitch_join_timeout_s=5,
                twitch_join_rate_window_s=1.0,
            ),
            RecordingChatSink(),
        )
        loop = asyncio.get_running_loop()
        start = loop.time()

        async with running(source):
            await eventually(source.is_ready, within_s=20)
            elapsed = loop.time() - start

            assert sim.stats.join_limit_violations == 0
            assert sim.stats.joined_channels() == set(channels)
            assert sim.stats.connections_current == 20
            assert source.failed_channels == {}
            # 1000 joins at 200 per 1 s need four full windows after the first burst.
            assert elapsed >= 4 * 1.0


async def test_channels_can_be_added_and_removed_at_runtime(sim: TwitchSimulator) -> None:
    sink = RecordingChatSink()
    source = TwitchSource(settings(sim.port, ["alpha"], twitch_channels_per_connection=2), sink)

    async with running(source):
        await eventually(source.is_ready)
        source.add_channels(["beta", "#Gamma"])
        await eventually(
            lambda: source.is_ready() and sim.stats.joined_channels() == {"alpha", "beta", "gamma"}
        )
        assert len(source.connection_statuses()) == 2

        source.remove_channels(["alpha", "gamma"])
        await eventually(lambda: sim.stats.joined_channels() == {"beta"})
        assert source.channels == ["beta"]
        await eventually(lambda: sim.stats.connections_current == 1)


async def test_stop_ends_every_task_even_while_chat_flows(sim: TwitchSimulator) -> None:
    class StopAwareSink(RecordingChatSink):
        stopped = False
        after_stop = 0

        async def deliver(
            self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
        ) -> None:
            if self.stopped:
                self.after_stop += 1
            await super().deliver(messages, received_at_ms, room_ids)

    sink = StopAwareSink()
    source = TwitchSource(settings(sim.port, ["alpha"]), sink)
    task = asyncio.create_task(source.run())
    await eventually(source.is_ready)
    stream = sim.start_numbered(["alpha"], rate=0)  # flat out, no end
    await eventually(lambda: len(sink.messages) > 1000)

    # The timeouts only turn a hang into a failure; stop() must not wait for the stream.
    await asyncio.wait_for(source.stop(), 10)
    sink.stopped = True
    await asyncio.wait_for(task, 10)

    assert not stream.done(), "the stream was still flowing when stop() returned"
    readers = [name for name in source_tasks() if name.endswith("-reader")]
    assert readers == [], "no reader is left that could deliver after stop()"
    await eventually(lambda: source_tasks() == [])  # cancelled helpers finish, none leak
    assert sink.after_stop == 0, "nothing delivered after stop()"


async def test_malformed_lines_go_to_the_dead_letter_sink_and_chat_continues() -> None:
    bad = b"@id=1 :x!x@x.tmi.twitch.tv PRIVMSG #alpha :caf\xe9"

    handlers: list[asyncio.Task[Any]] = []

    async def fake_twitch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while line := await reader.readline():
                if line.startswith(b"NICK"):
                    writer.write(b":tmi.twitch.tv 001 poolbot :Welcome, GLHF!\r\n")
                elif line.startswith(b"JOIN"):
                    writer.write(b":poolbot!poolbot@poolbot.tmi.twitch.tv JOIN #alpha\r\n")
                    writer.write(bad + b"\r\n" + b"\x00garbage\r\n" * 3)
                    writer.write(b"@id=2 :y!y@y.tmi.twitch.tv PRIVMSG #alpha :fine\r\n")
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(fake_twitch, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = RecordingChatSink()
    source = TwitchSource(settings(port, ["alpha"]), sink)
    try:
        with capture_logs() as logs:
            async with running(source):
                await eventually(lambda: len(sink.messages) == 1 and len(sink.dead) == 4)
    finally:
        server.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    assert sink.dead[0] == (bad, "invalid-utf8")
    assert {reason for _, reason in sink.dead[1:]} == {"invalid-command"}
    assert sink.messages[0].trailing == "fine"
    malformed_logs = [e for e in logs if "malformed" in e["event"]]
    assert len(malformed_logs) == 2, "first occurrence per reason only"


async def test_the_token_never_reaches_logs(
    sim: TwitchSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = TwitchSource(settings(sim.port, ["alpha"]), RecordingChatSink())
    with capture_logs() as logs:
        async with running(source):
            await eventually(source.is_ready)
            sim.drop_connections()
            await eventually(lambda: sim.stats.connections_accepted == 2 and source.is_ready())

    assert logs, "the source logs its state changes"
    assert all(TOKEN not in repr(entry) for entry in logs)
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(source.status())


async def test_a_close_with_joins_in_flight_is_counted_as_a_join_limit_reconnect() -> None:
    # The simulator enforces 5 per 10 s; the source is told 200 per 0.5 s, so it overshoots.
    config = SimulatorConfig(join_limit=5, join_window_s=10.0)
    async with TwitchSimulator(config) as sim:
        before = reconnects("join_limit")
        channels = [f"c{i}" for i in range(10)]
        source = TwitchSource(settings(sim.port, channels), RecordingChatSink())
        with capture_logs() as logs:
            async with running(source):
                await eventually(lambda: reconnects("join_limit") > before)

    lost = [e for e in logs if e["event"].startswith("twitch connection lost")]
    assert "TWITCH_JOIN_RATE_LIMIT" in lost[0]["hint"]


async def test_a_failed_hand_over_falls_back_to_reconnecting(sim: TwitchSimulator) -> None:
    sink = RecordingChatSink()
    source = TwitchSource(settings(sim.port, ["alpha"]), sink)

    async with running(source):
        await eventually(source.is_ready)
        sim.pause_accepting()
        sim.send_reconnect(close_after_s=0.1)
        await eventually(lambda: not source.is_ready(), within_s=2)
        await sim.resume_accepting()

        await eventually(source.is_ready, within_s=3)
        await sim.start_numbered(["alpha"], count=10).wait(2)
        await eventually(lambda: len(sink.numbers("alpha")) == 10, within_s=2)


def test_channel_names_that_would_corrupt_a_join_line_are_refused() -> None:
    source = TwitchSource(settings(6667, ["alpha"]), RecordingChatSink())
    with pytest.raises(ValueError, match="not Twitch channel logins"):
        source.add_channels(["ok", "two,channels"])
    assert source.channels == ["alpha"]


async def test_stop_abandons_a_sink_blocked_past_the_grace_period(sim: TwitchSimulator) -> None:
    class StuckSink(RecordingChatSink):
        async def deliver(
            self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
        ) -> None:
            await asyncio.Event().wait()  # Kafka gone and the buffer full, forever

    source = TwitchSource(settings(sim.port, ["alpha"]), StuckSink())
    task = asyncio.create_task(source.run())
    await eventually(lambda: sim.stats.joined_channels() == {"alpha"})
    await eventually(lambda: any(t.endswith("-reader") for t in source_tasks()))

    with capture_logs() as logs:
        # The timeouts only turn a hang into a failure: the sink never returns, so only
        # abandoning its chunk lets stop() finish at all.
        await asyncio.wait_for(source.stop(grace_s=0.1), 10)
        await asyncio.wait_for(task, 10)

    assert [e["event"] for e in logs if "abandoning" in e["event"]] == [
        "twitch source abandoning chunks at shutdown"
    ]
    assert not any(name.endswith("-reader") for name in source_tasks())
    await eventually(lambda: source_tasks() == [])
