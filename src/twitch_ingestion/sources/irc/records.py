"""The IRC source's hand-over to the records stage: a read chunk in, its records out.

`IrcRecordEncoder` is the `ChatSink` the Twitch source (`pool.py`) hands its read chunks
to. It asks the records stage's `RecordBuilder` for each chunk's records, with
`route_message` as the routing step (`RecordBuilder.build_lines`: per line, the raw copy
when `KAFKA_TOPIC_RAW` is set, then the routed record or its dead letter), and hands
them, in order, to a `RecordSink` (the Kafka sink), which knows nothing of IRC.

This is the hot path: one call per read chunk. With the compiled extension
(`compiled.py`, `HOT_PATH`), the chunk's PRIVMSG records come from one call into it,
with the builder's topics, and must be exactly what the builder makes of those lines
(the differential tests hold the two together); the lines it leaves are built by the
builder in place, which stays the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from operator import itemgetter

import structlog

from twitch_ingestion.metrics import HOT_PATH_INFO
from twitch_ingestion.models import CHAT_MESSAGE_SCHEMA_VERSION
from twitch_ingestion.records import Record, RecordSink
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.records.events import SourceDeadLetter
from twitch_ingestion.sources.irc.compiled import (
    EXTENSION_MODULE,
    HotPathChoice,
    compiled_chat_encoder,
)
from twitch_ingestion.sources.irc.irc import IrcMessage
from twitch_ingestion.sources.irc.routing import route_message

__all__ = ["IrcRecordEncoder"]

log = structlog.get_logger(__name__)


class IrcRecordEncoder:
    """Turns each read chunk of IRC lines into records and hands them to a `RecordSink`.

    Implements the IRC pool's `ChatSink` (`chunk_route.py`). `dead_lettered` counts the
    dead letters of its builder (lines sent, or without a dead-letter topic counted, as
    dead letters).
    """

    def __init__(
        self, sink: RecordSink, records: RecordBuilder, *, hot_path: HotPathChoice = "auto"
    ) -> None:
        self._sink = sink
        self._records = records
        self._build_lines = records.build_lines
        compiled = compiled_chat_encoder(
            hot_path, schema_version=CHAT_MESSAGE_SCHEMA_VERSION, ingested_via="irc"
        )
        self._encode_privmsg = None if compiled is None else compiled.encode_privmsg
        self._encode_chunk = None if compiled is None else compiled.encode_chunk
        self.hot_path = "python" if compiled is None else "compiled"
        """Which path encodes PRIVMSG lines: `compiled` or `python`."""

    @classmethod
    def for_hot_path(
        cls, requested: HotPathChoice, sink: RecordSink, records: RecordBuilder
    ) -> IrcRecordEncoder:
        """The path HOT_PATH (`requested`) asks for; says which path runs.

        The service builds its encoder once at start-up, so this logs once.
        """
        encoder = cls(sink, records, hot_path=requested)
        HOT_PATH_INFO.clear()
        HOT_PATH_INFO.labels(encoder.hot_path, requested).set(1)
        if encoder.hot_path == "compiled":
            log.info("irc hot path", path="compiled", extension=EXTENSION_MODULE)
        elif requested == "python":
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

    @property
    def dead_lettered(self) -> int:
        return self._records.dead_lettered

    # --- hot path ---------------------------------------------------------------------

    async def deliver(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        """Build one read chunk's records and hand them to the sink (awaiting its room)."""
        encode_chunk = self._encode_chunk
        if encode_chunk is None:
            records = self._build_lines(messages, received_at_ms, route_message, room_ids)
        else:
            # Compiled: the PRIVMSGs' records in one call; the builder makes the rest in place.
            topics = self._records.topics
            records, pending = encode_chunk(messages, received_at_ms, topics.chat, topics.raw)
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
        """The compiled records with the builder's records of the lines it left, in order."""
        build_lines = self._build_lines
        out: list[Record] = []
        start = 0
        for position, group in itertools.groupby(pending, key=itemgetter(0)):
            out += records[start:position]
            start = position
            lines = [messages[index] for _, index in group]
            out += build_lines(lines, received_at_ms, route_message, room_ids)
        out += records[start:]
        return out

    # --- dead letters -------------------------------------------------------------------

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        """Keep a line the source could not even decode: exact bytes, reason, time."""
        record = self._records.dead_letter(SourceDeadLetter(raw, reason, received_at_ms))
        if record is not None:
            self._sink.deliver_nowait(record)
