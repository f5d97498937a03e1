"""What a stream sends: replayed, generated and numbered lines, one batch at a time.

A source only produces lines; the server paces it, routes each line to the connections
that joined its channel and does the accounting. Every line is produced with its CRLF so
the server only has to encode it and join a batch into one write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol

from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.replay import CorpusLine, serial_uuid
from twitch_ingestion.simulator.stats import StreamStats
from twitch_ingestion.simulator.wire import derived_uuid, user_id_for

__all__ = [
    "NUMBERED_SENDER",
    "BatchItem",
    "GeneratedSource",
    "NumberedSource",
    "RatePacer",
    "ReplaySource",
    "StreamHandle",
    "StreamSource",
]

NUMBERED_SENDER = "seq_sender"


# (channel login, command, wire line with CRLF, numbered-stream sequence number or 0).
# A plain tuple, not a NamedTuple: one is built per line on the firehose path and a
# NamedTuple's Python-level __new__ costs about as much as rendering the line.
BatchItem = tuple[str, str, str, int]


class StreamSource(Protocol):
    kind: str
    needs_joined_channels: bool
    """True when the source sends to whatever is joined (and waits while nothing is)."""

    def exhausted(self) -> bool: ...

    def take(self, n: int, joined: Sequence[str], now_ms: int) -> list[BatchItem]:
        """Up to `n` lines; `joined` is non-empty when `needs_joined_channels`."""
        ...


class ReplaySource:
    """Lines of a corpus, `loops` times (None: forever), each once per pass."""

    kind = "replay"

    def __init__(
        self,
        lines: Sequence[CorpusLine],
        *,
        line_span: int,
        loops: int | None,
        channels: Sequence[str] | None,
        rewrite_channel: bool,
        fresh_timestamps: bool,
        room_id_for: Callable[[str], str],
        next_pass: Callable[[], int],
        stats: StreamStats,
    ) -> None:
        self._lines = lines
        self._line_span = line_span
        self._loops = loops
        self._channels = list(channels) if channels else None
        self._rewrite_channel = rewrite_channel
        self._fresh_timestamps = fresh_timestamps
        self._room_id_for = room_id_for
        self._next_pass = next_pass
        self._stats = stats
        self._index = 0
        self._loop = 0
        self._pass_no = next_pass() if lines and loops != 0 else 0
        self._round_robin = 0
        self.needs_joined_channels = rewrite_channel and self._channels is None

    def exhausted(self) -> bool:
        return not self._lines or (self._loops is not None and self._loop >= self._loops)

    def take(self, n: int, joined: Sequence[str], now_ms: int) -> list[BatchItem]:
        batch: list[BatchItem] = []
        while len(batch) < n and not self.exhausted():
            end = min(len(self._lines), self._index + n - len(batch))
            self._render(self._index, end, self._channels or joined, now_ms, batch)
            self._index = end
            if end == len(self._lines):
                self._index = 0
                self._loop += 1
                self._stats.loops_completed = self._loop
                if not self.exhausted():
                    self._pass_no = self._next_pass()
        return batch

    def _render(
        self, start: int, end: int, targets: Sequence[str], now_ms: int, batch: list[BatchItem]
    ) -> None:
        """Append lines[start:end] to `batch`: the hot loop of a replay, hence the locals."""
        append = batch.append
        fresh_ts = str(now_ms) if self._fresh_timestamps else ""
        rewrite = self._rewrite_channel
        pass_no = self._pass_no
        serial_base = pass_no * self._line_span
        room_ids: dict[str, str] = {}
        target_count = len(targets)
        round_robin = self._round_robin
        for line in self._lines[start:end]:
            original_channel, room_id, sent_ts, message_id, target_id = line.originals
            if rewrite:
                channel = targets[round_robin % target_count]
                round_robin += 1
                room_id = room_ids.get(channel) or room_ids.setdefault(
                    channel, self._room_id_for(channel)
                )
                login = channel
            else:
                channel = original_channel
                login = line.channel_login
            if pass_no or line.id_occurrence:
                if message_id:
                    message_id = serial_uuid(message_id, serial_base + line.line_no)
                if pass_no and line.target_line_no:
                    target_id = serial_uuid(target_id, serial_base + line.target_line_no)
            text = line.render((channel, room_id, fresh_ts or sent_ts, message_id, target_id))
            append((login, line.command, text, 0))
        self._round_robin = round_robin


class GeneratedSource:
    """Synthetic PRIVMSGs over the given (or the currently joined) channels."""

    kind = "generated"

    def __init__(
        self,
        generator: ChatGenerator,
        *,
        count: int | None,
        channels: Sequence[str] | None,
        room_id_for: Callable[[str], str],
    ) -> None:
        self._generator = generator
        self._remaining = count
        self._channels = list(channels) if channels else None
        self._room_id_for = room_id_for
        self._round_robin = 0
        self.needs_joined_channels = self._channels is None

    def exhausted(self) -> bool:
        return self._remaining is not None and self._remaining <= 0

    def take(self, n: int, joined: Sequence[str], now_ms: int) -> list[BatchItem]:
        if self._remaining is not None:
            n = min(n, self._remaining)
            self._remaining -= n
        targets = self._channels or joined
        privmsg = self._generator.privmsg
        batch: list[BatchItem] = []
        for _ in range(n):
            channel = targets[self._round_robin % len(targets)]
            self._round_robin += 1
            line = privmsg(channel, self._room_id_for(channel), now_ms)
            batch.append((channel, "PRIVMSG", line + "\r\n", 0))
        return batch


class NumberedSource:
    """`seq <channel> <n>` PRIVMSGs, round-robin over channels, `count` per channel.

    Sequence numbers live in `high_water` (the simulator's, shared by every numbered
    stream), so a channel's sequence continues across streams and client reconnects.
    """

    kind = "numbered"
    needs_joined_channels = False

    def __init__(
        self,
        channels: Sequence[str],
        *,
        count: int | None,
        high_water: dict[str, int],
        room_id_for: Callable[[str], str],
        id_salt: int,
    ) -> None:
        if not channels:
            raise ValueError("a numbered stream needs at least one channel")
        self._channels = list(channels)
        self._remaining = None if count is None else count * len(channels)
        self._high_water = high_water
        self._round_robin = 0
        user_id = user_id_for(NUMBERED_SENDER)
        # Everything but the id, timestamp and text is fixed per channel: pre-render it.
        self._templates: dict[str, tuple[str, str, str]] = {}
        for channel in self._channels:
            room_id = room_id_for(channel)
            head = (
                "@badge-info=;badges=;color=#1E90FF;display-name=" + NUMBERED_SENDER + ";emotes=;"
                "first-msg=0;flags=;id="
            )
            middle = f";mod=0;returning-chatter=0;room-id={room_id};subscriber=0;tmi-sent-ts="
            tail = (
                f";turbo=0;user-id={user_id};user-type= :{NUMBERED_SENDER}!{NUMBERED_SENDER}"
                f"@{NUMBERED_SENDER}.tmi.twitch.tv PRIVMSG #{channel} :seq {channel} "
            )
            # id = a UUID whose first 20 hex digits are fixed per (simulator, channel) and
            # whose last 12 are the sequence number: unique, stable, and free to format.
            id_prefix = derived_uuid("numbered", id_salt, channel)[:24]
            self._templates[channel] = (head + id_prefix, middle, tail)

    def exhausted(self) -> bool:
        return self._remaining is not None and self._remaining <= 0

    def take(self, n: int, joined: Sequence[str], now_ms: int) -> list[BatchItem]:
        if self._remaining is not None:
            n = min(n, self._remaining)
            self._remaining -= n
        channels = self._channels
        count = len(channels)
        templates = self._templates
        high_water = self._high_water
        ts = str(now_ms)
        batch: list[BatchItem] = []
        append = batch.append
        index = self._round_robin
        for _ in range(n):
            channel = channels[index % count]
            index += 1
            seq = high_water.get(channel, 0) + 1
            high_water[channel] = seq
            head, middle, tail = templates[channel]
            append((channel, "PRIVMSG", f"{head}{seq:012x}{middle}{ts}{tail}{seq}\r\n", seq))
        self._round_robin = index
        return batch


class RatePacer:
    """How many lines a stream may send at a given time: `rate` per second since it
    (re)started, at most `batch_lines` at once (rate 0: always a full batch).

    Pure (the time is passed in) so the pacing is tested with made-up clocks; the
    server's stream loop only sleeps for `wait_s()` and sends what `due()` allows.
    """

    def __init__(self, rate: float, batch_lines: int, now: float, min_wait_s: float) -> None:
        self.rate = rate
        self._batch_lines = batch_lines
        self._min_wait_s = min_wait_s
        self._started = now
        self._sent = 0

    def restart(self, now: float) -> None:
        """Start counting afresh (after a pause nobody could receive): no burst to catch up."""
        self._started = now
        self._sent = 0

    def due(self, now: float) -> int:
        """Lines to send now; 0 means wait `wait_s(now)` first."""
        if self.rate <= 0:
            return self._batch_lines
        owed = int((now - self._started) * self.rate) - self._sent
        return max(0, min(owed, self._batch_lines))

    def wait_s(self, now: float) -> float:
        """How long until the next line is due (at least `min_wait_s`)."""
        if self.rate <= 0:
            return 0.0
        return max((self._sent + 1) / self.rate - (now - self._started), self._min_wait_s)

    def sent(self, lines: int) -> None:
        self._sent += lines


class StreamHandle:
    """A running stream: await it (or `wait()`) for completion, `stop()` to end it early."""

    def __init__(self, stats: StreamStats, task: asyncio.Task[None]) -> None:
        self.stats = stats
        """Live counters; read them on the simulator's loop."""
        self._task = task

    @property
    def stream_id(self) -> int:
        return self.stats.stream_id

    @property
    def kind(self) -> str:
        return self.stats.kind

    def done(self) -> bool:
        return self._task.done()

    def stop(self) -> None:
        """Cancel the stream; lines already written stay written."""
        self._task.cancel()

    # A `timeout` parameter (not `asyncio.timeout` at the call site) because the same
    # signature is proxied to synchronous callers by `SimulatorThread`.
    async def wait(self, timeout: float | None = None) -> StreamStats:  # noqa: ASYNC109
        """Wait for the stream to finish; raises TimeoutError, or the stream's error."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise
        return self.stats

    def __await__(self) -> Generator[Any, None, StreamStats]:
        return self.wait().__await__()
