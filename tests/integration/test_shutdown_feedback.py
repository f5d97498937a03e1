"""Shutdown with Kafka down says what it waits for, and a second signal stops at once.

No broker at all: KAFKA_BROKERS is a closed port, so every record the simulator's chat
brings stays in the buffer. SHUTDOWN_TIMEOUT_S is long, so only the second signal can
explain a quick exit.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.service_process import ServiceProcess
from twitch_ingestion import component_configs as configs
from twitch_ingestion.buffer.modes import buffer_from_config
from twitch_ingestion.config import Settings
from twitch_ingestion.service import ExitCode
from twitch_ingestion.simulator import SimulatorThread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHANNEL = "alpha"
COUNT = 50
SHUTDOWN_TIMEOUT_S = 600


def buffered_records(buffer_dir: Path) -> int:
    settings = Settings(_env_file=None, twitch_channel=[CHANNEL], buffer_dir=buffer_dir)  # type: ignore[call-arg]
    buffer = buffer_from_config(configs.buffer_config(settings))
    buffer.open()
    try:
        return buffer.records
    finally:
        buffer.close()


def start(workdir: Path, simulator: SimulatorThread, state: Path) -> ServiceProcess:
    workdir.mkdir(exist_ok=True)
    return ServiceProcess(
        workdir,
        {
            "TWITCH_CHANNEL": CHANNEL,
            "TWITCH_IRC_HOST": simulator.host,
            "TWITCH_IRC_PORT": str(simulator.port),
            "TWITCH_IRC_TLS": "false",
            "KAFKA_BROKERS": "127.0.0.1:1",
            # BUFFER_DIR left at its default, under the XDG state directory.
            "XDG_STATE_HOME": str(state),
            "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
        },
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once_and_the_records_stay_in_the_buffer(
    simulator: SimulatorThread, tmp_path: Path, sig: signal.Signals
) -> None:
    state = tmp_path / "state"
    buffer_dir = state / "twitch-ingestion" / "buffer"
    service = start(tmp_path / "first", simulator, state)
    try:
        assert service.wait_for_log("buffer ready")["directory"] == str(buffer_dir)
        simulator.wait_for_joined([CHANNEL], timeout=30)
        simulator.start_numbered([CHANNEL], rate=500, count=COUNT).wait(timeout=30)
        service.process.send_signal(sig)
        waiting = service.wait_for_log("shutdown waiting for kafka")
        assert waiting["records"] >= COUNT
        assert SHUTDOWN_TIMEOUT_S - 30 <= waiting["up_to_s"] <= SHUTDOWN_TIMEOUT_S
        again = "Ctrl-C" if sig is signal.SIGINT else "SIGTERM"
        assert waiting["hint"].startswith(f"{again} again to stop now; the records stay")

        service.process.send_signal(sig)
        # At once: the exit must come well inside SHUTDOWN_TIMEOUT_S, which the service
        # would otherwise wait out (wait_exit fails the test past its bound).
        code = service.wait_exit(timeout_s=SHUTDOWN_TIMEOUT_S / 10)
        assert code == ExitCode.FAILURE, service.logs()[-3000:]
        stopped = service.wait_for_log("service stopped")
        assert stopped["undelivered"] >= COUNT
        assert service.wait_for_log("stopping now")["signal"] == sig.name
        assert "Traceback" not in service.logs()
        # One line per Kafka failure: ours, not librdkafka's copy of it as well.
        failures = [e for e in service.log_events() if e["event"] == "kafka client error"]
        assert failures
        librdkafka = [e["event"] for e in service.log_events() if e.get("logger") == "librdkafka"]
        assert not [line for line in librdkafka if line.startswith(("FAIL", "ERROR"))]
    finally:
        service.close()
    assert buffered_records(buffer_dir) == stopped["undelivered"]

    # Started again from another directory, it finds them, and says so.
    restarted = start(tmp_path / "elsewhere", simulator, state)
    try:
        ready = restarted.wait_for_log("buffer ready")
        assert ready["directory"] == str(buffer_dir)
        assert ready["records_waiting"] == stopped["undelivered"]
    finally:
        restarted.close()
