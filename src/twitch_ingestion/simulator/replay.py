"""Twitch lines, from a file or the bundled sample chat, turned into templates that can
be re-sent fast.

Each line is split once, at load time, around the values a replay may rewrite (the
channel, `room-id`, `tmi-sent-ts`, `id`, `target-msg-id`), so sending it again is one
`str.join` rather than a parse and a re-serialisation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from twitch_ingestion.simulator.wire import derived_uuid

__all__ = [
    "BUNDLED_CORPUS_NAME",
    "DEFAULT_REPLAY_COMMANDS",
    "Corpus",
    "CorpusFileError",
    "CorpusLine",
    "bundled_corpus",
    "default_corpus_path",
    "load_corpus",
    "serial_uuid",
]

# The commands a chat consumer cares about; NOTICE/USERSTATE/JOIN/PART lines of the
# corpus are answers to some other client's actions and would confuse a replay.
DEFAULT_REPLAY_COMMANDS = frozenset({"PRIVMSG", "USERNOTICE", "CLEARCHAT", "CLEARMSG", "ROOMSTATE"})

# Slot kinds: indexes into the value tuple given to `CorpusLine.render`.
CHANNEL, ROOM_ID, SENT_TS, MESSAGE_ID, TARGET_MESSAGE_ID = range(5)
_TAG_SLOTS = {
    "room-id": ROOM_ID,
    "tmi-sent-ts": SENT_TS,
    "id": MESSAGE_ID,
    "target-msg-id": TARGET_MESSAGE_ID,
}


BUNDLED_CORPUS_NAME = "the bundled sample chat"


class CorpusFileError(ValueError):
    """A replay file that cannot be used; the message names the file and the problem."""


def default_corpus_path() -> Path:
    """`<repo>/../shared/twitch-corpus/raw-lines.txt`: the shared real-capture corpus.

    Only present beside a checkout that has it; replays default to `bundled_corpus()`.
    """
    repo_root = Path(__file__).resolve().parents[3]
    return repo_root.parent / "shared" / "twitch-corpus" / "raw-lines.txt"


_SERIAL_MASK = (1 << 48) - 1


def serial_uuid(original_id: str, serial: int) -> str:
    """`original_id` with its last 12 hex digits replaced by `serial`.

    Cheap (no hashing) and unique: lines keep their own random 20-digit prefix and a
    serial is never reused within a file, so two sends never share an id. Non-UUID ids
    (none in the corpus) fall back to a hash.
    """
    if len(original_id) == 36 and original_id[23] == "-":
        return f"{original_id[:24]}{serial & _SERIAL_MASK:012x}"
    return derived_uuid(original_id, serial)


_Values = tuple[str, str, str, str, str]


def _make_renderer(pieces: tuple[str, ...], kinds: tuple[int, ...]) -> Callable[[_Values], str]:
    """A closure that fills this line's slots. One join of a tuple literal per line is
    about three times faster than a generic loop over the slots, and a replay renders
    every line it sends."""
    if len(kinds) == 1:
        p0, p1 = pieces
        (k0,) = kinds
        return lambda v: "".join((p0, v[k0], p1))
    if len(kinds) == 2:
        p0, p1, p2 = pieces
        k0, k1 = kinds
        return lambda v: "".join((p0, v[k0], p1, v[k1], p2))
    if len(kinds) == 3:
        p0, p1, p2, p3 = pieces
        k0, k1, k2 = kinds
        return lambda v: "".join((p0, v[k0], p1, v[k1], p2, v[k2], p3))
    if len(kinds) == 4:
        p0, p1, p2, p3, p4 = pieces
        k0, k1, k2, k3 = kinds
        return lambda v: "".join((p0, v[k0], p1, v[k1], p2, v[k2], p3, v[k3], p4))

    def render_any(values: _Values) -> str:
        out = [pieces[0]]
        for i, kind in enumerate(kinds, 1):
            out.append(values[kind])
            out.append(pieces[i])
        return "".join(out)

    return render_any


@dataclass(frozen=True, slots=True)
class CorpusLine:
    """One channel-bearing line of the file, ready to render with new values."""

    line_no: int
    command: str
    channel: str
    """Original channel as written (without `#`)."""
    raw: str
    pieces: tuple[str, ...]
    """Literal text around the slots, CRLF appended; `len(pieces) == len(kinds) + 1`."""
    kinds: tuple[int, ...]
    """Slot kinds (CHANNEL, ROOM_ID, …) in line order."""
    originals: _Values
    """Original value per slot kind; empty where the line has no such slot."""
    channel_login: str
    """`channel` in lower case."""
    render: Callable[[_Values], str]
    """`render(values)`: the wire line (with CRLF) with each slot set to `values[kind]`;
    a closure specialised for this line's slot count."""
    id_occurrence: int = 0
    """0 for the first line of the file with this `id`, 1 for the next, …"""
    target_line_no: int = 0
    """For CLEARMSG: line number of the first line whose `id` is this `target-msg-id`
    (0 when the target is not in the file)."""

    @property
    def message_id(self) -> str | None:
        return self.originals[MESSAGE_ID] or None


@dataclass(frozen=True, slots=True)
class Corpus:
    path: Path | None
    """The file read, or None for the bundled sample chat."""
    lines: tuple[CorpusLine, ...]
    """Every channel-bearing line, in file order."""
    total_lines: int
    """Non-empty lines in the file, channel-bearing or not."""
    line_span: int
    """One more than the last line number: the stride of derived-id serials per pass."""

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else BUNDLED_CORPUS_NAME

    def select(self, commands: Collection[str] | None) -> tuple[CorpusLine, ...]:
        """Lines whose command is in `commands` (None: every channel-bearing line)."""
        if commands is None:
            return self.lines
        wanted = {c.upper() for c in commands}
        return tuple(line for line in self.lines if line.command in wanted)

    def count_by_command(self, commands: Collection[str] | None = None) -> dict[str, int]:
        return dict(Counter(line.command for line in self.select(commands)))


def _tag_value_spans(raw: str, tags_end: int) -> Iterator[tuple[int, int, int]]:
    """(slot kind, start, end) of every rewritable tag value in `raw[1:tags_end]`."""
    offset = 1
    for item in raw[1:tags_end].split(";"):
        key, equals, _ = item.partition("=")
        kind = _TAG_SLOTS.get(key)
        if kind is not None and equals:
            yield kind, offset + len(key) + 1, offset + len(item)
        offset += len(item) + 1


def _parse_corpus_line(line_no: int, raw: str) -> CorpusLine | None:
    """A template for `raw` when it is a channel-bearing command, else None."""
    spans: list[tuple[int, int, int]] = []
    pos = 0
    if raw.startswith("@"):
        tags_end = raw.find(" ")
        if tags_end < 0:
            return None
        spans.extend(_tag_value_spans(raw, tags_end))
        pos = tags_end + 1
    while raw.startswith(" ", pos):
        pos += 1
    if raw.startswith(":", pos):
        pos = raw.find(" ", pos)
        if pos < 0:
            return None
        pos += 1
    command_end = raw.find(" ", pos)
    if command_end < 0:
        return None
    command = raw[pos:command_end].upper()
    channel_start = command_end + 1
    if not raw.startswith("#", channel_start):
        return None
    channel_end = raw.find(" ", channel_start)
    if channel_end < 0:
        channel_end = len(raw)
    if channel_end - channel_start < 2:
        return None
    spans.append((CHANNEL, channel_start + 1, channel_end))
    spans.sort(key=lambda span: span[1])
    pieces: list[str] = []
    kinds: list[int] = []
    originals = ["", "", "", "", ""]
    cursor = 0
    for kind, start, end in spans:
        pieces.append(raw[cursor:start])
        kinds.append(kind)
        originals[kind] = raw[start:end]
        cursor = end
    pieces.append(raw[cursor:] + "\r\n")
    channel = raw[channel_start + 1 : channel_end]
    return CorpusLine(
        line_no=line_no,
        command=command,
        channel=channel,
        raw=raw,
        pieces=tuple(pieces),
        kinds=tuple(kinds),
        originals=(originals[0], originals[1], originals[2], originals[3], originals[4]),
        channel_login=channel.lower(),
        render=_make_renderer(tuple(pieces), tuple(kinds)),
    )


def _build_corpus(numbered_lines: Iterable[tuple[int, str]], path: Path | None) -> Corpus:
    parsed_lines: list[CorpusLine] = []
    total = 0
    last_line_no = 0
    for line_no, text in numbered_lines:
        last_line_no = line_no
        raw = text.rstrip("\r\n")
        if not raw:
            continue
        total += 1
        parsed = _parse_corpus_line(line_no, raw)
        if parsed is not None:
            parsed_lines.append(parsed)
    # Second pass: number repeated ids, and point CLEARMSGs at the line they delete.
    first_line_of_id: dict[str, int] = {}
    occurrences: Counter[str] = Counter()
    lines: list[CorpusLine] = []
    for line in parsed_lines:
        message_id = line.originals[MESSAGE_ID]
        if message_id:
            first_line_of_id.setdefault(message_id, line.line_no)
    for line in parsed_lines:
        message_id = line.originals[MESSAGE_ID]
        occurrence = 0
        if message_id:
            occurrence = occurrences[message_id]
            occurrences[message_id] += 1
        target_line_no = first_line_of_id.get(line.originals[TARGET_MESSAGE_ID], 0)
        if occurrence or target_line_no:
            line = dataclasses.replace(
                line, id_occurrence=occurrence, target_line_no=target_line_no
            )
        lines.append(line)
    return Corpus(path=path, lines=tuple(lines), total_lines=total, line_span=last_line_no + 1)


@functools.lru_cache(maxsize=8)
def _load_corpus_cached(path: Path, mtime_ns: int) -> Corpus:
    del mtime_ns  # part of the cache key only: an edited file is read again
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return _build_corpus(enumerate(handle, 1), path)
    except UnicodeDecodeError as exc:
        raise CorpusFileError(
            f"replay file {path} is not UTF-8 text (byte {exc.start}); "
            "expected raw IRC lines, one per line"
        ) from None


@functools.cache
def bundled_corpus() -> Corpus:
    """The sample chat shipped with the package (`sample.py`): every event kind, no file."""
    from twitch_ingestion.simulator.sample import sample_chat_lines

    return _build_corpus(enumerate(sample_chat_lines(), 1), None)


def load_corpus(path: Path | str | None = None) -> Corpus:
    """Read a file of raw server lines (one per line); cached per path and mtime.

    None: the bundled sample chat. A missing, unreadable or non-text file raises
    `CorpusFileError` with one line saying which and why.
    """
    if path is None:
        return bundled_corpus()
    resolved = Path(path)
    try:
        mtime_ns = resolved.stat().st_mtime_ns
        if not resolved.is_file():
            raise CorpusFileError(f"replay file {resolved} is not a file")
        return _load_corpus_cached(resolved.resolve(), mtime_ns)
    except FileNotFoundError:
        raise CorpusFileError(
            f"replay file {resolved} does not exist; give a file of raw IRC lines "
            "(one per line), or none for the bundled sample chat"
        ) from None
    except OSError as exc:
        raise CorpusFileError(
            f"cannot read replay file {resolved}: {exc.strerror or exc}"
        ) from None
