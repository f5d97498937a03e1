"""What the simulator did, as plain counters that tests can assert on.

The server mutates one live `SimulatorStats` on its event loop; `snapshot()` returns a
deep copy that is safe to keep, compare and hand to another thread.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConnectionStats", "SimulatorStats", "StreamStats"]


@dataclass(slots=True)
class ConnectionStats:
    """One open client connection."""

    connection_id: int
    peer: str
    nick: str | None = None
    anonymous: bool = False
    logged_in: bool = False
    channels: list[str] = field(default_factory=list)
    """Channels currently joined on this connection, in join order."""
    silent: bool = False
    lines_written: int = 0
    bytes_written: int = 0
    pongs_received: int = 0
    reconnect_sent: bool = False


@dataclass(slots=True)
class StreamStats:
    """One replay / generated / numbered stream."""

    stream_id: int
    kind: str
    rate: float
    """Lines per second over the whole stream; 0 = as fast as the client reads."""
    lines_emitted: int = 0
    """Lines produced (each once, however many connections received it)."""
    lines_by_command: dict[str, int] = field(default_factory=dict)
    lines_undelivered: int = 0
    """Emitted lines that reached no connection (channel not joined, or only silent ones)."""
    loops_completed: int = 0
    done: bool = False
    stopped: bool = False
    """True when `stop()` ended the stream before it ran out."""
    error: str | None = None


@dataclass(slots=True)
class SimulatorStats:
    connections_accepted: int = 0
    connections_closed: int = 0
    connections: dict[int, ConnectionStats] = field(default_factory=dict)
    """Open connections by id, with their currently joined channels."""
    logins_by_nick: dict[str, int] = field(default_factory=dict)
    login_failures_by_reason: dict[str, int] = field(default_factory=dict)
    joins_by_channel: dict[str, int] = field(default_factory=dict)
    """JOIN targets ever received per channel (suspended/banned/no-echo ones included)."""
    parts_by_channel: dict[str, int] = field(default_factory=dict)
    join_limit_violations: int = 0
    join_limit_violations_by_nick: dict[str, int] = field(default_factory=dict)
    lines_written_by_command: dict[str, int] = field(default_factory=dict)
    """Every line written to any socket, by command (one per receiving connection)."""
    bytes_written: int = 0
    privmsgs_by_channel: dict[str, int] = field(default_factory=dict)
    """Distinct stream PRIVMSGs that reached at least one connection, per channel."""
    sent_while_unjoined: dict[str, int] = field(default_factory=dict)
    """Stream lines for a channel that no connection had joined (lost, as on Twitch)."""
    sent_while_silent: dict[str, int] = field(default_factory=dict)
    """Stream lines whose channel was joined only by silenced connections."""
    numbered_high_water: dict[str, int] = field(default_factory=dict)
    """Last sequence number emitted per channel by numbered streams."""
    numbered_undelivered: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Per channel, inclusive ranges of sequence numbers that reached no connection."""
    pings_sent: int = 0
    pongs_received: int = 0
    pong_timeouts: int = 0
    reconnects_sent: int = 0
    connections_dropped: int = 0
    drops_with_data_in_flight: int = 0
    """Drops whose client had not acknowledged everything written: those lines count as
    delivered but may never have been read, so exact accounting is off for them."""
    streams: dict[int, StreamStats] = field(default_factory=dict)

    @property
    def connections_current(self) -> int:
        return len(self.connections)

    def joined_channels(self) -> set[str]:
        """Channels joined by at least one open connection."""
        return {channel for conn in self.connections.values() for channel in conn.channels}

    def numbered_undelivered_count(self, channel: str) -> int:
        return sum(last - first + 1 for first, last in self.numbered_undelivered.get(channel, ()))

    def snapshot(self) -> SimulatorStats:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (integer keys stay integers)."""
        data = dataclasses.asdict(self)
        data["connections_current"] = self.connections_current
        return data
