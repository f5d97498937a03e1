"""Every counter, gauge and histogram the service exports, in one catalogue.

Prometheus text format comes from `prometheus_client`; each component imports the
metrics it updates from here so names stay consistent and the README can list them.
Label values are bounded sets (causes, reasons, states, topics), never channel names
or user input, so cardinality cannot explode with the number of channels.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping

from confluent_kafka import libversion
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Metric,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from twitch_ingestion import __version__

__all__ = ["REGISTRY", "render_metrics"]

REGISTRY = CollectorRegistry(auto_describe=True)

# --- Process and build ------------------------------------------------------------
# The standard process_* (CPU, memory, file descriptors, start time), python_info and
# python_gc_* series every Python exporter has; all are read at scrape time only.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)
BUILD_INFO = Gauge(
    "twitch_ingestion_build_info",
    "Always 1; the labels say which build is running",
    ["version", "python", "librdkafka"],
    registry=REGISTRY,
)
BUILD_INFO.labels(
    version=__version__, python=platform.python_version(), librdkafka=libversion()[0]
).set(1)

HOT_PATH_INFO = Gauge(
    "twitch_ingestion_hot_path_info",
    "Always 1; the label says which IRC hot path encodes chat: compiled or python (HOT_PATH)",
    ["path"],
    registry=REGISTRY,
)

# --- Twitch source ----------------------------------------------------------------
LINES_RECEIVED = Counter(
    "twitch_lines_received", "IRC lines read from Twitch connections", registry=REGISTRY
)
BYTES_RECEIVED = Counter(
    "twitch_bytes_received", "Bytes read from Twitch connections", registry=REGISTRY
)
MALFORMED_LINES = Counter(
    "twitch_malformed_lines",
    "Lines that could not be parsed or broke the contract, by reason",
    ["reason"],
    registry=REGISTRY,
)
DUPLICATE_MESSAGES_DROPPED = Counter(
    "twitch_duplicate_messages_dropped",
    "Messages seen on two connections during a RECONNECT hand-over and kept once",
    registry=REGISTRY,
)
EMOTE_RANGES_SKIPPED = Counter(
    "twitch_emote_ranges_skipped",
    "Emote ranges from Twitch that did not fit the message text and were ignored",
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "twitch_reconnects", "Connection replacements, by cause", ["cause"], registry=REGISTRY
)
CONNECTION_STATES = Gauge(
    "twitch_connections",
    "Twitch connections currently in each state",
    ["state"],
    registry=REGISTRY,
)
CHANNELS_JOINED = Gauge("twitch_channels_joined", "Channels currently joined", registry=REGISTRY)
CHANNELS_FAILED = Gauge(
    "twitch_channels_failed",
    "Wanted channels that could not be joined (suspended, banned, no echo)",
    registry=REGISTRY,
)
JOIN_QUEUE_LENGTH = Gauge(
    "twitch_join_queue_length", "JOINs waiting for the join rate limiter", registry=REGISTRY
)


# --- EventSub source (TWITCH_SOURCE=eventsub) --------------------------------------
# Read from the client's own counters at scrape time, so the hot path pays nothing for
# them: name → (help, kind). The source registers how to read them (`EVENTSUB.watch`).
EVENTSUB_COUNTERS: dict[str, tuple[str, str]] = {
    "eventsub_notifications": ("Chat notifications turned into records", "counter"),
    "eventsub_dead_letters": (
        "EventSub frames or notifications that could not become a record (sent to the DLQ)",
        "counter",
    ),
    "eventsub_duplicates_dropped": (
        "Notifications Twitch delivered again (same message_id) and that were kept once",
        "counter",
    ),
    "eventsub_reconnects": ("Fresh reconnects (close, keepalive loss, errors)", "counter"),
    "eventsub_session_migrations": (
        "session_reconnect hand-overs followed (subscriptions carried over)",
        "counter",
    ),
    "eventsub_subscriptions_created": ("Subscriptions created through Helix", "counter"),
    "eventsub_revocations": ("Subscriptions Twitch revoked", "counter"),
    "eventsub_helix_rate_limited": ("Helix calls answered 429 (and retried)", "counter"),
    "eventsub_token_validations": ("Token validations (start-up and hourly)", "counter"),
    "eventsub_token_refreshes": ("Token refreshes", "counter"),
    "eventsub_channels_not_read": (
        "Configured channels EventSub does not read (unknown login, refused subscription)",
        "gauge",
    ),
    "eventsub_connections_subscribed": (
        "EventSub WebSocket connections whose subscriptions are in place",
        "gauge",
    ),
}


class EventSubCollector:
    """Exposes the EventSub client's counters (`EVENTSUB_COUNTERS`) at scrape time."""

    def __init__(self) -> None:
        self._read: Callable[[], Mapping[str, float]] | None = None

    def watch(self, read: Callable[[], Mapping[str, float]] | None) -> None:
        """Read the values with `read` from now on (None: export nothing)."""
        self._read = read

    def describe(self) -> list[Metric]:
        return []  # the series exist only with TWITCH_SOURCE=eventsub

    def collect(self) -> Iterator[Metric]:
        read = self._read
        if read is None:
            return
        values = read()
        for name, (text, kind) in EVENTSUB_COUNTERS.items():
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(name, text)
            else:
                family = GaugeMetricFamily(name, text)
            family.add_metric([], float(values.get(name, 0)))
            yield family


EVENTSUB = EventSubCollector()
REGISTRY.register(EVENTSUB)

# --- EventSub subscriptions (issue 19) ---------------------------------------------
# Desired vs subscribed is read at scrape time (the source sets the functions); the
# failure counter is updated where a subscription call fails, never on the hot path.
EVENTSUB_DESIRED_CHANNELS = Gauge(
    "twitch_ingestion_eventsub_desired_channels",
    "Channels EventSub should read (TWITCH_CHANNEL or the fleet's share)",
    registry=REGISTRY,
)
EVENTSUB_SUBSCRIBED_CHANNELS = Gauge(
    "twitch_ingestion_eventsub_subscribed_channels",
    "Desired channels with every chat subscription in place on a live session",
    registry=REGISTRY,
)
EVENTSUB_SUBSCRIPTION_FAILURES = Counter(
    "twitch_ingestion_eventsub_subscription_failures",
    "Failed subscription attempts, revocations and vanished subscriptions, by reason "
    "(rate-limited, limit-exceeded, transient, session-gone, forbidden, bad-request, "
    "unknown-login, connection-limit, revoked…, vanished, conflict)",
    ["reason"],
    registry=REGISTRY,
)
EVENTSUB_HELD_RECORDS = Gauge(
    "twitch_ingestion_eventsub_held_records",
    "EventSub records read from Twitch and held until the sink takes them "
    "(TWITCH_EVENTSUB_MAX_HELD_RECORDS at most)",
    registry=REGISTRY,
)

# --- Transform --------------------------------------------------------------------
MESSAGES_PARSED = Counter(
    "ingestion_messages_parsed",
    "Records built from Twitch lines, by destination topic kind",
    ["kind"],
    registry=REGISTRY,
)

# --- Kafka sink -------------------------------------------------------------------
MESSAGES_PRODUCED = Counter(
    "kafka_messages_produced",
    "Records acknowledged by Kafka, by topic kind",
    ["kind"],
    registry=REGISTRY,
)
DELIVERY_ERRORS = Counter(
    "kafka_delivery_errors",
    "Records Kafka did not acknowledge, by error kind",
    ["error"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "kafka_dead_letters",
    "Records sent to the dead-letter topic, by reason",
    ["reason"],
    registry=REGISTRY,
)
PRODUCER_QUEUE_DEPTH = Gauge(
    "kafka_producer_queue_depth",
    "Records handed to librdkafka and not yet acknowledged",
    registry=REGISTRY,
)
KAFKA_REACHABLE = Gauge(
    "kafka_reachable", "1 when the producer has a connection to a broker", registry=REGISTRY
)
DELIVERY_LATENCY = Histogram(
    "kafka_delivery_latency_seconds",
    "Time from reading a line off the socket to Kafka's acknowledgement",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)

# --- Durable buffer ---------------------------------------------------------------
BUFFER_BYTES = Gauge("buffer_bytes", "Bytes held in the buffer", registry=REGISTRY)
BUFFER_RECORDS = Gauge(
    "buffer_records", "Records held in the buffer, not yet acknowledged", registry=REGISTRY
)
BUFFER_OLDEST_AGE = Gauge(
    "buffer_oldest_unacked_age_seconds",
    "Age of the oldest record not yet acknowledged by Kafka",
    registry=REGISTRY,
)
BUFFER_REPLAYED = Counter(
    "buffer_records_replayed", "Records replayed from disk at startup", registry=REGISTRY
)
BUFFER_DROPPED = Counter(
    "buffer_records_dropped",
    "Records dropped by the buffer, by reason (buffer_full, corrupt_tail, corrupt_frame, "
    "disk_full: held in memory at close with the disk still full)",
    ["reason"],
    registry=REGISTRY,
)
BUFFER_DISK_FULL = Gauge(
    "buffer_disk_full",
    "1 while the disk buffer's filesystem refuses writes (ENOSPC/EDQUOT) and new records "
    "are held in memory; 0 once it takes them again",
    registry=REGISTRY,
)
BUFFER_HELD_IN_MEMORY = Counter(
    "buffer_records_held_in_memory",
    "Records the disk buffer held in memory because the disk was full",
    registry=REGISTRY,
)


def render_metrics() -> bytes:
    """The Prometheus text exposition of every metric above."""
    return generate_latest(REGISTRY)
