"""`top`'s figures and screen from `/metrics` text (pure parts; the tmux test drives the
whole command against a running service)."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from twitch_ingestion.top.model import (
    InstanceRates,
    channel_rows,
    histogram_quantile,
    parse_scrape,
)
from twitch_ingestion.top.screen import Screen, TargetState, render


def exposition(*, alpha: float, beta: float, acked: float, beta_last: float) -> str:
    return f"""\
# TYPE twitch_ingestion_records_built_total counter
twitch_ingestion_records_built_total{{kind="chat"}} {alpha + beta}
twitch_ingestion_records_built_total{{kind="events"}} 0
twitch_ingestion_records_built_total{{kind="raw"}} 1000
# TYPE twitch_ingestion_kafka_records_acknowledged_total counter
twitch_ingestion_kafka_records_acknowledged_total{{kind="chat"}} {acked}
twitch_ingestion_kafka_records_acknowledged_total{{kind="dlq"}} 7
# TYPE twitch_ingestion_channel_messages_total counter
twitch_ingestion_channel_messages_total{{channel="alpha"}} {alpha}
twitch_ingestion_channel_messages_total{{channel="beta"}} {beta}
# TYPE twitch_ingestion_channel_last_record_timestamp_seconds gauge
twitch_ingestion_channel_last_record_timestamp_seconds{{channel="alpha"}} 1000
twitch_ingestion_channel_last_record_timestamp_seconds{{channel="beta"}} {beta_last}
# TYPE twitch_ingestion_channel_joined gauge
twitch_ingestion_channel_joined{{channel="alpha"}} 1
twitch_ingestion_channel_joined{{channel="beta"}} 0
# TYPE twitch_ingestion_buffer_records gauge
twitch_ingestion_buffer_records 12
# TYPE twitch_ingestion_kafka_reachable gauge
twitch_ingestion_kafka_reachable 1
# TYPE twitch_ingestion_ready gauge
twitch_ingestion_ready{{component="twitch"}} 1
twitch_ingestion_ready{{component="kafka"}} 1
# TYPE twitch_ingestion_irc_reconnects_total counter
twitch_ingestion_irc_reconnects_total{{cause="connection_lost"}} 2
twitch_ingestion_irc_reconnects_total{{cause="join_limit"}} 1
"""


def test_rates_come_from_two_scrapes_and_raw_copies_are_not_messages() -> None:
    before = parse_scrape("u", 1000.0, exposition(alpha=100, beta=10, acked=90, beta_last=1000))
    now = parse_scrape("u", 1002.0, exposition(alpha=300, beta=10, acked=290, beta_last=1000))
    rates = InstanceRates.between(before, now, instance="i1", quiet_after_s=60)
    assert rates.in_per_s == 100.0
    assert rates.acked_per_s == 100.0
    assert now.reconnects == 3
    assert now.twitch_ready
    assert now.kafka_reachable
    [alpha, beta] = channel_rows([rates])
    assert (alpha.channel, alpha.messages_per_s, alpha.joined) == ("alpha", 100.0, True)
    assert (beta.channel, beta.messages_per_s, beta.joined) == ("beta", 0.0, False)


def test_a_channel_silent_while_the_others_talk_is_quiet() -> None:
    before = parse_scrape("u", 1100.0, exposition(alpha=100, beta=10, acked=0, beta_last=1000))
    now = parse_scrape("u", 1101.0, exposition(alpha=150, beta=10, acked=0, beta_last=1000))
    rows = {
        r.channel: r
        for r in InstanceRates.between(before, now, instance="i", quiet_after_s=60).channels
    }
    assert rows["beta"].quiet
    assert rows["beta"].quiet_s == 101.0
    # Nobody talks: a silent channel is not singled out.
    still = parse_scrape("u", 1102.0, exposition(alpha=150, beta=10, acked=0, beta_last=1000))
    rows = {
        r.channel: r
        for r in InstanceRates.between(now, still, instance="i", quiet_after_s=60).channels
    }
    assert not rows["beta"].quiet


def test_a_restarted_instance_gives_no_negative_rate() -> None:
    before = parse_scrape("u", 1000.0, exposition(alpha=500, beta=0, acked=500, beta_last=0))
    now = parse_scrape("u", 1001.0, exposition(alpha=5, beta=0, acked=5, beta_last=0))
    assert InstanceRates.between(before, now, instance="i", quiet_after_s=60).in_per_s == 0.0


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    # Only what was observed since the previous scrape counts.
    assert histogram_quantile(0.5, buckets, before=buckets) is None


def test_not_metrics_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the parser's own message
        parse_scrape("u", 0.0, "<html>not metrics {</html>\n")


def test_the_screen_says_an_endpoint_is_down_and_highlights_the_quiet_channel() -> None:
    before = parse_scrape("u", 1100.0, exposition(alpha=100, beta=10, acked=0, beta_last=1000))
    now = parse_scrape("u", 1101.0, exposition(alpha=150, beta=10, acked=40, beta_last=1000))
    rates = InstanceRates.between(before, now, instance="a:8080", quiet_after_s=60)
    screen = Screen(
        targets=[
            TargetState("a:8080", "http://a:8080/metrics", rates=rates),
            TargetState("b:8080", "http://b:8080/metrics", problem="connection refused"),
        ],
        interval_s=1.0,
        quiet_after_s=60.0,
    )
    console = Console(width=150, record=True, color_system=None)
    console.print(render(screen, height=40, now=1101.0))
    text = console.export_text()
    assert "cannot read http://b:8080/metrics: connection refused; trying again every 1 s" in text
    assert "beta QUIET" in text
    [alpha] = [line for line in text.splitlines() if line.startswith("alpha ")]
    assert alpha.split()[1:3] == ["a:8080", "50.0"]
