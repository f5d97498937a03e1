"""`@pytest.mark.compiled` tests: skipped without the extension, failed under REQUIRE_COMPILED.

CI sets `REQUIRE_COMPILED=1` (`.ci/run`), so a build that silently left the extension out
turns the differential suite red instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twitch_ingestion.native import EXTENSION_MODULE

REPO_ROOT = Path(__file__).resolve().parents[2]
# Any one test of the differential suite: what matters is the marker it carries.
A_COMPILED_TEST = (
    "tests/unit/test_frame_differential.py::test_batches_of_another_shape_are_left_to_python"
)


def _run_without_the_extension(tmp_path: Path, require_compiled: str) -> tuple[int, str]:
    """The test above in a fresh pytest where the extension does not import."""
    (tmp_path / "hide_extension.py").write_text(
        f"import sys\nsys.modules[{EXTENSION_MODULE!r}] = None\n", encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "REQUIRE_COMPILED": require_compiled}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "hide_extension", "-p", "no:cacheprovider",
         A_COMPILED_TEST],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout


def test_without_the_extension_a_compiled_test_is_skipped_with_one_line(tmp_path: Path) -> None:
    returncode, output = _run_without_the_extension(tmp_path, "")
    assert returncode == 0, output
    assert "1 skipped" in output
    said = [line for line in output.splitlines() if "REQUIRE_COMPILED=1 makes" in line]
    assert len(said) == 1, output
    assert said[0].startswith("1 tests skipped: compiled extension")


def test_under_require_compiled_a_missing_extension_fails_the_run(tmp_path: Path) -> None:
    returncode, output = _run_without_the_extension(tmp_path, "1")
    assert returncode != 0, output
    assert "1 error" in output
    assert "REQUIRE_COMPILED is set but the compiled extension" in output
