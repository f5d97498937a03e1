"""Sans-I/O IRCv3 line parsing: one server line in, one `IrcMessage` out.

No sockets, no logging: the transport feeds lines and decides what to do with
`IrcParseError`. The parser is on the hot path (every chat line passes through it), so
it uses `str.split`/`str.find` rather than a regex, and it does not build the tag dict
until someone asks for it: the PRIVMSG parser reads the tags it needs straight into a
typed struct (`decode_tags`), cheaper than a dict of all ~15 tags, and `get_tag` reads a
single tag with a string search.

Tag grammar and escaping follow https://ircv3.net/specs/extensions/message-tags:
`\\:` → `;`, `\\s` → space, `\\\\` → `\\`, `\\r` → CR, `\\n` → LF; any other escaped
character stands for itself (the backslash is dropped); a lone trailing backslash is
dropped; `key` and `key=` both mean the empty value; when a key repeats, the last value
wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import msgspec

__all__ = [
    "TAGS_JSON_ERRORS",
    "IrcMessage",
    "IrcParseError",
    "decode_tags",
    "escape_tag_value",
    "format_tags",
    "parse_line",
    "parse_tags",
    "unescape_tag_value",
]

_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}

# Commands Twitch sends, already in canonical (upper) case: a set lookup replaces the
# validation and `str.upper()` for them.
_KNOWN_COMMANDS = frozenset(
    {
        "PRIVMSG",
        "USERNOTICE",
        "CLEARCHAT",
        "CLEARMSG",
        "ROOMSTATE",
        "USERSTATE",
        "GLOBALUSERSTATE",
        "NOTICE",
        "PING",
        "PONG",
        "RECONNECT",
        "JOIN",
        "PART",
        "CAP",
        "WHISPER",
        "HOSTTARGET",
    }
)

_StructT = TypeVar("_StructT", bound=msgspec.Struct)

# Tags are rewritten into a JSON object and decoded by msgspec (C) when that is exact:
# `k=v;k2=v2` → `{"k":"v","k2":"v2"}`. It is exact only when no value holds a `"` or a
# backslash (JSON would read them as syntax or escapes); every other deviation — a
# valueless tag, an `=` inside a value, an empty item, a control character — makes the
# JSON malformed, and the spec-exact Python loop takes over. Twitch sends neither `"`
# nor `\` in ~99 % of chat lines.
_TAGS_DICT_DECODER = msgspec.json.Decoder(dict[str, str])
TAGS_JSON_ERRORS = (msgspec.DecodeError, UnicodeEncodeError)
"""What a decoder raises when the JSON rewrite of a tag section is not exact."""


class IrcParseError(ValueError):
    """A line that is not a valid IRC message; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, line: str) -> None:
        super().__init__(f"{reason}: {line[:200]!r}")
        self.reason = reason
        self.line = line


class IrcMessage(msgspec.Struct, eq=False, gc=False):
    """One parsed IRC line; `params` keeps the trailing parameter as its last item.

    `tags` are unescaped and parsed on first access (then cached in `parsed_tags`), so
    code that never looks at them pays nothing; `get_tag` reads one tag without parsing
    them all; `raw_tags` is the escaped tag section as received (without the `@`), or
    None when the line had none or the message was built from a ready tag dict.

    A msgspec Struct rather than a plain class because it is created for every line and
    Struct construction runs in C (~0.15 µs instead of ~0.35 µs here). Positional
    construction keeps the original order: `IrcMessage(raw, tags, prefix, command,
    params)`. It never takes part in a reference cycle, hence `gc=False`; equality is
    identity, as for the plain class it replaced.
    """

    raw: str
    parsed_tags: dict[str, str] | None
    """The tag dict once parsed (or as given), else None; read `tags` instead."""
    prefix: str | None
    command: str
    params: list[str]
    raw_tags: str | None = None

    @property
    def tags(self) -> dict[str, str]:
        """Tag key → unescaped value (empty for an untagged line)."""
        tags = self.parsed_tags
        if tags is None:
            tags = self.parsed_tags = parse_tags(self.raw_tags) if self.raw_tags else {}
        return tags

    def get_tag(self, key: str) -> str | None:
        """One tag's unescaped value, or None when absent, without parsing every tag.

        For code that needs a single tag of every line (e.g. `id` for de-duplication):
        a string search instead of the full parse that `tags` does.
        """
        tags = self.parsed_tags
        raw = self.raw_tags
        if tags is not None or not raw:
            return (tags or {}).get(key)
        needle = key + "="
        start = raw.rfind(";" + needle) + 1
        if not start and not raw.startswith(needle):
            return self.tags.get(key)  # absent, valueless or unusual: let the parser decide
        start += len(needle)
        end = raw.find(";", start)
        if end < 0:
            end = len(raw)
        elif raw.find(";" + key + ";", end) >= 0 or raw.endswith(";" + key):
            return self.tags.get(key)  # a later valueless repeat wins; rare, be exact
        value = raw[start:end]
        return unescape_tag_value(value) if "\\" in value else value

    @property
    def nick(self) -> str | None:
        """The sender's nick (`nick!user@host` → `nick`), or None for server lines."""
        if self.prefix is None:
            return None
        return self.prefix.partition("!")[0]

    @property
    def channel(self) -> str | None:
        """The channel login without `#`, lower case, when the first parameter is a channel."""
        if self.params and self.params[0].startswith("#"):
            return self.params[0][1:].lower()
        return None

    @property
    def trailing(self) -> str | None:
        """The last parameter (the chat text for PRIVMSG), or None when there is none."""
        return self.params[-1] if self.params else None

    def __repr__(self) -> str:
        return (
            f"IrcMessage(command={self.command!r}, prefix={self.prefix!r}, "
            f"params={self.params!r}, raw_tags={self.raw_tags!r})"
        )


def unescape_tag_value(value: str) -> str:
    """Undo IRCv3 tag escaping (`\\:`, `\\s`, `\\\\`, `\\r`, `\\n`; others drop the `\\`)."""
    if "\\" not in value:
        return value
    if "\\\\" not in value:
        # Without an escaped backslash the escapes cannot overlap, so four C-level
        # replaces are exact; a backslash left after them is an unknown escape or a
        # trailing one, which the general loop below handles.
        fast = (
            value.replace("\\s", " ").replace("\\:", ";").replace("\\n", "\n").replace("\\r", "\r")
        )
        if "\\" not in fast:
            return fast
    out: list[str] = []
    start = 0
    end = len(value)
    while True:
        slash = value.find("\\", start)
        if slash < 0:
            out.append(value[start:])
            break
        out.append(value[start:slash])
        if slash + 1 == end:  # a lone trailing backslash is dropped
            break
        escaped = value[slash + 1]
        out.append(_TAG_ESCAPES.get(escaped, escaped))
        start = slash + 2
    return "".join(out)


def escape_tag_value(value: str) -> str:
    """Apply IRCv3 tag escaping, the inverse of `unescape_tag_value`."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    return value.replace(";", "\\:").replace(" ", "\\s").replace("\r", "\\r").replace("\n", "\\n")


def format_tags(tags: Mapping[str, str]) -> str:
    """Serialise tags as they appear on the wire, without the leading `@`."""
    return ";".join(f"{key}={escape_tag_value(value)}" for key, value in tags.items())


def _parse_tags_exact(raw_tags: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in raw_tags.split(";"):
        key, _, value = item.partition("=")
        if not key:  # an empty item (`;;`, trailing `;`) or a value without key
            continue
        # A repeated key keeps the last value (IRCv3: "the last one wins").
        tags[key] = unescape_tag_value(value) if "\\" in value else value
    return tags


def parse_tags(raw_tags: str) -> dict[str, str]:
    """Parse an escaped tag section (without the `@`) into key → unescaped value."""
    if '"' not in raw_tags and "\\" not in raw_tags:
        try:
            tags = _TAGS_DICT_DECODER.decode(
                '{"' + raw_tags.replace("=", '":"').replace(";", '","') + '"}'
            )
        except TAGS_JSON_ERRORS:
            pass
        else:
            if "" in tags:  # `=value` has no key; the exact parser ignores it too
                del tags[""]
            return tags
    return _parse_tags_exact(raw_tags)


def decode_tags(
    message: IrcMessage, decoder: msgspec.json.Decoder[_StructT], struct_type: type[_StructT]
) -> _StructT:
    """Read a message's tags into `struct_type` (fields renamed to the tag keys).

    Only the tags the struct declares are materialised; unknown tags are ignored. Uses
    the same JSON rewrite as `parse_tags` when it is exact, else converts the parsed
    (unescaped) tag dict, so the result is the same either way. `decoder` must be a
    `msgspec.json.Decoder(struct_type)` kept at module level by the caller.
    """
    raw_tags = message.raw_tags
    if message.parsed_tags is None and raw_tags and '"' not in raw_tags and "\\" not in raw_tags:
        try:
            return decoder.decode('{"' + raw_tags.replace("=", '":"').replace(";", '","') + '"}')
        except TAGS_JSON_ERRORS:
            pass
    return msgspec.convert(message.tags, struct_type)


def parse_line(line: str) -> IrcMessage:
    """Parse one IRC line (without CR/LF). Raises `IrcParseError` when it is not IRC.

    Runs of spaces between parts are tolerated; the trailing parameter is kept verbatim.
    """
    if line[:1] == "@":
        # Fast path for the shape of nearly every Twitch line, `@tags :prefix CMD #chan
        # :text`: one C-level split instead of a dozen finds and slices (2.1 → 1.5 µs a
        # line here). Anything else (no trailing, more params, runs of spaces, a command
        # that needs checking) takes the general parser, which gives the same result.
        parts = line.split(" ", 4)
        if (
            len(parts) == 5
            and parts[2] in _KNOWN_COMMANDS
            and parts[1][:1] == ":"
            and parts[4][:1] == ":"
            and parts[3]
            and parts[3][:1] != ":"
            and len(parts[1]) > 1
        ):
            tag_section = parts[0][1:]
            return IrcMessage(
                line,
                None if tag_section else {},
                parts[1][1:],
                parts[2],
                [parts[3], parts[4][1:]],
                tag_section or None,
            )
    return _parse_line_general(line)


def _parse_line_general(line: str) -> IrcMessage:
    # Works with offsets into `line` rather than slicing off each part, because every
    # slice of the rest of the line would copy the chat text again.
    raw_tags: str | None = None
    position = 0
    if line[:1] == "@":
        position = line.find(" ")
        if position < 0:
            raise IrcParseError("tags-without-command", line)
        raw_tags = line[1:position] or None
        position += 1
        if line[position : position + 1] == " ":
            while line[position : position + 1] == " ":
                position += 1
    prefix: str | None = None
    if line[position : position + 1] == ":":
        end = line.find(" ", position)
        if end < 0:
            raise IrcParseError("prefix-without-command", line)
        prefix = line[position + 1 : end]
        if not prefix:
            raise IrcParseError("empty-prefix", line)
        position = end + 1
        if line[position : position + 1] == " ":
            while line[position : position + 1] == " ":
                position += 1
    trailing_at = line.find(" :", position)
    if trailing_at < 0:
        params = line[position:].split(" ")
    else:
        params = line[position:trailing_at].split(" ")
    if "" in params:  # runs of spaces, or a space before the end of the line
        params = [param for param in params if param]
        if not params:
            raise IrcParseError("missing-command", line)
    command = params[0]
    if command not in _KNOWN_COMMANDS:
        if not command.isascii() or not (
            command.isalpha() or (len(command) == 3 and command.isdigit())
        ):
            raise IrcParseError("invalid-command", line)
        command = command.upper()
    del params[0]
    if trailing_at >= 0:
        params.append(line[trailing_at + 2 :])
    return IrcMessage(line, None if raw_tags else {}, prefix, command, params, raw_tags)
