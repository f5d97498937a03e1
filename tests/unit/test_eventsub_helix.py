"""Helix requests and answers for EventSub: users, subscriptions, rate limits, connection plan."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from twitch_ingestion.sources.eventsub.helix import (
    ChannelProblem,
    HelixRefusal,
    RateLimiter,
    RefusalKind,
    SubscriptionCreated,
    UsersAnswer,
    interpret_subscription,
    interpret_users,
    normalise_login,
    plan_connections,
    subscription_request,
    users_requests,
)
from twitch_ingestion.sources.eventsub.http_messages import HttpResponse

API = "https://api.twitch.tv/helix"
CLIENT_ID = "wbmytr93xzw8zbg0p1izqyzzc5mbiz"
TOKEN = "abcdefghijklmnopqrstuvwxyz0123"


def twitch_error(status: int, message: str, headers: dict[str, str] | None = None) -> HttpResponse:
    error = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 409: "Conflict"}
    body = json.dumps({"error": error.get(status, "Error"), "status": status, "message": message})
    return HttpResponse(status, body.encode(), headers)


# -- Get Users ------------------------------------------------------------------------------


def test_users_are_asked_100_logins_per_call() -> None:
    logins = [f"user{i}" for i in range(250)]
    requests, problems = users_requests(API, CLIENT_ID, "oauth:" + TOKEN, logins)
    assert problems == []
    assert [len(batch) for _, batch in requests] == [100, 100, 50]
    request, batch = requests[0]
    assert request.method == "GET"
    url = urlsplit(request.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{API}/users"
    assert parse_qs(url.query)["login"] == batch
    assert request.headers == {"Authorization": f"Bearer {TOKEN}", "Client-Id": CLIENT_ID}
    assert TOKEN not in repr(request)


def test_logins_are_normalised_and_deduplicated() -> None:
    requests, problems = users_requests(API, CLIENT_ID, TOKEN, ["#Foo", "foo", " bar ", "BAR"])
    assert problems == []
    assert [batch for _, batch in requests] == [["foo", "bar"]]


def test_malformed_logins_are_reported_not_sent() -> None:
    requests, problems = users_requests(
        API, CLIENT_ID, TOKEN, ["good_one", "bad login", "x" * 26, ""]
    )
    assert [batch for _, batch in requests] == [["good_one"]]
    assert [problem.reason for problem in problems] == ["invalid-login"] * 3


@pytest.mark.parametrize(
    ("value", "login"),
    [("#Streamer", "streamer"), ("a_b_1", "a_b_1"), ("né", None), ("a-b", None), ("#", None)],
)
def test_normalise_login(value: str, login: str | None) -> None:
    assert normalise_login(value) == login


def test_unknown_logins_are_reported_and_the_rest_resolved() -> None:
    body = json.dumps(
        {"data": [{"id": "141981764", "login": "twitchdev", "display_name": "TwitchDev"}]}
    ).encode()
    answer = interpret_users(["twitchdev", "nosuchuser"], HttpResponse(200, body))
    assert answer == UsersAnswer(
        {"twitchdev": "141981764"},
        [ChannelProblem("nosuchuser", "unknown-login", "Twitch has no user 'nosuchuser'")],
    )


def test_failed_users_call_is_a_refusal_to_act_on() -> None:
    answer = interpret_users(["a"], twitch_error(401, "Invalid OAuth token"))
    assert isinstance(answer, HelixRefusal)
    assert answer.kind is RefusalKind.UNAUTHORIZED
    garbled = interpret_users(["a"], HttpResponse(200, b"{"))
    assert isinstance(garbled, HelixRefusal)
    assert garbled.kind is RefusalKind.TRANSIENT


# -- Create EventSub Subscription -----------------------------------------------------------


def test_subscription_request_body_as_twitch_documents() -> None:
    request = subscription_request(
        API + "/",
        CLIENT_ID,
        TOKEN,
        subscription_type="channel.chat.message",
        broadcaster_user_id="1971641",
        user_id="2914196",
        session_id="AgoQHR3s",
    )
    assert (request.method, request.url) == ("POST", f"{API}/eventsub/subscriptions")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.body is not None
    assert json.loads(request.body) == {
        "type": "channel.chat.message",
        "version": "1",
        "condition": {"broadcaster_user_id": "1971641", "user_id": "2914196"},
        "transport": {"method": "websocket", "session_id": "AgoQHR3s"},
    }
    assert TOKEN not in repr(request)


def interpret(response: HttpResponse) -> SubscriptionCreated | HelixRefusal:
    return interpret_subscription(
        response, subscription_type="channel.chat.message", broadcaster_user_id="1971641"
    )


def test_accepted_subscription_reports_its_cost() -> None:
    body = {
        "data": [
            {
                "id": "f1c2a387-161a-49f9-a165-0f21d7a4e1c4",
                "status": "enabled",
                "type": "channel.chat.message",
                "version": "1",
                "condition": {"broadcaster_user_id": "1971641", "user_id": "2914196"},
                "created_at": "2024-02-23T21:12:33.771005262Z",
                "transport": {"method": "websocket", "session_id": "AgoQHR3s"},
                "cost": 0,
            }
        ],
        "total": 1,
        "total_cost": 0,
        "max_total_cost": 10,
    }
    assert interpret(HttpResponse(202, json.dumps(body).encode())) == SubscriptionCreated(
        "f1c2a387-161a-49f9-a165-0f21d7a4e1c4", "channel.chat.message", "1971641", 0, 0, 10
    )


def test_existing_subscription_counts_as_created() -> None:
    result = interpret(twitch_error(409, "subscription already exists"))
    assert isinstance(result, SubscriptionCreated)
    assert result.id == ""


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (
            twitch_error(429, "Too Many Requests", {"Ratelimit-Remaining": "0"}),
            RefusalKind.RATE_LIMITED,
        ),
        (
            twitch_error(
                429,
                "websocket transport: number of enabled subscriptions exceeds limit",
                {"Ratelimit-Remaining": "700"},
            ),
            RefusalKind.LIMIT_EXCEEDED,
        ),
        (
            twitch_error(429, "subscription cost exceeds max_total_cost"),
            RefusalKind.LIMIT_EXCEEDED,
        ),
        (
            twitch_error(
                400, "websocket transport session does not exist or has already disconnected"
            ),
            RefusalKind.SESSION_GONE,
        ),
        (twitch_error(400, "invalid condition: broadcaster_user_id"), RefusalKind.BAD_REQUEST),
        (twitch_error(401, "Invalid OAuth token"), RefusalKind.UNAUTHORIZED),
        (
            twitch_error(403, "subscription missing proper authorization"),
            RefusalKind.FORBIDDEN,
        ),
        (HttpResponse(503, b"<html>"), RefusalKind.TRANSIENT),
        (HttpResponse(202, b"{}"), RefusalKind.TRANSIENT),
        (HttpResponse(202, b'{"data": []}'), RefusalKind.TRANSIENT),
    ],
)
def test_refusals_say_what_to_do(response: HttpResponse, kind: RefusalKind) -> None:
    result = interpret(response)
    assert isinstance(result, HelixRefusal)
    assert result.kind is kind


def test_refusal_reports_the_channel_with_twitchs_reason() -> None:
    result = interpret(twitch_error(403, "subscription missing proper authorization"))
    assert isinstance(result, HelixRefusal)
    assert result.kind.reports_channel
    problem = result.problem("streamer")
    assert problem == ChannelProblem(
        "streamer",
        "forbidden",
        "cannot subscribe to channel.chat.message for streamer: Twitch answered 403"
        " subscription missing proper authorization",
    )
    assert not RefusalKind.RATE_LIMITED.reports_channel
    assert not RefusalKind.UNAUTHORIZED.reports_channel


def test_twitch_message_is_cut_to_one_short_line() -> None:
    result = interpret(twitch_error(400, "line one\nline two " + "x" * 500))
    assert isinstance(result, HelixRefusal)
    assert "\n" not in result.message
    assert len(result.message) <= 200


# -- rate limits ----------------------------------------------------------------------------


def test_calls_may_go_while_the_bucket_has_points() -> None:
    limiter = RateLimiter()
    limiter.observe(
        HttpResponse(200, b"", {"Ratelimit-Remaining": "799", "Ratelimit-Reset": "1000060"}),
        1_000_000.0,
    )
    assert limiter.remaining == 799
    assert limiter.delay(1_000_000.0) == 0.0


def test_empty_bucket_waits_until_reset() -> None:
    limiter = RateLimiter()
    limiter.observe(
        HttpResponse(202, b"", {"Ratelimit-Remaining": "0", "Ratelimit-Reset": "1000012"}),
        1_000_000.0,
    )
    assert limiter.delay(1_000_000.0) == 12.0
    assert limiter.delay(1_000_010.0) == 2.0
    assert limiter.delay(1_000_012.0) == 0.0


def test_429_waits_until_reset() -> None:
    limiter = RateLimiter()
    limiter.observe(
        twitch_error(
            429, "Too Many Requests", {"ratelimit-reset": "1000005", "ratelimit-remaining": "0"}
        ),
        1_000_000.0,
    )
    assert limiter.delay(1_000_000.0) == 5.0


def test_429_without_usable_reset_waits_a_moment() -> None:
    limiter = RateLimiter()
    limiter.observe(twitch_error(429, "Too Many Requests", {"Ratelimit-Reset": "soon"}), 50.0)
    assert limiter.delay(50.0) == 1.0


def test_429_for_a_subscription_limit_does_not_stop_other_calls() -> None:
    limiter = RateLimiter()
    limiter.observe(
        twitch_error(
            429,
            "subscription cost 100 would exceed max_total_cost 10",
            {"Ratelimit-Remaining": "790", "Ratelimit-Reset": "1000060"},
        ),
        1_000_000.0,
    )
    assert limiter.delay(1_000_000.0) == 0.0


def test_reset_far_in_the_future_is_capped() -> None:
    limiter = RateLimiter()
    limiter.observe(
        HttpResponse(429, b"", {"Ratelimit-Remaining": "0", "Ratelimit-Reset": "9999999999"}), 0.0
    )
    assert limiter.delay(0.0) == 60.0


# -- connection plan ------------------------------------------------------------------------


def test_few_channels_share_one_connection() -> None:
    plan = plan_connections(["1", "2", "3"])
    assert plan.connections == [["1", "2", "3"]]
    assert plan.unplaced == []


def test_channels_are_spread_evenly_over_the_connections_they_need() -> None:
    # 300 subscriptions per connection / 5 per channel = 60 channels per connection.
    channels = [str(i) for i in range(70)]
    plan = plan_connections(channels)
    assert [len(c) for c in plan.connections] == [35, 35]
    assert [ch for c in plan.connections for ch in c] == channels


def test_channels_beyond_three_connections_are_reported() -> None:
    channels = [str(i) for i in range(200)]
    plan = plan_connections(channels)
    assert [len(c) for c in plan.connections] == [60, 60, 60]
    assert [p.channel for p in plan.unplaced] == channels[180:]
    assert {p.reason for p in plan.unplaced} == {"connection-limit"}
    assert "at most 180 channels" in plan.unplaced[0].message


def test_cost_limit_is_respected_and_reported() -> None:
    plan = plan_connections(["a", "b", "c"], cost_per_channel=5, max_total_cost=10)
    assert plan.connections == [["a", "b"]]
    assert plan.unplaced == [
        ChannelProblem(
            "c", "cost-limit", "subscribing would pass Twitch's max_total_cost of 10 (in use: 10)"
        )
    ]


def test_duplicate_channels_are_placed_once() -> None:
    assert plan_connections(["a", "a", "b"]).connections == [["a", "b"]]


def test_empty_plan() -> None:
    plan = plan_connections([])
    assert (plan.connections, plan.unplaced) == ([], [])


def test_impossible_limits_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one channel"):
        plan_connections(["a"], subscriptions_per_channel=5, subscriptions_per_connection=4)
