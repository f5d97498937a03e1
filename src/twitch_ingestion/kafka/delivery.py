"""What to do about delivery reports, refusals, stalls and rewinds: pure decisions.

`DeliveryState` owns no producer, no buffer and no clock. The sink (`kafka/sink.py`)
feeds it what happened — a record failed (`on_failed`), time passed with so many
records in librdkafka and so many acknowledged (`tick`), librdkafka's queue was full —
and executes what it answers: produce a dead letter, take back librdkafka's queue,
start a rewind, say that Kafka stalled. Every path is a unit test with events in and
actions out (tests/unit/test_delivery.py), no broker and no sleeps.

The guarantees these decisions keep:

**Each channel's order, and no duplicates across outages.** librdkafka never gives a
record up (`KafkaProducer` sets its `message.timeout.ms` to infinite): a record already
sent when the broker died may have been written without the acknowledgement coming
back, and only librdkafka's idempotent retry of that same request (same producer id and
sequence) lets the broker recognise it; a record re-produced after a timeout would be a
duplicate. Instead, when Kafka has acknowledged nothing for `KAFKA_MESSAGE_TIMEOUT_MS`
while records are outstanding, delivery *pauses* (`Stalled`): new records only go to the
buffer (which is sized for an outage; librdkafka's queue is not), librdkafka keeps and
later delivers what it holds, and once it holds nothing the sink *rewinds*
(`StartRewind`): it produces every unacknowledged record from the buffer, in append
order (`rewind_pass`), then resumes.

**A transient failure rewinds too.** A record that fails for another transient reason
(an unknown topic, retries exhausted) pauses delivery and takes back what librdkafka
has queued but not sent (`PurgeQueue`; those come back as `Failure.PURGED` and stay in
the buffer), since younger records would otherwise overtake it; retrying just the failed
record, as a per-record retry queue would, breaks the order. This rare path can
duplicate a record librdkafka had queued for a retry after an acknowledgement was lost.

**Nothing is dropped for good.** A record Kafka refuses for good (too large, not
authorised) becomes a dead letter (`DeadLetter`: same bytes, same key, the headers
`dlq.reason=kafka-refused`, `dlq.error`, `dlq.received_at`, `dlq.topic`, and the same
buffer seq, so the buffer forgets the record once its dead letter is acknowledged).
With no dead-letter topic, or when the dead-letter topic refuses it too, it is *parked*:
kept in the buffer, left out of rewinds, and produced again every 30 s. A record the
buffer did not take (seq < 0: the buffer was full under `drop_newest`) is found by no
rewind, so after a transient failure it is produced again on its own after a second.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from twitch_ingestion.records import (
    DLQ_REASON_KAFKA_REFUSED,
    Record,
    dead_letter_record,
)

__all__ = [
    "REDELIVERY_DELAY_S",
    "REFUSED_RETRY_DELAY_S",
    "Action",
    "DeadLetter",
    "DeliveryState",
    "Failure",
    "PurgeQueue",
    "Stalled",
    "StartRewind",
]

# After a stall or a transient failure the rewind waits this long before producing again,
# and a record outside the buffer is retried this long after a transient failure.
REDELIVERY_DELAY_S: Final = 1.0
# With no DLQ to take a refused record, it is retried this rarely (and logged each time).
REFUSED_RETRY_DELAY_S: Final = 30.0

_R = TypeVar("_R", bound=Record)


class Failure(enum.Enum):
    """How a failed delivery report is to be read; the sink classifies Kafka's codes."""

    PURGED = "purged"
    """Taken back unsent by a `PurgeQueue`: not a failure, the rewind produces it again."""
    TRANSIENT = "transient"
    """Kafka may take it later (unknown topic, retries exhausted)."""
    PERMANENT = "permanent"
    """Kafka will never take it as it is (too large, not authorised)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Produce `record` (a refused record's dead letter) now, under the refused one's seq."""

    seq: int
    record: Record
    error: str
    """Kafka's error name (the `dlq.error` header)."""


@dataclass(frozen=True, slots=True)
class PurgeQueue:
    """Take back every record librdkafka has queued but not sent (reported as PURGED)."""


@dataclass(frozen=True, slots=True)
class Stalled:
    """Kafka acknowledged nothing for the stall timeout: delivery is paused (log it)."""

    outstanding: int
    stalled_s: float


@dataclass(frozen=True, slots=True)
class StartRewind:
    """librdkafka holds nothing: produce the buffer's unacked records (`rewind_pass`)."""


Action = DeadLetter | PurgeQueue | Stalled | StartRewind


class DeliveryState:
    """The pause / rewind / park / redelivery state of one sink, advanced by events.

    `paused` is read by the sink on its hot path: while it is true, new records go to the
    buffer only, and the rewind produces them after every older one.
    """

    __slots__ = (
        "_dlq_topic",
        "_held",
        "_parked",
        "_progress_at",
        "_progress_count",
        "_purged",
        "_redelivery",
        "_rewind_due",
        "_rewinding",
        "_rewound_up_to",
        "_stall_timeout_s",
        "paused",
    )

    def __init__(self, *, dlq_topic: str | None, stall_timeout_s: float, now: float) -> None:
        self._dlq_topic = dlq_topic
        self._stall_timeout_s = stall_timeout_s
        self.paused = False
        # `hold` until `release`: nothing is produced, not even by a rewind.
        self._held = False
        # Records to produce again at a time (monotonic s), oldest first: transient
        # failures outside the buffer, parked refusals, dead letters the queue had no
        # room for.
        self._redelivery: deque[tuple[float, int, Record]] = deque()
        # Buffer seqs waiting in `_redelivery` (refused records retried slowly); a rewind
        # leaves them to it.
        self._parked: set[int] = set()
        # `_purged`: librdkafka's queue was taken back since the last rewind started.
        # `_rewind_due`: a rewind is wanted, not before this time. `_rewinding`: one is
        # producing now, and has produced seqs up to `_rewound_up_to`.
        self._purged = False
        self._rewind_due: float | None = None
        self._rewinding = False
        self._rewound_up_to = -1
        # Stall watchdog: when the last acknowledgement (or an empty librdkafka) was seen,
        # and the acknowledged count then.
        self._progress_at = now
        self._progress_count = 0

    # --- holding until the topics exist -----------------------------------------------

    def hold(self) -> None:
        """Produce nothing until `release`: new records go to the buffer only.

        For start-up: a record produced before its topic exists would make a broker with
        auto-create on create it with the broker's defaults (partitions, retention)
        rather than ours, and a keyed topic cannot be re-partitioned later.
        """
        self.paused = True
        self._held = True

    def release(self, now: float) -> None:
        """The topics exist: produce everything buffered meanwhile (a rewind, in append
        order, once librdkafka holds nothing), then resume producing directly."""
        if not self._held:
            return
        self._held = False
        if self._rewind_due is None:
            self._rewind_due = now

    @property
    def held(self) -> bool:
        return self._held

    # --- events -----------------------------------------------------------------------

    def on_failed(
        self, seq: int, record: Record, failure: Failure, error: str, now: float
    ) -> list[Action]:
        """A delivery report with an error for `record` (buffer seq `seq`, or -1)."""
        if failure is Failure.PURGED or failure is Failure.TRANSIENT:
            if seq < 0:
                # Not in the buffer (it refused the record), so no rewind would find it.
                self._redelivery.append((now + REDELIVERY_DELAY_S, seq, record))
                return []
            if failure is Failure.PURGED:
                return []  # still in the buffer: the coming rewind produces it
            return self._pause(now, failed=True)
        dlq = self._dlq_topic
        topic, key, value, _, created_at_ms = record
        if dlq is None or topic == dlq:
            # Nowhere to put it: keep it and retry slowly rather than drop it.
            if seq >= 0:
                self._parked.add(seq)
            self._redelivery.append((now + REFUSED_RETRY_DELAY_S, seq, record))
            return []
        dead_letter = dead_letter_record(
            dlq,
            value,
            DLQ_REASON_KAFKA_REFUSED,
            created_at_ms,
            key=key,
            error=error,
            refused_by=topic,
        )
        return [DeadLetter(seq, dead_letter, error)]

    def on_queue_full(self, seq: int, record: Record, now: float) -> None:
        """A record to produce now found librdkafka's queue full: produce it on a tick."""
        self._redelivery.append((now, seq, record))

    def tick(self, now: float, *, in_flight: int, delivered: int) -> list[Action]:
        """Time passed; `in_flight` records sit in librdkafka, `delivered` were acked so far.

        Detects a stall (nothing acknowledged for the stall timeout while records are
        outstanding) and starts a due rewind once librdkafka holds nothing.
        """
        actions: list[Action] = []
        if delivered != self._progress_count or not in_flight:
            self._progress_at = now
            self._progress_count = delivered
        elif not self.paused and now - self._progress_at >= self._stall_timeout_s:
            actions.append(Stalled(in_flight, round(now - self._progress_at, 1)))
            # Nothing is taken back: librdkafka delivers what it holds, in order, once
            # Kafka answers, and only then does the rewind start.
            self._pause(now, failed=False)
        due = self._rewind_due
        if (
            not self._rewinding
            and not self._held
            and due is not None
            and now >= due
            and not in_flight
        ):
            # librdkafka holds nothing of ours, so no record is produced twice at once.
            self._rewinding = True
            self._rewind_due = None
            self._purged = False
            self._rewound_up_to = -1
            actions.append(StartRewind())
        return actions

    def due_redelivery(self, now: float) -> tuple[int, Record] | None:
        """The oldest record waiting for redelivery if its time has come: produce it,
        then `redelivered()`; on a full queue leave it here for the next tick."""
        redelivery = self._redelivery
        if redelivery and redelivery[0][0] <= now:
            _, seq, record = redelivery[0]
            return seq, record
        return None

    def redelivered(self) -> None:
        """The record `due_redelivery` returned is in librdkafka's hands again."""
        _, seq, _ = self._redelivery.popleft()
        self._parked.discard(seq)

    # --- the rewind ---------------------------------------------------------------------

    def rewind_pass(self, unacked: Iterable[tuple[int, _R]]) -> Iterator[tuple[int, _R]]:
        """The records the running rewind is to produce next, in append order.

        Fed the buffer's unacked records; skips the parked ones and those this rewind
        already produced. The caller produces each before asking for the next, and
        passes over the buffer again until a pass yields nothing (records buffered
        meanwhile); that last pass runs without awaiting, so nothing can slip in before
        `end_rewind` lets new records be produced directly again. Stops early when the
        rewind is `interrupted`.
        """
        parked = self._parked
        for seq, record in unacked:
            if seq <= self._rewound_up_to or seq in parked:
                continue
            if self._rewind_due is not None:
                return
            self._rewound_up_to = seq
            yield seq, record

    @property
    def rewind_interrupted(self) -> bool:
        """A record failed during the rewind: it stops, another follows once librdkafka
        is empty again."""
        return self._rewind_due is not None

    def end_rewind(self) -> bool:
        """The rewind's last pass is done; True when delivery resumes (not interrupted)."""
        self._rewinding = False
        if self._rewind_due is None:
            self.paused = False
            return True
        return False

    def rewind_failed(self, now: float) -> None:
        """The rewind ended with an error (logged by the caller): try again later."""
        self._rewinding = False
        self._rewind_due = now + REDELIVERY_DELAY_S

    # --- internals ------------------------------------------------------------------------

    def _pause(self, now: float, *, failed: bool) -> list[Action]:
        """Stop producing new records until a rewind has run.

        `failed`: a record failed, so the younger records librdkafka has queued for its
        partition would reach Kafka before its redelivery; they are taken back. Once per
        rewind: while paused nothing new reaches librdkafka's queue.
        """
        self.paused = True
        if self._rewind_due is None:
            self._rewind_due = now + REDELIVERY_DELAY_S
        if failed and not self._purged:
            self._purged = True
            return [PurgeQueue()]
        return []
