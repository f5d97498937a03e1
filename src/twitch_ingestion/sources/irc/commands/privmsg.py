"""PRIVMSG → `ChatMessage`: the hot path, run for ~95 % of all lines.

Only the tags a `ChatMessage` needs are decoded, straight into a small struct (the fast
path of `irc.decode_tags`, inlined), channel logins and badge sets are memoised, and
every optional feature (ACTION, emotes, replies, Shared Chat) costs something only when
the line carries it. Time any change over the corpus PRIVMSG lines: the per-line cost
is a handful of microseconds, so one stray regex or dict copy shows.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from twitch_ingestion.models import CHAT_MESSAGE_SCHEMA_VERSION, ChatMessage
from twitch_ingestion.sources.common.fields import unwrap_action
from twitch_ingestion.sources.irc.commands.errors import ContractViolation
from twitch_ingestion.sources.irc.commands.fields import parse_badges
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS, ParseStats
from twitch_ingestion.sources.irc.emotes import emote_codes
from twitch_ingestion.sources.irc.irc import TAGS_JSON_ERRORS, IrcMessage, decode_tags

__all__ = ["parse_privmsg"]

_MAX_INT_DIGITS = 15  # see fields.non_negative_int; inlined here to save a call per line


class _PrivmsgTags(msgspec.Struct, rename="kebab", gc=False):
    """The PRIVMSG tags a `ChatMessage` uses; every other tag is never materialised."""

    badges: str = ""
    bits: str = ""
    display_name: str = ""
    emotes: str = ""
    first_msg: str = ""
    id: str = ""
    reply_parent_msg_id: str = ""
    room_id: str = ""
    source_id: str = ""
    source_room_id: str = ""
    tmi_sent_ts: str = ""
    user_id: str = ""


_TAGS_DECODER = msgspec.json.Decoder(_PrivmsgTags)


def parse_privmsg(
    message: IrcMessage,
    received_at_ms: int,
    room_ids: Mapping[str, str],
    stats: ParseStats = DEFAULT_PARSE_STATS,
) -> ChatMessage:
    """Build the `ChatMessage` for a PRIVMSG line.

    `room_ids` maps channel login → room id (kept by the caller from ROOMSTATE) and
    fills `room_id` when the tag is missing or empty. Raises `ContractViolation` when
    the line has no channel, no text or no sender.
    """
    params = message.params
    if len(params) < 2:
        if params and params[0][:1] == "#":
            raise ContractViolation("privmsg-without-text", message.raw)
        raise ContractViolation("privmsg-without-channel", message.raw)
    channel = _CHANNEL_LOGINS.get(params[0])
    if channel is None:
        channel = _channel_login(message)
    prefix = message.prefix
    username = prefix.partition("!")[0].lower() if prefix else ""
    if not username:
        raise ContractViolation("privmsg-without-sender", message.raw)

    # `decode_tags`, inlined: this is the single most expensive step of the hot path.
    raw_tags = message.raw_tags
    tags: _PrivmsgTags | None = None
    if raw_tags and '"' not in raw_tags and "\\" not in raw_tags and message.parsed_tags is None:
        try:  # noqa: SIM105 - contextlib.suppress would add a call to the hot path
            tags = _TAGS_DECODER.decode(
                '{"' + raw_tags.replace("=", '":"').replace(";", '","') + '"}'
            )
        except TAGS_JSON_ERRORS:
            pass
    if tags is None:
        tags = decode_tags(message, _TAGS_DECODER, _PrivmsgTags)

    text = params[-1]
    is_action = False
    if text[:1] == "\x01":
        text, is_action = unwrap_action(text)

    sent_ts = tags.tmi_sent_ts
    if sent_ts.isdigit() and sent_ts.isascii() and len(sent_ts) <= _MAX_INT_DIGITS:
        timestamp = int(sent_ts)
    else:
        timestamp = received_at_ms
        stats.timestamps_defaulted += 1
    bits = tags.bits
    badges = tags.badges
    # Positional, in `ChatMessage` field order (see its definition for why).
    return ChatMessage(
        channel,  # channel_id
        tags.user_id,  # user_id
        username,  # username
        text,  # message
        timestamp,  # timestamp
        emote_codes(tags.emotes, text, stats) if tags.emotes else [],  # emotes
        tags.id,  # message_id
        tags.room_id or room_ids.get(channel, ""),  # room_id
        # Twitch sometimes appends a space (`display-name=Name\s`): not part of the name.
        tags.display_name.strip(" "),  # display_name
        _badges(badges) if badges else {},  # badges
        is_action,  # is_action
        int(bits)
        if bits and bits.isdigit() and bits.isascii() and len(bits) <= _MAX_INT_DIGITS
        else 0,  # bits
        tags.reply_parent_msg_id or None,  # reply_parent_message_id
        tags.first_msg == "1",  # first_message
        received_at_ms,  # received_at
        CHAT_MESSAGE_SCHEMA_VERSION,  # schema_version
        tags.source_room_id or None,  # source_room_id
        tags.source_id or None,  # source_message_id
    )


# A service joins a bounded set of channels and most chatters carry one of a few badge
# sets, so both conversions are memoised. The caches are bounded (cleared when full) so
# a flood of unusual values cannot grow them without limit.
_CACHE_LIMIT = 4096
_CHANNEL_LOGINS: dict[str, str] = {}
_BADGE_SETS: dict[str, dict[str, str]] = {}


def _channel_login(message: IrcMessage) -> str:
    target = message.params[0]
    if target[:1] != "#" or len(target) < 2:
        raise ContractViolation("privmsg-without-channel", message.raw)
    if len(_CHANNEL_LOGINS) >= _CACHE_LIMIT:
        _CHANNEL_LOGINS.clear()
    login = _CHANNEL_LOGINS[target] = target[1:].lower()
    return login


def _badges(value: str) -> dict[str, str]:
    badges = _BADGE_SETS.get(value)
    if badges is None:
        if len(_BADGE_SETS) >= _CACHE_LIMIT:
            _BADGE_SETS.clear()
        badges = _BADGE_SETS[value] = parse_badges(value)
    return badges.copy()  # each record owns its dict: consumers may mutate it
