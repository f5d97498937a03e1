"""What a Python module imports, read with `ast`: the one reader behind the package's layer
rules (`tests/unit/test_import_graph.py`) and the suite's layout rules
(`tests/unit/test_test_layout.py`)."""

from __future__ import annotations

import ast

__all__ = ["imports_of"]


def imports_of(source: str, package: str) -> set[str]:
    """Every module `source` (a module of `package`) imports, as absolute dotted names.

    Every `import` counts, `TYPE_CHECKING` blocks and function bodies included, and
    relative imports are resolved, so a rule cannot be dodged by where the import sits.
    `from pkg import name` counts both `pkg` and `pkg.name` (which may be a module).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found
