"""User access tokens, sans-I/O: what `/validate` and `/token` answers mean, and when to ask.

Twitch requires every app to validate its tokens at start-up and then hourly
(dev.twitch.tv/docs/authentication/validate-tokens), and user tokens expire after a few
hours. This module decides; the shell sends the requests it builds and feeds back the
responses and the time:

- `validate_request` / `interpret_validation`: `GET {TWITCH_AUTH_URL}/validate` → a
  `ValidToken`, or a `TokenError` whose `message` is one line naming the setting to fix.
- `refresh_request` / `interpret_refresh`: `POST {TWITCH_AUTH_URL}/token` with the
  refresh token and client secret → a `RefreshedToken` (new pair, kept in memory).
- `TokenSchedule`: when to validate again, when to refresh (before expiry, or on a
  401), when a token that cannot be refreshed has run out.

Token values never appear in a `repr`, an error or a message.
"""

from __future__ import annotations

import enum
import math
from urllib.parse import urlencode

import msgspec

from twitch_ingestion.sources.eventsub.http_messages import (
    HttpRequest,
    HttpResponse,
    strip_oauth_prefix,
)

__all__ = [
    "EVENTSUB_SCOPE",
    "IRC_SCOPE",
    "NETWORK_ERROR_STATUS",
    "REFRESH_MARGIN_S",
    "REFRESH_RETRY_S",
    "VALIDATE_INTERVAL_S",
    "RefreshedToken",
    "TokenAction",
    "TokenError",
    "TokenSchedule",
    "ValidToken",
    "describe_duration",
    "interpret_refresh",
    "interpret_validation",
    "refresh_request",
    "validate_request",
]

EVENTSUB_SCOPE = "user:read:chat"
"""Scope a user token needs to subscribe to `channel.chat.*` over a WebSocket."""
IRC_SCOPE = "chat:read"
"""Scope a user token needs to read chat over IRC."""

VALIDATE_INTERVAL_S = 3600.0
"""Twitch: "you must validate access tokens … on an hourly basis"; also the largest
TWITCH_TOKEN_VALIDATE_INTERVAL_S accepted."""
REFRESH_MARGIN_S = 600.0
"""Refresh this long before expiry: enough for a slow `/token` call and one retry, and
far below a user token's ~4 h life, so a refreshing service never runs on a dead token."""
REFRESH_RETRY_S = 30.0
"""Wait before retrying a refresh that failed for a transient reason (5xx, network)."""

_TOKEN_VARIABLE = "TWITCH_OAUTH_TOKEN"


# What the I/O shells (`auth.py`, `token_guard.py`) report for a request that got no
# response at all (refused, DNS, timeout): a synthetic 5xx, so it counts as transient.
NETWORK_ERROR_STATUS = 599


class TokenError(msgspec.Struct, frozen=True, gc=False):
    """Why a token cannot be used. `message` is the one line an operator sees."""

    reason: str
    """Kebab-case label: `missing-scope`, `wrong-client-id`, `token-invalid`, …"""
    variable: str
    """The setting to fix, e.g. `TWITCH_OAUTH_TOKEN`."""
    message: str
    transient: bool = False
    """True for a failure of Twitch or the network (5xx, 429): try again later."""


class ValidToken(msgspec.Struct, frozen=True, gc=False):
    """What `/validate` says about a usable token (no token value in here)."""

    client_id: str
    login: str
    user_id: str
    scopes: tuple[str, ...]
    expires_in_s: int | None
    """Seconds left when validated; None when Twitch reports 0 (a token that does not
    expire, as some older tokens are)."""
    validated_at: float

    @property
    def expires_at(self) -> float | None:
        return None if self.expires_in_s is None else self.validated_at + self.expires_in_s


class RefreshedToken:
    """A new access/refresh token pair from `/token`; `repr` shows no token."""

    __slots__ = ("access_token", "expires_in_s", "refresh_token", "scopes")

    def __init__(
        self,
        access_token: str,
        refresh_token: str,
        expires_in_s: int | None,
        scopes: tuple[str, ...],
    ) -> None:
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_in_s = expires_in_s
        self.scopes = scopes

    def __repr__(self) -> str:
        return f"RefreshedToken(<redacted>, expires_in_s={self.expires_in_s}, scopes={self.scopes})"


# ---------------------------------------------------------------------------------------
# /validate


class _Validation(msgspec.Struct, frozen=True, gc=False):
    client_id: str
    expires_in: int
    login: str = ""
    user_id: str = ""
    scopes: list[str] | None = None


class _TwitchError(msgspec.Struct, frozen=True, gc=False):
    message: str = ""
    status: int = 0
    error: str = ""


def validate_request(auth_url: str, token: str) -> HttpRequest:
    """`GET {auth_url}/validate` for `token` (with or without the `oauth:` prefix)."""
    return HttpRequest(
        "GET",
        auth_url.rstrip("/") + "/validate",
        {"Authorization": f"OAuth {strip_oauth_prefix(token)}"},
    )


def interpret_validation(
    response: HttpResponse,
    *,
    client_id: str,
    required_scope: str,
    now: float,
    token_variable: str = _TOKEN_VARIABLE,
    auth_url: str | None = None,
) -> ValidToken | TokenError:
    """A usable token, or why not.

    `client_id` is the configured `TWITCH_CLIENT_ID` ("" to accept any, for IRC without
    Helix); `required_scope` is `EVENTSUB_SCOPE` or `IRC_SCOPE`.
    """
    if response.status == 401:
        return TokenError(
            "token-invalid",
            token_variable,
            f"{token_variable} is invalid or has expired (Twitch /validate: 401"
            f" {_twitch_message(response.body) or 'invalid access token'}); create a new"
            f" user token with the scope {required_scope}, or set TWITCH_REFRESH_TOKEN and"
            " TWITCH_CLIENT_SECRET so it can be refreshed",
        )
    if response.status != 200:
        return _unexpected("validate", response, auth_url)
    try:
        body = msgspec.json.decode(response.body, type=_Validation)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return TokenError(
            "validate-unreadable",
            "TWITCH_AUTH_URL",
            f"the answer of {_endpoint('validate', auth_url)} is not Twitch's: {str(exc)[:120]}",
            transient=True,
        )
    if not body.user_id:
        return TokenError(
            "app-token",
            token_variable,
            f"{token_variable} is an app access token; reading chat needs a user access"
            f" token (of the bot account) with the scope {required_scope}",
        )
    if client_id and body.client_id != client_id:
        return TokenError(
            "wrong-client-id",
            "TWITCH_CLIENT_ID",
            f"TWITCH_CLIENT_ID is {client_id!r} but {token_variable} was issued to the app"
            f" {body.client_id!r}; set TWITCH_CLIENT_ID to that app's client id, or create the"
            " token with your app",
        )
    scopes = tuple(body.scopes or ())
    if required_scope not in scopes:
        has = ", ".join(scopes) if scopes else "none"
        return TokenError(
            "missing-scope",
            token_variable,
            f"{token_variable} lacks the scope {required_scope} (it has: {has}); create a new"
            f" user token for {body.login or 'the bot account'} with {required_scope}",
        )
    if body.expires_in < 0:
        return TokenError(
            "token-expired", token_variable, f"{token_variable} has expired; create a new one"
        )
    return ValidToken(
        body.client_id,
        body.login.lower(),
        body.user_id,
        scopes,
        body.expires_in or None,
        now,
    )


# ---------------------------------------------------------------------------------------
# /token (refresh)


class _Refresh(msgspec.Struct, frozen=True, gc=False):
    access_token: str
    refresh_token: str
    expires_in: int | None = None
    scope: list[str] | None = None


def refresh_request(
    auth_url: str, *, client_id: str, client_secret: str, refresh_token: str
) -> HttpRequest:
    """`POST {auth_url}/token` (grant_type=refresh_token), form-encoded as Twitch wants.

    An empty `client_secret` is left out: a *public* client (TWITCH_CLIENT_TYPE=public,
    the device code flow) has none, and Twitch refreshes its tokens without one.
    """
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret:
        form["client_secret"] = client_secret
    body = urlencode(form).encode()
    return HttpRequest(
        "POST",
        auth_url.rstrip("/") + "/token",
        {"Content-Type": "application/x-www-form-urlencoded"},
        body,
    )


def interpret_refresh(
    response: HttpResponse, auth_url: str | None = None
) -> RefreshedToken | TokenError:
    """The new token pair, or why the refresh failed (naming the setting to fix)."""
    if response.status == 200:
        try:
            body = msgspec.json.decode(response.body, type=_Refresh)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return TokenError(
                "refresh-unreadable",
                "TWITCH_AUTH_URL",
                f"the answer of {_endpoint('token', auth_url)} is not Twitch's: {str(exc)[:120]}",
                transient=True,
            )
        if not body.access_token:
            return TokenError(
                "refresh-unreadable", "TWITCH_AUTH_URL", "/token answered without an access token"
            )
        return RefreshedToken(
            body.access_token, body.refresh_token, body.expires_in or None, tuple(body.scope or ())
        )
    if response.status in (400, 401, 403):
        text = _twitch_message(response.body)
        lowered = text.lower()
        if "secret" in lowered:
            variable = "TWITCH_CLIENT_SECRET"
        elif "client" in lowered:
            variable = "TWITCH_CLIENT_ID"
        else:  # Twitch: 400 "Invalid refresh token"
            variable = "TWITCH_REFRESH_TOKEN"
        return TokenError(
            "refresh-refused",
            variable,
            f"Twitch refused to refresh {_TOKEN_VARIABLE} ({response.status}"
            f" {text or 'no reason given'}); check {variable}",
        )
    return _unexpected("token", response, auth_url)


# ---------------------------------------------------------------------------------------
# Scheduling


class TokenAction(enum.Enum):
    VALIDATE = "validate"
    """Send `validate_request` with the current token."""
    REFRESH = "refresh"
    """Send `refresh_request` with the current refresh token."""
    EXPIRED = "expired"
    """The token ran out and cannot be refreshed: stop (exit 3), see `expired_error`."""


class TokenSchedule:
    """When to validate, refresh or give up; time in seconds on any monotonic clock."""

    def __init__(
        self,
        *,
        can_refresh: bool,
        validate_interval_s: float = VALIDATE_INTERVAL_S,
        refresh_margin_s: float = REFRESH_MARGIN_S,
        refresh_retry_s: float = REFRESH_RETRY_S,
    ) -> None:
        self.can_refresh = can_refresh
        self._interval = validate_interval_s
        self._margin = refresh_margin_s
        self._retry = refresh_retry_s
        self.expires_at: float | None = None
        self._validate_at: float | None = 0.0  # validate at start-up
        self._refresh_at: float | None = None

    def validated(self, token: ValidToken) -> None:
        """`/validate` accepted the token at `token.validated_at`."""
        self.expires_at = token.expires_at
        self._validate_at = token.validated_at + self._interval
        self._refresh_at = (
            max(token.validated_at, self.expires_at - self._margin)
            if self.can_refresh and self.expires_at is not None
            else None
        )

    def refreshed(self, token: RefreshedToken, now: float) -> None:
        """A new pair is in use: validate it at once (scopes, user) and plan its refresh."""
        self.expires_at = None if token.expires_in_s is None else now + token.expires_in_s
        self._validate_at = now
        self._refresh_at = None

    def refresh_failed(self, error: TokenError, now: float) -> TokenError | None:
        """A refresh failed: None when it will be retried, else the error to stop with."""
        if error.transient and not self._is_expired(now):
            self._refresh_at = now + self._retry
            return None
        return error

    def validation_failed(self, error: TokenError, now: float) -> TokenAction | TokenError:
        """`/validate` said no: refresh when that can help, retry a transient failure."""
        if error.transient:
            self._validate_at = now + self._retry
            return TokenAction.VALIDATE
        if error.reason == "token-invalid" and self.can_refresh:
            self._refresh_at = now
            return TokenAction.REFRESH
        return error

    def unauthorized(self, now: float) -> TokenAction | TokenError:
        """A Helix call or EventSub answered 401: refresh now, or stop."""
        if self.can_refresh:
            self._refresh_at = now
            return TokenAction.REFRESH
        return self.expired_error()

    def due(self, now: float) -> list[TokenAction]:
        """What to do at `now` (each action is returned once, then rescheduled)."""
        actions: list[TokenAction] = []
        if not self.can_refresh and self._is_expired(now):
            return [TokenAction.EXPIRED]
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            actions.append(TokenAction.REFRESH)
        elif self._validate_at is not None and now >= self._validate_at:
            self._validate_at = None  # rescheduled by `validated`/`validation_failed`
            actions.append(TokenAction.VALIDATE)
        return actions

    def next_deadline(self) -> float | None:
        """When `due` next has something to return."""
        times = [t for t in (self._validate_at, self._refresh_at) if t is not None]
        if not self.can_refresh and self.expires_at is not None:
            times.append(self.expires_at)
        return min(times) if times else None

    def remaining_s(self, now: float) -> float | None:
        """Seconds the current token has left; None when it does not expire."""
        return None if self.expires_at is None else max(0.0, self.expires_at - now)

    def describe_remaining(self, now: float) -> str:
        """One line for the log, e.g. at start-up and after each validation."""
        remaining = self.remaining_s(now)
        if remaining is None:
            return f"{_TOKEN_VARIABLE} does not expire"
        if self.can_refresh:
            return (
                f"{_TOKEN_VARIABLE} expires in {describe_duration(remaining)}; it will be refreshed"
            )
        return (
            f"{_TOKEN_VARIABLE} expires in {describe_duration(remaining)} and the service will"
            " stop then; set TWITCH_REFRESH_TOKEN and TWITCH_CLIENT_SECRET to refresh it"
        )

    def expired_error(self) -> TokenError:
        return TokenError(
            "token-expired",
            _TOKEN_VARIABLE,
            f"{_TOKEN_VARIABLE} has expired and cannot be refreshed (set TWITCH_REFRESH_TOKEN"
            " and TWITCH_CLIENT_SECRET); create a new user token",
        )

    def _is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def describe_duration(seconds: float) -> str:
    """`11520` → `3 h 12 min`; `42` → `42 s`."""
    total = math.ceil(seconds)
    if total < 60:
        return f"{total} s"
    hours, minutes = divmod(total // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _twitch_message(body: bytes) -> str:
    """Twitch's `message` from an error body, cut to one short line."""
    try:
        message = msgspec.json.decode(body, type=_TwitchError).message
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ""
    return " ".join(message.split())[:200]


def _endpoint(endpoint: str, auth_url: str | None) -> str:
    """The endpoint as the user configured it, naming the setting to change."""
    if auth_url is None:
        return f"the /{endpoint} endpoint of TWITCH_AUTH_URL"
    return f"{auth_url.rstrip('/')}/{endpoint} (TWITCH_AUTH_URL)"


def _unexpected(endpoint: str, response: HttpResponse, auth_url: str | None) -> TokenError:
    text = _twitch_message(response.body)
    transient = response.status >= 500 or response.status == 429
    # The I/O shells report a network failure as a synthetic 599 with the error as body.
    what = (
        f"could not be reached ({text or 'network error'})"
        if response.status == NETWORK_ERROR_STATUS
        else f"answered {response.status}{' ' + text if text else ''}"
    )
    return TokenError(
        f"{endpoint}-http-{response.status}",
        "TWITCH_AUTH_URL",
        f"{_endpoint(endpoint, auth_url)} {what}"
        f"{'; will retry' if transient else '; check TWITCH_AUTH_URL'}",
        transient=transient,
    )
