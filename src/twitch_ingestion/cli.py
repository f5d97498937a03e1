"""Command line: `twitch-ingestion run | demo | simulate | tail | check-config | channels |
status`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from twitch_ingestion.config import ConfigError, Settings, load_settings
from twitch_ingestion.logging import configure_logging
from twitch_ingestion.service import ExitCode, IngestionService

__all__ = ["main"]


def _settings_or_exit(*, require_channels: bool = True, **overrides: Any) -> Settings:
    try:
        return load_settings(require_channels=require_channels, **overrides)
    except ConfigError as exc:
        print(f"twitch-ingestion: {exc}", file=sys.stderr)
        print("See .env.example and the README's settings table.", file=sys.stderr)
        raise SystemExit(ExitCode.CONFIG) from None


def _cmd_run(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    return int(asyncio.run(IngestionService(settings).run()))


def _cmd_check_config(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    shown = settings.model_dump(mode="json")
    for name in sorted(shown):
        value = shown[name]
        if name in {"twitch_oauth_token", "kafka_sasl_password"} and value is not None:
            value = "**********"
        print(f"{name.upper()}={value}")
    print(f"# login: {'anonymous' if settings.is_anonymous else settings.twitch_login}")
    print("# configuration is valid", file=sys.stderr)
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from twitch_ingestion.tail import tail

    settings = _settings_or_exit(require_channels=False)
    configure_logging(settings.log_level, settings.log_format)  # logs to stderr, not stdout
    topic = args.topic or settings.kafka_topic_chat_messages
    with contextlib.suppress(KeyboardInterrupt):
        tail(
            settings,
            topic,
            from_beginning=not args.latest,
            idle_timeout_s=args.idle_timeout_s,
            max_records=args.max_records,
        )
    return 0


def _cmd_channels(args: argparse.Namespace) -> int:
    from twitch_ingestion.fleet.commands import run_channels

    settings = _settings_or_exit(require_channels=False)
    configure_logging(settings.log_level, settings.log_format)
    return run_channels(args, settings)


def _cmd_status(args: argparse.Namespace) -> int:
    from twitch_ingestion.fleet.commands import run_status

    settings = _settings_or_exit(require_channels=False)
    configure_logging(settings.log_level, settings.log_format)
    return run_status(args, settings)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from twitch_ingestion.simulator.cli import run_simulate

    try:
        return asyncio.run(run_simulate(args))
    except KeyboardInterrupt:
        return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from twitch_ingestion.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twitch-ingestion",
        description="Read Twitch chat and publish every message to Kafka.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the service (settings from env and .env)")
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser("check-config", help="validate settings and print them")
    check.set_defaults(handler=_cmd_check_config)

    tail = commands.add_parser("tail", help="print a topic's records (key<TAB>value)")
    tail.add_argument("--topic", help="topic to read (default: KAFKA_TOPIC_CHAT_MESSAGES)")
    tail.add_argument("--latest", action="store_true", help="only new records")
    tail.add_argument("--max-records", type=int, default=None, help="stop after N records")
    tail.add_argument(
        "--idle-timeout-s", type=float, default=None, help="stop after N s without records"
    )
    tail.set_defaults(handler=_cmd_tail)

    from twitch_ingestion.fleet.commands import add_channels_arguments, add_status_arguments

    channels = commands.add_parser(
        "channels", help="add, remove or list the fleet's channels (CHANNEL_SOURCE=kafka)"
    )
    add_channels_arguments(channels)
    channels.set_defaults(handler=_cmd_channels)

    status = commands.add_parser("status", help="which instance reads which channels")
    add_status_arguments(status)
    status.set_defaults(handler=_cmd_status)

    from twitch_ingestion.simulator.cli import add_simulate_arguments

    simulate = commands.add_parser("simulate", help="run the Twitch IRC simulator")
    add_simulate_arguments(simulate)
    simulate.set_defaults(handler=_cmd_simulate)

    from twitch_ingestion.demo import add_demo_arguments

    demo = commands.add_parser(
        "demo", help="offline demo: simulator chat → service → Kafka → records printed"
    )
    add_demo_arguments(demo)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        code = 130
    structlog.get_logger(__name__).debug("exiting", code=code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
