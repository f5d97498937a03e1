"""Sans-I/O Twitch IRC session: bytes in, events out, bytes to send.

`TwitchSession` owns every piece of protocol state of one Twitch IRC connection — login
(CAP/PASS/NICK → `001`), JOIN bookkeeping, room ids, PING/PONG, RECONNECT — and no
socket, no task and no clock: the caller passes `now` (any monotonic seconds) in. That
makes every protocol edge case a unit test with bytes in and events out.

Two ways bytes come out, on purpose:

* a command the caller asks for (`initiate`, `join`, `part`, `ping`) is *returned* by that
  method, so the caller decides when (and whether) to write it — the JOIN rate limiter
  sits between `join()` and the socket;
* bytes the protocol owes the server on its own (the `PONG` that answers a server `PING`,
  the keepalive `PING` that `poll` decides to send) are queued and drained with
  `data_to_send()` after every `receive_data`/`poll` call.

Hot path: Twitch chat arrives at tens of thousands of lines per second and ~95% of them are
PRIVMSG. `receive_data` decodes the whole chunk in one call (falling back per line only on
invalid UTF-8), parses each line once, and hands every chat line to the caller in a single
`ChatLines` event per chunk, so the per-line overhead is one `parse_line` call, one string
compare and one `list.append`. With a compiled `line_reader` (`compiled.py`) the split,
decode and parse of a chunk is one call, and Python touches only the control lines.

One module of a little over 600 lines on purpose: the states, their transition table
(`SESSION_TRANSITIONS`), the events and the one class that moves between them are read
together; split, each half would only make sense beside the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from twitch_ingestion.sources.irc.compiled import LineReader, ParsedChunk
from twitch_ingestion.sources.irc.irc import IrcMessage, IrcParseError, parse_line

__all__ = [
    "AUTH_FAILURE_NOTICES",
    "JOIN_FAILURE_MSG_IDS",
    "MAX_LINE_BYTES",
    "SESSION_TRANSITIONS",
    "AuthenticationFailed",
    "ChannelJoined",
    "ChannelParted",
    "ChatLines",
    "ConnectionStatus",
    "Event",
    "JoinFailed",
    "JoinTimedOut",
    "KeepaliveTimedOut",
    "LoggedIn",
    "MalformedLine",
    "PongReceived",
    "ReconnectRequested",
    "RoomIdLearned",
    "SessionInput",
    "SessionState",
    "SessionStateError",
    "TwitchSession",
]

# IRCv3 allows 8191 bytes of tags plus 512 for the rest; Twitch's reply-parent tags can
# push a line past that. A "line" bigger than this is a broken or hostile peer, and
# keeping it would let one missing newline grow the buffer without bound.
MAX_LINE_BYTES = 64 * 1024

# The NOTICE texts Twitch sends (to target `*`) right before closing a connection whose
# PASS/NICK it rejected. Matched case-insensitively on the prefix.
AUTH_FAILURE_NOTICES = (
    "login authentication failed",
    "improperly formatted auth",
    "login unsuccessful",
)

# NOTICE msg-ids that mean "you are not (or no longer) in this channel".
JOIN_FAILURE_MSG_IDS = frozenset(
    {"msg_channel_suspended", "msg_banned", "tos_ban", "msg_channel_blocked"}
)

# The capabilities we need: tags (ids, room ids, badges…) and commands (USERNOTICE,
# CLEARCHAT, ROOMSTATE, RECONNECT…). Not twitch.tv/membership: it only adds the JOIN/PART
# of other users, which is noise for ingestion and disabled by Twitch above 1000 viewers.
_CAPABILITIES = "twitch.tv/tags twitch.tv/commands"

# Twitch ignores the password of the anonymous `justinfanNNN` logins; this one is what
# Twitch's own web client historically sent, so every server and simulator accepts it.
_ANONYMOUS_PASSWORD = "SCHMOOPIIE"

# IRC's classic limit is 512 bytes per line including CRLF (RFC 1459 §2.3); a batched
# `JOIN #a,#b,…` is split to stay under it.
_MAX_COMMAND_BYTES = 510

_DECODE_ERROR_REASON = "invalid-utf8"
_TOO_LONG_REASON = "line-too-long"


class SessionState(StrEnum):
    """Protocol state of one session; `SESSION_TRANSITIONS` says how it may change."""

    CONNECTING = "connecting"  # nothing sent yet
    AUTHENTICATING = "authenticating"  # CAP/PASS/NICK sent, waiting for 001
    READY = "ready"  # logged in: JOINs are accepted
    FAILED = "failed"  # Twitch rejected the credentials; the server will close


class SessionInput(StrEnum):
    """What may move a session: a call of its caller (↑) or a line from Twitch (↓)."""

    INITIATE = "initiate"  # ↑ initiate(): CAP REQ, PASS, NICK
    WELCOME = "welcome"  # ↓ numeric 001
    LOGIN_REJECTED = "login_rejected"  # ↓ NOTICE * :Login authentication failed (…)
    JOIN = "join"  # ↑ join()
    PART = "part"  # ↑ part()


_S = SessionState
_I = SessionInput
SESSION_TRANSITIONS: Mapping[SessionState, Mapping[SessionInput, SessionState]] = {
    # Bytes can reach a session that never logged in (parsers, benchmarks, the
    # differential tests), so what Twitch sends is listed for every state: a line
    # from the server must never raise. A call of the caller missing here does.
    _S.CONNECTING: {
        _I.INITIATE: _S.AUTHENTICATING,
        _I.WELCOME: _S.CONNECTING,  # nothing was asked: not a login
        _I.LOGIN_REJECTED: _S.FAILED,
    },
    _S.AUTHENTICATING: {
        _I.WELCOME: _S.READY,
        _I.LOGIN_REJECTED: _S.FAILED,
    },
    _S.READY: {
        _I.WELCOME: _S.READY,  # a repeated 001 changes nothing
        _I.LOGIN_REJECTED: _S.FAILED,
        _I.JOIN: _S.READY,
        _I.PART: _S.READY,
    },
    _S.FAILED: {
        _I.WELCOME: _S.FAILED,
        _I.LOGIN_REJECTED: _S.FAILED,
        # The server is closing the socket: what we write goes nowhere, and refusing
        # it would turn a Twitch notice into a crash of the pool that wrote it.
        _I.JOIN: _S.FAILED,
        _I.PART: _S.FAILED,
    },
}
"""Every state and every input allowed in it, with the state it leads to (h11 style).
`TwitchSession` changes `state` only through this table; any other pair raises
`SessionStateError`."""


class SessionStateError(RuntimeError):
    """The caller asked for something the session's state does not allow (a bug)."""

    def __init__(self, state: SessionState, given: SessionInput) -> None:
        self.state = state
        self.given = given
        super().__init__(f"{given.value} is not allowed in session state {state.value}")


class ConnectionStatus(StrEnum):
    """What a connection (or a pool slot) is doing, as shown by status() and metrics."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"


# --- Events ------------------------------------------------------------------------
# Small frozen, slotted classes: created once per protocol event, never per chat line
# (chat lines travel inside one `ChatLines` per chunk).


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """Twitch accepted the login (numeric 001)."""


@dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """Twitch rejected PASS/NICK; it closes the connection right after. Retrying won't help."""

    notice_text: str


@dataclass(frozen=True, slots=True)
class ChannelJoined:
    """The JOIN echo for our own nick: chat of `channel` flows from here on."""

    channel: str


@dataclass(frozen=True, slots=True)
class ChannelParted:
    """A PART echo for our own nick (ours, or the server removing us)."""

    channel: str


@dataclass(frozen=True, slots=True)
class JoinFailed:
    """Twitch refused `channel` (suspended, banned…); `reason_msg_id` is its NOTICE msg-id."""

    channel: str
    reason_msg_id: str
    text: str


@dataclass(frozen=True, slots=True)
class JoinTimedOut:
    """No JOIN echo for `channel` within the join timeout (Twitch often stays silent)."""

    channel: str
    waited_s: float


@dataclass(frozen=True, slots=True)
class ReconnectRequested:
    """Server RECONNECT: Twitch will close this connection soon; open a new one first."""


@dataclass(frozen=True, slots=True)
class RoomIdLearned:
    """ROOMSTATE told us (or changed) the numeric id of `channel`."""

    channel: str
    room_id: str


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The server answered a PING."""

    text: str


@dataclass(frozen=True, slots=True)
class KeepaliveTimedOut:
    """Nothing arrived for `silent_for_s`, not even the PONG to our PING: a dead socket."""

    silent_for_s: float


@dataclass(frozen=True, slots=True)
class MalformedLine:
    """A line that is not UTF-8 or not IRC; `raw` is its exact bytes without the line end."""

    raw: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class ChatLines:
    """Every chat-level line of one `receive_data` chunk, in wire order.

    Everything except PING/PONG/CAP/numerics/RECONNECT/login NOTICEs and our own
    JOIN/PART: PRIVMSG, USERNOTICE, CLEARCHAT, CLEARMSG, ROOMSTATE, USERSTATE, NOTICE,
    WHISPER, HOSTTARGET, GLOBALUSERSTATE… The list is owned by the receiver.
    """

    messages: Sequence[IrcMessage]
    """A list, or with the compiled reader a `compiled.ParsedChunk` (a read-only
    sequence whose chat lines are built only if someone indexes or iterates it)."""


Event = (
    LoggedIn
    | AuthenticationFailed
    | ChannelJoined
    | ChannelParted
    | JoinFailed
    | JoinTimedOut
    | ReconnectRequested
    | RoomIdLearned
    | PongReceived
    | KeepaliveTimedOut
    | MalformedLine
    | ChatLines
)


class TwitchSession:
    """Protocol state of one Twitch IRC connection; see the module docstring.

    `receive_data` returns the control events of a chunk in wire order followed by at
    most one `ChatLines` (so room ids and joins are known before the chat is handled).
    `state` changes only along `SESSION_TRANSITIONS`.
    """

    __slots__ = (
        "_discarding",
        "_join_timeout_s",
        "_last_received_at",
        "_out",
        "_parted_in_flight",
        "_partial",
        "_pending_joins",
        "_ping_counter",
        "_ping_interval_s",
        "_ping_sent_at",
        "_pong_timeout_s",
        "_token",
        "bytes_received",
        "joined_channels",
        "line_reader",
        "lines_received",
        "login",
        "room_ids",
        "state",
    )

    def __init__(
        self,
        login: str,
        token: str | None,
        *,
        ping_interval_s: float = 30.0,
        pong_timeout_s: float = 5.0,
        join_timeout_s: float = 10.0,
    ) -> None:
        self.login = login.lower()
        self.line_reader: LineReader | None = None
        """The compiled split + parse (`compiled.py`, HOT_PATH); None = pure Python."""
        # Kept only to build PASS in initiate(); __repr__ and __slots__ keep it out of
        # logs and tracebacks.
        self._token = token
        self._ping_interval_s = ping_interval_s
        self._pong_timeout_s = pong_timeout_s
        self._join_timeout_s = join_timeout_s
        self.state = SessionState.CONNECTING
        self.joined_channels: set[str] = set()
        self.room_ids: dict[str, str] = {}
        self.lines_received = 0
        self.bytes_received = 0
        self._pending_joins: dict[str, float] = {}
        # Parted before their JOIN echo came: that echo is not a join (our PART follows).
        self._parted_in_flight: set[str] = set()
        self._partial = b""
        self._discarding = False
        self._out = bytearray()
        self._last_received_at: float | None = None
        self._ping_sent_at: float | None = None
        self._ping_counter = 0

    def __repr__(self) -> str:
        return (
            f"TwitchSession(login={self.login!r}, state={self.state.value}, "
            f"joined={len(self.joined_channels)})"
        )

    # --- commands the caller asks for ----------------------------------------------

    def initiate(self, now: float | None = None) -> bytes:
        """The login sequence: CAP REQ, PASS, NICK. Starts the AUTHENTICATING state."""
        self._advance(SessionInput.INITIATE)
        if now is not None:
            self._last_received_at = now
        password = self._token if self._token is not None else _ANONYMOUS_PASSWORD
        return (f"CAP REQ :{_CAPABILITIES}\r\nPASS {password}\r\nNICK {self.login}\r\n").encode()

    def join(self, channels: Iterable[str], now: float) -> bytes:
        """JOIN commands for `channels` (batched, each line ≤ 512 bytes); starts their timers.

        The caller must have taken one join-rate-limit slot per channel before writing.
        """
        self._advance(SessionInput.JOIN)
        names = [_normalise(channel) for channel in channels]
        for name in names:
            self._pending_joins[name] = now
        return _batched(b"JOIN", names)

    def part(self, channels: Iterable[str]) -> bytes:
        """PART commands for `channels`; forgets them as joined or pending right away."""
        self._advance(SessionInput.PART)
        names = [_normalise(channel) for channel in channels]
        for name in names:
            if self._pending_joins.pop(name, None) is not None:
                self._parted_in_flight.add(name)
            self.joined_channels.discard(name)
        return _batched(b"PART", names)

    def _advance(self, given: SessionInput) -> SessionState:
        """Move along `SESSION_TRANSITIONS`; return the state left (raise if not listed)."""
        left = self.state
        entered = SESSION_TRANSITIONS[left].get(given)
        if entered is None:
            raise SessionStateError(left, given)
        self.state = entered
        return left

    def ping(self, now: float) -> bytes:
        """A client PING; the keepalive deadline runs from `now` until anything arrives."""
        self._ping_sent_at = now
        self._ping_counter += 1
        return f"PING :keepalive-{self._ping_counter}\r\n".encode()

    def data_to_send(self) -> bytes:
        """Drain the bytes the protocol owes the server (PONG answers, keepalive PINGs)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def pending_joins(self) -> frozenset[str]:
        """Channels JOINed whose echo has not arrived yet."""
        return frozenset(self._pending_joins)

    def reset_idle_timer(self, now: float) -> None:
        """Restart the keepalive clock: the caller was not reading (backpressure), not idle.

        While the sink blocks, the socket is not read, so "nothing received" says nothing
        about the peer; without this a slow Kafka would look like a dead Twitch.
        """
        self._last_received_at = now
        self._ping_sent_at = None

    # --- timers ----------------------------------------------------------------------

    def poll(self, now: float) -> list[Event]:
        """Check the keepalive and JOIN deadlines at `now`.

        Queues a PING (see `data_to_send`) after `ping_interval_s` of silence and reports
        `KeepaliveTimedOut` when `pong_timeout_s` more pass without any byte; reports
        `JoinTimedOut` for JOINs without an echo after `join_timeout_s`.
        """
        events: list[Event] = []
        if self._last_received_at is not None:
            if self._ping_sent_at is not None:
                if now - self._ping_sent_at >= self._pong_timeout_s:
                    events.append(KeepaliveTimedOut(now - self._last_received_at))
            elif now - self._last_received_at >= self._ping_interval_s:
                self._out += self.ping(now)
        if self._pending_joins:
            deadline = now - self._join_timeout_s
            expired = [ch for ch, sent in self._pending_joins.items() if sent <= deadline]
            for channel in expired:
                waited = now - self._pending_joins.pop(channel)
                events.append(JoinTimedOut(channel, waited))
        return events

    # --- incoming bytes ----------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the socket; returns the events they complete."""
        self.bytes_received += len(data)
        self._last_received_at = now
        # Any byte proves the peer alive; the PONG itself is not required.
        self._ping_sent_at = None
        events: list[Event] = []
        if self._discarding:
            # The rest of a line already reported as too long: skip up to its end, or
            # its tail would be parsed as a line of its own.
            start = data.find(b"\n")
            if start < 0:
                return events
            data = data[start + 1 :]
            self._discarding = False
        if self._partial:
            data = self._partial + data
        end = data.rfind(b"\n")
        self._partial = data[end + 1 :]
        if len(self._partial) > MAX_LINE_BYTES:
            events.append(MalformedLine(self._partial[:MAX_LINE_BYTES], _TOO_LONG_REASON))
            self.lines_received += 1
            self._partial = b""
            self._discarding = True
        if end < 0:
            return events
        complete = data[: end + 1]
        if self.line_reader is not None:
            parsed = self.line_reader.read_lines(complete)
            if parsed is not None:
                return self._dispatch_parsed(*parsed, events)
        try:
            # Twitch ends lines with CRLF; replacing first keeps the split a single C call
            # and leaves a stray CR inside a line (never seen in practice) untouched.
            # Split as bytes, then decode each line: decoding the whole chunk would make
            # every line as wide as its widest character (one emoji turns 256 KiB of
            # ASCII into UCS-4), slowing every later string operation; per line, most
            # lines stay compact ASCII (0.5-0.7 µs a line less, parse + route included).
            lines = [raw.decode() for raw in complete.replace(b"\r\n", b"\n").split(b"\n")]
        except UnicodeDecodeError:
            return self._receive_lines_slowly(complete, events)
        lines.pop()  # the empty string after the final "\n"
        return self._dispatch(lines, events)

    def _receive_lines_slowly(self, complete: bytes, events: list[Event]) -> list[Event]:
        """Per-line decode after the chunk failed as a whole: only bad lines are lost."""
        lines: list[str] = []
        malformed: list[tuple[int, MalformedLine]] = []
        for raw in complete.split(b"\n")[:-1]:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                malformed.append((len(lines), MalformedLine(raw, _DECODE_ERROR_REASON)))
        self.lines_received += len(malformed)
        # Undecodable lines are reported first; their position in the chunk is not
        # meaningful to anyone downstream (they go to the dead-letter topic).
        events.extend(event for _, event in malformed)
        return self._dispatch(lines, events)

    def _dispatch(self, lines: list[str], events: list[Event]) -> list[Event]:
        chat: list[IrcMessage] = []
        append = chat.append
        self.lines_received += len(lines)
        for line in lines:
            if not line:
                continue
            try:
                message = parse_line(line)
            except IrcParseError as exc:
                events.append(MalformedLine(line.encode(), exc.reason))
                continue
            command = message.command
            # PRIVMSG is ~95% of the traffic: one string compare and nothing else.
            if command == "PRIVMSG" or self._handle_control(message, command, events):
                append(message)
        if chat:
            events.append(ChatLines(chat))
        return events

    def _dispatch_parsed(
        self, messages: ParsedChunk, controls: list[int], lines: int, events: list[Event]
    ) -> list[Event]:
        """`_dispatch` for lines the compiled reader already parsed: Python work only for
        the non-PRIVMSG lines (`controls`, their positions in `messages`)."""
        self.lines_received += lines
        if controls:
            handle = self._handle_control
            dropped = {
                index
                for index in controls
                if not handle(messages[index], messages[index].command, events)
            }
            if dropped:
                messages = messages.without(dropped)
        if messages:
            events.append(ChatLines(messages))
        return events

    def _handle_control(self, message: IrcMessage, command: str, events: list[Event]) -> bool:
        """Update state for a non-PRIVMSG line; True when it is also chat-level."""
        if command == "PING":
            self._out += b"PONG :" + (message.trailing or "tmi.twitch.tv").encode() + b"\r\n"
            return False
        if command == "PONG":
            events.append(PongReceived(message.trailing or ""))
            return False
        if command == "ROOMSTATE":
            channel = message.channel
            room_id = message.tags.get("room-id")
            if channel is not None and room_id and self.room_ids.get(channel) != room_id:
                self.room_ids[channel] = room_id
                events.append(RoomIdLearned(channel, room_id))
            return True
        if command == "NOTICE":
            return self._handle_notice(message, events)
        if command in ("JOIN", "PART"):
            nick = message.nick
            if nick is None or nick.lower() != self.login:
                return True  # someone else's membership line
            channel = _normalise(message.params[0]) if message.params else ""
            if command == "JOIN":
                if channel in self._parted_in_flight:
                    self._parted_in_flight.discard(channel)
                    return False
                self._pending_joins.pop(channel, None)
                self.joined_channels.add(channel)
                events.append(ChannelJoined(channel))
            else:
                self._parted_in_flight.discard(channel)
                self.joined_channels.discard(channel)
                events.append(ChannelParted(channel))
            return False
        if command == "RECONNECT":
            events.append(ReconnectRequested())
            return False
        if command == "001":
            if self._advance(SessionInput.WELCOME) is not self.state:
                events.append(LoggedIn())
            return False
        # CAP ACK/NAK and the welcome/MOTD/NAMES numerics are connection chatter.
        return not (command == "CAP" or command.isdigit())

    def _handle_notice(self, message: IrcMessage, events: list[Event]) -> bool:
        text = message.trailing or ""
        channel = message.channel
        if channel is None:
            if text.lower().startswith(AUTH_FAILURE_NOTICES):
                self._advance(SessionInput.LOGIN_REJECTED)
                events.append(AuthenticationFailed(text))
                return False
            return True
        msg_id = message.tags.get("msg-id", "")
        if msg_id in JOIN_FAILURE_MSG_IDS:
            self._pending_joins.pop(channel, None)
            self.joined_channels.discard(channel)
            events.append(JoinFailed(channel, msg_id, text))
        # Channel NOTICEs (join failures included) are also Twitch events worth keeping.
        return True


def _normalise(channel: str) -> str:
    return channel.removeprefix("#").lower()


def _batched(verb: bytes, names: list[str]) -> bytes:
    if not names:
        return b""
    out = bytearray()
    line = bytearray()
    for name in names:
        target = b"#" + name.encode()
        if line and len(verb) + 1 + len(line) + 1 + len(target) > _MAX_COMMAND_BYTES:
            out += verb + b" " + line + b"\r\n"
            line.clear()
        if line:
            line += b","
        line += target
    out += verb + b" " + line + b"\r\n"
    return bytes(out)
