"""Reading a running service's health server: `/readyz`, `/metrics`.

`target` is the service's environment (its `HEALTH_PORT`) or the port itself.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping


def http_get(target: Mapping[str, str] | int, path: str) -> tuple[int, str]:
    """(status, body) of `GET path`; a 503 is an answer, not an error.

    An `OSError` (nothing listening yet) is raised: `waiting.wait_until` treats it as
    "not yet".
    """
    port = target if isinstance(target, int) else int(target["HEALTH_PORT"])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:  # /readyz answers 503 while not ready
        return error.code, error.read().decode()


def metric(target: Mapping[str, str] | int, sample: str, *, default: float | None = None) -> float:
    """One sample from /metrics, e.g. `twitch_ingestion_buffer_bytes` or
    `name{label="value"}`.

    A sample that is not there is `default`; without one, that fails the test (a gauge
    that is not exported is a bug; a labelled counter appears only once counted, so its
    readers pass `default=0.0`).
    """
    _, text = http_get(target, "/metrics")
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    if default is None:
        raise AssertionError(f"{sample} not in /metrics")
    return default
