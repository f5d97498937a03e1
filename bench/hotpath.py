"""hotpath: where the event loop's CPU per message goes, stage by stage, in-process.

Each stage of the service's hot path is timed alone, with the service's own code and
the corpus mix the throughput benchmark replays, in the calling thread's CPU time
(`time.thread_time_ns`: librdkafka's background threads are not counted; the
throughput benchmark reports those per thread). Per stage, the best of
`--hotpath-rounds` rounds, in µs per published record:

- read: `TwitchSession.receive_data` on 256 KiB chunks of wire bytes (UTF-8 decode,
  line split, `parse_line`, dispatch) — per line;
- route: `route_message` (PRIVMSG → `ChatMessage`, events);
- encode: the sink's msgspec JSON encoder;
- buffer append + ack: `MemoryBuffer` / `DiskBuffer` `append_batch` per chunk and one
  `ack` per record (the disk one includes `maybe_sync`, i.e. the group-commit fsyncs);
- sink.deliver with a producer that does nothing: the IRC record encoder's `deliver`
  (route + encode + the record loop + per-chunk metrics), the per-channel count
  (`ChannelFlowSink`, as the service wires it), handing each chunk to
  `KafkaSink.deliver` (buffer append + one `functools.partial` per record);
- produce: confluent-kafka `Producer.produce` (the service's settings, the real broker)
  with the arguments the sink passes (a `functools.partial` callback per record), without
  the sink's own Python wrapper around it;
- delivery reports: `Producer.poll` serving them, with the sink's real `_on_delivery`
  (buffer ack, counters, sampled latency histogram) and with a no-op callback;
- metrics: one `Counter.inc` / `Gauge.set` / `Histogram.observe` (prometheus_client).

The difference between the sum of these and the event loop thread's CPU per message in
the throughput benchmark is what is left: asyncio, socket reads, GC, the poller task.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import msgspec
from confluent_kafka import Producer

from bench.harness import BenchTopics, create_topics, delete_topics
from bench.report import Result
from twitch_ingestion import component_configs as configs
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.memory import MemoryBuffer
from twitch_ingestion.buffer.protocol import Buffer
from twitch_ingestion.channel_flow import ChannelFlow, ChannelFlowSink
from twitch_ingestion.config import BufferMode, Settings
from twitch_ingestion.kafka.producer import DeliveryCallback, SeqDeliveryCallback
from twitch_ingestion.kafka.producer_config import producer_config
from twitch_ingestion.kafka.sink import KafkaSink
from twitch_ingestion.metrics import BUFFER_BYTES, BYTES_RECEIVED, DELIVERY_LATENCY
from twitch_ingestion.records import Headers, Record
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.records.events import SourceRecord
from twitch_ingestion.simulator import DEFAULT_REPLAY_COMMANDS, default_corpus_path
from twitch_ingestion.sources.irc.compiled import HotPathChoice, compiled_line_reader
from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line
from twitch_ingestion.sources.irc.records import IrcRecordEncoder
from twitch_ingestion.sources.irc.routing import ContractViolation, route_message
from twitch_ingestion.sources.irc.session import ChatLines, TwitchSession

__all__ = ["NAME", "NEEDS_BROKER", "NullRecordSink", "add_arguments", "best_ns_per_item", "run"]

NAME = "hotpath"
NEEDS_BROKER = True
"""Runs against Kafka: `python -m bench` checks a broker answers before starting it."""

_READ_BYTES = 256 * 1024  # TWITCH_READ_BUFFER_BYTES' default: one read at saturation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hotpath")
    group.add_argument(
        "--hotpath-rounds", type=int, default=5, help="rounds per stage; the best is kept"
    )
    group.add_argument(
        "--hotpath-passes", type=int, default=4, help="corpus passes per round (~30k lines)"
    )


def best_ns_per_item(rounds: int, items: int, body: Callable[[], object]) -> float:
    body()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.thread_time_ns()
        body()
        best = min(best, (time.thread_time_ns() - started) / items)
    return best


def _wire_chunks(passes: int) -> tuple[list[bytes], int]:
    """The replayed corpus lines as the simulator sends them, cut into socket reads."""
    lines = [
        line
        for line in default_corpus_path().read_text(encoding="utf-8").split("\n")
        if line and _command(line) in DEFAULT_REPLAY_COMMANDS
    ]
    data = "".join(f"{line}\r\n" for line in lines).encode() * passes
    return [data[i : i + _READ_BYTES] for i in range(0, len(data), _READ_BYTES)], len(
        lines
    ) * passes


def _command(line: str) -> str | None:
    try:
        return parse_line(line).command
    except ValueError:
        return None


def _read_all(
    chunks: Sequence[bytes], hot_path: HotPathChoice = "python"
) -> list[Sequence[IrcMessage]]:
    """Each read's chat lines as the session hands them on: lists on the Python path,
    the compiled reader's `ParsedChunk`s (PRIVMSG lines not yet built) on the compiled."""
    session = TwitchSession("justinfan1", None)
    session.line_reader = compiled_line_reader(hot_path)
    batches: list[Sequence[IrcMessage]] = []
    for chunk in chunks:
        for event in session.receive_data(chunk, 0.0):
            if type(event) is ChatLines:
                batches.append(event.messages)
    return batches


def _route_all(batches: Sequence[Sequence[IrcMessage]]) -> list[SourceRecord]:
    room_ids: dict[str, str] = {}
    routed: list[SourceRecord] = []
    for batch in batches:
        for message in batch:
            try:
                record = route_message(message, 1, room_ids)
            except ContractViolation:
                continue
            if record is not None:
                routed.append(record)
    return routed


class _NullProducer:
    """Stands in for `KafkaProducer` where the sink's own cost is measured."""

    reachable = True

    def produce_nowait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        on_delivery: DeliveryCallback,
        headers: Headers | None = None,
    ) -> None:
        return None

    def produce_batch(
        self,
        records: Sequence[Record],
        start: int,
        stop: int,
        first_seq: int,
        on_delivery: SeqDeliveryCallback,
    ) -> int:
        # What `KafkaProducer.produce_batch` does per record, less librdkafka's produce.
        seq = first_seq
        for index in range(start, stop):
            _topic, _key, _value, _headers, _timestamp_ms = records[index]
            partial(on_delivery, seq)
            seq += 1
        return stop

    async def wait_for_queue_space(self) -> None:
        return None

    def purge_queued(self) -> None:
        return None

    def poll(self) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def _settings(directory: Path, mode: BufferMode, brokers: str, topics: BenchTopics) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # never a developer's .env
        kafka_brokers=brokers,
        buffer_mode=mode,
        buffer_dir=directory,
        kafka_topic_chat_messages=topics.chat,
        kafka_topic_chat_events=topics.events,
        kafka_topic_dlq=topics.dlq,
    )


def _open_buffer(settings: Settings) -> Buffer:
    buffer: Buffer = (
        MemoryBuffer.from_config(configs.buffer_config(settings))
        if settings.buffer_mode is BufferMode.MEMORY
        else DiskBuffer.from_config(configs.buffer_config(settings))
    )
    buffer.open()
    return buffer


def _buffer_cost(
    settings: Settings, chunks: Sequence[list[Record]], records: int, rounds: int
) -> float:
    """µs-per-record cost of appending the read chunks and acking every record."""

    def body() -> None:
        buffer = _open_buffer(settings)
        for chunk in chunks:
            appended = buffer.append_batch(chunk)
            buffer.maybe_sync(time.monotonic())
            for seq in range(appended.first_seq, appended.first_seq + appended.accepted):
                buffer.ack(seq)
        buffer.close()
        shutil.rmtree(settings.buffer_dir, ignore_errors=True)

    return best_ns_per_item(rounds, records, body) / 1000


class NullRecordSink:
    async def deliver(self, records: list[Record]) -> None:
        return None

    def deliver_nowait(self, record: Record) -> None:
        return None


def _encoder_cost(
    settings: Settings, batches: Sequence[Sequence[IrcMessage]], lines: int, rounds: int
) -> float:
    """µs per line of `IrcRecordEncoder.deliver` alone (route + encode + record tuples),
    into a sink that does nothing: the step the compiled path replaces for PRIVMSG."""
    encoder = IrcRecordEncoder.for_hot_path(
        settings.hot_path, NullRecordSink(), RecordBuilder(configs.topics(settings))
    )

    def body() -> None:
        async def deliver_all() -> None:
            for batch in batches:
                await encoder.deliver(batch, 1, {})

        asyncio.run(deliver_all())

    return best_ns_per_item(rounds, lines, body) / 1000


def _deliver_cost(
    settings: Settings, batches: Sequence[Sequence[IrcMessage]], records: int, rounds: int
) -> float:
    """µs per record of the IRC encoder + `KafkaSink.deliver`, with a producer that
    does nothing; wired as the service wires them (the per-channel count in between)."""

    def body() -> None:
        buffer = _open_buffer(settings)
        sink = KafkaSink(configs.kafka_sink_config(settings), _NullProducer(), buffer)
        counted = ChannelFlowSink(
            sink, ChannelFlow(configs.topics(settings), max_channels=settings.metrics_channels_max)
        )
        encoder = IrcRecordEncoder.for_hot_path(
            settings.hot_path, counted, RecordBuilder(configs.topics(settings))
        )

        async def deliver_all() -> None:
            for batch in batches:
                await encoder.deliver(batch, 1, {})

        asyncio.run(deliver_all())
        buffer.close()
        shutil.rmtree(settings.buffer_dir, ignore_errors=True)

    return best_ns_per_item(rounds, records, body) / 1000


def _producer_costs(
    settings: Settings, chunks: Sequence[list[Record]], rounds: int
) -> dict[str, float]:
    """µs per record: produce() as the sink calls it, and poll() serving the reports
    with the sink's real `_on_delivery` and with a no-op callback."""
    conf = producer_config(configs.kafka_connection(settings), configs.producer_tuning(settings))
    producer = Producer(conf)
    buffer = _open_buffer(settings)
    sink = KafkaSink(configs.kafka_sink_config(settings), _NullProducer(), buffer)
    on_delivery = sink._on_delivery

    def noop(_error: object, _message: object) -> None:
        return None

    def produce_all(callback: Callable[[int], Callable[..., None]]) -> int:
        seq = 0
        for chunk in chunks:
            for topic, key, value, _headers, timestamp_ms in chunk:
                producer.produce(
                    topic, value, key, timestamp=timestamp_ms, on_delivery=callback(seq)
                )
                seq += 1
        return seq

    callbacks: dict[str, Callable[[int], Callable[..., None]]] = {
        "poll_sink_callback": lambda seq: partial(on_delivery, seq),
        "poll_noop_callback": lambda _seq: noop,
    }
    results: dict[str, list[float]] = {"produce": [], **{label: [] for label in callbacks}}
    for _ in range(rounds):
        for label, callback in callbacks.items():
            buffer.append_batch([record for chunk in chunks for record in chunk])
            gc.collect()
            started = time.thread_time_ns()
            produced = produce_all(callback)
            results["produce"].append((time.thread_time_ns() - started) / produced)
            _wait_until_acknowledged(producer)
            started = time.thread_time_ns()
            # poll() returns events served, and one event carries a whole batch of
            # reports: len() is what says when every callback has run.
            deadline = time.monotonic() + 60
            while len(producer) and time.monotonic() < deadline:
                producer.poll(0)
            results[label].append((time.thread_time_ns() - started) / produced)
    producer.flush(30)
    buffer.close()
    return {label: min(values) / 1000 for label, values in results.items()}


def _wait_until_acknowledged(producer: Producer, timeout_s: float = 60.0) -> None:
    """Wait, without serving any delivery report, until the broker has answered.

    `len(producer)` counts records in flight *and* reports not yet served, so it stops
    changing once every ack is in; linger is 10 ms and the broker is local.
    """
    deadline = time.monotonic() + timeout_s
    time.sleep(0.3)
    before = len(producer)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = len(producer)
        if now == before:
            return
        before = now


def _metric_costs(rounds: int) -> dict[str, float]:
    calls = 100_000
    costs: dict[str, float] = {}

    def counter() -> None:
        for _ in range(calls):
            BYTES_RECEIVED.inc(1)

    def gauge() -> None:
        for _ in range(calls):
            BUFFER_BYTES.set(1)

    def histogram() -> None:
        for _ in range(calls):
            DELIVERY_LATENCY.observe(0.01)

    for label, body in (("counter_inc", counter), ("gauge_set", gauge), ("histogram", histogram)):
        costs[label] = best_ns_per_item(rounds, calls, body) / 1000
    return costs


def run(args: argparse.Namespace) -> Result:
    result = Result(NAME)
    rounds = args.hotpath_rounds
    chunks, lines = _wire_chunks(args.hotpath_passes)
    batches = _read_all(chunks)
    routed = _route_all(batches)
    records = len(routed)
    encode = msgspec.json.Encoder().encode
    topics = BenchTopics.fresh("hotpath")
    create_topics(args.brokers, topics, {})
    scratch = Path(tempfile.mkdtemp(prefix="bench-hotpath-"))
    try:
        memory = _settings(scratch / "memory", BufferMode.MEMORY, args.brokers, topics)
        disk = _settings(scratch / "disk", BufferMode.DISK, args.brokers, topics)
        topic_for = {"chat": topics.chat, "events": topics.events}
        # The records the sink builds, one list per socket read.
        record_chunks: list[list[Record]] = [
            [
                (topic_for[r.destination.value], r.key.encode(), encode(r.record), None, 1)
                for r in _route_all([batch])
            ]
            for batch in batches
        ]
        stages: dict[str, float] = {
            "route_message": best_ns_per_item(rounds, records, lambda: _route_all(batches)) / 1000,
            "encode (msgspec)": best_ns_per_item(
                rounds, records, lambda: [encode(r.record) for r in routed]
            )
            / 1000,
            "memory buffer append+ack": _buffer_cost(memory, record_chunks, records, rounds),
            "disk buffer append+ack+sync": _buffer_cost(disk, record_chunks, records, rounds),
        }
        chat_lines = sum(len(batch) for batch in batches)
        # Per HOT_PATH, interleaved: the encoder alone, then with the sink and buffer.
        for hot_path in args.hot_paths:
            on_path = memory.model_copy(update={"hot_path": hot_path})
            path_read_us = (
                best_ns_per_item(rounds, lines, partial(_read_all, chunks, hot_path)) / 1000
            )
            # The encoder takes what this path's reader hands on (the fused step when
            # compiled: PRIVMSG lines encoded straight from the read's text).
            path_batches = _read_all(chunks, hot_path)
            encoder_us = _encoder_cost(on_path, path_batches, chat_lines, rounds)
            stages[f"[{hot_path}] read (TwitchSession.receive_data), per line"] = path_read_us
            stages[f"[{hot_path}] IrcRecordEncoder.deliver (route+encode), per chat line"] = (
                encoder_us
            )
            # The "parse + route + encode" per line: the session's read (split,
            # decode, parse) plus the encoder.
            stages[f"[{hot_path}] parse+route+encode, per line"] = path_read_us + encoder_us
        for hot_path in args.hot_paths:
            for name in ("memory", "disk"):
                stages[f"[{hot_path}] sink.deliver, {name}, null producer"] = _deliver_cost(
                    (memory if name == "memory" else disk).model_copy(
                        update={"hot_path": hot_path}
                    ),
                    _read_all(chunks, hot_path),
                    records,
                    rounds,
                )
        producer = _producer_costs(memory, record_chunks, rounds)
        stages["librdkafka produce()"] = producer["produce"]
        stages["poll() + sink._on_delivery"] = producer["poll_sink_callback"]
        stages["poll() + no-op callback"] = producer["poll_noop_callback"]
        metrics = _metric_costs(rounds)
    finally:
        delete_topics(args.brokers, topics.names)
        shutil.rmtree(scratch, ignore_errors=True)
    result.details = {
        "lines": lines,
        "records": records,
        "read_chunks": len(chunks),
        "lines_per_read": lines / len(chunks),
        "stages_us_per_record": stages,
        "metric_us_per_call": metrics,
    }
    for label, value in stages.items():
        result.add(label, value, "µs/msg")
    for label, value in metrics.items():
        result.add(f"prometheus {label}", value, "µs/call")
    return result
