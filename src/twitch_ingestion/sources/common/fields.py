"""What both sources fill into the records' structs the same way.

IRC and EventSub publish the same structs (`models.py`): `EventFields` are the fields
every chat event has, built by each source from what it read; `unwrap_action` undoes
the CTCP wrapper of a `/me` message, which Twitch keeps in the text on both.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["EventFields", "unwrap_action"]


class EventFields(TypedDict):
    """The `ChatEvent` fields, filled the same way for every event kind."""

    channel_id: str
    room_id: str
    user_id: str
    username: str
    display_name: str
    timestamp: int
    received_at: int
    message_id: str
    system_message: str
    message: str | None
    emotes: list[str]
    source_room_id: str | None
    source_message_id: str | None
    tags: dict[str, str]


def unwrap_action(text: str) -> tuple[str, bool]:
    """Strip the CTCP `\\x01ACTION …\\x01` wrapper of a `/me` message.

    Returns the inner text and True, or `text` unchanged and False. A missing closing
    `\\x01` (seen on long messages that Twitch truncated) still counts as an action.
    """
    if not text.startswith("\x01ACTION"):
        return text, False
    body = text[7:]
    if body[:1] == " ":
        body = body[1:]
    elif body and body[0] != "\x01":  # `\x01ACTIONS…` is some other CTCP verb
        return text, False
    if body[-1:] == "\x01":
        body = body[:-1]
    return body, True
