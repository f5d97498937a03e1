"""The token loop: validate at start-up and hourly, refresh before expiry or on a 401.

A thin asyncio shell around `tokens` (which decides) and an `HttpSender` (which talks):
`TokenKeeper` holds the current access/refresh pair in memory only, and hands out the
access token to whoever builds a Helix request or opens a socket. Token values are never
logged, and every failure is a `TokenError` whose message names the setting to fix.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import structlog

from twitch_ingestion.sources.eventsub.http_messages import (
    HttpRequest,
    HttpResponse,
    strip_oauth_prefix,
)
from twitch_ingestion.sources.eventsub.tokens import (
    EVENTSUB_SCOPE,
    NETWORK_ERROR_STATUS,
    REFRESH_MARGIN_S,
    REFRESH_RETRY_S,
    VALIDATE_INTERVAL_S,
    RefreshedToken,
    TokenAction,
    TokenError,
    TokenSchedule,
    ValidToken,
    interpret_refresh,
    interpret_validation,
    refresh_request,
    validate_request,
)

__all__ = ["HttpSender", "TokenKeeper", "aiohttp_sender", "send_http"]

log = structlog.get_logger(__name__)

HttpSender = Callable[[HttpRequest], Awaitable[HttpResponse]]
"""Sends one request and returns the answer; network failures come back as a synthetic
5xx answer (transient), never as an exception carrying the request."""


async def send_http(http: aiohttp.ClientSession, request: HttpRequest) -> HttpResponse:
    """Send one request on `http`; a network failure becomes a synthetic 599 answer
    (`tokens.NETWORK_ERROR_STATUS`), which the sans-I/O core treats as transient."""
    try:
        async with http.request(
            request.method, request.url, headers=request.headers, data=request.body
        ) as response:
            return HttpResponse(response.status, await response.read(), dict(response.headers))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # The exception's text may quote the URL but never a header or body.
        detail = msgspec.json.encode({"message": f"network error: {type(exc).__name__}"})
        return HttpResponse(NETWORK_ERROR_STATUS, detail)


def aiohttp_sender(http: aiohttp.ClientSession) -> HttpSender:
    """An `HttpSender` on `http` (see `send_http`)."""
    return functools.partial(send_http, http)


class TokenKeeper:
    """The current user token and its refresh: `start`, then `run` beside the source."""

    def __init__(
        self,
        send: HttpSender,
        *,
        auth_url: str,
        client_id: str,
        access_token: str,
        client_secret: str = "",
        refresh_token: str = "",
        public_client: bool = False,
        required_scope: str = EVENTSUB_SCOPE,
        validate_interval_s: float = VALIDATE_INTERVAL_S,
        refresh_margin_s: float = REFRESH_MARGIN_S,
        refresh_retry_s: float = REFRESH_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
        on_refreshed: Callable[[str], None] | None = None,
    ) -> None:
        """`on_refreshed(access_token)` is told each new token (the IRC source uses it for
        the connections it opens next; EventSub reads `access_token` per request).

        A refresh needs `refresh_token` and `client_secret`, or only the refresh token
        for a `public_client` (Twitch issues public clients no secret)."""
        self._send = send
        self._on_refreshed = on_refreshed
        self._auth_url = auth_url
        self._client_id = client_id
        self._access = strip_oauth_prefix(access_token)
        self._secret = client_secret
        self._refresh = refresh_token
        self._scope = required_scope
        self._clock = clock
        self.schedule = TokenSchedule(
            can_refresh=bool(refresh_token and (client_secret or public_client)),
            validate_interval_s=validate_interval_s,
            refresh_margin_s=refresh_margin_s,
            refresh_retry_s=refresh_retry_s,
        )
        self.valid: ValidToken | None = None
        self.refreshes = 0
        self.validations = 0
        self._lock = asyncio.Lock()
        self._rescheduled = asyncio.Event()

    def __repr__(self) -> str:
        return f"TokenKeeper(<redacted>, refreshes={self.refreshes})"

    @property
    def access_token(self) -> str:
        """The token to put in the next request (it changes after a refresh)."""
        return self._access

    def expiry(self, now: float) -> tuple[float, bool] | None:
        """(seconds the token has left at monotonic `now`, whether it can be refreshed)
        for the token-expiry metric; None when it does not expire or is not validated."""
        remaining = self.schedule.remaining_s(now)
        return None if remaining is None else (remaining, self.schedule.can_refresh)

    @property
    def user_id(self) -> str:
        if self.valid is None:
            raise RuntimeError("the token has not been validated yet")
        return self.valid.user_id

    async def start(self, on_retrying: Callable[[], None] | None = None) -> ValidToken | TokenError:
        """Validate (refreshing first if the token is dead and can be refreshed).

        `on_retrying` is called each time the answer is still open and a retry is
        scheduled (the endpoint could not be reached): the token is neither known good
        nor refused, and a caller may go on with it meanwhile."""
        while True:
            now = self._clock()
            due = self.schedule.due(now)
            if not due:
                if self.valid is not None:
                    return self.valid
                if on_retrying is not None:
                    on_retrying()
                deadline = self.schedule.next_deadline()
                await asyncio.sleep(0 if deadline is None else max(0.0, deadline - now))
                continue
            for action in due:
                error = await self._act(action)
                if error is not None:
                    return error

    async def run(self) -> TokenError:
        """Keep the token valid until that becomes impossible; returns why."""
        while True:
            deadline = self.schedule.next_deadline()
            self._rescheduled.clear()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                async with asyncio.timeout(timeout):
                    await self._rescheduled.wait()
            except TimeoutError:
                pass
            for action in self.schedule.due(self._clock()):
                error = await self._act(action)
                if error is not None:
                    return error

    async def validate_now(self) -> TokenError | None:
        """Validate at once (a revocation said the authorisation may be gone): None when
        the token is still good (or a refresh was scheduled for it), else why not."""
        error = await self._act(TokenAction.VALIDATE)
        self._rescheduled.set()
        return error

    async def unauthorized(self, token_used: str) -> TokenError | None:
        """A Helix call with `token_used` got 401: refresh (once for concurrent callers)."""
        async with self._lock:
            if token_used != self._access:
                return None  # another caller refreshed already: just retry
            decision = self.schedule.unauthorized(self._clock())
            if isinstance(decision, TokenError):
                return decision
        error = await self._act(TokenAction.REFRESH)
        self._rescheduled.set()
        return error

    async def _act(self, action: TokenAction) -> TokenError | None:
        async with self._lock:
            if action is TokenAction.EXPIRED:
                return self.schedule.expired_error()
            if action is TokenAction.VALIDATE:
                return await self._validate()
            return await self._refresh_now()

    async def _validate(self) -> TokenError | None:
        response = await self._send(validate_request(self._auth_url, self._access))
        now = self._clock()
        self.validations += 1
        result = interpret_validation(
            response,
            client_id=self._client_id,
            required_scope=self._scope,
            now=now,
            auth_url=self._auth_url,
        )
        if isinstance(result, ValidToken):
            self.valid = result
            self.schedule.validated(result)
            log.info("twitch token valid", status=self.schedule.describe_remaining(now))
            return None
        decision = self.schedule.validation_failed(result, now)
        if isinstance(decision, TokenError):
            return decision
        log.warning("twitch token validate failed", reason=result.reason, detail=result.message)
        return None

    async def _refresh_now(self) -> TokenError | None:
        if not self.schedule.can_refresh:
            return self.schedule.expired_error()
        response = await self._send(
            refresh_request(
                self._auth_url,
                client_id=self._client_id,
                client_secret=self._secret,
                refresh_token=self._refresh,
            )
        )
        now = self._clock()
        result = interpret_refresh(response, self._auth_url)
        if isinstance(result, RefreshedToken):
            self._access = result.access_token
            if result.refresh_token:
                self._refresh = result.refresh_token
            self.schedule.refreshed(result, now)
            self.refreshes += 1
            if self._on_refreshed is not None:
                self._on_refreshed(result.access_token)
            log.info("twitch token refreshed", status=self.schedule.describe_remaining(now))
            return None
        error = self.schedule.refresh_failed(result, now)
        if error is None:
            log.warning("twitch token refresh failed", reason=result.reason, detail=result.message)
        return error
