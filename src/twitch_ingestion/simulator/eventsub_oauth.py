"""id.twitch.tv for the EventSub simulator: the tokens it issued, and
`GET /oauth2/validate` and `POST /oauth2/token` (refresh) answering about them.

Helix (`eventsub_helix.py`) asks `TokenStore` whether a bearer token is live; the
switches `issue_token` and `expire_token` reach it through `EventSubSimulator`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable

from aiohttp import web

from twitch_ingestion.simulator.eventsub_model import (
    CHAT_SCOPE,
    EventSubSimulatorConfig,
    EventSubStats,
    IssuedToken,
)
from twitch_ingestion.simulator.wire import user_id_for

__all__ = ["TokenStore"]


class TokenStore:
    """Every token issued (and refreshed) here, and the two OAuth endpoints."""

    def __init__(
        self, config: EventSubSimulatorConfig, stats: EventSubStats, changed: asyncio.Event
    ) -> None:
        self._config = config
        self._stats = stats
        self._changed = changed
        self._tokens: dict[str, IssuedToken] = {}
        self._token_order: dict[str, int] = {}
        self._refresh: dict[str, IssuedToken] = {}

    def issue(
        self,
        *,
        scopes: Iterable[str] = (CHAT_SCOPE,),
        client_id: str | None = None,
        lifetime_s: float | None = None,
        login: str | None = None,
        from_first_use: bool = False,
    ) -> IssuedToken:
        """See `EventSubSimulator.issue_token`."""
        login = login or self._config.bot_login
        lifetime = self._config.token_lifetime_s if lifetime_s is None else lifetime_s
        token = IssuedToken(
            access_token=secrets.token_hex(15),
            refresh_token=secrets.token_hex(25),
            client_id=client_id or self._config.client_id,
            user_id=user_id_for(login),
            login=login,
            scopes=tuple(scopes),
            expires_at=None if from_first_use else time.monotonic() + lifetime,
            lifetime_from_first_use_s=lifetime if from_first_use else None,
        )
        self._remember(token)
        return token

    def _remember(self, token: IssuedToken) -> None:
        self._tokens[token.access_token] = token
        self._token_order[token.access_token] = len(self._token_order)
        self._refresh[token.refresh_token] = token

    def index(self, access_token: str) -> int:
        """Position of `access_token` in issue order (refreshes included)."""
        return self._token_order[access_token]

    def expire(self, access_token: str) -> None:
        """`access_token` stops working now (validate and Helix answer 401)."""
        token = self._tokens.get(access_token)
        if token is not None:
            token.expires_at = time.monotonic() - 1

    def token_from(self, header: str, scheme: str) -> IssuedToken | None:
        """The live token of an `Authorization: <scheme> <token>` header, if any."""
        prefix = f"{scheme} "
        if not header.startswith(prefix):
            return None
        return self.live_token(header[len(prefix) :].strip())

    def live_token(self, access_token: str) -> IssuedToken | None:
        """The token, when issued here and not expired (its first use starts the clock of
        a `from_first_use` token)."""
        token = self._tokens.get(access_token)
        if token is None:
            return None
        now = time.monotonic()
        if token.lifetime_from_first_use_s is not None:
            token.expires_at = now + token.lifetime_from_first_use_s
            token.lifetime_from_first_use_s = None
        if token.expires_at is not None and now >= token.expires_at:
            return None
        return token

    async def validate(self, request: web.Request) -> web.Response:
        """`GET /oauth2/validate`."""
        self._stats.validate_calls += 1
        self._changed.set()
        header = request.headers.get("Authorization", "")
        token = self.token_from(header, "OAuth") or self.token_from(header, "Bearer")
        if token is None:
            return web.json_response({"status": 401, "message": "invalid access token"}, status=401)
        # Whole seconds, as Twitch, but never 0 for a token that expires: Twitch's 0 means
        # "does not expire", so a token in its last second would never be refreshed.
        expires_in = (
            0 if token.expires_at is None else max(1, int(token.expires_at - time.monotonic()))
        )
        return web.json_response(
            {
                "client_id": token.client_id,
                "login": token.login,
                "scopes": list(token.scopes),
                "user_id": token.user_id,
                "expires_in": expires_in,
            }
        )

    async def refresh(self, request: web.Request) -> web.Response:
        """`POST /oauth2/token` with `grant_type=refresh_token`."""
        self._stats.refresh_calls += 1
        self._changed.set()
        config = self._config
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return web.json_response({"status": 400, "message": "invalid grant type"}, status=400)
        if form.get("client_id") != config.client_id:
            return web.json_response({"status": 400, "message": "invalid client"}, status=400)
        secret = form.get("client_secret")
        # A public client has no secret to send; a confidential one must send its own.
        without_secret = config.public_client and secret is None
        if not without_secret and secret != config.client_secret:
            return web.json_response(
                {"status": 403, "message": "invalid client secret"}, status=403
            )
        old = self._refresh.pop(str(form.get("refresh_token", "")), None)
        if old is None:
            return web.json_response(
                {"status": 400, "message": "Invalid refresh token"}, status=400
            )
        self._tokens.pop(old.access_token, None)  # the old access token stops working
        new = IssuedToken(
            access_token=secrets.token_hex(15),
            refresh_token=secrets.token_hex(25),
            client_id=old.client_id,
            user_id=old.user_id,
            login=old.login,
            scopes=old.scopes,
            expires_at=time.monotonic() + config.token_lifetime_s,
        )
        self._remember(new)
        return web.json_response(
            {
                "access_token": new.access_token,
                "refresh_token": new.refresh_token,
                "expires_in": config.token_lifetime_s,
                "scope": list(new.scopes),
                "token_type": "bearer",
            }
        )
