"""Command line: `twitch-ingestion run | demo | simulate | tail | check-config | channels |
status | top`.

What the user sees: stdout carries only a command's output; logs and errors go to
stderr. An anticipated failure (bad settings, a busy port, a locked buffer, Kafka
unreachable) is one line saying what to fix and an exit code from `ExitCode`; only a
bug produces a traceback, logged once through structlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaException, libversion
from confluent_kafka.admin import AdminClient

from twitch_ingestion import __version__
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import (
    ConfigError,
    ConfigProblem,
    Settings,
    SourceKind,
    dotenv_lines,
    load_settings,
    topic_name_problem,
    unknown_settings,
)
from twitch_ingestion.kafka.producer_config import admin_config, librdkafka_problems
from twitch_ingestion.logging import configure_default_logging, configure_logging
from twitch_ingestion.service import ExitCode, IngestionService

__all__ = ["main"]

log = structlog.get_logger(__name__)

# How long `tail` waits for Kafka to answer before saying it cannot reach it.
_TAIL_METADATA_TIMEOUT_S = 10.0


def _librdkafka_problems(settings: Settings) -> list[ConfigProblem]:
    """librdkafka's verdict on every client configuration the commands build."""
    from twitch_ingestion.fleet.control_reader import group_consumer_config

    return librdkafka_problems(
        configs.kafka_connection(settings),
        configs.producer_tuning(settings),
        [group_consumer_config(configs.fleet_config(settings))],
    )


def _settings_or_exit(
    *, require_channels: bool = True, strict: bool = False, **overrides: Any
) -> Settings:
    """Settings with every problem reported — one line each — and librdkafka's consent,
    then logging set up from them; or exit 2.

    A variable that looks like a setting but is none (a typo) is a warning, or with
    `strict` one more problem."""
    unknown = [found.message for found in unknown_settings()]
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = load_settings(
            (_librdkafka_problems,), require_channels=require_channels, **overrides
        )
    except ConfigError as exc:
        problems = exc.problems
    if strict:
        problems = [*problems, *unknown]
    else:
        for message in unknown:
            print(f"twitch-ingestion: warning: {message} (ignored)", file=sys.stderr)
    if problems or settings is None:
        for problem in problems:
            print(f"twitch-ingestion: {problem}", file=sys.stderr)
        raise SystemExit(ExitCode.CONFIG)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _cmd_run(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    return int(asyncio.run(IngestionService(settings).run()))


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings_or_exit(strict=args.strict)
    # .env syntax: the output, saved as .env, reads back to these settings.
    for line in dotenv_lines(settings):
        print(line)
    if settings.twitch_source is SourceKind.IRC:
        # EventSub reads as the token's own account (validated at start-up): no IRC nick.
        who = "anonymous (a justinfan guest)" if settings.is_anonymous else settings.twitch_login
        print(f"# IRC login: {who}")
    print("# configuration is valid", file=sys.stderr)
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from twitch_ingestion.tail import tail

    settings = _settings_or_exit(require_channels=False)
    topic = args.topic or settings.kafka_topic_chat_messages
    problem = topic_name_problem(topic)
    if problem is not None:
        print(f"twitch-ingestion tail: --topic {problem}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    try:
        if not _topic_exists(settings, topic):
            print(
                f"twitch-ingestion tail: topic {topic} does not exist (yet) at "
                f"{settings.kafka_brokers}; waiting for it",
                file=sys.stderr,
            )
        with contextlib.suppress(KeyboardInterrupt):
            tail(
                settings,
                topic,
                from_beginning=not args.latest,
                idle_timeout_s=args.idle_timeout_s,
                max_records=args.max_records,
            )
    except KafkaException as exc:
        print(
            f"twitch-ingestion tail: Kafka at {settings.kafka_brokers}, topic {topic}: "
            f"{_kafka_error_text(exc)}",
            file=sys.stderr,
        )
        return int(ExitCode.FAILURE)
    return 0


def _cmd_channels(args: argparse.Namespace) -> int:
    from twitch_ingestion.fleet.commands import run_channels

    settings = _settings_or_exit(require_channels=False)
    return run_channels(
        args, configs.control_topics_config(settings), configs.producer_tuning(settings)
    )


def _cmd_status(args: argparse.Namespace) -> int:
    from twitch_ingestion.fleet.commands import run_status

    settings = _settings_or_exit(require_channels=False)
    return run_status(args, configs.control_topics_config(settings))


def _cmd_top(args: argparse.Namespace) -> int:
    from twitch_ingestion.top.app import run_top_command

    # Logs would tear the full-screen view: only what cannot be shown on it gets through.
    settings = _settings_or_exit(require_channels=False, log_level="critical")
    return run_top_command(args, settings)


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
    parser.add_argument(
        "--version",
        action="version",
        version=(
            f"%(prog)s {__version__} (Python {platform.python_version()}, "
            f"librdkafka {libversion()[0]})"
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the service (settings from env and .env)")
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser("check-config", help="validate settings and print them")
    check.add_argument(
        "--strict",
        action="store_true",
        help="an unknown TWITCH_*/KAFKA_*/… variable (a typo) is an error, not a warning",
    )
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

    from twitch_ingestion.top.app import add_top_arguments

    top = commands.add_parser(
        "top", help="live view of an instance's (or the fleet's) flow, per channel; q quits"
    )
    add_top_arguments(top)
    top.set_defaults(handler=_cmd_top)

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
    # Before anything can log: structlog's own default would print to stdout.
    configure_default_logging()
    try:
        args = build_parser().parse_args(argv)
        code = int(args.handler(args))
    except KeyboardInterrupt:
        # Ctrl-C before the command installed its own handling: nothing to report.
        code = 130
    except BrokenPipeError:
        # The reader of stdout went away (`tail | head`): stop quietly, and keep Python
        # from complaining about the unflushed stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except Exception:
        # Every anticipated failure is reported where it happens, as one line; this is
        # a bug, so it gets its traceback — once, through the logger.
        log.exception("unexpected error", hint="a bug: please report it with this traceback")
        code = int(ExitCode.FAILURE)
    log.debug("exiting", code=code)
    return code


def _topic_exists(settings: Settings, topic: str) -> bool:
    """Whether the cluster has `topic`; raises KafkaException if Kafka cannot be reached.

    Asks for every topic's metadata, not this one's: a request naming a topic can create
    it on a broker with auto.create.topics.enable.
    """
    admin = AdminClient(admin_config(configs.kafka_connection(settings)))
    return topic in admin.list_topics(timeout=_TAIL_METADATA_TIMEOUT_S).topics


def _kafka_error_text(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return str(error.str()) if hasattr(error, "str") else str(exc)


if __name__ == "__main__":
    raise SystemExit(main())
