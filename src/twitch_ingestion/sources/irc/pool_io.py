"""The pool's waiting: small tasks that await I/O and report back to the owner.

`pool_owner.PoolOwner` never awaits; whatever has to wait is one of these tasks, and
each ends its wait by submitting a command (`pool_commands`) — it changes nothing
itself:

* `connect` — sleep the backoff delay, wait for the pacer's turn, open and log in a
  connection → `ConnectionOpened` or `ConnectFailed`;
* `watch` — wait until a connection has stopped reading → `ConnectionEnded`;
* `feed_joins` — wait for the JOIN limiter whenever a join queue holds channels →
  `JoinTurn` (the owner takes the channels off the queue and sends the JOINs);
* `closed` — at shutdown, wait until a halted slot's sockets have stopped reading.

What a connection's session reports on the way (`ConnectionEvent`) comes through the
`on_event` handler these connections are given. An unexpected error in a task is a
bug: it ends the pool's `run()` with that error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import ParamSpec

from twitch_ingestion.sources.irc.chunk_route import ChunkRoute
from twitch_ingestion.sources.irc.connection import (
    DisconnectCause,
    TwitchAuthenticationError,
    TwitchConnectError,
)
from twitch_ingestion.sources.irc.join_limiter import JoinRateLimiter
from twitch_ingestion.sources.irc.open_pacer import OpenPacer
from twitch_ingestion.sources.irc.pool_commands import (
    ConnectFailed,
    ConnectionEnded,
    ConnectionEvent,
    ConnectionOpened,
    JoinTurn,
    PoolCommand,
)
from twitch_ingestion.sources.irc.session import Event
from twitch_ingestion.sources.irc.slot import ConnectionFactory, JoinQueue, PoolConnection

__all__ = ["PoolIO"]

_P = ParamSpec("_P")

# Most channels one JOIN round may take from the limiter; the session splits them into
# 512-byte lines. Bounded so one slot's backlog cannot hold the limiter's lock for a
# whole window while the other slots wait.
_MAX_JOIN_BATCH = 20


class PoolIO:
    """Starts the pool's waiting tasks; each reports back through `submit`."""

    def __init__(
        self,
        *,
        submit: Callable[[PoolCommand], None],
        fail: Callable[[BaseException], None],
        open_connection: ConnectionFactory,
        pacer: OpenPacer,
        limiter: JoinRateLimiter,
    ) -> None:
        self._submit = submit
        self._fail = fail
        self._open_connection = open_connection
        self._pacer = pacer
        self._limiter = limiter

    def connect(
        self, slot_id: int, name: str, delay_s: float, route: ChunkRoute, *, replacement: bool
    ) -> asyncio.Task[None]:
        """Open connection `name` for slot `slot_id` after `delay_s` and the pacer."""
        return self._start(
            f"{name}-connect", self._connect, slot_id, name, delay_s, route, replacement
        )

    def watch(self, slot_id: int, conn: PoolConnection) -> asyncio.Task[None]:
        """Report when `conn` has stopped reading, and why."""
        return self._start(f"{conn.name}-watch", self._watch, slot_id, conn)

    def feed_joins(self, slot_id: int, queue: JoinQueue) -> asyncio.Task[None]:
        """Ask the limiter for turns whenever `queue` holds channels to JOIN."""
        return self._start(f"{queue.conn.name}-joiner", self._feed_joins, slot_id, queue)

    @staticmethod
    async def closed(tasks: Sequence[asyncio.Task[None]], conns: Sequence[PoolConnection]) -> None:
        """Wait until cancelled `tasks` are done and every one of `conns` has stopped
        reading (a chunk being delivered is still delivered)."""
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in conns:
            await conn.disconnect()

    # --- the tasks ---------------------------------------------------------------------

    async def _connect(
        self, slot_id: int, name: str, delay_s: float, route: ChunkRoute, replacement: bool
    ) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await self._pacer.wait_turn()
        conn = self._open_connection(name, route.deliver, self._reporter(slot_id))
        try:
            await conn.connect()
        except (TwitchAuthenticationError, TwitchConnectError) as exc:
            self._submit(ConnectFailed(slot_id, exc, replacement))
            return
        self._submit(ConnectionOpened(slot_id, conn, replacement))

    def _reporter(self, slot_id: int) -> Callable[[PoolConnection, Event, int], None]:
        submit = self._submit

        def report(conn: PoolConnection, event: Event, received_at_ms: int) -> None:
            submit(ConnectionEvent(slot_id, conn, event, received_at_ms))

        return report

    async def _watch(self, slot_id: int, conn: PoolConnection) -> None:
        try:
            cause = await conn.wait_closed()
        except Exception as exc:  # its chunk handling failed: the sink's error
            self._submit(ConnectionEnded(slot_id, conn, DisconnectCause.CLOSED, exc))
            return
        self._submit(ConnectionEnded(slot_id, conn, cause))

    async def _feed_joins(self, slot_id: int, queue: JoinQueue) -> None:
        while True:
            if not queue.channels:
                queue.wakeup.clear()
                await queue.wakeup.wait()
                continue
            granted = await self._limiter.acquire(min(len(queue.channels), _MAX_JOIN_BATCH))
            self._submit(JoinTurn(slot_id, queue.conn, granted))

    def _start(
        self,
        name: str,
        work: Callable[_P, Awaitable[None]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await work(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._fail(exc)

        return asyncio.get_running_loop().create_task(guarded(), name=name)
