"""Per-channel delivery modes of the IRC source in a fleet: the `ChannelFence`.

In a fleet (CHANNEL_SOURCE=kafka) the pool hands its chunks to a `ChannelGate`, which
hands them on to the record encoder. While no channel is being moved it is one attribute
test per chunk. During a move (`fleet/fence.py`) a channel is in one of these modes:

* **track** (old owner, given away, still produced): the identity of its last record
  handed on is remembered — that is its final mark;
* **hold** (new owner, waiting for the mark): its lines go to a `HoldWindow`;
* **flush** (the mark came): what the window kept after the mark is being handed on; lines
  read meanwhile queue behind it, so the channel stays in order;
* **drop** (old owner, mark published): its lines are dropped until it is parted — the
  new owner produces them.
* **standby** (`KAFKA_CHANNELS_REPLICAS=2`, `fleet/standby.py`): its lines go to a rolling
  `StandbyWindow` and nothing is produced, until a take-over hands on what the window
  holds after Kafka's copy (flush, then track: the channel is handed to its new owner).

With replicas 2 the gate also remembers the chunks it hands on between two progress
records (references only), so that `progress()` can say, every `PROGRESS_INTERVAL_S`,
where each produced channel stands without an identity computed per line.

Everything runs on the loop: a mode set by the fleet applies from the next chunk on, and
the chunk being handed on when `stop` is called was already counted in the mark.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence

from twitch_ingestion.fleet.fence import (
    HOLD_MAX_LINES,
    FinalMark,
    HoldWindow,
    Release,
)
from twitch_ingestion.fleet.standby import (
    WINDOW_LINE_OVERHEAD,
    StandbyConfig,
    StandbyWindow,
    TakeOver,
)
from twitch_ingestion.records.identity import MARKABLE_COMMANDS, irc_identity, last_identities
from twitch_ingestion.sources.irc.chunk_route import ChatSink
from twitch_ingestion.sources.irc.irc import IrcMessage

__all__ = ["ChannelGate"]

_Held = tuple[IrcMessage, int]
"""A held line and when its chunk was read (ms)."""


class _Mode(enum.Enum):
    TRACK = "track"
    HOLD = "hold"
    FLUSH = "flush"
    DROP = "drop"
    STANDBY = "standby"


class ChannelGate:
    """A `ChatSink` in front of the encoder that fences moved channels (module doc)."""

    def __init__(self, sink: ChatSink, *, max_lines: int = HOLD_MAX_LINES) -> None:
        self._sink = sink
        self._deliver = sink.deliver
        self._max_lines = max_lines
        self._modes: dict[str, _Mode] = {}
        self._marks: dict[str, str | None] = {}
        self._windows: dict[str, HoldWindow[_Held]] = {}
        self._flushing: dict[str, deque[_Held]] = {}
        # Given away while held or flushing: tracked once the flush is done.
        self._track_after: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._room_ids: Mapping[str, str] = {}
        self._standby: dict[str, StandbyWindow[_Held]] = {}
        # Chunks handed on since the last progress record (replicas 2 only; None: off).
        self._produced: list[Sequence[IrcMessage]] | None = None

    # --- the pool's ChatSink ------------------------------------------------------------

    async def deliver(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        if not self._modes:
            if self._produced is not None:
                self._produced.append(messages)
            await self._deliver(messages, received_at_ms, room_ids)
            return
        self._room_ids = room_ids
        modes = self._modes
        kept: list[IrcMessage] = []
        tracked = False
        now = asyncio.get_running_loop().time()
        for message in messages:
            channel = message.channel
            mode = modes.get(channel) if channel is not None else None
            if mode is None:
                kept.append(message)
            elif mode is _Mode.TRACK:
                tracked = True
                kept.append(message)
            elif mode is _Mode.HOLD:
                assert channel is not None
                identity = irc_identity(message) if message.command in MARKABLE_COMMANDS else None
                self._windows[channel].add(identity, (message, received_at_ms), now)
            elif mode is _Mode.FLUSH:
                assert channel is not None
                self._flushing[channel].append((message, received_at_ms))
            elif mode is _Mode.STANDBY:
                assert channel is not None
                identity = irc_identity(message) if message.command in MARKABLE_COMMANDS else None
                self._standby[channel].add(
                    identity,
                    (message, received_at_ms),
                    received_at_ms,
                    len(message.raw) + WINDOW_LINE_OVERHEAD,
                )
            # DROP: the new owner produces it
        if tracked:
            marks = self._marks
            tracking = [c for c, m in modes.items() if m is _Mode.TRACK]
            marks.update(last_identities(kept, tracking))
        if kept:
            if self._produced is not None:
                self._produced.append(kept)
            await self._deliver(kept, received_at_ms, room_ids)

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        self._sink.dead_letter(raw, reason, received_at_ms)

    # --- the fleet's ChannelFence ---------------------------------------------------------

    def track(self, channels: Iterable[str]) -> None:
        for channel in channels:
            mode = self._modes.get(channel)
            if mode is None:
                self._modes[channel] = _Mode.TRACK
                self._marks[channel] = None
            elif mode in (_Mode.HOLD, _Mode.FLUSH):
                self._track_after.add(channel)

    def produce(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self._track_after.discard(channel)
            if self._modes.get(channel) in (_Mode.TRACK, _Mode.DROP, _Mode.STANDBY):
                del self._modes[channel]
                self._marks.pop(channel, None)
                self._standby.pop(channel, None)

    def hold(self, channels: Iterable[str], *, read_elsewhere: set[str]) -> None:
        for channel in channels:
            if self._modes.get(channel) in (_Mode.HOLD, _Mode.FLUSH):
                continue
            self._track_after.discard(channel)
            self._standby.pop(channel, None)  # stood by, now its owner: fenced as any move
            self._windows[channel] = HoldWindow(
                expects_mark=channel in read_elsewhere, max_lines=self._max_lines
            )
            self._modes[channel] = _Mode.HOLD
            self._marks.pop(channel, None)

    def holding(self) -> list[str]:
        return list(self._windows)

    def expect_mark(self, channels: Iterable[str]) -> None:
        for channel in channels:
            window = self._windows.get(channel)
            if window is not None:
                window.expect_mark()

    def stop(self, channels: Iterable[str]) -> dict[str, str | None]:
        marks: dict[str, str | None] = {}
        for channel in channels:
            mode = self._modes.get(channel)
            if mode is _Mode.TRACK:
                marks[channel] = self._marks.pop(channel, None)
            elif mode is _Mode.HOLD:
                # Never lose what was read: hand on all of it (its old owner may have
                # produced some too), and say where it ends.
                items, _ = self._windows.pop(channel).release(None)
                self._start_flush(channel, items)
                marks[channel] = _last_identity(channel, items)
            elif mode is _Mode.FLUSH:
                queued = _last_identity(channel, self._flushing[channel])
                marks[channel] = queued if queued is not None else self._marks.get(channel)
            else:
                continue
            # A flush under way hands on what it has queued; nothing read from now on.
            self._modes[channel] = _Mode.DROP
            self._track_after.discard(channel)
        return marks

    def release(self, channel: str, mark: FinalMark) -> Release | None:
        window = self._windows.get(channel)
        if window is None or self._modes.get(channel) is not _Mode.HOLD:
            return None
        del self._windows[channel]
        items, release = window.release(mark)
        self._start_flush(channel, items)
        return release

    def expire(self, now: float) -> dict[str, Release]:
        expired: dict[str, Release] = {}
        for channel, window in list(self._windows.items()):
            if window.expired(now):
                del self._windows[channel]
                items, release = window.release(None)
                self._start_flush(channel, items)
                expired[channel] = release
        return expired

    def forget(self, channels: Iterable[str]) -> None:
        """Removed from the fleet: no mode (what is held is handed on first)."""
        for channel in channels:
            self._track_after.discard(channel)
            mode = self._modes.get(channel)
            if mode is _Mode.HOLD:
                items, _ = self._windows.pop(channel).release(None)
                self._start_flush(channel, items)
            elif mode in (_Mode.TRACK, _Mode.DROP):
                del self._modes[channel]
                self._marks.pop(channel, None)
            elif mode is _Mode.STANDBY:
                # Its owner produces it until parted; the standby drops it until parted.
                self._modes[channel] = _Mode.DROP
                del self._standby[channel]

    # --- the fleet's StandbyFence (KAFKA_CHANNELS_REPLICAS=2) ---------------------------------

    def stand_by(self, channels: Iterable[str], config: StandbyConfig) -> None:
        for channel in channels:
            if self._modes.get(channel) in (_Mode.HOLD, _Mode.FLUSH, _Mode.TRACK):
                continue  # read and produced (or about to be) here: not a standby's
            if self._modes.get(channel) is _Mode.STANDBY:
                continue
            self._track_after.discard(channel)
            self._marks.pop(channel, None)
            self._standby[channel] = StandbyWindow(
                window_s=config.window_s, max_bytes=config.window_bytes
            )
            self._modes[channel] = _Mode.STANDBY

    def standing_by(self) -> list[str]:
        return list(self._standby)

    def stop_standing_by(self, channels: Iterable[str]) -> None:
        # Dropped, not produced, until the pool has parted them: their owner produces
        # them, and a line read before the PART takes effect must not reach Kafka twice.
        for channel in channels:
            if self._modes.get(channel) is _Mode.STANDBY:
                self._modes[channel] = _Mode.DROP
                del self._standby[channel]

    def freeze(self, channels: Iterable[str]) -> None:
        for channel in channels:
            window = self._standby.get(channel)
            if window is not None:
                window.frozen = True

    def tail_start_ms(self, channel: str, progress_identity: str | None) -> int | None:
        window = self._standby.get(channel)
        if window is None or not len(window):
            return None
        if progress_identity is not None:
            read_ms = window.read_ms_of(progress_identity)
            if read_ms is not None:
                return read_ms
        return window.oldest_ms

    def window_identities(self, channel: str) -> set[str]:
        window = self._standby.get(channel)
        if window is None:
            return set()
        return {identity for identity in window.identities() if identity is not None}

    def take_over(
        self, channel: str, produced: Collection[str], *, last_produced_ms: int, track: bool
    ) -> TakeOver | None:
        window = self._standby.pop(channel, None)
        if window is None or self._modes.get(channel) is not _Mode.STANDBY:
            return None
        items, decision = window.take(produced, last_produced_ms=last_produced_ms)
        if track:
            self._track_after.add(channel)
        self._start_flush(channel, items)
        return decision

    def enable_progress(self) -> None:
        if self._produced is None:
            self._produced = []

    def progress(self) -> dict[str, str]:
        chunks = self._produced
        if not chunks:
            return {}
        self._produced = []
        found: dict[str, str] = {}
        for chunk in reversed(chunks):
            for channel, identity in last_identities(chunk).items():
                found.setdefault(channel, identity)
        return found

    def window_bytes(self) -> int:
        return sum(window.bytes for window in self._standby.values())

    def expire_windows(self, now_ms: int) -> None:
        for window in self._standby.values():
            window.expire(now_ms)

    # --- flushing a released window --------------------------------------------------------

    def _start_flush(self, channel: str, items: list[_Held]) -> None:
        """Hand `items` on ahead of whatever the channel reads next; then produce normally."""
        self._flushing[channel] = deque(items)
        self._modes[channel] = _Mode.FLUSH
        task = asyncio.get_running_loop().create_task(
            self._flush(channel), name=f"gate-flush-{channel}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, channel: str) -> None:
        queue = self._flushing[channel]
        while queue:
            received_at_ms = queue[0][1]
            batch: list[IrcMessage] = []
            while queue and queue[0][1] == received_at_ms:
                batch.append(queue.popleft()[0])
            identity = _last_identity(channel, ((m, 0) for m in batch))
            if identity is not None:
                self._marks[channel] = identity
            if self._produced is not None:
                self._produced.append(batch)
            await self._deliver(batch, received_at_ms, self._room_ids)
        if self._flushing.get(channel) is not queue:
            return  # the channel moved again meanwhile: a newer flush owns it
        del self._flushing[channel]
        if self._modes.get(channel) is not _Mode.FLUSH:
            return  # stopped meanwhile (drop)
        if channel in self._track_after:
            # Given away meanwhile: its mark starts at the last line just handed on.
            self._track_after.discard(channel)
            self._modes[channel] = _Mode.TRACK
            self._marks.setdefault(channel, None)
        else:
            del self._modes[channel]
            self._marks.pop(channel, None)


def _last_identity(channel: str, items: Iterable[_Held]) -> str | None:
    return last_identities([message for message, _ in items], (channel,)).get(channel)
