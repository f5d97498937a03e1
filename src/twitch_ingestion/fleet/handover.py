"""Giving channels away without a gap: read them until the new owner says it has them.

Kafka's cooperative protocol hands a partition over in two steps: the old owner
revokes it, and only in the *next* rebalance is it assigned to the new owner, which then
reads the control topic and JOINs each channel through its account's join limit (20 per
10 s for an ordinary account). Twitch does not replay chat, so parting at revocation
would lose everything said until the new owner's JOIN — seconds to minutes.

So a revoked partition's channels stay joined ("releasing") until an instance reports,
*after* the revocation, that it reads and has joined that channel — channel by channel:
a new owner joining 1,000 channels at 2 per second frees the first one after a second,
not the lot after eight minutes.
An instance of an older version reports no joined set, only whether it has joined
everything it reads (`ready`): its reports count the old way, all channels at once.
For the overlap, a channel's messages reach Kafka twice, and consumers de-duplicate on
`message_id` — the documented at-least-once contract. A report counts only if it
arrived after the release: an older one (say, the last words of an instance that
crashed while holding the channel) says nothing about the new owner. A cap
(`KAFKA_CHANNELS_HANDOVER_TIMEOUT_S`) bounds the overlap when no report ever comes (the
channel was removed meanwhile, the new owner died, or Twitch refuses it the channel).

Pure bookkeeping: reports and clock readings in, channels to PART out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from twitch_ingestion.fleet.status import InstanceReport

__all__ = ["HandoverTracker"]


@dataclass(frozen=True, slots=True)
class _Released:
    partition: int
    reports_seen: int
    """How many reports had arrived at release time: only later ones count."""
    released_at: float


class HandoverTracker:
    """Channels this instance gave away but still reads, and when it may stop."""

    def __init__(self, instance_id: str) -> None:
        self._instance_id = instance_id
        self._released: dict[str, _Released] = {}
        self._reports_seen = 0

    def __contains__(self, channel: object) -> bool:
        return channel in self._released

    def __len__(self) -> int:
        return len(self._released)

    @property
    def channels(self) -> list[str]:
        return list(self._released)

    def release(self, channels_by_partition: Mapping[int, Iterable[str]], now: float) -> None:
        """The group took these partitions away: keep their channels until handed over."""
        for partition, channels in channels_by_partition.items():
            for channel in channels:
                self._released[channel] = _Released(partition, self._reports_seen, now)

    def reclaim(self, partition: int, channels: Collection[str]) -> list[str]:
        """`partition` is ours again, with `channels`: those stay ours; released channels
        of it that are no longer in the table are returned, to be parted now."""
        gone: list[str] = []
        for channel, released in list(self._released.items()):
            if released.partition == partition:
                del self._released[channel]
                if channel not in channels:
                    gone.append(channel)
        return gone

    def keep(self, channels: Iterable[str]) -> None:
        """These channels are ours again, whatever partition they were released from."""
        for channel in channels:
            self._released.pop(channel, None)

    def on_report(self, report: InstanceReport) -> list[str]:
        """Another instance reported: released channels it now reads, joined, to part."""
        self._reports_seen += 1
        if report.instance_id == self._instance_id or not self._released:
            return []
        if report.not_joined is None and not report.ready:
            return []  # an older instance: all of its channels at once, or none
        has = set(report.channels).difference(report.releasing, report.not_joined or ())
        taken = [
            channel
            for channel, released in self._released.items()
            if released.reports_seen < self._reports_seen and channel in has
        ]
        for channel in taken:
            del self._released[channel]
        return taken

    def expired(self, now: float, timeout_s: float) -> list[str]:
        """Released channels nobody reported within `timeout_s`: part them anyway."""
        late = [c for c, r in self._released.items() if now - r.released_at >= timeout_s]
        for channel in late:
            del self._released[channel]
        return late
