"""Twitch EventSub over WebSocket: the second chat source, sans-I/O.

Every module here is pure code — JSON in, typed values out, the time passed in — in the
manner of h11/wsproto, so each protocol edge case is a unit test without a socket:

- `messages`: WebSocket text frames → typed messages (or why a frame is unusable).
- `session`: the connection state machine: welcome, keepalive watchdog, reconnects,
  revocations, close codes, de-duplication by `message_id`.
- `records`: chat notifications → the same `ChatMessage` / event records as IRC.
- `tokens`: what a `/validate` or `/token` answer means and when to ask again.
- `helix`: Helix requests (users, subscriptions), their answers, rate limits, and how
  channels are spread over connections.
- `http_messages`: the request/response values `tokens` and `helix` exchange with the
  I/O shell (secrets redacted from their `repr`).

The asyncio shell that owns sockets and clocks is not part of this package yet.
"""
