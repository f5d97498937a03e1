"""Sans-I/O IRCv3 line parsing: one server line in, one `IrcMessage` out.

No sockets, no logging: the transport feeds lines and decides what to do with
`IrcParseError`. The parser is on the hot path (every chat line passes through it), so
it splits with `str.split`/`str.partition` rather than a regex and unescapes a tag
value only when it contains a backslash.
"""

from __future__ import annotations

__all__ = ["IrcMessage", "IrcParseError", "parse_line", "unescape_tag_value"]

# IRCv3 message-tags escapes (https://ircv3.net/specs/extensions/message-tags):
# an unknown escape drops the backslash, a lone trailing backslash is dropped.
_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class IrcParseError(ValueError):
    """A line that is not a valid IRC message; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, line: str) -> None:
        super().__init__(f"{reason}: {line[:200]!r}")
        self.reason = reason
        self.line = line


class IrcMessage:
    """One parsed IRC line. Tag values are already unescaped; `params` keeps the trailing one."""

    __slots__ = ("command", "params", "prefix", "raw", "tags")

    def __init__(
        self,
        raw: str,
        tags: dict[str, str],
        prefix: str | None,
        command: str,
        params: list[str],
    ) -> None:
        self.raw = raw
        self.tags = tags
        self.prefix = prefix
        self.command = command
        self.params = params

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
            f"params={self.params!r}, tags={self.tags!r})"
        )


def unescape_tag_value(value: str) -> str:
    """Undo IRCv3 tag escaping (`\\s`, `\\:`, `\\\\`, `\\r`, `\\n`)."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "\\":
            i += 1
            if i < n:
                nxt = value[i]
                out.append(_TAG_ESCAPES.get(nxt, nxt))
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _parse_tags(raw_tags: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in raw_tags.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        # A repeated key keeps the last value (IRCv3: "the last one wins").
        tags[key] = unescape_tag_value(value) if "\\" in value else value
    return tags


def parse_line(line: str) -> IrcMessage:
    """Parse one IRC line (without CR/LF). Raises `IrcParseError` when it is not IRC."""
    rest = line
    tags: dict[str, str]
    if rest.startswith("@"):
        raw_tags, sep, rest = rest[1:].partition(" ")
        if not sep:
            raise IrcParseError("tags-without-command", line)
        tags = _parse_tags(raw_tags)
        rest = rest.lstrip(" ")
    else:
        tags = {}
    prefix: str | None = None
    if rest.startswith(":"):
        prefix, sep, rest = rest[1:].partition(" ")
        if not sep or not prefix:
            raise IrcParseError("prefix-without-command", line)
        rest = rest.lstrip(" ")
    head, sep, trailing = rest.partition(" :")
    parts = head.split()
    if not parts:
        raise IrcParseError("missing-command", line)
    command = parts[0]
    if not (command.isalpha() or (len(command) == 3 and command.isdigit())):
        raise IrcParseError("invalid-command", line)
    params = parts[1:]
    if sep:
        params.append(trailing)
    return IrcMessage(line, tags, prefix, command.upper(), params)
