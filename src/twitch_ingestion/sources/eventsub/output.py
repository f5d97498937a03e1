"""What the EventSub client hands out: records and problems to an `EventSubOutput`, its
counters (`EventSubClientStats`), and the `SourceFailure` that ended it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from twitch_ingestion.sources.eventsub.helix import ChannelProblem
from twitch_ingestion.sources.eventsub.messages import DeadLetter
from twitch_ingestion.sources.eventsub.records import EventSubRecord
from twitch_ingestion.sources.eventsub.session import ReconnectKind
from twitch_ingestion.sources.eventsub.tokens import TokenError

__all__ = ["EventSubClientStats", "EventSubOutput", "SourceFailure"]


class SourceFailure(msgspec.Struct, frozen=True, gc=False):
    """Why the source stopped for good; `message` is one line naming what to fix."""

    reason: str
    variable: str
    """The setting to fix (`TWITCH_OAUTH_TOKEN`, `TWITCH_CLIENT_ID`, …), or ""."""
    message: str

    @classmethod
    def from_token_error(cls, error: TokenError) -> SourceFailure:
        return cls(error.reason, error.variable, error.message)


class EventSubOutput(Protocol):
    """Where the source's results go; called on the client's event loop, must not block."""

    def record(self, record: EventSubRecord) -> None:
        """A record for the sink (chat or events topic)."""

    def dead_letter(self, letter: DeadLetter) -> None:
        """A frame that could not become a record: its exact bytes, for the DLQ."""

    def channel_problem(self, problem: ChannelProblem) -> None:
        """A channel Twitch refused by name (unknown login, refused subscription,
        revocation); reported once per channel and reason until it is read again."""


@dataclass
class EventSubClientStats:
    reconnects: list[tuple[str, ReconnectKind]] = field(default_factory=list)
    """(reason, kind) of every fresh reconnect the sessions asked for, in order."""
    migrations: int = 0
    """`session_reconnect`s followed (old socket kept until the new welcome)."""
    records: int = 0
    dead_letters: int = 0
    subscriptions_created: int = 0
    rate_limited: int = 0
    revocations: int = 0
    problems: list[ChannelProblem] = field(default_factory=list)
    subscription_failures: int = 0
    """Failed Helix subscription calls (each attempt), plus revocations and vanishings."""
