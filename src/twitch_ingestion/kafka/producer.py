"""confluent-kafka's `Producer` driven from the asyncio event loop.

librdkafka does the batching, retries and idempotence on its own threads; Python only
enqueues (`produce`, never blocks) and serves delivery reports (`poll`). Both happen on
the event loop thread, so delivery callbacks need no locks. A poller task keeps reports
flowing when no new records arrive; `produce` callers poll too, so a flood does not
wait for the poller's next tick.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import structlog
from confluent_kafka import KafkaError, Message, Producer

from twitch_ingestion.kafka.producer_config import (
    KafkaConnection,
    ProducerTuning,
    producer_config,
    redacted,
)
from twitch_ingestion.log_throttle import ThrottledLogger
from twitch_ingestion.metrics import KAFKA_REACHABLE, PRODUCER_QUEUE_DEPTH
from twitch_ingestion.records import Record

__all__ = ["DeliveryCallback", "KafkaProducer", "SeqDeliveryCallback"]

log = structlog.get_logger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]
SeqDeliveryCallback = Callable[[int, KafkaError | None, Message], None]
"""A delivery callback that also takes the record's buffer sequence number first."""

# `Producer.produce`'s positional order: topic, value, key, partition, callback,
# on_delivery (an alias of callback), timestamp, headers. This partition lets the
# configured partitioner choose (librdkafka's RD_KAFKA_PARTITION_UA).
_ANY_PARTITION = -1

# How often librdkafka reports broker states; it is how readiness learns that Kafka is
# reachable again after an outage (error_cb only reports the way down).
_STATISTICS_INTERVAL_MS = 2000
# Poller cadence when there is nothing to report: short enough that delivery latency
# stays in milliseconds, long enough that an idle service uses no CPU to speak of.
_IDLE_POLL_INTERVAL_S = 0.005
# With librdkafka's queue empty there is no report to wait for; `deliver` polls itself
# after producing, so a long sleep here delays nothing.
_EMPTY_POLL_INTERVAL_S = 0.05


class KafkaProducer:
    """One librdkafka producer, its poller task and its health signals."""

    def __init__(
        self,
        connection: KafkaConnection,
        tuning: ProducerTuning,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        conf = producer_config(connection, tuning)
        # librdkafka must never give up on a record it has sent: it cannot know whether
        # the broker wrote it, and a record re-produced after such a timeout would be a
        # duplicate (its idempotent retry would not), or overtaken by younger ones.
        # The sink's delivery decisions (kafka/delivery.py) use KAFKA_MESSAGE_TIMEOUT_MS as a
        # stall timeout instead.
        conf["message.timeout.ms"] = 0
        conf.update(extra_config or {})
        log.info("kafka producer configured", config=redacted(conf))
        conf["error_cb"] = self._on_error
        conf["stats_cb"] = self._on_statistics
        conf["statistics.interval.ms"] = _STATISTICS_INTERVAL_MS
        # librdkafka's own log lines go through logging (and so through structlog's
        # formatter) instead of straight to stderr in its `%4|…` format.
        conf["logger"] = logging.getLogger("librdkafka")
        self._producer = Producer(conf)
        self._reachable = False
        self._fatal_error: KafkaError | None = None
        self._closed = False
        # While a broker is down librdkafka reports each failed attempt, several a second.
        self._client_errors = ThrottledLogger(log)

    @property
    def reachable(self) -> bool:
        """True once a broker connection is up (refreshed every statistics interval)."""
        return self._reachable

    @property
    def fatal_error(self) -> KafkaError | None:
        return self._fatal_error

    def __len__(self) -> int:
        """Records enqueued in librdkafka and not yet acknowledged or failed."""
        return len(self._producer)

    def produce_nowait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        on_delivery: DeliveryCallback,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Enqueue one record; raises `BufferError` when librdkafka's queue is full."""
        if headers is None:
            self._producer.produce(
                topic, value, key, timestamp=timestamp_ms, on_delivery=on_delivery
            )
        else:
            self._producer.produce(
                topic,
                value,
                key,
                timestamp=timestamp_ms,
                headers=headers,  # type: ignore[arg-type]  # the stub's list is invariant
                on_delivery=on_delivery,
            )

    def produce_batch(
        self,
        records: Sequence[Record],
        start: int,
        stop: int,
        first_seq: int,
        on_delivery: SeqDeliveryCallback,
    ) -> int:
        """Enqueue `records[start:stop]`, the one at `start` with sequence number
        `first_seq` and the others following, each reported to `on_delivery(seq, …)`.

        Returns the index of the first record librdkafka's full queue refused, or `stop`
        when every one went in. The sink's hot loop: positional arguments, because
        matching keywords costs ~0.3 µs a record in `produce`'s argument parsing.
        """
        produce = self._producer.produce
        seq = first_seq
        index = start
        try:
            while index < stop:
                topic, key, value, headers, timestamp_ms = records[index]
                produce(
                    topic,
                    value,
                    key,
                    _ANY_PARTITION,
                    partial(on_delivery, seq),
                    None,
                    timestamp_ms,
                    headers,  # type: ignore[arg-type]  # the stub's list is invariant
                )
                index += 1
                seq += 1
        except BufferError:
            pass
        return index

    async def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        on_delivery: DeliveryCallback,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Enqueue one record, waiting (without blocking the loop) while the queue is full."""
        while True:
            try:
                self.produce_nowait(topic, key, value, timestamp_ms, on_delivery, headers)
                return
            except BufferError:
                await self.wait_for_queue_space()

    async def wait_for_queue_space(self) -> None:
        """Serve delivery reports until librdkafka's local queue has room again."""
        self._producer.poll(0)
        await asyncio.sleep(_IDLE_POLL_INTERVAL_S)

    def purge_queued(self) -> None:
        """Take back every record librdkafka has queued but not yet sent.

        Each is reported to its delivery callback with `_PURGE_QUEUE` on a later poll.
        Records in flight are left alone: the broker may already have written them.
        """
        self._producer.purge(in_queue=True, in_flight=False, blocking=False)

    def poll(self) -> int:
        """Serve pending delivery reports now; returns how many were served."""
        served: int = self._producer.poll(0)
        return served

    async def run_poller(self) -> None:
        """Serve delivery reports until cancelled."""
        producer = self._producer
        while True:
            served = producer.poll(0)
            queued = len(producer)
            PRODUCER_QUEUE_DEPTH.set(queued)
            if served:
                await asyncio.sleep(0)
            else:
                # Nothing outstanding: nothing to report, so wake up rarely (idle CPU with
                # 1,000 quiet channels went from 5 % to 1 % of a core, bench/scale.py).
                await asyncio.sleep(_IDLE_POLL_INTERVAL_S if queued else _EMPTY_POLL_INTERVAL_S)

    async def flush(self, timeout_s: float) -> int:
        """Wait for outstanding records to be acknowledged; returns how many remain."""
        deadline = time.monotonic() + timeout_s
        while len(self._producer) and time.monotonic() < deadline:
            self._producer.poll(0)
            await asyncio.sleep(0.01)
        self._producer.poll(0)
        remaining = len(self._producer)
        PRODUCER_QUEUE_DEPTH.set(remaining)
        return remaining

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            # With idempotence a fatal error (e.g. out-of-sequence) poisons the producer.
            self._fatal_error = error
            log.error("kafka producer fatal error", error=error.str(), code=error.name())
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            if self._reachable:
                log.warning("kafka all brokers down", error=error.str())
            self._reachable = False
            KAFKA_REACHABLE.set(0)
            return
        detail = error.str()
        # The first failed handshake is reported as _SSL, later ones as _TRANSPORT.
        if error.code() == KafkaError._SSL or "certificate verify failed" in detail:
            # librdkafka's text names its own property (ssl.ca.location); say which
            # setting of ours fixes it. Throttled: it repeats on every reconnect.
            self._client_errors.error(
                "kafka tls handshake failed", "tls", problem=_tls_problem(detail), error=detail
            )
            return
        self._client_errors.warning(
            "kafka client error", error.name(), error=error.str(), code=error.name()
        )

    def _on_statistics(self, stats_json: str) -> None:
        stats = json.loads(stats_json)
        brokers = stats.get("brokers", {}).values()
        reachable = any(
            broker.get("state") == "UP" and broker.get("nodeid", -1) >= 0 for broker in brokers
        )
        if reachable != self._reachable:
            if reachable:
                log.info("kafka reachable")
            else:
                log.info("kafka unreachable")
        self._reachable = reachable
        KAFKA_REACHABLE.set(1 if reachable else 0)


def _tls_problem(detail: str) -> str:
    """One line naming the setting to fix for a failed TLS handshake with a broker."""
    if "certificate verify failed" in detail:
        return (
            "the broker's certificate is not signed by a CA this service trusts: set "
            "KAFKA_SSL_CA_LOCATION to the PEM file of the CA that signed it"
        )
    return (
        "could not talk TLS to the broker: check that KAFKA_BROKERS names its SSL "
        "listener and that KAFKA_SECURITY_PROTOCOL and KAFKA_SSL_CA_LOCATION match it"
    )
