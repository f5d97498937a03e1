"""Simulator → `twitch-ingestion run` (a subprocess) → the real broker → a consumer.

Over TLS, as in production (TWITCH_IRC_TLS=true is the default): the simulator presents a
certificate from a CA made for this test run, and the service is told to trust that CA
with SSL_CERT_FILE."""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.conftest import twitch_env
from tests.integration.kafka_helpers import collect_records
from tests.integration.service_process import StartService
from tests.support.corpus import CORPORA
from twitch_ingestion.simulator import SimulatorThread, load_corpus
from twitch_ingestion.sources.irc.compiled import extension_available

SEED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "channel_id": str,
    "user_id": str,
    "username": str,
    "message": str,
    "timestamp": int,
    "emotes": list,
}
# 2011-01-01 (before Twitch chat's tmi-sent-ts existed) .. tomorrow: Unix milliseconds.
_MIN_TS_MS = 1_293_840_000_000


def _assert_seed_record(key: bytes | None, value: bytes, now_ms: int) -> dict[str, object]:
    record = json.loads(value.decode("utf-8"))
    for field, kind in SEED_FIELDS.items():
        assert field in record, f"missing {field}: {record}"
        assert isinstance(record[field], kind), f"{field} is {type(record[field])}: {record}"
    assert all(isinstance(code, str) and code for code in record["emotes"])
    assert key is not None
    assert key.decode() == record["channel_id"]
    assert _MIN_TS_MS <= record["timestamp"] <= now_ms + 86_400_000
    assert _MIN_TS_MS <= record["received_at"] <= now_ms + 1000
    assert isinstance(record["message_id"], str)
    assert record["schema_version"] == 1
    return dict(record)


# Both hot paths end to end: `auto` is the compiled one wherever `make install` built it.
@pytest.mark.parametrize("hot_path", ["auto", "python"])
@pytest.mark.parametrize("corpus", CORPORA)
def test_corpus_replay_reaches_kafka_complete_and_well_formed(
    tls_simulator: SimulatorThread,
    tls_ca_file: Path,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
    corpus: Path | None,
    hot_path: str,
) -> None:
    simulator = tls_simulator
    channels = ["forsen", "xqcow"]
    service = start_service(
        {**twitch_env(simulator, channels, ca_file=tls_ca_file), **topics, "HOT_PATH": hot_path}
    )
    simulator.wait_for_joined(channels, timeout=30)

    stream = simulator.start_replay(corpus, rate=0).wait(timeout=120)
    sent_privmsgs = stream.lines_by_command["PRIVMSG"]
    assert sent_privmsgs == load_corpus(corpus).count_by_command(["PRIVMSG"])["PRIVMSG"]

    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=sent_privmsgs
    )
    now_ms = int(time.time() * 1000)
    assert len(records) == sent_privmsgs
    values = [_assert_seed_record(r.key, r.value, now_ms) for r in records]
    ids = [v["message_id"] for v in values if v["message_id"]]
    assert len(ids) > sent_privmsgs * 0.99
    assert len(set(ids)) == len(ids), "duplicate records"
    assert {v["channel_id"] for v in values} == set(channels)
    assert any(v["emotes"] for v in values), "the corpus has emotes; none came through"
    assert any(v["is_action"] for v in values)
    assert any(not str(v["message"]).isascii() for v in values)
    assert any(v["reply_parent_message_id"] for v in values)
    assert any(v["source_room_id"] for v in values), "no Shared Chat message came through"

    assert service.stop() == 0
    stopped = next(e for e in service.log_events() if e["event"] == "service stopped")
    assert stopped["undelivered"] == 0
    expected = "compiled" if hot_path == "auto" and extension_available() else "python"
    said = [e["path"] for e in service.log_events() if e["event"] == "irc hot path"]
    assert said == [expected], "the start-up log names the hot path once"


def test_sigterm_mid_stream_delivers_everything_read(
    tls_simulator: SimulatorThread,
    tls_ca_file: Path,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    simulator = tls_simulator
    channels = ["alpha", "beta", "gamma"]
    service = start_service({**twitch_env(simulator, channels, ca_file=tls_ca_file), **topics})
    simulator.wait_for_joined(channels, timeout=30)
    stream = simulator.start_numbered(channels, rate=3000.0, count=1_000_000)
    # Mid-stream: well over a thousand lines delivered, and the stream still going.
    simulator.wait_until(
        lambda s: sum(s.privmsgs_by_channel.get(c, 0) for c in channels) >= 2000, timeout=30
    )

    assert service.stop(signal.SIGTERM) == 0
    stream.stop()
    stopped = next(e for e in service.log_events() if e["event"] == "service stopped")
    assert stopped["undelivered"] == 0
    # enqueued = chat records + the ROOMSTATE event of each join.
    expected_chat = stopped["enqueued"] - len(channels)
    assert expected_chat > 1000

    records = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=expected_chat
    )
    assert len(records) == expected_chat
    numbers: dict[str, list[int]] = defaultdict(list)
    for record in records:
        _, channel, number = json.loads(record.value)["message"].split()
        numbers[channel].append(int(number))
    for channel, seen in numbers.items():
        # Per channel: 1, 2, 3 … with no gap and no repeat, in partition order.
        assert seen == list(range(1, len(seen) + 1)), channel
