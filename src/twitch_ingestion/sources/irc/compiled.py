"""Which IRC hot path runs: the compiled read + encode steps (`native/`) or pure Python.

The compiled extension `twitch_ingestion_native` (Rust, PyO3; built by `make install`
when cargo is present) does two steps, each one call per read:

* `LineReader.read_lines` (used by `TwitchSession.receive_data`): split, UTF-8 decode and
  parse a read's lines into a `ParsedChunk`; a read with a line that is not UTF-8 or not
  IRC is left whole to the Python session, so malformed-line reports stay Python's.
* `ChatEncoder.encode_chunk` (used by `IrcRecordEncoder.deliver`): each PRIVMSG's
  records — tag decoding, field extraction, emote ranges, badges, msgspec-exact JSON.
  It takes only the lines it reproduces byte for byte; every other line (dead letters,
  repaired timestamps or emote tags, missing room ids, non-ASCII logins, every
  non-PRIVMSG command) is handed back and built by the Python path in place.

The two are fused through the `ParsedChunk`: its PRIVMSG lines are only located by the
reader and encoded by the encoder straight from the read's text, so no Python object is
made for a chat line unless someone indexes or iterates the chunk (de-duplication during
a hand-over, the Python path for a line the encoder leaves); then it is built exactly as
`parse_line` builds it.

The Python path stays the reference (`tests/unit/test_compiled_differential.py` holds
the two together, from read bytes to records).

`HOT_PATH` (`twitch_ingestion/native.py`) picks the path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, overload

from twitch_ingestion.native import (
    EXTENSION_MODULE,
    HotPath,
    HotPathChoice,
    compiled_extension,
    extension_available,
)

if TYPE_CHECKING:
    from twitch_ingestion.records import Record
    from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = [
    "EXTENSION_MODULE",
    "ChatEncoder",
    "HotPath",
    "HotPathChoice",
    "LineReader",
    "ParsedChunk",
    "compiled_chat_encoder",
    "compiled_line_reader",
    "extension_available",
]


class ParsedChunk(Sequence["IrcMessage"]):
    """The extension's `ChatChunk`: one read's chat-level lines, a read-only sequence of
    `IrcMessage`s whose PRIVMSG lines are built only when indexed or iterated (a new
    object per access). Registered as a `Sequence` when the extension loads; this class
    only gives the type checker its shape."""

    def __len__(self) -> int:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int, /) -> IrcMessage: ...
    @overload
    def __getitem__(self, index: slice, /) -> list[IrcMessage]: ...
    def __getitem__(self, index: int | slice, /) -> IrcMessage | list[IrcMessage]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[IrcMessage]:
        raise NotImplementedError

    def without(self, dropped: set[int], /) -> ParsedChunk:
        """The same chunk without the lines at the positions in `dropped`."""
        raise NotImplementedError


class ChatEncoder(Protocol):
    """The extension's `ChatEncoder`: PRIVMSG `IrcMessage` → `(key, value)` or None."""

    def encode_privmsg(self, message: object, received_at_ms: int, /) -> tuple[bytes, bytes] | None:
        """The record's key and `ChatMessage` JSON, or None: take the Python path."""

    def encode_chunk(
        self,
        messages: Sequence[IrcMessage],
        received_at_ms: int,
        chat_topic: str,
        raw_topic: str | None,
        /,
    ) -> tuple[list[Record], list[tuple[int, int]]]:
        """A read's PRIVMSG records (raw copy, chat record) and `(position, index)` of
        every line left to Python, whose records belong at `records[position]`; from a
        `ParsedChunk` without building its PRIVMSG lines."""


class LineReader(Protocol):
    """The extension's `LineReader`: a read's complete lines → parsed `IrcMessage`s."""

    def read_lines(self, complete: bytes, /) -> tuple[ParsedChunk, list[int], int] | None:
        """(chunk, positions of its non-PRIVMSG lines, line count), or None: take the
        Python path for this read (a line is not UTF-8 or not IRC)."""


class _ChatEncoderFactory(Protocol):
    def __call__(self, schema_version: int, ingested_via: str, /) -> ChatEncoder: ...


class _LineReaderFactory(Protocol):
    def __call__(
        self, message_type: type[IrcMessage], parse_line: Callable[[str], IrcMessage], /
    ) -> LineReader: ...


def compiled_chat_encoder(
    choice: HotPathChoice, *, schema_version: int, ingested_via: str
) -> ChatEncoder | None:
    """The compiled encoder `choice` asks for, or None for the pure-Python path.

    Raises RuntimeError for `compiled` without the extension (settings validation
    normally reports that first, as one line).
    """
    module = compiled_extension(choice)
    if module is None:
        return None
    factory: _ChatEncoderFactory = module.ChatEncoder
    return factory(schema_version, ingested_via)


def compiled_line_reader(choice: HotPathChoice) -> LineReader | None:
    """The compiled line reader for `TwitchSession`, or None for the pure-Python path."""
    module = compiled_extension(choice)
    if module is None:
        return None
    from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line

    Sequence.register(module.ChatChunk)
    factory: _LineReaderFactory = module.LineReader
    return factory(IrcMessage, parse_line)
