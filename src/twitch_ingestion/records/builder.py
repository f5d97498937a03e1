"""`RecordBuilder`: source events in, Kafka records out — the one place records are made.

Made once by the service from the topic settings and shared by whichever source runs,
it holds what every record needs: the topic list (`Topics`), the key cache (channel
login → key bytes, a few thousand channels encoded once each), the JSON encoder, and
the dead-letter builder with its count, metric and throttled log.

Three ways in, one record shape out (`(topic, key, value, headers, created_at_ms)`):

* `build_lines`: a read chunk of lines and the source's routing function (IRC). Per
  line, in order: the raw copy (when `KAFKA_TOPIC_RAW` is set), then the routed record
  or, for a line that breaks the contract, its dead letter. This is the hot path: one
  call per chunk, and per line only the routing, the encoding and one tuple per record.
* `record`: one `SourceRecord` (EventSub: one per notification).
* `dead_letter`: one `SourceDeadLetter` (a line or frame that could not even be parsed).

The compiled IRC path may hand over finished records for PRIVMSG lines instead: it
takes its topics from this builder and must make exactly what `build_lines` makes for
those lines (`docs/architecture.md`; the differential tests hold it to that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec
import structlog

from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import DEAD_LETTERS
from twitch_ingestion.records.dead_letters import dead_letter_record
from twitch_ingestion.records.events import (
    SourceDeadLetter,
    SourceLine,
    SourceRecord,
    Unpublishable,
)
from twitch_ingestion.records.record import Record
from twitch_ingestion.records.topics import Destination, Topics

__all__ = ["RecordBuilder"]

log = structlog.get_logger(__name__)

L = TypeVar("L", bound=SourceLine)
C = TypeVar("C")


class RecordBuilder:
    """Turns source events into records; `dead_lettered` counts the dead letters it made
    (or, without a dead-letter topic, would have made)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        # The same bytes as `models.encode_record`; its own encoder saves a call per record.
        self._encode = msgspec.json.Encoder().encode
        self._keys: dict[str, bytes] = {}
        self._errors = ThrottledLogger(log, interval_s=10.0)
        self.dead_lettered = 0

    def key(self, channel: str) -> bytes:
        """The Kafka key of `channel`'s records (cached: one encode per channel)."""
        key = self._keys.get(channel)
        if key is None:
            key = self._keys[channel] = channel.encode()
        return key

    # --- hot path ---------------------------------------------------------------------

    def build_lines(
        self,
        lines: Sequence[L],
        received_at_ms: int,
        route: Callable[[L, int, C], SourceRecord | None],
        context: C,
    ) -> list[Record]:
        """Each line's records, in order: raw copy, then its record or its dead letter."""
        # Everything the loop touches is a local: an attribute load per line is measurable.
        topics = self.topics
        chat_topic = topics.chat
        events_topic = topics.events
        raw_topic = topics.raw
        chat = Destination.CHAT
        encode = self._encode
        key_for = self.key
        records: list[Record] = []
        append = records.append
        for line in lines:
            if raw_topic is not None:
                append(
                    (
                        raw_topic,
                        key_for(line.channel or ""),
                        line.raw.encode(),
                        None,
                        received_at_ms,
                    )
                )
            try:
                routed = route(line, received_at_ms, context)
            except Unpublishable as violation:
                dead_letter = self._dead_letter_record(
                    SourceDeadLetter(line.raw.encode(), violation.reason, received_at_ms)
                )
                if dead_letter is not None:
                    append(dead_letter)
                continue
            if routed is not None:
                value = routed.value
                append(
                    (
                        # An identity test, not a dict lookup: Enum.__hash__ runs in Python.
                        chat_topic if routed.destination is chat else events_topic,
                        key_for(routed.key),
                        encode(routed.record) if value is None else value,
                        None,
                        received_at_ms,
                    )
                )
        return records

    def record(self, event: SourceRecord, received_at_ms: int) -> Record:
        """The record of one chat message or event, created at `received_at_ms`."""
        value = event.value
        return (
            self.topics.of(event.destination),
            self.key(event.key),
            self._encode(event.record) if value is None else value,
            None,
            received_at_ms,
        )

    # --- dead letters -------------------------------------------------------------------

    def dead_letter(self, letter: SourceDeadLetter) -> Record | None:
        """The dead letter of what a source could not read, counted and logged
        (throttled); None when there is no dead-letter topic to put it on."""
        return self._dead_letter_record(letter)

    def _dead_letter_record(self, letter: SourceDeadLetter) -> Record | None:
        reason = letter.reason
        DEAD_LETTERS.labels(reason).inc()
        self.dead_lettered += 1
        fields: dict[str, object] = {"reason": reason, "size": len(letter.raw)}
        if letter.detail is not None:
            fields["detail"] = letter.detail
        # One constant event per kind (the log style: no interpolated event names).
        if letter.what == "eventsub frame":
            self._errors.warning("eventsub frame dead-lettered", reason, **fields)
        else:
            self._errors.warning("line dead-lettered", reason, **fields)
        topic = self.topics.dlq
        if topic is None:
            # No DLQ configured: it is still counted and logged above; keeping it would
            # mean retrying a record that has nowhere to go.
            return None
        return dead_letter_record(topic, letter.raw, reason, letter.received_at_ms)
