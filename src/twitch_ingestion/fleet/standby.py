"""Hot standby for crashes (`KAFKA_CHANNELS_REPLICAS=2`): the pure decisions.

With replicas 2 every channel is read by its **owner** (the instance the consumer group
gave its control-topic partition), which produces it, and by one **standby**, which
keeps a rolling window of what it reads (`StandbyWindow`) and produces nothing. When
the owner dies without a hand-off (SIGKILL, a lost machine), the standby takes over:
it settles where Kafka's copy of the channel ends and produces what it holds after that
point (`takeover_start`), then hands the channel to whoever the group names as its new
owner with the fenced hand-off of `fence.py`.

Decided here, with identities, clock readings and reports in:

* **who is standby** (`standby_for`): rendezvous hashing of the channel over the live
  members, the owner excluded. Every instance computes it alike from what it knows, with
  no coordinator; a member joining or leaving moves only the channels it wins or held.
* **who is alive** (`Liveness`): every instance with replicas 2 publishes a progress
  record (`ProgressMark`) every `PROGRESS_INTERVAL_S`; one not heard for `DEAD_AFTER_S`
  is dead. 3 s is six progress intervals: a 2-core machine shared by four busy test
  sessions delays a loop by a few hundred ms, never seconds, in every run measured —
  and a false alarm costs repeats, not loss (the standby produces beside a live owner
  until the owner's next report ends it). A clean stop deletes the progress record
  (tombstone): a stopped instance handed off and is gone, not dead.
* **which held lines are produced** (`takeover_start`): those after the last one that
  Kafka holds.

Pure: the IRC source's `ChannelGate` holds the windows; `fleet/standby_keeper.py` runs
the decisions on the loop and `fleet/tail_read.py` reads the tail of the topics.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import msgspec

__all__ = [
    "DEAD_AFTER_S",
    "PROGRESS_INTERVAL_S",
    "PROGRESS_KEY_PREFIX",
    "TAIL_SLACK_MS",
    "Liveness",
    "ProgressMark",
    "StandbyConfig",
    "StandbyFence",
    "StandbyWindow",
    "TakeOver",
    "TakeOverOutcome",
    "decode_progress",
    "encode_progress",
    "standby_channels",
    "standby_for",
    "takeover_start",
]

PROGRESS_INTERVAL_S: Final = 0.5
"""How often a producing instance publishes its progress (and so says it is alive)."""
DEAD_AFTER_S: Final = 3.0
"""An instance not heard for this long is dead (module doc: why 3 s)."""
PROGRESS_KEY_PREFIX: Final = "progress/"
"""Progress records share the compacted instances topic, keyed `progress/<INSTANCE_ID>`
(one record per instance per interval, all its channels in it)."""
TAIL_SLACK_MS: Final = 10_000
"""The tail of the topics is read from this long before the oldest held line that may
have been produced: records carry the time their line was read, on another machine's
clock, and a hand-over flush produces lines read up to seconds before."""
WINDOW_LINE_OVERHEAD: Final = 200
"""Bytes a held line costs beyond its raw text (the parsed message, its identity and
the deque slots), so that the byte cap bounds memory, not text."""


@dataclass(frozen=True, slots=True)
class StandbyConfig:
    """KAFKA_CHANNELS_REPLICAS and the standby window (`component_configs.standby_config`)."""

    replicas: int = 1
    window_s: float = 60.0
    window_bytes: int = 1_048_576
    """Per channel."""
    dead_after_s: float = DEAD_AFTER_S

    @property
    def enabled(self) -> bool:
        return self.replicas >= 2


# --- progress records ----------------------------------------------------------------------


class ProgressMark(msgspec.Struct, frozen=True, kw_only=True):
    """A producing instance's periodic word: alive, and where its channels stand."""

    instance_id: str
    at_ms: int
    identities: dict[str, str] = {}
    """Channel → identity of the last record handed to the sink, for the channels that
    produced something since the previous progress record."""


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ProgressMark)


def encode_progress(mark: ProgressMark) -> bytes:
    return _ENCODER.encode(mark)


def decode_progress(value: bytes) -> ProgressMark | None:
    try:
        return _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


# --- who is standby ------------------------------------------------------------------------


def _score(channel: str, member: str) -> int:
    # A stable hash (Python's hash() differs per process): every instance must agree.
    digest = hashlib.blake2b(f"{channel}\0{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def standby_for(channel: str, owner: str | None, members: Iterable[str]) -> str | None:
    """The standby of `channel`: the member other than `owner` with the highest
    rendezvous score (ties, impossible in practice, go to the smaller name); None when
    there is no other member."""
    best: tuple[int, str] | None = None
    for member in members:
        if member == owner:
            continue
        candidate = (_score(channel, member), member)
        if best is None or candidate[0] > best[0] or (candidate[0] == best[0] and member < best[1]):
            best = candidate
    return None if best is None else best[1]


def standby_channels(me: str, owners: Mapping[str, str], members: Collection[str]) -> set[str]:
    """Channels `me` stands by for: those owned by another live member that `me` wins."""
    if me not in members:
        members = {*members, me}
    return {
        channel
        for channel, owner in owners.items()
        if owner != me and owner in members and standby_for(channel, owner, members) == me
    }


# --- who is alive --------------------------------------------------------------------------


class Liveness:
    """When each other instance was last heard (loop clock), and which are dead."""

    def __init__(self, dead_after_s: float = DEAD_AFTER_S) -> None:
        self._dead_after_s = dead_after_s
        self._heard: dict[str, float] = {}
        self._dead: set[str] = set()

    def heard(self, instance: str, now: float) -> bool:
        """A progress record from `instance`; True if it had been declared dead (a false
        alarm, or it came back)."""
        self._heard[instance] = now
        if instance in self._dead:
            self._dead.discard(instance)
            return True
        return False

    def new(self, instance: str) -> bool:
        """Never heard before (nor since it stopped)."""
        return instance not in self._heard

    def gone(self, instance: str) -> None:
        """Stopped cleanly (its progress record deleted): neither live nor dead."""
        self._heard.pop(instance, None)
        self._dead.discard(instance)

    def newly_dead(self, now: float) -> list[str]:
        """Instances silent for `dead_after_s` since the last call: each declared once."""
        dead = [
            instance
            for instance, at in self._heard.items()
            if instance not in self._dead and now - at >= self._dead_after_s
        ]
        self._dead.update(dead)
        return sorted(dead)

    def live(self) -> set[str]:
        """Heard and not declared dead."""
        return {instance for instance in self._heard if instance not in self._dead}


# --- which held lines are produced ------------------------------------------------------------


class TakeOverOutcome(enum.Enum):
    AFTER_TAIL = "after_tail"
    """The last record Kafka holds of the channel is in the window: exact."""
    BEFORE_WINDOW = "before_window"
    """Nothing of the window is in Kafka and no line read after Kafka's last record was
    dropped from the window: everything held is new, exact."""
    GAP = "gap"
    """The window dropped lines read after Kafka's last record: they are lost."""

    @property
    def exact(self) -> bool:
        return self is not TakeOverOutcome.GAP


@dataclass(frozen=True, slots=True)
class TakeOver:
    """Which held lines to produce (those from `start` on) and how that was settled."""

    start: int
    outcome: TakeOverOutcome
    gap_from_ms: int | None = None
    """For a gap: lines read after this (Kafka's last record) and before `gap_to_ms`
    (the oldest line held) may be lost."""
    gap_to_ms: int | None = None


def takeover_start(
    identities: Sequence[str | None],
    produced: Collection[str],
    *,
    last_produced_ms: int,
    dropped_until_ms: int | None,
    oldest_held_ms: int | None,
) -> TakeOver:
    """Where a standby starts producing a channel whose held lines have `identities`
    (oldest first), given the identities Kafka holds of it (`produced`: those of the
    tail read), the read time of Kafka's last record of it (or the start of the tail
    read, when the tail holds none), and the read time of the newest line the window
    dropped (None: none)."""
    for index in range(len(identities) - 1, -1, -1):
        identity = identities[index]
        if identity is not None and identity in produced:
            return TakeOver(index + 1, TakeOverOutcome.AFTER_TAIL)
    if dropped_until_ms is not None and dropped_until_ms > last_produced_ms:
        return TakeOver(
            0,
            TakeOverOutcome.GAP,
            gap_from_ms=last_produced_ms,
            gap_to_ms=oldest_held_ms if oldest_held_ms is not None else dropped_until_ms,
        )
    return TakeOver(0, TakeOverOutcome.BEFORE_WINDOW)


T = TypeVar("T")


class StandbyWindow(Generic[T]):
    """What a standby read of one channel in the last `window_s`, at most `max_bytes`.

    Lines older than `window_s` (by their read time) or beyond the byte cap are dropped,
    oldest first, and the newest dropped line's read time kept: a take-over whose point
    in Kafka is older than it has lost the lines between (`takeover_start`). `freeze`
    stops dropping by age while a take-over settles where to start (the byte cap still
    holds, so memory stays bounded, and what it drops then is counted the same way).
    """

    __slots__ = (
        "_bytes",
        "_items",
        "dropped_until_ms",
        "frozen",
        "max_bytes",
        "window_ms",
    )

    def __init__(self, *, window_s: float, max_bytes: int) -> None:
        self._items: deque[tuple[str | None, T, int, int]] = deque()
        self._bytes = 0
        self.window_ms = int(window_s * 1000)
        self.max_bytes = max_bytes
        self.dropped_until_ms: int | None = None
        self.frozen = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def oldest_ms(self) -> int | None:
        return self._items[0][2] if self._items else None

    def add(self, identity: str | None, item: T, read_ms: int, size: int) -> None:
        self._items.append((identity, item, read_ms, size))
        self._bytes += size
        self._trim(read_ms)

    def expire(self, now_ms: int) -> None:
        """Drop what is older than the window (called now and then on a quiet channel)."""
        self._trim(now_ms)

    def _trim(self, now_ms: int) -> None:
        items = self._items
        horizon = None if self.frozen else now_ms - self.window_ms
        while items and (
            self._bytes > self.max_bytes or (horizon is not None and items[0][2] < horizon)
        ):
            _, _, read_ms, size = items.popleft()
            self._bytes -= size
            if self.dropped_until_ms is None or read_ms > self.dropped_until_ms:
                self.dropped_until_ms = read_ms

    def identities(self) -> list[str | None]:
        return [identity for identity, _, _, _ in self._items]

    def read_ms_of(self, identity: str) -> int | None:
        """When the newest held line with `identity` was read (None: not held)."""
        for held, _, read_ms, _ in reversed(self._items):
            if held == identity:
                return read_ms
        return None

    def take(self, produced: Collection[str], *, last_produced_ms: int) -> tuple[list[T], TakeOver]:
        """The held items to produce, Kafka's copy being `produced` (`takeover_start`);
        the window is emptied."""
        decision = takeover_start(
            self.identities(),
            produced,
            last_produced_ms=last_produced_ms,
            dropped_until_ms=self.dropped_until_ms,
            oldest_held_ms=self.oldest_ms,
        )
        items = [item for _, item, _, _ in list(self._items)[decision.start :]]
        self._items.clear()
        self._bytes = 0
        return items, decision


class StandbyFence(Protocol):
    """What the fleet asks of a source that can stand by for channels (the IRC source's
    `ChannelGate`), beside `fence.ChannelFence`."""

    def stand_by(self, channels: Iterable[str], config: StandbyConfig) -> None:
        """Keep a rolling window of these channels and produce nothing of them."""

    def standing_by(self) -> list[str]: ...

    def stop_standing_by(self, channels: Iterable[str]) -> None:
        """No longer standby: drop their windows, and drop what is read of them until
        they are parted (their owner produces it)."""

    def freeze(self, channels: Iterable[str]) -> None:
        """A take-over starts: stop dropping these windows' lines by age."""

    def tail_start_ms(self, channel: str, progress_identity: str | None) -> int | None:
        """The read time from which Kafka's copy must be read to settle where the
        channel's window starts (None: the window is empty, nothing to settle)."""

    def window_identities(self, channel: str) -> set[str]: ...

    def take_over(
        self, channel: str, produced: Collection[str], *, last_produced_ms: int, track: bool
    ) -> TakeOver | None:
        """Produce what the window holds after Kafka's copy, then the channel normally
        (`track`: tracked for a final mark, since it will be handed over)."""

    def enable_progress(self) -> None:
        """Remember what is produced so that `progress` can say where channels stand."""

    def progress(self) -> dict[str, str]:
        """Channel → identity of its last record handed to the sink since the last call."""

    def window_bytes(self) -> int: ...

    def expire_windows(self, now_ms: int) -> None: ...
