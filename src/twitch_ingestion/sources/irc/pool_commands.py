"""What the pool's owner is asked to do: one small frozen class per command.

Everything that changes the pool — the service's calls (`JoinChannels`, `PartChannels`,
`UseToken`) and what its I/O reports (a connection opened, failed, ended or said
something; the JOIN limiter granted a turn; a timer fired) — reaches
`pool_owner.PoolOwner.submit` as one of these, and is handled there, one at a time.
Whatever comes from a connection carries the slot id it belongs to and the connection
itself (a slot can have two during a hand-over).

Adding a command: a class here, a member of `PoolCommand`, a `case` in
`PoolOwner._handle`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from twitch_ingestion.sources.irc.connection import DisconnectCause, TwitchError
from twitch_ingestion.sources.irc.session import Event
from twitch_ingestion.sources.irc.slot import PoolConnection

__all__ = [
    "ConnectFailed",
    "ConnectionEnded",
    "ConnectionEvent",
    "ConnectionOpened",
    "HandoverCheck",
    "JoinChannels",
    "JoinTurn",
    "PartChannels",
    "PoolCommand",
    "RetryDue",
    "UseToken",
]

# --- from the service (TwitchSource's public API) ---------------------------------------


@dataclass(frozen=True, slots=True)
class JoinChannels:
    """Read these channels too (normalised logins; those already read are ignored)."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartChannels:
    """Stop reading these channels; a slot left empty closes its connection."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UseToken:
    """Log in with this token from now on (a refreshed TWITCH_OAUTH_TOKEN)."""

    token: SecretStr


# --- from the connections and the pool's own I/O ----------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """`conn` logged in: the slot's connection, or (`replacement`) a hand-over's new one."""

    slot_id: int
    conn: PoolConnection
    replacement: bool


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """A connection attempt failed (`TwitchConnectError` or `TwitchAuthenticationError`)."""

    slot_id: int
    error: TwitchError
    replacement: bool


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """What the session of `conn` reported (every event but the chat chunks)."""

    slot_id: int
    conn: PoolConnection
    event: Event
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """`conn` stopped reading: `cause`, or `error` when its chunk handling raised."""

    slot_id: int
    conn: PoolConnection
    cause: DisconnectCause
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class JoinTurn:
    """The JOIN limiter granted `granted` JOINs to `conn`'s queue."""

    slot_id: int
    conn: PoolConnection
    granted: int


@dataclass(frozen=True, slots=True)
class RetryDue:
    """The slot's earliest failed-channel retry (at `due_at`) has come."""

    slot_id: int
    due_at: float


@dataclass(frozen=True, slots=True)
class HandoverCheck:
    """Step the slot's hand-over plan: its deadline passed, or a JOIN answer came."""

    slot_id: int


PoolCommand = (
    JoinChannels
    | PartChannels
    | UseToken
    | ConnectionOpened
    | ConnectFailed
    | ConnectionEvent
    | ConnectionEnded
    | JoinTurn
    | RetryDue
    | HandoverCheck
)
