"""Sources: each turns what it reads from Twitch into records (`twitch_ingestion.records`).

`irc/` reads chat over Twitch IRC (the default); `eventsub/` holds the EventSub WebSocket
source's sans-I/O core and shell. A source knows nothing of Kafka: it hands records to a
`RecordSink`, and the sink knows nothing of sources.
"""
