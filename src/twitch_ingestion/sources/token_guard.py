"""The IRC source's token, kept valid beside it: validated at start-up and hourly,
refreshed before it expires when a refresh token is configured, and a definite "no"
from Twitch ends the service (exit 3).

The decisions are the EventSub source's (`sources/eventsub/tokens.py` decides,
`auth.TokenKeeper` carries out); only the scope differs (`chat:read`), and the client id
is checked only when TWITCH_CLIENT_ID is set (IRC does not need one).

Why the IRC login stays the arbiter when `/validate` cannot be reached: reading chat over
IRC needs nothing but the IRC server, and a network that lets IRC through but not
`id.twitch.tv` (or a local IRC simulator with no OAuth endpoint) must not stop the
service. Such a failure is transient for the token core: it is logged as a warning and
retried, and the login's own verdict ("Login authentication failed" → exit 3) decides.
An explicit answer — 401 invalid, a missing scope, another app's token, an expiry that
cannot be refreshed — ends the service with one line naming the variable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from pydantic import SecretStr

from twitch_ingestion.sources.common.source import SourceStopped
from twitch_ingestion.sources.eventsub.auth import TokenKeeper, aiohttp_sender
from twitch_ingestion.sources.eventsub.tokens import (
    IRC_SCOPE,
    REFRESH_RETRY_S,
    TokenError,
)

__all__ = ["TokenGuard", "TokenGuardConfig", "TokenRejected"]

"""As in the EventSub client: no HTTP answer at all is a transient 5xx for the core."""


class TokenRejected(SourceStopped):
    """Twitch said the token cannot be used; the message is one line, token-free."""

    def __init__(self, error: TokenError) -> None:
        super().__init__(error.message)
        self.error = error

    @property
    def is_authentication(self) -> bool:
        return True

    def details(self) -> dict[str, object]:
        return {"variable": self.error.variable, "error": str(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenGuardConfig:
    """What the guard needs: the token and how to refresh it (TWITCH_OAUTH_TOKEN,
    TWITCH_CLIENT_ID/_SECRET/_TYPE, TWITCH_REFRESH_TOKEN, TWITCH_AUTH_URL,
    TWITCH_TOKEN_VALIDATE_INTERVAL_S, TWITCH_TOKEN_REFRESH_MARGIN_S, and
    TWITCH_CONNECT_TIMEOUT_S for each HTTP call)."""

    access_token: SecretStr
    client_id: str
    client_secret: SecretStr | None
    refresh_token: SecretStr | None
    public_client: bool
    auth_url: str
    validate_interval_s: float
    refresh_margin_s: float
    http_timeout_s: float


class TokenGuard:
    """Validates (and refreshes) TWITCH_OAUTH_TOKEN for the IRC source until it cannot."""

    def __init__(
        self, config: TokenGuardConfig, on_refreshed: Callable[[SecretStr], None] | None = None
    ) -> None:
        self._config = config
        self._on_refreshed = on_refreshed
        self.keeper: TokenKeeper | None = None
        self.first_check_over = asyncio.Event()
        """Set once the token is known good (refreshed first if it was dead), or its
        check could not reach Twitch and is being retried: logging in before that would
        present a dead token that a refresh was about to replace — and Twitch's refusal
        of the login ends the service (exit 3). Never set if the token is refused: the
        guard's `TokenRejected` ends the service instead."""

    async def run(self) -> None:
        """Returns never; raises `TokenRejected` when the token cannot be used."""
        config = self._config
        secret, refresh = config.client_secret, config.refresh_token
        timeout = aiohttp.ClientTimeout(total=config.http_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self.keeper = keeper = TokenKeeper(
                aiohttp_sender(http),
                auth_url=config.auth_url,
                client_id=config.client_id,
                access_token=config.access_token.get_secret_value(),
                client_secret="" if secret is None else secret.get_secret_value(),
                refresh_token="" if refresh is None else refresh.get_secret_value(),
                public_client=config.public_client,
                required_scope=IRC_SCOPE,
                validate_interval_s=config.validate_interval_s,
                refresh_margin_s=config.refresh_margin_s,
                # Unreachable /validate is retried this often, with a warning each time:
                # half the refresh margin leaves a second try before the token expires.
                refresh_retry_s=max(REFRESH_RETRY_S, config.refresh_margin_s / 2),
                on_refreshed=self._refreshed,
            )
            started = await keeper.start(on_retrying=self.first_check_over.set)
            if isinstance(started, TokenError):
                raise TokenRejected(started)
            self.first_check_over.set()
            raise TokenRejected(await keeper.run())

    def _refreshed(self, access_token: str) -> None:
        if self._on_refreshed is not None:
            # IRC's PASS wants the `oauth:` form.
            self._on_refreshed(SecretStr(f"oauth:{access_token}"))
