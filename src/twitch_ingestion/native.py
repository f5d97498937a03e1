"""The compiled extension (`native/`, Rust + PyO3) and the `HOT_PATH` setting that picks it.

`make install` builds `twitch_ingestion_native` when cargo is present. Its parts each
replace one pure-Python step that stays the reference and the fallback:

* the IRC source's read and chat encoding (`sources/irc/compiled.py`);
* the disk buffer's record framing (`compiled_record_framer`, used by
  `buffer/segment_log.FrameEncoder`).

`HOT_PATH` picks: `auto` (compiled when the extension imports, else Python), `compiled`
(refuse to start without it), `python` (never use it: the reference, or a way out if
the extension ever misbehaved).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Annotated, Literal, Protocol

from pydantic import AfterValidator

__all__ = [
    "EXTENSION_MODULE",
    "HotPath",
    "HotPathChoice",
    "RecordFramer",
    "compiled_extension",
    "compiled_record_framer",
    "extension_available",
]

EXTENSION_MODULE = "twitch_ingestion_native"
"""The compiled extension's import name (`native/`, a separate package built by maturin)."""

HotPathChoice = Literal["auto", "compiled", "python"]


def _extension() -> ModuleType | None:
    try:
        return importlib.import_module(EXTENSION_MODULE)
    except ImportError:
        return None


def extension_available() -> bool:
    """Whether the compiled extension imports on this machine."""
    return _extension() is not None


def compiled_extension(choice: HotPathChoice) -> ModuleType | None:
    """The extension `choice` asks for, or None for the pure-Python path.

    Raises RuntimeError for `compiled` without the extension (settings validation
    normally reports that first, as one line).
    """
    if choice == "python":
        return None
    module = _extension()
    if module is None and choice == "compiled":
        raise RuntimeError(f"HOT_PATH=compiled but {EXTENSION_MODULE} is not installed")
    return module


def _require_extension(choice: HotPathChoice) -> HotPathChoice:
    if choice == "compiled" and not extension_available():
        raise ValueError(
            f"HOT_PATH=compiled but the compiled extension ({EXTENSION_MODULE}) is not "
            "installed: run `make install` on a machine with cargo, or set HOT_PATH=auto"
        )
    return choice


HotPath = Annotated[HotPathChoice, AfterValidator(_require_extension)]
"""The `HOT_PATH` setting's type: `compiled` fails validation without the extension."""


class RecordFramer(Protocol):
    """The extension's `frame_records`: a batch's record frames, or None (Python frames it)."""

    def __call__(
        self, records: Sequence[object], first_seq: int, topic_ids: dict[str, int], /
    ) -> tuple[list[bytes], int] | None: ...


def compiled_record_framer(choice: HotPathChoice) -> RecordFramer | None:
    """The compiled record framer for the disk buffer, or None for the Python one."""
    module = compiled_extension(choice)
    if module is None:
        return None
    framer: RecordFramer = module.frame_records
    return framer
