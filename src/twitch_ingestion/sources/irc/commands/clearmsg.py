"""CLEARMSG → `MessageDeleted`: a moderator deleted one chat message.

Real CLEARMSG lines have arrived with an empty `room-id` and a negative `tmi-sent-ts`
(-6795364578871): the room id is then filled from ROOMSTATE and the timestamp from
`received_at`, like every other record.
"""

from __future__ import annotations

from collections.abc import Mapping

from twitch_ingestion.models import MessageDeleted
from twitch_ingestion.sources.common.fields import unwrap_action
from twitch_ingestion.sources.irc.commands.errors import ContractViolation
from twitch_ingestion.sources.irc.commands.fields import event_fields, require_channel
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS, ParseStats
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = ["parse_clearmsg"]


def parse_clearmsg(
    message: IrcMessage,
    received_at_ms: int,
    room_ids: Mapping[str, str],
    stats: ParseStats = DEFAULT_PARSE_STATS,
) -> MessageDeleted:
    """Build the event record for a CLEARMSG line.

    Raises `ContractViolation` without a channel or without `target-msg-id` (a deletion
    that does not say what it deletes is useless to consumers).
    """
    channel = require_channel(message, "clearmsg")
    tags = message.tags
    target_message_id = tags.get("target-msg-id")
    if not target_message_id:
        raise ContractViolation("clearmsg-without-target-message-id", message.raw)
    params = message.params
    text = params[1] if len(params) > 1 else None
    if text is not None and text[:1] == "\x01":
        text = unwrap_action(text)[0]
    return MessageDeleted(
        **event_fields(
            message, channel, received_at_ms, room_ids, stats, with_actor=False, text=text
        ),
        target_username=tags.get("login", "").lower(),
        deleted_message_id=target_message_id,
    )
