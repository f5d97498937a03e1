"""Record identity: which Twitch event a record is, the same for every reader that saw it.

Two connections joined to the same channel read the same lines; an instance that takes
a channel over from another must find, in what it read, the record the other one handed
its sink last (a *mark*, issue 18). So every record has an identity computed only from
what Twitch set, never from when or where it was read. The rules are `IDENTITY_RULES`
below, rendered into `docs/contract.md`.

The identity is not a field of the record (the published JSON is unchanged, and
`message_id` stays the consumers' de-duplication key): it is computed from what the
source read, when it is needed. On the IRC hot path that is lazily, per chunk:
`last_identities` walks a delivered chunk back from its end and builds only the lines it
looks at, so a compiled `ParsedChunk` (whose PRIVMSG lines are not Python objects until
indexed) pays for a handful of lines per mark, not for every line.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final, Protocol

import msgspec

from twitch_ingestion.models import ChatEventRecord, ChatMessage, MessageDeleted

__all__ = [
    "IDENTITY_RULES",
    "MARKABLE_COMMANDS",
    "IdentifiableLine",
    "eventsub_identity",
    "irc_identity",
    "last_identities",
    "record_identity",
]

IDENTITY_RULES: Final = """\
Every record also has an **identity**: which Twitch event it is, computed only from what
Twitch set, so that two connections (or two instances) that read the same event compute
the same one. It is not a field of the value (`message_id` stays the key to de-duplicate
on); it is what instances of a fleet compare to agree on where a channel's records stand.

- An IRC line with an `id` tag (PRIVMSG, USERNOTICE): the `id` tag, Twitch's message id.
- CLEARCHAT: `CLEARCHAT/<channel>/<tmi-sent-ts>/<target-user-id>` (the target is empty
  when the whole chat was cleared).
- CLEARMSG: `CLEARMSG/<channel>/<tmi-sent-ts>/<target-msg-id>`.
- ROOMSTATE: `ROOMSTATE/<channel>//<tag>=<value>;…`, the state tags present among
  `emote-only`, `followers-only`, `r9k`, `slow`, `subs-only`, in that order.
- Any other line of a channel (NOTICE, USERSTATE, … as raw copies):
  `<command>/<channel>/<tmi-sent-ts>/`.
- A line of no channel (PING, numerics, …), a line that is not UTF-8 or not IRC, an
  EventSub frame that is not a usable notification: none.
- EventSub `channel.chat.message` and `channel.chat.notification`: `event.message_id`,
  the same id IRC's `id` tag has for that message (`metadata.message_id` if it is empty).
- EventSub `channel.chat.message_delete`:
  `channel.chat.message_delete/<channel>/<event.message_id>`.
- EventSub `channel.chat.clear` and `channel.chat.clear_user_messages`:
  `metadata.message_id`.

Values are Twitch's, as sent (`<tmi-sent-ts>` is empty when the line has none); a raw
copy and a dead letter of an IRC line have the identity of that line. What this assumes:
Twitch sets `id` and `tmi-sent-ts` once per event, not per connection, so every
connection sees the same values. It does *not* hold for lines Twitch sends to one
connection only — the ROOMSTATE and USERSTATE that answer a JOIN, NOTICEs about a JOIN —
and a ROOMSTATE carries no time, so the same state set twice has the same identity: a
mark is therefore only ever placed on a PRIVMSG, USERNOTICE, CLEARCHAT or CLEARMSG. On
EventSub, `metadata.message_id` belongs to one subscription: another reader subscribed
on its own gets another one.
"""

MARKABLE_COMMANDS: Final = frozenset({"PRIVMSG", "USERNOTICE", "CLEARCHAT", "CLEARMSG"})
"""IRC commands whose identity names one moment of one channel on every connection."""

# The tag naming what a moderation line acts on, by command.
_TARGET_TAGS: Final = {"CLEARCHAT": "target-user-id", "CLEARMSG": "target-msg-id"}
# The tags of a room's state, in the order the identity lists them.
_ROOM_STATE_TAGS: Final = ("emote-only", "followers-only", "r9k", "slow", "subs-only")


class IdentifiableLine(Protocol):
    """What `irc_identity` reads of a line (`IrcMessage` is one)."""

    @property
    def command(self) -> str: ...

    @property
    def channel(self) -> str | None: ...

    def get_tag(self, key: str) -> str | None: ...


def irc_identity(line: IdentifiableLine) -> str | None:
    """The identity of an IRC line and of every record made from it; None for a line
    of no channel (each connection has its own)."""
    twitch_id = line.get_tag("id")
    if twitch_id:
        return twitch_id
    channel = line.channel
    if channel is None:
        return None
    command = line.command
    if command == "ROOMSTATE":
        state = ";".join(
            f"{name}={value}"
            for name in _ROOM_STATE_TAGS
            if (value := line.get_tag(name)) is not None
        )
        return f"ROOMSTATE/{channel}//{state}"
    target_tag = _TARGET_TAGS.get(command)
    target = (line.get_tag(target_tag) or "") if target_tag is not None else ""
    return f"{command}/{channel}/{line.get_tag('tmi-sent-ts') or ''}/{target}"


def last_identities(
    lines: Sequence[IdentifiableLine], channels: Collection[str] | None = None
) -> dict[str, str]:
    """Channel → identity of its last markable line (`MARKABLE_COMMANDS`) in `lines`.

    For a mark, per delivered chunk and only when one is due: walks back from the end
    and stops once every channel of `channels` is found (None: walks the whole chunk),
    so a compiled chunk builds only the lines it looks at.
    """
    found: dict[str, str] = {}
    wanted = len(channels) if channels is not None else -1
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        channel = line.channel
        if channel is None or channel in found or line.command not in MARKABLE_COMMANDS:
            continue
        if channels is not None and channel not in channels:
            continue
        identity = irc_identity(line)
        if identity is not None:
            found[channel] = identity
            if len(found) == wanted:
                break
    return found


def eventsub_identity(record: ChatMessage | ChatEventRecord) -> str:
    """The identity of a record built from an EventSub notification.

    Its `message_id` is the event's own id (chat messages, notifications) or the
    notification's (clears), except for a deletion, whose `message_id` is the
    notification's and whose event is named by the message it deletes.
    """
    if type(record) is MessageDeleted:
        return f"channel.chat.message_delete/{record.channel_id}/{record.deleted_message_id}"
    return record.message_id


# Event records made from CLEARCHAT and CLEARMSG lines, by `event_type`: their identity is
# derived from the line's tags, which the record keeps in `tags`.
_CLEAR_EVENTS: Final = {
    "ban": "CLEARCHAT",
    "timeout": "CLEARCHAT",
    "chat_cleared": "CLEARCHAT",
    "message_deleted": "CLEARMSG",
}
_RECORD_DECODER = msgspec.json.Decoder(dict[str, Any])


def record_identity(key: bytes | None, value: bytes | None) -> str | None:
    """The identity of a record read back from the chat or events topic, as
    `irc_identity` computed it from the line the record was made of: what a standby
    compares with what it held to find where Kafka's copy of a channel ends (issue 18).
    None for what carries no identity a mark could be on (ROOMSTATE and raw copies)."""
    if value is None:
        return None
    try:
        record = _RECORD_DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    event_type = record.get("event_type")
    tags = record.get("tags")
    tags = tags if isinstance(tags, dict) else {}
    if event_type is None:
        message_id = record.get("message_id")
        return message_id if isinstance(message_id, str) and message_id else None
    twitch_id = tags.get("id")
    if isinstance(twitch_id, str) and twitch_id:
        return twitch_id
    command = _CLEAR_EVENTS.get(str(event_type))
    if command is None or key is None:
        return None
    target = tags.get(_TARGET_TAGS[command], "")
    return f"{command}/{key.decode(errors='replace')}/{tags.get('tmi-sent-ts', '')}/{target}"
