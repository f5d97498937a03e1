"""`top`'s shell: scrape each instance every interval, follow the fleet, read the keys.

Nothing here decides what to show (`model.py`, `screen.py`). A target that cannot be
read is a line on screen saying so, tried again next interval — never a traceback; `q`
(or Ctrl-C) quits and gives the terminal back as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import os
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console
from rich.live import Live

from twitch_ingestion.config import Settings
from twitch_ingestion.top.model import InstanceRates, Scrape, parse_scrape
from twitch_ingestion.top.screen import FleetPanel, Screen, TargetState, render

__all__ = ["add_top_arguments", "run_top_command"]

# The fleet's reports change on a hand-over or every 30 s heartbeat; reading the control
# topics is heavier than a scrape, so it is done this often, off the loop.
_FLEET_REFRESH_S = 5.0
_FLEET_TIMEOUT_S = 5.0
# Rates are taken over the last few seconds of scrapes, not from one to the next: the
# service publishes some counters once a second, so one step could read 0 or 2 s worth.
_RATE_WINDOW_S = 5.0


def add_top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "urls",
        nargs="*",
        metavar="URL",
        help="/metrics URLs to watch (default: this machine's, http://127.0.0.1:HEALTH_PORT"
        "/metrics; with --fleet: every instance its report names)",
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="also read the fleet's reports (CHANNEL_SOURCE=kafka): which instance reads "
        "which channel, and channels nobody reads",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="with --fleet and no URL: the port of each instance's /metrics (default: HEALTH_PORT)",
    )
    parser.add_argument("--interval-s", type=float, default=1.0, help="refresh period")
    parser.add_argument(
        "--quiet-s",
        type=float,
        default=60.0,
        help="a channel silent this long while the others talk is highlighted",
    )


@dataclass(frozen=True, slots=True)
class _Options:
    urls: tuple[str, ...]
    fleet: bool
    metrics_port: int
    interval_s: float
    quiet_after_s: float


def run_top_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.interval_s <= 0 or args.quiet_s <= 0:
        print("twitch-ingestion top: --interval-s and --quiet-s must be > 0", file=sys.stderr)
        return 2
    urls = tuple(args.urls)
    if not urls and not args.fleet:
        urls = (f"http://127.0.0.1:{settings.health_port or 8080}/metrics",)
    options = _Options(
        urls=urls,
        fleet=args.fleet,
        metrics_port=args.metrics_port or settings.health_port or 8080,
        interval_s=args.interval_s,
        quiet_after_s=args.quiet_s,
    )
    return asyncio.run(_Top(options, settings).run())


class _Top:
    def __init__(self, options: _Options, settings: Settings) -> None:
        self._options = options
        self._settings = settings
        self._history: dict[str, collections.deque[Scrape]] = {}
        self._window = max(2, math.ceil(_RATE_WINDOW_S / options.interval_s) + 1)
        self._fleet: FleetPanel | None = (
            FleetPanel(problem="reading the reports…") if (options.fleet) else None
        )
        self._fleet_targets: list[tuple[str, str]] = []
        self._owners: dict[str, str] = {}

    async def run(self) -> int:
        options = self._options
        console = Console()
        keys: asyncio.Queue[bytes] = asyncio.Queue()
        timeout = aiohttp.ClientTimeout(total=max(0.5, min(2.0, options.interval_s)))
        fleet_task = (
            asyncio.create_task(self._follow_fleet(), name="top-fleet") if options.fleet else None
        )
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                with (
                    _keys_from_stdin(asyncio.get_running_loop(), keys),
                    Live(console=console, screen=True, auto_refresh=False) as live,
                ):
                    while True:
                        started = time.monotonic()
                        states = await asyncio.gather(
                            *(self._scrape(http, name, url) for name, url in self._targets())
                        )
                        screen = Screen(
                            targets=states,
                            interval_s=options.interval_s,
                            quiet_after_s=options.quiet_after_s,
                            fleet=self._fleet,
                            owners=self._owners,
                        )
                        live.update(render(screen, height=console.height), refresh=True)
                        deadline = started + options.interval_s
                        if await _quit_pressed(keys, deadline):
                            return 0
        finally:
            if fleet_task is not None:
                fleet_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fleet_task

    def _targets(self) -> list[tuple[str, str]]:
        if self._options.urls:
            return [(_name_of(url), url) for url in self._options.urls]
        return self._fleet_targets

    async def _scrape(self, http: aiohttp.ClientSession, name: str, url: str) -> TargetState:
        try:
            async with http.get(url) as response:
                if response.status != 200:
                    return TargetState(name, url, problem=f"HTTP {response.status}")
                text = await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return TargetState(name, url, problem=_describe(exc))
        try:
            scrape = parse_scrape(url, time.time(), text)
        except ValueError as exc:
            return TargetState(name, url, problem=f"not Prometheus metrics ({exc})")
        history = self._history.setdefault(url, collections.deque(maxlen=self._window))
        before = history[0] if history else None
        history.append(scrape)
        rates = InstanceRates.between(
            before, scrape, instance=name, quiet_after_s=self._options.quiet_after_s
        )
        return TargetState(name, url, rates=rates)

    async def _follow_fleet(self) -> None:
        from confluent_kafka import KafkaException

        from twitch_ingestion import component_configs as configs
        from twitch_ingestion.fleet.status import describe_fleet

        control = configs.control_topics_config(self._settings)
        port = self._options.metrics_port
        while True:
            try:
                status = await asyncio.to_thread(
                    describe_fleet, control, timeout_s=_FLEET_TIMEOUT_S
                )
            except KafkaException as exc:
                error = exc.args[0] if exc.args else exc
                text = error.str() if hasattr(error, "str") else str(error)
                self._fleet = FleetPanel(problem=f"Kafka at {self._settings.kafka_brokers}: {text}")
            else:
                owners: dict[str, str] = {}
                rows = []
                targets = []
                for view in status.instances:
                    report = view.report
                    if report is not None:
                        releasing = set(report.releasing)
                        for channel in report.channels:
                            if channel not in releasing:
                                owners[channel] = view.instance_id
                        targets.append((view.instance_id, f"http://{report.host}:{port}/metrics"))
                    rows.append(
                        (
                            view.instance_id,
                            view.in_group,
                            len(report.channels) if report is not None else 0,
                            report.ready if report is not None else None,
                            view.report_age_s,
                        )
                    )
                self._fleet = FleetPanel(instances=rows, unassigned=status.unassigned_channels)
                self._owners = owners
                self._fleet_targets = targets
            await asyncio.sleep(_FLEET_REFRESH_S)


async def _quit_pressed(keys: asyncio.Queue[bytes], deadline: float) -> bool:
    """Wait until `deadline` (monotonic) for `q`; True when it was pressed."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            pressed = await asyncio.wait_for(keys.get(), left)
        except TimeoutError:
            return False
        if b"q" in pressed.lower():
            return True
    return False


@contextlib.contextmanager
def _keys_from_stdin(loop: asyncio.AbstractEventLoop, keys: asyncio.Queue[bytes]) -> Iterator[None]:
    """Keys as they are typed (cbreak mode), into `keys`; the terminal restored after."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield  # no terminal to read: Ctrl-C still quits
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def readable() -> None:
        with contextlib.suppress(OSError):
            keys.put_nowait(os.read(fd, 64))

    loop.add_reader(fd, readable)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _name_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def _describe(exc: BaseException) -> str:
    """One line for a failed scrape (the endpoint down, a timeout, a bad address)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        # asyncio words a refused connection as "Connect call failed (…)": say what it is.
        code = exc.os_error.errno
        reason = os.strerror(code) if code else (exc.os_error.strerror or "cannot connect")
        return reason.lower()
    if isinstance(exc, aiohttp.InvalidURL):
        return "not a valid URL"
    return str(exc) or type(exc).__name__
