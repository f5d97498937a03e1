"""Reconnect delays: 1, 2, 4, 8 … 60 s, jittered ±20%, reset after a healthy connection."""

from __future__ import annotations

import random

import pytest

from twitch_ingestion.sources.common.backoff import ExponentialBackoff


def test_schedule_doubles_from_base_and_caps_at_max() -> None:
    backoff = ExponentialBackoff(1.0, 60.0, jitter=0.0)

    delays = [backoff.next_delay() for _ in range(10)]

    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert backoff.attempts == 10


def test_many_attempts_never_overflow() -> None:
    backoff = ExponentialBackoff(1.0, 60.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 60


def test_jitter_stays_within_twenty_percent_of_each_step() -> None:
    rng = random.Random(7)
    for _ in range(200):
        backoff = ExponentialBackoff(1.0, 60.0, random_uniform=rng.uniform)
        for step in (1, 2, 4, 8, 16, 32, 60, 60):
            assert 0.8 * step <= backoff.next_delay() <= 1.2 * step


def test_jitter_actually_spreads_delays() -> None:
    delays = {ExponentialBackoff(1.0, 60.0).next_delay() for _ in range(50)}
    assert len(delays) > 40


def test_reset_starts_the_schedule_over() -> None:
    backoff = ExponentialBackoff(1.0, 60.0, jitter=0.0)
    for _ in range(4):
        backoff.next_delay()

    backoff.reset()

    assert backoff.next_delay() == 1


def test_only_a_connection_healthy_for_reset_after_resets_the_schedule() -> None:
    backoff = ExponentialBackoff(1.0, 60.0, jitter=0.0, reset_after_s=60.0)
    for _ in range(3):
        backoff.next_delay()

    backoff.connection_ended(healthy_for_s=5.0)
    assert backoff.next_delay() == 8

    backoff.connection_ended(healthy_for_s=60.0)
    assert backoff.next_delay() == 1


def test_exhausted_after_max_failed_attempts_in_a_row() -> None:
    backoff = ExponentialBackoff(1.0, 60.0, max_attempts=3)
    backoff.record_failure()
    backoff.record_failure()
    assert not backoff.exhausted
    backoff.record_success()
    backoff.record_failure()
    backoff.record_failure()
    assert not backoff.exhausted, "a login in between starts the count over"
    backoff.record_failure()
    assert backoff.exhausted
    assert not ExponentialBackoff(max_attempts=None).exhausted


def test_delays_and_failures_are_counted_separately() -> None:
    backoff = ExponentialBackoff(1.0, 60.0, jitter=0.0, max_attempts=2)
    backoff.next_delay()
    backoff.next_delay()
    assert not backoff.exhausted, "a delay is not a failed attempt"
    backoff.record_failure()
    backoff.record_success()
    assert backoff.next_delay() == 4, "a login does not reset the schedule"


@pytest.mark.parametrize(("base", "cap", "jitter"), [(0, 1, 0.1), (2, 1, 0.1), (1, 2, 1.0)])
def test_nonsense_parameters_are_rejected(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        ExponentialBackoff(base, cap, jitter=jitter)
    with pytest.raises(ValueError, match="max_attempts"):
        ExponentialBackoff(max_attempts=0)
