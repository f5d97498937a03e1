"""The subscription reconciler: Helix answers, revocations, listings and the time in,
actions and notes out. No sockets, no sleeps: the clock is a number."""

from __future__ import annotations

import json

import pytest

from twitch_ingestion.sources.eventsub.helix import (
    ExistingSubscription,
    HelixRefusal,
    RefusalKind,
    SubscriptionCreated,
    interpret_subscription,
)
from twitch_ingestion.sources.eventsub.http_messages import HttpResponse
from twitch_ingestion.sources.eventsub.reconciler import SubscriptionReconciler
from twitch_ingestion.sources.eventsub.reconciler_outputs import (
    ChannelChanged,
    ChannelState,
    Create,
    Delete,
    Failure,
    ListSubscriptions,
    LookUp,
    ReconcilerOutput,
    RoundSettled,
    SubscribeLate,
    SubscriptionFailed,
    classify,
)

TYPES = ("channel.chat.message", "channel.chat.clear")
NO_JITTER = {"random_uniform": lambda low, high: 1.0}


def reconciler(**options: object) -> SubscriptionReconciler:
    values: dict[str, object] = {
        "retry_base_s": 1.0,
        "retry_max_s": 60.0,
        "recheck_interval_s": 3600.0,
        "check_interval_s": 300.0,
        "max_in_flight": 10,
        **NO_JITTER,
        **options,
    }
    return SubscriptionReconciler(TYPES, **values)  # type: ignore[arg-type]


def creates(outputs: list[ReconcilerOutput]) -> list[Create]:
    return [o for o in outputs if isinstance(o, Create)]


def created(action: Create, subscription_id: str) -> SubscriptionCreated:
    return SubscriptionCreated(subscription_id, action.subscription_type, action.user_id, 0, 0, 10)


def refusal(status: int, message: str, **headers: str) -> HelixRefusal:
    body = json.dumps({"error": "x", "status": status, "message": message}).encode()
    result = interpret_subscription(
        HttpResponse(status, body, headers),
        subscription_type="channel.chat.message",
        broadcaster_user_id="1",
    )
    assert isinstance(result, HelixRefusal)
    return result


def conflict(action: Create) -> SubscriptionCreated:
    result = interpret_subscription(
        HttpResponse(409, b'{"message":"subscription already exists"}'),
        subscription_type=action.subscription_type,
        broadcaster_user_id=action.user_id,
    )
    assert isinstance(result, SubscriptionCreated)
    return result


def subscribed_session(
    rec: SubscriptionReconciler, now: float = 0.0, session: str = "S1"
) -> dict[tuple[str, str], str]:
    """Start `session` and confirm every subscription; (user id, type) → id."""
    ids: dict[tuple[str, str], str] = {}
    for action in creates(rec.session_started(session, now + 10, now)):
        ids[action.user_id, action.subscription_type] = (
            f"id-{action.user_id}-{action.subscription_type}"
        )
        rec.answered(action, created(action, ids[action.user_id, action.subscription_type]), now)
    return ids


def state_of(rec: SubscriptionReconciler, login: str) -> ChannelState:
    return rec.statuses()[login].state


# -- classification: every failure kind --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "headers", "reason", "permanent", "names_channel"),
    [
        (429, "Too Many Requests", {"Ratelimit-Remaining": "0"}, "rate-limited", False, False),
        (429, "Too Many Requests", {}, "rate-limited", False, False),
        (
            429,
            "number of websocket transports limit exceeded",
            {"Ratelimit-Remaining": "700"},
            "limit-exceeded",
            False,
            True,
        ),
        (
            429,
            "number of websocket subscriptions per connection exceeds the limit",
            {"Ratelimit-Remaining": "700"},
            "limit-exceeded",
            False,
            True,
        ),
        (
            429,
            "subscription cost 1 would exceed max_total_cost 10 (total_cost 10)",
            {"Ratelimit-Remaining": "700"},
            "limit-exceeded",
            True,
            True,
        ),
        (503, "Service Unavailable", {}, "transient", False, False),
        (500, "Internal Server Error", {}, "transient", False, False),
        (599, "network error: ClientConnectorError", {}, "transient", False, False),
        (
            400,
            "websocket transport session does not exist or has already disconnected",
            {},
            "session-gone",
            False,
            False,
        ),
        (401, "Invalid OAuth token", {}, "unauthorized", False, False),
        (403, "subscription missing proper authorization", {}, "forbidden", True, True),
        (400, "invalid condition: broadcaster_user_id", {}, "bad-request", True, True),
    ],
)
def test_every_refusal_is_classified_permanent_or_temporary(
    status: int,
    message: str,
    headers: dict[str, str],
    reason: str,
    permanent: bool,
    names_channel: bool,
) -> None:
    failure = classify(refusal(status, message, **headers), "streamer")
    assert (failure.reason, failure.permanent, failure.names_channel) == (
        reason,
        permanent,
        names_channel,
    )
    assert "streamer" in failure.message
    assert str(status) in failure.message


def test_an_unreadable_answer_is_temporary() -> None:
    result = interpret_subscription(
        HttpResponse(202, b"{}"), subscription_type="channel.chat.message", broadcaster_user_id="1"
    )
    assert isinstance(result, HelixRefusal)
    assert not classify(result, "streamer").permanent


# -- creating, and the schedule of retries -------------------------------------------------


def test_a_session_creates_every_type_of_every_channel_then_settles() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    rec.add_channel("bravo", "2", 0.0)
    assert creates(rec.poll(0.0)) == []  # no session: nothing to create on
    actions = creates(rec.session_started("S1", 10.0, 0.0))
    assert [(a.user_id, a.subscription_type) for a in actions] == [
        ("1", TYPES[0]),
        ("1", TYPES[1]),
        ("2", TYPES[0]),
        ("2", TYPES[1]),
    ]
    outputs: list[ReconcilerOutput] = []
    for number, action in enumerate(actions):
        outputs = rec.answered(action, created(action, f"id{number}"), 1.0)
    assert RoundSettled("S1", 2, 4, 0) in outputs
    assert {login: s.state for login, s in rec.statuses().items()} == {
        "alpha": ChannelState.SUBSCRIBED,
        "bravo": ChannelState.SUBSCRIBED,
    }
    assert rec.subscription_ids() == {"alpha": ["id0", "id1"], "bravo": ["id2", "id3"]}


def test_no_more_than_max_in_flight_calls_and_the_longest_waiting_go_first() -> None:
    rec = reconciler(max_in_flight=2, retry_base_s=0.1)
    for index in range(3):
        rec.add_channel(f"c{index}", str(index), 0.0)
    first = creates(rec.session_started("S1", 10.0, 0.0))
    assert [a.user_id for a in first] == ["0", "0"]
    # The first one fails and is due again in 0.1 s; channel 1 has waited since 0.
    retried = creates(rec.answered(first[0], refusal(503, "down"), 0.5))
    assert [(a.user_id, a.subscription_type) for a in retried] == [("1", TYPES[0])]
    # The failed one waits for its retry (0.1 s) while the slots are taken.
    assert creates(rec.poll(0.6)) == []


def test_temporary_failures_back_off_exponentially_and_are_retried_until_they_succeed() -> None:
    rec = reconciler(retry_base_s=1.0, retry_max_s=8.0)
    rec.add_channel("alpha", "1", 0.0)
    [action, other] = creates(rec.session_started("S1", 10.0, 0.0))
    rec.answered(other, created(other, "id-clear"), 0.0)
    now = 0.0
    delays: list[float] = []
    for _ in range(6):
        outputs = rec.answered(action, refusal(503, "Service Unavailable"), now)
        [failed] = [o for o in outputs if isinstance(o, SubscriptionFailed)]
        delays.append(failed.retry_in_s)
        assert state_of(rec, "alpha") is ChannelState.FAILING
        assert creates(rec.poll(now + failed.retry_in_s - 0.001)) == []
        now += failed.retry_in_s
        assert rec.next_deadline() == now
        [action] = creates(rec.poll(now))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    outputs = rec.answered(action, created(action, "id-message"), now)
    assert state_of(rec, "alpha") is ChannelState.SUBSCRIBED
    changed = [o for o in outputs if isinstance(o, ChannelChanged)]
    assert changed[0].before is not None
    assert changed[0].before.state is ChannelState.FAILING


def test_jitter_keeps_each_delay_within_twenty_percent() -> None:
    rec = reconciler(random_uniform=lambda low, high: high, retry_base_s=10.0)
    rec.add_channel("alpha", "1", 0.0)
    action = creates(rec.session_started("S1", 10.0, 0.0))[0]
    outputs = rec.answered(action, refusal(503, "down"), 0.0)
    [failed] = [o for o in outputs if isinstance(o, SubscriptionFailed)]
    assert failed.retry_in_s == pytest.approx(12.0)


def test_a_transport_limit_429_after_a_reconnect_is_retried_not_dropped() -> None:
    # Twitch counts the dead session's transport for a while after a reconnect.
    rec = reconciler(retry_base_s=1.0)
    rec.add_channel("alpha", "1", 0.0)
    subscribed_session(rec)
    rec.session_lost(5.0)
    actions = creates(rec.session_started("S2", 15.0, 5.0))
    limit = refusal(
        429, "number of websocket transports limit exceeded", **{"Ratelimit-Remaining": "700"}
    )
    now = 5.0
    for _ in range(5):  # ten seconds of 429s
        for action in actions:
            rec.answered(action, limit, now)
        assert state_of(rec, "alpha") is ChannelState.FAILING
        actions = []
        while not actions:  # the next deadline may be another one (the late warning)
            deadline = rec.next_deadline()
            assert deadline is not None, "dropped for good"
            now = deadline
            actions = creates(rec.poll(now))
    for index, action in enumerate(actions):
        rec.answered(action, created(action, f"new{index}"), now)
    assert state_of(rec, "alpha") is ChannelState.SUBSCRIBED


def test_a_permanent_refusal_is_reported_once_and_rechecked_on_the_slow_schedule() -> None:
    rec = reconciler(recheck_interval_s=3600.0)
    rec.add_channel("alpha", "1", 0.0)
    rec.add_channel("bravo", "2", 0.0)
    actions = creates(rec.session_started("S1", 10.0, 0.0))
    forbidden = refusal(403, "subscription missing proper authorization")
    changes: list[ChannelChanged] = []
    for action in actions:
        result = (
            forbidden if action.user_id == "1" else created(action, "id" + action.subscription_type)
        )
        changes += [o for o in rec.answered(action, result, 1.0) if isinstance(o, ChannelChanged)]
    refused = [c for c in changes if c.after is not None and c.after.login == "alpha"]
    assert [c.after.state for c in refused if c.after] == [ChannelState.REFUSED]
    status = rec.statuses()["alpha"]
    assert status.failure is not None
    assert status.failure.permanent
    assert status.describe().startswith("forbidden: cannot subscribe")
    # Nothing for an hour (the session has work: it is not idle)...
    assert creates(rec.poll(3600.0)) == []
    assert rec.wants_session(3600.0)
    # ...then the re-check: a scope granted meanwhile makes it work.
    recheck = creates(rec.poll(3601.0))
    assert [a.user_id for a in recheck] == ["1", "1"]
    for action in recheck:
        rec.answered(action, created(action, "late" + action.subscription_type), 3601.0)
    assert state_of(rec, "alpha") is ChannelState.SUBSCRIBED


def test_a_connection_of_refused_channels_wants_no_session_until_the_recheck() -> None:
    rec = reconciler(recheck_interval_s=100.0)
    rec.add_channel("alpha", "1", 0.0)
    for action in creates(rec.session_started("S1", 10.0, 0.0)):
        rec.answered(action, refusal(403, "subscription missing proper authorization"), 0.0)
    rec.session_lost(10.0)  # Twitch closed the unused session (4003)
    assert not rec.wants_session(10.0)
    assert rec.next_recheck() == 100.0
    assert rec.wants_session(100.0)
    assert state_of(rec, "alpha") is ChannelState.REFUSED  # never "dropped"


# -- sessions ----------------------------------------------------------------------------


def test_a_lost_session_takes_its_subscriptions_and_a_new_one_creates_them_again() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    subscribed_session(rec)
    outputs = rec.session_lost(20.0)
    assert state_of(rec, "alpha") is ChannelState.PENDING
    assert rec.subscription_ids() == {}
    assert not creates(outputs)
    assert len(creates(rec.session_started("S2", 40.0, 30.0))) == 2


def test_answers_for_an_earlier_session_are_ignored() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    [old, _] = creates(rec.session_started("S1", 10.0, 0.0))
    rec.session_lost(1.0)
    rec.session_started("S2", 12.0, 2.0)
    assert rec.answered(old, created(old, "stale"), 3.0) == []
    assert rec.subscription_ids() == {}


def test_no_subscription_by_the_deadline_is_said_once_with_the_last_failure() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    actions = creates(rec.session_started("S1", 10.0, 0.0))
    for action in actions:
        rec.answered(action, refusal(503, "Service Unavailable"), 1.0)
    assert rec.next_deadline() == 2.0  # the retry comes first
    late = [o for o in rec.poll(10.0) if isinstance(o, SubscribeLate)]
    assert len(late) == 1
    assert late[0].last is not None
    assert late[0].last.reason == "transient"
    assert [o for o in rec.poll(11.0) if isinstance(o, SubscribeLate)] == []


def test_one_subscription_in_time_is_enough_for_the_deadline() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    [first, second] = creates(rec.session_started("S1", 10.0, 0.0))
    rec.answered(first, created(first, "id"), 1.0)
    rec.answered(second, refusal(503, "down"), 1.0)
    assert [o for o in rec.poll(30.0) if isinstance(o, SubscribeLate)] == []


# -- 409 ---------------------------------------------------------------------------------


def existing(
    action: Create | LookUp, session_id: str, sub_id: str, status: str = "enabled"
) -> ExistingSubscription:
    return ExistingSubscription(
        sub_id, action.subscription_type, status, action.user_id, session_id
    )


def test_a_409_on_the_live_session_is_kept_with_its_id() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    [action, other] = creates(rec.session_started("S1", 10.0, 0.0))
    rec.answered(other, created(other, "other"), 0.0)
    [lookup] = [o for o in rec.answered(action, conflict(action), 0.0) if isinstance(o, LookUp)]
    assert (lookup.user_id, lookup.subscription_type) == ("1", TYPES[0])
    listing = [existing(lookup, "S0-dead", "dead-id"), existing(lookup, "S1", "mine")]
    rec.looked_up(lookup, listing, 0.5)
    assert state_of(rec, "alpha") is ChannelState.SUBSCRIBED
    assert sorted(rec.subscription_ids()["alpha"]) == ["mine", "other"]


def test_a_409_held_by_a_dead_or_foreign_session_is_deleted_and_created_anew() -> None:
    rec = reconciler(retry_base_s=1.0)
    rec.add_channel("alpha", "1", 0.0)
    [action, other] = creates(rec.session_started("S2", 10.0, 0.0))
    rec.answered(other, created(other, "other"), 0.0)
    [lookup] = [o for o in rec.answered(action, conflict(action), 0.0) if isinstance(o, LookUp)]
    outputs = rec.looked_up(lookup, [existing(lookup, "S1-dead", "stale")], 0.5)
    [delete] = [o for o in outputs if isinstance(o, Delete)]
    assert (delete.subscription_id, delete.recreate) == ("stale", True)
    assert state_of(rec, "alpha") is ChannelState.FAILING  # not ours yet
    assert creates(rec.deleted(delete, None, 0.6)) == []  # due after the backoff step
    [again] = creates(rec.poll(1.5))
    rec.answered(again, created(again, "fresh"), 1.6)
    assert state_of(rec, "alpha") is ChannelState.SUBSCRIBED
    assert "fresh" in rec.subscription_ids()["alpha"]


def test_a_409_for_a_subscription_nobody_lists_is_retried() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    [action, _] = creates(rec.session_started("S1", 10.0, 0.0))
    [lookup] = [o for o in rec.answered(action, conflict(action), 0.0) if isinstance(o, LookUp)]
    outputs = rec.looked_up(
        lookup, [existing(lookup, "S0", "x", status="websocket_disconnected")], 0.1
    )
    [failed] = [o for o in outputs if isinstance(o, SubscriptionFailed)]
    assert failed.failure.reason == "conflict"
    assert creates(rec.poll(0.1 + failed.retry_in_s))


def test_a_failed_delete_of_the_stale_one_is_retried_through_a_new_create() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    [action, _] = creates(rec.session_started("S2", 10.0, 0.0))
    [lookup] = [o for o in rec.answered(action, conflict(action), 0.0) if isinstance(o, LookUp)]
    [delete] = [
        o
        for o in rec.looked_up(lookup, [existing(lookup, "S1", "stale")], 0.0)
        if isinstance(o, Delete)
    ]
    outputs = rec.deleted(delete, refusal(503, "down"), 0.1)
    assert [o.failure.reason for o in outputs if isinstance(o, SubscriptionFailed)] == ["transient"]
    assert creates(rec.poll(100.0))


# -- removing channels, revocations, the periodic check -----------------------------------


def test_a_removed_channel_has_its_subscriptions_deleted_by_id() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    rec.add_channel("bravo", "2", 0.0)
    ids = subscribed_session(rec)
    outputs = rec.remove_channel("1", 5.0)
    assert sorted(o.subscription_id for o in outputs if isinstance(o, Delete)) == sorted(
        ids["1", t] for t in TYPES
    )
    assert [c.after for c in outputs if isinstance(c, ChannelChanged)] == [None]
    assert set(rec.statuses()) == {"bravo"}


def test_a_create_answered_after_its_channel_was_removed_is_undone() -> None:
    rec = reconciler()
    rec.add_channel("alpha", "1", 0.0)
    [action, _] = creates(rec.session_started("S1", 10.0, 0.0))
    rec.remove_channel("1", 0.5)
    outputs = rec.answered(action, created(action, "late"), 1.0)
    assert [o.subscription_id for o in outputs if isinstance(o, Delete)] == ["late"]


@pytest.mark.parametrize(
    ("status", "retry", "state", "reason"),
    [
        ("beta_maintenance", True, ChannelState.FAILING, "revoked"),
        ("authorization_revoked", False, ChannelState.REFUSED, "revoked-authorization_revoked"),
        ("user_removed", False, ChannelState.REFUSED, "revoked-user_removed"),
    ],
)
def test_a_revocation_is_retried_or_refused_as_its_status_says(
    status: str, retry: bool, state: ChannelState, reason: str
) -> None:
    rec = reconciler(retry_base_s=1.0, recheck_interval_s=3600.0)
    rec.add_channel("alpha", "1", 0.0)
    subscribed_session(rec)
    outputs = rec.revoked("1", TYPES[1], status, retry, 10.0)
    [failed] = [o for o in outputs if isinstance(o, SubscriptionFailed)]
    assert failed.failure.reason == reason
    assert failed.retry_in_s == (1.0 if retry else 3600.0)
    assert state_of(rec, "alpha") is state
    assert TYPES[1] not in str(rec.subscription_ids())


def test_the_periodic_check_recreates_what_vanished_adopts_lost_answers_and_cleans_up() -> None:
    rec = reconciler(check_interval_s=1.5, retry_base_s=10.0)
    rec.add_channel("alpha", "1", 0.0)
    rec.add_channel("bravo", "2", 0.0)
    actions = creates(rec.session_started("S1", 10.0, 0.0))
    by_key = {(a.user_id, a.subscription_type): a for a in actions}
    for key, action in by_key.items():
        if key != ("2", TYPES[1]):  # this answer is lost (a timeout)
            rec.answered(action, created(action, f"{key[0]}-{key[1]}"), 1.0)
    rec.answered(by_key["2", TYPES[1]], refusal(599, "network error: TimeoutError"), 1.0)
    assert rec.next_deadline() is not None
    [check] = [o for o in rec.poll(1.5) if isinstance(o, ListSubscriptions)]
    assert check == ListSubscriptions("S1")
    listing = [
        # alpha's message subscription vanished; its clear one is still there.
        ExistingSubscription(f"1-{TYPES[1]}", TYPES[1], "enabled", "1", "S1"),
        ExistingSubscription(f"2-{TYPES[0]}", TYPES[0], "enabled", "2", "S1"),
        # the create whose answer was lost did happen:
        ExistingSubscription("made", TYPES[1], "enabled", "2", "S1"),
        # a removed channel's leftover on our session, and another session's (not ours):
        ExistingSubscription("leftover", TYPES[0], "enabled", "9", "S1"),
        ExistingSubscription("elsewhere", TYPES[0], "enabled", "8", "S-other"),
    ]
    outputs = rec.listed(check, listing, 1.5)
    assert [o.subscription_id for o in outputs if isinstance(o, Delete)] == ["leftover"]
    vanished = [o for o in outputs if isinstance(o, SubscriptionFailed)]
    assert [(o.login, o.failure.reason) for o in vanished] == [("alpha", "vanished")]
    assert state_of(rec, "bravo") is ChannelState.SUBSCRIBED
    assert state_of(rec, "alpha") is ChannelState.FAILING
    assert creates(rec.poll(1.6)) == []
    assert [o for o in rec.poll(2.9) if isinstance(o, ListSubscriptions)] == []
    assert [o for o in rec.poll(3.0) if isinstance(o, ListSubscriptions)] == [check]
    [again] = creates(rec.poll(1.5 + vanished[0].retry_in_s))
    assert (again.user_id, again.subscription_type) == ("1", TYPES[0])
    rec.answered(again, created(again, "back"), 12.0)
    assert state_of(rec, "alpha") is ChannelState.SUBSCRIBED


# -- five minutes of Helix and the WebSocket unreachable, on a fake clock -------------------


def test_five_minutes_unreachable_keeps_trying_and_recovers_within_one_backoff_step() -> None:
    """The EventSub session and the reconciler driven together as the shell drives them:
    every socket fails to open for five minutes, then Twitch is back."""
    from twitch_ingestion.sources.common.backoff import ExponentialBackoff
    from twitch_ingestion.sources.eventsub.messages import Welcome
    from twitch_ingestion.sources.eventsub.session import (
        EventSubSession,
        Fatal,
        ReconnectFresh,
        ReconnectKind,
        SessionState,
        Subscribe,
    )

    session = EventSubSession(max_unproductive_sessions=None)
    rec = reconciler(retry_base_s=1.0, retry_max_s=60.0)
    rec.add_channel("alpha", "1", 0.0)
    backoff = ExponentialBackoff(1.0, 60.0, jitter=0.0)
    now = 0.0
    attempts = 0
    outage_ends = 300.0
    while now < outage_ends:
        socket = session.socket_opened(now)
        actions = session.socket_closed(socket, None, now + 0.01)  # connection refused
        assert not any(isinstance(a, Fatal) for a in actions)
        assert actions == [ReconnectFresh("closed", ReconnectKind.BACKOFF)]
        rec.session_lost(now)
        attempts += 1
        now += backoff.next_delay()
    assert attempts >= 8  # it kept trying the whole time, never gave up
    assert state_of(rec, "alpha") is ChannelState.PENDING
    recovered_by = now  # the next attempt, at most one backoff step (60 s) after the end
    assert recovered_by - outage_ends <= 60.0
    socket = session.socket_opened(now)
    [subscribe] = session.receive(socket, Welcome("w", 0, "S1", 10, None), now)
    assert isinstance(subscribe, Subscribe)
    for action in creates(rec.session_started(subscribe.session_id, subscribe.deadline, now)):
        rec.answered(action, created(action, action.subscription_type), now + 0.1)
    session.subscriptions_created("S1")
    assert session.state is SessionState.RUNNING
    assert state_of(rec, "alpha") is ChannelState.SUBSCRIBED


def test_a_failure_value_reports_the_channel_by_name() -> None:
    failure = Failure("forbidden", True, True, "cannot subscribe")
    assert failure.problem("alpha").channel == "alpha"
    assert RefusalKind.FORBIDDEN.reports_channel
