"""Every tunable of the Twitch IRC simulator, with its default and why."""

from __future__ import annotations

import enum
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_BATCH_LINES",
    "DEFAULT_DROP_SETTLE_TIMEOUT_S",
    "DEFAULT_JOIN_LIMIT",
    "DEFAULT_JOIN_WINDOW_S",
    "DEFAULT_PING_INTERVAL_S",
    "DEFAULT_PONG_TIMEOUT_S",
    "DEFAULT_WRITE_BUFFER_HIGH_BYTES",
    "ChannelBehaviour",
    "SimulatorConfig",
    "server_tls_context",
]

# Twitch sends `PING :tmi.twitch.tv` roughly every five minutes.
DEFAULT_PING_INTERVAL_S = 300.0
# Twitch closes a connection that leaves its PING unanswered; the exact grace period is
# undocumented, ten seconds is generous for a client on the same host.
DEFAULT_PONG_TIMEOUT_S = 10.0
# Twitch's documented limit for ordinary accounts: 20 join attempts per 10 s per user
# (verified bots: 2,000). https://dev.twitch.tv/docs/chat/#rate-limits
DEFAULT_JOIN_LIMIT = 20
DEFAULT_JOIN_WINDOW_S = 10.0
# Lines per write when a stream runs flat out: big enough that one `write` + `drain`
# carries ~0.5 MB of chat (the firehose goal is ≥ 100k lines/s), small enough that other
# connections and control calls get the loop every few milliseconds.
DEFAULT_BATCH_LINES = 2048
# Let the transport buffer this much before `drain()` blocks, so a fast reader is never
# throttled by a round-trip per chunk (asyncio's default high-water mark is 64 KiB).
DEFAULT_WRITE_BUFFER_HIGH_BYTES = 4 * 1024 * 1024
# A client that reads normally acknowledges a few MiB on loopback in milliseconds; two
# seconds only runs out for a client that has stopped reading.
DEFAULT_DROP_SETTLE_TIMEOUT_S = 2.0


class ChannelBehaviour(enum.StrEnum):
    """How the simulator answers a JOIN for a channel."""

    NORMAL = "normal"
    SUSPENDED = "suspended"
    """`msg_channel_suspended` NOTICE, no JOIN echo, nothing delivered."""
    BANNED = "banned"
    """`msg_banned` NOTICE, no JOIN echo, nothing delivered."""
    NO_ECHO = "no_echo"
    """The JOIN is silently swallowed: the client waits for an echo that never comes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """Settings for one `TwitchSimulator`; every field has a Twitch-like default."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 binds an ephemeral port; read `TwitchSimulator.port` after `start()`."""
    ssl_context: ssl.SSLContext | None = None
    """Serve TLS with this server-side context (Twitch's own port 6697 is TLS-only);
    None serves plain TCP. `server_tls_context()` builds one from PEM files."""
    valid_tokens: frozenset[str] | None = None
    """Tokens accepted for non-anonymous logins, with or without the `oauth:` prefix.
    None accepts any `oauth:` token."""
    token_check: Callable[[str], bool] | None = None
    """Asked, as Twitch asks its OAuth server, whether a login's token (without `oauth:`)
    is live: tokens that expire or are refreshed (the EventSub simulator's
    `token_is_live`). Applies after `valid_tokens`; None accepts what that accepts."""
    ping_interval_s: float | None = DEFAULT_PING_INTERVAL_S
    """Server PING period per logged-in connection; None never pings."""
    pong_timeout_s: float | None = DEFAULT_PONG_TIMEOUT_S
    """Close a connection that has not answered a PING within this; None never closes."""
    join_limit: int | None = DEFAULT_JOIN_LIMIT
    """Channel targets one account may JOIN per `join_window_s`; None is unlimited."""
    join_window_s: float = DEFAULT_JOIN_WINDOW_S
    channel_behaviours: Mapping[str, ChannelBehaviour] = field(default_factory=dict)
    """Channel login (no `#`) → behaviour; unlisted channels are `NORMAL`."""
    room_ids: Mapping[str, str] = field(default_factory=dict)
    """Channel login → room-id; unlisted channels get a stable id derived from the name."""
    seed: int | None = None
    """Seed for generated chat and numbered-stream ids; None picks a random one."""
    batch_lines: int = DEFAULT_BATCH_LINES
    write_buffer_high_bytes: int = DEFAULT_WRITE_BUFFER_HIGH_BYTES
    drop_settle_timeout_s: float = DEFAULT_DROP_SETTLE_TIMEOUT_S
    """How long `drop_connections()` waits for the client to acknowledge what was
    already written before it resets the socket anyway."""
    slow_consumer_timeout_s: float | None = None
    """Abort a connection whose socket does not drain within this (Twitch drops slow
    readers); None waits forever, which keeps benchmarks lossless."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if self.join_limit is not None and self.join_limit < 1:
            raise ValueError(f"join_limit must be >= 1 or None, got {self.join_limit}")
        if self.join_window_s <= 0:
            raise ValueError(f"join_window_s must be > 0, got {self.join_window_s}")
        if self.batch_lines < 1:
            raise ValueError(f"batch_lines must be >= 1, got {self.batch_lines}")
        if self.drop_settle_timeout_s < 0:
            raise ValueError(
                f"drop_settle_timeout_s must be >= 0, got {self.drop_settle_timeout_s}"
            )
        for name in ("ping_interval_s", "pong_timeout_s", "slow_consumer_timeout_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")


def server_tls_context(cert_file: str, key_file: str | None = None) -> ssl.SSLContext:
    """A TLS server context presenting `cert_file` (PEM, chain allowed) and its key.

    `key_file` may be omitted when the key is in `cert_file`. Raises `ValueError` with
    one line naming the file when it cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        files = cert_file if key_file is None else f"{cert_file} / {key_file}"
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ValueError(f"cannot load the TLS certificate and key {files}: {reason}") from None
    return context
