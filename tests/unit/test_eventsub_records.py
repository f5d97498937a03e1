"""EventSub chat notifications → the same records as the equivalent IRC lines.

Each equivalence test parses an IRC line with the project's IRC parser and router and
compares it field by field with the record built from the EventSub event. `timestamp`
is always left out (IRC has `tmi-sent-ts`, EventSub only the notification time); for
event records `tags` too (IRC's raw tags have no EventSub counterpart). Where EventSub
carries less than IRC, the test names the fields that differ, so a change on either side
shows up here.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.eventsub_equivalences import (
    CHAT_EQUIVALENCES,
    CHAT_MESSAGE_FRAME,
    FIXTURES,
    NOTICE_EQUIVALENCES,
    NOTICE_EVENTS,
    chat_event,
    fragments,
)
from twitch_ingestion.models import (
    ChatCleared,
    ChatEventRecord,
    ChatMessage,
    GiftSubscription,
    MessageDeleted,
    Resubscription,
    Subscription,
    UserNotice,
    decode_chat_event,
    decode_chat_message,
    encode_record,
)
from twitch_ingestion.records import Destination
from twitch_ingestion.sources.common.notices import ANONYMOUS_GIFTER_USER_ID
from twitch_ingestion.sources.eventsub.messages import DeadLetter, Notification, decode_frame
from twitch_ingestion.sources.eventsub.records import (
    CHAT_SUBSCRIPTION_TYPES,
    EventSubRecord,
    notification_record,
)
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.routing import route_message

MODERATION_EVENTS: dict[str, dict[str, Any]] = json.loads(
    (FIXTURES / "moderation_events.json").read_text()
)
RECEIVED_AT = 1_700_129_473_000
NOTIFICATION_TIME = "2023-11-16T10:11:12.464757833Z"
NOTIFICATION_MS = 1_700_129_472_464


def notification_frame(
    subscription_type: str,
    event: Any,
    *,
    message_id: str = "befa7b53-d79d-478f-86b9-120f112b044e",
    version: str = "1",
) -> bytes:
    """A WebSocket notification frame around a bare `event`, as Twitch wraps it."""
    return json.dumps(
        {
            "metadata": {
                "message_id": message_id,
                "message_type": "notification",
                "message_timestamp": NOTIFICATION_TIME,
                "subscription_type": subscription_type,
                "subscription_version": version,
            },
            "payload": {
                "subscription": {
                    "id": "0b7f3361-672b-4d39-b307-dd5b576c9b27",
                    "status": "enabled",
                    "type": subscription_type,
                    "version": version,
                    "condition": {"broadcaster_user_id": "1971641", "user_id": "2914196"},
                    "transport": {"method": "websocket", "session_id": "AgoQHR3s"},
                    "created_at": "2023-11-06T18:11:47.492253549Z",
                    "cost": 0,
                },
                "event": event,
            },
        }
    ).encode()


def record_of(frame: bytes) -> EventSubRecord | DeadLetter:
    message = decode_frame(frame)
    assert isinstance(message, Notification), message
    return notification_record(message, RECEIVED_AT)


def built(frame: bytes) -> EventSubRecord:
    result = record_of(frame)
    assert isinstance(result, EventSubRecord), result
    return result


def irc_record(line: str) -> ChatMessage | ChatEventRecord:
    routed = route_message(parse_line(line), RECEIVED_AT, {})
    assert routed is not None
    return routed.record


def differing_fields(
    eventsub: ChatMessage | ChatEventRecord,
    irc: ChatMessage | ChatEventRecord,
    ignored: frozenset[str],
) -> set[str]:
    assert type(eventsub) is type(irc)
    assert (eventsub.ingested_via, irc.ingested_via) == ("eventsub", "irc")
    return {
        name
        for name in eventsub.__struct_fields__
        if name not in ignored and getattr(eventsub, name) != getattr(irc, name)
    }


# `ingested_via` says which source read the record: it differs by design (checked below).
CHAT_IGNORED = frozenset({"timestamp", "ingested_via"})
EVENT_IGNORED = frozenset({"timestamp", "tags", "ingested_via"})


# -- channel.chat.message ------------------------------------------------------------------


def test_chat_message_fields() -> None:
    result = built(CHAT_MESSAGE_FRAME)
    assert result.destination is Destination.CHAT
    assert result.key == "streamer"
    assert result.record == ChatMessage(
        channel_id="streamer",
        user_id="4145994",
        username="viewer32",
        message="Hi chat Kappa",
        timestamp=NOTIFICATION_MS,
        emotes=["Kappa"],
        message_id="cc106a89-1814-919d-454c-f4f2f970aae7",
        room_id="1971641",
        display_name="viewer32",
        badges={"moderator": "1", "subscriber": "12", "sub-gifter": "1"},
        is_action=False,
        bits=0,
        reply_parent_message_id=None,
        first_message=False,
        received_at=RECEIVED_AT,
        ingested_via="eventsub",
    )


def test_value_is_the_encoded_record_consumers_decode() -> None:
    result = built(CHAT_MESSAGE_FRAME)
    assert result.value == encode_record(result.record)
    assert decode_chat_message(result.value) == result.record


@pytest.mark.parametrize("case", sorted(CHAT_EQUIVALENCES))
def test_chat_message_equals_the_irc_privmsg_record_except_timestamp(case: str) -> None:
    event, line = CHAT_EQUIVALENCES[case]
    eventsub = built(notification_frame("channel.chat.message", event)).record
    irc = irc_record(line)
    assert differing_fields(eventsub, irc, CHAT_IGNORED) == set()
    assert eventsub.timestamp == NOTIFICATION_MS
    assert irc.timestamp == 1_700_129_470_000


def test_action_wrapper_is_removed_like_irc() -> None:
    event = chat_event(message=fragments(("text", "\x01ACTION waves\x01")))
    record = built(notification_frame("channel.chat.message", event)).record
    assert isinstance(record, ChatMessage)
    assert (record.message, record.is_action) == ("waves", True)


def test_login_case_is_folded_like_irc() -> None:
    event = chat_event(broadcaster_user_login="Streamer", chatter_user_login="Viewer32")
    result = built(notification_frame("channel.chat.message", event))
    assert result.key == "streamer"
    assert isinstance(result.record, ChatMessage)
    assert (result.record.channel_id, result.record.username) == ("streamer", "viewer32")


def test_null_fragments_and_badges_are_tolerated() -> None:
    event = chat_event(message={"text": "hi", "fragments": None}, badges=None)
    record = built(notification_frame("channel.chat.message", event)).record
    assert isinstance(record, ChatMessage)
    assert (record.emotes, record.badges) == ([], {})


@pytest.mark.parametrize("bits", [0, -5, 10**15])
def test_impossible_bit_counts_are_zero_like_irc(bits: int) -> None:
    event = chat_event(cheer={"bits": bits})
    record = built(notification_frame("channel.chat.message", event)).record
    assert isinstance(record, ChatMessage)
    assert record.bits == 0


# -- channel.chat.notification -------------------------------------------------------------


def test_every_notice_fixture_has_an_irc_equivalent() -> None:
    assert sorted(NOTICE_EQUIVALENCES) == sorted(NOTICE_EVENTS)


@pytest.mark.parametrize("case", sorted(NOTICE_EQUIVALENCES))
def test_notification_equals_the_irc_usernotice_record(case: str) -> None:
    record_type, line, known_differences = NOTICE_EQUIVALENCES[case]
    result = built(notification_frame("channel.chat.notification", NOTICE_EVENTS[case]))
    assert result.destination is Destination.EVENTS
    assert result.key == "streamer"
    eventsub = result.record
    irc = irc_record(line)
    assert type(eventsub) is record_type
    assert differing_fields(eventsub, irc, EVENT_IGNORED) == known_differences
    assert eventsub.timestamp == NOTIFICATION_MS
    assert decode_chat_event(result.value) == eventsub


def test_sub_details() -> None:
    result = built(notification_frame("channel.chat.notification", NOTICE_EVENTS["sub"]))
    record = result.record
    assert isinstance(record, Subscription)
    assert json.loads(result.value)["event_type"] == "subscription"
    assert (record.sub_plan, record.multimonth_duration, record.was_gifted) == ("1000", 1, False)
    assert record.message is None


def test_anonymous_gift_names_irc_stand_in_gifter() -> None:
    event = NOTICE_EVENTS["sub_gift_anonymous"]
    record = built(notification_frame("channel.chat.notification", event)).record
    assert isinstance(record, GiftSubscription)
    assert (record.user_id, record.username, record.anonymous) == (
        ANONYMOUS_GIFTER_USER_ID,
        "ananonymousgifter",
        True,
    )


def test_pay_it_forward_to_a_named_user_is_irc_standardpayforward() -> None:
    event = copy.deepcopy(NOTICE_EVENTS["pay_it_forward"])
    event["pay_it_forward"]["recipient_user_id"] = "236981420"
    record = built(notification_frame("channel.chat.notification", event)).record
    assert isinstance(record, UserNotice)
    assert record.notice_type == "standardpayforward"
    assert record.tags["msg-param-recipient_user_id"] == "236981420"


def test_unmodelled_notice_keeps_its_details_in_tags() -> None:
    event = NOTICE_EVENTS["charity_donation"]
    record = built(notification_frame("channel.chat.notification", event)).record
    assert isinstance(record, UserNotice)
    assert record.tags == {
        "msg-id": "charitydonation",
        "msg-param-charity_name": "Example Charity",
        "msg-param-amount-value": "500",
        "msg-param-amount-decimal_places": "2",
        "msg-param-amount-currency": "USD",
    }


def test_unknown_notice_type_passes_through_as_user_notice() -> None:
    event = copy.deepcopy(NOTICE_EVENTS["sub"])
    event["notice_type"] = "modiversary"
    event["modiversary"] = {"months": 48}
    record = built(notification_frame("channel.chat.notification", event)).record
    assert isinstance(record, UserNotice)
    assert record.notice_type == "modiversary"
    assert record.tags == {"msg-id": "modiversary", "msg-param-months": "48"}


def test_watch_streak_is_irc_viewermilestone() -> None:
    event = copy.deepcopy(NOTICE_EVENTS["sub"])
    event["notice_type"] = "watch_streak"
    event["watch_streak"] = {"streak": 7}
    record = built(notification_frame("channel.chat.notification", event)).record
    assert isinstance(record, UserNotice)
    assert record.notice_type == "viewermilestone"


def test_notice_without_its_details_object_still_forms_a_record() -> None:
    event = copy.deepcopy(NOTICE_EVENTS["resub"])
    del event["resub"]
    record = built(notification_frame("channel.chat.notification", event)).record
    assert isinstance(record, Resubscription)
    assert record.cumulative_months is None


def test_docs_resub_example_with_sub_plan_instead_of_sub_tier() -> None:
    event = copy.deepcopy(NOTICE_EVENTS["resub"])
    event["resub"]["sub_plan"] = event["resub"].pop("sub_tier")
    record = built(notification_frame("channel.chat.notification", event)).record
    assert isinstance(record, Resubscription)
    assert record.sub_plan == "2000"


# -- moderation ---------------------------------------------------------------------------


def test_clear_is_chat_cleared_like_irc_clearchat() -> None:
    frame = notification_frame("channel.chat.clear", MODERATION_EVENTS["channel.chat.clear"])
    result = built(frame)
    irc = irc_record("@room-id=1337;tmi-sent-ts=1700129470000 :tmi.twitch.tv CLEARCHAT #cool_user")
    assert isinstance(result.record, ChatCleared)
    assert result.key == "cool_user"
    # IRC derives an id from the line; EventSub's is the notification's own.
    assert differing_fields(result.record, irc, EVENT_IGNORED) == {"message_id"}
    assert result.record.message_id == "befa7b53-d79d-478f-86b9-120f112b044e"


def test_message_delete_is_message_deleted_like_irc_clearmsg() -> None:
    event = MODERATION_EVENTS["channel.chat.message_delete"]
    result = built(notification_frame("channel.chat.message_delete", event))
    irc = irc_record(
        "@login=uncool_viewer;room-id=1337;target-msg-id=ab24e0b0-2260-4bac-94e4-05eedd4ecd0e;"
        "tmi-sent-ts=1700129470000 :tmi.twitch.tv CLEARMSG #cool_user :some text"
    )
    assert isinstance(result.record, MessageDeleted)
    # EventSub does not repeat the deleted text.
    assert differing_fields(result.record, irc, EVENT_IGNORED) == {"message_id", "message"}
    assert result.record.deleted_message_id == "ab24e0b0-2260-4bac-94e4-05eedd4ecd0e"


def test_clear_user_messages_is_not_claimed_to_be_a_ban_or_a_timeout() -> None:
    event = MODERATION_EVENTS["channel.chat.clear_user_messages"]
    record = built(notification_frame("channel.chat.clear_user_messages", event)).record
    assert isinstance(record, UserNotice)
    assert record.notice_type == "clear_user_messages"
    assert record.tags == {
        "msg-id": "clear_user_messages",
        "target-user-id": "7734",
        "target-user-login": "uncool_viewer",
    }
    assert (record.user_id, record.username, record.room_id) == ("", "", "1337")


# -- dead letters -----------------------------------------------------------------------------


def dead(frame: bytes) -> DeadLetter:
    result = record_of(frame)
    assert isinstance(result, DeadLetter), result
    assert result.frame == frame
    return result


def test_unsupported_subscription_type_is_a_dead_letter() -> None:
    assert dead(notification_frame("channel.follow", {})).reason == "unsupported-subscription-type"


def test_unsupported_version_is_a_dead_letter() -> None:
    frame = notification_frame("channel.chat.message", chat_event(), version="2")
    assert dead(frame).reason == "unsupported-subscription-version"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"chatter_user_login": ""}, "missing-sender"),
        ({"broadcaster_user_login": ""}, "missing-channel"),
        ({"chatter_user_login": None}, "wrong-type"),
        ({"cheer": {"bits": "100"}}, "wrong-type"),
        ({"message": {"fragments": []}}, "missing-field"),
        ({"badges": [{"set_id": "vip"}]}, "missing-field"),
    ],
)
def test_chat_message_that_cannot_form_a_record_is_a_dead_letter(
    changes: dict[str, Any], reason: str
) -> None:
    assert dead(notification_frame("channel.chat.message", chat_event(**changes))).reason == reason


def test_chat_message_event_that_is_not_an_object_is_a_dead_letter() -> None:
    events: list[Any] = [[], "x", 5, None]
    for event in events:
        assert dead(notification_frame("channel.chat.message", event)).reason == "wrong-type"


def test_notice_details_of_the_wrong_type_are_a_dead_letter() -> None:
    event = copy.deepcopy(NOTICE_EVENTS["resub"])
    event["resub"]["cumulative_months"] = "ten"
    assert dead(notification_frame("channel.chat.notification", event)).reason == "wrong-type"
    event["resub"] = [1]
    assert dead(notification_frame("channel.chat.notification", event)).reason == "wrong-type"


def test_message_delete_without_message_id_is_a_dead_letter() -> None:
    event = dict(MODERATION_EVENTS["channel.chat.message_delete"], message_id="")
    assert dead(notification_frame("channel.chat.message_delete", event)).reason == "missing-field"


def test_every_chat_subscription_type_has_a_builder() -> None:
    events = {
        "channel.chat.message": chat_event(),
        "channel.chat.notification": NOTICE_EVENTS["sub"],
        **MODERATION_EVENTS,
    }
    for subscription_type in CHAT_SUBSCRIPTION_TYPES:
        result = record_of(notification_frame(subscription_type, events[subscription_type]))
        assert isinstance(result, EventSubRecord), subscription_type
        assert isinstance(result.value, bytes)
        msgspec.json.decode(result.value)


# -- hostile events ---------------------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
_CASES: list[tuple[str, dict[str, Any]]] = [
    ("channel.chat.message", chat_event()),
    *(("channel.chat.notification", event) for event in NOTICE_EVENTS.values()),
    *MODERATION_EVENTS.items(),
]


@settings(max_examples=400, deadline=None)
@given(case=st.integers(0, len(_CASES) - 1), data=st.data(), value=_json_values)
def test_hostile_event_values_give_a_record_or_a_dead_letter(
    case: int, data: st.DataObject, value: Any
) -> None:
    subscription_type, original = _CASES[case]
    event = copy.deepcopy(original)
    target = event
    notice = event.get("notice_type")
    if isinstance(notice, str) and isinstance(event.get(notice), dict) and data.draw(st.booleans()):
        target = event[notice]  # a key of the notice's own object
    keys = sorted(target) or ["x"]
    target[data.draw(st.sampled_from([*keys, "unexpected"]))] = value
    frame = notification_frame(subscription_type, event)
    result = record_of(frame)
    if isinstance(result, DeadLetter):
        assert result.reason
        assert result.frame == frame
    else:
        assert result.value == encode_record(result.record)
