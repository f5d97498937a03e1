"""ROOMSTATE → `RoomState`: the chat room's settings.

On JOIN Twitch sends every setting; afterwards only the one that changed (`@slow=10`),
so each field is None unless its tag is present. `room-id` may be missing from such a
partial update; it is then filled from what the caller learned earlier.
"""

from __future__ import annotations

from collections.abc import Mapping

from twitch_ingestion.models import RoomState
from twitch_ingestion.sources.irc.commands.fields import (
    event_fields,
    flag,
    optional_int,
    require_channel,
    signed_int,
)
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS, ParseStats
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = ["parse_roomstate"]


def parse_roomstate(
    message: IrcMessage,
    received_at_ms: int,
    room_ids: Mapping[str, str],
    stats: ParseStats = DEFAULT_PARSE_STATS,
) -> RoomState:
    """Build the event record for a ROOMSTATE line.

    The caller should remember `record.room_id` for `record.channel_id` (when not empty)
    and pass it back in `room_ids`: CLEARMSG and partial ROOMSTATE lines lack it.
    Raises `ContractViolation("roomstate-without-channel")` when there is no channel.
    """
    channel = require_channel(message, "roomstate")
    tags = message.tags
    return RoomState(
        # ROOMSTATE never carries `tmi-sent-ts`: `received_at` is its timestamp by design.
        **event_fields(
            message, channel, received_at_ms, room_ids, stats, with_actor=False, timestamped=False
        ),
        emote_only=flag(tags.get("emote-only")),
        followers_only_minutes=signed_int(tags.get("followers-only")),
        unique_chat=flag(tags.get("r9k")),
        slow_seconds=optional_int(tags, "slow"),
        subs_only=flag(tags.get("subs-only")),
    )
