"""One slot of the pool as plain data: a group of channels and the connection(s) reading it.

A slot decides nothing and starts nothing. Its channel bookkeeping is a `ChannelPlan`
and its hand-over timing a `HandoverPlan` (`pool_policy`, pure); everything else here is
what the pool's one owner (`pool_owner.PoolOwner`) writes down while it handles
commands, and reads back when asked (`joined()`, `is_ready()`, `describe()`).

`PoolConnection` (what the pool uses of a socket; tests hand in fakes) lives here too;
`ChatSink` (where chunks go) is `chunk_route`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from twitch_ingestion.sources.common.backoff import ExponentialBackoff
from twitch_ingestion.sources.common.source import SourceStopped
from twitch_ingestion.sources.irc.chunk_route import ChatSink, ChunkRoute
from twitch_ingestion.sources.irc.connection import DisconnectCause, TwitchError
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.pool_policy import ChannelPlan, HandoverPlan
from twitch_ingestion.sources.irc.session import ConnectionStatus, Event, TwitchSession

__all__ = [
    "ChatSink",
    "ConnectionFactory",
    "Handover",
    "HandoverPhase",
    "JoinQueue",
    "PoolConnection",
    "Slot",
    "SlotChatHandler",
    "SlotEventHandler",
    "TwitchGaveUp",
]

# Channels listed per connection in status() (a slot can hold hundreds).
_STATUS_WAITING_SHOWN = 20


class TwitchGaveUp(TwitchError, SourceStopped):  # noqa: N818 - the name the service and docs use
    """`twitch_max_reconnect_attempts` connection attempts in a row failed."""

    def details(self) -> None:
        return None  # logged by the pool as it gave up ("twitch source gave up")


class PoolConnection(Protocol):
    """What the pool uses of a connection: `TwitchConnection`, or a fake in tests."""

    name: str
    session: TwitchSession
    logged_in_at: float | None

    async def connect(self) -> None: ...
    def join(self, channels: Iterable[str]) -> None: ...
    def part(self, channels: Iterable[str]) -> None: ...
    def close(self, cause: DisconnectCause = DisconnectCause.CLOSED) -> None: ...
    async def disconnect(self) -> None: ...
    async def wait_closed(self) -> DisconnectCause: ...
    async def wait_ended(self) -> None: ...
    def cancel_reading(self) -> None: ...
    def is_connected(self) -> bool: ...
    @property
    def is_closing(self) -> bool: ...


SlotChatHandler = Callable[[PoolConnection, Sequence[IrcMessage], int], Awaitable[None]]
SlotEventHandler = Callable[[PoolConnection, Event, int], None]
ConnectionFactory = Callable[[str, SlotChatHandler, SlotEventHandler], PoolConnection]
"""`(name, on_chat, on_event)` → a new, not yet connected connection."""


@dataclass(eq=False, slots=True)
class JoinQueue:
    """Channels one connection still has to JOIN, in order, waiting for the limiter.

    The owner adds and takes channels; its joiner task only waits for the limiter
    (`wakeup` when there is something to wait for) and reports how many it may send.
    """

    conn: PoolConnection
    channels: dict[str, None] = field(default_factory=dict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class HandoverPhase(Enum):
    OPENING = "opening"  # the replacement connection is connecting
    OVERLAP = "overlap"  # both read; `plan.step` says when the old one goes
    DONE = "done"  # the old one was told to close; `result` is promoted when it has
    FAILED = "failed"  # the replacement could not connect: reconnect when the old ends


@dataclass(eq=False, slots=True)
class Handover:
    """A server RECONNECT in progress: the old connection, its replacement and the plan."""

    old: PoolConnection
    plan: HandoverPlan
    phase: HandoverPhase = HandoverPhase.OPENING
    successor: PoolConnection | None = None
    # What is promoted once the old connection has ended (None: reconnect instead).
    result: PoolConnection | None = None
    # Set when the old connection ended before the plan was done with it.
    old_ended: DisconnectCause | None = None
    timer: asyncio.TimerHandle | None = None
    wake_scheduled: bool = False


@dataclass(eq=False, slots=True)
class Slot:
    """One group of channels and the connection(s) reading them; written by the owner only."""

    id: int
    plan: ChannelPlan
    route: ChunkRoute
    backoff: ExponentialBackoff
    status: ConnectionStatus = ConnectionStatus.CONNECTING
    current: PoolConnection | None = None
    # The replacement of a hand-over, once connected (also `handover.successor`).
    successor: PoolConnection | None = None
    handover: Handover | None = None
    # Connections that got a RECONNECT while a hand-over could not start yet.
    reconnect_asked: set[PoolConnection] = field(default_factory=set)
    join_queues: dict[PoolConnection, JoinQueue] = field(default_factory=dict)
    generation: int = 0
    all_joined_logged: bool = False
    stopped: bool = False
    # I/O in flight, started and cancelled by the owner: the connect attempt (with
    # its backoff delay), one watcher per connection, the retry timer.
    connecting: asyncio.Task[None] | None = None
    watchers: dict[PoolConnection, asyncio.Task[None]] = field(default_factory=dict)
    retry_timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return f"twitch-{self.id}"

    @property
    def wanted(self) -> dict[str, None]:
        return self.plan.wanted

    @property
    def failed(self) -> dict[str, str]:
        return self.plan.failed

    def connections(self) -> list[PoolConnection]:
        """Every connection of the slot: live, being handed over, or still joining."""
        conns = [c for c in (self.current, self.successor) if c is not None]
        if self.handover is not None:
            conns.append(self.handover.old)
        conns.extend(self.join_queues)
        conns.extend(self.watchers)
        return list(dict.fromkeys(conns))

    # --- read-only views -----------------------------------------------------------------

    def joined(self) -> frozenset[str]:
        """Channels Twitch confirmed on a live connection of this slot (old or new)."""
        live = [
            c.session.joined_channels
            for c in (self.current, self.successor)
            if c is not None and c.is_connected()
        ]
        return frozenset().union(*live) & self.plan.wanted.keys()

    def joined_count(self) -> int:
        conn = self.current
        if conn is None or not conn.is_connected():
            return 0
        return len(conn.session.joined_channels)

    def join_queue_length(self) -> int:
        return sum(len(queue.channels) for queue in self.join_queues.values())

    def is_ready(self) -> bool:
        conn = self.current
        return (
            conn is not None
            and conn.is_connected()
            and self.plan.settled(conn.session.joined_channels)
        )

    def describe(self) -> dict[str, object]:
        conn = self.current
        joined = conn.session.joined_channels if conn is not None and conn.is_connected() else set()
        return {
            "connection": self.name,
            "status": self.status.value,
            "channels": len(self.wanted),
            "joined": len(joined),
            "failed": len(self.failed),
            "not_yet_joined": self.plan.not_yet_joined(joined)[:_STATUS_WAITING_SHOWN],
            "handing_over": self.successor is not None,
        }
