"""scale: 1,000 joined channels over 20 connections, idle and with light chat.

The service joins `--scale-channels` channels at TWITCH_CHANNELS_PER_CONNECTION=50.
Twitch lets an ordinary account JOIN 20 channels per 10 s (1,000 would take 8 min), so
the service and the simulator both use the verified-bot limit (2,000 per 10 s), and
connections open `--scale-open-interval-s` apart instead of the default 2 s; neither
changes the steady state being measured. Then:

- idle: the service's RSS and CPU seconds over `--scale-idle-seconds` with no chat;
- chat: the corpus replayed at `--scale-rate` lines/s spread over every channel
  (5 lines/s per channel at the defaults), CPU and RSS over `--scale-chat-seconds`,
  and the loss check afterwards.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.harness import running_service
from bench.machine import load_average
from bench.report import Result, at_most, exactly
from twitch_ingestion.simulator import SimulatorConfig, SimulatorThread, default_corpus_path

__all__ = ["NAME", "NEEDS_BROKER", "add_arguments", "run"]

NAME = "scale"
NEEDS_BROKER = True
"""Runs against Kafka: `python -m bench` checks a broker answers before starting it."""

TARGET_RSS_MIB = 150.0
_VERIFIED_BOT_JOINS_PER_10_S = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale")
    group.add_argument("--scale-channels", type=int, default=1000, help="channels joined")
    group.add_argument(
        "--scale-channels-per-connection",
        type=int,
        default=50,
        help="TWITCH_CHANNELS_PER_CONNECTION",
    )
    group.add_argument(
        "--scale-open-interval-s",
        type=float,
        default=0.2,
        help="TWITCH_CONNECTION_OPEN_INTERVAL_S (the service's default is 2 s)",
    )
    group.add_argument("--scale-idle-seconds", type=float, default=10.0, help="idle CPU window")
    group.add_argument("--scale-rate", type=float, default=5000.0, help="lines/s")
    group.add_argument(
        "--scale-chat-seconds", type=float, default=15.0, help="CPU window at --scale-rate"
    )
    group.add_argument(
        "--scale-mode", default="memory", choices=("disk", "memory"), help="BUFFER_MODE"
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    channels = [f"bench_scale_{i:04d}" for i in range(args.scale_channels)]
    config = SimulatorConfig(seed=3, join_limit=_VERIFIED_BOT_JOINS_PER_10_S)
    env = {
        "TWITCH_CHANNELS_PER_CONNECTION": str(args.scale_channels_per_connection),
        "TWITCH_JOIN_RATE_LIMIT": str(_VERIFIED_BOT_JOINS_PER_10_S),
        "TWITCH_CONNECTION_OPEN_INTERVAL_S": str(args.scale_open_interval_s),
    }
    started = time.monotonic()
    with (
        SimulatorThread(config) as simulator,
        running_service(
            simulator,
            channels,
            label="scale",
            buffer_mode=args.scale_mode,
            brokers=args.brokers,
            env=env,
            ready_timeout_s=300.0,
        ) as run,
    ):
        joined_after_s = time.monotonic() - started
        connections = simulator.stats().connections_current
        time.sleep(2.0)  # let the join burst (ROOMSTATE records, metrics) settle
        idle_before = run.stats.sample()
        time.sleep(args.scale_idle_seconds)
        idle_after = run.stats.sample()
        idle_load = load_average()
        idle_rss = run.stats.rss_bytes()

        stream = simulator.start_replay(
            default_corpus_path(), rate=args.scale_rate, loops=None, channels=channels
        )
        time.sleep(2.0)
        chat_before, records_before = run.stats.sample(), run.records()
        time.sleep(args.scale_chat_seconds)
        chat_after, records_after = run.stats.sample(), run.records()
        chat_load = load_average()
        chat_rss = run.stats.rss_bytes()
        stream.stop()
        sent_privmsgs = sum(simulator.stats().privmsgs_by_channel.values())
        in_kafka = run.wait_for_chat_records(sent_privmsgs)
        peak_rss = run.stats.peak_rss_bytes()
        threads = run.stats.threads()
        exit_code = run.stop()
    idle_window = idle_after.wall_s - idle_before.wall_s
    chat_window = chat_after.wall_s - chat_before.wall_s
    records = records_after - records_before
    chat_cpu = chat_after.cpu_s - chat_before.cpu_s
    return {
        "channels": len(channels),
        "connections": connections,
        "buffer_mode": args.scale_mode,
        "joined_after_s": joined_after_s,
        "threads": threads,
        "idle_window_s": idle_window,
        "idle_cpu_s": idle_after.cpu_s - idle_before.cpu_s,
        "idle_rss_bytes": idle_rss,
        "idle_load": idle_load,
        "chat_window_s": chat_window,
        "chat_records": records,
        "chat_messages_per_s": records / chat_window,
        "chat_cpu_s": chat_cpu,
        "chat_cpu_cores": chat_cpu / chat_window,
        "chat_cpu_us_per_message": chat_cpu / records * 1e6 if records else float("nan"),
        "chat_rss_bytes": chat_rss,
        "chat_load": chat_load,
        "peak_rss_bytes": peak_rss,
        "privmsgs_sent": sent_privmsgs,
        "chat_records_in_kafka": in_kafka,
        "lost": sent_privmsgs - in_kafka,
        "exit_code": exit_code,
        "service_stopped": run.stopped,
    }


def run(args: argparse.Namespace) -> Result:
    result = Result(NAME)
    figures = measure(args)
    result.details.update(figures)
    setup = f"{figures['channels']} ch / {figures['connections']} conns"
    rss_target = at_most(TARGET_RSS_MIB, "≤ 150")
    idle_load, chat_load = figures["idle_load"], figures["chat_load"]
    result.add(
        "idle: RSS", figures["idle_rss_bytes"] / 2**20, "MiB", target=rss_target,
        note=f"{setup}, joined in {figures['joined_after_s']:.0f} s", load=idle_load,
    )  # fmt: skip
    result.add(
        f"idle: CPU over {figures['idle_window_s']:.0f} s",
        figures["idle_cpu_s"],
        "CPU-s",
        note=f"{figures['idle_cpu_s'] / figures['idle_window_s'] * 100:.1f} % of a core",
        load=idle_load,
    )
    rate = f"{args.scale_rate / 1000:g}k/s"
    result.add(
        f"{rate}: RSS", figures["chat_rss_bytes"] / 2**20, "MiB", target=rss_target,
        note=f"peak {figures['peak_rss_bytes'] / 2**20:.0f} MiB (VmHWM)", load=chat_load,
    )  # fmt: skip
    result.add(
        f"{rate}: CPU",
        figures["chat_cpu_cores"],
        "cores",
        note=f"{figures['chat_cpu_us_per_message']:.1f} µs/msg at "
        f"{figures['chat_messages_per_s']:,.0f} msg/s",
        load=chat_load,
    )
    result.add(
        f"{rate}: PRIVMSGs sent − chat records in Kafka",
        figures["lost"],
        "records",
        target=exactly(0, "= 0"),
        note=f"{figures['privmsgs_sent']:,} sent; exit {figures['exit_code']}",
        load=chat_load,
    )
    return result
