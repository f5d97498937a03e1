"""The checked-in JSON Schemas and contract doc: current, and true of every corpus record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # the dev dependencies have no stubs
import msgspec
import pytest

from tests.support.corpus import REPO_DIR, iter_raw_lines
from twitch_ingestion import schemas
from twitch_ingestion.models import ChatEventRecord
from twitch_ingestion.records import Destination
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.routing import ParseStats, route_message

SCHEMAS_DIR = REPO_DIR / "schemas"
DOCS_PATH = REPO_DIR / "docs" / "contract.md"
TOPIC_BY_DESTINATION = {
    Destination.CHAT: schemas.CHAT_MESSAGES_TOPIC,
    Destination.EVENTS: schemas.CHAT_EVENTS_TOPIC,
}


def checked_in_validator(topic: str) -> Any:
    path = SCHEMAS_DIR / schemas.schema_filename(topic)
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_checked_in_schemas_and_docs_are_current() -> None:
    assert schemas.main(["--check", str(SCHEMAS_DIR), "--docs", str(DOCS_PATH)]) == 0


def test_check_reports_stale_and_missing_files(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    docs = tmp_path / "contract.md"
    assert schemas.main(["--check", str(out), "--docs", str(docs)]) == 1  # missing
    assert schemas.main(["--write", str(out), "--docs", str(docs)]) == 0
    assert schemas.main(["--check", str(out), "--docs", str(docs)]) == 0
    docs.write_text(docs.read_text(encoding="utf-8") + "hand edit\n", encoding="utf-8")
    assert schemas.main(["--check", str(out), "--docs", str(docs)]) == 1


def test_docs_default_next_to_the_schemas_directory(tmp_path: Path) -> None:
    assert schemas.main(["--write", str(tmp_path / "schemas")]) == 0
    assert (tmp_path / "docs" / "contract.md").is_file()
    assert schemas.main(["--check", str(tmp_path / "schemas"), "--no-docs"]) == 0


def test_every_corpus_record_validates_against_its_checked_in_schema() -> None:
    validators = {topic: checked_in_validator(topic) for topic in TOPIC_BY_DESTINATION.values()}
    event_types = set()
    validated = 0
    for line_no, line in iter_raw_lines():
        routed = route_message(parse_line(line), 1_700_000_000_000, {}, ParseStats())
        if routed is None:
            continue
        instance = msgspec.json.decode(msgspec.json.encode(routed.record))
        errors = list(validators[TOPIC_BY_DESTINATION[routed.destination]].iter_errors(instance))
        assert not errors, (line_no, [error.message for error in errors[:3]])
        if routed.destination is Destination.EVENTS:
            event_types.add(instance["event_type"])
        validated += 1
    assert validated == 7411
    # Every event struct in the union occurs in the corpus.
    assert len(event_types) == len(ChatEventRecord.__args__)


@pytest.mark.parametrize(
    ("topic", "patch"),
    [
        (schemas.CHAT_MESSAGES_TOPIC, {"timestamp": "soon"}),
        (schemas.CHAT_MESSAGES_TOPIC, {"emotes": [1]}),
        (schemas.CHAT_EVENTS_TOPIC, {"event_type": "no_such_event"}),
        (schemas.CHAT_EVENTS_TOPIC, {"duration_seconds": None}),
    ],
)
def test_schemas_reject_wrong_values(topic: str, patch: dict[str, Any]) -> None:
    line = {
        schemas.CHAT_MESSAGES_TOPIC: "@id=x;tmi-sent-ts=1 :a!a@a PRIVMSG #c :hi",
        schemas.CHAT_EVENTS_TOPIC: "@ban-duration=5;tmi-sent-ts=1 :tmi.twitch.tv CLEARCHAT #c :u",
    }[topic]
    routed = route_message(parse_line(line), 1, {}, ParseStats())
    assert routed is not None
    instance = msgspec.json.decode(msgspec.json.encode(routed.record))
    validator = checked_in_validator(topic)
    assert validator.is_valid(instance)
    assert not validator.is_valid({**instance, **patch})


def test_contract_doc_lists_every_field_of_every_record() -> None:
    doc = DOCS_PATH.read_text(encoding="utf-8")
    for topic in TOPIC_BY_DESTINATION.values():
        schema = schemas.topic_schema(topic)
        for definition in schema["$defs"].values():
            for field in definition["properties"]:
                assert f"| `{field}` |" in doc, (topic, field)
            if "event_type" in definition["properties"]:
                event_type = definition["properties"]["event_type"]["enum"][0]
                assert f"#### `{event_type}`" in doc, event_type
