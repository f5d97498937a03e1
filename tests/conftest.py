"""Suite-wide hooks: one line about the shared corpus tier when it did not run."""

from __future__ import annotations

import pytest

from tests.corpus import SHARED_CORPUS_SKIP_REASON


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say once, even under `-q`, that the real-capture tier was skipped and why.

    Without this a plain clone's run only shows "N skipped", which reads the same as a
    test that was switched off for good.
    """
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if SHARED_CORPUS_SKIP_REASON in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: {SHARED_CORPUS_SKIP_REASON}; "
            "the project's own fixtures (tests/fixtures/, the bundled sample chat) ran."
        )
