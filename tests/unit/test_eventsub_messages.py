"""EventSub WebSocket frames → typed messages, or a dead letter saying why; never an exception."""

from __future__ import annotations

import calendar
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eventsub"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def unix_ms(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * 1000


# -- the five message types ----------------------------------------------------------------


def test_welcome_gives_session_id_keepalive_and_reconnect_url() -> None:
    message = decode_frame(fixture_bytes("session_welcome.json"))
    assert message == Welcome(
        message_id="96a3f3b5-5dec-4eed-908e-e11ee657416c",
        timestamp_ms=unix_ms(2023, 7, 19, 14, 56, 51) + 634,
        session_id="AQoQILE98gtqShGmLD7AM6yJThAB",
        keepalive_timeout_s=10,
        reconnect_url=None,
    )


def test_keepalive() -> None:
    message = decode_frame(fixture_bytes("session_keepalive.json"))
    assert message == Keepalive(
        "84c1e79a-2a4b-4c13-ba0b-4312293e9308", unix_ms(2023, 7, 19, 10, 11, 12) + 634
    )


def test_reconnect_gives_the_url_to_move_to() -> None:
    message = decode_frame(fixture_bytes("session_reconnect.json"))
    assert isinstance(message, Reconnect)
    assert message.reconnect_url == "wss://eventsub.wss.twitch.tv?..."
    assert message.session_id == "AQoQexAWVYKSTIu4ec_2VAxyuhAB"


def test_revocation_gives_the_subscription_and_its_status() -> None:
    message = decode_frame(fixture_bytes("revocation.json"))
    assert isinstance(message, Revocation)
    assert message.subscription.status == "authorization_revoked"
    assert message.subscription.type == "channel.chat.message"
    assert message.subscription.condition["broadcaster_user_id"] == "1971641"


def test_notification_keeps_event_undecoded_and_the_exact_frame() -> None:
    frame = fixture_bytes("channel.chat.message.json")
    message = decode_frame(frame)
    assert isinstance(message, Notification)
    assert message.frame == frame
    assert message.message_id == "befa7b53-d79d-478f-86b9-120f112b044e"
    assert message.subscription.type == "channel.chat.message"
    assert message.subscription.version == "1"
    assert json.loads(bytes(message.event))["chatter_user_login"] == "viewer32"


def test_text_frame_as_str_gives_the_same_message_and_utf8_frame() -> None:
    frame = fixture_bytes("channel.chat.message.json")
    assert decode_frame(frame.decode()) == decode_frame(frame)


def test_unknown_keys_everywhere_are_ignored() -> None:
    welcome = fixture_json("session_welcome.json")
    welcome["extra"] = [1, 2]
    welcome["metadata"]["new_field"] = {"x": None}
    welcome["payload"]["session"]["recovery_url"] = None  # seen in a 2026 capture
    welcome["payload"]["more"] = True
    assert isinstance(decode_frame(json.dumps(welcome)), Welcome)


def test_welcome_with_null_keepalive_leaves_it_to_the_session() -> None:
    welcome = fixture_json("session_welcome.json")
    welcome["payload"]["session"]["keepalive_timeout_seconds"] = None
    message = decode_frame(json.dumps(welcome))
    assert isinstance(message, Welcome)
    assert message.keepalive_timeout_s is None


# -- frames that cannot be used ------------------------------------------------------------


def test_invalid_json_is_a_dead_letter_with_the_exact_bytes() -> None:
    frame = b'{"metadata": {"message_id": "x"'
    result = decode_frame(frame)
    assert isinstance(result, DeadLetter)
    assert result.reason == "invalid-json"
    assert result.frame == frame


def test_invalid_utf8_is_a_dead_letter() -> None:
    frame = b'{"metadata": "\xff"}'
    result = decode_frame(frame)
    assert isinstance(result, DeadLetter)
    assert result.frame == frame


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f["payload"]["session"].pop("id"), "missing-field"),
        (lambda f: f["metadata"].pop("message_id"), "missing-field"),
        (lambda f: f.pop("payload"), "missing-field"),
        (
            lambda f: f["payload"]["session"].__setitem__("keepalive_timeout_seconds", "10"),
            "wrong-type",
        ),
        (
            lambda f: f["payload"]["session"].__setitem__("keepalive_timeout_seconds", 0),
            "invalid-keepalive-timeout",
        ),
        (
            lambda f: f["metadata"].__setitem__("message_type", "session_goodbye"),
            "unknown-message-type",
        ),
        (
            lambda f: f["metadata"].__setitem__("message_timestamp", "yesterday"),
            "invalid-timestamp",
        ),
        (lambda f: f.__setitem__("metadata", []), "wrong-type"),
    ],
)
def test_welcome_missing_or_mistyped_fields_are_dead_letters(change: Any, reason: str) -> None:
    welcome = fixture_json("session_welcome.json")
    change(welcome)
    frame = json.dumps(welcome).encode()
    result = decode_frame(frame)
    assert isinstance(result, DeadLetter)
    assert result.reason == reason
    assert result.frame == frame


def test_reconnect_without_url_is_a_dead_letter() -> None:
    reconnect = fixture_json("session_reconnect.json")
    reconnect["payload"]["session"]["reconnect_url"] = None
    result = decode_frame(json.dumps(reconnect))
    assert isinstance(result, DeadLetter)
    assert result.reason == "reconnect-without-url"


def test_notification_without_event_is_a_dead_letter() -> None:
    frame = fixture_json("channel.chat.message.json")
    del frame["payload"]["event"]
    result = decode_frame(json.dumps(frame))
    assert isinstance(result, DeadLetter)
    assert result.reason == "missing-field"
    assert "event" in result.detail


def test_json_that_is_not_an_object_is_a_dead_letter() -> None:
    for frame in (b"[]", b"null", b"42", b'"session_welcome"'):
        result = decode_frame(frame)
        assert isinstance(result, DeadLetter), frame
        assert result.reason == "wrong-type"


# -- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-14T12:31:47.995298776Z", unix_ms(2024, 5, 14, 12, 31, 47) + 995),
        ("2024-05-14T12:31:47.999999999Z", unix_ms(2024, 5, 14, 12, 31, 47) + 999),
        ("2019-11-16T10:11:12.123Z", unix_ms(2019, 11, 16, 10, 11, 12) + 123),
        ("2019-11-16T10:11:12.5Z", unix_ms(2019, 11, 16, 10, 11, 12) + 500),
        ("2019-11-16T10:11:12Z", unix_ms(2019, 11, 16, 10, 11, 12)),
        ("2019-11-16t10:11:12.04z", unix_ms(2019, 11, 16, 10, 11, 12) + 40),
        ("2019-11-16T12:11:12.000+02:00", unix_ms(2019, 11, 16, 10, 11, 12)),
        ("2019-11-16T08:41:12-01:30", unix_ms(2019, 11, 16, 10, 11, 12)),
        ("2024-02-29T00:00:00Z", unix_ms(2024, 2, 29, 0, 0, 0)),
        ("1969-12-31T23:59:59.5Z", -500),
        ("1970-01-01T00:00:00.000000001Z", 0),
    ],
)
def test_rfc3339_nanoseconds_to_unix_ms_exactly(value: str, expected: int) -> None:
    assert rfc3339_to_unix_ms(value) == expected


def test_nanosecond_timestamp_is_not_rounded_by_float_arithmetic() -> None:
    # A float of seconds would turn .9999999 into the next millisecond (or second).
    assert (
        rfc3339_to_unix_ms("2024-12-31T23:59:59.9999999Z")
        == unix_ms(2024, 12, 31, 23, 59, 59) + 999
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2024-05-14",
        "2024-05-14T12:31:47",  # no zone
        "2024-05-14T12:31:47.Z",
        "2024-05-14T12:31:47.1234567890Z",  # more than nanoseconds
        "2024-05-14T12:31:60Z",  # leap second
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-05-14T24:00:00Z",
        "2024-05-14T12:31:47+2:00",
        "2024-05-14T12:31:47+24:00",
        "2024-05-14X12:31:47Z",
        "２０２４-05-14T12:31:47Z",  # full-width digits
        "2024-05-14T12:31:47Z ",
        "+2024-05-14T12:31:47Z",
    ],
)
def test_malformed_timestamps_are_rejected(value: str) -> None:
    assert rfc3339_to_unix_ms(value) is None


# -- hostile input ---------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
_message_types = st.sampled_from(
    ["session_welcome", "session_keepalive", "session_reconnect", "notification", "revocation"]
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(frame: bytes) -> None:
    result = decode_frame(frame)
    if isinstance(result, DeadLetter):
        assert result.frame == frame
        assert result.reason


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    frame = json.dumps(value).encode()
    result = decode_frame(frame)
    assert isinstance(result, DeadLetter)
    assert result.frame == frame


@settings(max_examples=500, deadline=None)
@given(
    message_type=_message_types,
    message_id=_json_values,
    timestamp=st.one_of(_json_values, st.just("2024-05-14T12:31:47.995298776Z")),
    payload=_json_values,
    session=st.dictionaries(
        st.sampled_from(["id", "keepalive_timeout_seconds", "reconnect_url", "status"]),
        _json_values,
    ),
    subscription=st.dictionaries(
        st.sampled_from(["id", "type", "version", "status", "condition"]), _json_values
    ),
    event=_json_values,
)
def test_envelope_with_hostile_values_never_raises(
    message_type: str,
    message_id: Any,
    timestamp: Any,
    payload: Any,
    session: dict[str, Any],
    subscription: dict[str, Any],
    event: Any,
) -> None:
    for body in (payload, {"session": session}, {"subscription": subscription, "event": event}):
        frame = json.dumps(
            {
                "metadata": {
                    "message_id": message_id,
                    "message_type": message_type,
                    "message_timestamp": timestamp,
                },
                "payload": body,
            }
        ).encode()
        result = decode_frame(frame)
        if isinstance(result, DeadLetter):
            assert result.frame == frame
        else:
            assert isinstance(result.message_id, str)


def test_deeply_nested_json_is_a_dead_letter_not_a_recursion_error() -> None:
    frame = b'{"metadata":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    result = decode_frame(frame)
    assert isinstance(result, DeadLetter)


def test_keepalive_timeout_past_an_hour_is_a_dead_letter() -> None:
    welcome = fixture_json("session_welcome.json")
    text = json.dumps(welcome).replace(
        '"keepalive_timeout_seconds": 10', '"keepalive_timeout_seconds": 1' + "0" * 400
    )
    result = decode_frame(text)
    assert isinstance(result, DeadLetter)
    assert result.reason == "invalid-keepalive-timeout"


def test_dead_letter_is_a_plain_struct_that_encodes() -> None:
    result = decode_frame(b"nope")
    assert isinstance(result, DeadLetter)
    assert msgspec.json.decode(msgspec.json.encode(result), type=DeadLetter) == result


def test_lone_surrogate_escape_is_a_dead_letter_not_a_broken_record() -> None:
    # `\ud800` alone is valid JSON syntax but not a character: it could not be re-encoded.
    text = fixture_bytes("channel.chat.message.json").replace(b"Hi chat", b"Hi \\ud800 chat")
    result = decode_frame(text)
    assert isinstance(result, DeadLetter)
    assert result.frame == text
