"""The README stays true: every setting is in its table, every target it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from twitch_ingestion.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_has_a_row_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    settings = {name.upper() for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from the README table"
    assert documented - settings == set(), "README documents settings that do not exist"


def test_every_make_target_in_the_readme_exists() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    for target in set(re.findall(r"`make ([a-z-]+)`", README)):
        assert target in targets, f"README mentions make {target}, which the Makefile lacks"


def test_env_example_uses_the_seed_names() -> None:
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    for name in (
        "TWITCH_CHANNEL",
        "TWITCH_USERNAME",
        "TWITCH_OAUTH_TOKEN",
        "KAFKA_BROKERS",
        "KAFKA_TOPIC_CHAT_MESSAGES",
        "KAFKA_CLIENT_ID",
        "LOG_LEVEL",
    ):
        assert re.search(rf"^{name}=", example, flags=re.MULTILINE), name


def test_the_readme_says_how_to_stop_the_broker_that_make_started() -> None:
    assert "`make broker-stop`" in README.split("### Other targets")[0]


def test_every_pointer_to_a_readme_section_names_one_that_exists() -> None:
    headings = [line.lstrip("#").strip() for line in README.splitlines() if line.startswith("#")]
    sources = [REPO_ROOT / "Makefile", REPO_ROOT / ".env.example", REPO_ROOT / "Dockerfile"]
    sources += sorted((REPO_ROOT / "src").rglob("*.py")) + sorted((REPO_ROOT / "scripts").glob("*"))
    pointers: list[tuple[str, str]] = []
    for path in sources:
        if not path.is_file():
            continue
        text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
        for pattern in (r"README(?:'s|:) \"([^\"]+)\"", r"README: ([A-Z][A-Za-z ]+)\)"):
            pointers += [(path.name, name) for name in re.findall(pattern, text)]
    assert pointers, "no pointer found: the patterns no longer match how the code points"
    for where, name in pointers:
        assert any(h.startswith(name) for h in headings), f"{where} points to README {name!r}"
