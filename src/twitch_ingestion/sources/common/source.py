"""`Source`: what the service runs, whichever protocol reads Twitch.

The service holds one `Source` (`sources/irc/source.py` or
`sources/eventsub/service_source.py`, chosen by TWITCH_SOURCE) and asks it only what is
here: run and stop it, whether it is ready, which channels it reads (the fleet's
`ChannelReader` methods, so a fleet can move channels), what to log and to export
(readiness details, token expiry, parse counters), and — through the
`SourceStopped` its `run` raises — why it ended, which the service turns into an exit
code. It never asks which source it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twitch_ingestion.fleet.fence import ChannelFence

__all__ = ["SideTask", "Source", "SourceStopped"]


class SourceStopped(Exception):  # noqa: N818 - a reason to stop, raised by `Source.run`
    """A source's `run` ended for good for a reason the user can act on.

    `is_authentication`: the credentials were refused (exit 3); else reading cannot go
    on (exit 4). `details()` are the fields of the one error line the service logs, or
    None when the source already logged it.
    """

    @property
    def is_authentication(self) -> bool:
        return False

    def details(self) -> dict[str, object] | None:
        return {"error": str(self)}


@dataclass(frozen=True, slots=True)
class SideTask:
    """Work a source needs run beside `run` (the IRC token guard): its end ends the
    service, with `SourceStopped` like `run`, or else (a bug) with the one error line
    `crashed(**fields)` logs under the source's own event name."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    crashed: Callable[..., None]


class Source(Protocol):
    """One source of chat records: reads Twitch, hands records to the records stage."""

    @property
    def endpoint(self) -> tuple[str, bool]:
        """Where it reads (`host:port` or URL) and whether over TLS, for the start log."""

    async def run(self) -> None:
        """Read until `stop()`; raises `SourceStopped` when reading cannot go on."""

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop reading; returns once what was read went to the sink, or after `grace_s`
        (the service then cancels `run`)."""

    def side_tasks(self) -> Sequence[SideTask]:
        """What the service runs beside `run` (and cancels once stopped)."""

    def is_ready(self) -> bool:
        """Connected, with every channel it reads joined or known to have failed."""

    def lines_read(self) -> float:
        """What it read so far (IRC lines, EventSub notifications): the throughput log."""

    def readiness_details(self) -> dict[str, object]:
        """What /readyz adds about this source (EventSub: its subscriptions per channel)."""

    def token_expiry(self, now: float) -> tuple[float, bool] | None:
        """(seconds TWITCH_OAUTH_TOKEN has left at monotonic `now`, whether it can be
        refreshed), as Twitch's last validation said; None: no token, none validated
        yet, or one that does not expire."""

    def parse_stats(self) -> Mapping[str, float]:
        """Its parsers' data-quality counters by metric family name, read when /metrics
        is scraped (IRC: `twitch_ingestion_irc_*`); empty when it has none."""

    # --- the fleet's `ChannelReader` -----------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """Every wanted channel, in the order they were added."""

    @property
    def failed_channels(self) -> dict[str, str]:
        """Wanted channels not read → why (refused, unknown, revoked …)."""

    def joined_channels(self) -> frozenset[str]:
        """Wanted channels being read now."""

    def add_channels(self, channels: Iterable[str]) -> None:
        """Start reading more channels."""

    def remove_channels(self, channels: Iterable[str]) -> None:
        """Stop reading channels."""

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot for /readyz and the fleet's reports (no secrets)."""

    @property
    def fence(self) -> ChannelFence | None:
        """Per-channel hold/track/drop for the fleet's fenced hand-offs
        (`fleet/fence.py`), or None when the source cannot fence its channels."""
