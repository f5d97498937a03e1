"""twitch-ingestion: Twitch chat → Apache Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twitch-ingestion")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "unknown"
