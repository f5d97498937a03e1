"""Liveness, readiness and Prometheus metrics over a few lines of HTTP/1.0.

Three GET endpoints are all an orchestrator and a scraper need, so this is
`asyncio.start_server` and a request-line parser rather than a web framework:

* `/healthz` — 200 while the process runs (the event loop answering is the check);
* `/readyz`  — 200 when `readiness()` says ready, else 503; the JSON body lists what is
  and is not ready either way;
* `/metrics` — `render_metrics()` in the Prometheus text format.

Every response closes the connection (HTTP/1.0 style), which keeps the server stateless.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
from collections.abc import Callable

import structlog

from twitch_ingestion.metrics import render_metrics

__all__ = ["HealthServer", "HealthServerError", "Readiness"]

log = structlog.get_logger(__name__)

Readiness = Callable[[], tuple[bool, dict[str, object]]]

# A health probe's request is one line and a few headers; anything bigger or slower is
# not a probe, and must not tie up the loop.
_MAX_REQUEST_BYTES = 8 * 1024
_REQUEST_TIMEOUT_S = 5.0
_PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HealthServerError(Exception):
    """The health server cannot listen; the message names the setting and the fix."""


class HealthServer:
    """The HTTP endpoints above on `host:port`.

    `port=None` turns the server off (`start()` does nothing); `port=0` binds an
    ephemeral port, readable from `.port` after `start()` (tests use that). The service
    maps `HEALTH_PORT=0` to None — see `from_port_setting`.
    """

    def __init__(
        self,
        host: str,
        port: int | None,
        readiness: Readiness,
        *,
        metrics: Callable[[], bytes] = render_metrics,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._readiness = readiness
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    @classmethod
    def from_port_setting(cls, host: str, health_port: int, readiness: Readiness) -> HealthServer:
        """Build from the `HEALTH_PORT` setting, where 0 means "no health server"."""
        return cls(host, health_port or None, readiness)

    @property
    def enabled(self) -> bool:
        return self._requested_port is not None

    async def start(self) -> None:
        """Listen; raise `HealthServerError` (one line, naming the setting) if it cannot."""
        if self._requested_port is None or self._server is not None:
            return
        try:
            self._server = await asyncio.start_server(
                self._handle, self.host, self._requested_port, limit=_MAX_REQUEST_BYTES
            )
        except OSError as exc:
            raise HealthServerError(_bind_problem(exc, self.host, self._requested_port)) from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health server listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                head = b""
            status, content_type, body = self._respond(head)
            writer.write(
                f"HTTP/1.0 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n".encode("ascii")
                + body
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[int, str, bytes]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _text(400, "bad request\n")
        method, target = parts[0], parts[1]
        if method != "GET":
            return _text(405, "only GET is supported\n")
        path = target.split("?", 1)[0]
        if path == "/healthz":
            return _text(200, "ok\n")
        if path == "/readyz":
            try:
                ready, details = self._readiness()
            except Exception as exc:  # a readiness bug must answer "not ready", not crash
                ready, details = False, {"error": f"readiness check failed: {exc}"}
            body = json.dumps({"ready": ready, **details}, default=str).encode()
            return (200 if ready else 503), "application/json", body
        if path == "/metrics":
            return 200, _PROMETHEUS_CONTENT_TYPE, self._metrics()
        return _text(404, "not found: try /healthz, /readyz or /metrics\n")


def _bind_problem(exc: OSError, host: str, port: int) -> str:
    """What a failed bind means for someone setting HEALTH_HOST / HEALTH_PORT."""
    off = "(HEALTH_PORT=0 turns the health server off)"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        # asyncio rewrites a bind error's strerror into a sentence of its own.
        reason = exc.strerror if isinstance(exc, socket.gaierror) else os.strerror(exc.errno or 0)
        return (
            f"HEALTH_HOST={host} is not an address of this machine ({reason}): use "
            f"0.0.0.0 for every interface, 127.0.0.1, or one of this machine's addresses {off}"
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"HEALTH_PORT={port} is already in use on {host}: stop the other process "
            f"listening there, or set HEALTH_PORT to a free port {off}"
        )
    if exc.errno == errno.EACCES:
        return (
            f"HEALTH_PORT={port} on {host} is not permitted (ports below 1024 need "
            f"privileges): set HEALTH_PORT to 1024 or above {off}"
        )
    return f"the health server cannot listen on HEALTH_HOST={host}, HEALTH_PORT={port}: {exc}"


def _text(status: int, text: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", text.encode()
