"""The EventSub connection state machine: decoded frames and the time in, actions out."""

from __future__ import annotations

import msgspec
import pytest

from twitch_ingestion.sources.eventsub.messages import (
    Keepalive,
    Notification,
    Reconnect,
    Revocation,
    SubscriptionInfo,
    Welcome,
)
from twitch_ingestion.sources.eventsub.session import (
    CLOSE_CODES,
    DEFAULT_KEEPALIVE_MARGIN_S,
    NON_RETRYABLE_REVOCATIONS,
    SUBSCRIBE_DEADLINE_S,
    TRANSITIONS,
    CloseOldSocket,
    Deliver,
    EventSubSession,
    Fatal,
    IllegalTransitionError,
    OpenReconnectUrl,
    ReconnectFresh,
    ReconnectKind,
    Revoked,
    SessionEvent,
    SessionState,
    Subscribe,
    close_code,
)

SUBSCRIPTION = SubscriptionInfo(
    "sub-1", "channel.chat.message", "1", "enabled", {"broadcaster_user_id": "1971641"}
)


def welcome(session_id: str = "S1", keepalive: int | None = 10) -> Welcome:
    return Welcome("w-" + session_id, 0, session_id, keepalive, None)


def notification(message_id: str) -> Notification:
    return Notification(message_id, 0, SUBSCRIPTION, msgspec.Raw(b"{}"), b"frame")


def revocation(message_id: str, status: str) -> Revocation:
    return Revocation(message_id, 0, msgspec.structs.replace(SUBSCRIPTION, status=status))


def state(session: EventSubSession) -> SessionState:
    """The state, read through a call so mypy does not keep an earlier narrowing."""
    return session.state


def running(session: EventSubSession, now: float = 0.0, session_id: str = "S1") -> int:
    socket = session.socket_opened(now)
    actions = session.receive(socket, welcome(session_id), now)
    assert actions == [Subscribe(session_id, now + SUBSCRIBE_DEADLINE_S)]
    session.subscriptions_created(session_id)
    assert state(session) is SessionState.RUNNING
    return socket


# -- connecting, welcome, subscribing -------------------------------------------------------


def test_welcome_asks_to_subscribe_within_twitchs_deadline() -> None:
    session = EventSubSession()
    socket = session.socket_opened(100.0)
    assert state(session) is SessionState.CONNECTING
    assert session.receive(socket, welcome(), 101.0) == [Subscribe("S1", 111.0)]
    assert state(session) is SessionState.WELCOMED
    assert session.subscribe_deadline == 111.0
    assert session.session_id == "S1"


def test_subscriptions_for_a_stale_session_do_not_count() -> None:
    session = EventSubSession()
    socket = session.socket_opened(0.0)
    session.receive(socket, welcome("S1"), 0.0)
    session.subscriptions_created("S0")
    assert state(session) is SessionState.WELCOMED
    session.subscriptions_created("S1")
    assert state(session) is SessionState.RUNNING
    assert session.subscribe_deadline is None


def test_no_welcome_within_the_timeout_reconnects_with_backoff() -> None:
    session = EventSubSession(welcome_timeout_s=10.0)
    session.socket_opened(0.0)
    assert session.next_deadline() == 10.0
    assert session.tick(9.9) == []
    assert session.tick(10.0) == [ReconnectFresh("welcome-timeout", ReconnectKind.BACKOFF)]
    assert state(session) is SessionState.DISCONNECTED
    assert session.next_deadline() is None


def test_a_second_welcome_on_the_same_socket_changes_nothing() -> None:
    session = EventSubSession()
    socket = running(session)
    assert session.receive(socket, welcome("S2"), 1.0) == []
    assert session.session_id == "S1"


# -- keepalive watchdog ---------------------------------------------------------------------


def test_silence_longer_than_keepalive_plus_margin_reconnects_at_once() -> None:
    session = EventSubSession(keepalive_margin_s=5.0)
    socket = running(session)
    assert session.next_deadline() == 15.0
    session.receive(socket, Keepalive("k1", 0), 12.0)
    assert session.next_deadline() == 27.0
    assert session.tick(26.9) == []
    assert session.tick(27.0) == [ReconnectFresh("keepalive-timeout", ReconnectKind.IMMEDIATE)]


def test_any_notification_also_feeds_the_watchdog() -> None:
    session = EventSubSession(keepalive_margin_s=5.0)
    socket = running(session)
    session.receive(socket, notification("n1"), 14.0)
    assert session.tick(15.0) == []
    assert session.next_deadline() == 29.0


def test_welcome_keepalive_timeout_sets_the_watchdog() -> None:
    session = EventSubSession(keepalive_margin_s=2.0)
    socket = session.socket_opened(0.0)
    # The subscribe deadline stays at Twitch's 10 s even with a longer keepalive.
    assert session.receive(socket, welcome(keepalive=30), 0.0) == [Subscribe("S1", 10.0)]
    assert session.next_deadline() == 32.0


def test_default_margin_covers_a_late_keepalive() -> None:
    assert DEFAULT_KEEPALIVE_MARGIN_S >= 1.0


# -- session_reconnect ----------------------------------------------------------------------


def test_reconnect_opens_the_new_url_and_keeps_subscriptions() -> None:
    session = EventSubSession()
    old = running(session)
    actions = session.receive(old, Reconnect("r1", 0, "S1", "wss://new.example/ws"), 5.0)
    assert actions == [OpenReconnectUrl("wss://new.example/ws")]
    assert state(session) is SessionState.MIGRATING

    new = session.socket_opened(5.5)
    # The old socket keeps delivering until the new welcome.
    assert session.receive(old, notification("n1"), 6.0) == [Deliver(notification("n1"))]
    # The new welcome: no Subscribe (subscriptions carried over), close the old socket.
    assert session.receive(new, welcome("S1"), 7.0) == [CloseOldSocket(old)]
    assert state(session) is SessionState.RUNNING
    # Twitch then closes the old socket: expected, nothing to do.
    assert session.socket_closed(old, 4004, 8.0) == []
    assert session.receive(new, notification("n2"), 9.0) == [Deliver(notification("n2"))]


def test_old_socket_closing_before_the_new_welcome_is_not_a_reconnect() -> None:
    session = EventSubSession()
    old = running(session)
    session.receive(old, Reconnect("r1", 0, "S1", "wss://new.example/ws"), 5.0)
    new = session.socket_opened(5.0)
    assert session.socket_closed(old, None, 6.0) == []
    assert session.receive(new, welcome("S1"), 7.0) == []
    assert state(session) is SessionState.RUNNING


def test_notifications_repeated_on_both_sockets_are_delivered_once() -> None:
    session = EventSubSession()
    old = running(session)
    session.receive(old, Reconnect("r1", 0, "S1", "wss://new.example/ws"), 5.0)
    new = session.socket_opened(5.0)
    assert session.receive(old, notification("n1"), 6.0) == [Deliver(notification("n1"))]
    session.receive(new, welcome("S1"), 6.5)
    assert session.receive(new, notification("n1"), 7.0) == []
    assert session.duplicates_dropped == 1


def test_invalid_reconnect_4007_starts_a_fresh_session_that_resubscribes() -> None:
    session = EventSubSession()
    old = running(session)
    session.receive(old, Reconnect("r1", 0, "S1", "wss://new.example/ws"), 5.0)
    new = session.socket_opened(5.0)
    assert session.socket_closed(new, 4007, 6.0) == [
        ReconnectFresh("close-4007", ReconnectKind.IMMEDIATE)
    ]
    # Anything the abandoned old socket still sends is ignored.
    assert session.receive(old, notification("late"), 6.5) == []
    fresh = session.socket_opened(7.0)
    assert session.receive(fresh, welcome("S2"), 7.5) == [Subscribe("S2", 17.5)]


def test_reconnect_socket_that_never_welcomes_is_abandoned() -> None:
    session = EventSubSession(welcome_timeout_s=10.0)
    old = running(session)
    session.receive(old, Reconnect("r1", 0, "S1", "wss://new.example/ws"), 2.0)
    session.socket_opened(3.0)
    session.receive(old, Keepalive("k", 0), 12.0)  # old socket alive: not a keepalive loss
    assert session.tick(12.9) == []
    assert session.tick(13.0) == [
        ReconnectFresh("reconnect-welcome-timeout", ReconnectKind.IMMEDIATE)
    ]


def test_second_reconnect_message_while_migrating_is_ignored() -> None:
    session = EventSubSession()
    old = running(session)
    session.receive(old, Reconnect("r1", 0, "S1", "wss://a/ws"), 1.0)
    assert session.receive(old, Reconnect("r2", 0, "S1", "wss://b/ws"), 2.0) == []


# -- close codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (4000, ReconnectKind.BACKOFF),  # internal server error
        (4001, ReconnectKind.BACKOFF),  # client sent inbound traffic
        (4002, ReconnectKind.IMMEDIATE),  # client failed ping-pong
        (4003, ReconnectKind.BACKOFF),  # connection unused: no subscription in time
        (4004, ReconnectKind.IMMEDIATE),  # reconnect grace time expired
        (4005, ReconnectKind.BACKOFF),  # network timeout
        (4006, ReconnectKind.BACKOFF),  # network error
        (4007, ReconnectKind.IMMEDIATE),  # invalid reconnect
    ],
)
def test_each_twitch_close_code_reconnects_fresh_as_documented(
    code: int, kind: ReconnectKind
) -> None:
    assert close_code(code).kind is kind
    session = EventSubSession()
    socket = running(session)
    assert session.socket_closed(socket, code, 1.0) == [ReconnectFresh(f"close-{code}", kind)]
    assert state(session) is SessionState.DISCONNECTED
    # The next connection is a new session: subscriptions are created again.
    fresh = session.socket_opened(2.0)
    assert session.receive(fresh, welcome("S2"), 2.0) == [Subscribe("S2", 12.0)]


def test_every_documented_close_code_has_a_name_and_meaning() -> None:
    assert sorted(CLOSE_CODES) == list(range(4000, 4008))
    assert close_code(4003).name == "connection-unused"
    assert all(info.meaning for info in CLOSE_CODES.values())


@pytest.mark.parametrize("code", [1000, 1006, 1011, None])
def test_other_closes_reconnect_with_backoff(code: int | None) -> None:
    session = EventSubSession()
    socket = running(session)
    actions = session.socket_closed(socket, code, 1.0)
    assert actions == [
        ReconnectFresh(f"close-{code}" if code is not None else "closed", ReconnectKind.BACKOFF)
    ]


def test_close_of_an_unknown_socket_is_ignored() -> None:
    session = EventSubSession()
    socket = running(session)
    assert session.socket_closed(socket + 10, 4000, 1.0) == []
    assert state(session) is SessionState.RUNNING


def test_connections_that_never_subscribe_end_in_fatal_not_a_loop() -> None:
    session = EventSubSession(max_unproductive_sessions=3)
    for attempt in range(1, 4):
        socket = session.socket_opened(float(attempt))
        session.receive(socket, welcome(f"S{attempt}"), float(attempt))
        actions = session.socket_closed(socket, 4003, float(attempt) + 10)
        if attempt < 3:
            assert actions == [ReconnectFresh("close-4003", ReconnectKind.BACKOFF)]
    assert len(actions) == 1
    fatal = actions[0]
    assert isinstance(fatal, Fatal)
    assert fatal.reason == "eventsub-reconnect-loop"
    assert "TWITCH_OAUTH_TOKEN" in fatal.message
    assert "close-4003" in fatal.message
    assert state(session) is SessionState.CLOSED
    assert session.next_deadline() is None


def test_a_subscribed_session_resets_the_loop_count() -> None:
    session = EventSubSession(max_unproductive_sessions=2)
    socket = session.socket_opened(0.0)
    assert session.socket_closed(socket, 4003, 1.0) != []
    socket = running(session, 2.0, "S2")
    assert session.socket_closed(socket, 4000, 3.0) == [
        ReconnectFresh("close-4000", ReconnectKind.BACKOFF)
    ]
    socket = session.socket_opened(4.0)
    assert session.socket_closed(socket, 4000, 5.0) == [
        ReconnectFresh("close-4000", ReconnectKind.BACKOFF)
    ]


# -- notifications, de-duplication, revocations --------------------------------------------


def test_notifications_are_delivered_and_repeats_dropped_across_reconnects() -> None:
    session = EventSubSession()
    socket = running(session)
    assert session.receive(socket, notification("a"), 1.0) == [Deliver(notification("a"))]
    session.socket_closed(socket, 4005, 2.0)
    socket = running(session, 3.0, "S2")
    assert session.receive(socket, notification("a"), 4.0) == []
    assert session.receive(socket, notification("b"), 4.0) == [Deliver(notification("b"))]
    assert session.duplicates_dropped == 1


def test_recent_ids_are_bounded_oldest_forgotten_first() -> None:
    session = EventSubSession(dedup_capacity=3)
    socket = running(session)
    for message_id in "abcd":
        session.receive(socket, notification(message_id), 1.0)
    # `a` was evicted by `d`; `b`, `c`, `d` are still known.
    assert session.receive(socket, notification("b"), 1.0) == []
    assert session.receive(socket, notification("a"), 1.0) == [Deliver(notification("a"))]


def test_messages_from_a_replaced_socket_are_ignored() -> None:
    session = EventSubSession()
    old = running(session)
    session.socket_closed(old, 4006, 1.0)
    session.socket_opened(2.0)
    assert session.receive(old, notification("late"), 2.5) == []


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        ("user_removed", False),
        ("authorization_revoked", False),
        ("moderator_removed", False),
        ("version_removed", False),
        ("chat_user_banned", False),
        ("beta_maintenance", True),
        ("notification_failures_exceeded", True),
        ("some_new_reason", True),
    ],
)
def test_revocation_says_why_and_whether_to_retry(status: str, retry: bool) -> None:
    session = EventSubSession()
    socket = running(session)
    assert session.receive(socket, revocation("r-" + status, status), 1.0) == [
        Revoked("sub-1", "channel.chat.message", "1971641", status, retry)
    ]
    assert (status in NON_RETRYABLE_REVOCATIONS) is not retry


def test_repeated_revocation_is_reported_once() -> None:
    session = EventSubSession()
    socket = running(session)
    assert len(session.receive(socket, revocation("r", "user_removed"), 1.0)) == 1
    assert session.receive(socket, revocation("r", "user_removed"), 2.0) == []


def test_closed_session_ignores_everything() -> None:
    session = EventSubSession()
    socket = running(session)
    session.close()
    assert session.receive(socket, notification("a"), 1.0) == []
    assert session.socket_closed(socket, 4000, 1.0) == []
    assert session.tick(1000.0) == []
    with pytest.raises(RuntimeError, match="closed"):
        session.socket_opened(2.0)


# -- the transition table -------------------------------------------------------------------


def test_every_state_has_a_row_and_every_target_is_a_state() -> None:
    assert set(TRANSITIONS) == set(SessionState)
    for row in TRANSITIONS.values():
        assert set(row.values()) <= set(SessionState)
    # Once closed, a session stays closed.
    assert TRANSITIONS[SessionState.CLOSED] == {SessionEvent.CLOSE: SessionState.CLOSED}


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (state, event)
        for state in SessionState
        for event in SessionEvent
        if event not in TRANSITIONS[state]
    ],
)
def test_an_event_the_table_does_not_allow_raises(state: SessionState, event: SessionEvent) -> None:
    session = EventSubSession()
    session._state = state  # put it there directly: only the table is under test
    with pytest.raises(IllegalTransitionError) as raised:
        session._fire(event)
    assert (raised.value.state, raised.value.event) == (state, event)
    assert session.state is state  # unchanged


def test_the_protocol_walks_only_the_tables_edges() -> None:
    """Every transition a normal life takes is in the table (each step would raise else)."""
    session = EventSubSession(max_unproductive_sessions=2)
    socket = running(session)  # DISCONNECTED → CONNECTING → WELCOMED → RUNNING
    assert session.receive(socket, Reconnect("r", 0, "S1", "wss://x"), 1.0) != []
    assert state(session) is SessionState.MIGRATING
    new = session.socket_opened(1.0)  # MIGRATING → MIGRATING
    session.receive(new, welcome("S1"), 1.5)
    assert state(session) is SessionState.RUNNING
    session.socket_closed(new, 4000, 2.0)
    assert state(session) is SessionState.DISCONNECTED
    socket = session.socket_opened(3.0)
    assert isinstance(session.socket_closed(socket, None, 3.5)[0], ReconnectFresh)
    socket = session.socket_opened(4.0)
    assert isinstance(session.socket_closed(socket, None, 4.5)[0], Fatal)  # CONNECTING → CLOSED
    assert state(session) is SessionState.CLOSED


def test_a_subscribed_session_is_never_given_up_whatever_the_limit() -> None:
    session = EventSubSession(max_unproductive_sessions=1)
    socket = running(session)
    assert session.socket_closed(socket, 4000, 1.0) == [
        ReconnectFresh("close-4000", ReconnectKind.BACKOFF)
    ]


def test_without_a_limit_a_session_reconnects_for_ever() -> None:
    session = EventSubSession()
    for attempt in range(1000):
        socket = session.socket_opened(float(attempt))
        actions = session.socket_closed(socket, None, attempt + 0.5)
        assert actions == [ReconnectFresh("closed", ReconnectKind.BACKOFF)]
