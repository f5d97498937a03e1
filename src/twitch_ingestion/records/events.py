"""What a source hands the records stage: typed source events, carrying what Twitch said.

* `SourceRecord`: a chat message (`Destination.CHAT`, a `ChatMessage`) or a chat event
  (`Destination.EVENTS`, one of the event structs), with the channel it belongs to.
  One struct for both, not two: the hot path makes one per chat line, and telling them
  apart by an identity test on `destination` is cheaper than by type.
* `SourceDeadLetter`: what a source read and cannot turn into a record, as exact bytes.
* A line-oriented source (IRC) hands whole chunks of `SourceLine`s with its routing
  function instead (`RecordBuilder.build_lines`): line in, `SourceRecord` or None out,
  `Unpublishable` raised for a line that breaks the contract.

Nothing here names a topic or a Kafka key's bytes: that is the `RecordBuilder`'s job.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from twitch_ingestion.models import ChatEventRecord, ChatMessage
from twitch_ingestion.records.topics import Destination

__all__ = [
    "SourceDeadLetter",
    "SourceLine",
    "SourceRecord",
    "Unpublishable",
]


class SourceRecord(msgspec.Struct, frozen=True, gc=False):
    """A chat message or a chat event, ready for the `RecordBuilder`."""

    destination: Destination
    key: str
    """Channel login: keeps each channel's records in order within one partition."""
    record: ChatMessage | ChatEventRecord
    value: bytes | None = None
    """The record's JSON when the source already encoded it (`encode_record(record)`:
    EventSub encodes where it builds), else None and the builder encodes it."""


class SourceDeadLetter(msgspec.Struct, frozen=True, gc=False):
    """What a source read and could not turn into a record, for the dead-letter topic."""

    raw: bytes
    """Exactly what was read (an IRC line without its line end, an EventSub frame)."""
    reason: str
    """Short kebab-case cause, a metric label: never user data."""
    received_at_ms: int
    detail: str | None = None
    """For the log only (which field, which value), never for a metric."""
    what: Literal["line", "eventsub frame"] = "line"
    """What was dead-lettered: the log event is `<what> dead-lettered`."""


class Unpublishable(ValueError):  # noqa: N818 - a kind of input, like `ValueError`
    """A line that was read and parsed but cannot become a valid record.

    `reason` is a short kebab-case cause, a metric label (never user data); the line
    becomes a dead letter with its exact bytes.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class SourceLine(Protocol):
    """One line a line-oriented source read (`IrcMessage` is one)."""

    @property
    def raw(self) -> str:
        """The exact line as read, without its line end."""

    @property
    def channel(self) -> str | None:
        """The channel login it belongs to, if any: the raw copy's key."""
