"""The test suite's own layout, read from its source with `ast`.

- No test module imports another test module. What tests share lives in `tests/support/`
  (or in a tier's non-test modules, such as `tests/integration/service_process.py`).
  Importing a `test_*` module runs its module level again under another name, makes
  pytest collect its tests twice wherever a test function is imported, and hides a helper
  where nobody looks for one. Every `import` counts, function bodies included, and
  relative imports are resolved.
- `tests/unit/` opens no socket and does not sleep: a test that starts the simulator or
  the health server, dials TCP or waits on the clock belongs in `tests/component/`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.imports import imports_of

TESTS_DIR = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(TESTS_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _test_modules_imported(source: str, package: str) -> set[str]:
    """The `test_*` modules of the suite that `source` imports."""
    return {
        name
        for name in imports_of(source, package)
        if name.startswith("tests.") and name.rpartition(".")[2].startswith("test_")
    }


def test_no_test_module_imports_another_test_module() -> None:
    modules = sorted(TESTS_DIR.rglob("*.py"))
    assert len(modules) > 50, f"too few test modules found under {TESTS_DIR}"
    offending = sorted(
        f"{path.relative_to(TESTS_DIR)} imports {name}"
        for path in modules
        for name in _test_modules_imported(
            path.read_text(encoding="utf-8"), _module_name(path).rpartition(".")[0]
        )
    )
    assert offending == [], "move what they share to tests/support/"


def test_the_reader_sees_relative_and_nested_imports_of_test_modules() -> None:
    """The rule's reader itself: a test module imported relatively, by `from package import`
    or inside a function is found, and a support module is not (else the rule could pass
    on a blind reader, or fail on every helper)."""
    source = (
        "from .test_pool import settings\n"
        "from tests.unit import test_buffer\n"
        "from tests.support.waiting import eventually\n"
        "def f() -> None:\n"
        "    from tests.unit.test_privmsg import tagged\n"
    )
    assert _test_modules_imported(source, "tests.component") == {
        "tests.component.test_pool",
        "tests.unit.test_buffer",
        "tests.unit.test_privmsg",
    }


# What a unit test must not call: servers and clients over real sockets, and the clock.
_SOCKET_CALLS = frozenset(
    {
        "asyncio.open_connection",
        "asyncio.start_server",
        "socket.socket",
        "socket.create_connection",
        "urllib.request.urlopen",
        "SimulatorThread",
        "TwitchSimulator",
        "EventSubSimulator",
        "EventSubSimulatorThread",
        "HealthServer",
    }
)
_SLEEP_CALLS = frozenset({"time.sleep", "asyncio.sleep"})


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _sockets_and_sleeps(source: str) -> list[str]:
    """`line: call` for every socket opened and every sleep longer than a yield
    (`asyncio.sleep(0)` only lets other tasks run)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        yields = (
            name == "asyncio.sleep"
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == 0
        )
        if name in _SOCKET_CALLS or (name in _SLEEP_CALLS and not yields):
            found.append((node.lineno, name))
    return [f"{line}: {name}" for line, name in sorted(found)]


@pytest.mark.parametrize(
    "path",
    sorted((TESTS_DIR / "unit").glob("*.py")),
    ids=lambda path: path.name,
)
def test_unit_tests_open_no_sockets_and_do_not_sleep(path: Path) -> None:
    found = _sockets_and_sleeps(path.read_text(encoding="utf-8"))
    assert found == [], f"{path.name}: move these tests to tests/component/"


def test_the_reader_sees_sockets_and_sleeps_but_not_a_yield() -> None:
    source = (
        "import asyncio, time\n"
        "async def f() -> None:\n"
        "    await asyncio.sleep(0)\n"
        "    await asyncio.sleep(0.01)\n"
        "    time.sleep(1)\n"
        "    await asyncio.open_connection('127.0.0.1', 1)\n"
        "    with SimulatorThread() as sim:\n"
        "        pass\n"
    )
    assert _sockets_and_sleeps(source) == [
        "4: asyncio.sleep",
        "5: time.sleep",
        "6: asyncio.open_connection",
        "7: SimulatorThread",
    ]
