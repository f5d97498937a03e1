"""One namespace (issue 21): what `/metrics` exports is named, labelled and initialised as
Prometheus's naming guide and the alert rules expect."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from twitch_ingestion.fleet.fence import ReleaseOutcome
from twitch_ingestion.fleet.standby import TakeOverOutcome
from twitch_ingestion.metrics import (
    CHANNEL_FLOW,
    EVENTSUB_COUNTERS,
    FLEET,
    NAMESPACE,
    PARSE_STATS,
    READINESS,
    REGISTRY,
    TOKEN,
    render_metrics,
)

# The standard collectors every Python exporter has, left as they are.
_STANDARD = ("process_", "python_")


def test_every_family_the_registry_exports_is_in_the_namespace() -> None:
    families = list(text_string_to_metric_families(render_metrics().decode()))
    assert families
    for family in families:
        if family.name.startswith(_STANDARD):
            continue
        assert family.name.startswith(f"{NAMESPACE}_"), family.name


def test_every_series_read_at_scrape_time_is_in_the_namespace() -> None:
    names = [f"{NAMESPACE}_{name}" for name in EVENTSUB_COUNTERS]
    kinds = [kind for _, kind in EVENTSUB_COUNTERS.values()]
    for collector in (READINESS, PARSE_STATS, TOKEN, CHANNEL_FLOW, FLEET):
        names += collector.families
        kinds += [kind for _, kind, _ in collector.families.values()]
    for name, kind in zip(names, kinds, strict=True):
        assert name.startswith(f"{NAMESPACE}_"), name
        # prometheus_client appends _total to a counter: the name must not say it twice.
        assert not name.endswith("_total"), name
        assert kind in ("counter", "gauge"), name


@pytest.mark.parametrize(
    ("sample", "labels"),
    [
        ("twitch_ingestion_dead_letters_total", {"reason": "kafka-refused"}),
        ("twitch_ingestion_irc_reconnects_total", {"cause": "connection_lost"}),
        ("twitch_ingestion_irc_reconnects_total", {"cause": "join_limit"}),
        ("twitch_ingestion_irc_connections", {"state": "connected"}),
        ("twitch_ingestion_kafka_records_acknowledged_total", {"kind": "chat"}),
        ("twitch_ingestion_kafka_records_acknowledged_total", {"kind": "dlq"}),
        ("twitch_ingestion_kafka_delivery_errors_total", {"error": "_MSG_TIMED_OUT"}),
        ("twitch_ingestion_buffer_records_dropped_total", {"reason": "buffer_full"}),
        ("twitch_ingestion_irc_malformed_lines_total", {"reason": "invalid-utf8"}),
        ("twitch_ingestion_fleet_handoffs_total", {"outcome": "possible_gap"}),
        ("twitch_ingestion_fleet_handoffs_total", {"outcome": "no_mark"}),
        ("twitch_ingestion_fleet_takeovers_total", {"outcome": "gap"}),
    ],
)
def test_labelled_series_that_alerts_read_exist_before_their_first_count(
    sample: str, labels: dict[str, str]
) -> None:
    assert REGISTRY.get_sample_value(sample, labels) is not None


def test_the_sampled_latency_histogram_says_so_in_its_help() -> None:
    [family] = [
        f
        for f in text_string_to_metric_families(render_metrics().decode())
        if f.name == "twitch_ingestion_kafka_delivery_latency_seconds"
    ]
    assert "one acknowledged record in 8 is observed" in family.documentation


@pytest.mark.parametrize(
    ("family", "outcomes"),
    [
        ("twitch_ingestion_fleet_handoffs", [o.value for o in ReleaseOutcome]),
        ("twitch_ingestion_fleet_takeovers", [o.value for o in TakeOverOutcome]),
    ],
)
def test_the_fleet_outcome_series_are_every_outcome_the_fleet_decides(
    family: str, outcomes: list[str]
) -> None:
    [metric] = [
        f for f in text_string_to_metric_families(render_metrics().decode()) if f.name == family
    ]
    exported = {s.labels["outcome"] for s in metric.samples if s.name.endswith("_total")}
    assert exported == set(outcomes)
