"""BUFFER_MODE → the buffer: `buffer_from_config`."""

from __future__ import annotations

from twitch_ingestion.buffer.config import BufferConfig, BufferMode
from twitch_ingestion.buffer.disk import DiskBuffer
from twitch_ingestion.buffer.memory import MemoryBuffer

__all__ = ["buffer_from_config"]


def buffer_from_config(config: BufferConfig) -> DiskBuffer | MemoryBuffer:
    """The buffer BUFFER_MODE asks for, not yet opened."""
    if config.mode is BufferMode.MEMORY:
        return MemoryBuffer.from_config(config)
    return DiskBuffer.from_config(config)
