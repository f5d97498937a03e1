"""Synthetic community and moderation lines: every USERNOTICE kind the service models,
CLEARCHAT (ban, timeout, clear), CLEARMSG and ROOMSTATE.

Shapes follow real lines of Twitch's IRC (https://dev.twitch.tv/docs/chat/irc/ and the
tags reference): tags in alphabetical order, `system-msg` escaped with `\\s`, the actor in
`login`/`user-id`, details in `msg-param-*`. Users and messages come from a
`ChatGenerator`, so a CLEARMSG deletes a PRIVMSG that was really sent and a ban names a
user who really chatted.
"""

from __future__ import annotations

import uuid

from twitch_ingestion.simulator.chatgen import ChatGenerator, ChatUser
from twitch_ingestion.simulator.wire import SERVER_NAME, escape_tag_value, user_id_for

__all__ = ["EVENT_KINDS", "MODERATION_KINDS", "USERNOTICE_KINDS", "EventGenerator"]

# Every `msg-id` with its own record type, one the service keeps generic
# (`viewermilestone`), and a Shared Chat relay (`sharedchatnotice`).
USERNOTICE_KINDS: tuple[str, ...] = (
    "sub",
    "resub",
    "subgift",
    "anonsubgift",
    "submysterygift",
    "anonsubmysterygift",
    "giftpaidupgrade",
    "anongiftpaidupgrade",
    "raid",
    "unraid",
    "ritual",
    "bitsbadgetier",
    "announcement",
    "viewermilestone",
    "sharedchatnotice",
)
MODERATION_KINDS: tuple[str, ...] = (
    "ban",
    "timeout",
    "clear",
    "clearmsg",
    "roomstate",
    "roomstate-change",
)
EVENT_KINDS: tuple[str, ...] = USERNOTICE_KINDS + MODERATION_KINDS

_SUB_PLANS: tuple[tuple[str, str], ...] = (("Prime", "Prime"), ("1000", "1"), ("2000", "2"))
_ANNOUNCEMENT_COLORS: tuple[str, ...] = ("PRIMARY", "BLUE", "GREEN", "ORANGE", "PURPLE")


class EventGenerator:
    """One event line at a time, for the users and messages of `chat`."""

    def __init__(self, chat: ChatGenerator) -> None:
        self._chat = chat
        self._rng = chat.rng

    def line(self, kind: str, channel: str, room_id: str, sent_ts_ms: int) -> str:
        """A line of `kind` (one of `EVENT_KINDS`) for `#channel` (no CRLF)."""
        if kind in USERNOTICE_KINDS:
            return self._usernotice(kind, channel, room_id, sent_ts_ms)
        if kind == "clearmsg":
            return self._clearmsg(channel, room_id, sent_ts_ms)
        if kind == "roomstate":
            return self._roomstate(channel, room_id)
        if kind == "roomstate-change":
            setting, value = self._rng.choice(
                (("slow", "30"), ("emote-only", "1"), ("followers-only", "10"), ("r9k", "0"))
            )
            return f"@room-id={room_id};{setting}={value} :{SERVER_NAME} ROOMSTATE #{channel}"
        return self._clearchat(kind, channel, room_id, sent_ts_ms)

    # --- USERNOTICE -------------------------------------------------------------------

    def _user(self) -> ChatUser:
        return self._rng.choice(self._chat.users)

    def _usernotice(self, kind: str, channel: str, room_id: str, sent_ts_ms: int) -> str:
        rng = self._rng
        user = self._user()
        source_kind = rng.choice(("sub", "announcement")) if kind == "sharedchatnotice" else kind
        anonymous = source_kind.startswith("anon")
        login = channel if anonymous and "gift" in source_kind else user.login
        display_name = user.display_name if login == user.login else channel
        plan, tier = rng.choice(_SUB_PLANS)
        params: dict[str, str] = {}
        text: str | None = None
        emotes = ""
        name = display_name
        if source_kind in {"sub", "resub"}:
            months = 1 if source_kind == "sub" else rng.randint(2, 60)
            streak = rng.random() < 0.5
            params = {
                "cumulative-months": str(months),
                "months": "0",
                "multimonth-duration": rng.choice(("1", "3", "6")),
                "should-share-streak": "1" if streak else "0",
                "sub-plan": plan,
                "sub-plan-name": f"Channel Subscription ({channel})",
                "was-gifted": "false",
            }
            if streak:
                params["streak-months"] = str(rng.randint(1, months))
            system = (
                f"{name} subscribed with Prime."
                if plan == "Prime"
                else f"{name} subscribed at Tier {tier}."
            )
            if source_kind == "resub":
                system += f" They've subscribed for {months} months!"
                text, emotes = self._chat.body()
        elif source_kind in {"subgift", "anonsubgift"}:
            recipient = self._user()
            params = {
                "gift-months": rng.choice(("1", "1", "3", "6")),
                "months": str(rng.randint(1, 12)),
                "origin-id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "recipient-display-name": recipient.display_name,
                "recipient-id": recipient.user_id,
                "recipient-user-name": recipient.login,
                "sender-count": "0" if anonymous else str(rng.randint(1, 500)),
                "sub-plan": plan if plan != "Prime" else "1000",
                "sub-plan-name": f"Channel Subscription ({channel})",
            }
            giver = "An anonymous gifter" if anonymous else name
            system = f"{giver} gifted a Tier {tier} sub to {recipient.display_name}!"
        elif source_kind in {"submysterygift", "anonsubmysterygift"}:
            count = rng.choice((1, 5, 10, 20, 50, 100))
            params = {
                "mass-gift-count": str(count),
                "origin-id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "sender-count": "0" if anonymous else str(count + rng.randint(0, 900)),
                "sub-plan": "1000",
            }
            giver = "An anonymous user" if anonymous else name
            system = f"{giver} is gifting {count} Tier 1 Subs to {channel}'s community!"
        elif source_kind in {"giftpaidupgrade", "anongiftpaidupgrade"}:
            gifter = self._user()
            if source_kind == "giftpaidupgrade":
                params = {"sender-login": gifter.login, "sender-name": gifter.display_name}
                system = f"{name} is continuing the Gift Sub they got from {gifter.display_name}!"
            else:
                system = f"{name} is continuing the Gift Sub they got from an anonymous user!"
        elif source_kind == "raid":
            viewers = rng.randint(1, 20_000)
            params = {
                "displayName": display_name,
                "login": login,
                "profileImageURL": f"https://static-cdn.jtvnw.net/jtv_user_pictures/{login}-profile_image-%s.png",
                "viewerCount": str(viewers),
            }
            system = f"{viewers} raiders from {display_name} have joined!"
        elif source_kind == "unraid":
            system = "The raid has been cancelled."
        elif source_kind == "ritual":
            params = {"ritual-name": "new_chatter"}
            system = f"@{name} is new to {channel}'s chat! Say hello!"
            text, emotes = "HeyGuys", "30259:0-6"
        elif source_kind == "bitsbadgetier":
            params = {"threshold": rng.choice(("1000", "5000", "10000", "100000"))}
            system = "bits badge tier notification"
        elif source_kind == "announcement":
            params = {"color": rng.choice(_ANNOUNCEMENT_COLORS)}
            system = ""
            text, emotes = self._chat.body()
        else:  # viewermilestone: a kind without its own record type
            streak_count = rng.randint(3, 30)
            params = {
                "category": "watch-streak",
                "copoReward": "450",
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "value": str(streak_count),
            }
            system = (
                f"{name} watched {streak_count} consecutive streams and sparked a watch streak!"
            )
            text, emotes = self._chat.body()

        tags: dict[str, str] = {
            "badge-info": user.badge_info,
            "badges": user.badges,
            "color": user.color,
            "display-name": display_name,
            "emotes": emotes,
            "flags": "",
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "login": login,
            "mod": "1" if user.mod else "0",
            "msg-id": kind,
            "room-id": room_id,
            "subscriber": "1" if user.subscriber else "0",
            "system-msg": system,
            "tmi-sent-ts": str(sent_ts_ms),
            "user-id": user_id_for(login) if login != user.login else user.user_id,
            "user-type": "mod" if user.mod else "",
            "vip": "1" if user.vip else "0",
        }
        tags.update({f"msg-param-{key}": value for key, value in params.items()})
        if kind == "sharedchatnotice":
            # Relayed from another room of the shared session: the original kind and ids.
            tags.update(
                {
                    "source-badge-info": user.badge_info,
                    "source-badges": user.badges,
                    "source-id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "source-msg-id": source_kind,
                    "source-room-id": user_id_for(f"shared-{channel}"),
                }
            )
        tag_text = ";".join(f"{key}={escape_tag_value(tags[key])}" for key in sorted(tags))
        line = f"@{tag_text} :{SERVER_NAME} USERNOTICE #{channel}"
        return line if text is None else f"{line} :{text}"

    # --- moderation and room state ----------------------------------------------------

    def _clearchat(self, kind: str, channel: str, room_id: str, sent_ts_ms: int) -> str:
        if kind == "clear":
            tags = f"@room-id={room_id};tmi-sent-ts={sent_ts_ms}"
            return f"{tags} :{SERVER_NAME} CLEARCHAT #{channel}"
        target = self._user()
        duration = ""
        if kind == "timeout":
            duration = f"ban-duration={self._rng.choice((1, 10, 60, 600, 86400))};"
        return (
            f"@{duration}room-id={room_id};target-user-id={target.user_id};"
            f"tmi-sent-ts={sent_ts_ms} :{SERVER_NAME} CLEARCHAT #{channel} :{target.login}"
        )

    def _clearmsg(self, channel: str, room_id: str, sent_ts_ms: int) -> str:
        recent = self._chat.recent_message(channel)
        if recent is None:  # nothing to delete yet: a timeout does the same job
            return self._clearchat("timeout", channel, room_id, sent_ts_ms)
        message_id, user, text = recent
        # Twitch sends CLEARMSG with an empty room-id; the text is the deleted message.
        return (
            f"@login={user.login};room-id=;target-msg-id={message_id};"
            f"tmi-sent-ts={sent_ts_ms} :{SERVER_NAME} CLEARMSG #{channel} :{text}"
        )

    def _roomstate(self, channel: str, room_id: str) -> str:
        rng = self._rng
        return (
            f"@emote-only={rng.choice('01')};followers-only={rng.choice(('-1', '0', '10'))};"
            f"r9k={rng.choice('01')};rituals=0;room-id={room_id};slow={rng.choice(('0', '30'))};"
            f"subs-only={rng.choice('01')} :{SERVER_NAME} ROOMSTATE #{channel}"
        )
