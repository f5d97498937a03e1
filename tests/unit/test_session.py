"""The sans-I/O Twitch session: bytes in, events out, no sockets and no clock."""

from __future__ import annotations

import pytest

from twitch_ingestion.sources.irc.session import (
    MAX_LINE_BYTES,
    SESSION_TRANSITIONS,
    AuthenticationFailed,
    ChannelJoined,
    ChannelParted,
    ChatLines,
    Event,
    JoinFailed,
    JoinTimedOut,
    KeepaliveTimedOut,
    LoggedIn,
    MalformedLine,
    PongReceived,
    ReconnectRequested,
    RoomIdLearned,
    SessionInput,
    SessionState,
    SessionStateError,
    TwitchSession,
)

TOKEN = "oauth:s3cr3ttokenvalue0123456789abcd"
WELCOME = b":tmi.twitch.tv 001 bot :Welcome, GLHF!\r\n"
PRIVMSG = (
    "@badge-info=;badges=;color=;display-name=Alice;emotes=;id={id};mod=0;room-id=42;"
    "tmi-sent-ts=1;user-id=7 :alice!alice@alice.tmi.twitch.tv PRIVMSG #chan :{text}\r\n"
)


def privmsg(n: int, text: str = "hello") -> bytes:
    return PRIVMSG.format(id=f"id-{n}", text=text).encode()


def ready_session(**kwargs: float) -> TwitchSession:
    session = TwitchSession("Bot", TOKEN, **kwargs)
    session.initiate(0.0)
    session.receive_data(WELCOME, 0.0)
    return session


def chat(events: list[Event]) -> list[str]:
    lines = [e for e in events if isinstance(e, ChatLines)]
    assert len(lines) <= 1, "one ChatLines per receive_data call"
    return [m.raw for m in lines[0].messages] if lines else []


def test_initiate_requests_capabilities_then_pass_then_nick() -> None:
    session = TwitchSession("Bot", TOKEN)

    data = session.initiate()

    assert data == (
        b"CAP REQ :twitch.tv/tags twitch.tv/commands\r\n"
        + f"PASS {TOKEN}\r\n".encode()
        + b"NICK bot\r\n"
    )
    assert session.state is SessionState.AUTHENTICATING


def test_anonymous_login_sends_a_placeholder_password_and_the_guest_nick() -> None:
    data = TwitchSession("justinfan12345", None).initiate()

    assert b"NICK justinfan12345\r\n" in data
    assert b"oauth:" not in data


def test_welcome_numeric_means_logged_in() -> None:
    session = TwitchSession("bot", TOKEN)
    session.initiate()

    events = session.receive_data(
        b":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands\r\n" + WELCOME, 1.0
    )

    assert events == [LoggedIn()]
    assert session.state is SessionState.READY


@pytest.mark.parametrize(
    "notice", ["Login authentication failed", "Improperly formatted auth", "Login unsuccessful"]
)
def test_auth_failure_notice_fails_the_session(notice: str) -> None:
    session = TwitchSession("bot", TOKEN)
    session.initiate()

    events = session.receive_data(f":tmi.twitch.tv NOTICE * :{notice}\r\n".encode(), 1.0)

    assert events == [AuthenticationFailed(notice)]
    assert session.state is SessionState.FAILED


def test_repr_never_shows_the_token() -> None:
    session = TwitchSession("bot", TOKEN)
    assert TOKEN not in repr(session)
    assert "s3cr3t" not in repr(session)


def test_server_ping_is_answered_through_data_to_send() -> None:
    session = ready_session()

    events = session.receive_data(b"PING :tmi.twitch.tv\r\n", 5.0)

    assert events == []
    assert session.data_to_send() == b"PONG :tmi.twitch.tv\r\n"
    assert session.data_to_send() == b""


def test_pong_is_an_event_not_chat() -> None:
    session = ready_session()
    events = session.receive_data(b":tmi.twitch.tv PONG tmi.twitch.tv :keepalive-1\r\n", 1.0)
    assert events == [PongReceived("keepalive-1")]


def test_partial_line_is_kept_for_the_next_chunk() -> None:
    session = ready_session()
    line = privmsg(1)

    first = session.receive_data(line[:50], 1.0)
    second = session.receive_data(line[50:-1], 1.0)  # everything but the final \n
    third = session.receive_data(line[-1:] + privmsg(2), 1.0)

    assert first == []
    assert second == []
    assert chat(third) == [line.decode().rstrip("\r\n"), privmsg(2).decode().rstrip("\r\n")]


def test_a_chunk_split_inside_a_multibyte_character_still_decodes() -> None:
    session = ready_session()
    line = privmsg(1, text="héllo 👋")
    cut = line.index("👋".encode()) + 2

    assert session.receive_data(line[:cut], 1.0) == []
    events = session.receive_data(line[cut:], 1.0)

    assert [m.trailing for m in events[0].messages] == ["héllo 👋"]  # type: ignore[union-attr]


def test_bare_lf_line_endings_are_accepted() -> None:
    session = ready_session()
    events = session.receive_data(privmsg(1).replace(b"\r\n", b"\n"), 1.0)
    assert chat(events) == [privmsg(1).decode().rstrip("\r\n")]


def test_invalid_utf8_line_becomes_malformed_with_its_exact_bytes_and_the_rest_flows() -> None:
    session = ready_session()
    bad = b"@id=x :bob!bob@bob.tmi.twitch.tv PRIVMSG #chan :caf\xe9 \xff\xfe"

    events = session.receive_data(privmsg(1) + bad + b"\r\n" + privmsg(2), 1.0)

    assert MalformedLine(bad, "invalid-utf8") in events
    assert [m.tags["id"] for m in events[-1].messages] == ["id-1", "id-2"]  # type: ignore[union-attr]


def test_unparsable_line_becomes_malformed_with_the_parser_reason() -> None:
    session = ready_session()

    events = session.receive_data(b"@badge-info=;badges=\r\n" + privmsg(1), 1.0)

    assert events[0] == MalformedLine(b"@badge-info=;badges=", "tags-without-command")
    assert len(chat(events)) == 1


def test_a_runaway_line_is_dropped_without_its_tail_becoming_a_line() -> None:
    session = ready_session()
    huge = b"@id=a :x!x@x PRIVMSG #chan :" + b"a" * (MAX_LINE_BYTES + 10)

    events = session.receive_data(huge, 1.0)
    assert [type(e) for e in events] == [MalformedLine]
    assert events[0].reason == "line-too-long"  # type: ignore[union-attr]

    later = session.receive_data(b"tail of the long line\r\n" + privmsg(1), 1.0)
    assert chat(later) == [privmsg(1).decode().rstrip("\r\n")]


def test_chat_lines_keep_wire_order_and_skip_connection_chatter() -> None:
    session = ready_session()
    data = (
        privmsg(1)
        + b"PING :tmi.twitch.tv\r\n"
        + b"@msg-id=sub;id=u1 :tmi.twitch.tv USERNOTICE #chan :yay\r\n"
        + b":tmi.twitch.tv 353 bot = #chan :bot\r\n"
        + b"@room-id=42;target-user-id=9;tmi-sent-ts=5 :tmi.twitch.tv CLEARCHAT #chan :bob\r\n"
        + b":tmi.twitch.tv HOSTTARGET #chan :other 10\r\n"
        + privmsg(2)
    )

    events = session.receive_data(data, 1.0)

    assert [m.command for m in events[-1].messages] == [  # type: ignore[union-attr]
        "PRIVMSG",
        "USERNOTICE",
        "CLEARCHAT",
        "HOSTTARGET",
        "PRIVMSG",
    ]
    assert session.lines_received == 7 + 1  # plus the welcome line


def test_own_join_echo_marks_the_channel_joined_and_is_not_chat() -> None:
    session = ready_session()
    out = session.join(["#Chan", "other"], now=1.0)
    assert out == b"JOIN #chan,#other\r\n"
    assert session.pending_joins == {"chan", "other"}

    events = session.receive_data(
        b":bot!bot@bot.tmi.twitch.tv JOIN #chan\r\n"
        b":someone!someone@someone.tmi.twitch.tv JOIN #chan\r\n",
        2.0,
    )

    assert events[0] == ChannelJoined("chan")
    assert [m.nick for m in events[1].messages] == ["someone"]  # type: ignore[union-attr]
    assert session.joined_channels == {"chan"}
    assert session.pending_joins == {"other"}


def test_join_batches_stay_under_the_irc_line_limit() -> None:
    session = ready_session()
    channels = [f"channel_{i:04d}_padding_xx" for i in range(60)]

    out = session.join(channels, now=0.0)

    lines = out.split(b"\r\n")[:-1]
    assert len(lines) > 1
    assert all(len(line) + 2 <= 512 for line in lines)
    joined = [c.removeprefix(b"#").decode() for line in lines for c in line[5:].split(b",")]
    assert joined == channels


def test_own_part_echo_is_an_event() -> None:
    session = ready_session()
    session.receive_data(b":bot!bot@bot.tmi.twitch.tv JOIN #chan\r\n", 1.0)
    events = session.receive_data(b":bot!bot@bot.tmi.twitch.tv PART #chan\r\n", 2.0)
    assert events == [ChannelParted("chan")]
    assert session.joined_channels == set()


def test_the_join_echo_of_a_channel_parted_while_its_join_was_in_flight_is_not_a_join() -> None:
    session = ready_session()
    session.join(["chan"], now=1.0)
    session.part(["chan"])  # before the echo: the server sees JOIN, then PART

    events = session.receive_data(b":bot!bot@bot.tmi.twitch.tv JOIN #chan\r\n", 2.0)

    # Not joined: the caller must not PART it a second time.
    assert events == []
    assert session.joined_channels == set()
    # Joined again later, its echo counts as usual.
    session.receive_data(b":bot!bot@bot.tmi.twitch.tv PART #chan\r\n", 2.5)
    session.join(["chan"], now=3.0)
    events = session.receive_data(b":bot!bot@bot.tmi.twitch.tv JOIN #chan\r\n", 4.0)
    assert events == [ChannelJoined("chan")]
    assert session.joined_channels == {"chan"}


@pytest.mark.parametrize(
    ("msg_id", "text"),
    [
        ("msg_channel_suspended", "This channel does not exist or has been suspended."),
        ("msg_banned", "You are permanently banned from talking in chan."),
        ("tos_ban", "TOS ban."),
        ("msg_channel_blocked", "Your account is blocked from this channel."),
    ],
)
def test_join_failure_notices_report_the_channel_and_twitchs_reason(msg_id: str, text: str) -> None:
    session = ready_session()
    session.join(["chan"], now=0.0)

    events = session.receive_data(
        f"@msg-id={msg_id} :tmi.twitch.tv NOTICE #chan :{text}\r\n".encode(), 1.0
    )

    assert events[0] == JoinFailed("chan", msg_id, text)
    assert len(chat(events)) == 1, "the NOTICE is also a Twitch event worth keeping"
    assert session.pending_joins == frozenset()


def test_other_channel_notices_are_chat_only() -> None:
    session = ready_session()
    events = session.receive_data(
        b"@msg-id=subs_on :tmi.twitch.tv NOTICE #chan :This room is now in subscribers-only mode."
        b"\r\n",
        1.0,
    )
    assert [type(e) for e in events] == [ChatLines]


def test_reconnect_is_requested() -> None:
    session = ready_session()
    events = session.receive_data(privmsg(1) + b":tmi.twitch.tv RECONNECT\r\n", 1.0)
    assert events[0] == ReconnectRequested()
    assert len(chat(events)) == 1


def test_roomstate_teaches_the_room_id_once() -> None:
    session = ready_session()
    line = (
        b"@emote-only=0;followers-only=-1;r9k=0;room-id=40286300;slow=0;subs-only=0 "
        b":tmi.twitch.tv ROOMSTATE #randers\r\n"
    )

    first = session.receive_data(line, 1.0)
    again = session.receive_data(
        b"@room-id=40286300;slow=5 :tmi.twitch.tv ROOMSTATE #randers\r\n", 2.0
    )

    assert first[0] == RoomIdLearned("randers", "40286300")
    assert [type(e) for e in again] == [ChatLines]
    assert session.room_ids == {"randers": "40286300"}


def test_silence_earns_a_ping_then_a_keepalive_timeout() -> None:
    session = ready_session(ping_interval_s=30.0, pong_timeout_s=5.0)

    assert session.poll(29.0) == []
    assert session.data_to_send() == b""
    assert session.poll(30.0) == []
    assert session.data_to_send().startswith(b"PING :")
    assert session.poll(34.0) == []
    assert session.poll(35.0) == [KeepaliveTimedOut(35.0)]


def test_any_data_after_our_ping_proves_the_connection_alive() -> None:
    session = ready_session(ping_interval_s=30.0, pong_timeout_s=5.0)
    session.poll(30.0)
    session.data_to_send()

    session.receive_data(privmsg(1), 32.0)

    assert session.poll(36.0) == []
    assert session.poll(62.0) == []
    assert session.data_to_send().startswith(b"PING :")


def test_time_spent_not_reading_is_not_silence() -> None:
    session = ready_session(ping_interval_s=30.0, pong_timeout_s=5.0)
    session.reset_idle_timer(100.0)
    assert session.poll(120.0) == []
    assert session.data_to_send() == b""


def test_a_join_without_echo_times_out() -> None:
    session = ready_session(join_timeout_s=10.0)
    session.join(["quiet", "loud"], now=0.0)
    session.receive_data(b":bot!bot@bot.tmi.twitch.tv JOIN #loud\r\n", 1.0)

    assert session.poll(9.0) == []
    assert session.poll(10.5) == [JoinTimedOut("quiet", 10.5)]
    assert session.poll(30.0) == []


def test_corpus_control_lines_are_classified_without_errors() -> None:
    session = ready_session()
    corpus = (
        b":tmi.twitch.tv CAP * NAK :twitch.tv/invalid\r\n"
        b":tmi.twitch.tv 002 bot :Your host is tmi.twitch.tv\r\n"
        b":tmi.twitch.tv 376 bot :>\r\n"
        b"@badge-info=;badges=;color=;display-name=bot;emote-sets=0;user-id=1;user-type= "
        b":tmi.twitch.tv GLOBALUSERSTATE\r\n"
        b"@badges=;color=;display-name=pajbot;emotes=;message-id=1;thread-id=1_2;user-id=1 "
        b":pajbot!pajbot@pajbot.tmi.twitch.tv WHISPER bot :hi\r\n"
    )
    events = session.receive_data(corpus, 1.0)
    assert [m.command for m in events[0].messages] == ["GLOBALUSERSTATE", "WHISPER"]  # type: ignore[union-attr]


# --- the transition table -------------------------------------------------------------


def session_in(state: SessionState) -> TwitchSession:
    """A session brought into `state` through its public API, the way a connection does."""
    session = TwitchSession("bot", TOKEN)
    if state is not SessionState.CONNECTING:
        session.initiate(0.0)
    if state is SessionState.READY:
        session.receive_data(WELCOME, 0.0)
    elif state is SessionState.FAILED:
        session.receive_data(b":tmi.twitch.tv NOTICE * :Login authentication failed\r\n", 0.0)
    assert session.state is state
    return session


def give(session: TwitchSession, given: SessionInput) -> list[Event]:
    """Feed `given` the way it happens for real: a call, or a line from Twitch."""
    if given is SessionInput.INITIATE:
        session.initiate(1.0)
    elif given is SessionInput.WELCOME:
        return session.receive_data(WELCOME, 1.0)
    elif given is SessionInput.LOGIN_REJECTED:
        return session.receive_data(b":tmi.twitch.tv NOTICE * :Login unsuccessful\r\n", 1.0)
    elif given is SessionInput.JOIN:
        session.join(["chan"], now=1.0)
    else:
        session.part(["chan"])
    return []


@pytest.mark.parametrize("state", list(SessionState))
@pytest.mark.parametrize("given", list(SessionInput))
def test_every_state_change_follows_the_transition_table_and_nothing_else(
    state: SessionState, given: SessionInput
) -> None:
    session = session_in(state)
    allowed = SESSION_TRANSITIONS[state].get(given)

    if allowed is None:
        with pytest.raises(SessionStateError, match=f"{given.value} is not allowed"):
            give(session, given)
        assert session.state is state, "a refused input changes nothing"
    else:
        give(session, given)
        assert session.state is allowed


def test_the_transition_table_lists_every_state_and_never_refuses_a_line_from_twitch() -> None:
    assert set(SESSION_TRANSITIONS) == set(SessionState)
    from_twitch = {SessionInput.WELCOME, SessionInput.LOGIN_REJECTED}
    for state, allowed in SESSION_TRANSITIONS.items():
        assert from_twitch <= allowed.keys(), f"{state}: a server line would raise"


def test_only_the_welcome_that_completes_a_login_is_reported_as_logged_in() -> None:
    for state in SessionState:
        events = give(session_in(state), SessionInput.WELCOME)
        assert events == ([LoggedIn()] if state is SessionState.AUTHENTICATING else [])
