"""What every source shares, so that no source imports another.

- `source`: the `Source` protocol the service runs, and `SourceStopped`, the reason a
  source gives when it ends for good (the service turns it into an exit code).
- `backoff`: reconnect delays (IRC connections, EventSub WebSockets).
- `fields`: the fields every chat event struct has, and the `/me` unwrapping.
- `notices`: Twitch's anonymous gifter, which both sources name the same.

Where records go (topics, keys, dead letters) is not here but in the records stage
(`twitch_ingestion.records`), which both sources hand their events to.
"""
