"""The connection pool's decisions, as pure code: no sockets, no tasks, the time passed in.

`pool_owner.PoolOwner` applies these decisions (its small tasks open sockets, sleep and
wait for the JOIN limiter); every *decision* it takes is made here, so each rule is a
unit test with a fake clock:

* `assign_channels` — which slot a new channel goes to (fill the open slots in order,
  then open new ones of at most `per_connection` channels);
* `ChannelPlan` — one slot's channels: which to JOIN on a fresh connection, which failed
  and why, when a failed one is retried, which JOIN timeouts were the connection's fault
  rather than the channel's, and when the slot reads everything it should ("settled");
* `HandoverPlan` — a server RECONNECT: how long the new connection may take to join
  everything, how long both connections overlap, when the old one is dropped, and how
  long de-duplication stays on afterwards;
* `reconnect_cause` — the `twitch_ingestion_irc_reconnects_total{cause}` label of a
  connection that ended.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from twitch_ingestion.sources.irc.connection import DisconnectCause

__all__ = [
    "RECONNECT_HINTS",
    "ChannelPlan",
    "HandoverPlan",
    "HandoverStep",
    "JoinOutcome",
    "SlotAssignment",
    "assign_channels",
    "reconnect_cause",
]

RECONNECT_HINTS = {
    "join_limit": "Twitch closed the connection while JOINs were unanswered, the usual "
    "sign of exceeding its join rate limit: lower TWITCH_JOIN_RATE_LIMIT",
}
"""What to do about a reconnect cause, logged with the reconnect."""

# After a hand-over the new socket may still hold lines the old one delivered; the
# filter stays on for one more overlap period, but never less than this.
_MIN_DEDUP_GRACE_S = 1.0
# The new connection of a hand-over gets two JOIN timeouts (one to send, one to be
# answered, as a backlog in the rate limiter can delay the first) plus this slack.
_HANDOVER_JOIN_SLACK_S = 1.0


# --- assignment ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotAssignment:
    """Where new channels go: `into_existing[slot_id]` and `new_slots` (one list each)."""

    into_existing: dict[int, list[str]]
    new_slots: list[list[str]]


def assign_channels(
    slot_sizes: Sequence[tuple[int, int]], channels: Sequence[str], per_connection: int
) -> SlotAssignment:
    """Spread `channels` over slots of at most `per_connection` channels.

    `slot_sizes` is `(slot_id, channel count)` of the slots that may take more, in order.
    Filling the existing slots first keeps the number of sockets (and logins) minimal.
    """
    remaining = list(channels)
    into: dict[int, list[str]] = {}
    for slot_id, size in slot_sizes:
        room = per_connection - size
        if room > 0 and remaining:
            into[slot_id], remaining = remaining[:room], remaining[room:]
    new = [remaining[i : i + per_connection] for i in range(0, len(remaining), per_connection)]
    return SlotAssignment(into, new)


# --- one slot's channels ------------------------------------------------------------------


class JoinOutcome(Enum):
    """What a JOIN echo means for the slot."""

    JOINED = "joined"
    RECOVERED = "recovered"  # joined after having failed: worth a log line
    UNWANTED = "unwanted"  # removed while the JOIN was in flight: PART it


class ChannelPlan:
    """The channels of one slot and the retry schedule of those Twitch would not join.

    A channel is *wanted* until removed. A wanted channel is *failed* after a NOTICE
    refused it, its JOIN went unanswered, or the server parted us; it is then joined
    again `retry_interval_s` later, while the slot's other channels keep flowing.
    """

    def __init__(self, channels: Iterable[str], retry_interval_s: float) -> None:
        self.retry_interval_s = retry_interval_s
        self.wanted: dict[str, None] = dict.fromkeys(channels)
        self.failed: dict[str, str] = {}
        self._retry_at: dict[str, float] = {}
        # Failed channels whose JOIN merely went unanswered: see connection_lost().
        self._timed_out: set[str] = set()

    # --- the channel set --------------------------------------------------------------

    def add(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.wanted[channel] = None

    def remove(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.wanted.pop(channel, None)
            self.failed.pop(channel, None)
            self._retry_at.pop(channel, None)
            self._timed_out.discard(channel)

    def to_join(self) -> list[str]:
        """What a freshly logged-in connection joins: all but those waiting for a retry."""
        return [c for c in self.wanted if c not in self._retry_at]

    # --- what Twitch answered -----------------------------------------------------------

    def joined(self, channel: str) -> JoinOutcome:
        if channel not in self.wanted:
            return JoinOutcome.UNWANTED
        reason = self.failed.pop(channel, None)
        self._retry_at.pop(channel, None)
        self._timed_out.discard(channel)
        return JoinOutcome.JOINED if reason is None else JoinOutcome.RECOVERED

    def refused(self, channel: str, reason: str, now: float) -> bool:
        """A NOTICE refused `channel`; True if it was not failing before (log it)."""
        self._timed_out.discard(channel)
        return self._fail(channel, reason, now)

    def timed_out(self, channel: str, reason: str, now: float) -> bool:
        """`channel`'s JOIN went unanswered; True if it was not failing before."""
        first = self._fail(channel, reason, now)
        if channel in self.failed:
            self._timed_out.add(channel)
        return first

    def parted(self, channel: str, now: float) -> bool:
        """The server parted us from `channel`; True if it was not failing before."""
        return self._fail(channel, "parted by the server", now)

    def _fail(self, channel: str, reason: str, now: float) -> bool:
        if channel not in self.wanted:
            return False
        first = channel not in self.failed
        self.failed[channel] = reason
        self._retry_at[channel] = now + self.retry_interval_s
        return first

    def connection_lost(self) -> None:
        """The connection died: JOINs it left unanswered are joined again on the next one.

        A stalled socket times its pending JOINs out before the keepalive declares it
        dead (join timeout < ping interval + pong timeout); that silence was the
        connection's, not the channel's, so waiting the retry interval would be wrong.
        Channels Twitch refused with a NOTICE keep their retry schedule.
        """
        for channel in self._timed_out:
            self._retry_at.pop(channel, None)
        self._timed_out.clear()

    # --- the retry timer ------------------------------------------------------------------

    def next_retry_at(self) -> float | None:
        return min(self._retry_at.values(), default=None)

    def take_due(self, now: float) -> list[str]:
        """Failed channels whose retry time has come; they are the caller's to JOIN now.

        Taken off the schedule: when no connection is up, the next one joins them anyway
        (they are in `to_join()` again).
        """
        due = [c for c, at in self._retry_at.items() if at <= now]
        for channel in due:
            del self._retry_at[channel]
        return due

    # --- state ----------------------------------------------------------------------------

    def settled(self, joined: Collection[str]) -> bool:
        """Every wanted channel joined (per `joined`) or known to have failed."""
        return all(c in joined or c in self.failed for c in self.wanted)

    def not_yet_joined(self, joined: Collection[str]) -> list[str]:
        return [c for c in self.wanted if c not in joined and c not in self.failed]


# --- RECONNECT hand-over ------------------------------------------------------------------


class HandoverStep(Enum):
    WAIT = "wait"  # nothing to do before `until` or a change (a JOIN answer, the old closing)
    DROP_OLD = "drop_old"  # close the old connection; promote the new one if it is alive


class HandoverPlan:
    """When the two connections of a server RECONNECT hand-over overlap, and until when.

    1. *Joining*: from `successor_opened(now)`, wait until the new connection reads
       everything the old one does (settled), the new one dies, or the old one closes
       — but no longer than two JOIN timeouts and a second.
    2. *Overlap*: then keep the old connection up to `overlap_s` more, until Twitch
       closes it itself, so lines it still sends are not lost.
    3. Drop the old connection. De-duplication stays on for `dedup_expires_at(now)`.
    """

    def __init__(self, join_timeout_s: float, overlap_s: float) -> None:
        self.join_timeout_s = join_timeout_s
        self.overlap_s = overlap_s
        self._joins_until: float | None = None
        self._overlap_until: float | None = None
        self.done = False

    def successor_opened(self, now: float) -> None:
        self._joins_until = now + 2 * self.join_timeout_s + _HANDOVER_JOIN_SLACK_S

    def step(
        self, now: float, *, settled: bool, successor_alive: bool, old_closing: bool
    ) -> tuple[HandoverStep, float]:
        """What to do now; with `WAIT`, the time to re-check at the latest."""
        if self._joins_until is None:
            raise RuntimeError("successor_opened() first")
        if self.done:
            return HandoverStep.DROP_OLD, now
        if self._overlap_until is None:
            joining = settled is False and successor_alive and not old_closing
            if joining and now < self._joins_until:
                return HandoverStep.WAIT, self._joins_until
            self._overlap_until = now + self.overlap_s
        if old_closing or now >= self._overlap_until:
            self.done = True
            return HandoverStep.DROP_OLD, now
        return HandoverStep.WAIT, self._overlap_until

    def dedup_expires_at(self, promoted_at: float) -> float:
        return promoted_at + max(self.overlap_s, _MIN_DEDUP_GRACE_S)


# --- reconnects ---------------------------------------------------------------------------


def reconnect_cause(cause: DisconnectCause, *, joins_pending: bool) -> str:
    """The `twitch_ingestion_irc_reconnects_total{cause}` label of a connection that ended
    unexpectedly."""
    if cause is DisconnectCause.CONNECTION_LOST and joins_pending:
        # Twitch gives no reason when it drops a client over its JOIN rate; a close
        # while JOINs await their echo is the one visible sign.
        return "join_limit"
    if cause is DisconnectCause.CLOSED:
        return "connection_lost"  # closed by us, but not on purpose (a failed hand-over)
    return cause.value
