"""The suite's own Twitch lines (`tests/fixtures/twitch-irc/`): tricky but valid lines
with the record each must become, and malformed lines with the dead-letter reason each
must get. Hand-written from Twitch's IRC docs and the IRCv3 message-tags spec, so they
run on every checkout (the shared real-capture corpus is an extra tier on top)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest

from tests.support import corpus
from tests.support.corpus import REPO_DIR
from tests.support.irc_lines import EVENT_TYPES, MALFORMED, TRICKY, malformed_bytes
from twitch_ingestion.sources.irc.commands import ParseStats
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.routing import ContractViolation, route_message
from twitch_ingestion.sources.irc.session import ChatLines, MalformedLine, TwitchSession

RECEIVED_AT = 1_700_000_000_500


def _validator(topic: str) -> Any:
    schema = json.loads((REPO_DIR / "schemas" / f"{topic}.schema.json").read_text("utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


VALIDATORS = {
    "chat": _validator("twitch-chat-messages"),
    "events": _validator("twitch-chat-events"),
}


@pytest.mark.parametrize("case", TRICKY, ids=[case["name"] for case in TRICKY])
def test_tricky_line_becomes_the_expected_record(case: dict[str, Any]) -> None:
    routed = route_message(parse_line(case["raw"]), RECEIVED_AT, {}, ParseStats())
    if case["destination"] == "none":
        assert routed is None
        return
    assert routed is not None
    assert routed.destination.value == case["destination"]
    record = msgspec.json.decode(msgspec.json.encode(routed.record))
    VALIDATORS[case["destination"]].validate(record)
    for field, expected in case["fields"].items():
        assert record.get(field) == expected, (field, record)
    assert routed.key == record["channel_id"]


def test_tricky_lines_cover_every_event_type() -> None:
    event_types = {
        case["fields"]["event_type"] for case in TRICKY if case["destination"] == "events"
    }
    assert event_types == EVENT_TYPES


@pytest.mark.parametrize("case", MALFORMED, ids=[case["name"] for case in MALFORMED])
def test_malformed_line_gets_its_dead_letter_reason(case: dict[str, Any]) -> None:
    # As read off the socket: the session splits and decodes, the router builds records.
    session = TwitchSession("bot", None)
    session.initiate(0.0)
    session.receive_data(b":tmi.twitch.tv 001 justinfan1 :Welcome, GLHF!\r\n", 0.0)
    raw = malformed_bytes(case)
    events = session.receive_data(raw + b"\r\n", 1.0)
    reasons: list[str] = []
    for event in events:
        if isinstance(event, MalformedLine):
            assert event.raw == raw
            reasons.append(event.reason)
        elif isinstance(event, ChatLines):
            for message in event.messages:
                with pytest.raises(ContractViolation) as caught:
                    route_message(message, RECEIVED_AT, {}, ParseStats())
                assert caught.value.line.encode() == raw
                reasons.append(caught.value.reason)
    assert reasons == [case["reason"]]


def test_malformed_lines_cover_each_reason_once_or_more() -> None:
    assert len(Counter(case["reason"] for case in MALFORMED)) >= 12


def test_shared_corpus_tier_is_skipped_not_failed_where_it_is_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A plain clone: no ../shared beside the repository.
    monkeypatch.setattr(corpus, "RAW_LINES_PATH", tmp_path / "raw-lines.txt")
    corpus.raw_lines.cache_clear()
    try:
        with pytest.raises(pytest.skip.Exception, match="shared real-capture corpus tier"):
            corpus.raw_lines()
    finally:
        corpus.raw_lines.cache_clear()
