"""Per-channel flow: messages, events and dead letters per channel, and when each spoke.

Counted where a read chunk's records reach the sink (`ChannelFlowSink`, a `RecordSink`
put in front of it): a record's topic says its kind and its key is its channel, so the
count needs nothing from the source that built the records, and it moves with the one
line that wraps the sink (`service.py`).

Hot path: one `count` per read chunk, in two C-level passes and no Python per record:
every record counted by key, then the few that are not chat (4 % of a real chunk:
events, raw copies, dead letters) by (topic, key), picked out by the identity of their
topic object — the encoders put the one chat topic string in every chat record. Python
then touches only each distinct key of the chunk — a few dozen at most — and reads the
clock once. Counting (topic, key) pairs of every record instead measured twice the cost
(a tuple per record). No Prometheus call is made here: `snapshot` turns the tallies into
series when `/metrics` is scraped.

Cardinality: a Prometheus series costs memory in every Prometheus that scrapes it, and a
fleet may read 100,000 channels. At most `max_channels` channels (METRICS_CHANNELS_MAX)
get series of their own, in the order they are first wanted or seen; the rest are added
up under `channel="_other"` for the life of the process (so `_other` stays a true
counter), and dead letters whose channel cannot be told under `channel="_unknown"` (no
Twitch login starts with `_`). A channel no longer wanted gives its place up to a
channel seen later.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, repeat
from operator import is_not, itemgetter

from twitch_ingestion.records import Record, RecordSink, Topics

__all__ = ["OTHER_CHANNELS", "UNKNOWN_CHANNEL", "ChannelFlow", "ChannelFlowSink"]

OTHER_CHANNELS = "_other"
UNKNOWN_CHANNEL = "_unknown"
_KINDS = ("chat", "events", "raw", "dlq")
_TOPIC = itemgetter(0)
_KEY = itemgetter(1)
_TOPIC_AND_KEY = itemgetter(0, 1)
# Where a dead letter without a key names its channel: an IRC line's `#channel`
# parameter, or an EventSub notification's broadcaster. Dead letters are rare, so a
# regex per dead letter costs nothing that matters.
_IRC_CHANNEL = re.compile(rb" #([A-Za-z0-9_]{1,64})(?:[ \r\n]|$)")
_EVENTSUB_CHANNEL = re.compile(rb'"broadcaster_user_login"\s*:\s*"([A-Za-z0-9_]{1,64})"')


class _Tally:
    """One channel's (or `_other`'s) running totals."""

    __slots__ = ("dead_letters", "events", "last_record_s", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.events = 0
        self.dead_letters = 0
        self.last_record_s = 0.0


class ChannelFlow:
    """Running totals per channel, fed one read chunk at a time (`count`)."""

    def __init__(
        self,
        topics: Topics,
        *,
        max_channels: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`topics`: the records stage's topic list (the builder's, so that the chat
        topic is the very string object in every chat record)."""
        self._chat_topic = topics.chat
        self._kind_by_topic = topics.kinds
        self._max_channels = max_channels
        self._clock = clock
        # Key bytes → its tally; a channel past the cap maps to the shared `_other` one.
        self._tallies: dict[bytes, _Tally] = {}
        self._own = 0
        self._other = _Tally()
        self._over_limit = 0
        self._unknown = _Tally()
        self._built = dict.fromkeys(_KINDS, 0)
        self._wanted: Callable[[], Iterable[str]] | None = None
        self._joined: Callable[[], frozenset[str]] = frozenset

    def watch_source(
        self, wanted: Callable[[], Iterable[str]], joined: Callable[[], frozenset[str]]
    ) -> None:
        """Where `snapshot` reads the wanted channels and those joined (the source's)."""
        self._wanted = wanted
        self._joined = joined

    # --- hot path ---------------------------------------------------------------------

    def count(self, records: Sequence[Record]) -> None:
        """Count one read chunk's records; `deliver` calls it before the sink takes them."""
        # Records per key, then the records that are not chat by (topic, key): what
        # is left of a key's count is its chat messages.
        chat_left = Counter(map(_KEY, records))
        others = Counter(
            map(
                _TOPIC_AND_KEY,
                compress(records, map(is_not, map(_TOPIC, records), repeat(self._chat_topic))),
            )
        )
        now = self._clock()
        kind_by_topic = self._kind_by_topic
        built = self._built
        for (topic, key), number in others.items():
            chat_left[key] -= number
            kind = kind_by_topic.get(topic)
            if kind is None or kind == "raw":
                if kind == "raw":
                    built["raw"] += number  # a copy of a line counted as its message or event
                continue
            if key is None:
                built[kind] += number
                if kind == "dlq":
                    self._count_unkeyed_dead_letters(records, topic)
                continue
            self._add(key, kind, number, now)
        for key, number in chat_left.items():
            if number > 0 and key is not None:
                self._add(key, "chat", number, now)

    def _add(self, key: bytes, kind: str, number: int, now: float) -> None:
        self._built[kind] += number
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._admit(key)
        if kind == "chat":
            tally.messages += number
            tally.last_record_s = now
        elif kind == "events":
            tally.events += number
            tally.last_record_s = now
        else:
            tally.dead_letters += number

    def _count_unkeyed_dead_letters(self, records: Sequence[Record], dlq_topic: str) -> None:
        """Dead letters carry the exact bytes and no key: find their channel in them."""
        for topic, key, value, _, _ in records:
            if key is not None or topic != dlq_topic:
                continue
            channel = _channel_in(value)
            if channel is None:
                self._unknown.dead_letters += 1
                continue
            tally = self._tallies.get(channel)
            if tally is None:
                tally = self._admit(channel)
            tally.dead_letters += 1

    def _admit(self, key: bytes) -> _Tally:
        """A tally for a channel seen for the first time: its own, or `_other`'s."""
        if self._own < self._max_channels:
            tally = _Tally()
            self._own += 1
        else:
            tally = self._other
            self._over_limit += 1
        self._tallies[key] = tally
        return tally

    # --- scrape time ------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """The `CHANNEL_FLOW` families of `metrics.py`, as of now."""
        tallies = self._tallies
        wanted: list[str] = []
        if self._wanted is not None:
            wanted = list(dict.fromkeys(self._wanted()))
            wanted_keys: set[bytes] = set()
            for channel in wanted:
                key = channel.encode()
                wanted_keys.add(key)
                if key not in tallies:
                    self._admit(key)  # its series exist (at 0) from the first scrape on
            other = self._other
            for key in [k for k, t in tallies.items() if k not in wanted_keys and t is not other]:
                # No longer wanted (parted, moved to another instance): its place goes
                # to a channel seen later.
                del tallies[key]
                self._own -= 1
        joined = self._joined()
        messages: dict[tuple[str, ...], float] = {}
        events: dict[tuple[str, ...], float] = {}
        dead_letters: dict[tuple[str, ...], float] = {}
        last: dict[tuple[str, ...], float] = {}
        joined_state: dict[tuple[str, ...], float] = {}
        for key, tally in tallies.items():
            if tally is self._other:
                continue
            label = (key.decode(errors="replace"),)
            messages[label] = tally.messages
            events[label] = tally.events
            dead_letters[label] = tally.dead_letters
            if tally.last_record_s:
                last[label] = tally.last_record_s
            joined_state[label] = 1.0 if label[0] in joined else 0.0
        if self._over_limit:
            folded = (OTHER_CHANNELS,)
            messages[folded] = self._other.messages
            events[folded] = self._other.events
            dead_letters[folded] = self._other.dead_letters
        if self._unknown.dead_letters:
            dead_letters[(UNKNOWN_CHANNEL,)] = self._unknown.dead_letters
        return {
            "twitch_ingestion_records_built": {(kind,): n for kind, n in self._built.items()},
            "twitch_ingestion_channel_messages": messages,
            "twitch_ingestion_channel_events": events,
            "twitch_ingestion_channel_dead_letters": dead_letters,
            "twitch_ingestion_channel_last_record_timestamp_seconds": last,
            "twitch_ingestion_channel_joined": joined_state,
            "twitch_ingestion_channels_wanted": len(wanted),
            "twitch_ingestion_channels_over_metrics_limit": self._over_limit,
        }


def _channel_in(value: bytes) -> bytes | None:
    match = _IRC_CHANNEL.search(value, 0, 4096) or _EVENTSUB_CHANNEL.search(value)
    return match.group(1).lower() if match is not None else None


class ChannelFlowSink:
    """A `RecordSink` that counts each chunk in a `ChannelFlow`, then hands it on."""

    def __init__(self, sink: RecordSink, flow: ChannelFlow) -> None:
        self._sink = sink
        self._count = flow.count

    async def deliver(self, records: list[Record]) -> None:
        self._count(records)
        await self._sink.deliver(records)

    def deliver_nowait(self, record: Record) -> None:
        self._count((record,))
        self._sink.deliver_nowait(record)
