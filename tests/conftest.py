"""Suite-wide hooks: the compiled-extension marker, and one line per tier that did not run."""

from __future__ import annotations

import os

import pytest

from tests.support.corpus import SHARED_CORPUS_SKIP_REASON
from twitch_ingestion.native import EXTENSION_MODULE, extension_available

COMPILED_SKIP_REASON = (
    f"compiled extension ({EXTENSION_MODULE}) not built: `make install` found no cargo"
)


def _compiled_required() -> bool:
    """`REQUIRE_COMPILED=1` (CI): a test that needs the extension fails without it."""
    return os.environ.get("REQUIRE_COMPILED", "") not in ("", "0")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.compiled` tests skip without the extension, or fail when it is required.

    Without this, a CI whose build silently skipped the extension would be green with no
    differential test run at all.
    """
    if item.get_closest_marker("compiled") is None or extension_available():
        return
    if _compiled_required():
        pytest.fail(f"REQUIRE_COMPILED is set but the {COMPILED_SKIP_REASON}", pytrace=False)
    pytest.skip(COMPILED_SKIP_REASON)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say once, even under `-q`, which tiers were skipped and why.

    Without this a plain clone's run only shows "N skipped", which reads the same as a
    test that was switched off for good.
    """
    skipped = [
        str(getattr(report, "longrepr", "")) for report in terminalreporter.stats.get("skipped", [])
    ]
    corpus = sum(SHARED_CORPUS_SKIP_REASON in reason for reason in skipped)
    if corpus:
        terminalreporter.write_line(
            f"{corpus} tests skipped: {SHARED_CORPUS_SKIP_REASON}; "
            "the project's own fixtures (tests/fixtures/, the bundled sample chat) ran."
        )
    compiled = sum(COMPILED_SKIP_REASON in reason for reason in skipped)
    if compiled:
        terminalreporter.write_line(
            f"{compiled} tests skipped: {COMPILED_SKIP_REASON}; the pure-Python path ran "
            "(REQUIRE_COMPILED=1 makes this an error)."
        )
