"""A Twitch IRC server for tests, demos and benchmarks.

- `TwitchSimulator`: the asyncio server (`async with TwitchSimulator(cfg) as sim`).
- `SimulatorThread`: the same on a background loop, for synchronous tests.
- `SimulatorConfig` / `ChannelBehaviour`: settings; `SimulatorStats`: what happened.
- `cli`: `twitch-ingestion simulate` (also `python -m twitch_ingestion.simulator`).
- `sample_chat_lines()` / `bundled_corpus()`: the generated chat a replay sends when it
  is given no file (every event kind; no file outside the package needed).
- `server_tls_context()`: serve TLS (`SimulatorConfig(ssl_context=…)`).

In an async test::

    async with TwitchSimulator(SimulatorConfig(valid_tokens=frozenset({"tok"}))) as sim:
        ...  # point the client at 127.0.0.1:sim.port, plain TCP
        await sim.wait_for_joined(["forsen"], timeout=5)
        await sim.start_numbered(["forsen"], rate=1000, count=500).wait(timeout=10)
        sim.send_reconnect(close_after_s=2.0)
        assert sim.stats.sent_while_unjoined.get("forsen", 0) == 0

From a synchronous test (e.g. one that runs the service as a subprocess), the same calls
on `SimulatorThread` block until done; `stats()` returns a snapshot.
"""

from twitch_ingestion.simulator.config import (
    ChannelBehaviour,
    SimulatorConfig,
    server_tls_context,
)
from twitch_ingestion.simulator.replay import (
    BUNDLED_CORPUS_NAME,
    DEFAULT_REPLAY_COMMANDS,
    CorpusFileError,
    bundled_corpus,
    default_corpus_path,
    load_corpus,
)
from twitch_ingestion.simulator.sample import sample_chat_lines
from twitch_ingestion.simulator.server import TwitchSimulator
from twitch_ingestion.simulator.stats import ConnectionStats, SimulatorStats, StreamStats
from twitch_ingestion.simulator.streams import NUMBERED_SENDER, StreamHandle
from twitch_ingestion.simulator.thread import SimulatorThread, ThreadStreamHandle

__all__ = [
    "BUNDLED_CORPUS_NAME",
    "DEFAULT_REPLAY_COMMANDS",
    "NUMBERED_SENDER",
    "ChannelBehaviour",
    "ConnectionStats",
    "CorpusFileError",
    "SimulatorConfig",
    "SimulatorStats",
    "SimulatorThread",
    "StreamHandle",
    "StreamStats",
    "ThreadStreamHandle",
    "TwitchSimulator",
    "bundled_corpus",
    "default_corpus_path",
    "load_corpus",
    "sample_chat_lines",
    "server_tls_context",
]
