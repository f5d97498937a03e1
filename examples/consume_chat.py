"""A small consumer of twitch-ingestion's topics, as docs/consuming.md describes one.

    python examples/consume_chat.py --brokers localhost:9092 --group chat-analytics

It reads the chat topic (and, when named, the events and dead-letter topics) in a
consumer group, drops the duplicates that at-least-once delivery allows (by
`message_id`), skips records of a `schema_version` it does not know, and prints one JSON
line per record on stdout; a summary goes to stderr. Offsets are committed only for
records already handled, so a crash re-reads rather than skips.

Needs only confluent-kafka (`pip install confluent-kafka`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

# The record layouts this consumer understands (docs/consuming.md, "Schema evolution").
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
# Duplicates come close together (a replay after a crash or a reconnect hand-over covers
# seconds to minutes of chat), so remembering the last ids is enough.
REMEMBERED_IDS = 200_000


class RecentIds:
    """The last `capacity` message ids seen: a bounded set, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, message_id: str) -> bool:
        """True if `message_id` was seen before; remembers it either way."""
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return True
        self._ids[message_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return False


class Counts:
    def __init__(self) -> None:
        self.chat = 0
        self.events = 0
        self.dead_letters = 0
        self.duplicates = 0
        self.unsupported = 0

    def summary(self) -> str:
        return (
            f"consume_chat: {self.chat} chat messages, {self.events} events, "
            f"{self.dead_letters} dead letters, {self.duplicates} duplicates dropped, "
            f"{self.unsupported} records of an unknown schema_version skipped"
        )


def handle(message: Message, args: argparse.Namespace, recent: RecentIds, counts: Counts) -> None:
    topic = message.topic()
    if topic == args.dlq_topic:
        # A dead letter's value is the exact bytes the service could not use (often not
        # JSON at all); the headers say why. Never parse it as a chat record.
        headers = {key: value.decode(errors="replace") for key, value in message.headers() or ()}
        counts.dead_letters += 1
        emit(
            {
                "kind": "dead_letter",
                "reason": headers.get("dlq.reason"),
                "received_at": int(headers.get("dlq.received_at", "0")),
                "refused_by_topic": headers.get("dlq.topic"),
                "kafka_error": headers.get("dlq.error"),
                "value": (message.value() or b"").decode(errors="replace"),
            }
        )
        return
    record: dict[str, Any] = json.loads(message.value() or b"{}")
    if record.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        counts.unsupported += 1
        return
    if recent.seen(record["message_id"]):
        counts.duplicates += 1
        return
    if topic == args.events_topic:
        counts.events += 1
        emit(
            {
                "kind": "event",
                "event_type": record["event_type"],
                "channel": record["channel_id"],
                "message_id": record["message_id"],
            }
        )
        return
    counts.chat += 1
    emit(
        {
            "kind": "chat",
            "channel": record["channel_id"],
            "username": record["username"],
            "message": record["message"],
            "message_id": record["message_id"],
            "partition": message.partition(),
        }
    )


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="localhost:9092")
    parser.add_argument("--group", default="chat-analytics", help="consumer group id")
    parser.add_argument("--chat-topic", default="twitch-chat-messages")
    parser.add_argument("--events-topic", default=None, help="also read the events topic")
    parser.add_argument("--dlq-topic", default=None, help="also read the dead-letter topic")
    parser.add_argument("--max-records", type=int, default=None, help="stop after N records")
    parser.add_argument(
        "--idle-timeout-s", type=float, default=None, help="stop after N s without records"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": args.group,
            # A new group starts at the oldest record the topic still keeps.
            "auto.offset.reset": "earliest",
            # Commit what was handled, not what was fetched: offsets are stored below,
            # after each record, and committed in the background.
            "enable.auto.offset.store": False,
            # Reading must never create a topic on a broker that would auto-create it.
            "allow.auto.create.topics": False,
        }
    )
    topics = [t for t in (args.chat_topic, args.events_topic, args.dlq_topic) if t]
    consumer.subscribe(topics)
    recent, counts = RecentIds(REMEMBERED_IDS), Counts()
    handled = 0
    last_record_at = time.monotonic()
    try:
        while args.max_records is None or handled < args.max_records:
            idle_s = time.monotonic() - last_record_at
            if args.idle_timeout_s is not None and idle_s >= args.idle_timeout_s:
                break
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise KafkaException(error)
            handle(message, args, recent, counts)
            consumer.store_offsets(message)
            handled += 1
            last_record_at = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()  # commits the stored offsets
        print(counts.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
