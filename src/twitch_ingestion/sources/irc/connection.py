"""One Twitch IRC socket: the thin asyncio shell around `TwitchSession`.

The connection opens the socket (TLS with the default context when asked), logs in,
then runs two tasks:

* the reader reads in bulk (`read(read_buffer_bytes)`: whatever the kernel has, up to
  that much), feeds the session and hands each chunk's chat lines to `on_chat`, which it
  *awaits* — a slow sink pauses this socket's reading (backpressure) and nothing else;
* the keepalive task polls the session's timers: a PING after `ping_interval_s` of
  silence, and an abort when not even a PONG came back within `pong_timeout_s`, so a
  half-open TCP connection (a NAT that forgot us, a dead peer) cannot stall ingestion.

Reconnecting, joining through the rate limiter and de-duplicating are the pool's job
(`pool.py`); this module only reports what happened through two callbacks.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import StrEnum

from twitch_ingestion.metrics import BYTES_RECEIVED, LINES_RECEIVED
from twitch_ingestion.sources.common.source import SourceStopped
from twitch_ingestion.sources.irc.compiled import LineReader
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.session import (
    AuthenticationFailed,
    ChatLines,
    ConnectionStatus,
    Event,
    KeepaliveTimedOut,
    LoggedIn,
    TwitchSession,
)

__all__ = [
    "ChatHandler",
    "DisconnectCause",
    "EventHandler",
    "TwitchAuthenticationError",
    "TwitchConnectError",
    "TwitchConnection",
    "TwitchError",
]

# The keepalive task wakes this many times per shortest timeout: deadlines are then
# met within 25%, at a cost of one cheap wake-up every ~1 s with the default settings.
_KEEPALIVE_POLLS_PER_TIMEOUT = 4
_MIN_KEEPALIVE_POLL_S = 0.005

ChatHandler = Callable[["TwitchConnection", Sequence[IrcMessage], int], Awaitable[None]]
"""`(connection, messages, received_at_ms)`, awaited once per chunk read."""
EventHandler = Callable[["TwitchConnection", Event, int], None]
"""`(connection, event, received_at_ms)` for every event other than `ChatLines`."""


class TwitchError(Exception):
    """Base class of the errors of the Twitch source."""


class TwitchConnectError(TwitchError):
    """Opening the socket or logging in failed (refused, timed out, closed early)."""


class TwitchAuthenticationError(TwitchError, SourceStopped):
    """Twitch rejected the credentials. Retrying with the same ones cannot succeed."""

    @property
    def is_authentication(self) -> bool:
        return True

    def __init__(self, login: str, notice_text: str) -> None:
        self.login = login
        self.notice_text = notice_text
        super().__init__(
            f"Twitch rejected the login of {login!r} ({notice_text!r}). "
            "Check TWITCH_OAUTH_TOKEN (a valid, unexpired chat token starting with "
            "'oauth:') and that TWITCH_USERNAME is the account the token belongs to; "
            "or unset both to read chat anonymously."
        )


class DisconnectCause(StrEnum):
    """Why a connection ended; the values are `twitch_ingestion_irc_reconnects_total{cause}`."""

    CONNECTION_LOST = "connection_lost"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    CLOSED = "closed"  # we closed it (stop, hand-over, channel removal)


class TwitchConnection:
    """One socket to Twitch IRC. Use `connect()`, then `join()`, then `wait_closed()`."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        tls: bool,
        login: str,
        token: str | None,
        on_chat: ChatHandler,
        on_event: EventHandler,
        connect_timeout_s: float = 10.0,
        login_timeout_s: float = 15.0,
        ping_interval_s: float = 30.0,
        pong_timeout_s: float = 5.0,
        join_timeout_s: float = 10.0,
        read_buffer_bytes: int = 256 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        line_reader: LineReader | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._tls = tls
        self._ssl_context = ssl_context
        self.session = TwitchSession(
            login,
            token,
            ping_interval_s=ping_interval_s,
            pong_timeout_s=pong_timeout_s,
            join_timeout_s=join_timeout_s,
        )
        self.session.line_reader = line_reader
        self._on_chat = on_chat
        self._on_event = on_event
        self._connect_timeout_s = connect_timeout_s
        self._login_timeout_s = login_timeout_s
        self._keepalive_poll_s = max(
            _MIN_KEEPALIVE_POLL_S,
            min(ping_interval_s, pong_timeout_s, join_timeout_s) / _KEEPALIVE_POLLS_PER_TIMEOUT,
        )
        self._read_buffer_bytes = read_buffer_bytes
        self.status = ConnectionStatus.DISCONNECTED
        self.logged_in_at: float | None = None
        self.close_cause: DisconnectCause | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[DisconnectCause] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._logged_in: asyncio.Future[None] | None = None
        self._delivering = False
        self._closing = False
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"TwitchConnection({self.name!r}, {self.host}:{self.port}, {self.status.value})"

    # --- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket and log in.

        Raises `TwitchAuthenticationError` when Twitch rejects the credentials and
        `TwitchConnectError` for everything a retry may fix (refused, timeouts, EOF).
        """
        if self.status is not ConnectionStatus.DISCONNECTED or self._reader_task is not None:
            raise RuntimeError(f"{self.name}: connect() may be called once")
        loop = asyncio.get_running_loop()
        self.status = ConnectionStatus.CONNECTING
        context: ssl.SSLContext | None = None
        if self._tls:
            context = self._ssl_context or ssl.create_default_context()
        try:
            reader, writer = await asyncio.wait_for(
                _open_stream(
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.host if context is not None else None,
                    limit=self._read_buffer_bytes,
                ),
                self._connect_timeout_s,
            )
        except TimeoutError:
            self.status = ConnectionStatus.DISCONNECTED
            raise TwitchConnectError(
                f"connecting to {self.host}:{self.port} timed out after "
                f"{self._connect_timeout_s:g} s"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            self.status = ConnectionStatus.DISCONNECTED
            raise TwitchConnectError(
                f"the TLS certificate of {self.host}:{self.port} is not trusted "
                f"({exc.verify_message}): point SSL_CERT_FILE at the CA that signed it, "
                "or set TWITCH_IRC_TLS=false if the server speaks plain TCP"
            ) from None
        except OSError as exc:
            self.status = ConnectionStatus.DISCONNECTED
            raise TwitchConnectError(
                f"could not connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self._reader, self._writer = reader, writer
        self._logged_in = loop.create_future()
        writer.write(self.session.initiate(loop.time()))
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"{self.name}-reader")
        self._keepalive_task = asyncio.create_task(
            self._keepalive_loop(), name=f"{self.name}-keepalive"
        )
        try:
            await asyncio.wait_for(asyncio.shield(self._logged_in), self._login_timeout_s)
        except TimeoutError:
            await self.disconnect()
            raise TwitchConnectError(
                f"{self.host}:{self.port} did not confirm the login within "
                f"{self._login_timeout_s:g} s"
            ) from None
        except BaseException:
            await self.disconnect()
            raise
        self.logged_in_at = loop.time()
        self.status = ConnectionStatus.CONNECTED

    def close(self, cause: DisconnectCause = DisconnectCause.CLOSED) -> None:
        """Stop reading and drop the socket now; safe from any callback, idempotent.

        A chunk being delivered is still delivered: the reader stops after it.
        """
        if self._closing:
            return
        self._closing = True
        if self.close_cause is None:
            self.close_cause = cause
        if self._writer is not None:
            # abort(), not close(): nothing we still owe Twitch is worth waiting for,
            # and a half-open peer would make a graceful close hang.
            self._writer.transport.abort()

    async def disconnect(self) -> None:
        """Close and wait until the reader has finished (not from inside a callback)."""
        self.close(DisconnectCause.CLOSED)
        if self._reader_task is not None:
            await asyncio.wait([self._reader_task])
        self._cancel_keepalive()
        self.status = ConnectionStatus.DISCONNECTED

    async def wait_closed(self) -> DisconnectCause:
        """Wait until the connection has ended; return why.

        Re-raises what a callback raised (a failing sink must not be mistaken for a
        network problem). Cancelling the waiter does not cancel the reader.
        """
        if self._reader_task is None:
            return self.close_cause or DisconnectCause.CLOSED
        await asyncio.wait([self._reader_task])
        if self._failure is not None:
            raise self._failure
        if self._reader_task.cancelled():
            return DisconnectCause.CLOSED
        return self._reader_task.result()

    def cancel_reading(self) -> None:
        """Close, and abandon a chunk whose delivery is still blocked (shutdown deadline)."""
        self.close(DisconnectCause.CLOSED)
        if self._reader_task is not None and not self._reader_task.done():
            self._reader_task.cancel()

    async def wait_ended(self) -> None:
        """Wait until the reader has stopped; never raises (see `wait_closed` for why)."""
        if self._reader_task is not None:
            await asyncio.wait([self._reader_task])

    def is_connected(self) -> bool:
        """Logged in and still reading."""
        return self.status is ConnectionStatus.CONNECTED and not self._closing

    @property
    def is_closing(self) -> bool:
        return self._closing

    # --- commands --------------------------------------------------------------------

    def join(self, channels: Iterable[str]) -> None:
        """Send JOINs now (the caller has taken the rate-limit slots)."""
        if self._closing or self._writer is None:
            return
        self._writer.write(self.session.join(channels, asyncio.get_running_loop().time()))

    def part(self, channels: Iterable[str]) -> None:
        """Send PARTs now (Twitch does not rate-limit them)."""
        if self._closing or self._writer is None:
            return
        self._writer.write(self.session.part(channels))

    # --- tasks -----------------------------------------------------------------------

    async def _read_loop(self) -> DisconnectCause:
        assert self._reader is not None
        assert self._writer is not None
        reader, writer, session = self._reader, self._writer, self.session
        read_size = self._read_buffer_bytes
        loop = asyncio.get_running_loop()
        on_chat, on_event = self._on_chat, self._on_event
        try:
            while not self._closing:
                try:
                    data = await reader.read(read_size)
                except OSError:
                    data = b""
                if not data:
                    break
                received_at_ms = time.time_ns() // 1_000_000
                lines_before = session.lines_received
                events = session.receive_data(data, loop.time())
                BYTES_RECEIVED.inc(len(data))
                LINES_RECEIVED.inc(session.lines_received - lines_before)
                reply = session.data_to_send()
                if reply:
                    writer.write(reply)
                for event in events:
                    if type(event) is ChatLines:
                        self._delivering = True
                        try:
                            await on_chat(self, event.messages, received_at_ms)
                        finally:
                            self._delivering = False
                            session.reset_idle_timer(loop.time())
                    else:
                        self._note_event(event)
                        on_event(self, event, received_at_ms)
        except asyncio.CancelledError:
            self.close(DisconnectCause.CLOSED)
            self._fail_login(TwitchConnectError(f"{self.name}: cancelled during login"))
            raise
        except Exception as exc:
            # A callback failed (a sink bug, Kafka gone for good): end this connection
            # and let whoever awaits wait_closed() see the real error.
            self._failure = exc
            self._fail_login(exc)
            self.close(DisconnectCause.CLOSED)
        finally:
            self._cancel_keepalive()
            writer.transport.abort()
            self.status = ConnectionStatus.DISCONNECTED
        if self.close_cause is None:
            self.close_cause = DisconnectCause.CONNECTION_LOST
        self._closing = True
        self._fail_login(
            TwitchConnectError(f"{self.host}:{self.port} closed the connection during login")
        )
        return self.close_cause

    def _note_event(self, event: Event) -> None:
        future = self._logged_in
        if future is None or future.done():
            return
        if isinstance(event, LoggedIn):
            future.set_result(None)
        elif isinstance(event, AuthenticationFailed):
            future.set_exception(TwitchAuthenticationError(self.session.login, event.notice_text))

    def _fail_login(self, exc: Exception) -> None:
        future = self._logged_in
        if future is not None and not future.done():
            future.set_exception(exc)
            # Mark it retrieved: connect() may have timed out and stopped listening, and
            # then asyncio would log "Future exception was never retrieved".
            future.exception()

    async def _keepalive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        session = self.session
        try:
            while not self._closing:
                await asyncio.sleep(self._keepalive_poll_s)
                if self._delivering or self._writer is None:
                    continue  # backpressure, not silence: see reset_idle_timer
                now = loop.time()
                events = session.poll(now)
                ping = session.data_to_send()
                if ping and not self._closing:
                    self._writer.write(ping)
                for event in events:
                    if isinstance(event, KeepaliveTimedOut):
                        self.close(DisconnectCause.KEEPALIVE_TIMEOUT)
                        return
                    self._on_event(self, event, time.time_ns() // 1_000_000)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failure = exc
            self.close(DisconnectCause.CLOSED)

    def _cancel_keepalive(self) -> None:
        task = self._keepalive_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()


class _DrainingStreamReader(asyncio.StreamReader):
    """A `StreamReader` that hands out every byte received before a connection error.

    asyncio's `read()` raises a stored error (ECONNRESET from a reset, say) *before*
    returning what is already buffered, which would silently lose chat lines the
    kernel did deliver before the reset. Here the error waits until the buffer is empty.
    """

    _held_error: BaseException | None = None

    def set_exception(self, exc: BaseException) -> None:
        self._held_error = exc
        self.feed_eof()

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        if not data and self._held_error is not None:
            raise self._held_error
        return data


async def _open_stream(
    host: str,
    port: int,
    *,
    ssl: ssl.SSLContext | None,
    server_hostname: str | None,
    limit: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_connection`, with a reader that never drops received bytes."""
    loop = asyncio.get_running_loop()
    reader = _DrainingStreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(
        lambda: protocol, host, port, ssl=ssl, server_hostname=server_hostname
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
