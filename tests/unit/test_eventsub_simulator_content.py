"""The EventSub simulator's generated chat is the IRC simulator's, field for field.

Each generated PRIVMSG (emotes after emoji, `/me`, replies, cheers, badges, localized
names) is turned into the `channel.chat.message` event the EventSub simulator sends; the
record the EventSub source builds from it must equal the record the IRC source builds
from the line itself, `timestamp` aside (EventSub has no sent time).
"""

from __future__ import annotations

import msgspec
import pytest

from twitch_ingestion.models import ChatMessage
from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.eventsub_wire import privmsg_event
from twitch_ingestion.simulator.wire import room_id_for
from twitch_ingestion.sources.eventsub.messages import Notification, decode_frame
from twitch_ingestion.sources.eventsub.records import EventSubRecord, notification_record
from twitch_ingestion.sources.irc.irc import parse_line
from twitch_ingestion.sources.irc.routing import route_message

RECEIVED_AT = 1_800_000_000_000


def eventsub_record(channel: str, line: str) -> ChatMessage:
    event = privmsg_event(channel, line)
    event.update(
        broadcaster_user_id=room_id_for(channel),
        broadcaster_user_login=channel,
        broadcaster_user_name=channel,
    )
    frame = msgspec.json.encode(
        {
            "metadata": {
                "message_id": "5d0f1e3c-0000-4000-8000-000000000001",
                "message_type": "notification",
                "message_timestamp": "2027-01-15T08:00:00.123456789Z",
                "subscription_type": "channel.chat.message",
                "subscription_version": "1",
            },
            "payload": {
                "subscription": {
                    "id": "sub",
                    "type": "channel.chat.message",
                    "version": "1",
                    "status": "enabled",
                    "condition": {"broadcaster_user_id": room_id_for(channel), "user_id": "1"},
                },
                "event": event,
            },
        }
    )
    message = decode_frame(frame)
    assert isinstance(message, Notification)
    result = notification_record(message, RECEIVED_AT)
    assert isinstance(result, EventSubRecord), result
    assert isinstance(result.record, ChatMessage)
    return result.record


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_chat_gives_the_same_record_over_both_sources(seed: int) -> None:
    generator = ChatGenerator(seed)
    kinds = {"emotes": 0, "action": 0, "reply": 0, "bits": 0}
    for index in range(2000):
        channel = ("forsen", "xqc", "lirik")[index % 3]
        line = generator.privmsg(channel, room_id_for(channel), 1_700_000_000_000 + index)
        routed = route_message(parse_line(line), RECEIVED_AT, {})
        assert routed is not None
        irc = routed.record
        assert isinstance(irc, ChatMessage)
        eventsub = eventsub_record(channel, line)
        differing = {
            name
            for name in ChatMessage.__struct_fields__
            if name not in ("timestamp", "ingested_via")
            and getattr(eventsub, name) != getattr(irc, name)
        }
        assert differing == set(), line
        kinds["emotes"] += bool(irc.emotes)
        kinds["action"] += irc.is_action
        kinds["reply"] += irc.reply_parent_message_id is not None
        kinds["bits"] += irc.bits > 0
    # The sample covers every shape the generator makes.
    assert all(count > 0 for count in kinds.values()), kinds
