"""The subscriptions one EventSub connection should hold, what Twitch confirmed, and what
to do about the difference: sans-I/O, time passed in (like `kafka/delivery.py`).

Desired: the connection's channels times the chat subscription types. Actual: what Twitch
confirmed on the live session, with the subscription ids (so a removed channel's
subscriptions can be deleted). Every input — a welcome, a Helix answer, a revocation, a
listing, the time — returns outputs: *actions* the shell executes (`Create`, `LookUp`,
`Delete`, `ListSubscriptions`) and *notes* it passes on (`ChannelChanged` for logs,
reports and readiness; `SubscriptionFailed` for the metric; `SubscribeLate`;
`RoundSettled`). The shell never decides.

Every failure is classified by `classify` (`reconciler_outputs.py`, with the actions,
notes and channel states the reconciler returns): temporary ones are retried with
backoff, permanent ones reported once per channel and re-checked on a slow schedule.

No channel is ever dropped for good: a refused channel stays desired and is tried again.

A 409 ("already exists") is not taken on trust: the existing subscription is looked up
by type and condition; it is kept when it belongs to the live session, else (a dead
session Twitch has not cleaned up yet, another instance of a fleet hand-over) deleted
and created anew. A periodic `ListSubscriptions` (`check_interval_s`) catches
subscriptions that vanished without a revocation, adopts ones whose answer was lost,
and deletes leftovers of removed channels.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from twitch_ingestion.sources.common.backoff import ExponentialBackoff
from twitch_ingestion.sources.eventsub.helix import (
    ExistingSubscription,
    HelixRefusal,
    SubscriptionCreated,
)
from twitch_ingestion.sources.eventsub.reconciler_outputs import (
    ChannelChanged,
    ChannelState,
    ChannelStatus,
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

__all__ = ["CHECK_INTERVAL_S", "RECHECK_INTERVAL_S", "SubscriptionReconciler"]

CHECK_INTERVAL_S = 300.0
"""How often the live session's subscriptions are listed and compared: a vanished
subscription costs at most this much chat; one Helix call per connection and check."""
RECHECK_INTERVAL_S = 3600.0
"""How often a permanently refused subscription is tried again (TWITCH_JOIN_RETRY_INTERVAL_S,
as IRC retries a failed JOIN)."""


# ---------------------------------------------------------------------------------------
# The reconciler


class _ItemState(enum.Enum):
    WANTED = "wanted"
    """To be created once `due_at` has come and a session is live."""
    CREATING = "creating"
    LOOKING_UP = "looking-up"
    DELETING = "deleting"
    """Deleting what stood in the way (a 409 on another session) before creating anew."""
    CONFIRMED = "confirmed"


@dataclass(slots=True)
class _Item:
    login: str
    user_id: str
    subscription_type: str
    backoff: ExponentialBackoff
    state: _ItemState = _ItemState.WANTED
    due_at: float = 0.0
    failure: Failure | None = None
    subscription_id: str = ""
    ticket: int = 0
    """Raised at every change of state: an answer carrying an older ticket is stale."""
    deleting: set[str] = field(default_factory=set)


_IN_FLIGHT = (_ItemState.CREATING, _ItemState.LOOKING_UP, _ItemState.DELETING)


class SubscriptionReconciler:
    """Desired vs confirmed subscriptions of one connection; see the module docstring."""

    def __init__(
        self,
        subscription_types: Sequence[str],
        *,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        recheck_interval_s: float = RECHECK_INTERVAL_S,
        check_interval_s: float = CHECK_INTERVAL_S,
        max_in_flight: int = 10,
        random_uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._types = tuple(subscription_types)
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._recheck_s = recheck_interval_s
        self._check_s = check_interval_s
        self._max_in_flight = max_in_flight
        self._random = random_uniform
        self._items: dict[tuple[str, str], _Item] = {}
        """(user id, type) → item, in the order channels were added."""
        self._logins: dict[str, str] = {}
        """User id → login of every desired channel."""
        self._statuses: dict[str, ChannelStatus] = {}
        """Login → the status last returned in a `ChannelChanged`."""
        self._tickets = 0
        self.session_id: str | None = None
        self._deadline = 0.0
        self._confirmed_any = False
        self._late_said = False
        self._settled_said = False
        self._check_at: float | None = None
        self._checking = False
        self._last_failure: Failure | None = None

    # -- desired set ---------------------------------------------------------------------

    def add_channel(self, login: str, user_id: str, now: float) -> list[ReconcilerOutput]:
        if user_id in self._logins:
            return []
        self._logins[user_id] = login
        for subscription_type in self._types:
            backoff = ExponentialBackoff(
                self._retry_base_s, self._retry_max_s, random_uniform=self._random
            )
            self._items[user_id, subscription_type] = _Item(
                login, user_id, subscription_type, backoff, due_at=now
            )
        return self._after(now)

    def remove_channel(self, user_id: str, now: float) -> list[ReconcilerOutput]:
        """Stop wanting the channel: its confirmed subscriptions are deleted."""
        login = self._logins.pop(user_id, None)
        if login is None:
            return []
        outputs: list[ReconcilerOutput] = []
        for subscription_type in self._types:
            item = self._items.pop((user_id, subscription_type))
            if item.subscription_id:
                outputs.append(Delete(item.subscription_id, login, user_id, subscription_type))
        return [*outputs, *self._after(now)]

    @property
    def logins(self) -> list[str]:
        return list(self._logins.values())

    # -- the session ---------------------------------------------------------------------

    def session_started(
        self, session_id: str, deadline: float, now: float
    ) -> list[ReconcilerOutput]:
        """A fresh session was welcomed: it holds nothing; create everything by `deadline`
        (a `session_reconnect` keeps the session and its subscriptions: not this)."""
        self.session_id = session_id
        self._deadline = deadline
        self._confirmed_any = self._late_said = self._settled_said = False
        self._check_at = now + self._check_s
        self._checking = False
        self._last_failure = None
        for item in self._items.values():
            self._forget_session(item, now)
        return self._after(now)

    def session_lost(self, now: float) -> list[ReconcilerOutput]:
        """The session ended: its subscriptions ended with it (Twitch disables them)."""
        self.session_id = None
        self._check_at = None
        self._checking = False
        for item in self._items.values():
            self._forget_session(item, now)
        return self._after(now)

    def _forget_session(self, item: _Item, now: float) -> None:
        if item.state is _ItemState.CONFIRMED:
            item.subscription_id = ""
        if item.state is not _ItemState.WANTED:
            self._set(item, _ItemState.WANTED)
        if item.failure is None or not item.failure.permanent:
            item.due_at = now  # a new session is a new chance; the backoff goes on

    # -- answers -------------------------------------------------------------------------

    def answered(
        self, action: Create, result: SubscriptionCreated | HelixRefusal, now: float
    ) -> list[ReconcilerOutput]:
        """What Create Subscription answered for `action`."""
        item = self._items.get((action.user_id, action.subscription_type))
        if item is None:
            # Removed while the call was in flight: undo what it made.
            if isinstance(result, SubscriptionCreated) and result.id:
                return [Delete(result.id, action.login, action.user_id, action.subscription_type)]
            return []
        if item.ticket != action.ticket or action.session_id != self.session_id:
            return []  # for an earlier state or session: dies with it
        if isinstance(result, HelixRefusal):
            return [*self._failed(item, classify(result, item.login), now), *self._after(now)]
        if result.already_exists:
            self._set(item, _ItemState.LOOKING_UP)
            lookup = LookUp(
                action.session_id, item.login, item.user_id, item.subscription_type, item.ticket
            )
            return [lookup, *self._after(now)]
        self._confirm(item, result.id)
        return self._after(now)

    def looked_up(
        self, action: LookUp, result: Iterable[ExistingSubscription] | HelixRefusal, now: float
    ) -> list[ReconcilerOutput]:
        """Every subscription of `action.subscription_type` Twitch lists, or why not."""
        item = self._items.get((action.user_id, action.subscription_type))
        if item is None or item.ticket != action.ticket or action.session_id != self.session_id:
            return []
        if isinstance(result, HelixRefusal):
            return [*self._failed(item, classify(result, item.login), now), *self._after(now)]
        same = [
            existing
            for existing in result
            if existing.type == item.subscription_type
            and existing.broadcaster_user_id == item.user_id
            and existing.status == "enabled"
        ]
        mine = next((e for e in same if e.session_id == self.session_id), None)
        if mine is not None:
            self._confirm(item, mine.id)  # ours after all (an answer lost on the way)
            return self._after(now)
        if not same:
            failure = Failure(
                "conflict",
                False,
                False,
                f"Twitch answered 409 for {item.subscription_type} in {item.login} but"
                " lists no such enabled subscription",
            )
            return [*self._failed(item, failure, now), *self._after(now)]
        # Held by a session that is dead, or by another instance (a fleet hand-over):
        # it delivers nothing here, so it goes and ours is created anew.
        failure = Failure(
            "conflict",
            False,
            False,
            f"{item.subscription_type} for {item.login} is held by another session"
            f" ({', '.join(sorted(e.session_id[:12] or 'another transport' for e in same))});"
            " deleting it and subscribing again",
        )
        outputs = self._failed(item, failure, now)
        self._set(item, _ItemState.DELETING)
        item.deleting = {existing.id for existing in same}
        deletes = [
            Delete(existing.id, item.login, item.user_id, item.subscription_type, True, item.ticket)
            for existing in same
        ]
        return [*outputs, *deletes, *self._after(now)]

    def deleted(
        self, action: Delete, result: HelixRefusal | None, now: float
    ) -> list[ReconcilerOutput]:
        """A `Delete(recreate=True)` is done (None) or failed (the refusal)."""
        item = self._items.get((action.user_id, action.subscription_type))
        if item is None or item.ticket != action.ticket or item.state is not _ItemState.DELETING:
            return []
        if result is not None:
            return [*self._failed(item, classify(result, item.login), now), *self._after(now)]
        item.deleting.discard(action.subscription_id)
        if not item.deleting:
            self._set(item, _ItemState.WANTED)  # due as `_failed` scheduled it
        return self._after(now)

    def listed(
        self,
        action: ListSubscriptions,
        result: Iterable[ExistingSubscription] | HelixRefusal,
        now: float,
    ) -> list[ReconcilerOutput]:
        """The periodic check's listing: compare it with what was confirmed."""
        if action.session_id != self.session_id:
            return []
        self._checking = False
        self._check_at = now + self._check_s
        if isinstance(result, HelixRefusal):
            return []  # the next check will do; the shell logs the refusal
        ours = {e.id: e for e in result if e.session_id == self.session_id}
        outputs: list[ReconcilerOutput] = []
        confirmed = {
            item.subscription_id
            for item in self._items.values()
            if item.state is _ItemState.CONFIRMED
        }
        for item in self._items.values():
            if item.state is not _ItemState.CONFIRMED:
                continue
            existing = ours.get(item.subscription_id)
            if existing is None or existing.status != "enabled":
                status = "not listed" if existing is None else f"status {existing.status}"
                failure = Failure(
                    "vanished",
                    False,
                    False,
                    f"{item.subscription_type} for {item.login} vanished ({status});"
                    " subscribing again",
                )
                item.subscription_id = ""
                self._set(item, _ItemState.WANTED)
                outputs.extend(self._failed(item, failure, now))
        for existing in ours.values():
            if existing.id in confirmed or existing.status != "enabled":
                continue
            wanted = self._items.get((existing.broadcaster_user_id, existing.type))
            if wanted is not None and wanted.state is _ItemState.WANTED:
                self._confirm(wanted, existing.id)  # made, but its answer never came
            elif wanted is None or wanted.state is _ItemState.CONFIRMED:
                login = self._logins.get(existing.broadcaster_user_id, "")
                outputs.append(
                    Delete(existing.id, login, existing.broadcaster_user_id, existing.type)
                )
        return [*outputs, *self._after(now)]

    def revoked(
        self,
        user_id: str,
        subscription_type: str,
        status: str,
        retry_allowed: bool,
        now: float,
    ) -> list[ReconcilerOutput]:
        """Twitch revoked a subscription (`session.Revoked`)."""
        item = self._items.get((user_id, subscription_type))
        if item is None:
            return []
        item.subscription_id = ""
        self._set(item, _ItemState.WANTED)
        failure = Failure(
            "revoked" if retry_allowed else f"revoked-{status}",
            not retry_allowed,
            not retry_allowed,
            f"Twitch revoked {subscription_type} for {item.login}: {status}",
        )
        return [*self._failed(item, failure, now), *self._after(now)]

    # -- time ----------------------------------------------------------------------------

    def poll(self, now: float) -> list[ReconcilerOutput]:
        """What is due at `now` (call at `next_deadline()`; more often is harmless)."""
        return self._after(now)

    def next_deadline(self) -> float | None:
        """When `poll` has something to do, or None until an input arrives."""
        if self.session_id is None:
            return None
        times: list[float] = []
        if self._in_flight() < self._max_in_flight:
            times.extend(
                item.due_at for item in self._items.values() if item.state is _ItemState.WANTED
            )
        if self._check_at is not None and not self._checking:
            times.append(self._check_at)
        if not self._confirmed_any and not self._late_said:
            times.append(self._deadline)
        return min(times) if times else None

    def wants_session(self, now: float) -> bool:
        """False when every subscription waits for its slow re-check: no socket is worth
        holding (Twitch would close an unused one) until `next_recheck()`."""
        return any(
            item.failure is None or not item.failure.permanent or item.due_at <= now
            for item in self._items.values()
        )

    def next_recheck(self) -> float | None:
        times = [i.due_at for i in self._items.values() if i.state is _ItemState.WANTED]
        return min(times) if times else None

    # -- status --------------------------------------------------------------------------

    def statuses(self) -> dict[str, ChannelStatus]:
        """Login → status of every desired channel."""
        by_channel: dict[str, list[_Item]] = {}
        for item in self._items.values():
            by_channel.setdefault(item.login, []).append(item)
        return {login: self._status(login, items) for login, items in by_channel.items()}

    @property
    def confirmed(self) -> int:
        return sum(1 for i in self._items.values() if i.state is _ItemState.CONFIRMED)

    def subscription_ids(self) -> dict[str, list[str]]:
        """Login → ids of its confirmed subscriptions."""
        ids: dict[str, list[str]] = {}
        for item in self._items.values():
            if item.subscription_id:
                ids.setdefault(item.login, []).append(item.subscription_id)
        return ids

    # -- internals -----------------------------------------------------------------------

    def _status(self, login: str, items: list[_Item]) -> ChannelStatus:
        refused = next(
            (i.failure for i in items if i.failure is not None and i.failure.permanent), None
        )
        if refused is not None:
            return ChannelStatus(login, ChannelState.REFUSED, refused)
        if self.session_id is not None and all(i.state is _ItemState.CONFIRMED for i in items):
            return ChannelStatus(login, ChannelState.SUBSCRIBED)
        failing = next((i.failure for i in items if i.failure is not None), None)
        if failing is not None:
            return ChannelStatus(login, ChannelState.FAILING, failing)
        return ChannelStatus(login, ChannelState.PENDING)

    def _set(self, item: _Item, state: _ItemState) -> None:
        self._tickets += 1
        item.ticket = self._tickets
        item.state = state
        if state is not _ItemState.DELETING:
            item.deleting = set()

    def _confirm(self, item: _Item, subscription_id: str) -> None:
        self._set(item, _ItemState.CONFIRMED)
        item.subscription_id = subscription_id
        item.failure = None
        item.backoff.reset()
        self._confirmed_any = True

    def _failed(self, item: _Item, failure: Failure, now: float) -> list[ReconcilerOutput]:
        delay = self._recheck_s if failure.permanent else item.backoff.next_delay()
        item.failure = failure
        item.due_at = now + delay
        self._last_failure = failure
        if item.state is not _ItemState.WANTED:
            self._set(item, _ItemState.WANTED)
        return [SubscriptionFailed(item.login, item.subscription_type, failure, delay)]

    def _in_flight(self) -> int:
        return sum(1 for item in self._items.values() if item.state in _IN_FLIGHT)

    def _after(self, now: float) -> list[ReconcilerOutput]:
        """Everything an input leads to: due actions, then what changed."""
        outputs: list[ReconcilerOutput] = []
        session_id = self.session_id
        if session_id is not None:
            room = self._max_in_flight - self._in_flight()
            if room > 0:
                # Longest-waiting first: a channel retried every few hundred ms must not
                # keep one that has not been tried yet out of the slots.
                due = sorted(
                    (i for i in self._items.values() if i.state is _ItemState.WANTED),
                    key=lambda i: i.due_at,
                )
                for item in due:
                    if item.due_at > now:
                        break
                    self._set(item, _ItemState.CREATING)
                    outputs.append(
                        Create(
                            session_id,
                            item.login,
                            item.user_id,
                            item.subscription_type,
                            item.ticket,
                        )
                    )
                    room -= 1
                    if room == 0:
                        break
            if self._check_at is not None and not self._checking and now >= self._check_at:
                self._checking = True
                outputs.append(ListSubscriptions(session_id))
            if not self._confirmed_any and not self._late_said and now >= self._deadline:
                self._late_said = True
                outputs.append(SubscribeLate(session_id, self._last_failure))
        outputs.extend(self._changes())
        if session_id is not None and not self._settled_said and self._settled(now):
            self._settled_said = True
            statuses = self._statuses.values()
            outputs.append(
                RoundSettled(
                    session_id,
                    sum(1 for s in statuses if s.state is ChannelState.SUBSCRIBED),
                    self.confirmed,
                    sum(1 for s in statuses if s.state is not ChannelState.SUBSCRIBED),
                )
            )
        return outputs

    def _settled(self, now: float) -> bool:
        return all(
            item.state is _ItemState.CONFIRMED
            or (item.state is _ItemState.WANTED and item.due_at > now)
            for item in self._items.values()
        )

    def _changes(self) -> list[ReconcilerOutput]:
        current = self.statuses()
        changes: list[ReconcilerOutput] = []
        for login, status in current.items():
            before = self._statuses.get(login)
            if before != status:
                changes.append(ChannelChanged(before, status))
        for login, before in self._statuses.items():
            if login not in current:
                changes.append(ChannelChanged(before, None))
        self._statuses = current
        return changes
