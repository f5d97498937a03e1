"""Liveness, readiness and Prometheus metrics over HTTP, served by aiohttp.

Three GET endpoints are all an orchestrator and a scraper need:

* `/healthz` — 200 while the process runs (the event loop answering is the check);
* `/readyz`  — 200 when `readiness()` says ready, else 503; the JSON body lists what is
  and is not ready either way;
* `/metrics` — `render_metrics()` in the Prometheus text format.

Any other method (HEAD included) is 405 and any other path 404, each with a line saying
what is served. aiohttp (already a dependency for EventSub) speaks the protocol, so its
rules apply at the edges: a request it cannot parse (or an HTTP/1.1 one without Host) is
its own 400; a client that half-closes its side is taken as gone and gets no answer; the
status line carries the request's HTTP version. Every response closes the connection,
which keeps the server stateless: a probe or a scrape is one request per connection.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from twitch_ingestion.metrics import render_metrics

__all__ = ["HealthConfig", "HealthServer", "HealthServerError", "Readiness"]

log = structlog.get_logger(__name__)

Readiness = Callable[[], tuple[bool, dict[str, object]]]

# A probe sends its request at once; a connection that has not sent a whole request
# after this long is not a probe, and is closed so it cannot hold a file descriptor.
# (aiohttp's keep-alive timer also runs from the moment a connection is accepted.)
_REQUEST_TIMEOUT_S = 5.0
# Requests take microseconds to answer, so stop() need not wait long for one in flight.
_SHUTDOWN_TIMEOUT_S = 1.0
_PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

# aiohttp logs through this logger: requests it could not parse (a port scanner, TLS
# sent to a plain port) and errors raised by a handler.
_http_log = logging.getLogger(f"{__name__}.http")


class _ClientMistakesWithoutTraceback(logging.Filter):
    """A request aiohttp cannot parse is the client's mistake, already answered with 400:
    at most a one-line debug record, never an error with our traceback attached.

    Errors raised by our own handlers (a bug) still pass through with their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        problem = record.exc_info[1] if record.exc_info else None
        if not isinstance(problem, HttpProcessingError):
            return True
        if not _http_log.isEnabledFor(logging.DEBUG):
            return False
        # aiohttp's message draws a caret under the bad byte over several lines: one line.
        record.msg = "health server answered 400 to a request it could not parse: %s"
        record.args = (" ".join(problem.message.split()),)
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        record.exc_info = record.exc_text = None
        return True


_http_log.addFilter(_ClientMistakesWithoutTraceback())


@dataclass(frozen=True)
class HealthConfig:
    """Where the health server listens (`component_configs.health_config`)."""

    host: str
    """HEALTH_HOST: the address to bind (0.0.0.0: every interface)."""
    port: int | None
    """The port to bind; None: no health server; 0: an ephemeral port (tests)."""

    @classmethod
    def from_port_setting(cls, host: str, health_port: int) -> HealthConfig:
        """From HEALTH_HOST and HEALTH_PORT, where HEALTH_PORT=0 means "no health server"."""
        return cls(host, health_port or None)


class HealthServerError(Exception):
    """The health server cannot listen; the message names the setting and the fix."""


class HealthServer:
    """The HTTP endpoints above on `host:port`.

    `port=None` turns the server off (`start()` does nothing); `port=0` binds an
    ephemeral port, readable from `.port` after `start()` (tests use that). The service
    builds it `from_config`, where `HEALTH_PORT=0` became None (`HealthConfig`).
    """

    def __init__(
        self,
        host: str,
        port: int | None,
        readiness: Readiness,
        *,
        metrics: Callable[[], bytes] = render_metrics,
        request_timeout_s: float = _REQUEST_TIMEOUT_S,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._readiness = readiness
        self._metrics = metrics
        self._request_timeout_s = request_timeout_s
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @classmethod
    def from_config(cls, config: HealthConfig, readiness: Readiness) -> HealthServer:
        return cls(config.host, config.port, readiness)

    @classmethod
    def from_port_setting(cls, host: str, health_port: int, readiness: Readiness) -> HealthServer:
        """Build from the `HEALTH_PORT` setting, where 0 means "no health server"."""
        return cls.from_config(HealthConfig.from_port_setting(host, health_port), readiness)

    @property
    def enabled(self) -> bool:
        return self._requested_port is not None

    async def start(self) -> None:
        """Listen; raise `HealthServerError` (one line, naming the setting) if it cannot."""
        if self._requested_port is None or self._runner is not None:
            return
        app = web.Application(middlewares=[_only_get_and_plain_misses])
        app.router.add_get("/healthz", self._healthz, allow_head=False)
        app.router.add_get("/readyz", self._readyz, allow_head=False)
        app.router.add_get("/metrics", self._render_metrics, allow_head=False)
        runner = web.AppRunner(
            app,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
            # Probes and scrapes arrive every few seconds: no access log, ever.
            access_log=None,
            logger=_http_log,
            keepalive_timeout=self._request_timeout_s,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            raise HealthServerError(_bind_problem(exc, self.host, self._requested_port)) from None
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("health server listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _text(200, "ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        try:
            ready, details = self._readiness()
        except Exception as exc:  # a readiness bug must answer "not ready", not crash
            ready, details = False, {"error": f"readiness check failed: {exc}"}
        body = json.dumps({"ready": ready, **details}, default=str).encode()
        return _response(200 if ready else 503, "application/json", body)

    async def _render_metrics(self, _request: web.Request) -> web.Response:
        return _response(200, _PROMETHEUS_CONTENT_TYPE, self._metrics())


@web.middleware
async def _only_get_and_plain_misses(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """405 for any method but GET (on any path), 404 for any other path: both as a line
    of text that says what is served, rather than aiohttp's generic pages."""
    if request.method != "GET":
        response = _text(405, "only GET is supported\n")
        response.headers["Allow"] = "GET"
        return response
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _text(404, "not found: try /healthz, /readyz or /metrics\n")


def _response(status: int, content_type: str, body: bytes) -> web.Response:
    response = web.Response(
        status=status,
        body=body,
        headers={
            "Content-Type": content_type,
            "Cache-Control": "no-store",
            "Connection": "close",
        },
    )
    response.force_close()
    return response


def _text(status: int, text: str) -> web.Response:
    return _response(status, _TEXT_CONTENT_TYPE, text.encode())


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
