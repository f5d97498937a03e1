"""The one error a command parser raises: a well-formed IRC line that breaks the contract."""

from __future__ import annotations

from twitch_ingestion.records.events import Unpublishable

__all__ = ["ContractViolation"]


class ContractViolation(Unpublishable):
    """An IRC line that parsed but cannot become a valid Kafka record.

    `reason` is a short kebab-case cause (`privmsg-without-channel`, …) meant to be a
    metric label, so it never contains user data; `line` is the offending raw line for a
    log or dead-letter record.
    """

    def __init__(self, reason: str, line: str = "") -> None:
        super().__init__(reason, f"{reason}: {line[:200]!r}" if line else reason)
        self.line = line
