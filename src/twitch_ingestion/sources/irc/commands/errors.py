"""The one error a command parser raises: a well-formed IRC line that breaks the contract."""

from __future__ import annotations

__all__ = ["ContractViolation"]


class ContractViolation(ValueError):  # noqa: N818 - the name the service and docs use
    """An IRC line that parsed but cannot become a valid Kafka record.

    `reason` is a short kebab-case cause (`privmsg-without-channel`, …) meant to be a
    metric label, so it never contains user data; `line` is the offending raw line for a
    log or dead-letter record.
    """

    def __init__(self, reason: str, line: str = "") -> None:
        super().__init__(f"{reason}: {line[:200]!r}" if line else reason)
        self.reason = reason
        self.line = line
