"""The IRC `ChannelGate` in unit tests: what reaches the encoder behind it, numbered chat
lines to feed it, and a read that lets a started flush run."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from twitch_ingestion.sources.irc.channel_gate import ChannelGate
from twitch_ingestion.sources.irc.irc import IrcMessage, parse_line


class CollectedChat:
    """The encoder behind the gate: the text of every line that reached it, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def deliver(
        self, messages: Sequence[IrcMessage], received_at_ms: int, room_ids: Mapping[str, str]
    ) -> None:
        self.lines.extend(m.params[-1] for m in messages)

    def dead_letter(self, raw: bytes, reason: str, received_at_ms: int) -> None:
        raise AssertionError("no dead letters here")


def line(channel: str, number: int) -> IrcMessage:
    """PRIVMSG `<channel><number>` with id `<channel>-<number>` (its identity)."""
    return parse_line(
        f"@id={channel}-{number};tmi-sent-ts={number} :u!u@u.tmi.twitch.tv "
        f"PRIVMSG #{channel} :{channel}{number}"
    )


async def read(gate: ChannelGate, *lines: IrcMessage, at_ms: int = 0) -> None:
    """One chunk through the gate, then a few loop turns so that a flush runs."""
    await gate.deliver(list(lines), at_ms, {})
    for _ in range(3):
        await asyncio.sleep(0)
