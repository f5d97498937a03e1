"""A stream of chat (`streams.py`) written to every connection that joined each line's
channel: the pacing loop, the per-batch fan-out (the firehose's hot loop), the
accounting of lines nobody could receive, and the slow-consumer drop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog

from twitch_ingestion.simulator import wire
from twitch_ingestion.simulator.config import SimulatorConfig
from twitch_ingestion.simulator.connections import ChangeSignal, Connection, Connections
from twitch_ingestion.simulator.stats import SimulatorStats, StreamStats
from twitch_ingestion.simulator.streams import BatchItem, RatePacer, StreamSource

__all__ = ["StreamRunner"]

log = structlog.get_logger(__name__)

# Paced streams sleep at least this long between batches: below ~5 ms asyncio's timer
# overhead dominates and the rate gets no smoother.
_MIN_TICK_S = 0.005
# `_deliver`'s per-channel routing: (unchanged-line queues, queues needing CAP
# adaptation, whether any connection joined the channel).
_Route = tuple[list[list[bytes]], list[tuple[Connection, list[bytes]]], bool]


class StreamRunner:
    """Runs streams of chat into the connections' channels."""

    def __init__(
        self,
        config: SimulatorConfig,
        stats: SimulatorStats,
        connections: Connections,
        changes: ChangeSignal,
    ) -> None:
        self._config = config
        self._stats = stats
        self._connections = connections
        self._changes = changes

    async def run(self, source: StreamSource, stats: StreamStats) -> None:
        """Until the source is exhausted (or the task cancelled)."""
        loop = asyncio.get_running_loop()
        pacer = RatePacer(stats.rate, self._config.batch_lines, loop.time(), _MIN_TICK_S)
        try:
            while not source.exhausted():
                joined: Sequence[str] = ()
                if source.needs_joined_channels:
                    joined = self._connections.joined_channels()
                    if not joined:
                        await self._changes.event.wait()
                        pacer.restart(loop.time())
                        continue
                n = pacer.due(loop.time())
                if n == 0:
                    await asyncio.sleep(pacer.wait_s(loop.time()))
                    continue
                batch = source.take(n, joined, time.time_ns() // 1_000_000)
                pacer.sent(len(batch))
                for conn in self._deliver(batch, stats):
                    await self._drain(conn)
                if pacer.rate <= 0:
                    await asyncio.sleep(0)  # let readers, controls and other streams run
        except asyncio.CancelledError:
            stats.stopped = True
            raise
        except Exception as exc:
            stats.error = repr(exc)
            log.exception("simulator stream failed", stream=stats.stream_id)
            raise
        finally:
            stats.done = True
            self._changes.notify()
            log.info(
                "simulator stream finished",
                stream=stats.stream_id,
                kind=stats.kind,
                lines=stats.lines_emitted,
                undelivered=stats.lines_undelivered,
            )

    def _deliver(self, batch: list[BatchItem], stream: StreamStats) -> list[Connection]:
        """Queue each line on every connection that joined its channel; write once each.

        This is the firehose's hot loop: routes are resolved once per channel per batch,
        and each line is encoded once (joining mixed ASCII/non-ASCII `str`s first would
        widen the whole chunk to UCS-4 and cost several times more).
        """
        stats = self._stats
        written = stats.lines_written_by_command
        by_command = stream.lines_by_command
        privmsgs = stats.privmsgs_by_channel
        routes: dict[str, _Route] = {}
        queues: dict[int, list[bytes]] = {}
        touched: dict[int, Connection] = {}
        for channel, command, line, seq in batch:
            by_command[command] = by_command.get(command, 0) + 1
            route = routes.get(channel)
            if route is None:
                route = routes[channel] = self._route(channel, queues, touched)
            direct, adapted, joined = route
            if direct or adapted:
                data = line.encode()
                for queue in direct:
                    queue.append(data)
                count = len(direct)
                for conn, queue in adapted:
                    session = conn.session
                    out = wire.adapt_line_for_caps(
                        line, command, tags=session.has_tags, commands=session.has_commands
                    )
                    # None: withheld by the client's own CAP choice, which is not a loss.
                    if out is not None:
                        queue.append(out.encode())
                        count += 1
                if count:
                    written[command] = written.get(command, 0) + count
                if command == "PRIVMSG":
                    privmsgs[channel] = privmsgs.get(channel, 0) + 1
            else:
                stream.lines_undelivered += 1
                lost = stats.sent_while_silent if joined else stats.sent_while_unjoined
                lost[channel] = lost.get(channel, 0) + 1
                if seq:
                    _record_undelivered(stats.numbered_undelivered, channel, seq)
        stream.lines_emitted += len(batch)
        for conn_id, conn in touched.items():
            stats.bytes_written += conn.write(queues[conn_id])
        return list(touched.values())

    def _route(
        self, channel: str, queues: dict[int, list[bytes]], touched: dict[int, Connection]
    ) -> _Route:
        """Where a batch's lines for `channel` go: (queues taking lines unchanged,
        (connection, queue) pairs needing CAP adaptation, whether anyone joined)."""
        direct: list[list[bytes]] = []
        adapted: list[tuple[Connection, list[bytes]]] = []
        conns = self._connections.members(channel)
        if not conns:
            return direct, adapted, False
        for conn in conns.values():
            if conn.silent:
                continue
            queue = queues.get(conn.id)
            if queue is None:
                queue = queues[conn.id] = []
                touched[conn.id] = conn
            if conn.full_view:
                direct.append(queue)
            else:
                adapted.append((conn, queue))
        return direct, adapted, True

    async def _drain(self, conn: Connection) -> None:
        if conn.closing:
            return
        timeout = self._config.slow_consumer_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await conn.writer.drain()
        except TimeoutError:
            log.warning(
                "simulator dropped a slow consumer", connection=conn.id, not_drained_in_s=timeout
            )
            self._connections.drop(conn, "slow consumer")
        except (ConnectionError, OSError):
            self._connections.detach(conn, "connection lost while writing")


def _record_undelivered(
    ranges_by_channel: dict[str, list[tuple[int, int]]], channel: str, seq: int
) -> None:
    ranges = ranges_by_channel.setdefault(channel, [])
    if ranges and ranges[-1][1] == seq - 1:
        ranges[-1] = (ranges[-1][0], seq)
    else:
        ranges.append((seq, seq))
