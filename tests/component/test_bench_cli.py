"""`python -m bench` as a user meets it: without a broker, one line saying what to start.

Offline: the Kafka address is a closed port, so nothing is reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port

_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("only", ["hotpath", "throughput,parse"])
def test_bench_without_a_broker_is_one_line_naming_make_broker(only: str) -> None:
    brokers = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "KAFKA_BROKERS": brokers}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--only", only, "--broker-timeout-s", "0.5"],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith(f"python -m bench: no Kafka broker answers at {brokers} ")
    assert "make broker" in line
    assert result.stdout == ""  # no benchmark started: nothing to report
