"""One EventSub WebSocket connection of the client, across its sockets and reconnects.

`EventSubConnection.run()` is the connection's driver: one task that takes the session's
actions (subscribe, follow a `session_reconnect`, close the old socket, reconnect fresh,
give up) and the reconciler's wake-ups from one queue, in order, and waits for the
earliest of their deadlines in between. Beside it, one reader task per socket decodes
frames and feeds `session.EventSubSession`; deliveries and revocations are carried out
by the reader at once (the hot path), the rest is queued for the driver. The
subscriptions the connection should hold are `reconciler.SubscriptionReconciler`'s to
decide; this module runs the Helix calls it asks for (through the client's
`HelixCalls`) and feeds the answers back.

What a connection needs of the client that owns it (the shared Helix bucket and token,
the HTTP session, the output, where channel changes are told) is `ConnectionOwner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
import structlog

from twitch_ingestion.sources.common.backoff import ExponentialBackoff
from twitch_ingestion.sources.eventsub.config import EventSubConfig
from twitch_ingestion.sources.eventsub.helix import (
    HelixRefusal,
    SubscriptionCreated,
    delete_subscription_request,
    interpret_delete,
    interpret_subscription,
    subscription_request,
)
from twitch_ingestion.sources.eventsub.helix_calls import HelixCalls
from twitch_ingestion.sources.eventsub.http_messages import HttpResponse
from twitch_ingestion.sources.eventsub.messages import DeadLetter, decode_frame
from twitch_ingestion.sources.eventsub.output import (
    EventSubClientStats,
    EventSubOutput,
    SourceFailure,
)
from twitch_ingestion.sources.eventsub.reconciler import SubscriptionReconciler
from twitch_ingestion.sources.eventsub.reconciler_outputs import (
    ChannelChanged,
    ChannelState,
    ChannelStatus,
    Create,
    Delete,
    ListSubscriptions,
    LookUp,
    ReconcilerOutput,
    RoundSettled,
    SubscribeLate,
    SubscriptionFailed,
)
from twitch_ingestion.sources.eventsub.records import CHAT_SUBSCRIPTION_TYPES, notification_record
from twitch_ingestion.sources.eventsub.session import (
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

__all__ = ["Channel", "ConnectionOwner", "EventSubConnection"]

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

_MAX_FRAME_BYTES = 1 << 20
"""Largest WebSocket message accepted: a chat notification with 500 characters of
emote fragments is ~20 KiB, so 1 MiB is generous and still bounds memory."""
_VALIDATE_ON_REVOCATION = frozenset({"authorization_revoked", "user_removed"})
"""Revocations that may mean the token itself lost its authorisation: validate at once."""


class ConnectionOwner(Protocol):
    """What a connection needs of the client that owns it (`client.EventSubClient`)."""

    @property
    def settings(self) -> EventSubConfig: ...

    @property
    def output(self) -> EventSubOutput: ...

    @property
    def stats(self) -> EventSubClientStats: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def http(self) -> aiohttp.ClientSession:
        """The HTTP session of the running client (its WebSockets too)."""

    @property
    def helix_calls(self) -> HelixCalls:
        """The Helix caller every connection shares (one bucket, one token)."""

    def channel_changed(self, change: ChannelChanged) -> None:
        """A channel's status changed (the client reports and logs it once)."""

    def subscription_failed(self, failed: SubscriptionFailed) -> None:
        """A Helix subscription call failed (counted and logged)."""

    def validate_soon(self, why: str) -> None:
        """Validate the token at once (a revocation may have withdrawn it)."""


class _Wake:
    """Queued to make a connection's driver look at its deadlines again."""


class _NothingLeft:
    """Queued when the fleet removed every channel of a connection: end it."""


_WAKE = _Wake()
_NOTHING_LEFT = _NothingLeft()


@dataclass
class Channel:
    login: str
    user_id: str


class EventSubConnection:
    def __init__(self, client: ConnectionOwner, index: int, channels: list[Channel]) -> None:
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
        self._clock = client.clock
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

    def add_channel(self, channel: Channel) -> None:
        self.channels.append(channel)
        self._feed(self.reconciler.add_channel(channel.login, channel.user_id, self._clock()))

    def remove_channels(self, channels: list[Channel]) -> None:
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
        await self.client.helix_calls.wait_for_room(self._calls)
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
        calls = client.helix_calls
        keeper = calls.keeper
        request = subscription_request(
            client.settings.api_url,
            client.settings.client_id,
            keeper.access_token,
            subscription_type=action.subscription_type,
            broadcaster_user_id=action.user_id,
            user_id=keeper.user_id,
            session_id=action.session_id,
        )
        response = await calls.helix(request)
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
        found = await self.client.helix_calls.list_subscriptions(action.subscription_type)
        if self._ended(found):
            return
        assert not isinstance(found, SourceFailure)
        self._feed(self.reconciler.looked_up(action, found, self._clock()))

    async def _check(self, action: ListSubscriptions) -> None:
        found = await self.client.helix_calls.list_subscriptions()
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
        calls = client.helix_calls
        keeper = calls.keeper
        request = delete_subscription_request(
            client.settings.api_url,
            client.settings.client_id,
            keeper.access_token,
            action.subscription_id,
        )
        response = await calls.helix(request)
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
        http = self.client.http
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
