"""What every EventSub chat event shares, for the builders of its records (`records.py`
and `notice_records.py`): the wire shapes of the broadcaster and message fields (unknown
keys ignored; what is used is type-checked) and the readers that turn a bad value into a
dead letter or an "absent" field."""

from __future__ import annotations

import msgspec

__all__ = [
    "Fragment",
    "MessageBody",
    "SourceEvent",
    "Unusable",
    "channel_of",
    "count_or_none",
    "emote_texts",
]


class Fragment(msgspec.Struct, frozen=True, gc=False):
    type: str
    text: str


class MessageBody(msgspec.Struct, frozen=True, gc=False):
    text: str
    # Empty messages have `[]`; Twitch has been reported to send null.
    fragments: list[Fragment] | None = None


class SourceEvent(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Broadcaster and Shared Chat fields every chat event has (source_* absent pre-2024-09)."""

    broadcaster_user_id: str
    broadcaster_user_login: str
    source_broadcaster_user_id: str | None = None
    source_message_id: str | None = None


class Unusable(Exception):  # noqa: N818 - a signal, always turned into a DeadLetter
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def channel_of(event: SourceEvent) -> str:
    login = event.broadcaster_user_login.lower()
    if not login:
        raise Unusable("missing-channel", "broadcaster_user_login is empty")
    return login


_MAX_COUNT = 10**15
"""Counts past 15 digits are not numbers Twitch means (and JavaScript consumers could not
read them exactly): like IRC's `non_negative_int`, they become "absent"."""


def count_or_none(value: int | None) -> int | None:
    return value if value is not None and 0 <= value < _MAX_COUNT else None


def emote_texts(body: MessageBody | None) -> list[str]:
    if body is None or not body.fragments:
        return []
    return [fragment.text for fragment in body.fragments if fragment.type == "emote"]
