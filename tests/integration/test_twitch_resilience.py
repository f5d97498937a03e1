"""Issue 4 as a user lives it: `twitch-ingestion run` (a subprocess) against the Twitch
simulator and the real broker, while Twitch misbehaves.

Each case checks what the service *does* (exit code, logs, /readyz, /metrics) and what
*reaches Kafka*. The simulator's numbered streams make the second part exact: channel
`c` gets `seq c 1`, `seq c 2` …, and the simulator records every number it emitted while
no connection could receive it (`numbered_undelivered`) — Twitch does not replay chat,
so those, and only those, may be missing; nothing may arrive twice.

Every recovery timer is shrunk (see `FAST_TWITCH`) so a reconnect takes ~0.1 s, not 1 s;
a timeout that declares a failure is shrunk only in the test that provokes that failure.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import trustme

from tests.integration.conftest import twitch_env
from tests.integration.kafka_helpers import ConsumedRecord, collect_records
from tests.integration.service_process import ServiceProcess, StartService
from tests.support.health_endpoint import http_get
from tests.support.log_events import events
from tests.support.ports import free_port
from twitch_ingestion.simulator import (
    ChannelBehaviour,
    SimulatorConfig,
    SimulatorStats,
    SimulatorThread,
    ThreadStreamHandle,
)

pytestmark = pytest.mark.integration


# The timers that decide how soon a recovery starts, shrunk so that a failure and its
# recovery take fractions of a second.
#
# The timeouts that *declare* a failure (connect, login, PING/PONG, JOIN echo) keep their
# defaults (5 to 30 s) here: with 1 s or less, a slow answer from a healthy simulator
# on a loaded CI machine counts as a failure, and the test sees a reconnect or a failed
# JOIN that only the load caused. The tests that provoke such a failure shrink the one
# timeout they exercise (`FAST_KEEPALIVE`, or their own values).
FAST_TWITCH = {
    "TWITCH_RECONNECT_BASE_S": "0.1",
    "TWITCH_RECONNECT_MAX_S": "0.5",
    "TWITCH_JOIN_RATE_LIMIT": "100",
    "TWITCH_JOIN_RATE_WINDOW_S": "1",
    "TWITCH_CONNECTION_OPEN_INTERVAL_S": "0.05",
    "TWITCH_RECONNECT_OVERLAP_S": "1",
    "SHUTDOWN_TIMEOUT_S": "10",
    "KAFKA_LINGER_MS": "5",
}
# For the stall tests: a PING after 1 s of silence, dead 1 s later; a connection accepted
# during the stall gets no welcome, and is given up 1 s later.
FAST_KEEPALIVE = {
    "TWITCH_PING_INTERVAL_S": "1",
    "TWITCH_PONG_TIMEOUT_S": "1",
    "TWITCH_LOGIN_TIMEOUT_S": "1",
}

USERNAME = "resiliencebot"
# Distinctive, so a leak anywhere is found by a plain substring search.
TOKEN = "oauth:s3cr3tresiliencetoken9f8e7d6c5b4a"
TOKEN_BODY = TOKEN.removeprefix("oauth:")


# --- helpers --------------------------------------------------------------------------


def _health_env() -> tuple[int, dict[str, str]]:
    port = free_port()
    return port, {"HEALTH_PORT": str(port), "HEALTH_HOST": "127.0.0.1"}


def _wait_http(
    port: int, path: str, accept: Callable[[int, str], bool], timeout_s: float = 20.0
) -> tuple[int, str]:
    deadline = time.monotonic() + timeout_s
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        try:
            last = http_get(port, path)
        except OSError:
            pass  # not listening yet
        else:
            if accept(*last):
                return last
        time.sleep(0.1)
    raise AssertionError(f"GET {path} never satisfied the check; last answer: {last}")


def _wait_count(service: ServiceProcess, name: str, count: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(events(service, name)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} {name!r} logs:\n{service.logs()[-4000:]}")
        if service.process.poll() is not None:
            raise AssertionError(f"service exited before {count} {name!r}:\n{service.logs()}")
        time.sleep(0.05)


def _numbers_by_channel(records: Iterable[ConsumedRecord]) -> dict[str, list[int]]:
    """`seq <channel> <n>` records → channel → numbers in partition (= arrival) order."""
    numbers: dict[str, list[int]] = defaultdict(list)
    for record in records:
        value = json.loads(record.value)
        _, channel, number = value["message"].split()
        assert value["channel_id"] == channel
        numbers[channel].append(int(number))
    return dict(numbers)


def _deliverable(stats: SimulatorStats, channels: Iterable[str]) -> dict[str, list[int]]:
    """Every number the simulator emitted per channel, minus those no connection got."""
    expected: dict[str, list[int]] = {}
    for channel in channels:
        lost: set[int] = set()
        for first, last in stats.numbered_undelivered.get(channel, ()):
            lost.update(range(first, last + 1))
        emitted = range(1, stats.numbered_high_water.get(channel, 0) + 1)
        expected[channel] = [n for n in emitted if n not in lost]
    return expected


def _assert_kafka_numbers(
    brokers: str, topic: str, expected: dict[str, list[int]], *, timeout_s: float = 60.0
) -> None:
    """Kafka holds exactly `expected` per channel: no gap, no duplicate, in order."""
    total = sum(len(numbers) for numbers in expected.values())
    records = collect_records(brokers, topic, expected=total, timeout_s=timeout_s)
    got = _numbers_by_channel(records)
    for channel, numbers in got.items():
        twice = sorted(n for n, seen in Counter(numbers).items() if seen > 1)
        assert not twice, f"{channel}: duplicated numbers {twice[:20]}"
    want = {channel: numbers for channel, numbers in expected.items() if numbers}
    for channel in want.keys() | got.keys():
        missing = sorted(set(want.get(channel, ())) - set(got.get(channel, ())))
        extra = sorted(set(got.get(channel, ())) - set(want.get(channel, ())))
        assert not missing, f"{channel}: {len(missing)} numbers never reached Kafka {missing[:20]}"
        assert not extra, f"{channel}: numbers the simulator never delivered {extra[:20]}"
        # One channel = one key = one partition: Kafka keeps the order chat was read in.
        assert got[channel] == want[channel], f"{channel}: out of order"
    assert len(records) == total


def _stop_stream_and_snapshot(
    simulator: SimulatorThread, stream: ThreadStreamHandle, channels: list[str]
) -> dict[str, list[int]]:
    stream.stop()
    stream.wait(timeout=10)
    return _deliverable(simulator.stats(), channels)


def _wait_delivered(
    simulator: SimulatorThread, channels: Iterable[str], more_than: int, timeout_s: float = 30.0
) -> None:
    """Wait until each channel has had `more_than` stream lines delivered beyond what it
    had now: chat provably flowing, counted by the simulator, not guessed from a sleep."""
    wanted = list(channels)
    base = simulator.stats().privmsgs_by_channel
    simulator.wait_until(
        lambda s: all(
            s.privmsgs_by_channel.get(c, 0) >= base.get(c, 0) + more_than for c in wanted
        ),
        timeout=timeout_s,
    )


def _undelivered_total(stats: SimulatorStats, channels: Iterable[str]) -> int:
    return sum(stats.numbered_undelivered_count(channel) for channel in channels)


def _assert_clean_stop(service: ServiceProcess) -> None:
    assert service.stop() == 0, service.logs()[-4000:]
    stopped = events(service, "service stopped")
    assert stopped, service.logs()[-4000:]
    assert stopped[0]["undelivered"] == 0


# --- 1. Twitch not there yet ------------------------------------------------------------


def test_refused_at_start_retries_with_backoff_then_delivers_everything(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    channels = ["alpha", "beta"]
    simulator.pause_accepting()
    service = start_service({**twitch_env(simulator, channels), **topics, **FAST_TWITCH})

    _wait_count(service, "twitch connect failed", 3)
    simulator.resume_accepting()
    simulator.wait_for_joined(channels, timeout=15)

    retries = events(service, "twitch connect failed")
    assert [r["attempt"] for r in retries[:3]] == [1, 2, 3]
    assert all("could not connect" in r["error"] for r in retries)
    # Exponential: 0.1 s, 0.2 s, 0.4 s (±20% jitter), capped at TWITCH_RECONNECT_MAX_S.
    delays = [r["retry_in_s"] for r in retries]
    assert 0.08 <= delays[0] <= 0.12
    assert 0.16 <= delays[1] <= 0.24
    assert all(d <= 0.5 * 1.2 for d in delays)
    assert simulator.stats().connections_accepted == 1

    simulator.start_numbered(channels, rate=0, count=1000).wait(timeout=30)
    stats = simulator.stats()
    assert _undelivered_total(stats, channels) == 0
    _assert_kafka_numbers(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], _deliverable(stats, channels)
    )
    _assert_clean_stop(service)


def test_untrusted_tls_certificate_reads_nothing_says_why_and_backs_off(
    tls_simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
    tmp_path: Path,
) -> None:
    # TLS as in production, but the service trusts another CA than the one that signed
    # the server's certificate (a MITM, a wrong endpoint, a missing corporate CA).
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    health_port, health = _health_env()
    service = start_service(
        {
            **twitch_env(tls_simulator, ["alpha"], ca_file=other_ca),
            **topics,
            **FAST_TWITCH,
            **health,
        }
    )
    _wait_count(service, "twitch connect failed", 3)

    retries = events(service, "twitch connect failed")
    assert [r["attempt"] for r in retries[:3]] == [1, 2, 3]
    # Backs off like any connection failure: 0.1 s, then 0.2 s (±20% jitter).
    assert retries[1]["retry_in_s"] > retries[0]["retry_in_s"]
    error = retries[0]["error"]
    assert "TLS certificate" in error, error
    assert "not trusted" in error, error
    assert "SSL_CERT_FILE" in error, "the message names what to fix"
    assert "\n" not in error
    assert "Traceback" not in service.logs()
    _, metrics = http_get(health_port, "/metrics")
    failures = re.search(
        r'twitch_ingestion_irc_reconnects_total\{cause="connect_failed"\} ([0-9.]+)', metrics
    )
    assert failures is not None, metrics
    assert float(failures.group(1)) >= 3
    status, _ = http_get(health_port, "/readyz")
    assert status == 503

    # Nothing was read: the handshake failed before a single IRC line.
    stats = tls_simulator.stats()
    assert stats.logins_by_nick == {}
    assert stats.connections_accepted == 0
    assert collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=0) == []
    _assert_clean_stop(service)


# --- 2. Credentials Twitch rejects, and credentials that cannot even be sent -----------


def test_rejected_token_exits_3_at_once_naming_the_setting_not_the_token(
    start_service: StartService, topics: dict[str, str], kafka_brokers: str
) -> None:
    with SimulatorThread(SimulatorConfig(valid_tokens=frozenset({TOKEN}))) as simulator:
        wrong_token = "oauth:wrongtoken0000aaaabbbbccccdddd"
        service = start_service(
            {
                **twitch_env(simulator, ["alpha"]),
                **topics,
                **FAST_TWITCH,
                "TWITCH_USERNAME": USERNAME,
                "TWITCH_OAUTH_TOKEN": wrong_token,
            }
        )
        assert service.wait_exit(timeout_s=20) == 3, service.logs()
        # The process is gone: once its sockets are closed, no retry can come any more.
        simulator.wait_until(lambda s: s.connections_current == 0, timeout=10)
        stats = simulator.stats()

    # Gave up at the first answer, not after a retry schedule: one connection, one login.
    assert stats.connections_accepted == 1, "retried credentials Twitch had rejected"
    assert sum(stats.login_failures_by_reason.values()) == 1
    assert not stats.logins_by_nick
    logs = service.logs()
    assert "TWITCH_OAUTH_TOKEN" in logs
    assert "twitch authentication failed" in logs
    assert wrong_token.removeprefix("oauth:") not in logs
    assert "twitch connect failed" not in logs
    assert collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=0) == []


def test_token_without_oauth_prefix_is_a_config_error_that_never_echoes_it(
    simulator: SimulatorThread, tmp_path: Path
) -> None:
    # Twitch would answer such a PASS with "Improperly formatted auth"; the service must
    # not even get that far.
    bare = "barebodytoken1234567890abcdefgh"
    service = ServiceProcess(
        tmp_path,
        {
            **twitch_env(simulator, ["alpha"]),
            "TWITCH_USERNAME": USERNAME,
            "TWITCH_OAUTH_TOKEN": bare,
            "KAFKA_BROKERS": "127.0.0.1:1",
        },
    )
    try:
        assert service.wait_exit(timeout_s=20) == 2, service.logs()
    finally:
        service.close()
    output = service.logs()
    assert "TWITCH_OAUTH_TOKEN" in output
    assert "oauth:" in output  # says what is expected
    assert bare not in output
    assert simulator.stats().connections_accepted == 0


# --- 3. A stalled (half-open) connection ------------------------------------------------


def test_stalled_connection_is_declared_dead_by_keepalive_and_replaced(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    channels = ["alpha", "beta"]
    health_port, health = _health_env()
    service = start_service(
        {**twitch_env(simulator, channels), **topics, **FAST_TWITCH, **FAST_KEEPALIVE, **health}
    )
    simulator.wait_for_joined(channels, timeout=15)
    stream = simulator.start_numbered(channels, rate=400)
    _wait_delivered(simulator, channels, 60)

    # Keeps reading, sends nothing — not even to connections accepted meanwhile, which
    # therefore cannot log in until the server talks again.
    simulator.go_silent()
    lost = service.wait_for_log("twitch connection lost", timeout_s=10)
    assert lost["cause"] == "keepalive_timeout"
    # The replacement connection is accepted but gets no welcome while the stall lasts.
    simulator.wait_until(lambda s: s.connections_accepted >= 2, timeout=10)
    simulator.resume_sending()
    # wait_for_joined counts silent members too: wait for a connection that talks.
    simulator.wait_until(
        lambda s: all(
            any(c in conn.channels and not conn.silent for conn in s.connections.values())
            for c in channels
        ),
        timeout=15,
    )
    _wait_delivered(simulator, channels, 60)
    expected = _stop_stream_and_snapshot(simulator, stream, channels)

    stats = simulator.stats()
    assert sum(stats.sent_while_silent.values()) > 0, "the stall happened mid-stream"
    assert stats.connections_accepted >= 2
    _assert_kafka_numbers(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected)
    # Both waits above saw 60 more each: chat provably flowed on both sides of the stall.
    assert all(len(numbers) >= 120 for numbers in expected.values())

    _, metrics = http_get(health_port, "/metrics")
    assert 'twitch_ingestion_irc_reconnects_total{cause="keepalive_timeout"} 1.0' in metrics
    status, ready = http_get(health_port, "/readyz")
    assert status == 200, ready
    _assert_clean_stop(service)


def test_channels_whose_joins_stalled_are_joined_again_on_the_new_connection(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    # A stall while JOINs await their echo: the join timeout fires before the keepalive
    # does (as with the defaults: 10 s < 30 s + 5 s). That silence was the connection's
    # fault, not the channels': the replacement must join them, not wait an hour.
    channels = ["alpha", "beta", "gamma", "delta"]
    health_port, health = _health_env()
    service = start_service(
        {
            **twitch_env(simulator, channels),
            **topics,
            **FAST_TWITCH,
            **FAST_KEEPALIVE,
            **health,
            # Two JOINs per 2 s: gamma and delta go out ~2.1 s after alpha and beta, into
            # the silence, and time out at ~2.6 s; the keepalive gives up at ~4 s (with a
            # PING after 2 s it was ~3 s: a 0.3 s margin, less than a loaded CI's stalls).
            "TWITCH_JOIN_RATE_LIMIT": "2",
            "TWITCH_JOIN_RATE_WINDOW_S": "2",
            "TWITCH_JOIN_TIMEOUT_S": "0.5",
            "TWITCH_PING_INTERVAL_S": "3",
            "TWITCH_JOIN_RETRY_INTERVAL_S": "3600",
        }
    )
    simulator.wait_for_joined(channels[:2], timeout=15)
    simulator.go_silent()
    lost = service.wait_for_log("twitch connection lost", timeout_s=10)
    assert lost["cause"] == "keepalive_timeout"
    stalled = events(service, "twitch channel could not be joined")
    assert sorted(e["channel"] for e in stalled) == ["delta", "gamma"], "no JOIN stalled"
    simulator.resume_sending()

    simulator.wait_for_joined(channels, timeout=15)
    _, ready = _wait_http(health_port, "/readyz", lambda status, _: status == 200)
    assert json.loads(ready)["failed_channels"] == {}
    recovered = events(service, "twitch channel joined after failing")
    assert sorted(e["channel"] for e in recovered) == ["delta", "gamma"]
    simulator.start_numbered(channels, rate=0, count=200).wait(timeout=30)
    stats = simulator.stats()
    assert _undelivered_total(stats, channels) == 0
    _assert_kafka_numbers(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], _deliverable(stats, channels)
    )
    _assert_clean_stop(service)


# --- 4. and 5. Connections dropped; Twitch down for a while -------------------------------


def test_dropped_connection_reconnects_and_loses_only_what_twitch_never_sent(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    channels = ["alpha", "beta", "gamma"]
    service = start_service({**twitch_env(simulator, channels), **topics, **FAST_TWITCH})
    simulator.wait_for_joined(channels, timeout=15)
    stream = simulator.start_numbered(channels, rate=600)
    _wait_delivered(simulator, channels, 100)

    assert simulator.drop_connections() == 1
    simulator.wait_for_joined(channels, timeout=15)
    _wait_delivered(simulator, channels, 100)
    expected = _stop_stream_and_snapshot(simulator, stream, channels)

    lost = service.wait_for_log("twitch connection lost")
    assert lost["cause"] == "connection_lost"
    stats = simulator.stats()
    assert _undelivered_total(stats, channels) > 0, "the drop happened mid-stream"
    assert all(stats.joins_by_channel[c] == 2 for c in channels)
    _assert_kafka_numbers(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected)
    _assert_clean_stop(service)


def test_twitch_down_then_back_reconnects_and_loses_only_what_twitch_never_sent(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    channels = ["alpha", "beta", "gamma"]
    health_port, health = _health_env()
    service = start_service({**twitch_env(simulator, channels), **topics, **FAST_TWITCH, **health})
    simulator.wait_for_joined(channels, timeout=15)
    stream = simulator.start_numbered(channels, rate=600)
    _wait_delivered(simulator, channels, 100)

    simulator.pause_accepting()
    simulator.drop_connections()
    _wait_count(service, "twitch connect failed", 2)
    status, outage = http_get(health_port, "/readyz")
    assert status == 503
    assert json.loads(outage)["twitch"] == "not ready"
    _wait_count(service, "twitch connect failed", 3)  # the outage goes on
    simulator.resume_accepting()
    simulator.wait_for_joined(channels, timeout=15)
    _wait_http(health_port, "/readyz", lambda status, _: status == 200)
    _wait_delivered(simulator, channels, 100)
    expected = _stop_stream_and_snapshot(simulator, stream, channels)

    assert service.process.poll() is None, "no max attempts set: it must never give up"
    stats = simulator.stats()
    assert _undelivered_total(stats, channels) > 0
    assert stats.connections_accepted == 2
    _assert_kafka_numbers(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected)
    _assert_clean_stop(service)


# --- 6. Channels Twitch will not let us into --------------------------------------------


def test_unjoinable_channels_are_reported_once_and_the_others_flow_completely(
    start_service: StartService, topics: dict[str, str], kafka_brokers: str
) -> None:
    good = ["alpha", "beta"]
    behaviours = {"gone": ChannelBehaviour.SUSPENDED, "ghost": ChannelBehaviour.NO_ECHO}
    channels = ["alpha", "gone", "beta", "ghost"]
    health_port, health = _health_env()
    with SimulatorThread(SimulatorConfig(channel_behaviours=behaviours)) as simulator:
        service = start_service(
            {
                **twitch_env(simulator, channels),
                **topics,
                **FAST_TWITCH,
                **health,
                # `ghost` never answers: it fails after this, and is retried several times
                # during the test, still logged only once.
                "TWITCH_JOIN_TIMEOUT_S": "1",
                "TWITCH_JOIN_RETRY_INTERVAL_S": "0.5",
            }
        )
        simulator.wait_for_joined(good, timeout=15)
        _, body = _wait_http(health_port, "/readyz", lambda status, _: status == 200, timeout_s=20)
        simulator.start_numbered(channels, rate=1000, count=500).wait(timeout=30)
        simulator.wait_until(lambda s: s.joins_by_channel.get("ghost", 0) >= 3, timeout=15)
        stats = simulator.stats()
        _, body_later = http_get(health_port, "/readyz")

    failed = json.loads(body)["failed_channels"]
    assert set(failed) == {"gone", "ghost"}
    assert failed["gone"].startswith("msg_channel_suspended")
    assert "no JOIN echo" in failed["ghost"]
    assert set(json.loads(body_later)["failed_channels"]) == {"gone", "ghost"}

    warnings = events(service, "twitch channel could not be joined")
    assert sorted(w["channel"] for w in warnings) == ["ghost", "gone"], "logged once each"
    by_channel = {w["channel"]: w["reason"] for w in warnings}
    assert "does not exist or has been suspended" in by_channel["gone"]

    assert stats.joins_by_channel["gone"] >= 3
    assert stats.numbered_undelivered_count("gone") == 500
    assert stats.numbered_undelivered_count("ghost") == 500
    # Only the joinable channels, complete; nothing at all for the others.
    _assert_kafka_numbers(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], _deliverable(stats, channels)
    )
    _assert_clean_stop(service)


# --- 7. Twitch's RECONNECT ----------------------------------------------------------------


def test_server_reconnect_hand_over_delivers_every_number_exactly_once(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    channels = ["alpha", "beta", "gamma"]
    service = start_service({**twitch_env(simulator, channels), **topics, **FAST_TWITCH})
    simulator.wait_for_joined(channels, timeout=15)
    stream = simulator.start_numbered(channels, rate=1500, count=1200)
    _wait_delivered(simulator, channels, 200)  # mid-stream: 1,000 of 1,200 still to come

    # Twitch closes the old connection a while after RECONNECT; the service closes it
    # itself once the new one has joined. A 1 s close here made that a race with the load.
    assert simulator.send_reconnect(close_after_s=10.0) == 1
    service.wait_for_log("twitch reconnect hand-over complete", timeout_s=15)
    stream.wait(timeout=30)

    stats = simulator.stats()
    assert stats.reconnects_sent == 1
    assert stats.connections_accepted == 2
    assert _undelivered_total(stats, channels) == 0
    # Each channel joined on both sockets: the overlap really carried lines twice.
    assert all(stats.joins_by_channel[c] == 2 for c in channels)
    assert "twitch connection lost" not in service.logs()
    _assert_kafka_numbers(
        kafka_brokers,
        topics["KAFKA_TOPIC_CHAT_MESSAGES"],
        {c: list(range(1, 1201)) for c in channels},
    )
    _assert_clean_stop(service)


# --- 8. A thousand channels under the JOIN rate limit -------------------------------------


def test_a_thousand_channels_join_once_each_within_the_rate_limit(
    start_service: StartService, topics: dict[str, str], kafka_brokers: str
) -> None:
    channels = [f"chan{i:04d}" for i in range(1000)]
    config = SimulatorConfig(join_limit=200, join_window_s=1.0)
    with SimulatorThread(config) as simulator:
        service = start_service(
            {
                **twitch_env(simulator, channels),
                **topics,
                **FAST_TWITCH,
                "TWITCH_JOIN_RATE_LIMIT": "200",
                "TWITCH_JOIN_RATE_WINDOW_S": "1",
                "TWITCH_CHANNELS_PER_CONNECTION": "50",
            }
        )
        started = time.monotonic()
        simulator.wait_for_joined(channels, timeout=60)
        elapsed = time.monotonic() - started
        stream = simulator.start_numbered(channels, rate=0, count=3)
        stream.wait(timeout=30)
        stats = simulator.stats()
        assert stats.join_limit_violations == 0
        assert len(stats.joins_by_channel) == 1000
        assert set(stats.joins_by_channel.values()) == {1}, "some channel joined twice"
        assert stats.connections_accepted == 20
        # 1000 JOINs at 200 per second: four full windows after the first burst.
        assert elapsed >= 4.0
        assert _undelivered_total(stats, channels) == 0
        _assert_kafka_numbers(
            kafka_brokers,
            topics["KAFKA_TOPIC_CHAT_MESSAGES"],
            {c: [1, 2, 3] for c in channels},
        )
        # Stopped while Twitch is still up: stopping the simulator resets every socket,
        # and a service still running would log each as a lost connection.
        _assert_clean_stop(service)

    assert "twitch connection lost" not in service.logs()


# --- 9. Giving up ---------------------------------------------------------------------


def test_max_reconnect_attempts_exhausted_exits_4_with_a_clear_message(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    simulator.pause_accepting()
    service = start_service(
        {
            **twitch_env(simulator, ["alpha"]),
            **topics,
            **FAST_TWITCH,
            "TWITCH_MAX_RECONNECT_ATTEMPTS": "3",
        }
    )
    assert service.wait_exit(timeout_s=30) == 4, service.logs()

    retries = events(service, "twitch connect failed")
    assert [r["attempt"] for r in retries] == [1, 2]
    gave_up = events(service, "twitch source gave up")
    assert len(gave_up) == 1
    message = gave_up[0]["error"]
    assert "3 failed connection attempts in a row" in message
    assert "TWITCH_MAX_RECONNECT_ATTEMPTS=3" in message
    assert f"127.0.0.1:{simulator.port}" in message
    assert simulator.stats().connections_accepted == 0
    assert collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=0) == []


# --- 10. The token stays secret -------------------------------------------------------------


def test_the_token_never_appears_in_logs_errors_metrics_or_records(
    start_service: StartService, topics: dict[str, str], kafka_brokers: str, tmp_path: Path
) -> None:
    channels = ["alpha", "beta"]
    health_port, health = _health_env()
    with SimulatorThread(SimulatorConfig(valid_tokens=frozenset({TOKEN}))) as simulator:
        env = {
            **twitch_env(simulator, channels),
            **topics,
            **FAST_TWITCH,
            **health,
            "TWITCH_USERNAME": USERNAME,
            "TWITCH_OAUTH_TOKEN": TOKEN,
            "LOG_LEVEL": "debug",
        }
        service = start_service(env)
        simulator.wait_for_joined(channels, timeout=15)
        simulator.start_numbered(channels, rate=0, count=300).wait(timeout=30)
        # A flat-out stream may still sit in socket buffers, which an RST discards: let
        # the service read it all before the drop.
        topic = topics["KAFKA_TOPIC_CHAT_MESSAGES"]
        assert len(collect_records(kafka_brokers, topic, expected=600, settle_s=0)) == 600
        # An error path too: a dropped connection logs a warning and logs in again.
        simulator.drop_connections()
        simulator.wait_for_joined(channels, timeout=15)
        simulator.start_numbered(channels, rate=0, count=300).wait(timeout=30)
        stats = simulator.stats()
        scraped = [http_get(health_port, path)[1] for path in ("/metrics", "/readyz")]
        _assert_clean_stop(service)

    assert stats.logins_by_nick == {USERNAME: 2}
    assert _undelivered_total(stats, channels) == 0
    records = collect_records(kafka_brokers, topic, expected=1200)
    assert len(records) == 1200
    check_config = ServiceProcess(tmp_path, env, args=("check-config",))
    try:
        assert check_config.wait_exit(timeout_s=20) == 0
    finally:
        check_config.close()

    logs = service.logs()
    assert events(service, "twitch connection lost")
    assert '"level": "debug"' in logs, "LOG_LEVEL=debug was not in effect"
    assert "twitch_ingestion_irc_reconnects_total" in scraped[0]
    places = {
        "service output": logs,
        "/metrics": scraped[0],
        "/readyz": scraped[1],
        "check-config": check_config.logs(),
        "kafka records": "\n".join(r.value.decode() for r in records),
    }
    for place, text in places.items():
        assert TOKEN_BODY not in text, f"the token leaked into {place}"
