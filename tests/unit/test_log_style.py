"""One log event style across src/ (docs/architecture.md, "Logs"): every log call names
its event with a constant of lowercase words separated by spaces — what happened, the
component first — and puts everything that varies in fields.

Found with `ast`, not grep: a call `<logger>.<level>(…)` where the receiver is a logger
(`log`, `logger`) or a throttled one (`*_errors`, `*_throttled`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "twitch_ingestion"
LEVELS = frozenset({"debug", "info", "warning", "warn", "error", "critical", "exception", "msg"})
LOGGER = re.compile(r"^_?(?:log|logger)$")
THROTTLED = re.compile(r"^_?\w*(?:errors|throttled)$")
# Words of lowercase letters and digits, hyphenated inside a word (hand-over), one space
# between words; no punctuation, no capitals, nothing interpolated.
EVENT = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*(?: [a-z0-9]+(?:-[a-z0-9]+)*)*$")


def _receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def log_calls() -> list[tuple[str, ast.Call, bool]]:
    """(where, call, throttled) for every log call in src/."""
    found: list[tuple[str, ast.Call, bool]] = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in LEVELS:
                continue
            name = _receiver_name(node.func.value)
            if name is None:
                continue
            throttled = bool(THROTTLED.match(name))
            if throttled or LOGGER.match(name):
                where = f"{path.relative_to(SRC.parent)}:{node.lineno}"
                found.append((where, node, throttled))
    return found


CALLS = log_calls()


def test_the_walk_finds_the_log_calls() -> None:
    # A guard for the guard: if loggers were renamed, this test would check nothing.
    assert len(CALLS) > 100
    assert any(throttled for _, _, throttled in CALLS)


@pytest.mark.parametrize(("where", "call", "throttled"), CALLS, ids=[c[0] for c in CALLS])
def test_every_log_event_is_a_constant_of_lowercase_words(
    where: str, call: ast.Call, throttled: bool
) -> None:
    assert call.args, f"{where}: no event"
    event = call.args[0]
    name = event.value if isinstance(event, ast.Constant) else None
    assert isinstance(name, str), f"{where}: the event must be a constant, not {ast.unparse(event)}"
    assert EVENT.match(name), f"{where}: {name!r} is not lowercase words"
    # One hyphenated token alone is kebab-case (`eventsub-reconnect`), not words.
    assert " " in name or "-" not in name, f"{where}: {name!r} is kebab-case, not words"
    # What varies goes in fields: no %-style arguments (a throttled logger's second
    # argument is its throttling key).
    assert len(call.args) == (2 if throttled else 1), f"{where}: positional arguments"
