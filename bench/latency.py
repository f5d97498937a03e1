"""latency: from the simulator writing a line to the broker appending its record.

The simulator replays the corpus at fixed offered rates (`--latency-rates`, lines/s over
`--latency-channels` channels); with `fresh_timestamps` every line's `tmi-sent-ts` is the
simulator's clock (ms) when it rendered the batch it then writes at once, and the
service copies it into `ChatMessage.timestamp`. The chat topic is created with
`message.timestamp.type=LogAppendTime`, so the timestamp a consumer sees is the broker's
append time. Latency = append time - `timestamp`: socket, parse, buffer, librdkafka's
linger (10 ms by default) and batching, the broker's request handling. Both are the
same host's wall clock, in milliseconds.

Only corpus lines that carry `tmi-sent-ts` are replayed (5 PRIVMSGs of the corpus have
none; the service would stamp them with its read time). The records are consumed after
the runs, so reading them costs the service nothing. The first
`--latency-warmup-seconds` of every rate are left out. The JSON also splits each record
into simulator → service read (`received_at`) and service read → broker append.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    TopicPartition,
)

from bench.harness import RunningService, running_service
from bench.machine import load_average
from bench.report import Result, at_most
from twitch_ingestion.simulator import SimulatorConfig, SimulatorThread, default_corpus_path

__all__ = ["NAME", "NEEDS_BROKER", "add_arguments", "percentile", "run"]

NAME = "latency"
NEEDS_BROKER = True
"""Runs against Kafka: `python -m bench` checks a broker answers before starting it."""

TARGET_P99_MS_AT_5K = 50.0
_PARTITIONS = 6


def _rates(value: str) -> list[float]:
    return [float(part) for part in value.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("latency")
    group.add_argument(
        "--latency-rates",
        type=_rates,
        default="1000,5000,20000",
        help="offered rates, lines/s, comma-separated",
    )
    group.add_argument("--latency-seconds", type=float, default=10.0, help="per rate")
    group.add_argument("--latency-warmup-seconds", type=float, default=1.0, help="per rate")
    group.add_argument(
        "--latency-channels", type=int, default=10, help="channels the lines are spread over"
    )


class _Times(msgspec.Struct):
    timestamp: int
    received_at: int


_DECODE_TIMES = msgspec.json.Decoder(_Times).decode


def percentile(sorted_values: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _summary(values: list[int]) -> dict[str, float]:
    values.sort()
    return {
        "count": len(values),
        "p50_ms": percentile(values, 0.50),
        "p90_ms": percentile(values, 0.90),
        "p99_ms": percentile(values, 0.99),
        "p999_ms": percentile(values, 0.999),
        "max_ms": float(values[-1]) if values else math.nan,
        "min_ms": float(values[0]) if values else math.nan,
    }


def _timestamped_corpus(directory: Path) -> Path:
    path = directory / "corpus-with-tmi-sent-ts.txt"
    lines = default_corpus_path().read_text(encoding="utf-8").split("\n")
    path.write_text("\n".join(line for line in lines if ";tmi-sent-ts=" in line) + "\n")
    return path


def _consume_times(
    brokers: str, topic: str, expected: int
) -> tuple[list[tuple[int, int, int]], int]:
    """(sent_ms, received_at_ms, appended_ms) per record, and how many records were not
    stamped with the broker's append time (should be 0)."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"bench-latency-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(_PARTITIONS)])
    times: list[tuple[int, int, int]] = []
    not_append_time = 0
    deadline = time.monotonic() + 120
    try:
        while len(times) < expected and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 1.0):
                if message.error() is not None:
                    continue
                kind, appended_ms = message.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    not_append_time += 1
                value = message.value()
                if value is None:
                    continue
                decoded = _DECODE_TIMES(value)
                times.append((decoded.timestamp, decoded.received_at, appended_ms))
    finally:
        consumer.close()
    return times, not_append_time


def _offer(
    run: RunningService, corpus: Path, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    start_ms = time.time_ns() // 1_000_000
    stream = run.simulator.start_replay(corpus, rate=rate, loops=None, channels=run.channels)
    time.sleep(args.latency_seconds)
    stream.stop()
    end_ms = time.time_ns() // 1_000_000
    emitted = stream.stats().lines_emitted
    load = load_average()
    # The next rate starts only once this one's backlog (if the service fell behind) is
    # in Kafka, so that it does not inherit a queue.
    sent = sum(run.simulator.stats().privmsgs_by_channel.values())
    run.wait_for_chat_records(sent, timeout_s=60.0, stall_s=5.0)
    return {
        "rate": rate,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "lines_emitted": emitted,
        "achieved_lines_per_s": emitted / ((end_ms - start_ms) / 1000),
        "load": load,
    }


def measure_mode(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    channels = [f"bench_lat_{i}" for i in range(args.latency_channels)]
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as scratch:
        corpus = _timestamped_corpus(Path(scratch))
        with (
            SimulatorThread(SimulatorConfig(seed=2)) as simulator,
            running_service(
                simulator,
                channels,
                label=f"lat-{mode}",
                buffer_mode=mode,
                brokers=args.brokers,
                chat_topic_config={"message.timestamp.type": "LogAppendTime"},
            ) as run,
        ):
            time.sleep(1.0)
            windows = [_offer(run, corpus, rate, args) for rate in args.latency_rates]
            sent_privmsgs = sum(simulator.stats().privmsgs_by_channel.values())
            in_kafka = run.wait_for_chat_records(sent_privmsgs)
            times, not_append_time = _consume_times(args.brokers, run.topics.chat, in_kafka)
            exit_code = run.stop()
    warmup_ms = int(args.latency_warmup_seconds * 1000)
    by_rate: list[dict[str, Any]] = []
    for window in windows:
        low, high = window["start_ms"] + warmup_ms, window["end_ms"]
        total: list[int] = []
        to_service: list[int] = []
        in_service: list[int] = []
        for sent, received, appended in times:
            if low <= sent <= high:
                total.append(appended - sent)
                to_service.append(received - sent)
                in_service.append(appended - received)
        by_rate.append(
            {
                **window,
                "end_to_end": _summary(total),
                "simulator_to_service_read": _summary(to_service),
                "service_read_to_broker_append": _summary(in_service),
            }
        )
    return {
        "mode": mode,
        "channels": len(channels),
        "rates": by_rate,
        "privmsgs_sent": sent_privmsgs,
        "chat_records_in_kafka": in_kafka,
        "records_consumed": len(times),
        "records_without_log_append_time": not_append_time,
        "exit_code": exit_code,
    }


def run(args: argparse.Namespace) -> Result:
    result = Result(NAME)
    for mode in args.modes:
        figures = measure_mode(args, mode)
        result.details[mode] = figures
        for window in figures["rates"]:
            e2e = window["end_to_end"]
            rate = window["rate"]
            label = f"{mode} @ {rate / 1000:g}k/s"
            note = (
                f"p50 {e2e['p50_ms']:.0f} / max {e2e['max_ms']:.0f} ms; "
                f"{e2e['count']:,} msgs at {window['achieved_lines_per_s']:,.0f}/s offered"
            )
            target = at_most(TARGET_P99_MS_AT_5K, "≤ 50 (at 5k)") if rate == 5000 else None
            result.add(
                f"{label}: p99", e2e["p99_ms"], "ms", target=target, note=note, load=window["load"]
            )
    return result
