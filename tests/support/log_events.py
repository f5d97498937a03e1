"""Picking events out of a service's JSON log lines."""

from __future__ import annotations

from typing import Any, Protocol


class LogsEvents(Protocol):
    """Anything whose log lines can be read back as dicts (`ServiceProcess`)."""

    def log_events(self) -> list[dict[str, Any]]: ...


def events(service: LogsEvents, name: str) -> list[dict[str, Any]]:
    """Every log line whose `event` is `name`, oldest first."""
    return [e for e in service.log_events() if e.get("event") == name]
