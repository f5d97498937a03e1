"""Delivery under faults: the broker dies, the service dies, the disk fills, a segment tears.

Every test streams numbered chat (`seq <channel> <n>`) from the simulator through a real
`twitch-ingestion run` subprocess into a private broker (`LocalBroker`, never the shared
one), then reads the topic back and checks, per channel: every number the service read
is there, in order (a channel is one key, so one partition), and duplicates appear only
where the buffer documents them (records acknowledged after the last ack checkpoint of a
process that was SIGKILLed are replayed).

The broker runs with topic auto-creation off, so topics exist only when the service (or
a test) creates them. `KAFKA_MESSAGE_TIMEOUT_MS` is short, so an outage of a few seconds
goes through the sink's stall handling and its rewind from the buffer.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.broker import LocalBroker
from tests.integration.conftest import twitch_env
from tests.integration.kafka_helpers import collect_records, create_topic
from tests.integration.numbered_chat import (
    assert_exactly_once_in_order,
    duplicates_of,
    numbers_by_channel,
    parse_number,
    runs,
)
from tests.integration.service_process import ServiceProcess, StartService, stop_cleanly
from tests.support.health_endpoint import http_get, metric
from tests.support.log_events import events
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from twitch_ingestion.buffer.segment_log import (
    KIND_RECORD,
    SEGMENT_SUFFIX,
    decode_record,
    iter_frames,
)
from twitch_ingestion.simulator import SimulatorThread
from twitch_ingestion.simulator.stats import SimulatorStats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHANNELS = ["alpha", "beta", "gamma"]
# Kafka acknowledging nothing for this long counts as a stall (the sink's redelivery
# cycle); short, so that an outage of a few seconds exercises it.
MESSAGE_TIMEOUT_MS = 3000
# Lines per second over all channels: enough to have records in flight at every fault,
# little enough for a 2-core box that also runs the broker.
RATE = 1500.0
PER_CHANNEL_RATE = RATE / len(CHANNELS)
# Numbers per channel for the tests that stream a fixed amount (one second's worth).
COUNT = 500
# Each JOIN brings one ROOMSTATE, published to the events topic and buffered like chat.
ROOMSTATES = len(CHANNELS)
# The disk buffer checkpoints acks every second: after a SIGKILL, records acknowledged
# in the last second (and those in flight) are replayed — its documented duplicates.
CHECKPOINT_INTERVAL_S = 1.0


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A private broker for this module, with topic auto-creation off."""
    with LocalBroker(tmp_path_factory.mktemp("kafka"), auto_create_topics=False) as running:
        yield running


@pytest.fixture
def kafka(broker: LocalBroker) -> LocalBroker:
    """The private broker, up (the test before may have left it down)."""
    broker.start()
    return broker


def fresh_topic_env() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "KAFKA_TOPIC_CHAT_MESSAGES": f"fault-chat-{suffix}",
        "KAFKA_TOPIC_CHAT_EVENTS": f"fault-events-{suffix}",
        "KAFKA_TOPIC_DLQ": f"fault-chat-{suffix}.dlq",
    }


@pytest.fixture
def topic_env() -> dict[str, str]:
    return fresh_topic_env()


def service_env(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    topic_env: dict[str, str],
    buffer_dir: Path,
    **extra: str,
) -> dict[str, str]:
    """Settings for a service on the private broker, with short timeouts."""
    return {
        **twitch_env(simulator, CHANNELS),
        **topic_env,
        "KAFKA_BROKERS": kafka.bootstrap,
        "KAFKA_MESSAGE_TIMEOUT_MS": str(MESSAGE_TIMEOUT_MS),
        "KAFKA_REQUEST_TIMEOUT_MS": "3000",
        "BUFFER_DIR": str(buffer_dir),
        "SHUTDOWN_TIMEOUT_S": "15",
        "STATS_LOG_INTERVAL_S": "2",
        "TWITCH_RECONNECT_BASE_S": "0.2",
        "TWITCH_RECONNECT_MAX_S": "1",
        "HEALTH_HOST": "127.0.0.1",
        "HEALTH_PORT": str(free_port()),
        **extra,
    }


# --- reading the service --------------------------------------------------------------


def readiness(env: dict[str, str]) -> tuple[int, dict[str, object]]:
    status, body = http_get(env, "/readyz")
    details: dict[str, object] = json.loads(body)
    return status, details


def pending_records(env: dict[str, str]) -> int:
    pending = readiness(env)[1]["pending_records"]
    assert isinstance(pending, int)
    return pending


def wait_for_pending(env: dict[str, str], expected: int, timeout_s: float = 30.0) -> None:
    """Wait until the service holds exactly `expected` unacknowledged records."""
    wait_until(lambda: pending_records(env) == expected, f"{expected} pending", timeout_s)


def wait_until_stable(read: Callable[[], float], what: str, quiet_s: float = 1.0) -> float:
    """Wait until `read()` has not changed for `quiet_s`; return its value."""
    value = read()
    changed_at = time.monotonic()
    deadline = changed_at + 30.0
    while time.monotonic() - changed_at < quiet_s:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never settled (last {value})")
        time.sleep(0.1)
        current = read()
        if current != value:
            value, changed_at = current, time.monotonic()
    return value


def kill(service: ServiceProcess) -> None:
    assert service.stop(signal.SIGKILL) == -signal.SIGKILL


# --- reading the topic and the buffer -------------------------------------------------


def create_topics(kafka: LocalBroker, topic_env: dict[str, str]) -> None:
    for name in topic_env.values():
        create_topic(kafka.bootstrap, name, partitions=3)


def chat_topic(topic_env: dict[str, str]) -> str:
    return topic_env["KAFKA_TOPIC_CHAT_MESSAGES"]


def read_chat(kafka: LocalBroker, topic_env: dict[str, str], expected: int) -> dict[str, list[int]]:
    records = collect_records(kafka.bootstrap, chat_topic(topic_env), expected=expected)
    return numbers_by_channel(records)


def buffered_numbers(buffer_dir: Path) -> dict[str, list[int]]:
    """The numbers a (dead) service appended to its disk buffer, per channel, in order."""
    appended: dict[str, list[int]] = defaultdict(list)
    for segment in sorted(buffer_dir.glob(f"*{SEGMENT_SUFFIX}")):
        data = segment.read_bytes()
        for kind, offset, end in iter_frames(data):
            if kind == KIND_RECORD:
                parsed = parse_number(decode_record(data, offset, end).value)
                if parsed is not None:
                    appended[parsed[0]].append(parsed[1])
    return appended


def high_water(stats: SimulatorStats) -> dict[str, int]:
    return {channel: stats.numbered_high_water.get(channel, 0) for channel in CHANNELS}


def wait_until_sent(
    simulator: SimulatorThread, per_channel: int, since: dict[str, int] | None = None
) -> None:
    """Until the running stream has sent `per_channel` more numbers on every channel (a
    count, where a sleep would have let "some time" pass)."""
    base = since or {}

    def sent(stats: SimulatorStats) -> bool:
        high = stats.numbered_high_water
        return all(high.get(c, 0) >= base.get(c, 0) + per_channel for c in CHANNELS)

    simulator.wait_until(sent, timeout=30)


def stream_fixed_amount(simulator: SimulatorThread) -> dict[str, int]:
    """COUNT numbers per channel, read by a service that stays joined throughout."""
    simulator.start_numbered(CHANNELS, rate=RATE, count=COUNT).wait(timeout=30)
    stats = simulator.stats()
    assert not stats.sent_while_unjoined
    return high_water(stats)


# --- 1. the broker dies mid-stream ---------------------------------------------------


def test_broker_killed_mid_stream_loses_nothing_and_keeps_channel_order(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    tmp_path: Path,
) -> None:
    # Both buffer modes through the same outage: one service each, joined to the same
    # channels (so both read the same stream), each with its own topics and buffer.
    modes = ("disk", "memory")
    topics = {mode: fresh_topic_env() for mode in modes}
    services = {
        mode: start_service(
            service_env(kafka, simulator, topics[mode], tmp_path / mode, BUFFER_MODE=mode)
        )
        for mode in modes
    }
    simulator.wait_for_joined(CHANNELS, timeout=30)
    for service in services.values():
        service.wait_for_log("kafka topics ready")
    stream = simulator.start_numbered(CHANNELS, rate=RATE)
    wait_until_sent(simulator, int(PER_CHANNEL_RATE * 1.5))  # records in flight at the kill

    kafka.kill()
    # Nothing acknowledged for MESSAGE_TIMEOUT_MS: the sink stops handing records to
    # librdkafka and keeps them in its buffer; librdkafka keeps what it holds.
    for service in services.values():
        service.wait_for_log("kafka delivery stalled", timeout_s=20)
    kafka.start()
    # librdkafka delivers what it held, then the sink produces the rest from its buffer.
    for service in services.values():
        redelivery = service.wait_for_log("kafka redelivery", timeout_s=30)
        assert isinstance(redelivery["records"], int)
        assert redelivery["records"] > 0
    stream.stop()
    stats = simulator.stats()
    assert not stats.sent_while_unjoined, "the services stayed joined throughout"

    last = high_water(stats)
    for mode in modes:
        numbers = read_chat(kafka, topics[mode], expected=sum(last.values()))
        try:
            assert_exactly_once_in_order(numbers, last)
        except AssertionError as failure:
            raise AssertionError(f"BUFFER_MODE={mode}: {failure}") from None
        stopped = stop_cleanly(services[mode])
        assert stopped["delivered"] == stopped["enqueued"], mode


# --- 2. the broker is down when the service starts ------------------------------------


def test_service_starts_without_broker_reports_not_ready_and_delivers_when_it_comes_up(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    topic_env: dict[str, str],
    tmp_path: Path,
) -> None:
    kafka.stop()
    env = service_env(kafka, simulator, topic_env, tmp_path / "buffer")
    service = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    wait_until(lambda: readiness(env)[1]["twitch"] == "ready", "twitch ready")
    status, ready = readiness(env)
    assert status == 503
    assert ready["kafka"] == "not ready"

    last = stream_fixed_amount(simulator)
    wait_for_pending(env, COUNT * len(CHANNELS) + ROOMSTATES)
    assert readiness(env)[0] == 503

    kafka.start()
    assert_exactly_once_in_order(read_chat(kafka, topic_env, COUNT * len(CHANNELS)), last)
    wait_until(lambda: readiness(env)[0] == 200, "/readyz 200 once the broker is up")
    stop_cleanly(service)


# --- 3. the service is SIGKILLed while the broker is down ------------------------------


def test_service_killed_during_outage_replays_its_disk_buffer_on_restart(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    topic_env: dict[str, str],
    tmp_path: Path,
) -> None:
    kafka.stop()
    env = service_env(kafka, simulator, topic_env, tmp_path / "buffer")
    first = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    last = stream_fixed_amount(simulator)
    read = COUNT * len(CHANNELS) + ROOMSTATES
    wait_for_pending(env, read)
    kill(first)

    kafka.start()
    second = start_service(env)  # same BUFFER_DIR
    replayed = second.wait_for_log("buffered records replayed")
    assert replayed["records"] == read
    assert_exactly_once_in_order(read_chat(kafka, topic_env, COUNT * len(CHANNELS)), last)
    stopped = stop_cleanly(second)
    assert stopped["replayed"] == read


# --- 4. the service is SIGKILLed mid-stream, the broker up ----------------------------


def test_service_killed_mid_stream_loses_only_what_it_never_read(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    topic_env: dict[str, str],
    tmp_path: Path,
) -> None:
    buffer_dir = tmp_path / "buffer"
    env = service_env(kafka, simulator, topic_env, buffer_dir)
    first = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    first.wait_for_log("kafka topics ready")
    stream = simulator.start_numbered(CHANNELS, rate=RATE)
    # About two ack checkpoints' worth of the stream read before the kill.
    wait_until_sent(simulator, int(PER_CHANNEL_RATE * 2 * CHECKPOINT_INTERVAL_S))
    kill(first)
    # Everything the dead process took in is in its buffer: the reference for "read".
    appended = buffered_numbers(buffer_dir)
    simulator.wait_until(lambda stats: not stats.joined_channels(), timeout=10)

    second = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    wait_until_sent(simulator, int(PER_CHANNEL_RATE), since=high_water(simulator.stats()))
    stream.stop()
    stats = simulator.stats()
    last = high_water(stats)
    unjoined = {c: stats.numbered_undelivered.get(c, []) for c in CHANNELS}
    assert all(unjoined.values()), "the stream ran while no service had joined"

    expected = sum(last.values()) - sum(stats.numbered_undelivered_count(c) for c in CHANNELS)
    numbers = read_chat(kafka, topic_env, expected)
    # Duplicates: what the first process read in its last checkpoint interval (acked
    # but not yet checkpointed, or in flight), produced again by the replay.
    replay_window = int(PER_CHANNEL_RATE * (CHECKPOINT_INTERVAL_S + 1.0))
    for channel in CHANNELS:
        seen = numbers[channel]
        read_last = appended[channel][-1]
        assert appended[channel] == list(range(1, read_last + 1))
        # The only gap: from after the last line the first process read to the end of
        # the stretch nobody had the channel joined. Lines it had not read yet (still in
        # the socket when it died) are lost with it, exactly as on Twitch.
        missing = sorted(set(range(1, last[channel] + 1)) - set(seen))
        unjoined_first, unjoined_last = unjoined[channel][0][0], unjoined[channel][-1][1]
        assert missing == list(range(read_last + 1, unjoined_last + 1)), (
            f"{channel}: read up to {read_last}, unjoined {unjoined[channel]}, "
            f"runs {runs(seen)[:20]}"
        )
        assert unjoined_first - read_last - 1 <= PER_CHANNEL_RATE, "unread lines > 1 s"
        # Order: what the first process delivered, then the replay, then the second
        # process; a replayed number comes from the first process's last interval.
        duplicates = duplicates_of(seen)
        assert all(read_last - replay_window < n <= read_last for n in duplicates), (
            f"{channel}: duplicates {duplicates[:10]}..{duplicates[-10:]} not around the "
            f"kill at {read_last}"
        )
        consecutive = runs(seen)
        steps_back = sum(1 for a, b in itertools.pairwise(consecutive) if b[0] <= a[1])
        assert steps_back <= 1, f"{channel}: out of order, runs {consecutive[:20]}"
    stop_cleanly(second)


# --- 5. the topic is missing and auto-creation is off ---------------------------------


def test_missing_topic_is_reported_and_records_wait_until_it_exists(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    topic_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = service_env(kafka, simulator, topic_env, tmp_path / "buffer", KAFKA_CREATE_TOPICS="false")
    service = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    topic = chat_topic(topic_env)
    wait_until(
        lambda: any(e["topic"] == topic for e in events(service, "kafka topic problem")),
        "a topic problem naming the chat topic",
    )
    problem = next(e for e in events(service, "kafka topic problem") if e["topic"] == topic)
    assert problem["level"] == "error"
    assert topic in str(problem["problem"])
    assert "KAFKA_CREATE_TOPICS" in str(problem["problem"])

    last = stream_fixed_amount(simulator)
    wait_for_pending(env, COUNT * len(CHANNELS) + ROOMSTATES)
    status, ready = readiness(env)
    assert status == 503
    assert topic in json.dumps(ready["kafka_problems"])

    create_topics(kafka, topic_env)
    service.wait_for_log("kafka topics ready", timeout_s=30)
    assert_exactly_once_in_order(read_chat(kafka, topic_env, COUNT * len(CHANNELS)), last)
    stop_cleanly(service)


# --- 6. the disk buffer fills while the broker is down -------------------------------

# A few dozen records: the stream overflows it within a fraction of a second.
SMALL_BUFFER_BYTES = 64 * 1024
# The topics exist before the outage here (creating them is not what these tests are
# about), so delivery resumes as soon as the broker answers.


def test_full_buffer_with_block_policy_stops_reading_and_drops_nothing(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    topic_env: dict[str, str],
    tmp_path: Path,
) -> None:
    create_topics(kafka, topic_env)
    kafka.stop()
    env = service_env(
        kafka,
        simulator,
        topic_env,
        tmp_path / "buffer",
        BUFFER_MAX_BYTES=str(SMALL_BUFFER_BYTES),
        BUFFER_FULL_POLICY="block",
    )
    service = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    lines_before = metric(env, "twitch_ingestion_irc_lines_received_total", default=0.0)
    # The simulator writes ahead into socket buffers; the service stops reading.
    last = stream_fixed_amount(simulator)
    lines_read = wait_until_stable(
        lambda: metric(env, "twitch_ingestion_irc_lines_received_total", default=0.0),
        "lines received",
    )
    assert lines_read - lines_before < COUNT * len(CHANNELS), "it kept reading"
    assert metric(env, "twitch_ingestion_buffer_bytes", default=0.0) <= SMALL_BUFFER_BYTES
    assert (
        metric(
            env, 'twitch_ingestion_buffer_records_dropped_total{reason="buffer_full"}', default=0.0
        )
        == 0
    )

    kafka.start()
    assert_exactly_once_in_order(read_chat(kafka, topic_env, COUNT * len(CHANNELS)), last)
    assert (
        metric(
            env, 'twitch_ingestion_buffer_records_dropped_total{reason="buffer_full"}', default=0.0
        )
        == 0
    )
    stop_cleanly(service)


def test_full_buffer_with_drop_newest_policy_counts_and_warns(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    topic_env: dict[str, str],
    tmp_path: Path,
) -> None:
    create_topics(kafka, topic_env)
    kafka.stop()
    env = service_env(
        kafka,
        simulator,
        topic_env,
        tmp_path / "buffer",
        BUFFER_MAX_BYTES=str(SMALL_BUFFER_BYTES),
        BUFFER_FULL_POLICY="drop_newest",
    )
    service = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    stream_fixed_amount(simulator)
    dropped_sample = 'twitch_ingestion_buffer_records_dropped_total{reason="buffer_full"}'
    dropped = wait_until_stable(lambda: metric(env, dropped_sample, default=0.0), "dropped records")
    kept = pending_records(env) - ROOMSTATES
    assert dropped > 0
    assert kept + dropped == COUNT * len(CHANNELS), "every record is kept or counted"
    warning = service.wait_for_log("buffer full records dropped")
    assert warning["level"] == "warning"

    kafka.start()
    numbers = read_chat(kafka, topic_env, kept)
    assert sum(len(seen) for seen in numbers.values()) == kept
    # What was kept is what came first: each channel's prefix, once, in order.
    assert_exactly_once_in_order(numbers, {c: len(numbers.get(c, [])) for c in CHANNELS})
    stop_cleanly(service)


# --- 7. a segment file is cut mid-frame -------------------------------------------------


def test_truncated_segment_delivers_every_intact_record_and_warns_about_the_cut(
    kafka: LocalBroker,
    simulator: SimulatorThread,
    start_service: StartService,
    topic_env: dict[str, str],
    tmp_path: Path,
) -> None:
    kafka.stop()
    buffer_dir = tmp_path / "buffer"
    env = service_env(kafka, simulator, topic_env, buffer_dir)
    first = start_service(env)
    simulator.wait_for_joined(CHANNELS, timeout=30)
    last = stream_fixed_amount(simulator)
    written = COUNT * len(CHANNELS) + ROOMSTATES
    wait_for_pending(env, written)
    kill(first)

    # Cut the last record of the newest segment in half, as a torn write leaves it.
    segment = sorted(buffer_dir.glob(f"*{SEGMENT_SUFFIX}"))[-1]
    data = segment.read_bytes()
    _, offset, end = [frame for frame in iter_frames(data) if frame[0] == KIND_RECORD][-1]
    cut = parse_number(decode_record(data, offset, end).value)
    assert cut is not None
    with segment.open("r+b") as file:
        file.truncate(offset + (end - offset) // 2)

    kafka.start()
    second = start_service(env)
    warning = second.wait_for_log("buffer segment tail cut")
    assert warning["level"] == "warning"
    assert warning["segment"] == segment.name
    assert warning["records_lost"] == 1
    replayed = second.wait_for_log("buffered records replayed")
    assert replayed["records"] == written - 1

    cut_channel, cut_number = cut
    numbers = read_chat(kafka, topic_env, COUNT * len(CHANNELS) - 1)
    assert_exactly_once_in_order(
        {c: n for c, n in numbers.items() if c != cut_channel},
        {c: n for c, n in last.items() if c != cut_channel},
    )
    assert numbers[cut_channel] == [n for n in range(1, last[cut_channel] + 1) if n != cut_number]
    stop_cleanly(second)
