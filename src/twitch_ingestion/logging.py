"""structlog setup: human-readable in a terminal, JSON lines everywhere else.

The seed used pino + pino-pretty; this is the same split. Log events are for
connection, producer and lifecycle changes and periodic summaries: the hot path never
logs per chat message at info.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

from twitch_ingestion.config import LogFormat

__all__ = [
    "LIBRDKAFKA_LOGGER",
    "RepeatedLineFilter",
    "ReportedElsewhereFilter",
    "configure_default_logging",
    "configure_logging",
    "redact_secrets",
]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Keys whose values are secrets wherever they appear in an event.
_SECRET_KEYS = frozenset(
    {"token", "oauth_token", "twitch_oauth_token", "password", "sasl_password", "sasl.password"}
)
_REDACTED = "**********"

# librdkafka logs every failed connection attempt (several a second while a broker is
# down, for each client); the first is worth reading, the rest only as a count.
LIBRDKAFKA_LOGGER = "librdkafka"
_LIBRDKAFKA_REPEAT_INTERVAL_S = 30.0
# "(after 12ms in state CONNECT)": the only part of a repeated line that changes.
_DURATION = re.compile(r"\b\d+ms\b")
_MAX_REMEMBERED_LINES = 1000
# librdkafka's log facilities for a failed connection or request: the same failure
# reaches the client's error callback (the producer's "kafka client error", the fleet's
# consumer errors) or an exception (the commands), which each report it in one line of
# their own, naming the setting to fix. Logged here too, every failure was two lines.
_REPORTED_ELSEWHERE = frozenset({"FAIL", "ERROR"})


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Last line of defence: blank out any event value under a secret-looking key."""
    for key in event_dict:
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = _REDACTED
    return event_dict


def configure_default_logging() -> None:
    """structlog to stderr at info before the settings are read (or for commands that
    have none), replacing structlog's own default of printing to stdout.

    Loggers are not cached, so `configure_logging` takes over every one of them later.
    stdlib logging is left alone: `simulate` sets it up itself.
    """
    _configure_structlog(logging.INFO, LogFormat.AUTO, cache=False)


def configure_logging(level: str = "info", log_format: LogFormat = LogFormat.AUTO) -> None:
    """Configure structlog (and stdlib logging, for libraries) once at startup."""
    numeric_level = _LEVELS.get(level.lower(), logging.INFO)
    renderer = _configure_structlog(numeric_level, log_format, cache=True)
    # Libraries (librdkafka through confluent-kafka, asyncio, the simulator) log through
    # the standard library: render their records the same way, so the output is one
    # stream of JSON lines (or one pretty console), not a mix of formats.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    librdkafka = logging.getLogger(LIBRDKAFKA_LOGGER)
    for old in [
        f for f in librdkafka.filters if isinstance(f, RepeatedLineFilter | ReportedElsewhereFilter)
    ]:
        librdkafka.removeFilter(old)
    librdkafka.addFilter(ReportedElsewhereFilter())
    librdkafka.addFilter(RepeatedLineFilter(_LIBRDKAFKA_REPEAT_INTERVAL_S))


class ReportedElsewhereFilter(logging.Filter):
    """Drops librdkafka's lines for failures our own code reports (`_REPORTED_ELSEWHERE`):
    one line per Kafka failure. Its other lines (configuration warnings, …) pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        # confluent-kafka logs "%s [%s] %s" % (facility, client name, text).
        facility = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if not isinstance(facility, str):
            facility = record.getMessage().split(" ", 1)[0]
        return facility not in _REPORTED_ELSEWHERE


class RepeatedLineFilter(logging.Filter):
    """Lets a line through once, then the same line at most once per `interval_s`, with
    the number of copies held back in between.

    For librdkafka's logger: a broker outage makes every client log the same FAIL line
    several times a second, which would bury everything else on stderr.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()  # librdkafka logs from several threads' polls
        self._next_allowed: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = _DURATION.sub("…ms", message)
        now = self._clock()
        with self._lock:
            if now < self._next_allowed.get(key, 0.0):
                self._held_back[key] = self._held_back.get(key, 0) + 1
                return False
            if len(self._next_allowed) >= _MAX_REMEMBERED_LINES:
                # Lines seen once long ago need no memory; keep the dict bounded.
                self._next_allowed = {
                    k: t for k, t in self._next_allowed.items() if t > now or k in self._held_back
                }
            self._next_allowed[key] = now + self._interval_s
            held_back = self._held_back.pop(key, 0)
        if held_back:
            record.msg = f"{message} (and {held_back} more like it since the last one)"
            record.args = ()
        return True


def _configure_structlog(numeric_level: int, log_format: LogFormat, *, cache: bool) -> Any:
    """Every structlog event to stderr: JSON lines, or pretty on a terminal;
    returns the renderer for the stdlib handler to share."""
    use_console = log_format is LogFormat.CONSOLE or (
        log_format is LogFormat.AUTO and sys.stderr.isatty()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any
    if use_console:
        renderer = structlog.dev.ConsoleRenderer()
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=cache,
    )
    return renderer
