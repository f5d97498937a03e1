"""The service started as a user starts it: `twitch-ingestion run`, a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.log_events import events

__all__ = ["ServiceProcess", "StartService", "clean_environment", "stop_cleanly"]

# Variables of the developer's shell that must not leak into a test's service.
_OWN_PREFIXES = ("TWITCH_", "KAFKA_", "BUFFER_", "LOG_", "HEALTH_", "SHUTDOWN_", "STATS_")


_UNREACHABLE_AUTH_URL = "http://127.0.0.1:9/oauth2"


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update({"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", "HEALTH_PORT": "0"})
    # Never Twitch's real /validate: a test token would be answered 401 (exit 3) wherever
    # the internet is reachable. Port 9 refuses at once, so the IRC login decides.
    env["TWITCH_AUTH_URL"] = _UNREACHABLE_AUTH_URL
    env.update(extra)
    return env


class ServiceProcess:
    """A running `twitch-ingestion run`, its log file, and ways to stop or kill it."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        args: tuple[str, ...] = ("run",),
        *,
        argv: list[str] | None = None,
    ) -> None:
        """`twitch-ingestion <args>`, or `argv` (a command that runs it, e.g. through a
        shell)."""
        self.workdir = workdir
        self.log_path = workdir / f"service-{time.monotonic_ns()}.log"
        self._log_file = self.log_path.open("wb")
        # cwd is a fresh folder so that a developer's .env is never read by a test.
        self.process = subprocess.Popen(
            argv or [sys.executable, "-m", "twitch_ingestion", *args],
            cwd=workdir,
            # A default BUFFER_DIR (XDG state directory) inside the test's folder.
            env={
                **clean_environment(env),
                "XDG_STATE_HOME": env.get("XDG_STATE_HOME", str(workdir / "state")),
            },
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events

    def wait_for_log(self, event: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for entry in self.log_events():
                if entry.get("event") == event:
                    return entry
            if self.process.poll() is not None:
                raise AssertionError(
                    f"service exited ({self.process.returncode}) before {event!r}:\n{self.logs()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"no {event!r} log within {timeout_s} s:\n{self.logs()[-4000:]}")

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"service still running after {timeout_s} s") from None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait_exit(timeout_s)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_file.close()


# The `start_service` fixture (tests/integration/conftest.py): env → a started service.
StartService = Callable[[dict[str, str]], ServiceProcess]


def stop_cleanly(service: ServiceProcess) -> dict[str, object]:
    """SIGTERM; the service must exit 0 with nothing left undelivered."""
    assert service.stop(signal.SIGTERM) == 0, service.logs()[-4000:]
    stopped = events(service, "service stopped")[-1]
    assert stopped["undelivered"] == 0
    assert not events(service, "kafka producer fatal error")
    return stopped
