"""`twitch-ingestion channels add|remove|list` and `twitch-ingestion status`.

They take the fleet's `ControlTopicsConfig` (and `channels` the producer's tuning, to
write as the service does); `cli.py` derives both from the settings.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from confluent_kafka import KafkaException

from twitch_ingestion.channels import normalise_logins
from twitch_ingestion.fleet.config import ControlTopicsConfig
from twitch_ingestion.fleet.control_topic import (
    ControlTopicError,
    read_channel_table,
    require_control_topics,
    write_channels,
)
from twitch_ingestion.fleet.status import describe_fleet, render_status
from twitch_ingestion.kafka.producer_config import ProducerTuning

__all__ = [
    "add_channels_arguments",
    "add_status_arguments",
    "parse_channel_args",
    "run_channels",
    "run_status",
]

# Exit code for a bad argument, as for bad configuration.
_USAGE = 2
# In a channel file, `#` then a space (or the end of the line) starts a comment; `#forsen`
# is a channel, as on the command line.
_COMMENT = re.compile(r"(?:^|\s)#(?:\s|$).*")


def add_channels_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="channels_action", required=True)
    add = actions.add_parser("add", help="add channels to the fleet's control topic")
    add.add_argument("channels", nargs="*", help="channel logins (`#` optional, commas allowed)")
    add.add_argument(
        "--file",
        type=Path,
        help="read more channel logins from a file, one a line (blank lines and '# …' "
        "comments are skipped)",
    )
    remove = actions.add_parser("remove", help="remove channels (tombstones)")
    remove.add_argument("channels", nargs="*", help="channel logins")
    remove.add_argument("--file", type=Path, help="read more channel logins from a file")
    listing = actions.add_parser("list", help="print the wanted channels, one a line")
    listing.add_argument("--json", action="store_true", help="channel → partition as JSON")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def parse_channel_args(values: list[str], file: Path | None) -> list[str]:
    """Channel logins from arguments and an optional file; ValueError names bad ones.

    The file has a login a line (commas allowed too); blank lines and comments — `#`
    followed by a space, on a line of its own or after a login — are skipped.
    """
    raw = [part for value in values for part in value.split(",")]
    if file is not None:
        for line in file.read_text(encoding="utf-8").splitlines():
            raw.extend(_COMMENT.sub("", line).split(","))
    return normalise_logins(raw)


def _topics_ready(command: str, control: ControlTopicsConfig) -> bool:
    """Create the fleet's topics as documented, or say in one line why they cannot be
    used. Every command checks first: even reading would otherwise leave a broker with
    auto-create on holding a 1-partition control topic that retention empties."""
    try:
        warnings = require_control_topics(control)
    except ControlTopicError as exc:
        print(
            f"twitch-ingestion {command}: Kafka at {control.connection.brokers}: {exc}",
            file=sys.stderr,
        )
        return False
    for warning in warnings.values():
        print(f"twitch-ingestion {command}: warning: {warning}", file=sys.stderr)
    return True


def run_channels(
    args: argparse.Namespace, control: ControlTopicsConfig, tuning: ProducerTuning
) -> int:
    action: str = args.channels_action
    channels: list[str] = []
    if action != "list":  # arguments first: a typo needs no broker to be reported
        try:
            channels = parse_channel_args(args.channels, args.file)
        except (ValueError, OSError) as exc:
            print(f"twitch-ingestion channels {action}: {exc}", file=sys.stderr)
            return _USAGE
        if not channels:
            print(f"twitch-ingestion channels {action}: no channels given", file=sys.stderr)
            return _USAGE
    if not _topics_ready(f"channels {action}", control):
        return 1
    try:
        if action == "list":
            table = read_channel_table(control)
            if args.json:
                print(json.dumps(dict(sorted(table.items())), indent=2))
            else:
                for channel in sorted(table):
                    print(channel)
            return 0
        adding = action == "add"
        # Only what changes is written, so that the count says what happened.
        table = read_channel_table(control)
        changing = [c for c in channels if (c in table) != adding]
        unchanged = [c for c in channels if (c in table) == adding]
        count = write_channels(control, tuning, changing, enabled=adding) if changing else 0
    except (KafkaException, RuntimeError, TimeoutError) as exc:
        print(
            f"twitch-ingestion channels {action}: Kafka at {control.connection.brokers}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(_change_summary(count, unchanged, adding, control.channels_topic), file=sys.stderr)
    return 0


def _change_summary(count: int, unchanged: list[str], adding: bool, topic: str) -> str:
    verb = "added" if adding else "removed"
    summary = f"{count} {_channels(count)} {verb} ({topic})"
    if unchanged:
        state = "already in the list" if adding else "not in the list"
        shown = ", ".join(unchanged[:10]) + (", …" if len(unchanged) > 10 else "")
        summary += f"; {len(unchanged)} {state}: {shown}"
    return summary


def _channels(count: int) -> str:
    return "channel" if count == 1 else "channels"


def run_status(args: argparse.Namespace, control: ControlTopicsConfig) -> int:
    if not _topics_ready("status", control):
        return 1
    try:
        status = describe_fleet(control)
    except (KafkaException, TimeoutError) as exc:
        brokers = control.connection.brokers
        print(f"twitch-ingestion status: Kafka at {brokers}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    else:
        print(render_status(status))
    return 0
