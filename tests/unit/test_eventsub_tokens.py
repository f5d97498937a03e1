"""Token validation and refresh policy: `/validate` and `/token` answers and the time in."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from twitch_ingestion.sources.eventsub.http_messages import HttpResponse, strip_oauth_prefix
from twitch_ingestion.sources.eventsub.tokens import (
    EVENTSUB_SCOPE,
    IRC_SCOPE,
    NETWORK_ERROR_STATUS,
    REFRESH_MARGIN_S,
    VALIDATE_INTERVAL_S,
    RefreshedToken,
    TokenAction,
    TokenError,
    TokenSchedule,
    ValidToken,
    describe_duration,
    interpret_refresh,
    interpret_validation,
    refresh_request,
    validate_request,
)

TOKEN = "abcdefghijklmnopqrstuvwxyz0123"  # the value that must never leak
CLIENT_ID = "wbmytr93xzw8zbg0p1izqyzzc5mbiz"


def validation(**changes: Any) -> HttpResponse:
    body = {
        "client_id": CLIENT_ID,
        "login": "chatbot",
        "scopes": ["chat:read", "user:read:chat"],
        "user_id": "141981764",
        "expires_in": 5520,
    }
    body.update(changes)
    return HttpResponse(200, json.dumps(body).encode())


def check(response: HttpResponse, scope: str = EVENTSUB_SCOPE) -> ValidToken | TokenError:
    return interpret_validation(response, client_id=CLIENT_ID, required_scope=scope, now=1000.0)


def assert_one_clean_line(error: TokenError) -> None:
    assert "\n" not in error.message
    assert TOKEN not in error.message
    assert TOKEN not in repr(error)


# -- /validate ------------------------------------------------------------------------------


def test_validate_request_sends_the_bare_token_in_the_oauth_header() -> None:
    request = validate_request("https://id.twitch.tv/oauth2/", "oauth:" + TOKEN)
    assert (request.method, request.url) == ("GET", "https://id.twitch.tv/oauth2/validate")
    assert request.headers == {"Authorization": f"OAuth {TOKEN}"}
    assert TOKEN not in repr(request)


@pytest.mark.parametrize("value", [TOKEN, "oauth:" + TOKEN, "OAuth:" + TOKEN, f" {TOKEN}\n"])
def test_token_is_accepted_with_or_without_the_oauth_prefix(value: str) -> None:
    assert strip_oauth_prefix(value) == TOKEN


def test_valid_token_gives_user_scopes_and_expiry() -> None:
    token = check(validation())
    assert token == ValidToken(
        CLIENT_ID, "chatbot", "141981764", ("chat:read", "user:read:chat"), 5520, 1000.0
    )
    assert isinstance(token, ValidToken)
    assert token.expires_at == 6520.0


def test_irc_needs_chat_read_not_user_read_chat() -> None:
    assert isinstance(check(validation(scopes=["chat:read"]), IRC_SCOPE), ValidToken)
    error = check(validation(scopes=["chat:read"]), EVENTSUB_SCOPE)
    assert isinstance(error, TokenError)
    assert error.reason == "missing-scope"


def test_missing_scope_names_the_token_variable_and_the_scope() -> None:
    error = check(validation(scopes=["chat:read", "chat:edit"]))
    assert isinstance(error, TokenError)
    assert (error.reason, error.variable, error.transient) == (
        "missing-scope",
        "TWITCH_OAUTH_TOKEN",
        False,
    )
    assert "user:read:chat" in error.message
    assert "chat:read, chat:edit" in error.message
    assert_one_clean_line(error)


def test_null_scopes_is_missing_scope() -> None:
    error = check(validation(scopes=None))
    assert isinstance(error, TokenError)
    assert "(it has: none)" in error.message


def test_wrong_client_id_names_twitch_client_id() -> None:
    error = check(validation(client_id="someotherapp"))
    assert isinstance(error, TokenError)
    assert (error.reason, error.variable) == ("wrong-client-id", "TWITCH_CLIENT_ID")
    assert "someotherapp" in error.message
    assert_one_clean_line(error)


def test_empty_configured_client_id_accepts_any_app() -> None:
    result = interpret_validation(
        validation(client_id="x"), client_id="", required_scope=IRC_SCOPE, now=0.0
    )
    assert isinstance(result, ValidToken)


def test_app_token_is_refused_for_chat() -> None:
    error = check(validation(user_id="", login=""))
    assert isinstance(error, TokenError)
    assert error.reason == "app-token"
    assert error.variable == "TWITCH_OAUTH_TOKEN"


def test_401_means_invalid_or_expired_and_suggests_refresh_settings() -> None:
    body = b'{"status":401,"message":"invalid access token"}'
    error = check(HttpResponse(401, body))
    assert isinstance(error, TokenError)
    assert (error.reason, error.variable, error.transient) == (
        "token-invalid",
        "TWITCH_OAUTH_TOKEN",
        False,
    )
    assert "invalid access token" in error.message
    assert "TWITCH_REFRESH_TOKEN" in error.message
    assert_one_clean_line(error)


def test_zero_expires_in_is_a_token_that_does_not_expire() -> None:
    token = check(validation(expires_in=0))
    assert isinstance(token, ValidToken)
    assert token.expires_at is None


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_transient(status: int) -> None:
    error = check(HttpResponse(status, b"<html>oops</html>"))
    assert isinstance(error, TokenError)
    assert error.transient
    assert "will retry" in error.message


def test_an_auth_endpoint_that_cannot_be_reached_says_so_not_a_status_code() -> None:
    body = json.dumps({"message": "network error: ClientConnectorDNSError"}).encode()
    error = check(HttpResponse(NETWORK_ERROR_STATUS, body))
    assert isinstance(error, TokenError)
    assert error.transient
    assert error.message == (
        "the /validate endpoint of TWITCH_AUTH_URL could not be reached"
        " (network error: ClientConnectorDNSError); will retry"
    )
    assert_one_clean_line(error)


def test_an_unreachable_auth_endpoint_is_named_by_its_url_and_its_setting() -> None:
    body = json.dumps({"message": "network error: ClientConnectorDNSError"}).encode()
    error = interpret_validation(
        HttpResponse(NETWORK_ERROR_STATUS, body),
        client_id=CLIENT_ID,
        required_scope=EVENTSUB_SCOPE,
        now=1000.0,
        auth_url="https://id.twitch.tv/oauth2/",
    )
    assert isinstance(error, TokenError)
    assert error.message == (
        "https://id.twitch.tv/oauth2/validate (TWITCH_AUTH_URL) could not be reached"
        " (network error: ClientConnectorDNSError); will retry"
    )
    assert "{" not in error.message


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"client_id": 5}', b'{"login": "x"}'])
def test_unreadable_validate_answer_is_an_error_value(body: bytes) -> None:
    error = check(HttpResponse(200, body))
    assert isinstance(error, TokenError)
    assert error.variable == "TWITCH_AUTH_URL"
    assert_one_clean_line(error)


# -- /token ---------------------------------------------------------------------------------


def test_refresh_request_is_form_encoded_and_redacted() -> None:
    request = refresh_request(
        "https://id.twitch.tv/oauth2",
        client_id=CLIENT_ID,
        client_secret="s3cr3t-value",
        refresh_token="r3fr3sh-value",
    )
    assert (request.method, request.url) == ("POST", "https://id.twitch.tv/oauth2/token")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body is not None
    assert parse_qs(request.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["r3fr3sh-value"],
        "client_id": [CLIENT_ID],
        "client_secret": ["s3cr3t-value"],
    }
    assert "s3cr3t" not in repr(request)
    assert "r3fr3sh" not in repr(request)


def test_refresh_answer_gives_the_new_pair_without_showing_it() -> None:
    body = json.dumps(
        {
            "access_token": TOKEN,
            "refresh_token": "newrefresh",
            "expires_in": 14124,
            "scope": ["user:read:chat"],
            "token_type": "bearer",
        }
    ).encode()
    token = interpret_refresh(HttpResponse(200, body))
    assert isinstance(token, RefreshedToken)
    assert (token.access_token, token.refresh_token, token.expires_in_s, token.scopes) == (
        TOKEN,
        "newrefresh",
        14124,
        ("user:read:chat",),
    )
    assert TOKEN not in repr(token)
    assert "newrefresh" not in repr(token)


@pytest.mark.parametrize(
    ("status", "message", "variable"),
    [
        (400, "Invalid refresh token", "TWITCH_REFRESH_TOKEN"),
        (403, "invalid client secret", "TWITCH_CLIENT_SECRET"),
        (400, "invalid client", "TWITCH_CLIENT_ID"),
        (401, "", "TWITCH_REFRESH_TOKEN"),
    ],
)
def test_refused_refresh_names_the_setting_to_fix(status: int, message: str, variable: str) -> None:
    body = json.dumps({"status": status, "message": message}).encode()
    error = interpret_refresh(HttpResponse(status, body))
    assert isinstance(error, TokenError)
    assert (error.reason, error.variable, error.transient) == ("refresh-refused", variable, False)
    assert_one_clean_line(error)


def test_refresh_server_error_is_transient() -> None:
    error = interpret_refresh(HttpResponse(503, b""))
    assert isinstance(error, TokenError)
    assert error.transient


# -- schedule ---------------------------------------------------------------------------------


def valid_token(now: float, expires_in: int | None = 14_400) -> ValidToken:
    return ValidToken(CLIENT_ID, "chatbot", "1", (EVENTSUB_SCOPE,), expires_in, now)


def test_validates_at_start_then_hourly() -> None:
    schedule = TokenSchedule(can_refresh=False)
    assert schedule.due(0.0) == [TokenAction.VALIDATE]
    schedule.validated(valid_token(5.0, expires_in=None))
    assert schedule.next_deadline() == 5.0 + VALIDATE_INTERVAL_S
    assert schedule.due(5.0 + VALIDATE_INTERVAL_S - 1) == []
    assert schedule.due(5.0 + VALIDATE_INTERVAL_S) == [TokenAction.VALIDATE]
    assert schedule.due(5.0 + VALIDATE_INTERVAL_S + 1) == []  # asked once


def test_refreshes_before_expiry_when_it_can() -> None:
    schedule = TokenSchedule(can_refresh=True)
    schedule.due(0.0)
    schedule.validated(valid_token(0.0, expires_in=3000))
    refresh_at = 3000 - REFRESH_MARGIN_S
    assert schedule.next_deadline() == refresh_at
    assert schedule.due(refresh_at - 1) == []
    assert schedule.due(refresh_at) == [TokenAction.REFRESH]
    schedule.refreshed(RefreshedToken("new", "r", 14_400, (EVENTSUB_SCOPE,)), refresh_at + 1)
    # A new token is validated straight away.
    assert schedule.due(refresh_at + 1) == [TokenAction.VALIDATE]
    assert schedule.expires_at == refresh_at + 1 + 14_400


def test_token_expiring_within_the_margin_is_refreshed_at_once() -> None:
    schedule = TokenSchedule(can_refresh=True)
    schedule.due(0.0)
    schedule.validated(valid_token(100.0, expires_in=60))
    assert schedule.due(100.0) == [TokenAction.REFRESH]


def test_without_refresh_the_expiry_ends_the_service() -> None:
    schedule = TokenSchedule(can_refresh=False)
    schedule.due(0.0)
    schedule.validated(valid_token(0.0, expires_in=1800))
    assert schedule.next_deadline() == 1800.0
    assert schedule.due(1799.0) == []
    assert schedule.due(1800.0) == [TokenAction.EXPIRED]
    error = schedule.expired_error()
    assert error.variable == "TWITCH_OAUTH_TOKEN"
    assert "TWITCH_REFRESH_TOKEN" in error.message


def test_remaining_time_is_said_plainly() -> None:
    schedule = TokenSchedule(can_refresh=False)
    schedule.validated(valid_token(0.0, expires_in=11_520))
    assert schedule.remaining_s(0.0) == 11_520
    line = schedule.describe_remaining(0.0)
    assert line.startswith("TWITCH_OAUTH_TOKEN expires in 3 h 12 min")
    assert "TWITCH_CLIENT_SECRET" in line
    assert schedule.remaining_s(20_000.0) == 0.0


def test_401_refreshes_when_possible_else_stops() -> None:
    assert TokenSchedule(can_refresh=True).unauthorized(5.0) is TokenAction.REFRESH
    error = TokenSchedule(can_refresh=False).unauthorized(5.0)
    assert isinstance(error, TokenError)
    assert error.reason == "token-expired"


def test_invalid_token_at_validation_is_refreshed_when_possible() -> None:
    invalid = TokenError("token-invalid", "TWITCH_OAUTH_TOKEN", "x")
    refreshing = TokenSchedule(can_refresh=True)
    assert refreshing.validation_failed(invalid, 0.0) is TokenAction.REFRESH
    assert refreshing.due(0.0) == [TokenAction.REFRESH]
    assert TokenSchedule(can_refresh=False).validation_failed(invalid, 0.0) is invalid


def test_transient_validation_failure_is_retried_later() -> None:
    schedule = TokenSchedule(can_refresh=False, refresh_retry_s=30.0)
    schedule.due(0.0)
    transient = TokenError("validate-http-503", "TWITCH_AUTH_URL", "x", transient=True)
    assert schedule.validation_failed(transient, 0.0) is TokenAction.VALIDATE
    assert schedule.due(29.0) == []
    assert schedule.due(30.0) == [TokenAction.VALIDATE]


def test_transient_refresh_failure_retries_until_expiry() -> None:
    schedule = TokenSchedule(can_refresh=True, refresh_retry_s=30.0)
    schedule.validated(valid_token(0.0, expires_in=1000))
    transient = TokenError("token-http-503", "TWITCH_AUTH_URL", "x", transient=True)
    assert schedule.refresh_failed(transient, 500.0) is None
    assert schedule.due(530.0) == [TokenAction.REFRESH]
    assert schedule.refresh_failed(transient, 1000.0) is transient
    refused = TokenError("refresh-refused", "TWITCH_REFRESH_TOKEN", "x")
    assert schedule.refresh_failed(refused, 10.0) is refused


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42, "42 s"), (59.2, "1 min"), (600, "10 min"), (11_520, "3 h 12 min")],
)
def test_describe_duration(seconds: float, text: str) -> None:
    assert describe_duration(seconds) == text


def test_a_public_clients_refresh_request_carries_no_secret() -> None:
    request = refresh_request(
        "https://id.twitch.tv/oauth2",
        client_id=CLIENT_ID,
        client_secret="",
        refresh_token="r3fr3sh-value",
    )
    assert request.body is not None
    assert parse_qs(request.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["r3fr3sh-value"],
        "client_id": [CLIENT_ID],
    }
