"""api.twitch.tv/helix for the EventSub simulator: `GET /helix/users?login=…` and
`POST/GET/DELETE /helix/eventsub/subscriptions`, with Twitch's limits (300 enabled
subscriptions per connection, 3 connections per client id and user, `max_total_cost`),
its error bodies, `Ratelimit-*` headers and 429s, and the scripted Helix faults
(`rate_limit_next`, `fail_helix`).

Tokens are checked with `TokenStore` (`eventsub_oauth.py`); subscriptions are held by
the sessions of `WebSocketSessions` (`eventsub_websocket.py`).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from twitch_ingestion.simulator.eventsub_model import (
    CHAT_SCOPE,
    CHAT_TYPES,
    EventSubSimulatorConfig,
    EventSubStats,
    IssuedToken,
    Subscription,
)
from twitch_ingestion.simulator.eventsub_oauth import TokenStore
from twitch_ingestion.simulator.eventsub_websocket import WebSocketSessions
from twitch_ingestion.simulator.eventsub_wire import rfc3339_now, subscription_json
from twitch_ingestion.simulator.wire import room_id_for

__all__ = ["HelixEndpoints", "json_error"]


@dataclass
class _HelixFault:
    """`fail_helix`: which calls to answer how, until when or how many times."""

    endpoints: frozenset[str]
    status: int
    hang_s: float
    count: int | None
    until: float | None


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Twitch's error body: `{"error": <reason phrase>, "status": n, "message": …}`."""
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
    }
    body = msgspec.json.encode(
        {"error": reasons.get(status, "Error"), "status": status, "message": message}
    )
    return web.Response(
        status=status, body=body, content_type="application/json", headers=headers or {}
    )


class HelixEndpoints:
    """The Helix endpoints, the rate-limit bucket per client id, and the Helix faults."""

    def __init__(
        self,
        config: EventSubSimulatorConfig,
        stats: EventSubStats,
        changed: asyncio.Event,
        tokens: TokenStore,
        sessions: WebSocketSessions,
    ) -> None:
        self._config = config
        self._stats = stats
        self._changed = changed
        self._tokens = tokens
        self._sessions = sessions
        self.unknown_logins: set[str] = set()
        self.costs: dict[str, int] = {}
        """Broadcaster login → cost of each subscription in that channel (default 0)."""
        self._rate_limit_next = 0
        self._rate_limit_reset = True
        self._helix_faults: list[_HelixFault] = []
        self._bucket: dict[str, tuple[int, float]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/helix/users", self._users)
        app.router.add_post("/helix/eventsub/subscriptions", self._create_subscription)
        app.router.add_get("/helix/eventsub/subscriptions", self._list_subscriptions)
        app.router.add_delete("/helix/eventsub/subscriptions", self._delete_subscription)

    # ------------------------------------------------------------------ faults

    def rate_limit_next(self, count: int, reset: bool) -> None:
        self._rate_limit_next += count
        self._rate_limit_reset = reset

    def fail_helix(
        self,
        status: int,
        endpoints: Iterable[str],
        count: int | None,
        for_s: float | None,
        hang_s: float,
    ) -> None:
        if status == 0:
            self._helix_faults.clear()
            return
        until = None if for_s is None else time.monotonic() + for_s
        self._helix_faults.append(_HelixFault(frozenset(endpoints), status, hang_s, count, until))

    def _fault(self, endpoint: str) -> _HelixFault | None:
        now = time.monotonic()
        for fault in list(self._helix_faults):
            if fault.until is not None and now >= fault.until:
                self._helix_faults.remove(fault)
                continue
            if endpoint not in fault.endpoints:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._helix_faults.remove(fault)
            return fault
        return None

    async def _injected(self, endpoint: str) -> web.Response | None:
        fault = self._fault(endpoint)
        if fault is None:
            return None
        self._stats.helix_faults += 1
        self._changed.set()
        if fault.hang_s > 0:
            await asyncio.sleep(fault.hang_s)
        return json_error(fault.status, "simulated failure")

    # ------------------------------------------------------------------ every call

    def _helix_auth(
        self, request: web.Request
    ) -> tuple[IssuedToken | None, web.Response | None, dict[str, str]]:
        """The caller's token, or the response refusing it; plus the Ratelimit headers."""
        client_id = request.headers.get("Client-Id", "")
        headers = self._rate_headers(client_id)
        token = self._tokens.token_from(request.headers.get("Authorization", ""), "Bearer")
        if self._rate_limit_next > 0 or headers["Ratelimit-Remaining"] == "-1":
            self._rate_limit_next = max(0, self._rate_limit_next - 1)
            self._stats.rate_limited += 1
            headers["Ratelimit-Remaining"] = "0"
            if self._rate_limit_reset:
                headers["Ratelimit-Reset"] = str(int(time.time()) + 1)
            else:
                headers.pop("Ratelimit-Reset", None)
            return None, json_error(429, "Too Many Requests", headers), headers
        if token is None:
            self._stats.helix_unauthorized += 1
            return None, json_error(401, "Invalid OAuth token", headers), headers
        if token.client_id != client_id:
            self._stats.helix_unauthorized += 1
            return (
                None,
                json_error(401, "Client ID and OAuth token do not match", headers),
                headers,
            )
        return token, None, headers

    def _rate_headers(self, client_id: str) -> dict[str, str]:
        limit = self._config.rate_limit_points
        now = time.time()
        window = self._config.rate_limit_window_s
        remaining, reset = self._bucket.get(client_id, (limit, now + window))
        if now >= reset:
            remaining, reset = limit, now + window
        remaining -= 1
        self._bucket[client_id] = (max(remaining, 0), reset)
        return {
            "Ratelimit-Limit": str(limit),
            "Ratelimit-Remaining": str(remaining),
            "Ratelimit-Reset": str(math.ceil(reset)),  # whole seconds, never early
        }

    # ------------------------------------------------------------------ Get Users

    async def _users(self, request: web.Request) -> web.Response:
        self._stats.users_calls += 1
        self._changed.set()
        injected = await self._injected("users")
        if injected is not None:
            return injected
        _token, refusal, headers = self._helix_auth(request)
        if refusal is not None:
            return refusal
        logins = [value.lower() for value in request.query.getall("login", [])]
        self._stats.users_logins_max = max(self._stats.users_logins_max, len(logins))
        if len(logins) > 100:
            return json_error(400, "The number of login parameters exceeds 100", headers)
        data = [
            {
                "id": room_id_for(login),
                "login": login,
                "display_name": login,
                "type": "",
                "broadcaster_type": "",
                "description": "",
                "profile_image_url": "",
                "offline_image_url": "",
                "view_count": 0,
                "created_at": "2016-01-01T00:00:00Z",
            }
            for login in dict.fromkeys(logins)
            if login not in self.unknown_logins
        ]
        return web.json_response({"data": data}, headers=headers)

    # ------------------------------------------------------------------ subscriptions

    async def _create_subscription(self, request: web.Request) -> web.Response:
        response = await self._injected("create")
        if response is None:
            token, refusal, headers = self._helix_auth(request)
            response = refusal or await self._create(request, token, headers)
        if response.status != 202:
            self._stats.subscription_refusals[response.status] = (
                self._stats.subscription_refusals.get(response.status, 0) + 1
            )
        self._changed.set()
        return response

    async def _create(
        self, request: web.Request, token: IssuedToken | None, headers: dict[str, str]
    ) -> web.Response:
        assert token is not None
        config = self._config
        try:
            body = msgspec.json.decode(await request.read(), type=dict[str, Any])
            kind = str(body["type"])
            version = str(body["version"])
            condition = {str(k): str(v) for k, v in dict(body["condition"]).items()}
            transport = dict(body["transport"])
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError, ValueError):
            return json_error(400, "malformed request body", headers)
        if kind not in CHAT_TYPES or version != "1":
            return json_error(400, f"unsupported subscription type {kind} v{version}", headers)
        if set(condition) != {"broadcaster_user_id", "user_id"}:
            return json_error(400, "condition must have broadcaster_user_id and user_id", headers)
        if transport.get("method") != "websocket":
            return json_error(400, "this simulator only knows the websocket transport", headers)
        if condition["user_id"] != token.user_id or CHAT_SCOPE not in token.scopes:
            return json_error(403, "subscription missing proper authorization", headers)
        session = self._sessions.session(str(transport.get("session_id", "")))
        if session is None or session.socket.closed:
            return json_error(
                400, "websocket transport session does not exist or has already disconnected"
            )
        counted = self._sessions.counted_sessions
        holders = counted() if config.conflict_across_sessions else [session]
        for holder in holders:
            for sub in holder.subscriptions.values():
                if (
                    sub.type == kind
                    and sub.condition == condition
                    and sub.client_id == token.client_id
                ):
                    return json_error(409, "subscription already exists", headers)
        if len(session.subscriptions) >= config.subscriptions_per_connection:
            return json_error(
                429, "number of websocket subscriptions per connection exceeds the limit", headers
            )
        mine = [
            s
            for s in counted()
            if s.subscriptions
            and next(iter(s.subscriptions.values())).client_id == token.client_id
            and next(iter(s.subscriptions.values())).user_id == token.user_id
        ]
        if not session.subscriptions and len(mine) >= config.connections_per_user:
            # Twitch's words, which users see right after a reconnect while the dead
            # session still counts.
            return json_error(
                429,
                "number of websocket transports limit exceeded"
                " (websocket connections per client and user)",
                headers,
            )
        broadcaster_login = next(
            (login for login in self._logins_for(condition["broadcaster_user_id"])), ""
        )
        cost = self.costs.get(broadcaster_login, 0)
        total = self._total_cost(token)
        if total + cost > config.max_total_cost:
            return json_error(
                429,
                f"subscription cost {cost} would exceed max_total_cost"
                f" {config.max_total_cost} (total_cost {total})",
                headers,
            )
        sub = Subscription(
            secrets.token_hex(16),
            kind,
            condition,
            session.id,
            token.client_id,
            token.user_id,
            cost,
            rfc3339_now(),
        )
        stats = self._stats
        if not session.subscriptions:
            stats.sessions_with_subscriptions += 1
        session.subscriptions[sub.id] = sub
        stats.subscriptions_created += 1
        stats.subscriptions_created_by_type[kind] = (
            stats.subscriptions_created_by_type.get(kind, 0) + 1
        )
        stats.subscribe_tokens.append(str(self._tokens.index(token.access_token)))
        self._sessions.wake()
        answer = msgspec.json.decode(subscription_json(sub, "enabled"))
        return web.json_response(
            {
                "data": [answer],
                "total": sum(len(s.subscriptions) for s in self._sessions.live_sessions()),
                "total_cost": total + cost,
                "max_total_cost": config.max_total_cost,
            },
            status=202,
            headers=headers,
        )

    def _logins_for(self, broadcaster_id: str) -> Iterable[str]:
        known = {*self.costs, *self._sessions.logins_with_backlog()}
        return (login for login in known if room_id_for(login) == broadcaster_id)

    def _total_cost(self, token: IssuedToken) -> int:
        return sum(
            sub.cost
            for session in self._sessions.counted_sessions()
            for sub in session.subscriptions.values()
            if sub.client_id == token.client_id and sub.user_id == token.user_id
        )

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        """Get EventSub Subscriptions: optionally by `type`, a page (`after`) at a time."""
        self._stats.lists += 1
        injected = await self._injected("list")
        if injected is not None:
            return injected
        token, refusal, headers = self._helix_auth(request)
        if refusal is not None:
            return refusal
        assert token is not None
        wanted_type = request.query.get("type")
        data = [
            msgspec.json.decode(subscription_json(sub, "enabled"))
            for session in self._sessions.counted_sessions()
            for sub in session.subscriptions.values()
            if sub.client_id == token.client_id
            and sub.user_id == token.user_id
            and (wanted_type is None or sub.type == wanted_type)
        ]
        try:
            start = int(request.query.get("after", "0"))
        except ValueError:
            return json_error(400, "invalid cursor", headers)
        end = start + self._config.list_page_size
        return web.json_response(
            {
                "data": data[start:end],
                "total": len(data),
                "total_cost": self._total_cost(token),
                "max_total_cost": self._config.max_total_cost,
                "pagination": {"cursor": str(end)} if end < len(data) else {},
            },
            headers=headers,
        )

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        self._stats.deletes += 1
        injected = await self._injected("delete")
        if injected is not None:
            return injected
        _token, refusal, headers = self._helix_auth(request)
        if refusal is not None:
            return refusal
        wanted = request.query.get("id", "")
        for session in self._sessions.counted_sessions():
            if wanted in session.subscriptions:
                del session.subscriptions[wanted]
                self._changed.set()
                return web.Response(status=204, headers=headers)
        return json_error(404, "subscription not found", headers)
