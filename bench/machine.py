"""The machine the figures come from, and whether something else is using it.

The benchmarks share a 2-core machine with the broker and, often, other people's test
runs. Every figure records the load average; `wait_for_quiet` lets a run start only once
the other processes leave the CPUs (mostly) alone, and `busy_cores` says how much they
were using just before.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["busy_cores", "cpu_ticks", "load_average", "machine_info", "wait_for_quiet"]

REPO_DIR = Path(__file__).resolve().parents[1]


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the figures depend on besides the code."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_gib": _mem_total_gib(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": _git_revision(),
        "src_sha256": _source_digest(),
    }


def _source_digest() -> str:
    """Digest of `src/**/*.py`: which code was measured, even in a dirty working tree."""
    digest = hashlib.sha256()
    for path in sorted((REPO_DIR / "src").rglob("*.py")):
        digest.update(path.relative_to(REPO_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot, from the first line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user … steal; guest time is already in user
    return total - idle, total


def busy_cores(sample_s: float = 1.0) -> float:
    """How many CPUs were busy on average over the next `sample_s` (all processes)."""
    busy_before, total_before = cpu_ticks()
    time.sleep(sample_s)
    busy_after, total_after = cpu_ticks()
    cpus = os.cpu_count() or 1
    return cpus * (busy_after - busy_before) / max(1, total_after - total_before)


def wait_for_quiet(max_busy_cores: float, timeout_s: float) -> float:
    """Wait (up to `timeout_s`) until the machine is busy less than `max_busy_cores`
    while this process is idle; returns the last measured busy cores."""
    deadline = time.monotonic() + timeout_s
    busy = busy_cores()
    while busy > max_busy_cores and time.monotonic() < deadline:
        busy = busy_cores(2.0)
    return busy
