"""The health server: /healthz, /readyz and /metrics over plain HTTP/1.0."""

from __future__ import annotations

import asyncio
import errno
import json
import platform
import re
import socket
from collections.abc import AsyncIterator

import confluent_kafka
import pytest

from twitch_ingestion import __version__
from twitch_ingestion.health import HealthServer, HealthServerError, _bind_problem


async def get(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    response = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


class Readiness:
    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> tuple[bool, dict[str, object]]:
        return self.ready, {"connections": [{"connection": "twitch-1", "joined": 3}]}


@pytest.fixture
async def server() -> AsyncIterator[tuple[HealthServer, Readiness]]:
    readiness = Readiness()
    health = HealthServer("127.0.0.1", 0, readiness, metrics=lambda: b"twitch_lines_received 5\n")
    await health.start()
    try:
        yield health, readiness
    finally:
        await health.stop()


async def test_healthz_is_ok_while_the_process_runs(server: tuple[HealthServer, Readiness]) -> None:
    health, _ = server
    assert health.port is not None
    status, headers, body = await get(health.port, request("/healthz"))
    assert (status, body) == (200, b"ok\n")
    assert headers["Connection"] == "close"
    assert headers["Content-Length"] == "3"


async def test_readyz_is_503_with_details_until_ready(
    server: tuple[HealthServer, Readiness],
) -> None:
    health, readiness = server
    assert health.port is not None

    status, headers, body = await get(health.port, request("/readyz"))
    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "ready": False,
        "connections": [{"connection": "twitch-1", "joined": 3}],
    }

    readiness.ready = True
    status, _, body = await get(health.port, request("/readyz?verbose=1"))
    assert status == 200
    assert json.loads(body)["ready"] is True


async def test_a_crashing_readiness_check_means_not_ready() -> None:
    def broken() -> tuple[bool, dict[str, object]]:
        raise RuntimeError("boom")

    health = HealthServer("127.0.0.1", 0, broken)
    await health.start()
    try:
        assert health.port is not None
        status, _, body = await get(health.port, request("/readyz"))
    finally:
        await health.stop()
    assert status == 503
    assert "boom" in json.loads(body)["error"]


async def test_metrics_use_the_prometheus_text_format(
    server: tuple[HealthServer, Readiness],
) -> None:
    health, _ = server
    assert health.port is not None
    status, headers, body = await get(health.port, request("/metrics"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert body == b"twitch_lines_received 5\n"


async def test_the_real_metric_catalogue_renders() -> None:
    health = HealthServer("127.0.0.1", 0, lambda: (True, {}))
    await health.start()
    try:
        assert health.port is not None
        status, _, body = await get(health.port, request("/metrics"))
    finally:
        await health.stop()
    assert status == 200
    assert b"twitch_lines_received_total" in body


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (request("/nope"), 404),
        (request("/healthz", method="POST"), 405),
        (b"garbage\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.0\r\n", 400),  # the client hung up before the blank line
    ],
)
async def test_anything_else_gets_a_clear_error(
    server: tuple[HealthServer, Readiness], raw: bytes, expected: int
) -> None:
    health, _ = server
    assert health.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", health.port)
    writer.write(raw)
    writer.write_eof()
    response = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    await writer.wait_closed()
    assert response.startswith(f"HTTP/1.0 {expected} ".encode())


async def test_port_none_means_off_and_health_port_zero_maps_to_it() -> None:
    off = HealthServer.from_port_setting("127.0.0.1", 0, lambda: (True, {}))
    await off.start()
    assert not off.enabled
    assert off.port is None
    await off.stop()


async def test_metrics_include_build_info_and_the_standard_process_collectors() -> None:
    health = HealthServer("127.0.0.1", 0, lambda: (True, {}))
    await health.start()
    try:
        assert health.port is not None
        _, _, body = await get(health.port, request("/metrics"))
    finally:
        await health.stop()
    text = body.decode()
    build_info = re.search(r"^twitch_ingestion_build_info\{(.*)\} 1\.0$", text, re.MULTILINE)
    assert build_info is not None, text
    labels = dict(re.findall(r'(\w+)="([^"]*)"', build_info.group(1)))
    assert labels == {
        "version": __version__,
        "python": platform.python_version(),
        "librdkafka": confluent_kafka.libversion()[0],
    }
    for series in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info{",
        "python_gc_collections_total{",
    ):
        assert series in text, series


async def test_a_busy_port_is_one_clear_error_naming_health_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        health = HealthServer.from_port_setting("127.0.0.1", port, lambda: (True, {}))
        with pytest.raises(HealthServerError) as raised:
            await health.start()
    message = str(raised.value)
    assert f"HEALTH_PORT={port} is already in use" in message
    assert "\n" not in message
    assert raised.value.__cause__ is None  # raised `from None`: no chained traceback


async def test_an_address_not_on_this_machine_names_health_host() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a local interface.
    health = HealthServer.from_port_setting("192.0.2.1", 18080, lambda: (True, {}))
    with pytest.raises(HealthServerError, match=r"^HEALTH_HOST=192\.0\.2\.1 is not an address"):
        await health.start()


def test_a_port_that_is_not_permitted_says_which_ports_are() -> None:
    # Root may bind anything, so the refusal is built directly from the OS error.
    refused = OSError(errno.EACCES, "error while attempting to bind: permission denied")
    message = _bind_problem(refused, "0.0.0.0", 80)
    assert message.startswith("HEALTH_PORT=80 on 0.0.0.0 is not permitted")
    assert "1024 or above" in message
