"""Settings: the seed's names and defaults, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from twitch_ingestion.config import ConfigError, LogFormat, Settings, load_settings

TOKEN = "oauth:abcdefghijklmnopqrstuvwxyz0123"

_ALL_VARS = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable from the developer's shell and no .env file leaks into a case."""
    for name in _ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_seed_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "somechannel")
    settings = load_settings()
    assert settings.kafka_brokers == "localhost:9092"
    assert settings.kafka_topic_chat_messages == "twitch-chat-messages"
    assert settings.kafka_client_id == "twitch-ingestion-service"
    assert settings.log_level == "info"
    assert settings.kafka_acks == "all"
    assert settings.kafka_retries == 5
    assert settings.kafka_batch_size == 32768
    assert settings.kafka_linger_ms == 10
    assert (settings.twitch_irc_host, settings.twitch_irc_port) == ("irc.chat.twitch.tv", 6697)
    assert settings.twitch_irc_tls is True
    assert (settings.twitch_reconnect_base_s, settings.twitch_reconnect_max_s) == (1.0, 60.0)


def test_channel_list_is_split_normalised_and_deduplicated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", " #Forsen, xqcow ,forsen,,")
    assert load_settings().twitch_channel == ["forsen", "xqcow"]


def test_no_credentials_means_anonymous_justinfan_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "a")
    settings = load_settings()
    assert settings.is_anonymous
    assert settings.twitch_login.startswith("justinfan")
    assert settings.twitch_login == settings.twitch_login  # stable for the process


def test_credentials_from_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"TWITCH_CHANNEL=chan\nTWITCH_USERNAME=MyBot\nTWITCH_OAUTH_TOKEN={TOKEN}\n"
    )
    settings = load_settings()
    assert not settings.is_anonymous
    assert settings.twitch_login == "mybot"
    assert settings.twitch_oauth_token is not None
    assert settings.twitch_oauth_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "TWITCH_CHANNEL"),
        ({"TWITCH_CHANNEL": "  ,  "}, "TWITCH_CHANNEL"),
        ({"TWITCH_CHANNEL": "not a channel"}, "TWITCH_CHANNEL"),
        ({"TWITCH_CHANNEL": "c", "TWITCH_USERNAME": "bot"}, "TWITCH_OAUTH_TOKEN"),
        ({"TWITCH_CHANNEL": "c", "TWITCH_OAUTH_TOKEN": TOKEN}, "TWITCH_USERNAME"),
        (
            {"TWITCH_CHANNEL": "c", "TWITCH_USERNAME": "bot", "TWITCH_OAUTH_TOKEN": TOKEN[6:]},
            "TWITCH_OAUTH_TOKEN",
        ),
        (
            {"TWITCH_CHANNEL": "c", "TWITCH_USERNAME": "bot", "TWITCH_OAUTH_TOKEN": "oauth:"},
            "TWITCH_OAUTH_TOKEN",
        ),
        (
            {"TWITCH_CHANNEL": "c", "TWITCH_USERNAME": "bot", "TWITCH_OAUTH_TOKEN": TOKEN + " x"},
            "TWITCH_OAUTH_TOKEN",
        ),
        ({"TWITCH_CHANNEL": "c", "TWITCH_IRC_PORT": "70000"}, "TWITCH_IRC_PORT"),
        ({"TWITCH_CHANNEL": "c", "TWITCH_IRC_TLS": "maybe"}, "TWITCH_IRC_TLS"),
        ({"TWITCH_CHANNEL": "c", "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"TWITCH_CHANNEL": "c", "BUFFER_MODE": "tape"}, "BUFFER_MODE"),
    ],
)
def test_invalid_configuration_names_the_variable_and_hides_the_token(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert variable in message
    assert TOKEN[6:] not in message


def test_log_format_and_warn_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("LOG_LEVEL", "WARN")
    monkeypatch.setenv("LOG_FORMAT", "json")
    settings = load_settings()
    assert settings.log_level == "warning"
    assert settings.log_format is LogFormat.JSON


def test_commands_that_never_join_do_not_need_twitch_channel() -> None:
    assert load_settings(require_channels=False).twitch_channel == []
