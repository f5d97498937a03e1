"""Conformance over the shared EventSub corpus: real and documented payloads from public repos.

The corpus lives beside the checkout (`<repo>/../shared/eventsub-corpus`, see its
`SOURCES.md`); without it these tests skip. Each line is a whole WebSocket frame
(`ws_message`), a webhook body (`{subscription, event}`) or a bare `event`; the last two
are wrapped in a WebSocket envelope here, as Twitch would send them on a socket.

Every payload must decode to a typed message and, for the chat subscription types, to a
record — or to a dead letter with a reason. Nothing may raise.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from twitch_ingestion.models import ChatMessage, UserNotice
from twitch_ingestion.sources.eventsub.messages import (
    DeadLetter,
    Keepalive,
    Notification,
    Reconnect,
    Revocation,
    Welcome,
    decode_frame,
    rfc3339_to_unix_ms,
)
from twitch_ingestion.sources.eventsub.records import (
    CHAT_SUBSCRIPTION_TYPES,
    EventSubRecord,
    notification_record,
)

REPO_DIR = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO_DIR.parent / "shared" / "eventsub-corpus"
PAYLOADS_PATH = CORPUS_DIR / "payloads.jsonl"

if not PAYLOADS_PATH.is_file():
    pytest.skip(f"EventSub corpus not found at {CORPUS_DIR}", allow_module_level=True)

ENTRIES: list[dict[str, Any]] = [
    json.loads(line) for line in PAYLOADS_PATH.read_text().splitlines() if line.strip()
]
SYNTHETIC_TIMESTAMP = "2024-05-14T12:31:47.995298776Z"

_MESSAGE_TYPES = {
    "session_welcome": Welcome,
    "session_keepalive": Keepalive,
    "session_reconnect": Reconnect,
    "revocation": Revocation,
}


def frame_of(entry: dict[str, Any], index: int) -> bytes:
    payload = entry["payload"]
    if entry["kind"] == "ws_message":
        return json.dumps(payload).encode()
    message_type = "revocation" if entry["type"] == "revocation" else "notification"
    if entry["kind"] == "webhook_body":
        body = payload
    else:  # event_only
        body = {
            "subscription": {
                "id": f"corpus-{index}",
                "status": "enabled",
                "type": entry["type"],
                "version": entry["version"],
                "condition": {},
            },
            "event": payload,
        }
    return json.dumps(
        {
            "metadata": {
                "message_id": f"corpus-{index}",
                "message_type": message_type,
                "message_timestamp": SYNTHETIC_TIMESTAMP,
                "subscription_type": entry["type"],
                "subscription_version": entry["version"],
            },
            "payload": body,
        }
    ).encode()


def event_of(entry: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = entry["payload"]
    if entry["kind"] == "ws_message":
        event: dict[str, Any] = payload["payload"]["event"]
        return event
    if entry["kind"] == "webhook_body":
        webhook_event: dict[str, Any] = payload["event"]
        return webhook_event
    return payload


def outcome(entry: dict[str, Any], index: int) -> tuple[object, object]:
    """(decoded message, record or dead letter or None); must never raise."""
    message = decode_frame(frame_of(entry, index))
    if isinstance(message, Notification):
        return message, notification_record(message, 1_700_000_000_000)
    return message, None


@pytest.mark.parametrize("index", range(len(ENTRIES)))
def test_every_payload_decodes_to_a_typed_message_or_a_dead_letter(index: int) -> None:
    entry = ENTRIES[index]
    message, record = outcome(entry, index)
    if isinstance(message, DeadLetter):
        assert message.reason, entry["source"]
        return
    if entry["type"] in CHAT_SUBSCRIPTION_TYPES:
        assert isinstance(message, Notification)
        assert isinstance(record, EventSubRecord | DeadLetter)
        if isinstance(record, DeadLetter):
            assert record.reason
            assert record.frame == message.frame
    else:
        assert isinstance(message, _MESSAGE_TYPES[entry["type"]]), entry["source"]


def test_every_chat_payload_forms_a_record() -> None:
    """The corpus holds only payloads Twitch sent or documented: none is a dead letter."""
    failures = []
    kinds: Counter[str] = Counter()
    for index, entry in enumerate(ENTRIES):
        if entry["type"] not in CHAT_SUBSCRIPTION_TYPES:
            continue
        _, record = outcome(entry, index)
        if isinstance(record, EventSubRecord):
            kinds[type(record.record).__name__] += 1
        else:
            failures.append((entry["source"], record))
    assert failures == []
    # The corpus mix (SOURCES.md): chat messages, resubs, gifts, announcements, raids, ….
    assert kinds["ChatMessage"] == 20
    assert kinds["Resubscription"] >= 10


def test_chat_message_fields_come_from_the_event() -> None:
    for index, entry in enumerate(ENTRIES):
        if entry["type"] != "channel.chat.message":
            continue
        message, record = outcome(entry, index)
        assert isinstance(message, Notification)
        assert isinstance(record, EventSubRecord)
        chat = record.record
        assert isinstance(chat, ChatMessage)
        event = event_of(entry)
        assert chat.channel_id == event["broadcaster_user_login"].lower()
        assert chat.room_id == event["broadcaster_user_id"]
        assert chat.user_id == event["chatter_user_id"]
        assert chat.username == event["chatter_user_login"].lower()
        assert chat.message == event["message"]["text"]
        assert chat.message_id == event["message_id"]
        assert chat.emotes == [
            fragment["text"]
            for fragment in event["message"]["fragments"] or []
            if fragment["type"] == "emote"
        ]
        # Emote texts sit in the text, in order (what IRC's positions would slice).
        position = 0
        for code in chat.emotes:
            position = chat.message.index(code, position) + len(code)
        assert chat.bits == ((event.get("cheer") or {}).get("bits") or 0)
        assert chat.source_room_id == event.get("source_broadcaster_user_id")
        expected_time = (
            entry["payload"]["metadata"]["message_timestamp"]
            if entry["kind"] == "ws_message"
            else SYNTHETIC_TIMESTAMP
        )
        assert chat.timestamp == rfc3339_to_unix_ms(expected_time)


def test_notice_records_keep_the_notice_kind() -> None:
    seen: set[str] = set()
    for index, entry in enumerate(ENTRIES):
        if entry["type"] != "channel.chat.notification":
            continue
        _, record = outcome(entry, index)
        assert isinstance(record, EventSubRecord)
        notice_type = event_of(entry)["notice_type"]
        seen.add(notice_type)
        if isinstance(record.record, UserNotice):
            # Kinds without a struct: IRC's msg-id or EventSub's own name, never empty.
            assert record.record.notice_type
        assert record.record.message_id == event_of(entry)["message_id"]
    assert {"resub", "sub_gift", "community_sub_gift", "announcement"} <= seen


def test_all_corpus_timestamps_parse() -> None:
    for entry in ENTRIES:
        if entry["kind"] == "ws_message":
            value = entry["payload"]["metadata"]["message_timestamp"]
            assert rfc3339_to_unix_ms(value) is not None, value
