"""`twitch-ingestion demo` (`make demo`): the whole pipeline, offline, in one command.

The simulator replays chat into two channels — by default the sample chat bundled with
the package (generated: emotes, `/me`, replies, Shared Chat, every event kind), so the
demo runs from a `pip install` or the Docker image as well as from a checkout; `--corpus`
replays a file of real captured lines instead. The service reads it exactly as it would
read Twitch and publishes to Kafka, and a consumer prints each record as it lands. Demo
records go to `demo.`-prefixed topics, created up front with the service's own topic
settings, so they never mix with what `make run` collects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
from pathlib import Path

import structlog
from confluent_kafka.admin import AdminClient

from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import ConfigError, Settings, load_settings
from twitch_ingestion.kafka.producer_config import admin_config
from twitch_ingestion.kafka.topics import ensure_topics
from twitch_ingestion.logging import configure_logging
from twitch_ingestion.service import ExitCode, IngestionService, topic_specs
from twitch_ingestion.simulator import SimulatorConfig, TwitchSimulator, load_corpus
from twitch_ingestion.simulator.stats import StreamStats
from twitch_ingestion.tail import iter_records

__all__ = ["add_demo_arguments", "run_demo"]

log = structlog.get_logger(__name__)

_DEMO_TOPIC_PREFIX = "demo."
# The simulator is local: a service that has not joined by then is not going to.
_JOIN_TIMEOUT_S = 30.0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channels", default="forsen,xqcow", help="channels the replay is spread over"
    )
    parser.add_argument(
        "--rate", type=float, default=250.0, help="lines per second (0 = as fast as possible)"
    )
    parser.add_argument("--loops", type=int, default=1, help="passes over the chat")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        metavar="FILE",
        help="replay this file of raw IRC lines (default: the bundled sample chat)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=_DEMO_TOPIC_PREFIX,
        help="prefix of the demo's topic names (default %(default)r)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def run_demo(args: argparse.Namespace) -> int:
    # Validated and normalised by the TWITCH_CHANNEL rule (twitch_ingestion.channels).
    channels = [c for c in args.channels.split(",") if c.strip()]
    try:
        settings = load_settings(
            twitch_channel=channels,
            twitch_username=None,
            twitch_oauth_token=None,
            twitch_irc_host="127.0.0.1",
            twitch_irc_port=1,  # replaced by the simulator's port below
            twitch_irc_tls=False,
            health_port=0,
            buffer_dir=Path("data/demo-buffer"),
            stats_log_interval_s=5.0,
        )
    except ConfigError as exc:
        print(f"twitch-ingestion demo: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    prefix = args.topic_prefix
    settings = settings.model_copy(
        update={
            "kafka_topic_chat_messages": prefix + settings.kafka_topic_chat_messages,
            "kafka_topic_chat_events": prefix + settings.kafka_topic_chat_events,
            "kafka_topic_dlq": (
                prefix + settings.kafka_topic_dlq if settings.kafka_topic_dlq else None
            ),
        }
    )
    configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(_demo(settings, settings.twitch_channel, args))


def _create_topics(settings: Settings) -> str | None:
    """Create the demo's topics now, each with the service's partitions and replication.

    Not left to the service's background check: the first ROOMSTATE of a JOIN may be
    produced before that check has run, and a broker with auto-create on would then make
    the events topic with its own default (1 partition) while its siblings get
    KAFKA_TOPIC_PARTITIONS. Returns a one-line problem, or None.
    """
    admin = AdminClient(admin_config(configs.kafka_connection(settings)))
    specs = topic_specs(settings)
    check = ensure_topics(admin, specs, create=True)
    if check.ok:
        # An older demo may have left a topic the broker auto-created: say so, once.
        topics = admin.list_topics(timeout=10).topics
        for spec in specs:
            found = topics.get(spec.name)
            if found is not None and len(found.partitions) != spec.partitions:
                log.warning(
                    "demo topic has an unexpected partition count",
                    topic=spec.name,
                    partitions=len(found.partitions),
                    expected=spec.partitions,
                    hint="delete it to recreate it",
                )
        return None
    if not check.reachable:
        return f"Kafka at {settings.kafka_brokers} is unreachable: start it (make broker)"
    return "; ".join(check.problems.values())


async def _demo(settings: Settings, channels: list[str], args: argparse.Namespace) -> int:
    try:
        load_corpus(args.corpus)  # a bad --corpus fails here, in one line
    except ValueError as exc:
        print(f"twitch-ingestion demo: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    problem = await asyncio.to_thread(_create_topics, settings)
    if problem is not None:
        print(f"twitch-ingestion demo: {problem}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    simulator = TwitchSimulator(SimulatorConfig(seed=2024))
    await simulator.start()
    settings = settings.model_copy(update={"twitch_irc_port": simulator.port})
    started_ms = int(time.time() * 1000)
    printer = _RecordPrinter(settings, settings.kafka_topic_chat_messages, started_ms, args.quiet)
    printer.start()
    service = IngestionService(settings)
    service_task = asyncio.create_task(service.run())
    began = time.monotonic()
    try:
        joined = await _service_joined(simulator, channels, service_task)
        if joined:
            sent, stream, elapsed = await _replay_and_wait(
                simulator, service, service_task, printer, args, began
            )
    finally:
        service.request_stop()
        code = await service_task
        printer.stop()
        await simulator.stop()
    if not joined:
        # The service stopped (it said why, in one line) or never joined.
        return int(code) if code is not ExitCode.OK else int(ExitCode.FAILURE)
    chat_topic = settings.kafka_topic_chat_messages
    events_topic = settings.kafka_topic_chat_events
    print(
        f"\ndemo: the simulator sent {sent} chat messages ({stream.lines_emitted} lines in all); "
        f"{printer.count} records read back from topic {chat_topic!r} "
        f"in {elapsed:.1f} s; events went to {events_topic!r}.\n"
        f"demo: see the records again with `make tail TOPIC={chat_topic}` in a checkout, "
        f"or `twitch-ingestion tail --topic {chat_topic}`"
        f" (events: --topic {events_topic}).",
        file=sys.stderr,
    )
    if code is not ExitCode.OK:
        return int(code)
    return 0 if printer.count >= sent else 1


async def _replay_and_wait(
    simulator: TwitchSimulator,
    service: IngestionService,
    service_task: asyncio.Task[ExitCode],
    printer: _RecordPrinter,
    args: argparse.Namespace,
    began: float,
) -> tuple[int, StreamStats, float]:
    """Replay the chat, then wait until Kafka acknowledged it and the printer read it."""
    replay = simulator.start_replay(args.corpus, rate=args.rate, loops=args.loops)
    stream = await replay.wait()
    sent = stream.lines_by_command.get("PRIVMSG", 0)
    deadline = time.monotonic() + 60
    while (service.sink.pending or printer.count < sent) and time.monotonic() < deadline:
        if service_task.done():
            break
        await asyncio.sleep(0.2)
    return sent, stream, time.monotonic() - began


async def _service_joined(
    simulator: TwitchSimulator, channels: list[str], service_task: asyncio.Task[ExitCode]
) -> bool:
    """Wait until the service joined every channel; False if it stopped or never did."""
    joined = asyncio.create_task(simulator.wait_for_joined(channels, timeout=_JOIN_TIMEOUT_S))
    await asyncio.wait({joined, service_task}, return_when=asyncio.FIRST_COMPLETED)
    if not joined.done():
        joined.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await joined
        return False
    if joined.exception() is not None:
        print(
            f"twitch-ingestion demo: the service did not join {', '.join(channels)} within "
            f"{_JOIN_TIMEOUT_S:.0f} s; see the log lines above for why",
            file=sys.stderr,
        )
        return False
    return True


class _RecordPrinter:
    """Prints records of one topic (written since the demo began) from a thread."""

    def __init__(self, settings: Settings, topic: str, since_ms: int, quiet: bool) -> None:
        self._settings = settings
        self._topic = topic
        self._since_ms = since_ms
        self._quiet = quiet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-printer", daemon=True)
        self.count = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        out = sys.stdout
        for record in iter_records(self._settings, self._topic, stop=self._stop):
            if record.timestamp_ms < self._since_ms:
                continue
            self.count += 1
            if not self._quiet:
                key = (record.key or b"").decode(errors="replace")
                value = (record.value or b"").decode(errors="replace")
                out.write(f"{key}\t{value}\n")
                out.flush()
