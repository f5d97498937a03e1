"""The Kafka contract: what downstream consumers read from each topic.

`msgspec.Struct` gives typed, immutable-by-convention records that encode to JSON in C
(the hot path) and generate their own JSON Schema (the published contract).
Field names of `ChatMessage` up to `emotes` are the seed plan's, unchanged.
"""

from __future__ import annotations

import msgspec

__all__ = ["CHAT_MESSAGE_SCHEMA_VERSION", "ChatMessage"]

CHAT_MESSAGE_SCHEMA_VERSION = 1


class ChatMessage(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One Twitch chat message (a PRIVMSG), keyed in Kafka by `channel_id`."""

    channel_id: str
    """Channel login without `#`, lower case (the seed's name for it)."""
    user_id: str
    """Sender's numeric Twitch user id (`user-id` tag); empty when Twitch omits it."""
    username: str
    """Sender's login name (from the IRC prefix)."""
    message: str
    """Message text; for `/me` messages the `\\x01ACTION` wrapper is removed."""
    timestamp: int
    """Unix milliseconds when Twitch accepted it (`tmi-sent-ts`), else `received_at`."""
    emotes: list[str]
    """Emote codes as they occur in the text, in order of position; empty when none."""
    message_id: str
    """Twitch's unique message id (`id` tag): the de-duplication key for consumers."""
    room_id: str
    """Channel's numeric id (`room-id` tag, or learned from ROOMSTATE); empty if unknown."""
    display_name: str
    """Sender's display name, may differ from `username` in case or script."""
    badges: dict[str, str]
    """Badge name → version, e.g. `{"subscriber": "12"}`."""
    is_action: bool
    """True for `/me` messages."""
    bits: int
    """Bits cheered with this message; 0 when none."""
    reply_parent_message_id: str | None
    """`message_id` of the message this one replies to, if it is a reply."""
    first_message: bool
    """True for a user's first message in the channel (`first-msg=1`)."""
    received_at: int
    """Unix milliseconds when this service read the line from the socket."""
    schema_version: int = CHAT_MESSAGE_SCHEMA_VERSION
