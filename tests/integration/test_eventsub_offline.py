"""The README's "EventSub offline" recipe, run as written: `make simulate-eventsub`, then
the service with the settings it wrote, sourced by the shell as the README says."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import collect_records, delete_topics
from tests.integration.service_process import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = "make simulate-eventsub"
SERVICE = "set -a; . ./eventsub-simulator.env; set +a; TWITCH_CHANNEL=demo make run"


def readme_recipe() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"### EventSub offline.*?```bash\n(.*?)```", readme, re.S)
    assert match, "README has no EventSub offline recipe"
    return match.group(1).splitlines()


@pytest.fixture
def chat_topic(kafka_brokers: str) -> Iterator[str]:
    name = f"test-eventsub-offline-{uuid.uuid4().hex[:10]}"
    yield name
    delete_topics(kafka_brokers, [name, f"{name}.events", f"{name}.dlq"])


def test_the_readme_recipe_for_eventsub_offline_brings_chat_to_kafka(
    kafka_brokers: str, chat_topic: str, tmp_path: Path
) -> None:
    assert readme_recipe()[:2] == [SIMULATOR, SERVICE]
    env_file = tmp_path / "eventsub-simulator.env"
    simulator = subprocess.Popen(
        ["make", "-s", "simulate-eventsub", f"EVENTSUB_ENV={env_file}"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    service: ServiceProcess | None = None
    try:
        deadline = time.monotonic() + 60
        while "TWITCH_AUTH_URL=" not in (env_file.read_text() if env_file.exists() else ""):
            assert simulator.poll() is None, simulator.stderr.read() if simulator.stderr else ""
            assert time.monotonic() < deadline, "the simulator wrote no settings"
            time.sleep(0.2)
        written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert written["TWITCH_SOURCE"] == "eventsub"
        assert written["TWITCH_EVENTSUB_URL"] == "ws://127.0.0.1:7080/ws"

        # The README's second line, with `make run` replaced by what it runs (the broker is
        # already up) and the test's own topics.
        service_command = SERVICE.replace("./eventsub-simulator.env", str(env_file)).replace(
            "make run", f"exec {sys.executable} -m twitch_ingestion run"
        )
        service = ServiceProcess(
            tmp_path,
            {
                "KAFKA_BROKERS": kafka_brokers,
                "KAFKA_TOPIC_CHAT_MESSAGES": chat_topic,
                "KAFKA_TOPIC_CHAT_EVENTS": f"{chat_topic}.events",
                "KAFKA_TOPIC_DLQ": f"{chat_topic}.dlq",
                "BUFFER_DIR": str(tmp_path / "buffer"),
            },
            argv=["bash", "-c", service_command],
        )
        records = collect_records(kafka_brokers, chat_topic, expected=5, settle_s=0)
        assert len(records) >= 5, service.logs()[-3000:]
        first = json.loads(records[0].value)
        assert (first["channel_id"], first["ingested_via"]) == ("demo", "eventsub")
        assert service.stop() == 0, service.logs()[-3000:]
    finally:
        if service is not None:
            service.close()
        os.killpg(simulator.pid, signal.SIGINT)
        simulator.wait(timeout=30)
