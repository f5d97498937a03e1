"""Synthetic but realistic PRIVMSGs: full Twitch tag sets, emotes, emoji, replies, bits.

The shapes follow real lines of the corpus: tags in Twitch's alphabetical order, emote
ranges in Unicode code points with inclusive ends (so an emoji before an emote shifts it
by one, not by two UTF-16 units), `/me` as `\\x01ACTION …\\x01` with emote positions
relative to the inner text, replies that start with `@ParentName `.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass

from twitch_ingestion.simulator.wire import escape_tag_value, user_id_for

__all__ = ["GLOBAL_EMOTES", "ChatGenerator", "ChatUser"]

# Global Twitch emotes: (emote id, code). Ids are Twitch's own.
GLOBAL_EMOTES: tuple[tuple[str, str], ...] = (
    ("25", "Kappa"),
    ("1902", "Keepo"),
    ("354", "4Head"),
    ("86", "BibleThump"),
    ("41", "Kreygasm"),
    ("245", "ResidentSleeper"),
    ("425618", "LUL"),
    ("64138", "SeemsGood"),
    ("58765", "NotLikeThis"),
    ("28087", "WutFace"),
    ("81274", "VoHiYo"),
    ("30259", "HeyGuys"),
    ("1", ":)"),
    ("9", "<3"),
    ("305954156", "PogChamp"),
)
_WORDS: tuple[str, ...] = (
    "lol", "gg", "nice", "what", "is", "this", "chat", "clip", "that", "no", "way", "W",
    "L", "true", "based", "wait", "he", "actually", "did", "it", "hello", "first", "time",
    "here", "the", "game", "stream", "today", "when", "next", "so", "good", "bad", "play",
    "again", "yes", "monkaS", "OMEGALUL", "pog", "let's", "go", "why", "how", "insane",
    "привет", "こんにちは", "안녕하세요", "¿qué", "pasó?", "ça", "va", "straße",
)  # fmt: skip
# One code point each, two code points (❤️ = U+2764 U+FE0F), astral and a ZWJ sequence:
# the emote-range arithmetic must count code points for all of them.
_EMOJI: tuple[str, ...] = ("😂", "👉", "🔥", "❤️", "👀", "💀", "🏳️‍🌈", "🙏")
_COLORS: tuple[str, ...] = (
    "#FF0000", "#0000FF", "#008000", "#B22222", "#FF7F50", "#9ACD32", "#FF4500",
    "#2E8B57", "#DAA520", "#D2691E", "#5F9EA0", "#1E90FF", "#FF69B4", "#8A2BE2",
    "#00FF7F", "#19E6E6",
)  # fmt: skip
_SYLLABLES: tuple[str, ...] = (
    "ka", "zu", "mi", "ro", "xi", "lo", "pa", "ne", "shi", "to", "ra", "ve", "qu", "by",
)  # fmt: skip
_LOCALIZED_DISPLAY_NAMES: tuple[str, ...] = ("테스트계정", "ユーザー", "Пользователь", "用户")
_BITS_AMOUNTS: tuple[int, ...] = (1, 10, 100, 500, 1000)
_RECENT_PER_CHANNEL = 50


@dataclass(frozen=True, slots=True)
class ChatUser:
    login: str
    display_name: str
    user_id: str
    color: str
    badge_info: str
    badges: str
    mod: bool
    subscriber: bool
    turbo: bool
    vip: bool


@dataclass(frozen=True, slots=True)
class _Sent:
    message_id: str
    user: ChatUser
    body: str
    thread_parent: _Sent | None


class ChatGenerator:
    """Produces one realistic PRIVMSG line at a time; deterministic for a given seed."""

    def __init__(self, seed: int | None = None, *, user_count: int = 300) -> None:
        self._rng = random.Random(seed)
        self.users = tuple(self._make_user(i) for i in range(user_count))
        self._recent: dict[str, deque[_Sent]] = {}

    def _make_user(self, index: int) -> ChatUser:
        rng = self._rng
        login = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        if rng.random() < 0.5:
            login += str(rng.randint(1, 9999))
        login = f"{login}_{index}" if rng.random() < 0.3 else f"{login}{index}"
        roll = rng.random()
        if roll < 0.03:
            display_name = rng.choice(_LOCALIZED_DISPLAY_NAMES)
        elif roll < 0.5:
            display_name = login.capitalize()
        else:
            display_name = login
        months = rng.choice((0, 0, 0, 1, 3, 6, 12, 24, 40))
        subscriber = months > 0
        mod = rng.random() < 0.04
        vip = not mod and rng.random() < 0.03
        turbo = rng.random() < 0.02
        badges: list[str] = []
        if mod:
            badges.append("moderator/1")
        if vip:
            badges.append("vip/1")
        if subscriber:
            tier_months = max(m for m in (0, 3, 6, 12, 24, 36) if m <= months)
            badges.append(f"subscriber/{tier_months}")
        if turbo:
            badges.append("turbo/1")
        elif rng.random() < 0.1:
            badges.append("premium/1")
        return ChatUser(
            login=login,
            display_name=display_name,
            user_id=user_id_for(login),
            color="" if rng.random() < 0.1 else rng.choice(_COLORS),
            badge_info=f"subscriber/{months}" if subscriber else "",
            badges=",".join(badges),
            mod=mod,
            subscriber=subscriber,
            turbo=turbo,
            vip=vip,
        )

    @property
    def rng(self) -> random.Random:
        """The generator's random source, shared with `EventGenerator` so one seed
        fixes the whole mix."""
        return self._rng

    def recent_message(self, channel: str) -> tuple[str, ChatUser, str] | None:
        """A recent PRIVMSG of `#channel` as (id, sender, text), for CLEARMSG to delete."""
        recent = self._recent.get(channel)
        if not recent:
            return None
        sent = self._rng.choice(recent)
        return sent.message_id, sent.user, sent.body

    def body(self) -> tuple[str, str]:
        """A message text and its `emotes` tag value (for USERNOTICE messages)."""
        text, emotes = self._body(0)
        return text, _emotes_tag(emotes)

    def _body(self, offset: int) -> tuple[str, dict[str, list[tuple[int, int]]]]:
        """Message text and emote ranges (code points, inclusive), shifted by `offset`."""
        rng = self._rng
        tokens: list[str] = []
        emotes: dict[str, list[tuple[int, int]]] = {}
        position = offset
        for _ in range(rng.randint(1, 12)):
            roll = rng.random()
            if roll < 0.18:
                emote_id, token = rng.choice(GLOBAL_EMOTES)
                emotes.setdefault(emote_id, []).append((position, position + len(token) - 1))
            elif roll < 0.26:
                token = rng.choice(_EMOJI)
            else:
                token = rng.choice(_WORDS)
            tokens.append(token)
            position += len(token) + 1
        return " ".join(tokens), emotes

    def privmsg(
        self,
        channel: str,
        room_id: str,
        sent_ts_ms: int,
        *,
        shared_source_room_id: str | None = None,
    ) -> str:
        """One PRIVMSG line for `#channel` (no CRLF).

        With `shared_source_room_id` the line is a Shared Chat relay: a message sent in
        that other room, seen in `channel`, tagged `source-room-id`, `source-id`, ….
        """
        rng = self._rng
        user = rng.choice(self.users)
        recent = self._recent.setdefault(channel, deque(maxlen=_RECENT_PER_CHANNEL))
        roll = rng.random()
        parent = rng.choice(recent) if roll < 0.06 and recent else None
        bits = rng.choice(_BITS_AMOUNTS) if parent is None and roll > 0.98 else 0
        action = parent is None and not bits and rng.random() < 0.03

        prefix = ""
        if parent is not None:
            prefix = f"@{parent.user.display_name} "
        elif bits:
            prefix = f"Cheer{bits} "
        body, emotes = self._body(0 if action else len(prefix))
        text = f"\x01ACTION {body}\x01" if action else prefix + body
        message_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))

        badges = user.badges
        if bits and "bits/" not in badges:
            badges = f"{badges},bits/100" if badges else "bits/100"
        tags: list[tuple[str, str]] = [
            ("badge-info", user.badge_info),
            ("badges", badges),
        ]
        if bits:
            tags.append(("bits", str(bits)))
        if rng.random() < 0.5:
            tags.append(("client-nonce", f"{rng.getrandbits(128):032x}"))
        emotes_tag = _emotes_tag(emotes)
        tags += [
            ("color", user.color),
            ("display-name", user.display_name),
            ("emotes", emotes_tag),
            ("first-msg", "1" if rng.random() < 0.01 else "0"),
            ("flags", ""),
            ("id", message_id),
            ("mod", "1" if user.mod else "0"),
        ]
        thread_root: _Sent | None = None
        if parent is not None:
            thread_root = parent.thread_parent or parent
            tags += [
                ("reply-parent-display-name", parent.user.display_name),
                ("reply-parent-msg-body", parent.body),
                ("reply-parent-msg-id", parent.message_id),
                ("reply-parent-user-id", parent.user.user_id),
                ("reply-parent-user-login", parent.user.login),
                ("reply-thread-parent-display-name", thread_root.user.display_name),
                ("reply-thread-parent-msg-id", thread_root.message_id),
                ("reply-thread-parent-user-id", thread_root.user.user_id),
                ("reply-thread-parent-user-login", thread_root.user.login),
            ]
        tags += [
            ("returning-chatter", "1" if rng.random() < 0.02 else "0"),
            ("room-id", room_id),
        ]
        if shared_source_room_id is not None:
            tags += [
                ("source-badge-info", user.badge_info),
                ("source-badges", user.badges),
                ("source-id", str(uuid.UUID(int=rng.getrandbits(128), version=4))),
                ("source-only", "0"),
                ("source-room-id", shared_source_room_id),
            ]
        tags += [
            ("subscriber", "1" if user.subscriber else "0"),
            ("tmi-sent-ts", str(sent_ts_ms)),
            ("turbo", "1" if user.turbo else "0"),
            ("user-id", user.user_id),
            ("user-type", "mod" if user.mod else ""),
        ]
        if user.vip:
            tags.append(("vip", "1"))
        recent.append(_Sent(message_id, user, text, thread_root))
        tag_text = ";".join(f"{key}={escape_tag_value(value)}" for key, value in tags)
        login = user.login
        return f"@{tag_text} :{login}!{login}@{login}.tmi.twitch.tv PRIVMSG #{channel} :{text}"


def _emotes_tag(emotes: dict[str, list[tuple[int, int]]]) -> str:
    return "/".join(
        f"{emote_id}:" + ",".join(f"{start}-{end}" for start, end in ranges)
        for emote_id, ranges in emotes.items()
    )
