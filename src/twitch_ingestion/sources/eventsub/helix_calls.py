"""Helix calls as the EventSub client makes them: with the current token, inside the rate
limit, a 401 refreshing the token and the bucket's 429s waited out.

`helix` decides what a request is and what its answer means; `HelixCalls` only sends,
waits and retries the few answers that a retry here fixes (any other goes back to the
caller, whose schedule — the reconciler's — decides). One per `EventSubClient.run`,
shared by every connection, so that all of them spend one rate-limit bucket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from twitch_ingestion.sources.eventsub.auth import HttpSender, TokenKeeper
from twitch_ingestion.sources.eventsub.helix import (
    ExistingSubscription,
    HelixRefusal,
    RateLimiter,
    SubscriptionPage,
    interpret_subscription_list,
    list_subscriptions_request,
)
from twitch_ingestion.sources.eventsub.http_messages import HttpRequest, HttpResponse
from twitch_ingestion.sources.eventsub.output import EventSubClientStats, SourceFailure
from twitch_ingestion.sources.eventsub.tokens import NETWORK_ERROR_STATUS

__all__ = ["HelixCalls"]

log = structlog.get_logger(__name__)

_HELIX_ATTEMPTS = 5
"""Tries per Helix call across 401 refreshes and 429s of the bucket; any other failure
goes back to the caller, whose retry schedule (the reconciler's) decides."""
_BUCKET_MAX_WAIT_S = 60.0
"""Helix refills its bucket within a minute; a later `Ratelimit-Reset` is clock skew."""
_MAX_LIST_PAGES = 100
"""Get EventSub Subscriptions pages read at most (100 each): far above what 3
connections of 300 hold, and a bound if a server kept answering with a cursor."""


class HelixCalls:
    """Sends Helix requests for one client id and user, with `keeper`'s token."""

    def __init__(
        self,
        send: HttpSender,
        keeper: TokenKeeper,
        limiter: RateLimiter,
        stats: EventSubClientStats,
        *,
        api_url: str,
        client_id: str,
        wall_clock: Callable[[], float],
    ) -> None:
        self._send = send
        self.keeper = keeper
        self._limiter = limiter
        self._stats = stats
        self._api_url = api_url
        self._client_id = client_id
        self._wall = wall_clock

    async def helix(self, request: HttpRequest) -> HttpResponse | SourceFailure:
        """A Helix call with the current token: waits for the rate limit, refreshes the
        token on a 401 and waits out the bucket's 429s, a few times; any other answer
        (5xx, no answer at all) goes back to the caller, whose schedule retries it."""
        keeper = self.keeper
        response = HttpResponse(NETWORK_ERROR_STATUS)
        for _ in range(_HELIX_ATTEMPTS):
            delay = self._limiter.delay(self._wall())
            if delay > 0:
                await asyncio.sleep(delay)
            token = keeper.access_token
            request.headers["Authorization"] = f"Bearer {token}"
            response = await self._send(request)
            self._limiter.observe(response, self._wall())
            if response.status == 401:
                error = await keeper.unauthorized(token)
                if error is not None:
                    return SourceFailure.from_token_error(error)
                continue
            if response.status == 429 and response.header("Ratelimit-Remaining") in ("0", None):
                self._stats.rate_limited += 1
                log.warning(
                    "helix rate limited",
                    retry_in_s=round(self._limiter.delay(self._wall()), 2),
                    path=request.url.rsplit("/", 2)[-1].split("?")[0],
                )
                continue
            return response
        return response

    async def wait_for_room(self, calls: int) -> None:
        """Before a socket opens: wait until the Helix bucket can take `calls` requests.

        Twitch closes a socket with 4003 when no subscription names it within 10 s of
        the welcome, so opening one whose subscriptions the bucket cannot take now (800
        points a minute: 160 channels' worth) only buys a 4003 and a reconnect loop.
        """
        limiter = self._limiter
        now = self._wall()
        delay = limiter.delay(now)
        if (
            limiter.remaining is not None
            and limiter.remaining < calls
            and limiter.reset_at is not None
        ):
            delay = max(delay, min(limiter.reset_at - now, _BUCKET_MAX_WAIT_S))
        if delay > 0:
            log.info("eventsub waiting for helix bucket", calls=calls, wait_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def list_subscriptions(
        self, subscription_type: str = ""
    ) -> list[ExistingSubscription] | HelixRefusal | SourceFailure:
        """Every subscription Twitch lists for this client and user (every page)."""
        found: list[ExistingSubscription] = []
        cursor = ""
        for _ in range(_MAX_LIST_PAGES):
            request = list_subscriptions_request(
                self._api_url,
                self._client_id,
                self.keeper.access_token,
                subscription_type=subscription_type,
                after=cursor,
            )
            response = await self.helix(request)
            if isinstance(response, SourceFailure):
                return response
            page = interpret_subscription_list(response)
            if isinstance(page, HelixRefusal):
                return page
            assert isinstance(page, SubscriptionPage)
            found.extend(page.subscriptions)
            cursor = page.cursor
            if not cursor:
                break
        return found
