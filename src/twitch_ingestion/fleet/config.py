"""The fleet's configs: what its members and its commands read of the environment.

`component_configs.control_topics_config` and `component_configs.fleet_config` derive
them from `Settings`; nothing in `fleet/` sees `Settings` itself, so each function's
signature says which of the two it needs: the `channels`, `status` and `top` commands
only find the fleet's topics and group (`ControlTopicsConfig`), a running member
(`FleetMember`) also needs who it is and its timeouts (`FleetConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

from twitch_ingestion.fleet.standby import StandbyConfig
from twitch_ingestion.kafka.producer_config import KafkaConnection

__all__ = ["ControlTopicsConfig", "FleetConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlTopicsConfig:
    """Where the fleet keeps its state: the control topic (the channel table), the
    instances topic (reports, final marks, progress records), the consumer group that
    shares out the control topic's partitions, and the Kafka they live on."""

    connection: KafkaConnection
    channels_topic: str
    """KAFKA_TOPIC_CHANNELS: the control topic."""
    instances_topic: str
    """KAFKA_TOPIC_INSTANCES."""
    group: str
    """KAFKA_CHANNELS_GROUP."""
    channels_partitions: int
    """KAFKA_CHANNELS_PARTITIONS: the control topic's partitions when created here."""
    replication_factor: int
    """KAFKA_TOPIC_REPLICATION_FACTOR (-1: the broker's default)."""
    create_topics: bool
    """KAFKA_CREATE_TOPICS: create missing topics, or only check them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """One running member of the fleet (CHANNEL_SOURCE=kafka)."""

    control: ControlTopicsConfig
    instance_id: str
    """INSTANCE_ID: the static group member, the key of this instance's report."""
    login: str
    """The Twitch login its report names (TWITCH_USERNAME, or its `justinfan` guest)."""
    session_timeout_ms: int
    """KAFKA_CHANNELS_SESSION_TIMEOUT_MS."""
    handover_timeout_s: float
    """KAFKA_CHANNELS_HANDOVER_TIMEOUT_S (0: part a moved channel at once)."""
    standby: StandbyConfig
    """KAFKA_CHANNELS_REPLICAS and the standby window."""
    tail_topics: tuple[str, ...]
    """KAFKA_TOPIC_CHAT_MESSAGES and KAFKA_TOPIC_CHAT_EVENTS: where a standby reads
    Kafka's copy of a dead producer's channels (`tail_read.py`)."""
