"""The simulator ships in the package but stays out of the pipeline (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys


def test_the_service_loads_no_simulator_module() -> None:
    # A fresh interpreter: this test process has imported the simulator already.
    probe = (
        "import sys, twitch_ingestion.service\n"
        "print(sorted(m for m in sys.modules if m.startswith('twitch_ingestion.simulator')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
