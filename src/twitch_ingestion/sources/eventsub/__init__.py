"""Twitch EventSub over WebSocket: the second chat source, sans-I/O.

Every module here is pure code — JSON in, typed values out, the time passed in — in the
manner of h11/wsproto, so each protocol edge case is a unit test without a socket:

- `messages`: WebSocket text frames → typed messages (or why a frame is unusable).
- `session`: the connection state machine (one transition table): welcome, keepalive
  watchdog, reconnects, revocations, close codes, de-duplication by `message_id`.
- `reconciler`: the subscriptions a connection should hold against what Twitch
  confirmed; which failures are temporary (retried until they work) or permanent.
- `records`: chat notifications → the same `ChatMessage` / event records as IRC.
- `tokens`: what a `/validate` or `/token` answer means and when to ask again.
- `helix`: Helix requests (users, subscriptions), their answers, rate limits, and how
  channels are spread over connections.
- `http_messages`: the request/response values `tokens` and `helix` exchange with the
  I/O shell (secrets redacted from their `repr`).

The asyncio shell that owns sockets and clocks sits beside them, thin:

- `auth`: `TokenKeeper`, the validate/refresh loop around `tokens`.
- `client`: `EventSubClient` (aiohttp WebSocket and HTTP): which channels are read on
  which connection, what is reported about them; carries out what `session`, `reconciler`
  and `helix` decide and hands records to an output (`output`), configured by `config`.
- `connection`: one WebSocket connection — its driver, socket readers, Helix calls.
- `helix_calls`: Helix calls with the token, inside the rate limit.
"""
