"""Sources: each reads Twitch and hands what it read to the records stage (`records/`).

`irc/` reads chat over Twitch IRC (the default); `eventsub/` over the EventSub
WebSocket; `common/` holds what both share — the `Source` protocol the service runs,
reconnect backoff, the event fields both fill — so that neither imports the other. A
source knows nothing of Kafka: the `RecordBuilder` makes its records and it hands them
to a `RecordSink`, and the sink knows nothing of sources.
"""
