"""The chat the simulator replays when it is given no file: generated, not captured.

`make demo`, `make simulate` and the test suite must work on a plain clone and in the
Docker image, where the shared real-capture corpus is not present. So the package makes
its own: a fixed-seed mix from `ChatGenerator` (emotes, emoji and other code points
outside the BMP, non-ASCII text, `/me`, replies, cheers, Shared Chat relays) with every
event kind of `EventGenerator` woven in at a steady rate. Same seed, same lines, on every
machine: tests may count on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.eventgen import EVENT_KINDS, EventGenerator
from twitch_ingestion.simulator.wire import room_id_for

__all__ = ["SAMPLE_CHANNELS", "SAMPLE_LINES", "SAMPLE_SEED", "sample_chat_lines"]

SAMPLE_SEED = 2024
# Long enough to show a realistic mix (every event kind several times), short enough
# for the demo's default 250 lines/s to finish in about 16 s.
SAMPLE_LINES = 4000
# Original channels of the sample; a replay rewrites them to whatever is joined.
SAMPLE_CHANNELS: tuple[str, ...] = ("samplechannel", "otherchannel")
# One event after every this many lines: ~5% of the mix, about the share of events in
# busy real channels.
_EVENT_EVERY = 20
# One PRIVMSG in this many is a Shared Chat relay from a partner channel.
_SHARED_CHAT_EVERY = 37
# 2024-06-01T00:00:00Z; lines are 150 ms apart (a replay normally sends fresh timestamps).
_START_TS_MS = 1_717_200_000_000
_SPACING_MS = 150


def sample_chat_lines(
    *,
    seed: int = SAMPLE_SEED,
    count: int = SAMPLE_LINES,
    channels: Sequence[str] = SAMPLE_CHANNELS,
) -> list[str]:
    """`count` raw server lines (no CRLF), round-robin over `channels`; deterministic."""
    chat = ChatGenerator(seed)
    events = EventGenerator(chat)
    partner_room_id = room_id_for("sharedpartner")
    lines: list[str] = []
    event_index = 0
    for n in range(count):
        channel = channels[n % len(channels)]
        room_id = room_id_for(channel)
        sent_ts = _START_TS_MS + n * _SPACING_MS
        if n % _EVENT_EVERY == _EVENT_EVERY - 1:
            kind = EVENT_KINDS[event_index % len(EVENT_KINDS)]
            event_index += 1
            lines.append(events.line(kind, channel, room_id, sent_ts))
        elif n % _SHARED_CHAT_EVERY == _SHARED_CHAT_EVERY - 1:
            lines.append(
                chat.privmsg(channel, room_id, sent_ts, shared_source_room_id=partner_room_id)
            )
        else:
            lines.append(chat.privmsg(channel, room_id, sent_ts))
    return lines
