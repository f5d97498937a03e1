"""One parser per Twitch server command, each turning an `IrcMessage` into a record.

Modules: `privmsg` (chat messages, the hot path), `usernotice` (subs, raids, …),
`clearchat` (bans, timeouts, clears), `clearmsg` (deletions), `roomstate`; `fields`
holds the tag conversions they share. Each raises `ContractViolation` for a line it
cannot turn into a valid record and counts repaired data in `ParseStats`.
"""

from __future__ import annotations

from twitch_ingestion.sources.irc.commands.errors import ContractViolation
from twitch_ingestion.sources.irc.commands.stats import DEFAULT_PARSE_STATS, ParseStats

__all__ = ["DEFAULT_PARSE_STATS", "ContractViolation", "ParseStats"]
