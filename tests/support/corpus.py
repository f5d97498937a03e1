"""The shared Twitch IRC corpus: where it lives and how tests read it.

The corpus is not part of this repository: it sits next to the checkout, as
`<repo>/../shared/twitch-corpus` (`/work/shared` beside `/work/main` locally; CI clones the
repo with `shared/` as a sibling). This module is the one place that knows that path.
See `SOURCES.md` in that folder for provenance and caveats.

It is an extra conformance tier: 7,538 real captured lines with exact expected counts.
Where it is absent (a plain clone, an sdist) every test that reads it is skipped, with
one reason, `SHARED_CORPUS_SKIP_REASON`, and `tests/conftest.py` prints one line saying
so. The suite's own fixtures (`tests/fixtures/`, the simulator's bundled chat) always run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from twitch_ingestion.simulator import default_corpus_path

__all__ = [
    "CORPORA",
    "CORPORA_WITH_FIXTURE_FILE",
    "CORPUS_DIR",
    "EXCLUDED_LINES_PATH",
    "EXPECTED_FIELDS_PATH",
    "GENERATED_CHAT_FILE",
    "INDEX_PATH",
    "RAW_LINES_PATH",
    "SHARED_CORPUS",
    "SHARED_CORPUS_SKIP_REASON",
    "IndexRow",
    "excluded_lines",
    "expected_fields",
    "index_rows",
    "iter_raw_lines",
    "raw_lines",
    "shared_corpus_present",
]

REPO_DIR = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO_DIR.parent / "shared" / "twitch-corpus"
RAW_LINES_PATH = CORPUS_DIR / "raw-lines.txt"
INDEX_PATH = CORPUS_DIR / "raw-lines.index.tsv"
EXPECTED_FIELDS_PATH = CORPUS_DIR / "expected-fields.jsonl"
EXCLUDED_LINES_PATH = CORPUS_DIR / "excluded-lines.jsonl"

SHARED_CORPUS_SKIP_REASON = (
    f"shared real-capture corpus tier: {CORPUS_DIR} is not present (it is checked out "
    "as shared/twitch-corpus beside the repository)"
)


# What the simulator replays in the replay tests (`pytest.mark.parametrize` values).
SHARED_CORPUS = default_corpus_path()
GENERATED_CHAT_FILE = REPO_DIR / "tests" / "fixtures" / "twitch-irc" / "generated-chat.txt"
_BUNDLED = pytest.param(None, id="bundled")
_FIXTURE_FILE = pytest.param(GENERATED_CHAT_FILE, id="fixture-file")
_SHARED = pytest.param(
    SHARED_CORPUS,
    id="shared",
    marks=pytest.mark.skipif(not SHARED_CORPUS.exists(), reason=SHARED_CORPUS_SKIP_REASON),
)
# The simulator's bundled sample chat always; the shared real-capture corpus wherever it
# is checked out beside the repository.
CORPORA = [_BUNDLED, _SHARED]
# The same and a file of the suite's own, so replaying *a file* is tested on every checkout.
CORPORA_WITH_FIXTURE_FILE = [_BUNDLED, _FIXTURE_FILE, _SHARED]


def shared_corpus_present() -> bool:
    """True when every file of the shared corpus is there."""
    return all(
        path.is_file()
        for path in (RAW_LINES_PATH, INDEX_PATH, EXPECTED_FIELDS_PATH, EXCLUDED_LINES_PATH)
    )


class IndexRow(NamedTuple):
    """One row of `raw-lines.index.tsv`, describing the line with the same number."""

    line_no: int
    command: str
    subtype: str
    """`msg-id` for USERNOTICE/NOTICE; comma-separated feature flags for PRIVMSG."""
    tier: str
    sources: str
    notes: str
    """`;`-separated, e.g. `emote-index-anomaly:emote-range-out-of-bounds:25:40-44(len=44)`."""

    @property
    def features(self) -> frozenset[str]:
        return frozenset(self.subtype.split(",")) if self.subtype else frozenset()

    @property
    def emote_anomaly(self) -> str | None:
        """The anomaly kind (`emote-range-out-of-bounds`, …) when the line is flagged."""
        for note in self.notes.split(";"):
            if note.startswith("emote-index-anomaly:"):
                return note.split(":")[1]
        return None


def _require(path: Path) -> Path:
    """`path`, or skip the calling test: the shared tier runs only where it is present."""
    if not path.is_file():
        pytest.skip(SHARED_CORPUS_SKIP_REASON)
    return path


@functools.cache
def raw_lines() -> tuple[str, ...]:
    """All lines of `raw-lines.txt`, in file order (line N is `raw_lines()[N - 1]`)."""
    text = _require(RAW_LINES_PATH).read_text(encoding="utf-8")
    return tuple(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"))


def iter_raw_lines() -> Iterator[tuple[int, str]]:
    """`(line_no, line)` for every corpus line, 1-based like the index."""
    return enumerate(raw_lines(), start=1)


@functools.cache
def index_rows() -> tuple[IndexRow, ...]:
    """The index rows in line order (`index_rows()[N - 1]` describes line N)."""
    rows = []
    lines = _require(INDEX_PATH).read_text(encoding="utf-8").splitlines()
    for text in lines[1:]:  # the first line is the header
        line_no, command, subtype, tier, sources, notes = (text.split("\t") + [""] * 6)[:6]
        rows.append(IndexRow(int(line_no), command, subtype, tier, sources, notes))
    return tuple(rows)


def _jsonl(path: Path) -> tuple[dict[str, Any], ...]:
    with _require(path).open(encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines if line.strip())


@functools.cache
def expected_fields() -> tuple[dict[str, Any], ...]:
    """Records of `expected-fields.jsonl`: `raw`, `source`, `test`, `normalized`, …"""
    return _jsonl(EXPECTED_FIELDS_PATH)


@functools.cache
def excluded_lines() -> tuple[dict[str, Any], ...]:
    """Records of `excluded-lines.jsonl`: `raw`, `reasons`, `sources`."""
    return _jsonl(EXCLUDED_LINES_PATH)
