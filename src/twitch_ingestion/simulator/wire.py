"""Server-to-client Twitch IRC lines, byte-compatible with what tmi.twitch.tv sends.

Pure functions: no sockets, no state. Lines are returned without the trailing CRLF; the
connection adds it. Formats follow https://dev.twitch.tv/docs/chat/irc/ and the real
lines in `shared/twitch-corpus/raw-lines.txt` (e.g. lines 520-537 for the welcome and
NAMES numerics).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = [
    "COMMANDS_CAPABILITY_COMMANDS",
    "KNOWN_CAPABILITIES",
    "PING_LINE",
    "RECONNECT_LINE",
    "SERVER_NAME",
    "adapt_line_for_caps",
    "cap_reply_line",
    "command_of",
    "derived_uuid",
    "escape_tag_value",
    "format_tags",
    "global_user_state_line",
    "join_reply_lines",
    "notice_line",
    "part_line",
    "pong_line",
    "room_id_for",
    "unknown_command_line",
    "user_id_for",
    "user_prefix",
    "user_state_line",
    "welcome_lines",
]

SERVER_NAME = "tmi.twitch.tv"
PING_LINE = f"PING :{SERVER_NAME}"
RECONNECT_LINE = f":{SERVER_NAME} RECONNECT"

KNOWN_CAPABILITIES = frozenset({"twitch.tv/tags", "twitch.tv/commands", "twitch.tv/membership"})

# Sent only to connections that requested twitch.tv/commands
# (https://dev.twitch.tv/docs/chat/irc/#twitch-specific-irc-messages). NOTICE is left out
# on purpose: login failures arrive before any CAP and clients rely on channel NOTICEs.
COMMANDS_CAPABILITY_COMMANDS = frozenset(
    {
        "CLEARCHAT",
        "CLEARMSG",
        "GLOBALUSERSTATE",
        "HOSTTARGET",
        "RECONNECT",
        "ROOMSTATE",
        "USERNOTICE",
        "USERSTATE",
        "WHISPER",
    }
)

# IRCv3 message-tags escaping (https://ircv3.net/specs/extensions/message-tags).
_TAG_ESCAPES = str.maketrans({"\\": "\\\\", ";": "\\:", " ": "\\s", "\r": "\\r", "\n": "\\n"})

# Twitch ids for users and rooms are decimal numbers; real ones currently span 1 to
# ~1.2 billion. Derived ids stay inside that range so they look like the real thing.
_ID_FLOOR = 10_000_000
_ID_SPAN = 990_000_000


def escape_tag_value(value: str) -> str:
    """Escape a tag value for the wire (`;` → `\\:`, space → `\\s`, …)."""
    return value.translate(_TAG_ESCAPES)


def format_tags(tags: Iterable[tuple[str, str]]) -> str:
    """`@k=v;k2=v2` with values escaped; the caller keeps Twitch's (alphabetical) order."""
    return "@" + ";".join(f"{key}={escape_tag_value(value)}" for key, value in tags)


def _stable_number(kind: str, name: str) -> int:
    digest = hashlib.blake2b(f"{kind}:{name}".encode(), digest_size=8).digest()
    return _ID_FLOOR + int.from_bytes(digest, "big") % _ID_SPAN


def room_id_for(channel: str) -> str:
    """A stable, realistic room-id for a channel login (same name → same id, every run)."""
    return str(_stable_number("room", channel.lower()))


def user_id_for(login: str) -> str:
    """A stable, realistic user-id for a login."""
    return str(_stable_number("user", login.lower()))


def derived_uuid(*parts: object) -> str:
    """A version-4-shaped UUID derived from `parts`: same parts → same id."""
    digest = bytearray(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest())
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def user_prefix(nick: str) -> str:
    return f"{nick}!{nick}@{nick}.{SERVER_NAME}"


def command_of(line: str) -> str:
    """The command word of a wire line (tags and prefix skipped)."""
    start = 0
    if line.startswith("@"):
        start = line.index(" ") + 1
    if line.startswith(":", start):
        start = line.index(" ", start) + 1
    end = line.find(" ", start)
    return (line[start:] if end < 0 else line[start:end]).rstrip("\r\n")


def adapt_line_for_caps(line: str, command: str, *, tags: bool, commands: bool) -> str | None:
    """What a connection with these capabilities receives instead of `line` (None: nothing).

    Twitch strips tags for clients without twitch.tv/tags and withholds its own commands
    from clients without twitch.tv/commands.
    """
    if not commands and command in COMMANDS_CAPABILITY_COMMANDS:
        return None
    if not tags and line.startswith("@"):
        return line[line.index(" ") + 1 :]
    return line


def cap_reply_line(subcommand: str, capabilities: str) -> str:
    """`:tmi.twitch.tv CAP * ACK :…` (Twitch always uses `*`, even after login)."""
    return f":{SERVER_NAME} CAP * {subcommand} :{capabilities}"


def welcome_lines(nick: str) -> list[str]:
    """The numerics Twitch sends after a successful PASS/NICK, verbatim."""
    return [
        f":{SERVER_NAME} 001 {nick} :Welcome, GLHF!",
        f":{SERVER_NAME} 002 {nick} :Your host is {SERVER_NAME}",
        f":{SERVER_NAME} 003 {nick} :This server is rather new",
        f":{SERVER_NAME} 004 {nick} :-",
        f":{SERVER_NAME} 375 {nick} :-",
        f":{SERVER_NAME} 372 {nick} :You are in a maze of twisty passages, all alike.",
        f":{SERVER_NAME} 376 {nick} :>",
    ]


def global_user_state_line(nick: str, user_id: str) -> str:
    tags = format_tags(
        [
            ("badge-info", ""),
            ("badges", ""),
            ("color", ""),
            ("display-name", nick),
            ("emote-sets", "0"),
            ("user-id", user_id),
            ("user-type", ""),
        ]
    )
    return f"{tags} :{SERVER_NAME} GLOBALUSERSTATE"


def user_state_line(nick: str, channel: str) -> str:
    tags = format_tags(
        [
            ("badge-info", ""),
            ("badges", ""),
            ("color", ""),
            ("display-name", nick),
            ("emote-sets", "0"),
            ("mod", "0"),
            ("subscriber", "0"),
            ("user-type", ""),
        ]
    )
    return f"{tags} :{SERVER_NAME} USERSTATE #{channel}"


def room_state_line(channel: str, room_id: str) -> str:
    return (
        f"@emote-only=0;followers-only=-1;r9k=0;room-id={room_id};slow=0;subs-only=0"
        f" :{SERVER_NAME} ROOMSTATE #{channel}"
    )


def join_reply_lines(nick: str, channel: str, room_id: str, *, anonymous: bool) -> list[str]:
    """JOIN echo, NAMES (353/366), USERSTATE (logged-in users only) and ROOMSTATE."""
    lines = [
        f":{user_prefix(nick)} JOIN #{channel}",
        f":{nick}.{SERVER_NAME} 353 {nick} = #{channel} :{nick}",
        f":{nick}.{SERVER_NAME} 366 {nick} #{channel} :End of /NAMES list",
    ]
    if not anonymous:
        lines.append(user_state_line(nick, channel))
    lines.append(room_state_line(channel, room_id))
    return lines


def part_line(nick: str, channel: str) -> str:
    return f":{user_prefix(nick)} PART #{channel}"


def notice_line(target: str, text: str, msg_id: str | None = None) -> str:
    """`[@msg-id=…] :tmi.twitch.tv NOTICE <target> :<text>`; target is `*` or `#channel`."""
    tags = f"@msg-id={msg_id} " if msg_id else ""
    return f"{tags}:{SERVER_NAME} NOTICE {target} :{text}"


def pong_line(argument: str | None) -> str:
    """Twitch's answer to a client PING: `:tmi.twitch.tv PONG tmi.twitch.tv :<argument>`."""
    if argument is None:
        return f":{SERVER_NAME} PONG {SERVER_NAME}"
    return f":{SERVER_NAME} PONG {SERVER_NAME} :{argument}"


def unknown_command_line(nick: str, command: str) -> str:
    return f":{SERVER_NAME} 421 {nick} {command} :Unknown command"
