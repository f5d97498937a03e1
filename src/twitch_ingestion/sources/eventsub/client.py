"""The EventSub source's asyncio shell: sockets, HTTP and clocks around the sans-I/O core.

`EventSubClient.run()` does, in order: validate the token (`auth.TokenKeeper`), resolve
the channel logins to user ids (Helix Get Users, 100 a call, retried while Helix fails),
spread the channels over at most three WebSocket connections (`helix.plan_connections`),
and run one `connection.EventSubConnection` per group beside the token loop until
`stop()` or a failure retrying cannot fix. Every decision is the core's: the connection
state machine (`session`), which subscriptions to create, look up, delete or retry and
when (`reconciler`), what a Helix or OAuth answer means (`helix`, `tokens`), and the
records (`records`); the shell only carries out the actions they return. It is split by
concern:

- `client` (this module): the client's lifetime, which channels are wanted and on which
  connection (fleet changes, unknown logins re-checked), what is reported about them.
- `connection`: one WebSocket connection — its driver, its socket readers (the hot path),
  and the reconciler's Helix calls.
- `helix_calls`: Helix calls with the token, the rate limit and 401/429 retries.
- `config`: `EventSubConfig`; `output`: `EventSubOutput`, the stats, `SourceFailure`.

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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import structlog

from twitch_ingestion.metrics import EVENTSUB_SUBSCRIPTION_FAILURES
from twitch_ingestion.sources.common.backoff import ExponentialBackoff
from twitch_ingestion.sources.eventsub.auth import TokenKeeper, send_http
from twitch_ingestion.sources.eventsub.config import EventSubConfig
from twitch_ingestion.sources.eventsub.connection import Channel, EventSubConnection
from twitch_ingestion.sources.eventsub.helix import (
    ChannelProblem,
    HelixRefusal,
    RateLimiter,
    RefusalKind,
    UsersAnswer,
    interpret_users,
    plan_connections,
    users_requests,
)
from twitch_ingestion.sources.eventsub.helix_calls import HelixCalls
from twitch_ingestion.sources.eventsub.http_messages import HttpRequest, HttpResponse
from twitch_ingestion.sources.eventsub.output import (
    EventSubClientStats,
    EventSubOutput,
    SourceFailure,
)
from twitch_ingestion.sources.eventsub.reconciler_outputs import (
    ChannelChanged,
    ChannelState,
    ChannelStatus,
    Failure,
    SubscriptionFailed,
)
from twitch_ingestion.sources.eventsub.records import CHAT_SUBSCRIPTION_TYPES
from twitch_ingestion.sources.eventsub.tokens import NETWORK_ERROR_STATUS, TokenError

__all__ = ["EventSubClient"]

log = structlog.get_logger(__name__)
_T = TypeVar("_T")


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
        self.clock = clock
        self._wall = wall_clock
        self._stopping = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._helix_calls: HelixCalls | None = None
        self._limiter = RateLimiter()
        self._reported: set[tuple[str, str]] = set()
        self.keeper: TokenKeeper | None = None
        self.connections: list[EventSubConnection] = []
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
            clock=self.clock,
        )
        self._helix_calls = HelixCalls(
            self.send,
            keeper,
            self._limiter,
            self.stats,
            api_url=settings.api_url,
            client_id=settings.client_id,
            wall_clock=self._wall,
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
            connection = EventSubConnection(self, index, [channels[user_id] for user_id in group])
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

    def _placed(self) -> dict[str, EventSubConnection]:
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
                connection = EventSubConnection(self, len(self.connections), [channel])
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

    @property
    def http(self) -> aiohttp.ClientSession:
        """The HTTP session while `run` runs (the connections' WebSockets use it too)."""
        http = self._http
        assert http is not None
        return http

    @property
    def helix_calls(self) -> HelixCalls:
        """Helix calls with the current token, once `run` has the token."""
        calls = self._helix_calls
        assert calls is not None
        return calls

    async def _resolve(self, logins: tuple[str, ...]) -> dict[str, Channel] | SourceFailure:
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
        channels: dict[str, Channel] = {}
        backoff = ExponentialBackoff(settings.backoff_base_s, settings.backoff_max_s)
        for request, batch in requests:
            while True:
                response = await self.helix_calls.helix(request)
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
                    channels[user_id] = Channel(login, user_id)
                    if login in self._desired:
                        self._outside[login] = ChannelStatus(login, ChannelState.PENDING)
        return channels


def _pending(login: str) -> ChannelStatus:
    return ChannelStatus(login, ChannelState.PENDING)
