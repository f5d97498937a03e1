"""throughput: sustained messages/s end to end, and what each one costs the service.

The simulator replays the real corpus (PRIVMSG, USERNOTICE, CLEARCHAT, CLEARMSG,
ROOMSTATE lines, cycled over `--throughput-channels` channels with fresh ids and
timestamps) as fast as the service reads it. The service is the real thing, a
`twitch-ingestion run` subprocess with default settings, producing to the local broker.

After `--throughput-warmup-seconds`, a window of `--throughput-seconds` is measured:

- messages/s = records that reached Kafka (chat + events + dead-letter topics, from the
  partitions' end offsets) per second of the window: what the pipeline sustains, not
  what the service read into its buffer;
- CPU per message = the service process's utime + stime (all threads, librdkafka's
  included) over the window, divided by those records;
- peak RSS = the process's VmHWM;
- loss check, after the stream stops: chat records in Kafka == PRIVMSGs the simulator
  wrote to the socket (more would be duplicates, fewer a loss).

Both buffer modes are run (`--modes`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.harness import RunningService, local_broker_stats, running_service
from bench.machine import cpu_ticks, load_average
from bench.process_stats import ProcessStats
from bench.report import Result, at_least, at_most, exactly
from twitch_ingestion.simulator import SimulatorConfig, SimulatorThread, default_corpus_path

__all__ = ["NAME", "NEEDS_BROKER", "add_arguments", "run"]

NAME = "throughput"
NEEDS_BROKER = True
"""Runs against Kafka: `python -m bench` checks a broker answers before starting it."""

TARGET_MESSAGES_PER_S = 50_000
TARGET_CPU_US_PER_MESSAGE = 14.0  # issue 12: a third of the seed stack's
TARGET_EVENT_LOOP_US_PER_MESSAGE = 10.0  # issue 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("throughput")
    group.add_argument(
        "--throughput-seconds", type=float, default=30.0, help="measured window, per mode"
    )
    group.add_argument(
        "--throughput-warmup-seconds",
        type=float,
        default=5.0,
        help="firehose before the window opens",
    )
    group.add_argument(
        "--throughput-channels", type=int, default=10, help="channels the corpus is cycled over"
    )


@dataclass(frozen=True, slots=True)
class Sample:
    wall_s: float
    cpu_s: float
    records: int
    lines_emitted: int
    rss_bytes: int
    threads_cpu_s: dict[str, float]
    """Service CPU by thread name: `python` = the event loop, `rdk:*` = librdkafka."""
    broker_cpu_s: float
    """The local broker's JVM (0 when it is elsewhere)."""
    bench_cpu_s: float
    """This process: the simulator thread, mostly."""
    machine_ticks: tuple[int, int]
    """(busy, total) jiffies of all CPUs, to tell what other processes used."""


def _sample(run: RunningService, lines_emitted: int, broker: ProcessStats | None) -> Sample:
    cpu = run.stats.sample()
    return Sample(
        cpu.wall_s,
        cpu.cpu_s,
        run.records(),
        lines_emitted,
        run.stats.rss_bytes(),
        run.stats.cpu_seconds_by_thread(),
        broker.cpu_seconds() if broker is not None else 0.0,
        time.process_time(),
        cpu_ticks(),
    )


def _per_message_us(first: Sample, last: Sample, records: int) -> dict[str, float]:
    """Where the CPU went, in µs per message that reached Kafka."""
    if not records:
        return {}
    split: dict[str, float] = {}
    for name, seconds in last.threads_cpu_s.items():
        group = "service librdkafka threads" if name.startswith("rdk:") else "service " + name
        used = seconds - first.threads_cpu_s.get(name, 0.0)
        split[group] = split.get(group, 0.0) + used / records * 1e6
    split["broker (JVM)"] = (last.broker_cpu_s - first.broker_cpu_s) / records * 1e6
    split["simulator (bench process)"] = (last.bench_cpu_s - first.bench_cpu_s) / records * 1e6
    return {name: round(us, 2) for name, us in split.items() if us > 0.005}


def measure_mode(args: argparse.Namespace, mode: str, hot_path: str = "python") -> dict[str, Any]:
    channels = [f"bench_tput_{i}" for i in range(args.throughput_channels)]
    with (
        SimulatorThread(SimulatorConfig(seed=1)) as simulator,
        running_service(
            simulator,
            channels,
            label=f"tput-{mode}",
            buffer_mode=mode,
            brokers=args.brokers,
            env={"HOT_PATH": hot_path},
        ) as run,
    ):
        broker = local_broker_stats(args.brokers)
        stream = simulator.start_replay(
            default_corpus_path(), rate=0, loops=None, channels=channels
        )
        time.sleep(args.throughput_warmup_seconds)
        load_before = load_average()
        samples = [_sample(run, stream.stats().lines_emitted, broker)]
        end = samples[0].wall_s + args.throughput_seconds
        while (now := time.monotonic()) < end:
            time.sleep(min(1.0, end - now))
            samples.append(_sample(run, stream.stats().lines_emitted, broker))
        load = load_average()
        stream.stop()
        peak_rss_streaming = run.stats.peak_rss_bytes()
        sent_privmsgs = sum(simulator.stats().privmsgs_by_channel.values())
        in_kafka = run.wait_for_chat_records(sent_privmsgs)
        peak_rss = run.stats.peak_rss_bytes()
        exit_code = run.stop()
    first, last = samples[0], samples[-1]
    window_s = last.wall_s - first.wall_s
    records = last.records - first.records
    cpu_s = last.cpu_s - first.cpu_s
    busy_ticks = last.machine_ticks[0] - first.machine_ticks[0]
    all_ticks = last.machine_ticks[1] - first.machine_ticks[1]
    machine_busy_cores = (os.cpu_count() or 1) * busy_ticks / max(1, all_ticks)
    ours = _per_message_us(first, last, records)
    ours_cores = sum(ours.values()) * records / 1e6 / window_s
    per_second = [
        (b.records - a.records) / (b.wall_s - a.wall_s) for a, b in itertools.pairwise(samples)
    ]
    return {
        "mode": mode,
        "hot_path": hot_path,
        "channels": len(channels),
        "window_s": window_s,
        "records": records,
        "messages_per_s": records / window_s,
        "messages_per_s_min_1s": min(per_second) if per_second else 0.0,
        "messages_per_s_max_1s": max(per_second) if per_second else 0.0,
        "lines_sent_per_s": (last.lines_emitted - first.lines_emitted) / window_s,
        "cpu_s": cpu_s,
        "cpu_cores": cpu_s / window_s,
        "cpu_s_per_1000": cpu_s / records * 1000 if records else float("nan"),
        "cpu_us_per_message": cpu_s / records * 1e6 if records else float("nan"),
        "cpu_us_per_message_by_process": _per_message_us(first, last, records),
        "cpu_cores_by_process": {
            name: round(us * records / 1e6 / window_s, 2) for name, us in ours.items()
        },
        "machine_busy_cores": round(machine_busy_cores, 2),
        "other_processes_cores": round(max(0.0, machine_busy_cores - ours_cores), 2),
        "peak_rss_bytes_streaming": peak_rss_streaming,
        "peak_rss_bytes": peak_rss,
        "privmsgs_sent": sent_privmsgs,
        "chat_records_in_kafka": in_kafka,
        "lost": sent_privmsgs - in_kafka,
        "exit_code": exit_code,
        "service_stopped": run.stopped,
        "load_before": load_before,
        "load": load,
        "samples": [asdict(sample) for sample in samples[:: max(1, len(samples) // 40)]],
    }


def run(args: argparse.Namespace) -> Result:
    result = Result(NAME)
    # Paths interleaved within each mode (A, B, A, B …): this VM drifts between sittings.
    for mode, hot_path in ((m, p) for m in args.modes for p in args.hot_paths):
        figures = measure_mode(args, mode, hot_path)
        label = f"{mode} [{hot_path}]"
        result.details[label] = figures
        load = figures["load"]
        result.add(
            f"{label}: sustained",
            figures["messages_per_s"],
            "msg/s",
            target=at_least(TARGET_MESSAGES_PER_S, "≥ 50,000"),
            note=f"{figures['window_s']:.0f} s window; 1 s min/max "
            f"{figures['messages_per_s_min_1s']:,.0f}/{figures['messages_per_s_max_1s']:,.0f}; "
            f"other processes used {figures['other_processes_cores']:.2f} cores",
            load=load,
        )
        result.add(
            f"{label}: service CPU per message",
            figures["cpu_us_per_message"],
            "µs",
            target=at_most(TARGET_CPU_US_PER_MESSAGE, "≤ 14"),
            note=f"= {figures['cpu_s_per_1000']:.4f} CPU-s/1000 msg; "
            f"{figures['cpu_cores']:.2f} cores busy",
            load=load,
        )
        split = figures["cpu_us_per_message_by_process"]
        result.add(
            f"{label}: event loop thread CPU per message",
            split.get("service python", float("nan")),
            "µs",
            target=at_most(TARGET_EVENT_LOOP_US_PER_MESSAGE, "≤ 10"),
            note=f"librdkafka threads {split.get('service librdkafka threads', 0):.1f} µs; "
            f"broker JVM {split.get('broker (JVM)', 0):.1f} µs; "
            f"simulator {split.get('simulator (bench process)', 0):.1f} µs",
            load=load,
        )
        result.add(f"{label}: peak RSS", figures["peak_rss_bytes"] / 2**20, "MiB", load=load)
        verdict = "no loss, no duplicates" if figures["lost"] == 0 else "MISMATCH"
        result.add(
            f"{label}: PRIVMSGs sent − chat records in Kafka",
            figures["lost"],
            "records",
            target=exactly(0, "= 0"),
            note=f"{figures['privmsgs_sent']:,} sent: {verdict}; exit {figures['exit_code']}",
            load=load,
        )
    return result
