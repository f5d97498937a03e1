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

import aiohttp
from pydantic import SecretStr

from twitch_ingestion.config import ClientType, Settings
from twitch_ingestion.sources.common.source import SourceStopped
from twitch_ingestion.sources.eventsub.auth import TokenKeeper, aiohttp_sender
from twitch_ingestion.sources.eventsub.tokens import (
    IRC_SCOPE,
    REFRESH_RETRY_S,
    TokenError,
)

__all__ = ["TokenGuard", "TokenRejected"]

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


class TokenGuard:
    """Validates (and refreshes) TWITCH_OAUTH_TOKEN for the IRC source until it cannot."""

    def __init__(
        self, settings: Settings, on_refreshed: Callable[[SecretStr], None] | None = None
    ) -> None:
        if settings.twitch_oauth_token is None:
            raise ValueError("TokenGuard needs TWITCH_OAUTH_TOKEN")
        self._settings = settings
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
        settings = self._settings
        token = settings.twitch_oauth_token
        secret, refresh = settings.twitch_client_secret, settings.twitch_refresh_token
        assert token is not None
        timeout = aiohttp.ClientTimeout(total=settings.twitch_connect_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self.keeper = keeper = TokenKeeper(
                aiohttp_sender(http),
                auth_url=settings.twitch_auth_url,
                client_id=settings.twitch_client_id or "",
                access_token=token.get_secret_value(),
                client_secret="" if secret is None else secret.get_secret_value(),
                refresh_token="" if refresh is None else refresh.get_secret_value(),
                public_client=settings.twitch_client_type is ClientType.PUBLIC,
                required_scope=IRC_SCOPE,
                validate_interval_s=settings.twitch_token_validate_interval_s,
                refresh_margin_s=settings.twitch_token_refresh_margin_s,
                # Unreachable /validate is retried this often, with a warning each time:
                # half the refresh margin leaves a second try before the token expires.
                refresh_retry_s=max(REFRESH_RETRY_S, settings.twitch_token_refresh_margin_s / 2),
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
