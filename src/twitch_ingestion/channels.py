"""The one definition of a Twitch channel login, and how user input becomes one.

Channels reach the service from TWITCH_CHANNEL, the fleet CLI, the fleet's control topic
and `TwitchSource.add_channels`; all of them must agree on what a channel is, or a name
one path accepts would be refused (or, worse, mean another channel) on the next.

A channel name *is* its broadcaster's login: 1-25 ASCII letters, digits or underscores
(older accounts may be shorter than 4), compared lower case. IRC writes it with a
leading `#`, which users often copy, so one `#` is accepted and dropped. Anything else
is refused rather than repaired: a comma or space inside a "channel" would split a
`JOIN #a,#b` line into something nobody asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "LOGIN_RULE",
    "ChannelLoginError",
    "InvalidLogin",
    "normalise_login",
    "normalise_logins",
]

_LOGIN = re.compile(r"[a-z0-9_]{1,25}")
_MAX_LOGIN_CHARS = 25

LOGIN_RULE = "1-25 letters, digits or underscores, optionally prefixed with #"
"""What a valid channel login looks like, in words, for error messages."""


@dataclass(frozen=True, slots=True)
class InvalidLogin:
    """`given` is not a channel login; `reason` says what is wrong with it."""

    given: str
    reason: str

    def __str__(self) -> str:
        return f"{self.given!r}: {self.reason}"


class ChannelLoginError(ValueError):
    """Some of the channels given are not Twitch channel logins (`invalid` says which)."""

    def __init__(self, invalid: list[InvalidLogin]) -> None:
        self.invalid = tuple(invalid)
        shown = "; ".join(str(item) for item in invalid[:5])
        more = f" (and {len(invalid) - 5} more)" if len(invalid) > 5 else ""
        super().__init__(f"not Twitch channel logins ({LOGIN_RULE}): {shown}{more}")


def normalise_login(value: str) -> str | InvalidLogin:
    """`value` as a channel login (trimmed, one leading `#` dropped, lower case), or why not."""
    login = value.strip().removeprefix("#").lower()
    if _LOGIN.fullmatch(login):
        return login
    if not login:
        return InvalidLogin(value, "empty")
    if len(login) > _MAX_LOGIN_CHARS:
        return InvalidLogin(value, f"{len(login)} characters, at most {_MAX_LOGIN_CHARS}")
    bad = sorted({c for c in login if not (c.isascii() and (c.isalnum() or c == "_"))})
    return InvalidLogin(value, f"contains {''.join(bad)!r}")


def normalise_logins(values: Iterable[str]) -> list[str]:
    """Channel logins from `values`, in order, without duplicates; blank entries skipped.

    Raises `ChannelLoginError` (a `ValueError`) naming every entry that is not a login.
    """
    logins: dict[str, None] = {}
    invalid: list[InvalidLogin] = []
    for value in values:
        if not value.strip():
            continue
        login = normalise_login(value)
        if isinstance(login, InvalidLogin):
            invalid.append(login)
        else:
            logins[login] = None
    if invalid:
        raise ChannelLoginError(invalid)
    return list(logins)
