"""`TokenKeeper` with a scripted `/validate` and `/token` and a fake clock (no network)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from twitch_ingestion.sources.eventsub.auth import TokenKeeper
from twitch_ingestion.sources.eventsub.http_messages import HttpRequest, HttpResponse
from twitch_ingestion.sources.eventsub.tokens import TokenError, ValidToken

CLIENT_ID = "cid"
FIRST = "firstaccesstoken0000000000000"
SECOND = "secondaccesstoken000000000000"


class FakeTwitch:
    """Answers `/validate` for the tokens it knows and `/token` with a new pair."""

    def __init__(self, valid: dict[str, float], now: list[float] | None = None) -> None:
        self.valid = valid  # access token → when it expires
        self.now = now if now is not None else [0.0]
        self.validations: list[str] = []
        self.refreshes = 0
        self.refresh_gate: asyncio.Event | None = None

    async def send(self, request: HttpRequest) -> HttpResponse:
        if request.url.endswith("/validate"):
            token = request.headers["Authorization"].removeprefix("OAuth ")
            self.validations.append(token)
            if token not in self.valid:
                return HttpResponse(401, b'{"status":401,"message":"invalid access token"}')
            body = {
                "client_id": CLIENT_ID,
                "login": "bot",
                "user_id": "42",
                "scopes": ["user:read:chat"],
                "expires_in": int(self.valid[token] - self.now[0]),
            }
            return HttpResponse(200, json.dumps(body).encode())
        assert request.body is not None
        form = parse_qs(request.body.decode())
        assert form["grant_type"] == ["refresh_token"]
        if self.refresh_gate is not None:
            await self.refresh_gate.wait()
        self.refreshes += 1
        self.valid[SECOND] = self.now[0] + 14_400
        body = {"access_token": SECOND, "refresh_token": "newrefresh", "expires_in": 14_400}
        return HttpResponse(200, json.dumps(body).encode())


def keeper_for(twitch: FakeTwitch, now: list[float], *, refresh: bool = True) -> TokenKeeper:
    return TokenKeeper(
        twitch.send,
        auth_url="http://auth.test/oauth2",
        client_id=CLIENT_ID,
        access_token=f"oauth:{FIRST}",
        client_secret="secret" if refresh else "",
        refresh_token="refresh" if refresh else "",
        clock=lambda: now[0],
    )


async def test_start_validates_the_token_without_its_oauth_prefix() -> None:
    twitch = FakeTwitch({FIRST: 3600})
    keeper = keeper_for(twitch, [0.0])
    result = await keeper.start()
    assert isinstance(result, ValidToken)
    assert result.user_id == "42"
    assert twitch.validations == [FIRST]


async def test_a_dead_token_is_refreshed_at_start_and_the_new_one_validated() -> None:
    twitch = FakeTwitch({})
    keeper = keeper_for(twitch, [0.0])
    result = await keeper.start()
    assert isinstance(result, ValidToken)
    assert keeper.access_token == SECOND
    assert twitch.validations == [FIRST, SECOND]


async def test_a_dead_token_without_refresh_is_an_error_naming_the_variable() -> None:
    twitch = FakeTwitch({})
    result = await keeper_for(twitch, [0.0], refresh=False).start()
    assert isinstance(result, TokenError)
    assert result.variable == "TWITCH_OAUTH_TOKEN"
    assert FIRST not in result.message


async def test_concurrent_401s_cause_one_refresh() -> None:
    twitch = FakeTwitch({FIRST: 3600})
    keeper = keeper_for(twitch, [0.0])
    await keeper.start()
    twitch.refresh_gate = asyncio.Event()
    calls = [asyncio.create_task(keeper.unauthorized(FIRST)) for _ in range(5)]
    await asyncio.sleep(0)
    twitch.refresh_gate.set()
    assert await asyncio.gather(*calls) == [None] * 5
    assert twitch.refreshes == 1
    assert keeper.access_token == SECOND
    # A caller that still holds the old token after the refresh just retries.
    assert await keeper.unauthorized(FIRST) is None
    assert twitch.refreshes == 1


async def test_without_refresh_a_401_is_the_expiry_error() -> None:
    twitch = FakeTwitch({FIRST: 3600})
    keeper = keeper_for(twitch, [0.0], refresh=False)
    await keeper.start()
    error = await keeper.unauthorized(FIRST)
    assert isinstance(error, TokenError)
    assert error.reason == "token-expired"


async def test_run_validates_hourly_and_refreshes_before_expiry() -> None:
    now = [0.0]
    twitch = FakeTwitch({FIRST: 2 * 3600}, now)
    keeper = keeper_for(twitch, now)
    await keeper.start()
    runner = asyncio.create_task(keeper.run())
    try:
        now[0] = 3600.0  # the hourly validation is due
        keeper._rescheduled.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert twitch.validations == [FIRST, FIRST]
        now[0] = 2 * 3600 - 599.0  # inside the refresh margin (10 min)
        keeper._rescheduled.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert twitch.refreshes == 1
        assert twitch.validations[-1] == SECOND
    finally:
        runner.cancel()
    assert repr(keeper).count(FIRST) == 0
    assert repr(keeper).count(SECOND) == 0


async def test_a_public_client_refreshes_without_a_secret() -> None:
    twitch = FakeTwitch({})  # the configured token is dead
    keeper = TokenKeeper(
        twitch.send,
        auth_url="http://auth.test/oauth2",
        client_id=CLIENT_ID,
        access_token=FIRST,
        refresh_token="refresh",
        public_client=True,
        clock=lambda: 0.0,
    )
    assert isinstance(await keeper.start(), ValidToken)
    assert (twitch.refreshes, keeper.access_token) == (1, SECOND)


async def test_validate_now_says_at_once_whether_the_token_still_works() -> None:
    now = [0.0]
    twitch = FakeTwitch({FIRST: 3600}, now)
    keeper = keeper_for(twitch, now, refresh=False)
    await keeper.start()
    assert await keeper.validate_now() is None
    del twitch.valid[FIRST]  # the user disconnected the app
    error = await keeper.validate_now()
    assert isinstance(error, TokenError)
    assert (error.reason, error.variable) == ("token-invalid", "TWITCH_OAUTH_TOKEN")
    assert twitch.validations == [FIRST, FIRST, FIRST]
