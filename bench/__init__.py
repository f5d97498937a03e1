"""Benchmarks of the ingestion service: `python -m bench` (`make bench`) runs them all.

Each benchmark is one module with `NAME`, `add_arguments(parser)` and `run(args)`:

- `parse`: parse_line / + route_message / + JSON encode over the real corpus, one core.
- `throughput`: simulator firehose → `twitch-ingestion run` (subprocess) → local broker.
- `latency`: simulator write → broker append time, at fixed offered rates.
- `scale`: 1,000 joined channels over 20 connections: RSS and CPU, idle and at 5k msg/s.

They print figures next to the targets, write `bench/results/<name>.json` and never
assert a time: a slow figure is information, not a failure. See `bench/README.md`.
"""
