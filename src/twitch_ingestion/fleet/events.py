"""What `FleetMember` (`assignment.py`) deals with: the events the reader thread
(`control_reader.py`) posts to the loop, in order; the error that ends membership; and
the source whose channels it drives (`ChannelReader`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from twitch_ingestion.fleet.fence import ChannelFence, FinalMark
from twitch_ingestion.fleet.standby import ProgressMark
from twitch_ingestion.fleet.status import InstanceReport

__all__ = [
    "ChannelReader",
    "ChannelsChanged",
    "FleetError",
    "FleetEvent",
    "MarkReceived",
    "PartitionLoaded",
    "PartitionsAssigned",
    "PartitionsRevoked",
    "ProgressReceived",
    "ReaderFailed",
    "ReportDeleted",
    "ReportReceived",
]


class FleetError(Exception):
    """The fleet membership cannot go on (e.g. another live instance has our INSTANCE_ID)."""


class ChannelReader(Protocol):
    """What `FleetMember` needs of the Twitch source (`TwitchSource` is one)."""

    @property
    def channels(self) -> list[str]: ...

    @property
    def failed_channels(self) -> dict[str, str]: ...

    def joined_channels(self) -> frozenset[str]: ...

    def add_channels(self, channels: Iterable[str]) -> None: ...

    def remove_channels(self, channels: Iterable[str]) -> None: ...

    def is_ready(self) -> bool: ...

    def status(self) -> dict[str, object]: ...

    @property
    def fence(self) -> ChannelFence | None:
        """Per-channel hold/track/drop for fenced hand-offs (`fence.py`); None: the
        source cannot, and a moved channel is produced twice for the overlap."""


# --- events: reader thread → event loop -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionsAssigned:
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PartitionLoaded:
    """Read to its end for the first time since assigned: its channels, to join."""

    partition: int
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChannelsChanged:
    partition: int
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartitionsRevoked:
    partitions: tuple[int, ...]
    channels: Mapping[int, tuple[str, ...]]
    """Channels of the revoked partitions that were loaded (and so are joined)."""
    lost: bool
    """The session expired: another instance may already hold them."""


@dataclass(frozen=True, slots=True)
class ReportReceived:
    report: InstanceReport


@dataclass(frozen=True, slots=True)
class ReportDeleted:
    """An instance stopped cleanly (its report's tombstone)."""

    instance_id: str


@dataclass(frozen=True, slots=True)
class MarkReceived:
    mark: FinalMark


@dataclass(frozen=True, slots=True)
class ProgressReceived:
    """An instance's progress record (replicas 2); mark None: deleted, it stopped."""

    instance_id: str
    mark: ProgressMark | None


@dataclass(frozen=True, slots=True)
class ReaderFailed:
    error: BaseException


FleetEvent = (
    PartitionsAssigned
    | PartitionLoaded
    | ChannelsChanged
    | PartitionsRevoked
    | ReportReceived
    | ReportDeleted
    | MarkReceived
    | ProgressReceived
    | ReaderFailed
)
