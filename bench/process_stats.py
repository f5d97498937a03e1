"""CPU time and memory of another process, from /proc (Linux only).

CPU is utime + stime of every thread of the process (librdkafka's threads included),
in clock ticks of 1/`SC_CLK_TCK` s (10 ms on Linux): over a 10 s window that is 0.1 %
resolution. Peak RSS is the kernel's high-water mark (`VmHWM`), read while the process
is still alive.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSample", "ProcessStats"]

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/stat fields after the command name: state is field 3, utime 14, stime 15.
_UTIME_AFTER_COMM = 14 - 3
_STIME_AFTER_COMM = 15 - 3


@dataclass(frozen=True, slots=True)
class CpuSample:
    wall_s: float
    """`time.monotonic()` when the sample was taken."""
    cpu_s: float
    """User + system CPU seconds the process has used since it started."""


class ProcessStats:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc = Path(f"/proc/{pid}")

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self._proc / "stat")

    def cpu_seconds_by_thread(self) -> dict[str, float]:
        """CPU seconds per thread name (`comm`: `python` is the event loop, `rdk:…` are
        librdkafka's); threads that share a name are summed. Threads that already ended
        are missing, so the sum can be below `cpu_seconds()`."""
        by_name: dict[str, float] = {}
        for task in (self._proc / "task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                seconds = _cpu_seconds(task / "stat")
            except OSError:  # the thread ended between listing and reading
                continue
            by_name[name] = by_name.get(name, 0.0) + seconds
        return by_name

    def sample(self) -> CpuSample:
        return CpuSample(time.monotonic(), self.cpu_seconds())

    def _status_number(self, key: str) -> int:
        for line in (self._proc / "status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
        raise KeyError(f"{key} not in /proc/{self.pid}/status")

    def rss_bytes(self) -> int:
        return self._status_number("VmRSS:") * 1024

    def peak_rss_bytes(self) -> int:
        return self._status_number("VmHWM:") * 1024

    def threads(self) -> int:
        return self._status_number("Threads:")


def _cpu_seconds(stat_path: Path) -> float:
    stat = stat_path.read_text()
    # The command name is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[_UTIME_AFTER_COMM]) + int(fields[_STIME_AFTER_COMM])
    return ticks / _CLOCK_TICKS_PER_S
