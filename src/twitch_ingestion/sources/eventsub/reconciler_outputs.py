"""What the subscription reconciler (`reconciler.py`) says and decides from: the actions
the shell executes (`Create`, `LookUp`, `Delete`, `ListSubscriptions`), the notes it
passes on (`ChannelChanged`, `SubscriptionFailed`, `SubscribeLate`, `RoundSettled`), each
channel's state, and `Failure` with `classify`, the one table of what a refusal means.

Every failure is one of two kinds:

- **temporary** — a 429 of any kind but a cost refusal (the Helix bucket, "number of
  websocket transports limit exceeded" while Twitch still counts a dead session, the
  subscriptions of a connection), a 5xx, no answer at all, a session Twitch no longer
  knows, a 401 the token loop did not settle, a retryable revocation, a subscription
  that vanished. Retried with exponential backoff and jitter, for ever, until it works.
- **permanent** — an unknown login, a 403 (missing scope or authorisation for that
  broadcaster, a ban), another 400, a cost refusal (the plan cannot make a subscription
  cheaper), a revocation Twitch says retrying cannot fix. Reported once per channel and
  re-checked on a slow schedule (`recheck_interval_s`): a scope can be granted later.
"""

from __future__ import annotations

import enum

import msgspec

from twitch_ingestion.sources.eventsub.helix import ChannelProblem, HelixRefusal, RefusalKind

__all__ = [
    "ChannelChanged",
    "ChannelState",
    "ChannelStatus",
    "Create",
    "Delete",
    "Failure",
    "ListSubscriptions",
    "LookUp",
    "ReconcilerAction",
    "ReconcilerNote",
    "ReconcilerOutput",
    "RoundSettled",
    "SubscribeLate",
    "SubscriptionFailed",
    "classify",
]


# ---------------------------------------------------------------------------------------
# Failures and their classification


class Failure(msgspec.Struct, frozen=True, gc=False):
    """Why a subscription is not in place, and whether waiting can help."""

    reason: str
    """Kebab-case label from a fixed set (a metric label): a `RefusalKind` value,
    `unknown-login`, `connection-limit`, `revoked`, `revoked-<status>`, `vanished`,
    `conflict`."""
    permanent: bool
    """True: retrying soon cannot help (re-checked on the slow schedule)."""
    names_channel: bool
    """True: Twitch refused this channel itself, so it is reported by name (the output's
    `channel_problem`) at once; the others are logged and shown in readiness only."""
    message: str
    """One line for an operator, never a token."""

    def problem(self, login: str) -> ChannelProblem:
        return ChannelProblem(login, self.reason, self.message)


def classify(refusal: HelixRefusal, login: str) -> Failure:
    """The one table of what a Helix refusal means for `login`'s subscription."""
    kind = refusal.kind
    if kind is RefusalKind.LIMIT_EXCEEDED:
        # Twitch's count limits clear (a dead session's subscriptions stop counting,
        # a removed channel frees its slots); a cost is a property of the channel and
        # token that no amount of waiting or re-planning changes.
        permanent = "cost" in refusal.message.lower()
    else:
        permanent = kind in (RefusalKind.FORBIDDEN, RefusalKind.BAD_REQUEST)
    return Failure(kind.value, permanent, kind.reports_channel, refusal.problem(login).message)


# ---------------------------------------------------------------------------------------
# Outputs


class Create(msgspec.Struct, frozen=True, gc=False):
    """Create one subscription on `session_id`; answer with `answered`."""

    session_id: str
    login: str
    user_id: str
    subscription_type: str
    ticket: int


class LookUp(msgspec.Struct, frozen=True, gc=False):
    """A create answered 409: list the subscriptions of this type (every page) and
    answer with `looked_up`."""

    session_id: str
    login: str
    user_id: str
    subscription_type: str
    ticket: int


class Delete(msgspec.Struct, frozen=True, gc=False):
    """Delete a subscription. With `recreate`, answer with `deleted` (it stood in the
    way of ours); without, it only cleans up (a removed channel, a leftover)."""

    subscription_id: str
    login: str
    user_id: str
    subscription_type: str
    recreate: bool = False
    ticket: int = 0


class ListSubscriptions(msgspec.Struct, frozen=True, gc=False):
    """The periodic check: list every subscription (every page), answer with `listed`."""

    session_id: str


class ChannelState(enum.Enum):
    PENDING = "pending"
    """Not subscribed yet, and nothing failed: a new session, a new channel."""
    SUBSCRIBED = "subscribed"
    """Every subscription confirmed on the live session."""
    FAILING = "failing"
    """A temporary failure; retried with backoff until it works."""
    REFUSED = "refused"
    """A permanent failure; reported, re-checked on the slow schedule."""


class ChannelStatus(msgspec.Struct, frozen=True, gc=False):
    login: str
    state: ChannelState
    failure: Failure | None = None

    def describe(self) -> str:
        """`reason: message` for readiness, or the state for a pending channel."""
        if self.failure is None:
            return self.state.value
        return f"{self.failure.reason}: {self.failure.message}"


class ChannelChanged(msgspec.Struct, frozen=True, gc=False):
    """A channel's status changed (`after` None: the channel was removed)."""

    before: ChannelStatus | None
    after: ChannelStatus | None


class SubscriptionFailed(msgspec.Struct, frozen=True, gc=False):
    """One failed attempt (each is counted; `ChannelChanged` says what it changed)."""

    login: str
    subscription_type: str
    failure: Failure
    retry_in_s: float


class SubscribeLate(msgspec.Struct, frozen=True, gc=False):
    """No subscription was confirmed by the deadline after the welcome: Twitch closes
    such a session (4003) and it starts over with backoff. `last` says what failed."""

    session_id: str
    last: Failure | None


class RoundSettled(msgspec.Struct, frozen=True, gc=False):
    """The first round of a session is over: nothing in flight, nothing due now."""

    session_id: str
    channels: int
    """Channels with every subscription in place."""
    subscriptions: int
    failing: int
    """Channels not subscribed (retried later, temporarily or on the slow schedule)."""


ReconcilerAction = Create | LookUp | Delete | ListSubscriptions
ReconcilerNote = ChannelChanged | SubscriptionFailed | SubscribeLate | RoundSettled
ReconcilerOutput = ReconcilerAction | ReconcilerNote
