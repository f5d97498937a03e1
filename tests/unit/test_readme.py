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
