"""The server side of one Twitch IRC connection, sans I/O: bytes in, events out.

`ClientSession.receive_data(bytes)` splits client lines, runs CAP negotiation, the
PASS/NICK login and PING, and returns small event objects. Everything that needs
server-wide knowledge (channel behaviours, room ids, the per-account JOIN limit) is
left to the caller as `JoinRequested` / `PartRequested` events.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from twitch_ingestion.simulator import wire
from twitch_ingestion.sources.irc.irc import IrcParseError, parse_line

__all__ = [
    "MAX_CLIENT_LINE_BYTES",
    "ChatSent",
    "ClientQuit",
    "ClientSession",
    "JoinRequested",
    "LoggedIn",
    "LoginRejected",
    "PartRequested",
    "PongReceived",
    "Reply",
    "SessionEvent",
    "SessionState",
]

# RFC 1459 allows 512 bytes; Twitch accepts longer client lines (500-character messages
# plus tags), so allow generous room before treating a line as garbage.
MAX_CLIENT_LINE_BYTES = 8192

# Twitch's read-only guest logins: `justinfan` followed by digits, any or no PASS.
_ANONYMOUS_NICK = re.compile(r"justinfan\d+")

IMPROPERLY_FORMATTED_AUTH = "Improperly formatted auth"
LOGIN_AUTHENTICATION_FAILED = "Login authentication failed"

# Commands Twitch accepts from clients without answering (IRC clients send USER).
_SILENTLY_ACCEPTED = frozenset({"USER", "PRIVMSG", "WHISPER"})


class SessionState(enum.Enum):
    AWAITING_LOGIN = "awaiting_login"
    LOGGED_IN = "logged_in"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Reply:
    """Lines to send to this client, in order (no CRLF)."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoggedIn:
    nick: str
    anonymous: bool


@dataclass(frozen=True, slots=True)
class LoginRejected:
    """The NOTICE went out in the preceding `Reply`; close the socket now."""

    nick: str
    reason: str


@dataclass(frozen=True, slots=True)
class JoinRequested:
    """Channel logins (lower case, no `#`) in the order the client listed them."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartRequested:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PongReceived:
    argument: str | None


@dataclass(frozen=True, slots=True)
class ChatSent:
    """The client sent a PRIVMSG to a channel (Twitch answers logged-in users with
    USERSTATE)."""

    channel: str


@dataclass(frozen=True, slots=True)
class ClientQuit:
    pass


SessionEvent = (
    Reply | LoggedIn | LoginRejected | JoinRequested | PartRequested | PongReceived | ChatSent
) | ClientQuit


def _channel_targets(param: str) -> tuple[str, ...]:
    """`#A,#b,c` → ("a", "b"): targets without `#` are dropped, as Twitch ignores them."""
    targets: list[str] = []
    for target in param.split(","):
        target = target.strip()
        if target.startswith("#") and len(target) > 1:
            targets.append(target[1:].lower())
    return tuple(targets)


class ClientSession:
    """Protocol state of one client connection."""

    def __init__(
        self,
        *,
        valid_tokens: frozenset[str] | None = None,
        token_check: Callable[[str], bool] | None = None,
    ) -> None:
        self._valid_tokens = (
            None if valid_tokens is None else frozenset(_strip_oauth(t) for t in valid_tokens)
        )
        self._token_check = token_check
        self._buffer = bytearray()
        self._discarding = False
        self.state = SessionState.AWAITING_LOGIN
        self.capabilities: set[str] = set()
        self.password: str | None = None
        self.nick: str | None = None
        self.anonymous = False

    @property
    def has_tags(self) -> bool:
        return "twitch.tv/tags" in self.capabilities

    @property
    def has_commands(self) -> bool:
        return "twitch.tv/commands" in self.capabilities

    def receive_data(self, data: bytes) -> list[SessionEvent]:
        """Feed bytes from the socket; returns the events of every complete line."""
        events: list[SessionEvent] = []
        self._buffer += data
        while self.state is not SessionState.CLOSED:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > MAX_CLIENT_LINE_BYTES:
                    # Drop the runaway line up to its eventual newline.
                    self._buffer.clear()
                    self._discarding = True
                break
            raw = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if self._discarding:
                self._discarding = False
                continue
            events.extend(self.receive_line(raw.rstrip(b"\r").decode("utf-8", "replace")))
        return events

    def receive_line(self, line: str) -> list[SessionEvent]:
        """Handle one client line (without CRLF)."""
        if self.state is SessionState.CLOSED or not line.strip():
            return []
        try:
            message = parse_line(line)
        except IrcParseError:
            return []
        command, params = message.command, message.params
        if command == "CAP":
            return self._on_cap(params)
        if command == "PING":
            return [Reply((wire.pong_line(params[-1] if params else None),))]
        if command == "PONG":
            return [PongReceived(params[-1] if params else None)]
        if command == "QUIT":
            self.state = SessionState.CLOSED
            return [ClientQuit()]
        if self.state is SessionState.AWAITING_LOGIN:
            if command == "PASS":
                self.password = params[0] if params else ""
                return []
            if command == "NICK" and params:
                return self._on_nick(params[0])
            # Twitch says nothing to unregistered clients about anything else.
            return []
        return self._on_logged_in_command(command, params)

    def _on_cap(self, params: list[str]) -> list[SessionEvent]:
        if not params:
            return []
        subcommand = params[0].upper()
        if subcommand == "LS":
            return [Reply((wire.cap_reply_line("LS", " ".join(sorted(wire.KNOWN_CAPABILITIES))),))]
        if subcommand != "REQ" or len(params) < 2:
            return []  # CAP END and friends need no answer from Twitch.
        requested = params[1].split()
        # IRCv3: a request is acknowledged or refused as a whole.
        if requested and all(cap in wire.KNOWN_CAPABILITIES for cap in requested):
            self.capabilities.update(requested)
            return [Reply((wire.cap_reply_line("ACK", " ".join(requested)),))]
        return [Reply((wire.cap_reply_line("NAK", " ".join(requested)),))]

    def _on_nick(self, raw_nick: str) -> list[SessionEvent]:
        nick = raw_nick.lower()
        self.nick = nick
        if _ANONYMOUS_NICK.fullmatch(nick):
            self.anonymous = True
        elif self.password is None or not self.password.startswith("oauth:"):
            return self._reject(nick, IMPROPERLY_FORMATTED_AUTH)
        elif (
            self._valid_tokens is not None and _strip_oauth(self.password) not in self._valid_tokens
        ) or (self._token_check is not None and not self._token_check(_strip_oauth(self.password))):
            return self._reject(nick, LOGIN_AUTHENTICATION_FAILED)
        self.state = SessionState.LOGGED_IN
        lines = wire.welcome_lines(nick)
        if not self.anonymous:
            lines.append(wire.global_user_state_line(nick, wire.user_id_for(nick)))
        return [Reply(tuple(lines)), LoggedIn(nick, self.anonymous)]

    def _reject(self, nick: str, reason: str) -> list[SessionEvent]:
        self.state = SessionState.CLOSED
        return [Reply((wire.notice_line("*", reason),)), LoginRejected(nick, reason)]

    def _on_logged_in_command(self, command: str, params: list[str]) -> list[SessionEvent]:
        if command == "JOIN":
            channels = _channel_targets(params[0]) if params else ()
            return [JoinRequested(channels)] if channels else []
        if command == "PART":
            channels = _channel_targets(params[0]) if params else ()
            return [PartRequested(channels)] if channels else []
        if command in ("PASS", "NICK"):
            return []  # Twitch ignores a second login attempt on the same socket.
        if command == "PRIVMSG":
            targets = _channel_targets(params[0]) if params else ()
            return [ChatSent(targets[0])] if targets and not self.anonymous else []
        if command in _SILENTLY_ACCEPTED:
            return []
        assert self.nick is not None
        return [Reply((wire.unknown_command_line(self.nick, command),))]


def _strip_oauth(token: str) -> str:
    return token.removeprefix("oauth:")
