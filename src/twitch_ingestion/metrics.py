"""Every counter, gauge and histogram the service exports, in one catalogue.

Prometheus text format comes from `prometheus_client`; each component imports the
metrics it updates from here so names stay consistent and the README can list them.

One namespace: every name starts with `twitch_ingestion_` (the standard `process_*`,
`python_*` collectors aside), then the component (`irc_`, `eventsub_`, `kafka_`,
`buffer_`, `channel_`, `fleet_`), and ends with its unit or `_total`, as Prometheus's
naming guide asks, so they cannot clash with a librdkafka exporter, Kafka Connect or
another service's buffer in the same Prometheus. A labelled series that an alert or the
dashboard (`monitoring/`) reads is created at 0 for each of its known label values:
`rate()` and `increase()` see nothing of a series until its second sample.

Label values are bounded sets (causes, reasons, states, topic kinds), never user input.
The one exception, `channel`, is capped by METRICS_CHANNELS_MAX (`channel_flow.py`).
Values that the service already keeps elsewhere are read at scrape time by a collector
(`watch`), so the hot path pays nothing for them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

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
NAMESPACE = "twitch_ingestion"


def _initialise(metric: Counter | Gauge, values: Iterable[str]) -> None:
    """Create the series of each known label value at 0 (see the module docstring)."""
    for value in values:
        metric.labels(value)


class ScrapeTimeCollector:
    """Families whose values are read from the service at scrape time, not pushed.

    `watch(read)` tells it how: `read()` returns {family name: value}, a value being a
    number (an unlabelled series) or {label values: number}. Before `watch` (or after
    `watch(None)`) it exports nothing: the series exist only where the part runs.
    """

    def __init__(self, families: Mapping[str, tuple[str, str, Sequence[str]]]) -> None:
        """`families`: name → (help, "counter" | "gauge", label names)."""
        self.families = dict(families)
        self._read: Callable[[], Mapping[str, object]] | None = None

    def watch(self, read: Callable[[], Mapping[str, object]] | None) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []  # which series exist depends on the running service

    def collect(self) -> Iterator[Metric]:
        read = self._read
        if read is None:
            return
        values = read()
        for name, (text, kind, labels) in self.families.items():
            value = values.get(name)
            if value is None:
                continue
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(name, text, labels=labels)
            else:
                family = GaugeMetricFamily(name, text, labels=labels)
            if isinstance(value, Mapping):
                for label_values, sample in value.items():
                    family.add_metric(list(label_values), float(sample))
            else:
                family.add_metric([], float(value))  # type: ignore[arg-type]
            yield family


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
    "Always 1; path says which IRC hot path encodes chat (compiled or python), requested "
    "what HOT_PATH asked for (path=python with requested=auto: the compiled extension is "
    "not installed, a fallback)",
    ["path", "requested"],
    registry=REGISTRY,
)

# --- Readiness (read at scrape time) -------------------------------------------------
READINESS = ScrapeTimeCollector(
    {
        "twitch_ingestion_ready": (
            "1 when this part is ready, as /readyz says: twitch = connected with every "
            "channel joined or refused, kafka = a broker reachable and the topics in place",
            "gauge",
            ("component",),
        ),
    }
)
REGISTRY.register(READINESS)

# --- Twitch IRC source ------------------------------------------------------------
LINES_RECEIVED = Counter(
    "twitch_ingestion_irc_lines_received",
    "IRC lines read from Twitch connections",
    registry=REGISTRY,
)
BYTES_RECEIVED = Counter(
    "twitch_ingestion_irc_received_bytes",
    "Bytes read from Twitch IRC connections",
    registry=REGISTRY,
)
MALFORMED_LINES = Counter(
    "twitch_ingestion_irc_malformed_lines",
    "IRC lines that could not be read as IRC (sent to the dead-letter topic), by reason",
    ["reason"],
    registry=REGISTRY,
)
_initialise(
    MALFORMED_LINES,
    (
        "invalid-utf8",
        "line-too-long",
        "tags-without-command",
        "prefix-without-command",
        "empty-prefix",
        "missing-command",
        "invalid-command",
    ),
)
DUPLICATE_MESSAGES_DROPPED = Counter(
    "twitch_ingestion_irc_duplicate_messages_dropped",
    "Messages seen on two connections during a RECONNECT hand-over and kept once",
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "twitch_ingestion_irc_reconnects",
    "Twitch IRC connections replaced, by cause",
    ["cause"],
    registry=REGISTRY,
)
_initialise(
    RECONNECTS,
    ("connection_lost", "keepalive_timeout", "join_limit", "connect_failed", "server_reconnect"),
)
CONNECTION_STATES = Gauge(
    "twitch_ingestion_irc_connections",
    "Twitch IRC connections currently in each state",
    ["state"],
    registry=REGISTRY,
)
_initialise(CONNECTION_STATES, ("connecting", "connected", "disconnected", "reconnecting"))
CHANNELS_JOINED = Gauge(
    "twitch_ingestion_irc_channels_joined",
    "Channels currently joined on a live IRC connection",
    registry=REGISTRY,
)
CHANNELS_FAILED = Gauge(
    "twitch_ingestion_irc_channels_failed",
    "Wanted channels that could not be joined (suspended, banned, no echo)",
    registry=REGISTRY,
)
JOIN_QUEUE_LENGTH = Gauge(
    "twitch_ingestion_irc_join_queue_length",
    "JOINs waiting for the join rate limiter",
    registry=REGISTRY,
)
# The parsers' data-quality counters (`ParseStats`): read at scrape time.
PARSE_STATS = ScrapeTimeCollector(
    {
        "twitch_ingestion_irc_emote_ranges_skipped": (
            "Emote ranges from Twitch that did not fit the message text and were left out",
            "counter",
            (),
        ),
        "twitch_ingestion_irc_emote_tags_rejected": (
            "Records whose whole emotes tag was distrusted (one count per record)",
            "counter",
            (),
        ),
        "twitch_ingestion_irc_timestamps_defaulted": (
            "Records whose tmi-sent-ts was missing or invalid, so received_at was used",
            "counter",
            (),
        ),
    }
)
REGISTRY.register(PARSE_STATS)

# --- Twitch token (read at scrape time) ---------------------------------------------
TOKEN = ScrapeTimeCollector(
    {
        "twitch_ingestion_twitch_token_expiry_timestamp_seconds": (
            "Unix time at which TWITCH_OAUTH_TOKEN expires, as Twitch's last validation or "
            "refresh said; refreshable=true when TWITCH_REFRESH_TOKEN and "
            "TWITCH_CLIENT_SECRET let the service refresh it before then (absent: no "
            "token, or one that does not expire)",
            "gauge",
            ("refreshable",),
        ),
    }
)
REGISTRY.register(TOKEN)

# --- EventSub source (TWITCH_SOURCE=eventsub) --------------------------------------
# Read from the client's own counters at scrape time, so the hot path pays nothing for
# them. The source's `counters()` returns them by the short names below; each is
# exported as `twitch_ingestion_<short name>` (`EVENTSUB.watch`).
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
        self._exported = ScrapeTimeCollector(
            {
                f"{NAMESPACE}_{name}": (text, kind, ())
                for name, (text, kind) in EVENTSUB_COUNTERS.items()
            }
        )

    def watch(self, read: Callable[[], Mapping[str, float]] | None) -> None:
        """Read the values with `read` from now on (None: export nothing)."""
        if read is None:
            self._exported.watch(None)
            return
        self._exported.watch(
            lambda: {f"{NAMESPACE}_{name}": value for name, value in read().items()}
        )

    def describe(self) -> list[Metric]:
        return []  # the series exist only with TWITCH_SOURCE=eventsub

    def collect(self) -> Iterator[Metric]:
        return self._exported.collect()


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

# --- Records and dead letters --------------------------------------------------------
# Records built, by topic kind, are counted with the per-channel flow (`CHANNEL_FLOW`
# below: twitch_ingestion_records_built_total), once per read chunk.
DEAD_LETTERS = Counter(
    "twitch_ingestion_dead_letters",
    "Records sent to the dead-letter topic (or counted without one), by reason: the "
    "contract violation or malformed-line reason of a Twitch line or EventSub frame, or "
    "kafka-refused for a record Kafka will never accept (its error: "
    "twitch_ingestion_kafka_delivery_errors_total)",
    ["reason"],
    registry=REGISTRY,
)
_initialise(DEAD_LETTERS, ("kafka-refused",))

# --- Kafka sink -------------------------------------------------------------------
MESSAGES_PRODUCED = Counter(
    "twitch_ingestion_kafka_records_acknowledged",
    "Records Kafka acknowledged, by topic kind (chat, events, raw, dlq, other)",
    ["kind"],
    registry=REGISTRY,
)
_initialise(MESSAGES_PRODUCED, ("chat", "events", "raw", "dlq"))
DELIVERY_ERRORS = Counter(
    "twitch_ingestion_kafka_delivery_errors",
    "Delivery reports with an error, by Kafka's error name (transient ones are retried)",
    ["error"],
    registry=REGISTRY,
)
# librdkafka's timeout and the errors the sink reads as permanent (kafka/sink.py), by the
# names `KafkaError.name()` gives; other errors add their own series when they happen.
_initialise(
    DELIVERY_ERRORS,
    (
        "_MSG_TIMED_OUT",
        "UNKNOWN_TOPIC_OR_PART",
        "NOT_ENOUGH_REPLICAS",
        "MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "TOPIC_EXCEPTION",
        "_INVALID_ARG",
    ),
)
PRODUCER_QUEUE_DEPTH = Gauge(
    "twitch_ingestion_kafka_producer_queue_records",
    "Records handed to librdkafka and not yet acknowledged",
    registry=REGISTRY,
)
KAFKA_REACHABLE = Gauge(
    "twitch_ingestion_kafka_reachable",
    "1 when the producer has a connection to a broker",
    registry=REGISTRY,
)
LATENCY_SAMPLE_EVERY = 8
"""The delivery-latency histogram observes one acknowledged record in this many: an
observation takes a lock, which is measurable at 200,000 records/s."""
DELIVERY_LATENCY = Histogram(
    "twitch_ingestion_kafka_delivery_latency_seconds",
    "Time from reading a line off the socket to Kafka's acknowledgement; sampled: one "
    f"acknowledged record in {LATENCY_SAMPLE_EVERY} is observed, so _count is about 1/"
    f"{LATENCY_SAMPLE_EVERY} of the records (use twitch_ingestion_kafka_records_"
    "acknowledged_total for rates)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)

# --- Durable buffer ---------------------------------------------------------------
BUFFER_BYTES = Gauge("twitch_ingestion_buffer_bytes", "Bytes held in the buffer", registry=REGISTRY)
BUFFER_MAX_BYTES = Gauge(
    "twitch_ingestion_buffer_max_bytes",
    "The buffer's size cap (BUFFER_MAX_BYTES): past it, BUFFER_FULL_POLICY applies",
    registry=REGISTRY,
)
BUFFER_RECORDS = Gauge(
    "twitch_ingestion_buffer_records",
    "Records held in the buffer, not yet acknowledged",
    registry=REGISTRY,
)
BUFFER_OLDEST_AGE = Gauge(
    "twitch_ingestion_buffer_oldest_unacked_age_seconds",
    "Age of the oldest record not yet acknowledged by Kafka",
    registry=REGISTRY,
)
BUFFER_REPLAYED = Counter(
    "twitch_ingestion_buffer_records_replayed",
    "Records replayed from disk at startup",
    registry=REGISTRY,
)
BUFFER_DROPPED = Counter(
    "twitch_ingestion_buffer_records_dropped",
    "Records dropped by the buffer, by reason (buffer_full, corrupt_tail, corrupt_frame, "
    "disk_full: held in memory at close with the disk still full)",
    ["reason"],
    registry=REGISTRY,
)
_initialise(BUFFER_DROPPED, ("buffer_full", "corrupt_tail", "corrupt_frame", "disk_full"))
BUFFER_DISK_FULL = Gauge(
    "twitch_ingestion_buffer_disk_full",
    "1 while the disk buffer's filesystem refuses writes (ENOSPC/EDQUOT) and new records "
    "are held in memory; 0 once it takes them again",
    registry=REGISTRY,
)
BUFFER_HELD_IN_MEMORY = Counter(
    "twitch_ingestion_buffer_records_held_in_memory",
    "Records the disk buffer held in memory because the disk was full",
    registry=REGISTRY,
)

# --- Per channel (channel_flow.py; read at scrape time) ------------------------------
# One series per channel for at most METRICS_CHANNELS_MAX channels; the channels past the
# cap are added up under channel="_other" (a Twitch login cannot start with "_"), and
# dead letters whose channel cannot be told under channel="_unknown".
CHANNEL_FLOW = ScrapeTimeCollector(
    {
        "twitch_ingestion_records_built": (
            "Records the source built and handed to the sink, by topic kind: chat, events, "
            "raw (copies of IRC lines, KAFKA_TOPIC_RAW), dlq (dead letters)",
            "counter",
            ("kind",),
        ),
        "twitch_ingestion_channel_messages": (
            "Chat messages read, per channel (records for the chat topic)",
            "counter",
            ("channel",),
        ),
        "twitch_ingestion_channel_events": (
            "Community and moderation events read, per channel (records for the events topic)",
            "counter",
            ("channel",),
        ),
        "twitch_ingestion_channel_dead_letters": (
            "Dead letters sent to the dead-letter topic, per channel (_unknown: a line or "
            "frame whose channel cannot be told)",
            "counter",
            ("channel",),
        ),
        "twitch_ingestion_channel_last_record_timestamp_seconds": (
            "Unix time of the last read chunk that held a message or event of the channel "
            "(time() minus this: seconds since its last line)",
            "gauge",
            ("channel",),
        ),
        "twitch_ingestion_channel_joined": (
            "1 when the channel is joined (IRC) or subscribed (EventSub), 0 while it is "
            "wanted but not (waiting for its JOIN, refused, reconnecting)",
            "gauge",
            ("channel",),
        ),
        "twitch_ingestion_channels_wanted": (
            "Channels this instance is to read (TWITCH_CHANNEL, or its share of the fleet)",
            "gauge",
            (),
        ),
        "twitch_ingestion_channels_over_metrics_limit": (
            'Channels counted under channel="_other" because METRICS_CHANNELS_MAX other '
            "channels already have series of their own",
            "gauge",
            (),
        ),
    }
)
REGISTRY.register(CHANNEL_FLOW)

# --- Fleet (CHANNEL_SOURCE=kafka; read at scrape time) ------------------------------
FLEET_HANDOFFS = Counter(
    "twitch_ingestion_fleet_handoffs",
    "Channels this instance took over from another, by how the old owner's final mark "
    "settled where to start producing (fleet/fence.py: possible_gap and no_mark are the "
    "inexact ones)",
    ["outcome"],
    registry=REGISTRY,
)
FLEET_TAKEOVERS = Counter(
    "twitch_ingestion_fleet_takeovers",
    "Channels this instance took over as their standby when their producer died "
    "(KAFKA_CHANNELS_REPLICAS=2), by how Kafka's copy settled where to start (fleet/"
    "standby.py): gap means the standby's window had dropped lines never produced",
    ["outcome"],
    registry=REGISTRY,
)
# At 0 from the start, so the alerts' increase() sees an instance's first inexact
# hand-off or take-over (fleet/fence.py's ReleaseOutcome, fleet/standby.py's
# TakeOverOutcome: a unit test keeps the lists equal).
_initialise(
    FLEET_HANDOFFS,
    (
        "after_mark",
        "nothing_produced",
        "mark_before_window",
        "possible_gap",
        "no_mark",
        "no_other_reader",
    ),
)
_initialise(FLEET_TAKEOVERS, ("after_tail", "before_window", "gap"))
FLEET = ScrapeTimeCollector(
    {
        "twitch_ingestion_fleet_partitions_assigned": (
            "Control-topic partitions the consumer group assigned to this instance (summed "
            "over the fleet: every partition, unless an instance is gone and not yet "
            "replaced)",
            "gauge",
            (),
        ),
        "twitch_ingestion_fleet_channels_releasing": (
            "Channels moved to another instance and still read here until it has joined them",
            "gauge",
            (),
        ),
        "twitch_ingestion_fleet_standby_channels": (
            "Channels this instance stands by for (KAFKA_CHANNELS_REPLICAS=2): read into a "
            "window, produced only if their producer dies",
            "gauge",
            (),
        ),
        "twitch_ingestion_fleet_standby_window_bytes": (
            "Bytes the standby windows hold, every channel (bounded per channel by "
            "KAFKA_CHANNELS_STANDBY_WINDOW_BYTES)",
            "gauge",
            (),
        ),
        "twitch_ingestion_fleet_settled": (
            "1 once the assigned partitions are read to their end and their channels are "
            "handed to the source",
            "gauge",
            (),
        ),
    }
)
REGISTRY.register(FLEET)


def render_metrics() -> bytes:
    """The Prometheus text exposition of every metric above."""
    return generate_latest(REGISTRY)
