"""twitch-ingestion: Twitch chat → Apache Kafka."""

# The one place the version is written: packaging reads it (pyproject.toml, dynamic),
# `twitch-ingestion --version` prints it, and CHANGELOG.md's newest release names it.
__version__ = "0.1.0"
