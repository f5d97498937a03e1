"""The EventSub source's asyncio shell: sockets, HTTP and clocks around the sans-I/O core.

`EventSubClient.run()` does, in order: validate the token (`auth.TokenKeeper`), resolve
the channel logins to user ids (Helix Get Users, 100 a call, retried while Helix fails),
spread the channels over at most three WebSocket connections (`helix.plan_connections`),
and run one `_Connection` per group beside the token loop until `stop()` or a failure
retrying cannot fix. Every decision is the core's: the connection state machine
(`session`), which subscriptions to create, look up, delete or retry and when
(`reconciler`), what a Helix or OAuth answer means (`helix`, `tokens`), and the records
(`records`); this module only carries out the actions they return.

What ends the client (the service's exit code follows `SourceFailure.variable`): Twitch
refusing the credentials (validation, refresh), a configuration Helix rejects, every
configured channel refused for good before any was read, or
TWITCH_MAX_RECONNECT_ATTEMPTS sessions in a row ending before a subscription (unlimited
by default). Outages of Helix, the WebSocket or the network never end it.

Hot path: a frame is decoded, de-duplicated and turned into a record inside the socket's
reader task and handed to `EventSubOutput.record` synchronously; only the rare actions
(subscribe, reconnect, close) go through the connection's queue. The reader keeps
reading while the output holds records for a slow sink (see `service_source.SinkOutput`),
so Twitch's pings are answered and the session survives backpressure.

Library: aiohttp, for both the WebSocket (RFC 6455 framing, close codes, ping/pong) and
the Helix/OAuth HTTP calls, on one connection pool. TLS is verified for `wss://` and
`https://` (aiohttp's default context); `ws://`/`http://` are accepted for local tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
import msgspec
import structlog

from twitch_ingestion.metrics import EVENTSUB_SUBSCRIPTION_FAILURES
from twitch_ingestion.sources.common.backoff import ExponentialBackoff
from twitch_ingestion.sources.eventsub.auth import TokenKeeper, send_http
from twitch_ingestion.sources.eventsub.helix import (
    CONNECTIONS_PER_USER,
    SUBSCRIPTIONS_PER_CONNECTION,
    ChannelProblem,
    ExistingSubscription,
    HelixRefusal,
    RateLimiter,
    RefusalKind,
    SubscriptionCreated,
    SubscriptionPage,
    UsersAnswer,
    delete_subscription_request,
    interpret_delete,
    interpret_subscription,
    interpret_subscription_list,
    interpret_users,
    list_subscriptions_request,
    plan_connections,
    subscription_request,
    users_requests,
)
from twitch_ingestion.sources.eventsub.http_messages import (
    HttpRequest,
    HttpResponse,
    strip_oauth_prefix,
)
from twitch_ingestion.sources.eventsub.messages import DeadLetter, decode_frame
from twitch_ingestion.sources.eventsub.reconciler import (
    CHECK_INTERVAL_S,
    RECHECK_INTERVAL_S,
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
    SubscriptionReconciler,
)
from twitch_ingestion.sources.eventsub.records import (
    CHAT_SUBSCRIPTION_TYPES,
    EventSubRecord,
    notification_record,
)
from twitch_ingestion.sources.eventsub.session import (
    DEFAULT_KEEPALIVE_MARGIN_S,
    DEFAULT_WELCOME_TIMEOUT_S,
    SUBSCRIBE_DEADLINE_S,
    CloseOldSocket,
    Deliver,
    EventSubSession,
    Fatal,
    OpenReconnectUrl,
    ReconnectFresh,
    ReconnectKind,
    Revoked,
    SessionAction,
    SessionState,
    Subscribe,
)
from twitch_ingestion.sources.eventsub.tokens import (
    NETWORK_ERROR_STATUS,
    REFRESH_MARGIN_S,
    REFRESH_RETRY_S,
    VALIDATE_INTERVAL_S,
    TokenError,
)

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_AUTH_URL",
    "DEFAULT_EVENTSUB_URL",
    "EventSubClient",
    "EventSubClientStats",
    "EventSubConfig",
    "EventSubOutput",
    "SettingsError",
    "SourceFailure",
]

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

DEFAULT_EVENTSUB_URL = "wss://eventsub.wss.twitch.tv/ws"
DEFAULT_API_URL = "https://api.twitch.tv/helix"
DEFAULT_AUTH_URL = "https://id.twitch.tv/oauth2"

_HELIX_ATTEMPTS = 5
"""Tries per Helix call across 401 refreshes and 429s of the bucket; any other failure
goes back to the caller, whose retry schedule (the reconciler's) decides."""
_BUCKET_MAX_WAIT_S = 60.0
"""Helix refills its bucket within a minute; a later `Ratelimit-Reset` is clock skew."""
_MAX_FRAME_BYTES = 1 << 20
"""Largest WebSocket message accepted: a chat notification with 500 characters of
emote fragments is ~20 KiB, so 1 MiB is generous and still bounds memory."""
_MAX_LIST_PAGES = 100
"""Get EventSub Subscriptions pages read at most (100 each): far above what 3
connections of 300 hold, and a bound if a server kept answering with a cursor."""
_VALIDATE_ON_REVOCATION = frozenset({"authorization_revoked", "user_removed"})
"""Revocations that may mean the token itself lost its authorisation: validate at once."""


class SettingsError(ValueError):
    """A setting is missing or malformed; `variable` names it, the message says how."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True)
class EventSubConfig:
    """What the EventSub source needs, with the environment names of issue 11.

    Secrets are excluded from `repr`. The tunables below the URLs have Twitch's values
    by default; tests shorten them instead of waiting real-world durations.
    """

    client_id: str
    """TWITCH_CLIENT_ID: the app the token was issued to."""
    oauth_token: str = field(repr=False)
    """TWITCH_OAUTH_TOKEN: a user access token with `user:read:chat`, `oauth:` or not."""
    channels: tuple[str, ...] = ()
    """Channel logins (TWITCH_CHANNEL, or the fleet's assignment)."""
    client_secret: str = field(default="", repr=False)
    """TWITCH_CLIENT_SECRET: with TWITCH_REFRESH_TOKEN, lets the token be refreshed."""
    refresh_token: str = field(default="", repr=False)
    """TWITCH_REFRESH_TOKEN."""
    public_client: bool = False
    """TWITCH_CLIENT_TYPE=public: the app has no secret; the refresh token alone refreshes."""
    eventsub_url: str = DEFAULT_EVENTSUB_URL
    """TWITCH_EVENTSUB_URL (wss://, or ws:// for local tests)."""
    api_url: str = DEFAULT_API_URL
    """TWITCH_API_URL (https://, or http:// for local tests)."""
    auth_url: str = DEFAULT_AUTH_URL
    """TWITCH_AUTH_URL (https://, or http:// for local tests)."""
    keepalive_timeout_s: int | None = None
    """Asked for with `?keepalive_timeout_seconds=` (Twitch: 10-600); None: Twitch's 10."""
    keepalive_margin_s: float = DEFAULT_KEEPALIVE_MARGIN_S
    welcome_timeout_s: float = DEFAULT_WELCOME_TIMEOUT_S
    validate_interval_s: float = VALIDATE_INTERVAL_S
    refresh_margin_s: float = REFRESH_MARGIN_S
    refresh_retry_s: float = REFRESH_RETRY_S
    backoff_base_s: float = 1.0
    """Reconnects and temporary subscription failures back off from this…"""
    backoff_max_s: float = 60.0
    """…doubling up to this (TWITCH_RECONNECT_BASE_S / TWITCH_RECONNECT_MAX_S)."""
    http_timeout_s: float = 10.0
    subscribe_concurrency: int = 10
    """Helix subscription calls in flight at once per connection: 300 calls must fit in
    the 10 s after a welcome, and one Helix round trip is ~100 ms from Europe."""
    max_unproductive_sessions: int | None = None
    """TWITCH_MAX_RECONNECT_ATTEMPTS: sessions in a row that may end before a
    subscription before the source gives up; None: never give up."""
    recheck_interval_s: float = RECHECK_INTERVAL_S
    """TWITCH_JOIN_RETRY_INTERVAL_S: how often a permanently refused channel is retried."""
    check_interval_s: float = CHECK_INTERVAL_S
    """TWITCH_EVENTSUB_CHECK_INTERVAL_S: how often the live subscriptions are listed."""
    max_connections: int = CONNECTIONS_PER_USER
    subscriptions_per_connection: int = SUBSCRIPTIONS_PER_CONNECTION
    dynamic_channels: bool = False
    """True in a fleet (CHANNEL_SOURCE=kafka): channels come and go at run time through
    `add_channels`/`remove_channels`, and an empty channel list is not a failure."""

    def __post_init__(self) -> None:
        if not self.client_id.strip():
            raise SettingsError("TWITCH_CLIENT_ID", "TWITCH_CLIENT_ID is required for EventSub")
        token = strip_oauth_prefix(self.oauth_token)
        if not token or any(char.isspace() for char in token):
            raise SettingsError(
                "TWITCH_OAUTH_TOKEN",
                "TWITCH_OAUTH_TOKEN is empty or malformed; set a user access token with"
                " the scope user:read:chat",
            )
        if self.client_secret and not self.refresh_token:
            raise SettingsError(
                "TWITCH_REFRESH_TOKEN",
                "TWITCH_REFRESH_TOKEN is needed too: refreshing the token takes both"
                " TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN",
            )
        if self.refresh_token and not self.client_secret and not self.public_client:
            raise SettingsError(
                "TWITCH_CLIENT_SECRET",
                "TWITCH_CLIENT_SECRET is needed too: refreshing the token takes both"
                " TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN (or TWITCH_CLIENT_TYPE=public"
                " for an app without a secret)",
            )
        if self.validate_interval_s > VALIDATE_INTERVAL_S:
            raise SettingsError(
                "TWITCH_TOKEN_VALIDATE_INTERVAL_S",
                f"TWITCH_TOKEN_VALIDATE_INTERVAL_S is {self.validate_interval_s:g}; Twitch"
                f" requires validating tokens at least hourly (at most {VALIDATE_INTERVAL_S:g})",
            )
        for variable, value, schemes in (
            ("TWITCH_EVENTSUB_URL", self.eventsub_url, ("wss://", "ws://")),
            ("TWITCH_API_URL", self.api_url, ("https://", "http://")),
            ("TWITCH_AUTH_URL", self.auth_url, ("https://", "http://")),
        ):
            if not value.lower().startswith(schemes) or len(value) <= len(schemes[0]):
                raise SettingsError(
                    variable, f"{variable} must be a {' or '.join(schemes)} URL, not {value!r}"
                )


class SourceFailure(msgspec.Struct, frozen=True, gc=False):
    """Why the source stopped for good; `message` is one line naming what to fix."""

    reason: str
    variable: str
    """The setting to fix (`TWITCH_OAUTH_TOKEN`, `TWITCH_CLIENT_ID`, …), or ""."""
    message: str

    @classmethod
    def from_token_error(cls, error: TokenError) -> SourceFailure:
        return cls(error.reason, error.variable, error.message)


class EventSubOutput(Protocol):
    """Where the source's results go; called on the client's event loop, must not block."""

    def record(self, record: EventSubRecord) -> None:
        """A record for the sink (chat or events topic)."""

    def dead_letter(self, letter: DeadLetter) -> None:
        """A frame that could not become a record: its exact bytes, for the DLQ."""

    def channel_problem(self, problem: ChannelProblem) -> None:
        """A channel Twitch refused by name (unknown login, refused subscription,
        revocation); reported once per channel and reason until it is read again."""


@dataclass
class EventSubClientStats:
    reconnects: list[tuple[str, ReconnectKind]] = field(default_factory=list)
    """(reason, kind) of every fresh reconnect the sessions asked for, in order."""
    migrations: int = 0
    """`session_reconnect`s followed (old socket kept until the new welcome)."""
    records: int = 0
    dead_letters: int = 0
    subscriptions_created: int = 0
    rate_limited: int = 0
    revocations: int = 0
    problems: list[ChannelProblem] = field(default_factory=list)
    subscription_failures: int = 0
    """Failed Helix subscription calls (each attempt), plus revocations and vanishings."""


class _Wake:
    """Queued to make a connection's driver look at its deadlines again."""


class _NothingLeft:
    """Queued when the fleet removed every channel of a connection: end it."""


_WAKE = _Wake()
_NOTHING_LEFT = _NothingLeft()


@dataclass
class _Channel:
    login: str
    user_id: str


class EventSubClient:
    """Reads the configured channels over EventSub until `stop()` or a fatal failure."""

    def __init__(
        self,
        settings: EventSubConfig,
        output: EventSubOutput,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.output = output
        self.stats = EventSubClientStats()
        self._clock = clock
        self._wall = wall_clock
        self._stopping = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._limiter = RateLimiter()
        self._reported: set[tuple[str, str]] = set()
        self.keeper: TokenKeeper | None = None
        self.connections: list[_Connection] = []
        self._desired: dict[str, None] = dict.fromkeys(settings.channels)
        """Every channel wanted (logins, in the order given)."""
        self._outside: dict[str, ChannelStatus] = {
            login: ChannelStatus(login, ChannelState.PENDING) for login in settings.channels
        }
        """Status of wanted channels on no connection: being resolved, unknown, no room."""
        self._ever_subscribed = False
        self._failure: asyncio.Future[SourceFailure] | None = None
        # Run-time channel changes (fleet): queued by add/remove, applied in `_membership`.
        self._changes: list[tuple[bool, tuple[str, ...]]] = []
        self._changed = asyncio.Event()
        self._new_tasks: list[asyncio.Task[SourceFailure | None]] = []
        self._tasks_added = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"EventSubClient(channels={len(self._desired)})"

    def stop(self) -> None:
        """Ask `run` to end (returns None then)."""
        self._stopping.set()

    def add_channels(self, logins: tuple[str, ...]) -> None:
        """Read these channels too (`dynamic_channels`): resolved, placed on a connection
        with room (or a new one, up to `max_connections`) and subscribed."""
        for login in logins:
            if login not in self._desired:
                self._desired[login] = None
                self._outside[login] = ChannelStatus(login, ChannelState.PENDING)
        self._changes.append((True, logins))
        self._changed.set()

    def remove_channels(self, logins: tuple[str, ...]) -> None:
        """Stop reading these channels: their subscriptions are deleted; a connection left
        without channels is closed (Twitch would close it with 4003 otherwise)."""
        for login in logins:
            self._desired.pop(login, None)
            self._outside.pop(login, None)
        self._changes.append((False, logins))
        self._changed.set()

    def channel_statuses(self) -> dict[str, ChannelStatus]:
        """Login → status of every wanted channel (subscribed, pending, failing, refused)."""
        merged = dict(self._outside)
        for connection in self.connections:
            merged.update(connection.reconciler.statuses())
        return {login: merged.get(login, _pending(login)) for login in self._desired}

    def subscribed_logins(self) -> frozenset[str]:
        """Channels whose every subscription is in place on a live session."""
        return frozenset(
            login
            for connection in self.connections
            for login, status in connection.reconciler.statuses().items()
            if status.state is ChannelState.SUBSCRIBED
        )

    @property
    def duplicates_dropped(self) -> int:
        return sum(connection.session.duplicates_dropped for connection in self.connections)

    async def run(self) -> SourceFailure | None:
        """Read until stopped (None) or until retrying cannot help (the failure)."""
        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout_s)
        self._failure = asyncio.get_running_loop().create_future()
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self._http = http
            try:
                return await self._run()
            finally:
                for connection in self.connections:
                    await connection.close()
                for task in list(self._background):
                    task.cancel()
                await asyncio.gather(*self._background, return_exceptions=True)
                self._http = None

    def fail(self, failure: SourceFailure) -> None:
        """End `run` with `failure` (from any task of the client)."""
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(failure)

    async def _run(self) -> SourceFailure | None:
        settings = self.settings
        keeper = self.keeper = TokenKeeper(
            self.send,
            auth_url=settings.auth_url,
            client_id=settings.client_id,
            access_token=settings.oauth_token,
            client_secret=settings.client_secret,
            refresh_token=settings.refresh_token,
            public_client=settings.public_client,
            validate_interval_s=settings.validate_interval_s,
            refresh_margin_s=settings.refresh_margin_s,
            refresh_retry_s=settings.refresh_retry_s,
            clock=self._clock,
        )
        started = await self._until_stopped(keeper.start())
        if started is None:
            return None
        if isinstance(started, TokenError):
            return SourceFailure.from_token_error(started)
        channels = await self._until_stopped(self._resolve(tuple(self._desired)))
        if channels is None:
            return None
        if isinstance(channels, SourceFailure):
            return channels
        channels = {uid: c for uid, c in channels.items() if c.login in self._desired}
        plan = plan_connections(
            list(channels),
            subscriptions_per_channel=len(CHAT_SUBSCRIPTION_TYPES),
            subscriptions_per_connection=settings.subscriptions_per_connection,
            max_connections=settings.max_connections,
        )
        for problem in plan.unplaced:
            login = channels[problem.channel].login
            self._refuse_outside(login, Failure(problem.reason, True, True, problem.message))
        if not plan.connections and not settings.dynamic_channels:
            return SourceFailure(
                "no-channels",
                "TWITCH_CHANNEL",
                "EventSub: none of the configured channels can be read (see the reports"
                " above); check TWITCH_CHANNEL",
            )
        self.connections = []
        previous: asyncio.Event | None = None
        for index, group in enumerate(plan.connections):
            connection = _Connection(self, index, [channels[user_id] for user_id in group])
            for user_id in group:
                self._outside.pop(channels[user_id].login, None)
            # One after the other: each gets the Helix bucket to itself for its first
            # round of subscriptions (see `wait_for_helix_room`).
            connection.after = previous
            previous = connection.first_round
            self.connections.append(connection)
        assert self._failure is not None
        failed = self._failure
        tasks: list[asyncio.Task[SourceFailure | None]] = [
            asyncio.create_task(self._token_loop(keeper)),
            asyncio.create_task(self._recheck_unknown()),
            *(asyncio.create_task(connection.run()) for connection in self.connections),
        ]
        if settings.dynamic_channels:
            tasks.append(asyncio.create_task(self._membership()))
        stopping = asyncio.create_task(self._stopping.wait())
        added = asyncio.create_task(self._tasks_added.wait())
        pending: set[asyncio.Future[Any]] = {*tasks, stopping, added, failed}
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    return None
                if failed in done:
                    return failed.result()
                if added in done:
                    # Connections opened at run time (fleet) are watched like the rest.
                    done.discard(added)
                    self._tasks_added.clear()
                    tasks.extend(self._new_tasks)
                    pending.update(self._new_tasks)
                    self._new_tasks = []
                    added = asyncio.create_task(self._tasks_added.wait())
                    pending.add(added)
                for task in done:
                    failure = task.result()
                    if failure is not None:
                        return failure  # type: ignore[no-any-return]
        finally:
            stopping.cancel()
            added.cancel()
            tasks.extend(self._new_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, stopping, added, return_exceptions=True)

    async def _until_stopped(self, work: Coroutine[Any, Any, _T]) -> _T | None:
        """`work`'s result, or None if `stop()` came first (`work` is then cancelled)."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None
        return task.result()

    # -- channels at run time (fleet), and unknown logins re-checked --------------------

    async def _membership(self) -> SourceFailure | None:
        """Apply queued `add_channels`/`remove_channels`, in order, until stopped."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            changes, self._changes = self._changes, []
            for adding, logins in changes:
                if adding:
                    failure = await self._add(logins)
                    if failure is not None:
                        return failure
                else:
                    self._remove(set(logins))

    async def _recheck_unknown(self) -> SourceFailure | None:
        """Logins Twitch did not know are asked again on the slow schedule (an account
        can be created, renamed back or unsuspended)."""
        while True:
            await asyncio.sleep(self.settings.recheck_interval_s)
            unknown = tuple(
                login
                for login, status in self._outside.items()
                if status.failure is not None and status.failure.reason == "unknown-login"
            )
            if unknown:
                failure = await self._add(unknown)
                if failure is not None:
                    return failure

    def _placed(self) -> dict[str, _Connection]:
        return {c.login: conn for conn in self.connections for c in conn.channels}

    async def _add(self, logins: tuple[str, ...]) -> SourceFailure | None:
        placed = self._placed()
        wanted = tuple(login for login in logins if login not in placed)
        if not wanted:
            return None
        resolved = await self._resolve(wanted)
        if isinstance(resolved, SourceFailure):
            return resolved
        settings = self.settings
        per_connection = settings.subscriptions_per_connection // len(CHAT_SUBSCRIPTION_TYPES)
        for channel in resolved.values():
            if channel.login in self._placed() or channel.login not in self._desired:
                continue
            room = [c for c in self.connections if len(c.channels) < per_connection]
            if room:
                self._outside.pop(channel.login, None)
                min(room, key=lambda c: len(c.channels)).add_channel(channel)
            elif len(self.connections) < settings.max_connections:
                self._outside.pop(channel.login, None)
                connection = _Connection(self, len(self.connections), [channel])
                self.connections.append(connection)
                self._new_tasks.append(asyncio.create_task(connection.run()))
                self._tasks_added.set()
            else:
                self._refuse_outside(
                    channel.login,
                    Failure(
                        "connection-limit",
                        True,
                        True,
                        f"EventSub allows {settings.max_connections} connections of"
                        f" {per_connection} channels per client id and user; all are full",
                    ),
                )
        return None

    def _remove(self, logins: set[str]) -> None:
        for connection in list(self.connections):
            gone = [c for c in connection.channels if c.login in logins]
            if not gone:
                continue
            connection.remove_channels(gone)
            if not connection.channels:
                # An empty session would be closed by Twitch (4003) and reconnect in a loop.
                self.connections.remove(connection)
                connection.retire()
        for login in logins:
            self._forget_reports(login)

    async def _token_loop(self, keeper: TokenKeeper) -> SourceFailure:
        return SourceFailure.from_token_error(await keeper.run())

    def validate_soon(self, why: str) -> None:
        """Validate the token at once (a revocation); a refusal ends the client (exit 3)."""
        keeper = self.keeper
        if keeper is None:
            return
        log.info("twitch token validate now", reason=why)

        async def validate() -> None:
            error = await keeper.validate_now()
            if error is not None:
                self.fail(SourceFailure.from_token_error(error))

        task = asyncio.ensure_future(validate())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- what channels are read, told once ------------------------------------------------

    def channel_changed(self, change: ChannelChanged) -> None:
        """A channel's status changed: log it, report it, and end the client when no
        configured channel can be read at all."""
        before, after = change.before, change.after
        if after is None:
            return
        login = after.login
        was_failing = before is not None and before.failure is not None
        if after.state is ChannelState.SUBSCRIBED:
            self._ever_subscribed = True
            if was_failing:
                was = before.failure.reason if before is not None and before.failure else ""
                log.info("eventsub channel subscribed", channel=login, was=was)
            self._forget_reports(login)
            return
        failure = after.failure
        if failure is None:
            return
        if (
            before is not None
            and before.failure is not None
            and (before.failure.reason == failure.reason)
        ):
            return  # the same trouble again: said already
        if failure.names_channel or failure.permanent:
            self.report(failure.problem(login))
        else:
            log.warning(
                "eventsub channel unsubscribed",
                channel=login,
                reason=failure.reason,
                detail=failure.message,
            )
        self._check_something_readable()

    def _refuse_outside(self, login: str, failure: Failure) -> None:
        before = self._outside.get(login)
        after = ChannelStatus(login, ChannelState.REFUSED, failure)
        self._outside[login] = after
        EVENTSUB_SUBSCRIPTION_FAILURES.labels(failure.reason).inc()
        self.stats.subscription_failures += 1
        self.channel_changed(ChannelChanged(before, after))

    def _check_something_readable(self) -> None:
        """A fixed channel list of which Twitch refused every channel for good before any
        was read is a configuration to fix (exit 4), not something to wait out."""
        if self.settings.dynamic_channels or self._ever_subscribed or not self.connections:
            return
        statuses = self.channel_statuses()
        if statuses and all(s.state is ChannelState.REFUSED for s in statuses.values()):
            self.fail(
                SourceFailure(
                    "no-channels",
                    "TWITCH_CHANNEL",
                    "EventSub: Twitch refused every configured channel (see the reports"
                    " above); check TWITCH_CHANNEL and TWITCH_OAUTH_TOKEN",
                )
            )

    def report(self, problem: ChannelProblem) -> None:
        """Tell the output (and the log) about a channel not read, once per reason."""
        key = (problem.channel, problem.reason)
        if key in self._reported:
            return
        self._reported.add(key)
        self.stats.problems.append(problem)
        log.warning(
            "eventsub channel not read",
            channel=problem.channel,
            reason=problem.reason,
            detail=problem.message,
        )
        self.output.channel_problem(problem)

    def _forget_reports(self, login: str) -> None:
        for reason in [r for channel, r in self._reported if channel == login]:
            self._reported.discard((login, reason))

    def subscription_failed(self, failed: SubscriptionFailed) -> None:
        EVENTSUB_SUBSCRIPTION_FAILURES.labels(failed.failure.reason).inc()
        self.stats.subscription_failures += 1
        log.debug(
            "eventsub subscription failed",
            channel=failed.login,
            subscription_type=failed.subscription_type,
            reason=failed.failure.reason,
            permanent=failed.failure.permanent,
            retry_in_s=round(failed.retry_in_s, 2),
        )

    # -- HTTP --------------------------------------------------------------------------

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send one request; a network failure becomes a synthetic 599 (transient)."""
        http = self._http
        if http is None:
            raise RuntimeError("EventSubClient.send outside run()")
        return await send_http(http, request)

    async def helix(self, request: HttpRequest) -> HttpResponse | SourceFailure:
        """A Helix call with the current token: waits for the rate limit, refreshes the
        token on a 401 and waits out the bucket's 429s, a few times; any other answer
        (5xx, no answer at all) goes back to the caller, whose schedule retries it."""
        keeper = self.keeper
        assert keeper is not None
        response = HttpResponse(NETWORK_ERROR_STATUS)
        for _ in range(_HELIX_ATTEMPTS):
            delay = self._limiter.delay(self._wall())
            if delay > 0:
                await asyncio.sleep(delay)
            token = keeper.access_token
            request.headers["Authorization"] = f"Bearer {token}"
            response = await self.send(request)
            self._limiter.observe(response, self._wall())
            if response.status == 401:
                error = await keeper.unauthorized(token)
                if error is not None:
                    return SourceFailure.from_token_error(error)
                continue
            if response.status == 429 and response.header("Ratelimit-Remaining") in ("0", None):
                self.stats.rate_limited += 1
                log.warning(
                    "helix rate limited",
                    retry_in_s=round(self._limiter.delay(self._wall()), 2),
                    path=request.url.rsplit("/", 2)[-1].split("?")[0],
                )
                continue
            return response
        return response

    async def wait_for_helix_room(self, calls: int) -> None:
        """Before a socket opens: wait until the Helix bucket can take `calls` requests.

        Twitch closes a socket with 4003 when no subscription names it within 10 s of
        the welcome, so opening one whose subscriptions the bucket cannot take now (800
        points a minute: 160 channels' worth) only buys a 4003 and a reconnect loop.
        """
        limiter = self._limiter
        now = self._wall()
        delay = limiter.delay(now)
        if (
            limiter.remaining is not None
            and limiter.remaining < calls
            and limiter.reset_at is not None
        ):
            delay = max(delay, min(limiter.reset_at - now, _BUCKET_MAX_WAIT_S))
        if delay > 0:
            log.info("eventsub waiting for helix bucket", calls=calls, wait_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def list_subscriptions(
        self, subscription_type: str = ""
    ) -> list[ExistingSubscription] | HelixRefusal | SourceFailure:
        """Every subscription Twitch lists for this client and user (every page)."""
        keeper = self.keeper
        assert keeper is not None
        found: list[ExistingSubscription] = []
        cursor = ""
        for _ in range(_MAX_LIST_PAGES):
            request = list_subscriptions_request(
                self.settings.api_url,
                self.settings.client_id,
                keeper.access_token,
                subscription_type=subscription_type,
                after=cursor,
            )
            response = await self.helix(request)
            if isinstance(response, SourceFailure):
                return response
            page = interpret_subscription_list(response)
            if isinstance(page, HelixRefusal):
                return page
            assert isinstance(page, SubscriptionPage)
            found.extend(page.subscriptions)
            cursor = page.cursor
            if not cursor:
                break
        return found

    async def _resolve(self, logins: tuple[str, ...]) -> dict[str, _Channel] | SourceFailure:
        """User id → channel for every login Twitch knows; the others are reported.

        While Helix fails (5xx, no answer, the bucket) the call is retried with backoff for
        as long as it takes, the channels shown as failing meanwhile; an answer that a
        retry cannot change (a 4xx) is a configuration problem and ends the client.
        """
        keeper = self.keeper
        assert keeper is not None
        settings = self.settings
        requests, problems = users_requests(
            settings.api_url, settings.client_id, keeper.access_token, logins
        )
        for problem in problems:
            self._refuse_outside(
                problem.channel, Failure(problem.reason, True, True, problem.message)
            )
        channels: dict[str, _Channel] = {}
        backoff = ExponentialBackoff(settings.backoff_base_s, settings.backoff_max_s)
        for request, batch in requests:
            while True:
                response = await self.helix(request)
                if isinstance(response, SourceFailure):
                    return response
                answer = interpret_users(batch, response)
                if not isinstance(answer, HelixRefusal):
                    break
                if answer.kind not in (RefusalKind.TRANSIENT, RefusalKind.RATE_LIMITED):
                    return SourceFailure(
                        f"users-{answer.kind.value}",
                        "TWITCH_API_URL",
                        f"Helix Get Users answered {answer.status} {answer.message}".rstrip()
                        + "; check TWITCH_API_URL and TWITCH_CLIENT_ID",
                    )
                delay = backoff.next_delay()
                detail = (
                    f"Helix Get Users could not be reached ({answer.message or 'network error'})"
                    if answer.status == NETWORK_ERROR_STATUS
                    else f"Helix Get Users answered {answer.status} {answer.message}".rstrip()
                )
                log.warning(
                    "eventsub users lookup failed",
                    channels=len(batch),
                    detail=detail,
                    retry_in_s=round(delay, 2),
                )
                failure = Failure(answer.kind.value, False, False, detail)
                EVENTSUB_SUBSCRIPTION_FAILURES.labels(failure.reason).inc()
                for login in batch:
                    if login in self._desired:
                        self._outside[login] = ChannelStatus(login, ChannelState.FAILING, failure)
                await asyncio.sleep(delay)
            assert isinstance(answer, UsersAnswer)
            for problem in answer.unknown:
                self._refuse_outside(
                    problem.channel, Failure(problem.reason, True, True, problem.message)
                )
            for login in batch:
                user_id = answer.user_ids.get(login)
                if user_id is not None:
                    channels[user_id] = _Channel(login, user_id)
                    if login in self._desired:
                        self._outside[login] = ChannelStatus(login, ChannelState.PENDING)
        return channels


def _pending(login: str) -> ChannelStatus:
    return ChannelStatus(login, ChannelState.PENDING)


# ---------------------------------------------------------------------------------------
# One WebSocket connection (and its sockets across reconnects)


class _Connection:
    def __init__(self, client: EventSubClient, index: int, channels: list[_Channel]) -> None:
        settings = client.settings
        self.client = client
        self.index = index
        self.channels = list(channels)
        self.session = EventSubSession(
            keepalive_margin_s=settings.keepalive_margin_s,
            welcome_timeout_s=settings.welcome_timeout_s,
            max_unproductive_sessions=settings.max_unproductive_sessions,
        )
        self.reconciler = SubscriptionReconciler(
            CHAT_SUBSCRIPTION_TYPES,
            retry_base_s=settings.backoff_base_s,
            retry_max_s=settings.backoff_max_s,
            recheck_interval_s=settings.recheck_interval_s,
            check_interval_s=settings.check_interval_s,
            max_in_flight=settings.subscribe_concurrency,
        )
        url = settings.eventsub_url
        if settings.keepalive_timeout_s is not None:
            separator = "&" if "?" in url else "?"
            url = f"{url}{separator}keepalive_timeout_seconds={settings.keepalive_timeout_s}"
        self.url = url
        self._backoff = ExponentialBackoff(settings.backoff_base_s, settings.backoff_max_s)
        self._actions: asyncio.Queue[SessionAction | SourceFailure | _NothingLeft | _Wake] = (
            asyncio.Queue()
        )
        self._sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._running_since: float | None = None
        self._idle = False
        """No socket held: every channel waits for its slow re-check."""
        self._connect_error = ""
        """Why the last socket could not be opened (for the reconnect log line)."""
        self._output = client.output
        self._clock = client._clock
        self.after: asyncio.Event | None = None
        """Set by the previous connection when its first round of subscriptions is over."""
        self.first_round = asyncio.Event()
        now = self._clock()
        for channel in channels:
            self._handle(self.reconciler.add_channel(channel.login, channel.user_id, now))

    @property
    def _calls(self) -> int:
        return len(self.channels) * len(CHAT_SUBSCRIPTION_TYPES)

    # -- channels at run time (fleet) --------------------------------------------------

    def add_channel(self, channel: _Channel) -> None:
        self.channels.append(channel)
        self._feed(self.reconciler.add_channel(channel.login, channel.user_id, self._clock()))

    def remove_channels(self, channels: list[_Channel]) -> None:
        gone = {c.user_id for c in channels}
        self.channels = [c for c in self.channels if c.user_id not in gone]
        now = self._clock()
        for user_id in gone:
            self._feed(self.reconciler.remove_channel(user_id, now))

    def retire(self) -> None:
        """No channels left: close the sockets and end `run` (returns None)."""
        self._actions.put_nowait(_NOTHING_LEFT)

    # -- the driver --------------------------------------------------------------------

    async def run(self) -> SourceFailure | None:
        try:
            return await self._run()
        finally:
            self.first_round.set()

    async def _run(self) -> SourceFailure | None:
        if self.after is not None:
            await self.after.wait()
        await self._open_fresh()
        session = self.session
        reconciler = self.reconciler
        while True:
            now = self._clock()
            if self._idle and reconciler.wants_session(now):
                await self._open_fresh()
                continue
            deadlines = [session.next_deadline(), reconciler.next_deadline()]
            if self._idle:
                deadlines.append(reconciler.next_recheck())
            deadline = min((d for d in deadlines if d is not None), default=None)
            timeout = None if deadline is None else max(0.0, deadline - now)
            try:
                async with asyncio.timeout(timeout):
                    item = await self._actions.get()
            except TimeoutError:
                now = self._clock()
                for action in session.tick(now):
                    self._actions.put_nowait(action)
                self._feed(reconciler.poll(now))
                continue
            if isinstance(item, _Wake):
                continue
            if isinstance(item, SourceFailure):
                return item
            if isinstance(item, _NothingLeft):
                log.info("eventsub connection closed", connection=self.index, reason="no channels")
                await self.close()
                return None
            failure = await self._carry_out(item)
            if failure is not None:
                return failure

    async def _carry_out(self, action: SessionAction) -> SourceFailure | None:
        if isinstance(action, Subscribe):
            self._connect_error = ""
            self._feed(
                self.reconciler.session_started(action.session_id, action.deadline, self._clock())
            )
        elif isinstance(action, OpenReconnectUrl):
            self.client.stats.migrations += 1
            log.info("eventsub session reconnect", connection=self.index)
            self._open(action.url)
        elif isinstance(action, CloseOldSocket):
            ws = self._sockets.get(action.socket)
            if ws is not None:
                self._spawn(self._close_socket(ws))
        elif isinstance(action, ReconnectFresh):
            await self._reconnect(action)
        elif isinstance(action, Fatal):
            self._feed(self.reconciler.session_lost(self._clock()))
            return SourceFailure(action.reason, "TWITCH_MAX_RECONNECT_ATTEMPTS", action.message)
        return None

    async def _reconnect(self, action: ReconnectFresh) -> None:
        now = self._clock()
        self.client.stats.reconnects.append((action.reason, action.kind))
        subscribed = sum(
            1 for s in self.reconciler.statuses().values() if s.state is ChannelState.SUBSCRIBED
        )
        self._feed(self.reconciler.session_lost(now))
        for ws in list(self._sockets.values()):
            self._spawn(self._close_socket(ws))
        if self._running_since is not None:
            self._backoff.connection_ended(now - self._running_since)
            self._running_since = None
        delay = self._backoff.next_delay() if action.kind is ReconnectKind.BACKOFF else 0.0
        failing = self._connect_error or _last_failure(self.reconciler.statuses())
        log.warning(
            "eventsub reconnect",
            connection=self.index,
            reason=action.reason,
            channels_unsubscribed=subscribed,
            failing=failing or None,
            retry_in_s=round(delay, 2),
        )
        if delay > 0:
            await asyncio.sleep(delay)
        self.first_round.set()
        await self._open_fresh()

    async def _open_fresh(self) -> None:
        """Open a fresh session, unless every channel waits for its slow re-check (then
        stay idle: Twitch would close an unused session, 4003, again and again)."""
        if not self.reconciler.wants_session(self._clock()):
            if not self._idle:
                log.info(
                    "eventsub connection idle",
                    connection=self.index,
                    detail="every channel of this connection was refused; trying again on"
                    " the re-check schedule (TWITCH_JOIN_RETRY_INTERVAL_S)",
                )
            self._idle = True
            self.first_round.set()
            return
        self._idle = False
        await self.client.wait_for_helix_room(self._calls)
        self._open(self.url)

    def _feed(self, outputs: list[ReconcilerOutput]) -> None:
        """Outputs of a reconciler input: execute, pass on, and re-read the deadlines."""
        self._handle(outputs)
        self._actions.put_nowait(_WAKE)

    def _handle(self, outputs: list[ReconcilerOutput]) -> None:
        client = self.client
        for output in outputs:
            if isinstance(output, Create):
                self._spawn(self._create(output))
            elif isinstance(output, LookUp):
                self._spawn(self._look_up(output))
            elif isinstance(output, Delete):
                self._spawn(self._delete(output))
            elif isinstance(output, ListSubscriptions):
                self._spawn(self._check(output))
            elif isinstance(output, ChannelChanged):
                client.channel_changed(output)
            elif isinstance(output, SubscriptionFailed):
                client.subscription_failed(output)
            elif isinstance(output, SubscribeLate):
                last = output.last
                log.warning(
                    "eventsub subscribe slow",
                    connection=self.index,
                    detail="no subscription was created in the time Twitch allows after the"
                    f" welcome (at most {SUBSCRIBE_DEADLINE_S:g} s), so Twitch closes this"
                    " session (4003) and a new one is opened with backoff",
                    failing=None if last is None else f"{last.reason}: {last.message}",
                )
            elif isinstance(output, RoundSettled):
                self._settled(output)
        if self.reconciler.confirmed and self.session.state is SessionState.WELCOMED:
            session_id = self.reconciler.session_id
            if session_id is not None and session_id == self.session.session_id:
                self.session.subscriptions_created(session_id)
                self._running_since = self._clock()
                self._backoff.record_success()

    def _settled(self, settled: RoundSettled) -> None:
        self.first_round.set()
        if settled.subscriptions:
            log.info(
                "eventsub subscribed",
                connection=self.index,
                channels=settled.channels,
                subscriptions=settled.subscriptions,
                not_subscribed=settled.failing,
            )

    # -- carrying out the reconciler's actions ----------------------------------------

    def _ended(self, result: _T | SourceFailure) -> bool:
        """True (and the driver told) when a Helix call ended the client (the token)."""
        if isinstance(result, SourceFailure):
            self._actions.put_nowait(result)
            return True
        return False

    async def _create(self, action: Create) -> None:
        client = self.client
        keeper = client.keeper
        assert keeper is not None
        request = subscription_request(
            client.settings.api_url,
            client.settings.client_id,
            keeper.access_token,
            subscription_type=action.subscription_type,
            broadcaster_user_id=action.user_id,
            user_id=keeper.user_id,
            session_id=action.session_id,
        )
        response = await client.helix(request)
        if self._ended(response):
            return
        assert isinstance(response, HttpResponse)
        result = interpret_subscription(
            response,
            subscription_type=action.subscription_type,
            broadcaster_user_id=action.user_id,
        )
        if isinstance(result, SubscriptionCreated) and not result.already_exists:
            client.stats.subscriptions_created += 1
        self._feed(self.reconciler.answered(action, result, self._clock()))

    async def _look_up(self, action: LookUp) -> None:
        found = await self.client.list_subscriptions(action.subscription_type)
        if self._ended(found):
            return
        assert not isinstance(found, SourceFailure)
        self._feed(self.reconciler.looked_up(action, found, self._clock()))

    async def _check(self, action: ListSubscriptions) -> None:
        found = await self.client.list_subscriptions()
        if self._ended(found):
            return
        assert not isinstance(found, SourceFailure)
        if isinstance(found, HelixRefusal):
            log.warning(
                "eventsub subscription check failed",
                connection=self.index,
                status=found.status,
                detail=found.message,
            )
        self._feed(self.reconciler.listed(action, found, self._clock()))

    async def _delete(self, action: Delete) -> None:
        client = self.client
        keeper = client.keeper
        assert keeper is not None
        request = delete_subscription_request(
            client.settings.api_url,
            client.settings.client_id,
            keeper.access_token,
            action.subscription_id,
        )
        response = await client.helix(request)
        if self._ended(response):
            return
        assert isinstance(response, HttpResponse)
        refusal = interpret_delete(response)
        if action.recreate:
            self._feed(self.reconciler.deleted(action, refusal, self._clock()))
        elif refusal is not None:
            # A leftover on our session is found again by the periodic check.
            log.warning(
                "eventsub unsubscribe failed",
                connection=self.index,
                channel=action.login,
                status=response.status,
            )

    # -- frames from the readers -------------------------------------------------------

    def _apply(self, actions: list[SessionAction]) -> None:
        """Actions from a reader: deliveries at once, the rest to the driver, in order."""
        for action in actions:
            if isinstance(action, Deliver):
                self._deliver(action)
            elif isinstance(action, Revoked):
                self._revoked(action)
            else:
                self._actions.put_nowait(action)

    def _deliver(self, action: Deliver) -> None:
        result = notification_record(action.notification, time.time_ns() // 1_000_000)
        if isinstance(result, DeadLetter):
            self.client.stats.dead_letters += 1
            self._output.dead_letter(result)
        else:
            self.client.stats.records += 1
            self._output.record(result)

    def _revoked(self, action: Revoked) -> None:
        self.client.stats.revocations += 1
        log.warning(
            "eventsub subscription revoked",
            subscription_type=action.subscription_type,
            broadcaster_user_id=action.broadcaster_user_id,
            reason=action.reason,
            retry=action.retry_allowed,
        )
        self._feed(
            self.reconciler.revoked(
                action.broadcaster_user_id,
                action.subscription_type,
                action.reason,
                action.retry_allowed,
                self._clock(),
            )
        )
        if action.reason in _VALIDATE_ON_REVOCATION:
            # The user may have disconnected the app: if so, validating says 401 now,
            # instead of the hourly validation finding out with nothing subscribed.
            self.client.validate_soon(f"revocation: {action.reason}")

    # -- sockets -----------------------------------------------------------------------

    def _open(self, url: str) -> None:
        number = self.session.socket_opened(self._clock())
        self._spawn(self._connect_and_read(number, url))

    async def _connect_and_read(self, number: int, url: str) -> None:
        http = self.client._http
        assert http is not None
        try:
            ws = await http.ws_connect(
                url,
                autoping=True,
                max_msg_size=_MAX_FRAME_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._connect_error = f"connect: {type(exc).__name__}"
            log.warning("eventsub connect failed", connection=self.index, error=type(exc).__name__)
            self._apply(self.session.socket_closed(number, None, self._clock()))
            return
        self._sockets[number] = ws
        try:
            await self._read(number, ws)
        finally:
            self._sockets.pop(number, None)
            self._apply(self.session.socket_closed(number, ws.close_code, self._clock()))

    async def _read(self, number: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        session = self.session
        clock = self._clock
        output = self._output
        stats = self.client.stats
        # Optional backpressure (the service's `SinkOutput.room`): None while the output
        # can hold what is read, else something to await before reading on. The output
        # holds a bounded number of records for a slow sink, so this waits only when
        # that is full under BUFFER_FULL_POLICY=block (see `SinkOutput`).
        room: Callable[[], Awaitable[object] | None] | None = getattr(output, "room", None)
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            async for message in ws:
                if room is not None and (wait := room()) is not None:
                    await wait
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue  # Twitch sends text frames only; ping/pong/close are handled
                decoded = decode_frame(message.data)
                if isinstance(decoded, DeadLetter):
                    stats.dead_letters += 1
                    output.dead_letter(decoded)
                    continue
                actions = session.receive(number, decoded, clock())
                if actions:
                    self._apply(actions)

    async def _close_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            await ws.close()

    async def close(self) -> None:
        self.session.close()
        for ws in list(self._sockets.values()):
            await self._close_socket(ws)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _last_failure(statuses: dict[str, ChannelStatus]) -> str:
    """What the channels of a connection are failing with, for the reconnect log line."""
    for status in statuses.values():
        if status.failure is not None and not status.failure.permanent:
            return f"{status.failure.reason}: {status.failure.message}"
    return ""
