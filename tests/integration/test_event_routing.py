"""Issue 3 end to end: every replayed line lands on the right topic, valid against the
checked-in schema; lines that break the contract land in the DLQ with their bytes intact.

Replays the bundled sample chat (every event kind) always, and the shared real-capture
corpus wherever it is present; the malformed lines are `tests/fixtures/twitch-irc/`'s."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.integration.conftest import twitch_env
from tests.integration.kafka_helpers import collect_records
from tests.integration.service_process import StartService
from tests.support.corpus import CORPORA
from tests.support.irc_lines import EVENT_TYPES, MALFORMED, malformed_bytes
from twitch_ingestion.simulator import SimulatorThread
from twitch_ingestion.sources.irc.routing import EVENT_COMMANDS

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema)


@pytest.mark.parametrize("corpus", CORPORA)
def test_whole_corpus_routes_to_chat_and_events_topics_and_validates(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
    corpus: Path | None,
) -> None:
    channels = ["forsen", "pajlada"]
    service = start_service({**twitch_env(simulator, channels), **topics})
    simulator.wait_for_joined(channels, timeout=30)
    stream = simulator.start_replay(corpus, rate=0).wait(timeout=120)
    sent = stream.lines_by_command
    chat_expected = sent["PRIVMSG"]
    # Each JOIN is answered with a ROOMSTATE, which is an event too.
    events_expected = sum(sent.get(c, 0) for c in EVENT_COMMANDS) + len(channels)

    chat = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=chat_expected
    )
    events = collect_records(
        kafka_brokers, topics["KAFKA_TOPIC_CHAT_EVENTS"], expected=events_expected
    )
    assert len(chat) == chat_expected
    assert len(events) == events_expected

    chat_schema = _validator("twitch-chat-messages")
    for record in chat:
        chat_schema.validate(json.loads(record.value))
    events_schema = _validator("twitch-chat-events")
    event_types: set[str] = set()
    for record in events:
        value = json.loads(record.value)
        events_schema.validate(value)
        assert record.key is not None
        assert record.key.decode() == value["channel_id"]
        event_types.add(value["event_type"])
    # Both have subs, raids, bans, timeouts, deletions and room state changes; the
    # bundled chat has every event type the schema knows.
    assert {"ban", "timeout", "message_deleted", "room_state", "raid"} <= event_types
    if corpus is None:
        assert event_types == EVENT_TYPES
    assert service.stop() == 0


def test_malformed_lines_reach_the_dead_letter_topic_byte_for_byte(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    channels = ["forsen"]
    service = start_service({**twitch_env(simulator, channels), **topics})
    simulator.wait_for_joined(channels, timeout=30)
    # Every malformed fixture line: undecodable, not IRC, and IRC that breaks the contract.
    malformed = {malformed_bytes(case): case["reason"] for case in MALFORMED}
    simulator.send_raw(list(malformed))
    simulator.start_numbered(channels, count=5).wait(timeout=30)

    dead = collect_records(kafka_brokers, topics["KAFKA_TOPIC_DLQ"], expected=len(malformed))
    assert {record.value: record.headers["dlq.reason"].decode() for record in dead} == malformed
    for record in dead:
        assert int(record.headers["dlq.received_at"]) > 0
    # The service kept going: the chat after the bad lines arrived.
    chat = collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=5)
    assert len(chat) == 5
    assert service.stop() == 0
