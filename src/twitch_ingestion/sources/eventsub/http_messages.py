"""HTTP requests and responses as plain values, exchanged with the I/O shell.

`tokens` and `helix` build `HttpRequest`s and read `HttpResponse`s; the shell sends the
one and fills the other with whatever HTTP client it uses. Requests carry the access
token, the refresh token or the client secret, so their `repr` redacts headers and
bodies: a request that ends up in a log or an exception message leaks nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["HttpRequest", "HttpResponse", "bearer_headers", "strip_oauth_prefix"]


class HttpRequest:
    """One request to send: method, absolute URL, headers, body (bytes or None)."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> None:
        self.method = method
        self.url = url
        self.headers = dict(headers)
        self.body = body

    def __repr__(self) -> str:
        # URLs here never carry secrets (tokens go in headers or the body).
        body = "None" if self.body is None else f"<{len(self.body)} bytes redacted>"
        return f"HttpRequest({self.method} {self.url}, headers={sorted(self.headers)}, body={body})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HttpRequest):
            return NotImplemented
        return (self.method, self.url, self.headers, self.body) == (
            other.method,
            other.url,
            other.headers,
            other.body,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict


class HttpResponse:
    """One response as received: status, headers (looked up case-insensitively), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = {name.lower(): value for name, value in (headers or {}).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {len(self.body)} bytes)"


def strip_oauth_prefix(token: str) -> str:
    """`oauth:abc` (the IRC PASS form) → `abc`: Helix and `/validate` want the bare token."""
    token = token.strip()
    return token[6:] if token[:6].lower() == "oauth:" else token


def bearer_headers(client_id: str, token: str) -> dict[str, str]:
    """Helix authentication: the bearer token and the app's client id, both required."""
    return {"Authorization": f"Bearer {strip_oauth_prefix(token)}", "Client-Id": client_id}
