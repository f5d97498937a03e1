"""Logging: librdkafka's repeated lines are held back and counted, not printed each time."""

from __future__ import annotations

import logging

from twitch_ingestion.logging import RepeatedLineFilter, ReportedElsewhereFilter

FAIL = (
    "FAIL [twitch-ingestion-service#producer-1] [thrd:127.0.0.1:1/bootstrap]: "
    "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused "
    "(after {ms}ms in state CONNECT)"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, message, (), None)


def test_a_line_repeated_during_an_outage_passes_once_per_interval_with_a_count() -> None:
    clock = FakeClock()
    repeats = RepeatedLineFilter(30.0, clock)
    first = record(FAIL.format(ms=0))
    assert repeats.filter(first)
    # The duration in the line changes from attempt to attempt; it is still the same line.
    held = [repeats.filter(record(FAIL.format(ms=i % 7))) for i in range(99)]
    assert not any(held)

    clock.now += 30.0
    summary = record(FAIL.format(ms=3))
    assert repeats.filter(summary)
    assert summary.getMessage() == FAIL.format(ms=3) + " (and 99 more like it since the last one)"


def test_different_lines_are_not_held_back_by_each_other() -> None:
    repeats = RepeatedLineFilter(30.0, FakeClock())
    assert repeats.filter(record(FAIL.format(ms=0)))
    assert repeats.filter(record("SASL authentication failed"))
    assert repeats.filter(record(FAIL.format(ms=0).replace("producer-1", "consumer-2")))


def test_memory_stays_bounded_with_many_distinct_lines() -> None:
    clock = FakeClock()
    repeats = RepeatedLineFilter(1.0, clock)
    for i in range(5000):
        clock.now += 0.01
        assert repeats.filter(record(f"line {i}"))
    assert len(repeats._next_allowed) <= 1000


def test_librdkafka_lines_for_failures_our_code_reports_are_dropped() -> None:
    # The producer's error callback says "kafka client error" with the same text: one
    # line per failure, not two.
    reported = ReportedElsewhereFilter()
    fail = logging.LogRecord(
        "librdkafka", logging.ERROR, __file__, 1, "%s [%s] %s", ("FAIL", "p#1", "refused"), None
    )
    assert not reported.filter(fail)
    assert not reported.filter(record("ERROR [p#1] [thrd:app]: 1/1 brokers are down"))
    assert reported.filter(record("CONFWARN [p#1] [thrd:app]: unknown property ignored"))
