"""The suite's own Twitch IRC lines (`tests/fixtures/twitch-irc/`) and a PRIVMSG builder.

`TRICKY`: valid lines with the record each must become; `MALFORMED`: lines the service
must dead-letter, with the reason each gets; `tagged`: a real-looking tagged PRIVMSG line
with some tags changed.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from tests.support.corpus import REPO_DIR
from twitch_ingestion.models import ChatEventRecord

FIXTURES = REPO_DIR / "tests" / "fixtures" / "twitch-irc"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


TRICKY = _jsonl(FIXTURES / "tricky-lines.jsonl")
# `event_type` of every record struct published on the events topic.
EVENT_TYPES = frozenset(
    str(struct.__struct_config__.tag) for struct in typing.get_args(ChatEventRecord)
)
MALFORMED = _jsonl(FIXTURES / "malformed-lines.jsonl")


def malformed_bytes(case: dict[str, Any]) -> bytes:
    """A malformed fixture's exact bytes (`raw_hex` for lines that are not UTF-8)."""
    if "raw_hex" in case:
        return bytes.fromhex(case["raw_hex"])
    raw: str = case["raw"]
    return raw.encode()


PREFIX = ":randers!randers@randers.tmi.twitch.tv"
BASE_TAGS = (
    "badge-info=subscriber/22;badges=moderator/1,subscriber/12;color=#19E6E6;"
    "display-name=randers;emotes=;first-msg=0;flags=;id=d831d848-b7c7-4559-ae3a-2cb88f4dbfed;"
    "mod=1;room-id=11148817;subscriber=1;tmi-sent-ts=1594555275886;turbo=0;user-id=40286300;"
    "user-type=mod"
)


def tagged(text: str, **tags: str) -> str:
    """A PRIVMSG line with BASE_TAGS, some replaced or added (`_` in names → `-`).

    A value of `<absent>` removes the tag.
    """
    merged = dict(item.split("=", 1) for item in BASE_TAGS.split(";"))
    merged.update({key.replace("_", "-"): value for key, value in tags.items()})
    raw_tags = ";".join(f"{key}={value}" for key, value in merged.items() if value != "<absent>")
    return f"@{raw_tags} {PREFIX} PRIVMSG #pajlada :{text}"
