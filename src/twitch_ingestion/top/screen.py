"""`top`'s screen, drawn with rich from the figures of `model.py` (pure: no I/O)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from twitch_ingestion.top.model import ChannelRow, InstanceRates, channel_rows

__all__ = ["FleetPanel", "Screen", "TargetState", "render"]


@dataclass(frozen=True, slots=True)
class TargetState:
    """One scraped instance: its rates, or why it could not be read."""

    name: str
    url: str
    rates: InstanceRates | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class FleetPanel:
    """What the fleet's reports say (`--fleet`): instance → channels, and the unread."""

    instances: Sequence[tuple[str, bool, int, bool | None, float | None]] = ()
    """(instance id, in the group, channels it reads, ready, report age in s)."""
    unassigned: Sequence[str] = ()
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Screen:
    targets: Sequence[TargetState]
    interval_s: float
    quiet_after_s: float
    fleet: FleetPanel | None = None
    owners: Mapping[str, str] = field(default_factory=dict)
    """channel → instance id, from the fleet's reports."""


def render(screen: Screen, *, height: int = 50, now: float | None = None) -> RenderableType:
    now = time.time() if now is None else now
    header = Text.assemble(
        ("twitch-ingestion top", "bold"),
        f"  {time.strftime('%H:%M:%S', time.localtime(now))}",
        f"  every {screen.interval_s:g} s",
        f"  quiet = silent ≥ {screen.quiet_after_s:g} s while others talk",
        ("  q quits", "dim"),
    )
    parts: list[RenderableType] = [header, _instances(screen.targets)]
    for target in screen.targets:
        if target.problem is not None:
            parts.append(
                Text(
                    f"{target.name}: cannot read {target.url}: {target.problem}; "
                    f"trying again every {screen.interval_s:g} s",
                    style="bold red",
                )
            )
    if screen.fleet is not None:
        parts.append(_fleet(screen.fleet))
    rows = channel_rows(t.rates for t in screen.targets if t.rates is not None)
    used = 6 + len(screen.targets) + (len(screen.fleet.instances) + 4 if screen.fleet else 0)
    parts.append(_channels(rows, screen.owners, max(3, height - used - 4)))
    return Group(*parts)


def _instances(targets: Sequence[TargetState]) -> Table:
    table = Table(title=None, expand=False, header_style="bold", box=None, pad_edge=False)
    for column, justify in (
        ("instance", "left"),
        ("in msg/s", "right"),
        ("acked/s", "right"),
        ("buffer", "right"),
        ("oldest unacked", "right"),
        ("kafka p50 / p99", "right"),
        ("kafka", "left"),
        ("twitch", "left"),
        ("reconnects", "right"),
        ("dead letters", "right"),
        ("hot path", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for target in targets:
        rates = target.rates
        if rates is None:
            table.add_row(target.name, *(["-"] * 9), Text("unreachable", style="red"))
            continue
        scrape = rates.scrape
        buffer = f"{scrape.buffer_records:,.0f} rec"
        if scrape.buffer_max_bytes:
            buffer += f" {100 * scrape.buffer_bytes / scrape.buffer_max_bytes:.0f}%"
        table.add_row(
            target.name,
            f"{rates.in_per_s:,.1f}",
            f"{rates.acked_per_s:,.1f}",
            buffer,
            Text(
                f"{scrape.oldest_unacked_s:.1f} s",
                style="red" if scrape.oldest_unacked_s >= 30 else "",
            ),
            f"{_ms(rates.latency_p50_s)} / {_ms(rates.latency_p99_s)}",
            Text("up", style="green") if scrape.kafka_reachable else Text("DOWN", style="red"),
            Text("ready", style="green")
            if scrape.twitch_ready
            else Text("NOT READY", style="yellow"),
            f"{scrape.reconnects:,.0f}",
            Text(f"{scrape.dead_letters:,.0f}", style="red" if scrape.dead_letters else ""),
            scrape.hot_path or "-",
        )
    return table


def _fleet(panel: FleetPanel) -> RenderableType:
    if panel.problem is not None:
        return Text(f"fleet: {panel.problem}; trying again", style="bold red")
    table = Table(header_style="bold", box=None, pad_edge=False, title_justify="left")
    for column in ("fleet instance", "in group", "channels", "ready", "report age"):
        table.add_column(column)
    for instance_id, in_group, channels, ready, age in panel.instances:
        table.add_row(
            instance_id,
            "yes" if in_group else Text("NO", style="red"),
            str(channels),
            "-" if ready is None else ("yes" if ready else Text("no", style="yellow")),
            "-" if age is None else f"{age:.0f} s",
        )
    parts: list[RenderableType] = [table]
    if panel.unassigned:
        shown = ", ".join(panel.unassigned[:10])
        more = len(panel.unassigned) - 10
        parts.append(
            Text(
                f"read by nobody: {len(panel.unassigned)} channels ({shown}"
                f"{f', … {more} more' if more > 0 else ''})",
                style="bold red",
            )
        )
    return Group(*parts)


def _channels(rows: list[ChannelRow], owners: Mapping[str, str], limit: int) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column, justify in (
        ("channel", "left"),
        ("instance", "left"),
        ("msg/s", "right"),
        ("events/s", "right"),
        ("dead letters", "right"),
        ("quiet for", "right"),
        ("joined", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows[:limit]:
        style = "bold yellow" if row.quiet else ""
        quiet = "never spoke" if row.quiet_s is None else f"{row.quiet_s:.0f} s"
        table.add_row(
            Text(row.channel + (" QUIET" if row.quiet else ""), style=style),
            owners.get(row.channel, row.instance),
            f"{row.messages_per_s:,.1f}",
            f"{row.events_per_s:,.1f}",
            Text(f"{row.dead_letters:,.0f}", style="red" if row.dead_letters else ""),
            Text(quiet, style=style),
            "-" if row.joined is None else ("yes" if row.joined else Text("NO", style="red")),
        )
    if len(rows) > limit:
        table.add_row(f"… {len(rows) - limit} more channels", "", "", "", "", "", "")
    return table


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"
