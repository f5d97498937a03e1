"""`twitch-ingestion simulate`: run the Twitch IRC simulator until SIGINT/SIGTERM.

Point the service at it with TWITCH_IRC_HOST=127.0.0.1, TWITCH_IRC_PORT=<port> and
TWITCH_IRC_TLS=false (or, with `--tls-cert`, TWITCH_IRC_TLS=true and SSL_CERT_FILE=<the
CA that signed the certificate>). Connection events and a periodic stats line go to
stderr as the service's logs do (structlog: readable on a terminal, JSON lines elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

import structlog

from twitch_ingestion.config import LogFormat
from twitch_ingestion.logging import configure_logging
from twitch_ingestion.simulator.config import (
    DEFAULT_JOIN_LIMIT,
    DEFAULT_JOIN_WINDOW_S,
    DEFAULT_PING_INTERVAL_S,
    DEFAULT_PONG_TIMEOUT_S,
    ChannelBehaviour,
    SimulatorConfig,
    server_tls_context,
)
from twitch_ingestion.simulator.replay import DEFAULT_REPLAY_COMMANDS, load_corpus
from twitch_ingestion.simulator.server import TwitchSimulator
from twitch_ingestion.simulator.stats import SimulatorStats

__all__ = ["add_simulate_arguments", "config_from_args", "run_simulate"]

log = structlog.get_logger(__name__)

# 6667 is Twitch's plain-text IRC port; the service's TWITCH_IRC_PORT defaults to 6697
# (TLS), so a demo sets both the port and TWITCH_IRC_TLS=false.
DEFAULT_CLI_PORT = 6667
DEFAULT_CLI_RATE = 100.0
DEFAULT_STATS_INTERVAL_S = 10.0
# `--replay` without a path: the bundled sample chat.
_DEFAULT_CORPUS = ""


def _channel_list(value: str) -> list[str]:
    channels = [c.strip().removeprefix("#").lower() for c in value.split(",") if c.strip()]
    if not channels:
        raise argparse.ArgumentTypeError(f"no channel in {value!r}")
    return channels


def _room_id(value: str) -> tuple[str, str]:
    channel, sep, room_id = value.partition("=")
    if not sep or not channel or not room_id.isdigit():
        raise argparse.ArgumentTypeError(f"expected CHANNEL=NUMERIC_ID, got {value!r}")
    return channel.removeprefix("#").lower(), room_id


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` options to `parser` (used by `twitch-ingestion simulate`)."""
    net = parser.add_argument_group("listening")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    net.add_argument(
        "--port",
        type=int,
        default=DEFAULT_CLI_PORT,
        help="port to listen on, 0 = ephemeral (default %(default)s)",
    )
    net.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="serve TLS with this certificate (chain) instead of plain TCP",
    )
    net.add_argument(
        "--tls-key",
        default=None,
        metavar="PEM",
        help="the certificate's private key (default: inside --tls-cert)",
    )

    content = parser.add_argument_group("content (streams start once a client joins)")
    content.add_argument(
        "--replay",
        nargs="?",
        const=_DEFAULT_CORPUS,
        default=None,
        metavar="PATH",
        help="replay raw IRC lines from PATH (default: the bundled sample chat)",
    )
    content.add_argument("--generate", action="store_true", help="send synthetic chat")
    content.add_argument(
        "--numbered",
        type=_channel_list,
        action="extend",
        default=None,
        metavar="CHANNEL[,CHANNEL…]",
        help="send `seq <channel> <n>` PRIVMSGs to these channels (starts when all are joined)",
    )
    content.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_CLI_RATE,
        help="lines/s per stream, 0 = as fast as the client reads (default %(default)s)",
    )
    content.add_argument(
        "--count",
        type=int,
        default=None,
        help="generate: lines in all; numbered: lines per channel (default: no end)",
    )
    content.add_argument(
        "--loop",
        type=int,
        default=1,
        metavar="N",
        help="replay passes over the file, 0 = forever (default %(default)s)",
    )
    content.add_argument(
        "--channel",
        type=_channel_list,
        action="extend",
        default=None,
        metavar="CHANNEL[,CHANNEL…]",
        help="replay/generate into these channels (default: whatever clients joined)",
    )
    content.add_argument(
        "--no-rewrite-channel",
        action="store_true",
        help="replay lines to their original channel and room-id",
    )
    content.add_argument(
        "--original-timestamps",
        action="store_true",
        help="keep the corpus's tmi-sent-ts instead of the current time",
    )
    content.add_argument(
        "--all-commands",
        action="store_true",
        help="replay every channel-bearing line, not only "
        + ", ".join(sorted(DEFAULT_REPLAY_COMMANDS)),
    )
    content.add_argument("--seed", type=int, default=None, help="seed for generated chat and ids")

    auth = parser.add_argument_group("login and channels")
    auth.add_argument(
        "--valid-token",
        action="append",
        default=None,
        metavar="TOKEN",
        help="accept only these oauth tokens for non-anonymous logins (repeatable)",
    )
    for behaviour in (
        ChannelBehaviour.SUSPENDED,
        ChannelBehaviour.BANNED,
        ChannelBehaviour.NO_ECHO,
    ):
        flag = behaviour.value.replace("_", "-")
        auth.add_argument(
            f"--{flag}-channel",
            dest=f"{behaviour.value}_channels",
            type=_channel_list,
            action="extend",
            default=[],
            metavar="CHANNEL",
            help=f"answer JOINs of this channel as {behaviour.value} (repeatable)",
        )
    auth.add_argument(
        "--room-id",
        type=_room_id,
        action="append",
        default=[],
        metavar="CHANNEL=ID",
        help="room-id for a channel (default: stable id derived from the name)",
    )

    limits = parser.add_argument_group("protocol timing and limits")
    limits.add_argument(
        "--ping-interval-s",
        type=float,
        default=DEFAULT_PING_INTERVAL_S,
        help="server PING period, 0 = never (default %(default)s)",
    )
    limits.add_argument(
        "--pong-timeout-s",
        type=float,
        default=DEFAULT_PONG_TIMEOUT_S,
        help="close when a PING is not answered in time, 0 = never (default %(default)s)",
    )
    limits.add_argument(
        "--join-limit",
        type=int,
        default=DEFAULT_JOIN_LIMIT,
        help="JOIN targets per account per window, 0 = unlimited (default %(default)s)",
    )
    limits.add_argument(
        "--join-window-s",
        type=float,
        default=DEFAULT_JOIN_WINDOW_S,
        help="join-limit window (default %(default)s)",
    )
    limits.add_argument(
        "--stats-interval-s",
        type=float,
        default=DEFAULT_STATS_INTERVAL_S,
        help="print a stats line this often, 0 = never (default %(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The `SimulatorConfig` that the parsed `simulate` options describe."""
    behaviours: dict[str, ChannelBehaviour] = {}
    for behaviour in (
        ChannelBehaviour.SUSPENDED,
        ChannelBehaviour.BANNED,
        ChannelBehaviour.NO_ECHO,
    ):
        for channel in getattr(args, f"{behaviour.value}_channels"):
            behaviours[channel] = behaviour
    if args.tls_key is not None and args.tls_cert is None:
        raise ValueError("--tls-key needs --tls-cert")
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        ssl_context=(
            server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert is not None else None
        ),
        valid_tokens=frozenset(args.valid_token) if args.valid_token else None,
        ping_interval_s=args.ping_interval_s or None,
        pong_timeout_s=args.pong_timeout_s or None,
        join_limit=args.join_limit or None,
        join_window_s=args.join_window_s,
        channel_behaviours=behaviours,
        room_ids=dict(args.room_id),
        seed=args.seed,
    )


def _stats_fields(stats: SimulatorStats, previous_bytes: int, elapsed_s: float) -> dict[str, Any]:
    mib_s = (stats.bytes_written - previous_bytes) / elapsed_s / 2**20 if elapsed_s else 0.0
    return {
        "connections": stats.connections_current,
        "connections_accepted": stats.connections_accepted,
        "joined": len(stats.joined_channels()),
        "lines_written": sum(stats.lines_written_by_command.values()),
        "privmsgs": sum(stats.privmsgs_by_channel.values()),
        "unjoined": sum(stats.sent_while_unjoined.values()),
        "mib_per_s": round(mib_s, 2),
        "pongs": stats.pongs_received,
        "join_limit_violations": stats.join_limit_violations,
    }


async def _report_stats(sim: TwitchSimulator, interval_s: float) -> None:
    previous_bytes, previous_at = 0, time.monotonic()
    while True:
        await asyncio.sleep(interval_s)
        now = time.monotonic()
        log.info("simulator stats", **_stats_fields(sim.stats, previous_bytes, now - previous_at))
        previous_bytes, previous_at = sim.stats.bytes_written, now


async def _start_numbered_when_joined(
    sim: TwitchSimulator, channels: list[str], rate: float, count: int | None
) -> None:
    log.info("simulator numbered stream waits for joins", channels=",".join(channels))
    await sim.wait_until(lambda s: set(channels) <= s.joined_channels(), timeout=None)
    sim.start_numbered(channels, rate, count)


async def run_simulate(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    # The service's log format (and its stdlib bridge, for asyncio's own lines).
    configure_logging("info", LogFormat.AUTO)
    try:
        config = config_from_args(args)
        if args.replay is not None:
            load_corpus(args.replay or None)  # a bad path fails now, not after listening
    except ValueError as exc:
        print(f"twitch-ingestion simulate: {exc}", file=sys.stderr)
        return 2
    sim = TwitchSimulator(config)
    try:
        await sim.start()
    except OSError as exc:
        print(
            f"twitch-ingestion simulate: cannot listen on {config.host}:{config.port}: {exc}; "
            "pick another --port (0 = any free port)",
            file=sys.stderr,
        )
        return 1
    print(f"simulator listening on {config.host}:{sim.port}", file=sys.stderr, flush=True)
    print(
        f"point the service at it with TWITCH_IRC_HOST={config.host} TWITCH_IRC_PORT={sim.port}"
        f" TWITCH_IRC_TLS={'true' if sim.tls else 'false'}"
        + (" SSL_CERT_FILE=<the CA that signed --tls-cert>" if sim.tls else ""),
        file=sys.stderr,
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    background: list[asyncio.Task[None]] = []
    try:
        channels = args.channel or None
        if args.replay is not None:
            sim.start_replay(
                args.replay or None,
                rate=args.rate,
                loops=args.loop or None,
                channels=None if args.no_rewrite_channel else channels,
                rewrite_channel=not args.no_rewrite_channel,
                fresh_timestamps=not args.original_timestamps,
                commands=None if args.all_commands else DEFAULT_REPLAY_COMMANDS,
            )
        if args.generate:
            sim.start_generated(args.rate, count=args.count, channels=channels, seed=args.seed)
        if args.numbered:
            background.append(
                loop.create_task(
                    _start_numbered_when_joined(sim, args.numbered, args.rate, args.count)
                )
            )
        if args.stats_interval_s > 0:
            background.append(loop.create_task(_report_stats(sim, args.stats_interval_s)))
        await stop.wait()
        log.info("simulator signal received", action="stopping")
    except (FileNotFoundError, ValueError) as exc:
        print(f"twitch-ingestion simulate: {exc}", file=sys.stderr)
        return 2
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        log.info("simulator stats", **_stats_fields(sim.stats, sim.stats.bytes_written, 0.0))
        await sim.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    return 0


def main() -> int:
    """`python -m twitch_ingestion.simulator`: the same as `twitch-ingestion simulate`."""
    parser = argparse.ArgumentParser(
        prog="python -m twitch_ingestion.simulator", description="Twitch IRC simulator"
    )
    add_simulate_arguments(parser)
    try:
        return asyncio.run(run_simulate(parser.parse_args()))
    except KeyboardInterrupt:
        return 0
