"""The package's layers, read from the source with `ast`: no module imports upward or
sideways across them (`docs/architecture.md`, "The stages").

Every `import` counts, `TYPE_CHECKING` blocks and function bodies included, and relative
imports are resolved, so a rule cannot be dodged by where the import sits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.imports import imports_of

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "twitch_ingestion"
PACKAGE = "twitch_ingestion"

# (modules under this package, packages they must never import, why)
RULES = [
    ("sources.eventsub", ("sources.irc",), "what both sources share lives in sources.common"),
    ("sources.irc", ("sources.eventsub",), "what both sources share lives in sources.common"),
    ("sources.common", ("sources.irc", "sources.eventsub"), "shared by both, owned by neither"),
    (
        "records",
        ("sources", "kafka", "fleet", "service", "health", "cli"),
        "the records stage sits below the sources and the sink",
    ),
    ("kafka", ("sources", "fleet", "service"), "the sink knows no source"),
    (
        "buffer",
        ("kafka", "sources", "fleet", "config", "component_configs", "service", "health", "cli"),
        "the buffer is a component below the sink: it takes its own BufferConfig",
    ),
    # Settings → each component's config happens in component_configs alone; components
    # take their own config, so their signatures say what they depend on.
    *(
        (layer, ("component_configs", "config.Settings"), "a component takes its own config")
        for layer in (
            "records",
            "sources.eventsub",
            "sources.common",
            "sources.irc",
            "sources.token_guard",
            "kafka.producer_config",
            "kafka.producer",
            "kafka.sink",
            "buffer",
            "channel_flow",
            "health",
            "fleet",
        )
    ),
    *(
        (layer, ("component_configs",), "components do not reach back into the wiring")
        for layer in ("kafka", "sources", "records", "buffer")
    ),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, as absolute dotted names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_of(path.read_text(encoding="utf-8"), package)


def _modules_under(prefix: str) -> list[Path]:
    directory = PACKAGE_DIR.joinpath(*prefix.split("."))
    return sorted(directory.rglob("*.py")) if directory.is_dir() else [directory.with_suffix(".py")]


def _within(name: str, package: str) -> bool:
    full = f"{PACKAGE}.{package}"
    return name == full or name.startswith(full + ".")


@pytest.mark.parametrize(
    ("layer", "forbidden", "why"), RULES, ids=[f"{rule[0]}-{'+'.join(rule[1])}" for rule in RULES]
)
def test_no_module_imports_across_its_layer(
    layer: str, forbidden: tuple[str, ...], why: str
) -> None:
    modules = _modules_under(layer)
    assert modules, f"no modules under {layer}"
    crossing = sorted(
        f"{path.relative_to(PACKAGE_DIR)} imports {name}"
        for path in modules
        for name in _imports(path)
        if any(_within(name, package) for package in forbidden)
    )
    assert crossing == [], f"{layer} must not import {', '.join(forbidden)} ({why})"


def test_the_reader_sees_relative_and_type_checking_imports() -> None:
    """The rules' reader itself: an import hidden under `TYPE_CHECKING`, in a function or
    written relative is found (else the layer tests could pass on a blind reader)."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..irc import routing\n"
        "def f() -> None:\n"
        "    import twitch_ingestion.sources.irc.irc\n"
    )
    found = imports_of(source, "twitch_ingestion.sources.eventsub")
    assert "twitch_ingestion.sources.irc.routing" in found
    assert "twitch_ingestion.sources.irc.irc" in found
