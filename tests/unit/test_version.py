"""The version is written once, and the changelog's newest release names it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from twitch_ingestion import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_packaging_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "twitch_ingestion.__version__"
    }
    assert version("twitch-ingestion") == __version__  # what `pip show` reports


def test_the_changelog_keeps_unreleased_first_and_its_newest_release_is_the_version() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, re.M)
    assert headings[0] == ("Unreleased", "")
    newest, released_on = headings[1]
    assert newest == __version__
    assert released_on, "a release heading carries its date"
