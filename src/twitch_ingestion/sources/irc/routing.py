"""Which record a server line becomes, and for which channel: the IRC source's routing.

`route_message` is the single entry point from the session into the parsers: PRIVMSG
(~95 % of lines) is tested first with one string comparison, every other command is
one dict lookup. Connection-level and per-user commands (PING, PONG, RECONNECT, CAP,
numerics, JOIN, PART, NOTICE, USERSTATE, GLOBALUSERSTATE, HOSTTARGET, WHISPER, and any
command Twitch adds later) are not published: the session handles them, and this
returns None. What becomes of a routed line (its topic, its key bytes, its JSON) is the
records stage's: `RecordBuilder.build_lines` calls this once per line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twitch_ingestion.models import ChatEventRecord
from twitch_ingestion.records.events import SourceRecord
from twitch_ingestion.records.topics import Destination
from twitch_ingestion.sources.irc.commands.clearchat import parse_clearchat
from twitch_ingestion.sources.irc.commands.clearmsg import parse_clearmsg
from twitch_ingestion.sources.irc.commands.errors import ContractViolation
from twitch_ingestion.sources.irc.commands.privmsg import parse_privmsg
from twitch_ingestion.sources.irc.commands.roomstate import parse_roomstate
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS, ParseStats
from twitch_ingestion.sources.irc.commands.usernotice import parse_usernotice
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = [
    "DEFAULT_PARSE_STATS",
    "EVENT_COMMANDS",
    "ContractViolation",
    "ParseStats",
    "route_message",
]


_EventParser = Callable[[IrcMessage, int, Mapping[str, str], ParseStats], ChatEventRecord]

_EVENT_PARSERS: dict[str, _EventParser] = {
    "USERNOTICE": parse_usernotice,
    "CLEARCHAT": parse_clearchat,
    "CLEARMSG": parse_clearmsg,
    "ROOMSTATE": parse_roomstate,
}

EVENT_COMMANDS = frozenset(_EVENT_PARSERS)
"""Commands published to `Destination.EVENTS` (PRIVMSG goes to `CHAT`)."""

_CHAT = Destination.CHAT
_EVENTS = Destination.EVENTS


def route_message(
    message: IrcMessage,
    received_at_ms: int,
    room_ids: Mapping[str, str],
    stats: ParseStats = DEFAULT_PARSE_STATS,
) -> SourceRecord | None:
    """Turn a parsed line into a `SourceRecord`, or None when it is not published.

    `received_at_ms` is when the line was read (Unix ms); `room_ids` maps channel login
    → room id, kept by the caller from ROOMSTATE records, for lines without `room-id`.
    Raises `ContractViolation` (only) for a PRIVMSG/USERNOTICE/CLEARCHAT/CLEARMSG/
    ROOMSTATE line that cannot form a valid record.
    """
    if message.command == "PRIVMSG":
        chat = parse_privmsg(message, received_at_ms, room_ids, stats)
        return SourceRecord(_CHAT, chat.channel_id, chat)
    parser = _EVENT_PARSERS.get(message.command)
    if parser is None:
        return None
    event = parser(message, received_at_ms, room_ids, stats)
    return SourceRecord(_EVENTS, event.channel_id, event)
