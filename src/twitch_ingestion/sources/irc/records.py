"""The IRC source's record encoder: parsed Twitch lines in, Kafka records out.

`IrcRecordEncoder` is the `ChatSink` the Twitch source (`pool.py`) hands its read chunks
to. Per chunk, in one pass, each line becomes its records: a copy of the raw line on
`KAFKA_TOPIC_RAW` when that is set, then the routed record (`routing.py`: a chat message
on the chat topic, a community/moderation event on the events topic, nothing for
connection-level lines) encoded as JSON, keyed by channel. A line that breaks the
contract becomes a dead letter: the exact raw bytes on the dead-letter topic with the
headers `dlq.reason` and `dlq.received_at`. The chunk's records then go, in order, to a
`RecordSink` (the Kafka sink), which knows nothing of IRC.

This is the hot path: one call per read chunk, and per line only the routing, the
encoding and one tuple per record (see `deliver`). With the compiled extension
(`compiled.py`, `HOT_PATH`), the chunk's PRIVMSG records come from one call into it; the
lines it leaves take the Python path (`_records`), which stays the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from operator import itemgetter

import msgspec
import structlog

from twitch_ingestion.config import Settings
from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import DEAD_LETTERS, HOT_PATH_INFO
from twitch_ingestion.models import CHAT_MESSAGE_SCHEMA_VERSION
from twitch_ingestion.records import (
    DLQ_HEADER_REASON,
    DLQ_HEADER_RECEIVED_AT,
    Record,
    RecordSink,
)
from twitch_ingestion.sources.irc.compiled import (
    EXTENSION_MODULE,
    HotPathChoice,
    compiled_chat_encoder,
)
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.routing import ContractViolation, Destination, route_message

__all__ = ["IrcRecordEncoder"]

log = structlog.get_logger(__name__)


class IrcRecordEncoder:
    """Turns each read chunk of IRC lines into records and hands them to a `RecordSink`.

    Implements the IRC pool's `ChatSink`. `dead_lettered` counts the lines it sent (or,
    without a dead-letter topic, would have sent) to the dead-letter topic.
    """

    def __init__(
        self,
        sink: RecordSink,
        *,
        chat_topic: str,
        events_topic: str,
        raw_topic: str | None = None,
        dlq_topic: str | None = None,
        hot_path: HotPathChoice = "auto",
    ) -> None:
        self._sink = sink
        self._chat_topic = chat_topic
        self._events_topic = events_topic
        self._raw_topic = raw_topic
        self._dlq_topic = dlq_topic
        self._encode = msgspec.json.Encoder().encode
        compiled = compiled_chat_encoder(
            hot_path, schema_version=CHAT_MESSAGE_SCHEMA_VERSION, ingested_via="irc"
        )
        self._encode_privmsg = None if compiled is None else compiled.encode_privmsg
        self._encode_chunk = None if compiled is None else compiled.encode_chunk
        self.hot_path = "python" if compiled is None else "compiled"
        """Which path encodes PRIVMSG lines: `compiled` or `python`."""
        # Channel login → its key bytes: a few thousand channels, encoded once each.
        self._key_cache: dict[str, bytes] = {}
        self._errors = ThrottledLogger(log, interval_s=10.0)
        self.dead_lettered = 0

    @classmethod
    def from_settings(cls, settings: Settings, sink: RecordSink) -> IrcRecordEncoder:
        """Topics from the KAFKA_TOPIC_* settings, the path from HOT_PATH; says which path runs.

        The service builds its encoder once at start-up, so this logs once.
        """
        encoder = cls(
            sink,
            chat_topic=settings.kafka_topic_chat_messages,
            events_topic=settings.kafka_topic_chat_events,
            raw_topic=settings.kafka_topic_raw,
            dlq_topic=settings.kafka_topic_dlq,
            hot_path=settings.hot_path,
        )
        HOT_PATH_INFO.clear()
        HOT_PATH_INFO.labels(encoder.hot_path, settings.hot_path).set(1)
        if encoder.hot_path == "compiled":
            log.info("irc hot path", path="compiled", extension=EXTENSION_MODULE)
        elif settings.hot_path == "python":
            log.info("irc hot path", path="python", reason="HOT_PATH=python")
        else:
            log.info(
                "irc hot path",
                path="python",
                reason="the compiled extension is not installed (`make install` builds it "
                "when cargo is present)",
                extension=EXTENSION_MODULE,
            )
        return encoder

    # --- hot path ---------------------------------------------------------------------

    async def deliver(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        """Encode one read chunk and hand its records to the sink (awaiting its room)."""
        encode_chunk = self._encode_chunk
        if encode_chunk is None:
            records = self._records(messages, received_at_ms, room_ids)
        else:
            # Compiled: the PRIVMSGs' records in one call; Python builds the rest in place.
            records, pending = encode_chunk(
                messages, received_at_ms, self._chat_topic, self._raw_topic
            )
            if pending:
                records = self._fill_pending(records, pending, messages, received_at_ms, room_ids)
        if not records:
            return
        await self._sink.deliver(records)

    def _fill_pending(
        self,
        records: list[Record],
        pending: list[tuple[int, int]],
        messages: Sequence[IrcMessage],
        received_at_ms: int,
        room_ids: Mapping[str, str],
    ) -> list[Record]:
        """The compiled records with the Python-built ones of the lines it left, in order."""
        out: list[Record] = []
        start = 0
        for position, group in itertools.groupby(pending, key=itemgetter(0)):
            out += records[start:position]
            start = position
            lines = [messages[index] for _, index in group]
            out += self._records(lines, received_at_ms, room_ids)
        out += records[start:]
        return out

    def _records(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> list[Record]:
        """The pure-Python path (the reference): each line's records, in order."""
        # Everything the loop touches is a local: an attribute load per line is measurable.
        chat_topic = self._chat_topic
        events_topic = self._events_topic
        chat = Destination.CHAT
        encode = self._encode
        key_for = self._key
        raw_topic = self._raw_topic
        records: list[Record] = []
        append = records.append
        for message in messages:
            if raw_topic is not None:
                append(
                    (
                        raw_topic,
                        key_for(message.channel or ""),
                        message.raw.encode(),
                        None,
                        received_at_ms,
                    )
                )
            try:
                routed = route_message(message, received_at_ms, room_ids)
            except ContractViolation as violation:
                dead_letter = self._dead_letter_record(
                    message.raw.encode(), violation.reason, received_at_ms
                )
                if dead_letter is not None:
                    append(dead_letter)
                continue
            if routed is not None:
                append(
                    (
                        # An identity test, not a dict lookup: Enum.__hash__ runs in Python.
                        chat_topic if routed.destination is chat else events_topic,
                        key_for(routed.key),
                        encode(routed.record),
                        None,
                        received_at_ms,
                    )
                )
        return records

    def _key(self, channel: str) -> bytes:
        key = self._key_cache.get(channel)
        if key is None:
            key = self._key_cache[channel] = channel.encode()
        return key

    # --- dead letters -------------------------------------------------------------------

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        """Keep a line the source could not even decode: exact bytes, reason, time."""
        record = self._dead_letter_record(raw, reason, received_at_ms)
        if record is not None:
            self._sink.deliver_nowait(record)

    def _dead_letter_record(self, raw: bytes, reason: str, received_at_ms: int) -> Record | None:
        """The dead letter of a line, counted and logged (throttled); None without a DLQ."""
        DEAD_LETTERS.labels(reason).inc()
        self.dead_lettered += 1
        self._errors.warning("line dead-lettered", reason, reason=reason, size=len(raw))
        topic = self._dlq_topic
        if topic is None:
            # No DLQ configured: the line is still counted and logged above; keeping it
            # would mean retrying a record that has nowhere to go.
            return None
        headers = [
            (DLQ_HEADER_REASON, reason.encode()),
            (DLQ_HEADER_RECEIVED_AT, str(received_at_ms).encode()),
        ]
        return (topic, None, raw, headers, received_at_ms)
