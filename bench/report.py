"""Figures, targets, the machine they were measured on, and where results are written.

A figure is one number with its unit, the load average when it was taken and, where
the project has one, the target it is compared with. Every benchmark returns a list of
them; `__main__` prints them as one table and each benchmark's JSON keeps them with
the raw samples behind them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import load_average, machine_info

__all__ = [
    "RESULTS_DIR",
    "Figure",
    "Result",
    "Target",
    "at_least",
    "at_most",
    "exactly",
    "render_table",
    "write_result",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Target:
    """A project target: `text` for the table, `met(value)` to mark the figure."""

    text: str
    met: Callable[[float], bool]


def at_least(limit: float, text: str) -> Target:
    return Target(text, lambda value: value >= limit)


def at_most(limit: float, text: str) -> Target:
    return Target(text, lambda value: value <= limit)


def exactly(expected: float, text: str) -> Target:
    return Target(text, lambda value: value == expected)


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number, as printed in the table and stored in the JSON."""

    benchmark: str
    name: str
    value: float
    unit: str
    load: tuple[float, float, float]
    """Load average (1, 5, 15 min) when the figure was taken: >~1.5 on 2 cores = busy."""
    target: Target | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "ok" if self.target.met(self.value) else "MISS"

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "load_average": list(self.load),
            "target": self.target.text if self.target else None,
            "verdict": self.verdict or None,
            "note": self.note,
        }


@dataclass(slots=True)
class Result:
    """What one benchmark hands back: its figures and the raw data behind them."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        target: Target | None = None,
        note: str = "",
        load: tuple[float, float, float] | None = None,
    ) -> Figure:
        figure = Figure(
            self.name, name, value, unit, load or load_average(), target=target, note=note
        )
        self.figures.append(figure)
        return figure


def write_result(result: Result, command: str) -> Path:
    """`bench/results/<name>.json`: figures, raw details, machine, command, time."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result.name}.json"
    payload = {
        "benchmark": result.name,
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "figures": [figure.to_json() for figure in result.figures],
        "details": result.details,
    }
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    return str(value)


def _format_value(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(figures: Sequence[Figure]) -> str:
    """A plain-text table (also valid Markdown) of every figure."""
    header = ("benchmark", "figure", "value", "unit", "target", "", "load 1/5/15", "note")
    rows = [
        (
            f.benchmark,
            f.name,
            _format_value(f.value),
            f.unit,
            f.target.text if f.target else "",
            f.verdict,
            "/".join(f"{x:.2f}" for x in f.load),
            f.note,
        )
        for f in figures
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {2}

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
