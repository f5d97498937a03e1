"""The simulator's per-connection protocol, sans I/O: client bytes in, events out."""

from __future__ import annotations

import pytest

from twitch_ingestion.simulator.session import (
    MAX_CLIENT_LINE_BYTES,
    ChatSent,
    ClientQuit,
    ClientSession,
    JoinRequested,
    LoggedIn,
    LoginRejected,
    PartRequested,
    PongReceived,
    Reply,
    SessionEvent,
    SessionState,
)


def replies(events: list[SessionEvent]) -> list[str]:
    return [line for event in events if isinstance(event, Reply) for line in event.lines]


def logged_in(nick: str = "justinfan123") -> ClientSession:
    session = ClientSession()
    session.receive_data(b"CAP REQ :twitch.tv/tags twitch.tv/commands\r\n")
    session.receive_data(f"NICK {nick}\r\n".encode())
    assert session.state is SessionState.LOGGED_IN
    return session


def test_cap_req_for_known_capabilities_is_acknowledged_verbatim() -> None:
    events = ClientSession().receive_data(b"CAP REQ :twitch.tv/tags twitch.tv/commands\r\n")
    assert replies(events) == [":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands"]


def test_cap_req_with_an_unknown_capability_is_refused_as_a_whole() -> None:
    session = ClientSession()
    events = session.receive_data(b"CAP REQ :twitch.tv/tags twitch.tv/invalid\r\n")
    assert replies(events) == [":tmi.twitch.tv CAP * NAK :twitch.tv/tags twitch.tv/invalid"]
    assert not session.has_tags


def test_cap_ls_lists_the_three_twitch_capabilities() -> None:
    events = ClientSession().receive_data(b"CAP LS 302\r\n")
    assert replies(events) == [
        ":tmi.twitch.tv CAP * LS :twitch.tv/commands twitch.tv/membership twitch.tv/tags"
    ]


def test_anonymous_login_needs_no_pass_and_gets_the_welcome_numerics() -> None:
    events = ClientSession().receive_data(b"NICK justinfan12345\r\n")
    assert replies(events) == [
        ":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!",
        ":tmi.twitch.tv 002 justinfan12345 :Your host is tmi.twitch.tv",
        ":tmi.twitch.tv 003 justinfan12345 :This server is rather new",
        ":tmi.twitch.tv 004 justinfan12345 :-",
        ":tmi.twitch.tv 375 justinfan12345 :-",
        ":tmi.twitch.tv 372 justinfan12345 :You are in a maze of twisty passages, all alike.",
        ":tmi.twitch.tv 376 justinfan12345 :>",
    ]
    assert LoggedIn("justinfan12345", anonymous=True) in events


def test_anonymous_login_ignores_whatever_pass_came_first() -> None:
    events = ClientSession(valid_tokens=frozenset({"good"})).receive_data(
        b"PASS SCHMOOPIIE\r\nNICK justinfan7\r\n"
    )
    assert LoggedIn("justinfan7", anonymous=True) in events


def test_authenticated_login_adds_globaluserstate_and_lowercases_the_nick() -> None:
    session = ClientSession(valid_tokens=frozenset({"oauth:good"}))
    events = session.receive_data(b"PASS oauth:good\r\nNICK MyBot\r\n")
    lines = replies(events)
    assert lines[0] == ":tmi.twitch.tv 001 mybot :Welcome, GLHF!"
    assert lines[-1].endswith(":tmi.twitch.tv GLOBALUSERSTATE")
    assert "display-name=mybot;" in lines[-1]
    assert LoggedIn("mybot", anonymous=False) in events


def test_valid_tokens_match_with_or_without_the_oauth_prefix() -> None:
    events = ClientSession(valid_tokens=frozenset({"good"})).receive_data(
        b"PASS oauth:good\r\nNICK bot\r\n"
    )
    assert LoggedIn("bot", anonymous=False) in events


def test_any_oauth_token_is_accepted_when_no_valid_tokens_are_configured() -> None:
    events = ClientSession().receive_data(b"PASS oauth:whatever\r\nNICK bot\r\n")
    assert LoggedIn("bot", anonymous=False) in events


def test_wrong_token_gets_login_authentication_failed_and_closes() -> None:
    session = ClientSession(valid_tokens=frozenset({"good"}))
    events = session.receive_data(b"PASS oauth:bad\r\nNICK bot\r\nJOIN #a\r\n")
    assert replies(events) == [":tmi.twitch.tv NOTICE * :Login authentication failed"]
    assert LoginRejected("bot", "Login authentication failed") in events
    assert session.state is SessionState.CLOSED
    assert not any(isinstance(e, JoinRequested) for e in events)


@pytest.mark.parametrize("preamble", [b"PASS abc123\r\n", b"", b"PASS\r\n"])
def test_pass_without_oauth_prefix_is_improperly_formatted_auth(preamble: bytes) -> None:
    session = ClientSession()
    events = session.receive_data(preamble + b"NICK bot\r\n")
    assert replies(events) == [":tmi.twitch.tv NOTICE * :Improperly formatted auth"]
    assert session.state is SessionState.CLOSED


def test_commands_before_login_are_ignored_but_ping_is_answered() -> None:
    session = ClientSession()
    events = session.receive_data(b"JOIN #forsen\r\nPRIVMSG #forsen :hi\r\nPING :early\r\n")
    assert replies(events) == [":tmi.twitch.tv PONG tmi.twitch.tv :early"]
    assert session.state is SessionState.AWAITING_LOGIN


def test_client_ping_is_answered_with_its_argument() -> None:
    session = logged_in()
    assert replies(session.receive_data(b"PING :go-twitch-irc lol\r\n")) == [
        ":tmi.twitch.tv PONG tmi.twitch.tv :go-twitch-irc lol"
    ]


def test_pong_is_reported_with_its_argument() -> None:
    assert logged_in().receive_data(b"PONG :tmi.twitch.tv\r\n") == [PongReceived("tmi.twitch.tv")]


def test_join_lists_every_channel_target_in_lower_case_and_skips_ones_without_hash() -> None:
    events = logged_in().receive_data(b"JOIN #Forsen,pajlada,#xqcow\r\n")
    assert events == [JoinRequested(("forsen", "xqcow"))]


def test_part_is_reported_per_channel() -> None:
    assert logged_in().receive_data(b"PART #a,#b\r\n") == [PartRequested(("a", "b"))]


def test_lines_split_across_reads_and_bare_lf_endings_are_reassembled() -> None:
    session = logged_in()
    assert session.receive_data(b"JOIN #fo") == []
    assert session.receive_data(b"rsen\nJOIN #b") == [JoinRequested(("forsen",))]
    assert session.receive_data(b"\r\n") == [JoinRequested(("b",))]


def test_an_overlong_line_is_dropped_without_losing_the_next_one() -> None:
    session = logged_in()
    assert session.receive_data(b"PRIVMSG #a :" + b"x" * (MAX_CLIENT_LINE_BYTES + 10)) == []
    assert session.receive_data(b"yyy\r\nJOIN #a\r\n") == [JoinRequested(("a",))]


def test_unknown_command_after_login_gets_421() -> None:
    assert replies(logged_in("justinfan1").receive_data(b"FROBNICATE x\r\n")) == [
        ":tmi.twitch.tv 421 justinfan1 FROBNICATE :Unknown command"
    ]


def test_privmsg_from_a_logged_in_user_is_reported_but_not_from_anonymous() -> None:
    assert logged_in("justinfan1").receive_data(b"PRIVMSG #a :hi\r\n") == []
    session = ClientSession()
    session.receive_data(b"PASS oauth:x\r\nNICK bot\r\n")
    assert session.receive_data(b"PRIVMSG #a :hi\r\n") == [ChatSent("a")]


def test_quit_closes_the_session() -> None:
    session = logged_in()
    assert session.receive_data(b"QUIT\r\nJOIN #a\r\n") == [ClientQuit()]
    assert session.state is SessionState.CLOSED
