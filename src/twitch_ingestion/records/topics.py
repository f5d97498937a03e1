"""The one list of topics the service writes to, and the logical topic of a record.

Sources never name a topic: they say whether a record is a chat message or an event
(`Destination`), and the `RecordBuilder` maps that to the configured name. The service's
topic check (`service.topic_specs`) and the sink's per-topic metrics read the same list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Destination", "Topics"]


class Destination(enum.Enum):
    """The logical topic of a record; `Topics` maps it to a configured topic name."""

    CHAT = "chat"
    """`twitch-chat-messages`: `ChatMessage` records."""
    EVENTS = "events"
    """`twitch-chat-events`: `ChatEventRecord` records."""


@dataclass(frozen=True, slots=True)
class Topics:
    """The configured topic names (KAFKA_TOPIC_*); `raw` and `dlq` are optional."""

    chat: str
    events: str
    raw: str | None = None
    """A byte-for-byte copy of every IRC line read, when set."""
    dlq: str | None = None
    """Dead letters, when set; without it they are counted and logged only."""

    @property
    def names(self) -> list[str]:
        """Every topic written to, in this order: chat, events, raw, dead letters."""
        return [name for name in (self.chat, self.events, self.raw, self.dlq) if name]

    @property
    def kinds(self) -> dict[str, str]:
        """Topic name → its kind (`chat`, `events`, `raw`, `dlq`), the metrics' label."""
        kinds = {self.chat: "chat", self.events: "events"}
        if self.raw:
            kinds[self.raw] = "raw"
        if self.dlq:
            kinds[self.dlq] = "dlq"
        return kinds

    def of(self, destination: Destination) -> str:
        """The topic name of `destination`."""
        return self.chat if destination is Destination.CHAT else self.events
