"""What `top` shows, computed from `/metrics` scrapes (pure: text and times in, figures out).

A `Scrape` is one instance's exposition at one moment, reduced to the figures on screen.
Rates come from two scrapes of the same instance (`InstanceRates.between`), so `top`
needs nothing from the service but what Prometheus reads too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "ChannelFigures",
    "ChannelRow",
    "InstanceRates",
    "Scrape",
    "channel_rows",
    "histogram_quantile",
    "parse_scrape",
]

_KINDS_READ = ("chat", "events")


@dataclass(frozen=True, slots=True)
class ChannelFigures:
    messages: float = 0.0
    events: float = 0.0
    dead_letters: float = 0.0
    last_record_at: float | None = None
    """Unix time of the channel's last message or event, if any since start."""
    joined: bool | None = None


@dataclass(frozen=True, slots=True)
class Scrape:
    """One instance's `/metrics`, as of `at` (Unix time of the scrape)."""

    url: str
    at: float
    records_read: float = 0.0
    """Chat messages and events the source built records of (both sources)."""
    acknowledged: float = 0.0
    """Chat and event records Kafka acknowledged."""
    buffer_records: float = 0.0
    buffer_bytes: float = 0.0
    buffer_max_bytes: float = 0.0
    oldest_unacked_s: float = 0.0
    producer_queue: float = 0.0
    kafka_reachable: bool = False
    twitch_ready: bool = False
    reconnects: float = 0.0
    dead_letters: float = 0.0
    hot_path: str = ""
    latency_buckets: tuple[tuple[float, float], ...] = ()
    """The delivery-latency histogram's cumulative buckets: (upper bound, count)."""
    channels: Mapping[str, ChannelFigures] = field(default_factory=dict)


def parse_scrape(url: str, at: float, text: str) -> Scrape:
    """The figures of one exposition; raises ValueError when it is not one."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(name: str, **match: str) -> float:
        return sum(
            value
            for labels, value in samples.get(name, ())
            if all(labels.get(k) == v for k, v in match.items())
        )

    def by_label(name: str, label: str) -> dict[str, float]:
        return {labels[label]: value for labels, value in samples.get(name, ()) if label in labels}

    channels: dict[str, dict[str, float]] = {}
    for name, key in (
        ("twitch_ingestion_channel_messages_total", "messages"),
        ("twitch_ingestion_channel_events_total", "events"),
        ("twitch_ingestion_channel_dead_letters_total", "dead_letters"),
        ("twitch_ingestion_channel_last_record_timestamp_seconds", "last_record_at"),
        ("twitch_ingestion_channel_joined", "joined"),
    ):
        for channel, value in by_label(name, "channel").items():
            channels.setdefault(channel, {})[key] = value
    hot_path = next(iter(by_label("twitch_ingestion_hot_path_info", "path")), "")
    buckets = sorted(
        (_bound(le), count)
        for le, count in by_label(
            "twitch_ingestion_kafka_delivery_latency_seconds_bucket", "le"
        ).items()
    )
    ready = by_label("twitch_ingestion_ready", "component")
    return Scrape(
        url=url,
        at=at,
        records_read=sum(
            total("twitch_ingestion_records_built_total", kind=k) for k in _KINDS_READ
        ),
        acknowledged=sum(
            total("twitch_ingestion_kafka_records_acknowledged_total", kind=k) for k in _KINDS_READ
        ),
        buffer_records=total("twitch_ingestion_buffer_records"),
        buffer_bytes=total("twitch_ingestion_buffer_bytes"),
        buffer_max_bytes=total("twitch_ingestion_buffer_max_bytes"),
        oldest_unacked_s=total("twitch_ingestion_buffer_oldest_unacked_age_seconds"),
        producer_queue=total("twitch_ingestion_kafka_producer_queue_records"),
        kafka_reachable=total("twitch_ingestion_kafka_reachable") >= 1,
        twitch_ready=ready.get("twitch", 0.0) >= 1,
        reconnects=total("twitch_ingestion_irc_reconnects_total")
        + total("twitch_ingestion_eventsub_reconnects_total"),
        dead_letters=total("twitch_ingestion_dead_letters_total"),
        hot_path=hot_path,
        latency_buckets=tuple(buckets),
        channels={
            channel: ChannelFigures(
                messages=values.get("messages", 0.0),
                events=values.get("events", 0.0),
                dead_letters=values.get("dead_letters", 0.0),
                last_record_at=values.get("last_record_at"),
                joined=None if "joined" not in values else values["joined"] >= 1,
            )
            for channel, values in channels.items()
        },
    )


def _bound(le: str) -> float:
    return math.inf if le == "+Inf" else float(le)


def histogram_quantile(
    q: float, buckets: Iterable[tuple[float, float]], before: Iterable[tuple[float, float]] = ()
) -> float | None:
    """Prometheus's `histogram_quantile` over cumulative buckets (minus `before`'s):
    linear within the bucket; None without observations."""
    earlier = dict(before)
    counts = [(bound, count - earlier.get(bound, 0.0)) for bound, count in buckets]
    if not counts or counts[-1][1] <= 0:
        return None
    rank = q * counts[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in counts:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # as Prometheus: the highest finite bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One channel on screen."""

    channel: str
    instance: str
    messages_per_s: float
    events_per_s: float
    dead_letters: float
    quiet_s: float | None
    """Seconds since its last message or event; None: none since the instance started."""
    joined: bool | None
    quiet: bool
    """Silent for the quiet threshold while the instance's other channels talk."""


@dataclass(frozen=True, slots=True)
class InstanceRates:
    """One instance between two scrapes."""

    scrape: Scrape
    in_per_s: float
    acked_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    channels: tuple[ChannelRow, ...]

    @classmethod
    def between(
        cls, before: Scrape | None, now: Scrape, *, instance: str, quiet_after_s: float
    ) -> InstanceRates:
        elapsed = now.at - before.at if before is not None else 0.0

        def rate(current: float, previous: float) -> float:
            # A counter that went down is a restarted instance: no rate for that step.
            if elapsed <= 0 or current < previous:
                return 0.0
            return (current - previous) / elapsed

        old_channels = before.channels if before is not None else {}
        rows = []
        in_per_s = rate(now.records_read, before.records_read) if before is not None else 0.0
        for channel, figures in now.channels.items():
            old = old_channels.get(channel, figures)
            quiet_s = (
                None
                if figures.last_record_at is None
                else max(0.0, now.at - figures.last_record_at)
            )
            messages_per_s = rate(figures.messages, old.messages)
            events_per_s = rate(figures.events, old.events)
            silent = (quiet_s is None or quiet_s >= quiet_after_s) and not (
                messages_per_s or events_per_s
            )
            rows.append(
                ChannelRow(
                    channel=channel,
                    instance=instance,
                    messages_per_s=messages_per_s,
                    events_per_s=events_per_s,
                    dead_letters=figures.dead_letters,
                    quiet_s=quiet_s,
                    joined=figures.joined,
                    quiet=silent and in_per_s > 0 and not channel.startswith("_"),
                )
            )
        previous_buckets = before.latency_buckets if before is not None else ()
        p50 = histogram_quantile(0.5, now.latency_buckets, previous_buckets)
        p99 = histogram_quantile(0.99, now.latency_buckets, previous_buckets)
        if p50 is None:  # nothing new acknowledged in this step: since the start, then
            p50 = histogram_quantile(0.5, now.latency_buckets)
            p99 = histogram_quantile(0.99, now.latency_buckets)
        return cls(
            scrape=now,
            in_per_s=in_per_s,
            acked_per_s=rate(now.acknowledged, before.acknowledged) if before is not None else 0.0,
            latency_p50_s=p50,
            latency_p99_s=p99,
            channels=tuple(rows),
        )


def channel_rows(instances: Iterable[InstanceRates]) -> list[ChannelRow]:
    """Every channel of every instance, the busiest first (then by name)."""
    rows = [row for rates in instances for row in rates.channels]
    rows.sort(key=lambda r: (-(r.messages_per_s + r.events_per_s), r.channel, r.instance))
    return rows
