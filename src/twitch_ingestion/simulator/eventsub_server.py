"""Twitch EventSub for tests: the WebSocket, OAuth and Helix endpoints on one local port.

`EventSubSimulator` serves, from one aiohttp application:

- `GET  /ws` — the EventSub WebSocket: `session_welcome`, notifications, keepalives,
  `session_reconnect` (the `reconnect_url` points back here), revocations, and closes
  with each of Twitch's 4000-4007 codes (4001 when the client sends anything, 4003
  when no subscription names a new session in time, 4004 when a reconnect URL is not
  used in time, 4007 for a reconnect URL it was told to treat as invalid).
- `GET  /oauth2/validate`, `POST /oauth2/token` (refresh) — id.twitch.tv's answers.
- `GET  /helix/users?login=…` and `POST/GET/DELETE /helix/eventsub/subscriptions`, with
  Twitch's limits (300 enabled subscriptions per connection, 3 connections per client
  id and user, `max_total_cost`), its error bodies, and `Ratelimit-*` headers / 429s.

Delivery model. Twitch delivers at least once; this simulator makes that concrete so
loss tests can be exact: a notification waits in its channel's backlog until some
connected, non-silent session holds the matching subscription, and when a channel's
notifications start going to a different socket (a new session after a reconnect, or
the new socket of a `session_reconnect`), the last `redeliver_recent` ones are sent
again with the same `message_id`, as Twitch does after reconnects. So a client that
re-subscribes after a loss gets every numbered message, some twice; it must pass each
on exactly once.

Where each part lives: `eventsub_websocket.py` (`/ws`, sessions, delivery),
`eventsub_helix.py` (Helix, its limits and faults), `eventsub_oauth.py` (tokens,
`/oauth2`), `eventsub_wire.py` (frames and chat events), `eventsub_model.py` (config,
stats, the data held); this module wires them into one application and holds the
switches, the chat streams, the thread wrapper and the standalone command.

Fault switches (all on the simulator's loop; `EventSubSimulatorThread` wraps them):
`issue_token` (scopes, client id, lifetime), `expire_token`, `unknown_logins`,
`set_cost`, `rate_limit_next` (with or without `Ratelimit-Reset`), `fail_helix` (bursts
of 5xx, or calls that hang past the client's timeout), `go_silent`,
`send_reconnect(invalid=…)`, `close`, `revoke`, `vanish` (a subscription gone without a
revocation), `send_raw`, `unreachable` (nothing listens for a while).

Twitch's unkind habits, switched on in the config:
- `dead_session_linger_s`: a closed session's subscriptions stay enabled for a while and
  count towards the transport, subscription and cost limits, so a reconnect meanwhile gets
  the 429 "number of websocket transports limit exceeded" users report;
- `conflict_across_sessions`: a create answers 409 when any session of the same client
  and user (dead or live, another instance's) holds the same type and condition;
- `ping_interval_s`: WebSocket pings, and 4002 for a client that does not answer in time
  (aiohttp answers pings only while its reader receives).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import structlog
from aiohttp import web

from twitch_ingestion.config import LogFormat
from twitch_ingestion.logging import configure_logging
from twitch_ingestion.simulator.chatgen import ChatGenerator
from twitch_ingestion.simulator.eventsub_helix import HelixEndpoints
from twitch_ingestion.simulator.eventsub_model import (
    CHAT_SCOPE,
    CHAT_TYPES,
    EventSubSimulatorConfig,
    EventSubStats,
    IssuedToken,
)
from twitch_ingestion.simulator.eventsub_oauth import TokenStore
from twitch_ingestion.simulator.eventsub_websocket import WebSocketSessions
from twitch_ingestion.simulator.eventsub_wire import numbered_event, privmsg_event
from twitch_ingestion.simulator.loop_thread import SimulatorOnThread
from twitch_ingestion.simulator.wire import derived_uuid, room_id_for

__all__ = [
    "CHAT_TYPES",
    "EventSubSimulator",
    "EventSubSimulatorConfig",
    "EventSubSimulatorThread",
    "EventSubStats",
    "IssuedToken",
]

log = structlog.get_logger(__name__)


class EventSubSimulator:
    """The server; `async with EventSubSimulator(config) as sim:` or `start`/`stop`.

    The endpoints live in their own modules (`TokenStore`, `HelixEndpoints`,
    `WebSocketSessions`); this is their one application, their lifecycle, the switches
    a test flips, and the chat streams it starts.
    """

    def __init__(
        self,
        config: EventSubSimulatorConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config if config is not None else EventSubSimulatorConfig()
        self.ssl_context = ssl_context
        """Serve https/wss with it (e.g. a self-signed certificate, for TLS tests)."""
        self.stats = EventSubStats()
        self._changed = asyncio.Event()
        self._tokens = TokenStore(self.config, self.stats, self._changed)
        self._sessions = WebSocketSessions(
            self.config, self.stats, self._changed, lambda: self.urls["TWITCH_EVENTSUB_URL"]
        )
        self._helix = HelixEndpoints(
            self.config, self.stats, self._changed, self._tokens, self._sessions
        )
        self._unreachable = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/ws", self._sessions.handle)
        app.router.add_get("/oauth2/validate", self._tokens.validate)
        app.router.add_post("/oauth2/token", self._tokens.refresh)
        self._helix.add_routes(app)
        self._app = app

    @property
    def unknown_logins(self) -> set[str]:
        """Logins Get Users does not know (add to it to make a channel unknown)."""
        return self._helix.unknown_logins

    @property
    def costs(self) -> dict[str, int]:
        """Broadcaster login → cost of each subscription in that channel (default 0)."""
        return self._helix.costs

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=self.ssl_context
        )
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])
        self._sessions.start()

    async def stop(self) -> None:
        for task in [*self._streams, *self._tasks]:
            task.cancel()
        self._sessions.cancel_tasks()
        await self._sessions.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EventSubSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    @property
    def urls(self) -> dict[str, str]:
        """The settings that point a client here (`TWITCH_EVENTSUB_URL`, …)."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        return {
            "TWITCH_EVENTSUB_URL": f"{scheme}://{self.config.host}:{self.port}/ws",
            "TWITCH_API_URL": f"{self.base_url}/helix",
            "TWITCH_AUTH_URL": f"{self.base_url}/oauth2",
        }

    # ------------------------------------------------------------------ switches: OAuth

    def issue_token(
        self,
        *,
        scopes: Iterable[str] = (CHAT_SCOPE,),
        client_id: str | None = None,
        lifetime_s: float | None = None,
        login: str | None = None,
        from_first_use: bool = False,
    ) -> IssuedToken:
        """A user token (and its refresh token) the endpoints accept.

        `lifetime_s` defaults to `config.token_lifetime_s`; 0 issues an expired token.
        `from_first_use` starts that lifetime at the token's first use instead of now.
        """
        return self._tokens.issue(
            scopes=scopes,
            client_id=client_id,
            lifetime_s=lifetime_s,
            login=login,
            from_first_use=from_first_use,
        )

    def token_index(self, access_token: str) -> int:
        """Position of `access_token` in issue order (refreshes included)."""
        return self._tokens.index(access_token)

    def expire_token(self, access_token: str) -> None:
        """`access_token` stops working now (validate and Helix answer 401)."""
        self._tokens.expire(access_token)

    def token_is_live(self, access_token: str) -> bool:
        """Whether `access_token` was issued here and has not expired (its first use
        starts the clock of a `from_first_use` token): what Twitch's IRC login asks."""
        return self._tokens.live_token(access_token) is not None

    # ------------------------------------------------------------------ switches: Helix

    def set_cost(self, login: str, cost: int) -> None:
        """Each subscription in `login`'s channel costs `cost` (see `max_total_cost`)."""
        self.costs[login.lower()] = cost

    def rate_limit_next(self, count: int, *, reset: bool = True) -> None:
        """The next `count` Helix calls answer 429 with `Ratelimit-Remaining: 0`, and a
        `Ratelimit-Reset` a second ahead unless `reset` is False (a proxy that drops it)."""
        self._helix.rate_limit_next(count, reset)

    def fail_helix(
        self,
        status: int = 503,
        *,
        endpoints: Iterable[str] = ("create",),
        count: int | None = None,
        for_s: float | None = None,
        hang_s: float = 0.0,
    ) -> None:
        """Answer Helix calls with `status` instead: the next `count` of them, or all for
        `for_s` seconds (neither: until `fail_helix(0)` clears every fault).

        `endpoints` are `create`, `list`, `delete` and `users`. `hang_s` holds each answer
        that long first: past the client's timeout it is a timeout, not a 5xx.
        """
        self._helix.fail_helix(status, endpoints, count, for_s, hang_s)

    # ------------------------------------------------------------------ switches: WebSocket

    def vanish(self, login: str, subscription_type: str) -> int:
        """End subscriptions silently (no revocation): only a listing shows they are gone."""
        return self._sessions.vanish(login, subscription_type)

    def lingering_session_ids(self) -> list[str]:
        """Closed sessions whose subscriptions still count (`dead_session_linger_s`)."""
        return self._sessions.lingering_session_ids()

    def session_ids(self) -> list[str]:
        return self._sessions.session_ids()

    def subscriptions(self, session_id: str | None = None) -> list[tuple[str, str, str]]:
        """(session id, type, broadcaster id) of every enabled subscription."""
        return self._sessions.subscriptions(session_id)

    def go_silent(self, session_id: str | None = None, *, silent: bool = True) -> None:
        """Stop sending anything (keepalives included) on the session's socket."""
        self._sessions.go_silent(session_id, silent)

    def send_reconnect(self, session_id: str | None = None, *, invalid: bool = False) -> int:
        """`session_reconnect` with a `reconnect_url`; `invalid`: that URL answers 4007."""
        return self._sessions.send_reconnect(session_id, invalid)

    def send_raw(self, frame: bytes, session_id: str | None = None) -> int:
        """Send `frame` as it is (a broken one, for dead-letter tests) on live sessions."""
        return self._sessions.send_raw(frame, session_id)

    def close(self, code: int, session_id: str | None = None) -> int:
        """Close the session's socket (every session's by default) with `code`."""
        return self._sessions.close(code, session_id)

    def revoke(self, login: str, subscription_type: str, status: str) -> int:
        """End a subscription the way Twitch does: a `revocation` message, then gone."""
        return self._sessions.revoke(login, subscription_type, status)

    # ------------------------------------------------------------------ switches: the port

    async def unreachable(self, for_s: float) -> None:
        """Nothing answers for `for_s` seconds: every connection is cut (no close frame)
        and the port refuses new ones (WebSocket, OAuth and Helix alike); then it listens
        again on the same port. Returns at once."""
        runner, site = self._runner, self._site
        if runner is None or site is None:
            return
        self._unreachable = True
        await site.stop()
        self._site = None
        self._sessions.abort_transports()
        server = runner.server
        if server is not None:
            for handler in list(server.connections):
                handler.force_close()
        self._spawn(self._listen_again(for_s))

    async def _listen_again(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if self._runner is None:
            return
        self._site = web.TCPSite(
            self._runner, self.config.host, self.port, ssl_context=self.ssl_context
        )
        await self._site.start()
        self._unreachable = False
        self._changed.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ streams

    def start_numbered(
        self, channels: Sequence[str], *, count: int, rate: float = 0.0
    ) -> asyncio.Task[None]:
        """`seq <channel> <n>` chat messages, round-robin, `count` per channel.

        `rate` is messages per second over all channels (0: as fast as queued). The
        numbers continue across streams (`stats.numbered_high_water`).
        """
        task = asyncio.create_task(self._numbered(list(channels), count, rate))
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        return task

    def start_generated(
        self,
        channels: Sequence[str],
        *,
        count: int | None,
        rate: float = 0.0,
        seed: int | None = None,
    ) -> asyncio.Task[None] | None:
        """Realistic chat messages (the IRC simulator's generator) as EventSub events.

        `count` messages round-robin over `channels` (None: until stopped), at `rate`
        per second (0: all queued at once, which needs a `count`).
        """
        generator = ChatGenerator(seed)
        logins = [channel.lower() for channel in channels]

        def one(index: int) -> None:
            channel = logins[index % len(logins)]
            line = generator.privmsg(channel, room_id_for(channel), int(time.time() * 1000))
            self.queue_event(channel, "channel.chat.message", privmsg_event(channel, line))

        if rate <= 0:
            if count is None:
                raise ValueError("a generated stream without a rate needs a count")
            for index in range(count):
                one(index)
            return None

        async def paced() -> None:
            for index in itertools.count() if count is None else range(count):
                one(index)
                await asyncio.sleep(1.0 / rate)

        task = asyncio.create_task(paced())
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        return task

    def queue_event(
        self,
        login: str,
        subscription_type: str,
        event: dict[str, Any],
        *,
        message_id: str | None = None,
    ) -> str:
        """Queue one notification for `login`'s channel; returns its `message_id`."""
        return self._sessions.queue_event(login, subscription_type, event, message_id)

    def backlog(self, login: str) -> int:
        """Notifications of `login`'s channel still waiting for a subscriber."""
        return self._sessions.backlog(login)

    async def _numbered(self, channels: list[str], count: int, rate: float) -> None:
        high_water = self.stats.numbered_high_water
        interval = 1.0 / rate if rate > 0 else 0.0
        for _ in range(count):
            for channel in channels:
                login = channel.lower()
                seq = high_water.get(login, 0) + 1
                high_water[login] = seq
                self.queue_event(
                    login,
                    "channel.chat.message",
                    numbered_event(login, seq),
                    message_id=derived_uuid("eventsub-numbered", login, seq),
                )
                if interval:
                    await asyncio.sleep(interval)
            if not interval:
                await asyncio.sleep(0)

    async def wait_until(self, predicate: Callable[[], bool], within_s: float) -> None:
        """Until `predicate()` holds (checked after every change); TimeoutError after."""
        async with asyncio.timeout(within_s):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()


# ---------------------------------------------------------------------------------------
# On a thread, for synchronous callers


class EventSubSimulatorThread(SimulatorOnThread[EventSubSimulator]):
    """An `EventSubSimulator` on its own loop in a daemon thread (like `SimulatorThread`).

    Every method blocks until the simulator's loop has done the work, so a test on
    another event loop (the client's) calls them through `asyncio.to_thread` when they
    wait, and directly when they only flip a switch.
    """

    def __init__(
        self,
        config: EventSubSimulatorConfig | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config if config is not None else EventSubSimulatorConfig()
        self.ssl_context = ssl_context
        super().__init__(
            "eventsub-simulator",
            "the EventSub simulator",
            lambda: EventSubSimulator(self.config, ssl_context=self.ssl_context),
        )

    @property
    def urls(self) -> dict[str, str]:
        return self.simulator.urls

    def stats(self) -> EventSubStats:
        return self.call(lambda sim: sim.stats.snapshot())

    def issue_token(self, **kwargs: Any) -> IssuedToken:
        return self.call(lambda sim: sim.issue_token(**kwargs))

    def token_is_live(self, access_token: str) -> bool:
        """From any thread (the IRC simulator's login check, say)."""
        return self.call(lambda sim: sim.token_is_live(access_token))

    def start_numbered(self, channels: Sequence[str], *, count: int, rate: float = 0.0) -> None:
        self.call(lambda sim: sim.start_numbered(channels, count=count, rate=rate))

    def wait_until(self, predicate: Callable[[EventSubSimulator], bool], timeout: float) -> None:
        """Block until `predicate(simulator)` holds (run on the simulator's loop)."""
        simulator = self.simulator
        self.run(simulator.wait_until(lambda: predicate(simulator), timeout), timeout + 5.0)


# ---------------------------------------------------------------------------------------
# Standalone: `python -m twitch_ingestion.simulator.eventsub_server` (`make simulate-eventsub`)

# Not 8080 (the service's HEALTH_PORT), 6667 (the IRC simulator) or 9092/9093 (Kafka):
# the simulator, the service and the broker run side by side on one machine.
DEFAULT_STANDALONE_PORT = 7080


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; print the settings that point the service here."""
    parser = argparse.ArgumentParser(
        prog="python -m twitch_ingestion.simulator.eventsub_server",
        description="A local Twitch EventSub (WebSocket, OAuth and Helix) for demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_STANDALONE_PORT,
        help="0: any free port (default %(default)s)",
    )
    parser.add_argument(
        "--channels", default="", help="comma-separated logins to generate chat for"
    )
    parser.add_argument("--rate", type=float, default=5.0, help="generated messages a second")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    configure_logging("info", LogFormat.AUTO)  # the service's log format
    config = EventSubSimulatorConfig(host=args.host, port=args.port)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, channels, args.rate, args.seed))
    return 0


async def _serve(
    config: EventSubSimulatorConfig, channels: list[str], rate: float, seed: int | None
) -> None:
    async with EventSubSimulator(config) as simulator:
        token = simulator.issue_token()
        # stdout carries what this command is for: the settings (a simulator-only token).
        settings = {
            "TWITCH_SOURCE": "eventsub",
            "TWITCH_CLIENT_ID": config.client_id,
            "TWITCH_OAUTH_TOKEN": token.access_token,
            "TWITCH_CLIENT_SECRET": config.client_secret,
            "TWITCH_REFRESH_TOKEN": token.refresh_token,
            **simulator.urls,
        }
        for name, value in settings.items():
            print(f"{name}={value}", flush=True)
        log.info("eventsub simulator listening", url=simulator.base_url)
        if channels and rate > 0:
            simulator.start_generated(channels, count=None, rate=rate, seed=seed)
        await asyncio.Event().wait()


if __name__ == "__main__":
    raise SystemExit(main())
