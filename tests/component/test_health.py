"""The health server: /healthz, /readyz and /metrics over HTTP (aiohttp)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import platform
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import confluent_kafka
import pytest

from twitch_ingestion import __version__
from twitch_ingestion.health import HealthServer, HealthServerError, _bind_problem


async def exchange(port: int, raw: bytes, *, half_close: bool = False) -> bytes:
    """Send `raw`, read until the server closes; no write_eof() unless asked, since
    aiohttp takes a half-close for a client that has gone."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    if half_close:
        writer.write_eof()
    response = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    await writer.wait_closed()
    return response


async def get(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    response = await exchange(port, request)
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def status_code(response: bytes) -> int:
    # The status line answers in the request's HTTP version (1.0 for what is unparseable).
    status_line = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert status_line is not None, response
    return int(status_line[1])


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


class Readiness:
    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> tuple[bool, dict[str, object]]:
        return self.ready, {"connections": [{"connection": "twitch-1", "joined": 3}]}


@asynccontextmanager
async def running(health: HealthServer) -> AsyncIterator[int]:
    await health.start()
    try:
        assert health.port is not None
        yield health.port
    finally:
        await health.stop()


@pytest.fixture
async def server() -> AsyncIterator[tuple[HealthServer, Readiness]]:
    readiness = Readiness()
    health = HealthServer(
        "127.0.0.1", 0, readiness, metrics=lambda: b"twitch_ingestion_irc_lines_received 5\n"
    )
    await health.start()
    try:
        yield health, readiness
    finally:
        await health.stop()


@pytest.fixture
def port(server: tuple[HealthServer, Readiness]) -> int:
    health, _ = server
    assert health.port is not None
    return health.port


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
    assert body == b"twitch_ingestion_irc_lines_received 5\n"


async def test_the_real_metric_catalogue_renders() -> None:
    health = HealthServer("127.0.0.1", 0, lambda: (True, {}))
    await health.start()
    try:
        assert health.port is not None
        status, _, body = await get(health.port, request("/metrics"))
    finally:
        await health.stop()
    assert status == 200
    assert b"twitch_ingestion_irc_lines_received_total" in body


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (request("/nope"), 404),
        (request("/healthz", method="POST"), 405),
        (b"garbage\r\n\r\n", 400),
        (request("/healthz", method="HEAD"), 405),
        (request("/nope", method="DELETE"), 405),  # the method is checked before the path
        (b"GET /healthz HTTP/9.9\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 requires Host (RFC 9112 3.2)
        (b"GET /" + b"a" * 9000 + b" HTTP/1.0\r\n\r\n", 400),  # not a probe
    ],
)
async def test_anything_else_gets_a_clear_error(
    server: tuple[HealthServer, Readiness], raw: bytes, expected: int
) -> None:
    health, _ = server
    assert health.port is not None
    assert status_code(await exchange(health.port, raw)) == expected


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


async def test_a_client_that_stops_sending_mid_request_is_hung_up_on_quietly(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp takes a half-close as the client leaving: no answer (the old server sent
    # 400), no log line.
    caplog.set_level(logging.DEBUG)
    raw = b"GET /healthz HTTP/1.0\r\n"
    assert await exchange(port, raw, half_close=True) == b""
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


async def test_a_slow_client_cannot_block_readiness_and_is_dropped() -> None:
    readiness = Readiness()
    readiness.ready = True
    async with running(HealthServer("127.0.0.1", 0, readiness, request_timeout_s=0.2)) as port:
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"GET /readyz HTTP/1.1\r\nHost: loc")  # ... and nothing more
        await slow_writer.drain()

        status, _, _ = await get(port, request("/readyz"))
        assert status == 200

        # Past the request timeout the slow connection is closed, without an answer.
        assert await asyncio.wait_for(slow_reader.read(), 5) == b""
        slow_writer.close()
        await slow_writer.wait_closed()


async def test_stop_closes_connections_that_never_sent_a_request() -> None:
    health = HealthServer("127.0.0.1", 0, lambda: (True, {}))
    async with running(health) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hea")
        await writer.drain()
        await asyncio.wait_for(health.stop(), 5)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await writer.wait_closed()


async def test_an_http_1_0_probe_without_host_is_answered_in_http_1_0(
    port: int,
) -> None:
    # e.g. `printf 'GET /healthz HTTP/1.0\r\n\r\n' | nc -q 5 host 8080` in a shell probe.
    response = await exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"\r\nCache-Control: no-store\r\n" in response
    assert response.endswith(b"\r\n\r\nok\n")


async def test_method_not_allowed_names_the_allowed_method(
    port: int,
) -> None:
    status, headers, body = await get(port, request("/metrics", method="PUT"))
    assert (status, headers["Allow"], body) == (405, "GET", b"only GET is supported\n")
    status, _, body = await get(port, request("/readyz/"))
    assert (status, body) == (404, b"not found: try /healthz, /readyz or /metrics\n")


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage\r\n\r\n",  # not HTTP at all
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\nBad Header\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    ],
)
async def test_a_malformed_request_is_400_and_never_a_traceback_in_our_logs(
    port: int, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    for level in (logging.INFO, logging.DEBUG):
        caplog.clear()
        caplog.set_level(level)
        assert status_code(await exchange(port, raw)) == 400
        # The client's mistake: nothing at info, one debug line without a traceback.
        noted = [(r.levelno, r.exc_info, "\n" in r.getMessage()) for r in caplog.records]
        assert noted == ([] if level == logging.INFO else [(logging.DEBUG, None, False)])


async def test_answering_requests_logs_nothing(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for path in ("/healthz", "/readyz", "/metrics", "/nope"):
        await get(port, request(path))
    assert caplog.records == []  # no access log: probes come every few seconds


async def test_a_metrics_bug_is_a_500_with_its_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> bytes:
        raise RuntimeError("collector exploded")

    async with running(HealthServer("127.0.0.1", 0, lambda: (True, {}), metrics=broken)) as port:
        status, _, body = await get(port, request("/metrics"))
    assert status == 500
    assert b"collector exploded" not in body  # the details go to the log, not the client
    [bug] = [r for r in caplog.records if r.exc_info]
    assert bug.levelno == logging.ERROR
    assert "collector exploded" in str(bug.exc_info[1])  # type: ignore[index]


async def test_a_failed_start_can_be_retried_once_the_port_is_free() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        health = HealthServer.from_port_setting("127.0.0.1", port, lambda: (True, {}))
        with pytest.raises(HealthServerError):
            await health.start()
    assert health.port is None  # nothing half-started is left behind
    async with running(health) as bound:
        assert bound == port
        status, _, _ = await get(port, request("/healthz"))
        assert status == 200
