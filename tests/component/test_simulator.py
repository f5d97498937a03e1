"""The Twitch IRC simulator over real sockets, driven by a raw asyncio client."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.corpus import CORPORA_WITH_FIXTURE_FILE, REPO_DIR
from twitch_ingestion.simulator import (
    DEFAULT_REPLAY_COMMANDS,
    ChannelBehaviour,
    SimulatorConfig,
    SimulatorThread,
    TwitchSimulator,
    load_corpus,
)
from twitch_ingestion.simulator.cli import add_simulate_arguments, config_from_args
from twitch_ingestion.sources.irc.irc import parse_line

BOTH_CAPS = "twitch.tv/tags twitch.tv/commands"


class IrcTestClient:
    """A bare IRC client: lines in and out, nothing hidden."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> IrcTestClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20, ssl=tls)
        return cls(reader, writer)

    async def send(self, *lines: str) -> None:
        self.writer.write("".join(f"{line}\r\n" for line in lines).encode())
        await self.writer.drain()

    async def read_line(self, within_s: float = 2.0) -> str:
        """The next line without CRLF; EOFError when the server closed the socket."""
        raw = await asyncio.wait_for(self.reader.readline(), within_s)
        if not raw:
            raise EOFError("server closed the connection")
        assert raw.endswith(b"\r\n"), raw
        return raw[:-2].decode()

    async def read_until(
        self, predicate: Callable[[str], bool], within_s: float = 2.0
    ) -> list[str]:
        """Lines up to and including the first one matching `predicate`."""
        lines: list[str] = []
        async with asyncio.timeout(within_s):
            while True:
                lines.append(await self.read_line(within_s))
                if predicate(lines[-1]):
                    return lines

    async def login(
        self, nick: str = "justinfan123", password: str | None = None, caps: str = BOTH_CAPS
    ) -> list[str]:
        lines = [f"CAP REQ :{caps}"] if caps else []
        if password is not None:
            lines.append(f"PASS {password}")
        lines.append(f"NICK {nick}")
        await self.send(*lines)
        received = await self.read_until(lambda line: " 376 " in line)
        if not nick.startswith("justinfan") and "twitch.tv/commands" in caps:
            received.append(await self.read_line())  # GLOBALUSERSTATE
        return received

    async def join(self, *channels: str) -> list[str]:
        """JOIN and read up to the last channel's ROOMSTATE."""
        await self.send("JOIN " + ",".join(f"#{c}" for c in channels))
        return await self.read_until(lambda line: f"ROOMSTATE #{channels[-1]}" in line)

    async def read_rest(self, within_s: float = 5.0) -> list[str]:
        """Every line until the server closes the connection."""
        lines: list[str] = []
        async with asyncio.timeout(within_s):
            while True:
                try:
                    lines.append(await self.read_line(within_s))
                except EOFError:
                    return lines

    async def assert_nothing_for(self, seconds: float) -> None:
        try:
            line = await asyncio.wait_for(self.reader.readline(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, got {line!r}")

    async def close(self) -> None:
        self.writer.close()
        # The server may have reset the socket already; closing is all that matters.
        await asyncio.gather(self.writer.wait_closed(), return_exceptions=True)


@pytest.fixture
async def sim() -> AsyncIterator[TwitchSimulator]:
    async with TwitchSimulator(SimulatorConfig(seed=1)) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: TwitchSimulator) -> AsyncIterator[IrcTestClient]:
    connection = await IrcTestClient.connect(sim.port)
    yield connection
    await connection.close()


def seq_of(line: str) -> tuple[str, int]:
    """`(channel, n)` of a numbered-stream line."""
    _, channel, n = (parse_line(line).trailing or "").split(" ")
    return channel, int(n)


# --------------------------------------------------------------------------- login


async def test_anonymous_login_over_tcp(sim: TwitchSimulator, client: IrcTestClient) -> None:
    lines = await client.login("justinfan4711")
    assert lines[0] == f":tmi.twitch.tv CAP * ACK :{BOTH_CAPS}"
    assert lines[1] == ":tmi.twitch.tv 001 justinfan4711 :Welcome, GLHF!"
    assert lines[-1] == ":tmi.twitch.tv 376 justinfan4711 :>"
    assert sim.stats.logins_by_nick == {"justinfan4711": 1}


async def test_authenticated_login_with_a_valid_token_gets_globaluserstate() -> None:
    async with TwitchSimulator(SimulatorConfig(valid_tokens=frozenset({"s3cret"}))) as sim:
        client = await IrcTestClient.connect(sim.port)
        lines = await client.login("MyBot", password="oauth:s3cret")
        assert parse_line(lines[-1]).command == "GLOBALUSERSTATE"
        assert parse_line(lines[-1]).tags["display-name"] == "mybot"
        await client.close()


async def test_bad_token_gets_login_authentication_failed_then_close() -> None:
    async with TwitchSimulator(SimulatorConfig(valid_tokens=frozenset({"s3cret"}))) as sim:
        client = await IrcTestClient.connect(sim.port)
        await client.send("PASS oauth:wrong", "NICK mybot")
        assert await client.read_rest() == [":tmi.twitch.tv NOTICE * :Login authentication failed"]
        assert sim.stats.login_failures_by_reason == {"Login authentication failed": 1}
        await client.close()


async def test_pass_without_oauth_prefix_is_improperly_formatted_then_close(
    client: IrcTestClient,
) -> None:
    await client.send("PASS s3cret", "NICK mybot")
    assert await client.read_rest() == [":tmi.twitch.tv NOTICE * :Improperly formatted auth"]


async def test_cap_nak_for_unknown_capability(client: IrcTestClient) -> None:
    await client.send("CAP REQ :twitch.tv/tags twitch.tv/invalid")
    assert await client.read_line() == ":tmi.twitch.tv CAP * NAK :twitch.tv/tags twitch.tv/invalid"


# --------------------------------------------------------------------------- JOIN / PART


async def test_join_echo_names_and_roomstate_with_stable_room_id(
    sim: TwitchSimulator, client: IrcTestClient
) -> None:
    await client.login("justinfan1")
    lines = await client.join("forsen", "pajlada")
    assert lines[:3] == [
        ":justinfan1!justinfan1@justinfan1.tmi.twitch.tv JOIN #forsen",
        ":justinfan1.tmi.twitch.tv 353 justinfan1 = #forsen :justinfan1",
        ":justinfan1.tmi.twitch.tv 366 justinfan1 #forsen :End of /NAMES list",
    ]
    roomstate = parse_line(lines[3])
    assert roomstate.command == "ROOMSTATE"  # anonymous: no USERSTATE
    assert roomstate.tags == {
        "emote-only": "0",
        "followers-only": "-1",
        "r9k": "0",
        "room-id": sim.room_id_for("forsen"),
        "slow": "0",
        "subs-only": "0",
    }
    assert len(lines) == 8
    assert sim.stats.joins_by_channel == {"forsen": 1, "pajlada": 1}
    assert sim.stats.joined_channels() == {"forsen", "pajlada"}


async def test_configured_room_id_and_userstate_for_logged_in_users() -> None:
    config = SimulatorConfig(room_ids={"#Forsen": "22484632"})
    async with TwitchSimulator(config) as sim:
        client = await IrcTestClient.connect(sim.port)
        await client.login("bot", password="oauth:x")
        lines = await client.join("forsen")
        assert [parse_line(line).command for line in lines] == [
            "JOIN",
            "353",
            "366",
            "USERSTATE",
            "ROOMSTATE",
        ]
        assert parse_line(lines[-1]).tags["room-id"] == "22484632"
        await client.close()


async def test_part_echo_and_membership(sim: TwitchSimulator, client: IrcTestClient) -> None:
    await client.login("justinfan1")
    await client.join("a", "b")
    await client.send("PART #a")
    assert await client.read_line() == ":justinfan1!justinfan1@justinfan1.tmi.twitch.tv PART #a"
    await sim.wait_until(lambda s: s.joined_channels() == {"b"})
    assert sim.stats.connections[1].channels == ["b"]


async def test_client_without_tags_capability_gets_stripped_lines(sim: TwitchSimulator) -> None:
    client = await IrcTestClient.connect(sim.port)
    await client.login("justinfan1", caps="twitch.tv/commands")
    lines = await client.join("a")
    assert lines[-1] == ":tmi.twitch.tv ROOMSTATE #a"
    sim.start_numbered(["a"], count=1)
    line = await client.read_line()
    assert line == ":seq_sender!seq_sender@seq_sender.tmi.twitch.tv PRIVMSG #a :seq a 1"
    await client.close()


async def test_channel_behaviours_suspended_banned_and_no_echo() -> None:
    config = SimulatorConfig(
        channel_behaviours={"gone": ChannelBehaviour.SUSPENDED, "mean": ChannelBehaviour.BANNED}
    )
    async with TwitchSimulator(config) as sim:
        sim.set_channel_behaviour("#quiet", "no_echo")
        client = await IrcTestClient.connect(sim.port)
        await client.login("justinfan1")
        await client.send("JOIN #gone,#mean,#quiet,#ok")
        lines = await client.read_until(lambda line: "ROOMSTATE #ok" in line)
        assert lines[0] == (
            "@msg-id=msg_channel_suspended :tmi.twitch.tv NOTICE #gone"
            " :This channel does not exist or has been suspended."
        )
        assert lines[1] == (
            "@msg-id=msg_banned :tmi.twitch.tv NOTICE #mean"
            " :You are permanently banned from talking in mean."
        )
        assert lines[2] == ":justinfan1!justinfan1@justinfan1.tmi.twitch.tv JOIN #ok"
        assert not any("#quiet" in line for line in lines)
        assert sim.stats.joined_channels() == {"ok"}
        assert sim.stats.joins_by_channel == {"gone": 1, "mean": 1, "quiet": 1, "ok": 1}
        with pytest.raises(TimeoutError, match=r"\['quiet'\]"):
            await sim.wait_for_joined(["ok", "quiet"], timeout=0.2)
        await client.close()


async def test_join_limit_violation_drops_the_connection_and_counts_per_account() -> None:
    config = SimulatorConfig(join_limit=3, join_window_s=10.0)
    async with TwitchSimulator(config) as sim:
        first = await IrcTestClient.connect(sim.port)
        await first.login("justinfan9")
        await first.join("a", "b")
        # The limit is per account: a second connection with the same nick shares it.
        second = await IrcTestClient.connect(sim.port)
        await second.login("justinfan9")
        await second.send("JOIN #c,#d")
        lines = await second.read_rest()
        assert ":justinfan9!justinfan9@justinfan9.tmi.twitch.tv JOIN #c" in lines
        assert not any("#d" in line for line in lines)
        assert sim.stats.join_limit_violations == 1
        assert sim.stats.join_limit_violations_by_nick == {"justinfan9": 1}
        assert sim.stats.joins_by_channel == {"a": 1, "b": 1, "c": 1}
        await first.send("PING :still-here")  # the other connection is untouched
        assert await first.read_line() == ":tmi.twitch.tv PONG tmi.twitch.tv :still-here"
        await first.close()
        await second.close()


# --------------------------------------------------------------------------- PING / PONG


async def test_client_ping_gets_pong(client: IrcTestClient) -> None:
    await client.login()
    await client.send("PING :abc def")
    assert await client.read_line() == ":tmi.twitch.tv PONG tmi.twitch.tv :abc def"


async def test_server_pings_and_counts_pongs() -> None:
    async with TwitchSimulator(SimulatorConfig(ping_interval_s=0.1, pong_timeout_s=1.0)) as sim:
        client = await IrcTestClient.connect(sim.port)
        await client.login()
        assert await client.read_line() == "PING :tmi.twitch.tv"
        await client.send("PONG :tmi.twitch.tv")
        await sim.wait_until(lambda s: s.pongs_received == 1)
        assert sim.stats.pings_sent >= 1
        await client.close()


async def test_unanswered_ping_closes_the_connection() -> None:
    async with TwitchSimulator(SimulatorConfig(ping_interval_s=0.1, pong_timeout_s=0.1)) as sim:
        client = await IrcTestClient.connect(sim.port)
        await client.login()
        assert await client.read_rest(within_s=2.0) == ["PING :tmi.twitch.tv"]
        assert sim.stats.pong_timeouts == 1
        await client.close()


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("corpus_path", CORPORA_WITH_FIXTURE_FILE)
async def test_replay_sends_exactly_the_corpus_chat_lines(
    sim: TwitchSimulator, client: IrcTestClient, corpus_path: Path | None
) -> None:
    expected = load_corpus(corpus_path).count_by_command(DEFAULT_REPLAY_COMMANDS)
    await client.login()
    await client.join("a", "b")
    handle = sim.start_replay(corpus_path, rate=0)
    await sim.wait_streams_done(timeout=10)
    received: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    for _ in range(sum(expected.values())):
        message = parse_line(await client.read_line())
        received[message.command] += 1
        channels[message.channel or ""] += 1
    assert received == expected
    assert handle.stats.lines_by_command == expected
    assert channels["a"] - channels["b"] in (0, 1)  # round-robin over joined channels
    assert sum(sim.stats.privmsgs_by_channel.values()) == expected["PRIVMSG"]
    await client.assert_nothing_for(0.05)


async def test_replay_waits_for_a_joined_channel_and_paces_its_rate(
    sim: TwitchSimulator, client: IrcTestClient
) -> None:
    total = len(load_corpus(None).select(["PRIVMSG"]))
    handle = sim.start_replay(rate=200, commands=["PRIVMSG"])
    await client.login()  # the stream task has run meanwhile, and found nothing joined
    assert handle.stats.lines_emitted == 0  # so it waits: nothing emitted, nothing lost
    await client.join("live")
    lines = [await client.read_line() for _ in range(60)]
    emitted = handle.stats.lines_emitted
    handle.stop()
    assert all(parse_line(line).channel == "live" for line in lines)
    # Paced, not a burst: at 200 lines/s the 3,800 lines would take 19 s, and one burst
    # would have emitted them all before the first was read. (The exact schedule is
    # `RatePacer`'s, tested with a made-up clock.)
    assert 60 <= emitted < total
    assert sim.stats.sent_while_unjoined == {}


async def test_generated_stream_sends_count_privmsgs(
    sim: TwitchSimulator, client: IrcTestClient
) -> None:
    await client.login()
    await client.join("gen")
    handle = sim.start_generated(rate=0, count=500, seed=3)
    await handle.wait(timeout=10)
    messages = [parse_line(await client.read_line()) for _ in range(500)]
    assert {m.command for m in messages} == {"PRIVMSG"}
    assert len({m.tags["id"] for m in messages}) == 500
    assert handle.stats.lines_by_command == {"PRIVMSG": 500}
    assert sim.stats.privmsgs_by_channel == {"gen": 500}


async def test_numbered_stream_continues_across_reconnect_and_records_the_gap(
    sim: TwitchSimulator,
) -> None:
    first = await IrcTestClient.connect(sim.port)
    await first.login()
    await first.join("a", "b")
    await sim.start_numbered(["a", "b"], count=5).wait(timeout=5)
    got = [seq_of(await first.read_line()) for _ in range(10)]
    assert got == [(c, n) for n in range(1, 6) for c in ("a", "b")]
    await first.close()
    await sim.wait_until(lambda s: s.connections_current == 0)

    # Nobody has the channels joined: Twitch delivers these to no one.
    await sim.start_numbered(["a", "b"], count=3).wait(timeout=5)
    assert sim.stats.sent_while_unjoined == {"a": 3, "b": 3}
    assert sim.stats.numbered_undelivered == {"a": [(6, 8)], "b": [(6, 8)]}

    second = await IrcTestClient.connect(sim.port)
    await second.login()
    await second.join("a", "b")
    await sim.start_numbered(["a", "b"], count=2).wait(timeout=5)
    assert [seq_of(await second.read_line()) for _ in range(4)] == [
        ("a", 9),
        ("b", 9),
        ("a", 10),
        ("b", 10),
    ]
    assert sim.stats.numbered_high_water == {"a": 10, "b": 10}
    assert sim.stats.privmsgs_by_channel == {"a": 7, "b": 7}
    assert sim.stats.numbered_undelivered_count("a") == 3
    await second.close()


async def test_reconnect_hand_over_both_connections_get_the_same_lines(
    sim: TwitchSimulator,
) -> None:
    old = await IrcTestClient.connect(sim.port)
    await old.login("justinfan1")
    await old.join("a")
    assert sim.send_reconnect(close_after_s=0.8) == 1
    assert await old.read_line() == ":tmi.twitch.tv RECONNECT"
    new = await IrcTestClient.connect(sim.port)
    await new.login("justinfan1")
    await new.join("a")
    await sim.start_numbered(["a"], count=3).wait(timeout=5)
    old_lines = await old.read_rest(within_s=2.0)  # then the server closes it
    new_lines = [await new.read_line() for _ in range(3)]
    assert old_lines == new_lines  # same ids too: Twitch sends both connections the line
    assert [seq_of(line) for line in new_lines] == [("a", 1), ("a", 2), ("a", 3)]
    assert sim.stats.privmsgs_by_channel == {"a": 3}
    assert sim.stats.lines_written_by_command["PRIVMSG"] == 6
    assert sim.stats.reconnects_sent == 1
    await sim.wait_until(lambda s: s.connections_current == 1)
    await old.close()
    await new.close()


async def _receive_until_closed(sock: socket.socket, into: bytearray) -> None:
    loop = asyncio.get_running_loop()
    while chunk := await loop.sock_recv(sock, 65536):
        into += chunk


async def test_drop_resets_mid_stream_and_every_line_counted_as_delivered_arrives_first(
    sim: TwitchSimulator,
) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", sim.port))
        await loop.sock_sendall(
            sock, f"CAP REQ :{BOTH_CAPS}\r\nNICK justinfan1\r\nJOIN #a\r\n".encode()
        )
        await sim.wait_for_joined(["a"])
        handle = sim.start_numbered(["a"], rate=5000)
        data = bytearray()
        while data.count(b"PRIVMSG") < 20:
            data += await loop.sock_recv(sock, 65536)
        assert sim.drop_connections() == 1
        with pytest.raises(ConnectionResetError):  # an RST, not an orderly FIN
            await _receive_until_closed(sock, data)
        await sim.wait_dropped()
        # The stream runs on with nobody joined: wait until it has lost some lines.
        await sim.wait_until(lambda s: s.numbered_undelivered_count("a") > 0)
        handle.stop()
    received = [seq_of(line)[1] for line in data.decode().splitlines() if "PRIVMSG" in line]
    stats = sim.stats
    lost = {n for first, last in stats.numbered_undelivered["a"] for n in range(first, last + 1)}
    assert lost, "lines after the drop were recorded as undelivered"
    assert received == [n for n in range(1, stats.numbered_high_water["a"] + 1) if n not in lost]
    assert stats.connections_dropped == 1
    assert stats.drops_with_data_in_flight == 0
    assert stats.connections_current == 0


async def test_drop_without_settling_resets_at_once(sim: TwitchSimulator) -> None:
    client = await IrcTestClient.connect(sim.port)
    await client.login()
    await client.join("a")
    assert sim.drop_connections(settle=False) == 1
    with pytest.raises((ConnectionResetError, EOFError)):
        await client.read_rest(within_s=2.0)
    await sim.wait_until(lambda s: s.connections_current == 0)
    await client.close()


async def test_silent_server_reads_but_sends_nothing_until_resumed(sim: TwitchSimulator) -> None:
    client = await IrcTestClient.connect(sim.port)
    await client.login()
    await client.join("a")
    sim.go_silent()
    await sim.start_numbered(["a"], count=3).wait(timeout=5)
    await client.send("PING :anyone")
    await client.assert_nothing_for(0.2)
    assert sim.stats.sent_while_silent == {"a": 3}
    assert sim.stats.numbered_undelivered == {"a": [(1, 3)]}
    await client.send("PONG :tmi.twitch.tv")  # still read while silent
    await sim.wait_until(lambda s: s.pongs_received == 1)
    sim.resume_sending()
    await client.send("PING :back")
    assert await client.read_line() == ":tmi.twitch.tv PONG tmi.twitch.tv :back"
    await sim.start_numbered(["a"], count=1).wait(timeout=5)
    assert seq_of(await client.read_line()) == ("a", 4)
    await client.close()


async def test_pause_accepting_refuses_connections_then_listens_on_the_same_port(
    sim: TwitchSimulator, client: IrcTestClient
) -> None:
    await client.login()
    port = sim.port
    sim.pause_accepting()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await client.send("PING :open-ones-stay")
    assert await client.read_line() == ":tmi.twitch.tv PONG tmi.twitch.tv :open-ones-stay"
    await sim.resume_accepting()
    assert sim.port == port
    again = await IrcTestClient.connect(port)
    await again.login()
    await again.close()


# --------------------------------------------------------------------------- throughput


def _count_lines_until(port: int, total: int, result: list[float]) -> None:
    """A blocking client in its own thread: count CRLFs as fast as the kernel hands them."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"CAP REQ :{BOTH_CAPS}\r\nNICK justinfan1\r\nJOIN #fire\r\n".encode())
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        seen = 0
        started: float | None = None
        while seen < total:
            n = sock.recv_into(view)
            if not n:
                break
            if started is None:
                started = time.perf_counter()
            seen += buffer.count(b"\n", 0, n)
        assert started is not None
        result.extend([seen, time.perf_counter() - started])


async def test_firehose_throughput_to_one_client(sim: TwitchSimulator) -> None:
    total = 200_000
    for kind in ("numbered", "replay"):
        result: list[float] = []
        # Stops after `total` lines; the stream sends `total` PRIVMSGs after the handshake.
        reader = threading.Thread(target=_count_lines_until, args=(sim.port, total, result))
        reader.start()
        await sim.wait_for_joined(["fire"])
        if kind == "numbered":
            handle = sim.start_numbered(["fire"], rate=0, count=total)
        else:
            handle = sim.start_replay(rate=0, loops=None)
        await asyncio.to_thread(reader.join)
        handle.stop()
        seen, seconds = result
        rate = seen / seconds
        print(f"\nfirehose ({kind}): {seen:,.0f} lines in {seconds:.2f} s = {rate:,.0f} lines/s")
        assert seen >= total
        sim.drop_connections()
        await sim.wait_until(lambda s: s.connections_current == 0)


# --------------------------------------------------------------------------- thread + CLI


def test_simulator_thread_drives_a_blocking_client() -> None:
    with SimulatorThread(SimulatorConfig(seed=2)) as sim:
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
            sock.sendall(f"CAP REQ :{BOTH_CAPS}\r\nNICK justinfan5\r\nJOIN #t\r\n".encode())
            sim.wait_for_joined(["t"], timeout=5)
            stream = sim.start_numbered(["t"], rate=0, count=100)
            done = stream.wait(timeout=5)
            assert done.lines_emitted == 100
            sim.wait_streams_done(timeout=5)
            data = b""
            while data.count(b"PRIVMSG") < 100:
                data += sock.recv(65536)
            snapshot = sim.stats()
            assert snapshot.privmsgs_by_channel == {"t": 100}
            assert snapshot.connections[1].channels == ["t"]
            assert sim.send_reconnect(0.05) == 1
            sim.wait_until(lambda s: s.connections_current == 0, timeout=5)
        sim.pause_accepting()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", sim.port), timeout=5)
        sim.resume_accepting()
        socket.create_connection(("127.0.0.1", sim.port), timeout=5).close()
    assert snapshot.to_dict()["connections_current"] == 1


def test_cli_options_build_the_config() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(
        [
            "--port", "0", "--numbered", "a,#B", "--valid-token", "oauth:t", "--suspended-channel",
            "x", "--no-echo-channel", "y", "--room-id", "a=123", "--join-limit", "0",
            "--ping-interval-s", "0",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert args.numbered == ["a", "b"]
    assert config.valid_tokens == frozenset({"oauth:t"})
    assert config.channel_behaviours == {
        "x": ChannelBehaviour.SUSPENDED,
        "y": ChannelBehaviour.NO_ECHO,
    }
    assert config.room_ids == {"a": "123"}
    assert config.join_limit is None
    assert config.ping_interval_s is None


def test_cli_runs_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "twitch_ingestion.simulator", "--port", "0", "--generate"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        banner = ""
        for _ in range(50):  # skip anything logged before the banner
            banner = process.stderr.readline()
            if not banner or banner.startswith("simulator listening on"):
                break
        assert banner.startswith("simulator listening on 127.0.0.1:"), banner
        port = int(banner.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"NICK justinfan1\r\nJOIN #demo\r\n")
            data = b""
            while b"PRIVMSG #demo" not in data:
                data += sock.recv(65536)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority, made for this test run only."""
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_simulator_serves_chat_to_a_client_that_trusts_its_ca(
    tls_ca: trustme.CA,
) -> None:
    config = SimulatorConfig(seed=3, ssl_context=_server_context(tls_ca))
    async with TwitchSimulator(config) as sim:
        assert sim.tls
        trusting = ssl.create_default_context()
        tls_ca.configure_trust(trusting)
        client = await IrcTestClient.connect(sim.port, tls=trusting)
        await client.login()
        await client.join("secure")
        await sim.start_numbered(["secure"], count=3).wait(timeout=5)
        assert [seq_of(await client.read_line()) for _ in range(3)] == [
            ("secure", 1),
            ("secure", 2),
            ("secure", 3),
        ]
        assert client.writer.get_extra_info("ssl_object") is not None
        await client.close()


async def test_tls_simulator_is_refused_by_a_client_that_does_not_trust_it(
    tls_ca: trustme.CA,
) -> None:
    config = SimulatorConfig(ssl_context=_server_context(tls_ca))
    async with TwitchSimulator(config) as sim:
        with pytest.raises(ssl.SSLCertVerificationError):
            await IrcTestClient.connect(sim.port, tls=ssl.create_default_context())
        assert sim.stats.logins_by_nick == {}


def test_cli_tls_options_build_a_tls_config(tls_ca: trustme.CA, tmp_path: Path) -> None:
    import argparse

    cert = tls_ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    config = config_from_args(
        parser.parse_args(["--tls-cert", str(cert_file), "--tls-key", str(key_file)])
    )
    assert config.ssl_context is not None
    assert config_from_args(parser.parse_args([])).ssl_context is None
    with pytest.raises(ValueError, match="cannot load the TLS certificate"):
        config_from_args(parser.parse_args(["--tls-cert", str(tmp_path / "missing.pem")]))


# --------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize(
    "argv",
    [
        ["--replay", "/nonexistent/replay.txt"],
        ["--tls-cert", "/nonexistent/cert.pem"],
        ["--tls-key", "/nonexistent/key.pem"],
    ],
)
def test_cli_bad_file_is_one_line_and_exit_2(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twitch_ingestion.simulator", "--port", "0", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("twitch-ingestion simulate: ")
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stderr  # refused before binding anything


# --------------------------------------------------------------------------- make simulate


def _make_simulate_command() -> list[str]:
    """The command `make simulate` runs, on an ephemeral port instead of 6667."""
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "simulate"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    command = next(line for line in recipe.splitlines() if " simulate " in line)
    argv = shlex.split(command)
    argv[argv.index("--port") + 1] = "0"
    return [sys.executable, "-m", "twitch_ingestion", *argv[argv.index("simulate") :]]


@pytest.fixture
def make_simulate() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        _make_simulate_command(),
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        banner = ""
        for _ in range(50):
            banner = process.stderr.readline()
            if not banner or banner.startswith("simulator listening on"):
                break
        assert banner.startswith("simulator listening on 127.0.0.1:"), banner
        yield process, int(banner.rsplit(":", 1)[1])
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_make_simulate_streams_chat_to_a_client_that_joins(
    make_simulate: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = make_simulate
    assert process.stderr is not None
    recipe = process.stderr.readline()
    assert f"TWITCH_IRC_PORT={port} TWITCH_IRC_TLS=false" in recipe
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(30)
        sock.sendall(f"CAP REQ :{BOTH_CAPS}\r\nNICK justinfan7\r\nJOIN #watching\r\n".encode())
        data = b""
        while data.count(b"PRIVMSG #watching") < 20:
            chunk = sock.recv(65536)
            assert chunk, "the simulator closed the connection"
            data += chunk
    # Replayed chat (the bundled sample), not the numbered test stream.
    assert b"seq_sender" not in data
