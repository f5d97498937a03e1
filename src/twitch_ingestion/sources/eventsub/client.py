"""The EventSub source's asyncio shell: sockets, HTTP and clocks around the sans-I/O core.

`EventSubClient.run()` does, in order: validate the token (`auth.TokenKeeper`), resolve
the channel logins to user ids (Helix Get Users, 100 a call), spread the channels over
at most three WebSocket connections (`helix.plan_connections`), and run one
`_Connection` per group beside the token loop until `stop()` or a failure it cannot
retry. Every decision is the core's: the connection state machine (`session`), what a
Helix or OAuth answer means (`helix`, `tokens`), and the records (`records`); this module
only carries out the actions they return.

Hot path: a frame is decoded, de-duplicated and turned into a record inside the socket's
reader task and handed to `EventSubOutput.record` synchronously; only the rare actions
(subscribe, reconnect, close) go through the connection's queue.

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
from pydantic import SecretStr

from twitch_ingestion.config import Settings
from twitch_ingestion.sources.eventsub.auth import TokenKeeper, send_http
from twitch_ingestion.sources.eventsub.helix import (
    CONNECTIONS_PER_USER,
    SUBSCRIPTIONS_PER_CONNECTION,
    ChannelProblem,
    HelixRefusal,
    RateLimiter,
    RefusalKind,
    SubscriptionCreated,
    UsersAnswer,
    delete_subscription_request,
    interpret_subscription,
    interpret_users,
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
from twitch_ingestion.sources.eventsub.records import (
    CHAT_SUBSCRIPTION_TYPES,
    EventSubRecord,
    notification_record,
)
from twitch_ingestion.sources.eventsub.session import (
    DEFAULT_KEEPALIVE_MARGIN_S,
    DEFAULT_MAX_UNPRODUCTIVE_SESSIONS,
    DEFAULT_WELCOME_TIMEOUT_S,
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
from twitch_ingestion.sources.irc.backoff import ExponentialBackoff

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_AUTH_URL",
    "DEFAULT_EVENTSUB_URL",
    "EventSubClient",
    "EventSubClientStats",
    "EventSubOutput",
    "EventSubSettings",
    "SettingsError",
    "SourceFailure",
]

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

DEFAULT_EVENTSUB_URL = "wss://eventsub.wss.twitch.tv/ws"
DEFAULT_API_URL = "https://api.twitch.tv/helix"
DEFAULT_AUTH_URL = "https://id.twitch.tv/oauth2"

"""Status of the synthetic answer for a request that got no HTTP answer at all (refused,
reset, timed out): a 5xx, so the core treats it as transient, and not one Twitch sends."""
_HELIX_ATTEMPTS = 5
"""Tries per Helix call across 401 refreshes, 429 waits and 5xx answers."""
_TRANSIENT_RETRY_S = 0.5
_BUCKET_MAX_WAIT_S = 60.0
"""Helix refills its bucket within a minute; a later `Ratelimit-Reset` is clock skew."""
_MAX_FRAME_BYTES = 1 << 20
"""Largest WebSocket message accepted: a chat notification with 500 characters of
emote fragments is ~20 KiB, so 1 MiB is generous and still bounds memory."""


class SettingsError(ValueError):
    """A setting is missing or malformed; `variable` names it, the message says how."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True)
class EventSubSettings:
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
    backoff_max_s: float = 60.0
    http_timeout_s: float = 10.0
    subscribe_concurrency: int = 10
    """Create Subscription calls in flight at once: 300 calls must fit in the 10 s
    after a welcome, and one Helix round trip is ~100 ms from Europe."""
    max_unproductive_sessions: int | None = DEFAULT_MAX_UNPRODUCTIVE_SESSIONS
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
        if bool(self.client_secret) != bool(self.refresh_token):
            missing = "TWITCH_REFRESH_TOKEN" if self.client_secret else "TWITCH_CLIENT_SECRET"
            raise SettingsError(
                missing,
                f"{missing} is needed too: refreshing the token takes both"
                " TWITCH_CLIENT_SECRET and TWITCH_REFRESH_TOKEN",
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

    @classmethod
    def from_settings(
        cls, settings: Settings, channels: tuple[str, ...] | None = None, **tunables: object
    ) -> EventSubSettings:
        """The EventSub part of the service's `Settings` (config.py, the one home of every
        setting, validated at load); raises `SettingsError` for what only EventSub needs.

        `channels` defaults to TWITCH_CHANNEL; `tunables` override the rest (tests).
        """

        def secret(value: SecretStr | None) -> str:
            return "" if value is None else value.get_secret_value()

        values: dict[str, object] = {
            "keepalive_timeout_s": settings.twitch_eventsub_keepalive_s,
            "welcome_timeout_s": settings.twitch_login_timeout_s,
            "validate_interval_s": settings.twitch_token_validate_interval_s,
            "refresh_margin_s": settings.twitch_token_refresh_margin_s,
            "backoff_base_s": settings.twitch_reconnect_base_s,
            "backoff_max_s": settings.twitch_reconnect_max_s,
            "http_timeout_s": settings.twitch_connect_timeout_s,
            **tunables,
        }
        return cls(
            client_id=settings.twitch_client_id or "",
            oauth_token=secret(settings.twitch_oauth_token),
            channels=tuple(settings.twitch_channel if channels is None else channels),
            client_secret=secret(settings.twitch_client_secret),
            refresh_token=secret(settings.twitch_refresh_token),
            eventsub_url=settings.twitch_eventsub_url,
            api_url=settings.twitch_api_url,
            auth_url=settings.twitch_auth_url,
            **values,  # type: ignore[arg-type]
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
        """A channel that is not read (unknown login, refused subscription, revocation)."""


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


class _NothingLeft:
    """Queued when every channel of a connection was refused for good: end it."""


_NOTHING_LEFT = _NothingLeft()


@dataclass
class _Channel:
    login: str
    user_id: str


class EventSubClient:
    """Reads the configured channels over EventSub until `stop()` or a fatal failure."""

    def __init__(
        self,
        settings: EventSubSettings,
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
        # Run-time channel changes (fleet): queued by add/remove, applied in `_membership`.
        self._changes: list[tuple[bool, tuple[str, ...]]] = []
        self._changed = asyncio.Event()
        self._new_tasks: list[asyncio.Task[SourceFailure | None]] = []
        self._tasks_added = asyncio.Event()

    def __repr__(self) -> str:
        return f"EventSubClient(channels={len(self.settings.channels)})"

    def stop(self) -> None:
        """Ask `run` to end (returns None then)."""
        self._stopping.set()

    def add_channels(self, logins: tuple[str, ...]) -> None:
        """Read these channels too (`dynamic_channels`): resolved, placed on a connection
        with room (or a new one, up to `max_connections`) and subscribed."""
        self._changes.append((True, logins))
        self._changed.set()

    def remove_channels(self, logins: tuple[str, ...]) -> None:
        """Stop reading these channels: their subscriptions are deleted; a connection left
        without channels is closed (Twitch would close it with 4003 otherwise)."""
        self._changes.append((False, logins))
        self._changed.set()

    def subscribed_logins(self) -> frozenset[str]:
        """Channels whose every subscription is in place on a live session."""
        return frozenset(
            login for connection in self.connections for login in connection.subscribed_logins()
        )

    @property
    def duplicates_dropped(self) -> int:
        return sum(connection.session.duplicates_dropped for connection in self.connections)

    async def run(self) -> SourceFailure | None:
        """Read until stopped (None) or until retrying cannot help (the failure)."""
        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self._http = http
            try:
                return await self._run()
            finally:
                for connection in self.connections:
                    await connection.close()
                self._http = None

    async def _run(self) -> SourceFailure | None:
        settings = self.settings
        keeper = self.keeper = TokenKeeper(
            self.send,
            auth_url=settings.auth_url,
            client_id=settings.client_id,
            access_token=settings.oauth_token,
            client_secret=settings.client_secret,
            refresh_token=settings.refresh_token,
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
        channels = await self._until_stopped(self._resolve(settings.channels))
        if channels is None:
            return None
        if isinstance(channels, SourceFailure):
            return channels
        plan = plan_connections(
            list(channels),
            subscriptions_per_channel=len(CHAT_SUBSCRIPTION_TYPES),
            subscriptions_per_connection=settings.subscriptions_per_connection,
            max_connections=settings.max_connections,
        )
        for problem in plan.unplaced:
            self.report(
                ChannelProblem(channels[problem.channel].login, problem.reason, problem.message)
            )
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
            # One after the other: each gets the Helix bucket to itself for its first
            # round of subscriptions (see `wait_for_helix_room`).
            connection.after = previous
            previous = connection.first_round
            self.connections.append(connection)
        tasks: list[asyncio.Task[SourceFailure | None]] = [
            asyncio.create_task(self._token_loop(keeper)),
            *(asyncio.create_task(connection.run()) for connection in self.connections),
        ]
        if settings.dynamic_channels:
            tasks.append(asyncio.create_task(self._membership()))
        stopping = asyncio.create_task(self._stopping.wait())
        added = asyncio.create_task(self._tasks_added.wait())
        pending: set[asyncio.Task[Any]] = {*tasks, stopping, added}
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    return None
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
                if not settings.dynamic_channels and len(pending) <= 3 and tasks[0] in pending:
                    # Only the token loop (and `stopping`) left: every connection gave up
                    # its channels (all refused for good), so nothing is read any more.
                    return SourceFailure(
                        "no-channels",
                        "TWITCH_CHANNEL",
                        "EventSub: Twitch refused every configured channel (see the reports"
                        " above); check TWITCH_CHANNEL and TWITCH_OAUTH_TOKEN",
                    )
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

    # -- channels at run time (fleet) ---------------------------------------------------

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
            if channel.login in self._placed():
                continue
            room = [c for c in self.connections if len(c.channels) < per_connection]
            if room:
                min(room, key=lambda c: len(c.channels)).add_channel(channel)
            elif len(self.connections) < settings.max_connections:
                connection = _Connection(self, len(self.connections), [channel])
                self.connections.append(connection)
                self._new_tasks.append(asyncio.create_task(connection.run()))
                self._tasks_added.set()
            else:
                self.report(
                    ChannelProblem(
                        channel.login,
                        "connection-limit",
                        f"EventSub allows {settings.max_connections} connections of"
                        f" {per_connection} channels per client id and user; all are full",
                    )
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
            for reason in [r for channel, r in self._reported if channel == login]:
                self._reported.discard((login, reason))

    async def _token_loop(self, keeper: TokenKeeper) -> SourceFailure:
        return SourceFailure.from_token_error(await keeper.run())

    # -- HTTP --------------------------------------------------------------------------

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send one request; a network failure becomes a synthetic 599 (transient)."""
        http = self._http
        if http is None:
            raise RuntimeError("EventSubClient.send outside run()")
        return await send_http(http, request)

    async def helix(self, request: HttpRequest) -> HttpResponse | SourceFailure:
        """A Helix call with the current token: waits for the rate limit, refreshes the
        token on a 401, waits out 429s and retries 5xx, a few times."""
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
            if response.status >= 500:
                await asyncio.sleep(_TRANSIENT_RETRY_S)
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

    async def _resolve(self, logins: tuple[str, ...]) -> dict[str, _Channel] | SourceFailure:
        """User id → channel for every login Twitch knows; the others are reported."""
        keeper = self.keeper
        assert keeper is not None
        requests, problems = users_requests(
            self.settings.api_url, self.settings.client_id, keeper.access_token, logins
        )
        for problem in problems:
            self.report(problem)
        channels: dict[str, _Channel] = {}
        for request, batch in requests:
            response = await self.helix(request)
            if isinstance(response, SourceFailure):
                return response
            answer = interpret_users(batch, response)
            if isinstance(answer, HelixRefusal):
                return SourceFailure(
                    f"users-{answer.kind.value}",
                    "TWITCH_API_URL",
                    f"Helix Get Users answered {answer.status} {answer.message}".rstrip()
                    + "; check TWITCH_API_URL and TWITCH_CLIENT_ID",
                )
            assert isinstance(answer, UsersAnswer)
            for problem in answer.unknown:
                self.report(problem)
            for login in batch:
                user_id = answer.user_ids.get(login)
                if user_id is not None:
                    channels[user_id] = _Channel(login, user_id)
        return channels

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


# ---------------------------------------------------------------------------------------
# One WebSocket connection (and its sockets across reconnects)


class _Connection:
    def __init__(self, client: EventSubClient, index: int, channels: list[_Channel]) -> None:
        settings = client.settings
        self.client = client
        self.index = index
        self.channels = channels
        self.session = EventSubSession(
            keepalive_margin_s=settings.keepalive_margin_s,
            welcome_timeout_s=settings.welcome_timeout_s,
            max_unproductive_sessions=settings.max_unproductive_sessions,
        )
        url = settings.eventsub_url
        if settings.keepalive_timeout_s is not None:
            separator = "&" if "?" in url else "?"
            url = f"{url}{separator}keepalive_timeout_seconds={settings.keepalive_timeout_s}"
        self.url = url
        self._backoff = ExponentialBackoff(settings.backoff_base_s, settings.backoff_max_s)
        self._actions: asyncio.Queue[SessionAction | SourceFailure | _NothingLeft] = asyncio.Queue()
        self._sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscribing: asyncio.Task[None] | None = None
        self._running_since: float | None = None
        self._dropped: set[str] = set()
        """User ids of channels refused for good: not subscribed again."""
        self._output = client.output
        self._clock = client._clock
        self.after: asyncio.Event | None = None
        """Set by the previous connection when its first round of subscriptions is over."""
        self.first_round = asyncio.Event()
        self._calls = len(channels) * len(CHAT_SUBSCRIPTION_TYPES)
        self._subscription_ids: dict[str, list[str]] = {}
        """User id → ids of its subscriptions on the current session (for deletes)."""
        self._subscribed: set[str] = set()
        """User ids with every subscription in place on the current session."""

    # -- channels at run time (fleet) --------------------------------------------------

    def subscribed_logins(self) -> list[str]:
        if self.session.state not in (SessionState.RUNNING, SessionState.MIGRATING):
            return []
        return [c.login for c in self.channels if c.user_id in self._subscribed]

    def add_channel(self, channel: _Channel) -> None:
        self.channels.append(channel)
        self._dropped.discard(channel.user_id)
        session_id = self.session.session_id
        if session_id is not None and self.session.state in (
            SessionState.WELCOMED,
            SessionState.RUNNING,
        ):
            # A round in progress may have listed the channels already: subscribe it
            # now (a 409 "already exists" counts as done).
            limit = asyncio.Semaphore(1)
            self._spawn(self._subscribe_one(channel, session_id, limit))

    async def _subscribe_one(
        self, channel: _Channel, session_id: str, limit: asyncio.Semaphore
    ) -> None:
        result = await self._subscribe_channel(channel, session_id, limit)
        if isinstance(result, SourceFailure):
            self._actions.put_nowait(result)

    def remove_channels(self, channels: list[_Channel]) -> None:
        gone = {c.user_id for c in channels}
        self.channels = [c for c in self.channels if c.user_id not in gone]
        for user_id in gone:
            self._subscribed.discard(user_id)
            self._dropped.discard(user_id)
            for subscription_id in self._subscription_ids.pop(user_id, []):
                self._spawn(self._delete(subscription_id))

    def retire(self) -> None:
        """No channels left: close the sockets and end `run` (returns None)."""
        self._actions.put_nowait(_NOTHING_LEFT)

    async def _delete(self, subscription_id: str) -> None:
        client = self.client
        keeper = client.keeper
        assert keeper is not None
        request = delete_subscription_request(
            client.settings.api_url,
            client.settings.client_id,
            keeper.access_token,
            subscription_id,
        )
        response = await client.helix(request)
        if isinstance(response, SourceFailure):
            self._actions.put_nowait(response)
        elif response.status not in (204, 404):  # 404: gone with its session already
            log.warning(
                "eventsub unsubscribe failed", connection=self.index, status=response.status
            )

    # -- the driver --------------------------------------------------------------------

    async def run(self) -> SourceFailure | None:
        try:
            return await self._run()
        finally:
            self.first_round.set()

    async def _run(self) -> SourceFailure | None:
        if self.after is not None:
            await self.after.wait()
        await self.client.wait_for_helix_room(self._calls)
        self._open(self.url)
        session = self.session
        while True:
            deadline = session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                async with asyncio.timeout(timeout):
                    item = await self._actions.get()
            except TimeoutError:
                for action in session.tick(self._clock()):
                    self._actions.put_nowait(action)
                continue
            if isinstance(item, SourceFailure):
                return item
            if item is _NOTHING_LEFT:
                log.warning("eventsub connection idle", connection=self.index)
                await self.close()
                return None
            assert not isinstance(item, _NothingLeft)
            failure = await self._carry_out(item)
            if failure is not None:
                return failure

    async def _carry_out(self, action: SessionAction) -> SourceFailure | None:
        if isinstance(action, Subscribe):
            if self._subscribing is not None:
                self._subscribing.cancel()
            self._subscribing = self._spawn(self._subscribe_all(action.session_id, action.deadline))
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
            return SourceFailure(action.reason, "TWITCH_OAUTH_TOKEN", action.message)
        return None

    async def _reconnect(self, action: ReconnectFresh) -> None:
        now = self._clock()
        self.client.stats.reconnects.append((action.reason, action.kind))
        if self._subscribing is not None:
            self._subscribing.cancel()
            self._subscribing = None
        for ws in list(self._sockets.values()):
            self._spawn(self._close_socket(ws))
        if self._running_since is not None:
            self._backoff.connection_ended(now - self._running_since)
            self._running_since = None
        delay = self._backoff.next_delay() if action.kind is ReconnectKind.BACKOFF else 0.0
        log.warning(
            "eventsub reconnect",
            connection=self.index,
            reason=action.reason,
            retry_in_s=round(delay, 2),
        )
        if delay > 0:
            await asyncio.sleep(delay)
        self.first_round.set()
        await self.client.wait_for_helix_room(self._calls)
        self._open(self.url)

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
        channel = next((c for c in self.channels if c.user_id == action.broadcaster_user_id), None)
        if channel is None:
            return
        session_id = self.session.session_id
        if action.retry_allowed and session_id is not None:
            self._spawn(self._subscribe_type(channel, action.subscription_type, session_id))
        else:
            self._dropped.add(channel.user_id)
            self.client.report(
                ChannelProblem(
                    channel.login,
                    f"revoked-{action.reason}",
                    f"Twitch revoked {action.subscription_type} for {channel.login}:"
                    f" {action.reason}",
                )
            )

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
        # Optional backpressure (the service's `SinkOutput.room`): None while the sink
        # keeps up, else something to await before reading on.
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

    # -- subscriptions -----------------------------------------------------------------

    async def _subscribe_all(self, session_id: str, deadline: float) -> None:
        """Create every chat subscription of this connection's channels for `session_id`.

        Past `deadline` Twitch may already have closed the socket (4003): the session
        then reconnects with backoff; the warning says why it keeps happening.
        """
        limit = asyncio.Semaphore(self.client.settings.subscribe_concurrency)
        # A new session starts without subscriptions (a session_reconnect keeps them, and
        # does not come through here).
        self._subscription_ids = {}
        self._subscribed = set()
        channels = [c for c in self.channels if c.user_id not in self._dropped]
        results = await asyncio.gather(
            *(self._subscribe_channel(channel, session_id, limit) for channel in channels)
        )
        self.first_round.set()
        if self._clock() > deadline:
            log.warning(
                "eventsub subscribe slow",
                connection=self.index,
                detail="subscribing took longer than Twitch allows after a welcome (4003"
                " follows); fewer channels per connection or a faster network help",
            )
        failure = next((r for r in results if isinstance(r, SourceFailure)), None)
        if failure is not None:
            self._actions.put_nowait(failure)
            return
        created = sum(r for r in results if isinstance(r, int))
        if created:
            self.session.subscriptions_created(session_id)
            self._running_since = self._clock()
            self._backoff.record_success()
            log.info(
                "eventsub subscribed",
                connection=self.index,
                channels=sum(1 for c in channels if c.user_id not in self._dropped),
                subscriptions=created,
            )
        elif channels and all(c.user_id in self._dropped for c in channels):
            # Twitch refused every channel of this connection for good: end it (the
            # others go on); the client stops only when no connection is left.
            self._actions.put_nowait(_NOTHING_LEFT)
        # Otherwise nothing could be created for a transient reason: Twitch closes the
        # unused socket (4003) and the session starts over with backoff.

    async def _subscribe_channel(
        self, channel: _Channel, session_id: str, limit: asyncio.Semaphore
    ) -> int | SourceFailure | None:
        created = 0
        async with limit:
            for subscription_type in CHAT_SUBSCRIPTION_TYPES:
                if channel not in self.channels:
                    return created or None  # removed meanwhile (fleet)
                result = await self._create(channel, subscription_type, session_id)
                if isinstance(result, SourceFailure):
                    return result
                if isinstance(result, SubscriptionCreated):
                    created += 1
                    if result.id:
                        self._subscription_ids.setdefault(channel.user_id, []).append(result.id)
                    if created == len(CHAT_SUBSCRIPTION_TYPES):
                        self._subscribed.add(channel.user_id)
                    continue
                if result.kind.reports_channel:
                    self._dropped.add(channel.user_id)
                    self.client.report(result.problem(channel.login))
                return created or None
        return created

    async def _subscribe_type(
        self, channel: _Channel, subscription_type: str, session_id: str
    ) -> None:
        result = await self._create(channel, subscription_type, session_id)
        if isinstance(result, SourceFailure):
            self._actions.put_nowait(result)
        elif isinstance(result, HelixRefusal) and result.kind.reports_channel:
            self._dropped.add(channel.user_id)
            self.client.report(result.problem(channel.login))

    async def _create(
        self, channel: _Channel, subscription_type: str, session_id: str
    ) -> SubscriptionCreated | HelixRefusal | SourceFailure:
        client = self.client
        keeper = client.keeper
        assert keeper is not None
        result: SubscriptionCreated | HelixRefusal | SourceFailure = HelixRefusal(
            RefusalKind.TRANSIENT, 0, "not attempted", subscription_type, channel.user_id
        )
        for _ in range(_HELIX_ATTEMPTS):
            request = subscription_request(
                client.settings.api_url,
                client.settings.client_id,
                keeper.access_token,
                subscription_type=subscription_type,
                broadcaster_user_id=channel.user_id,
                user_id=keeper.user_id,
                session_id=session_id,
            )
            response = await client.helix(request)
            if isinstance(response, SourceFailure):
                return response
            result = interpret_subscription(
                response, subscription_type=subscription_type, broadcaster_user_id=channel.user_id
            )
            if isinstance(result, SubscriptionCreated):
                client.stats.subscriptions_created += 1
                return result
            if result.kind in (RefusalKind.RATE_LIMITED, RefusalKind.TRANSIENT):
                continue  # `helix` already waited for the bucket / backed off
            return result
        return result
