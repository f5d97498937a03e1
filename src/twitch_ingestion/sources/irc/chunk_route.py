"""How one slot's read chunks reach the sink: the pool's only code on the hot path.

A connection's reader awaits `ChunkRoute.deliver` once per chunk (so a slow sink stops
that socket's reading and nothing else). The route only applies what the pool's owner
configured on it (it only lets a filter go once its time is up), never the pool's state:

* `dedup` — on from a RECONNECT hand-over until shortly after it (`RecentIds`): a line
  read on both sockets is delivered once. Outside a hand-over it is `None` and a chunk
  costs one attribute test.

This is also where per-channel delivery modes belong (see `docs/architecture.md`): a
channel whose lines must be kept rather than produced is set on the route by the owner,
and `deliver` splits those lines off the chunk before the sink sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from twitch_ingestion.sources.irc.dedup import RecentIds
from twitch_ingestion.sources.irc.irc import IrcMessage

if TYPE_CHECKING:
    from twitch_ingestion.sources.irc.slot import PoolConnection

__all__ = ["ChatSink", "ChunkRoute"]


class ChatSink(Protocol):
    """Where the pool hands what it reads: `records.IrcRecordEncoder`, which turns each
    chunk into records for the `RecordSink` (the pool never sees Kafka)."""

    async def deliver(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        """Take one chunk's chat lines, in order. May block: that connection stops reading
        until it returns (backpressure). `room_ids` maps channel login → room id."""

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        """Keep a line that could not be decoded or parsed (exact bytes, no line end)."""


class ChunkRoute:
    """One slot's chunks → the sink, through what the owner switched on (see module doc)."""

    __slots__ = ("_deliver", "_room_ids", "dedup")

    def __init__(self, sink: ChatSink, room_ids: Mapping[str, str]) -> None:
        # Bound once: deliver runs per chunk.
        self._deliver = sink.deliver
        # The owner's map (read-only here): room ids learned on any socket show here.
        self._room_ids = room_ids
        self.dedup: RecentIds | None = None

    async def deliver(
        self, conn: PoolConnection, messages: Sequence[IrcMessage], received_at_ms: int
    ) -> None:
        """The `on_chat` of every connection of the slot: one call per chunk read."""
        dedup = self.dedup
        if dedup is not None:
            if dedup.expires_at is not None and dedup.expired(asyncio.get_running_loop().time()):
                # The owner set the end of the filter when the hand-over completed.
                self.dedup = None
            else:
                messages = dedup.fresh(messages)
                if not messages:
                    return
        await self._deliver(messages, received_at_ms, self._room_ids)
