"""CLEARCHAT → `Ban`, `Timeout` or `ChatCleared`.

`CLEARCHAT #chan :login` with `ban-duration` is a timeout, without it a permanent ban;
`CLEARCHAT #chan` with no target clears the whole chat. IRC does not say which
moderator acted.
"""

from __future__ import annotations

from collections.abc import Mapping

from twitch_ingestion.models import Ban, ChatCleared, Timeout
from twitch_ingestion.sources.irc.commands.errors import ContractViolation
from twitch_ingestion.sources.irc.commands.fields import (
    event_fields,
    non_negative_int,
    require_channel,
)
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS, ParseStats
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = ["parse_clearchat"]


def parse_clearchat(
    message: IrcMessage,
    received_at_ms: int,
    room_ids: Mapping[str, str],
    stats: ParseStats = DEFAULT_PARSE_STATS,
) -> Ban | Timeout | ChatCleared:
    """Build the event record for a CLEARCHAT line.

    Raises `ContractViolation` without a channel, or when `ban-duration` is not a number
    or comes without a target (treating either as "clear the whole chat" would tell
    consumers to hide every message).
    """
    channel = require_channel(message, "clearchat")
    tags = message.tags
    params = message.params
    target = params[1].strip(" ").lower() if len(params) > 1 else ""
    duration_tag = tags.get("ban-duration")
    common = event_fields(message, channel, received_at_ms, room_ids, stats, with_actor=False)
    if not target:
        if duration_tag is not None:
            raise ContractViolation("clearchat-duration-without-target", message.raw)
        return ChatCleared(**common)
    target_user_id = tags.get("target-user-id", "")
    if duration_tag is None:
        return Ban(**common, target_user_id=target_user_id, target_username=target)
    duration = non_negative_int(duration_tag)
    if duration is None:
        raise ContractViolation("clearchat-invalid-ban-duration", message.raw)
    return Timeout(
        **common,
        target_user_id=target_user_id,
        target_username=target,
        duration_seconds=duration,
    )
