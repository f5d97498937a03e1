"""EventSub settings: the issue-11 variables live in `config.Settings` (validated at load,
every problem named, secrets hidden) and `component_configs.eventsub_config` carries them."""

from __future__ import annotations

from pathlib import Path

import pytest

from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import ClientType, ConfigError, Settings, SourceKind, load_settings
from twitch_ingestion.sources.eventsub.config import (
    DEFAULT_API_URL,
    DEFAULT_AUTH_URL,
    DEFAULT_EVENTSUB_URL,
    EventSubConfig,
    SettingsError,
)

TOKEN = "abcdefghijklmnopqrstuvwxyz0123"
SECRET = "s3cr3tclientsecret"
REFRESH = "r3fr3shtokenvalue"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment (no developer .env, no TWITCH_/KAFKA_ variables)."""
    monkeypatch.chdir(tmp_path)
    import os

    for name in list(os.environ):
        if name.startswith(("TWITCH_", "KAFKA_", "CHANNEL_SOURCE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TWITCH_CHANNEL", "forsen")
    return monkeypatch


def load(env: pytest.MonkeyPatch, **values: str) -> Settings:
    for name, value in values.items():
        env.setenv(name, value)
    return load_settings()


def problems(env: pytest.MonkeyPatch, **values: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(env, **values)
    for problem in caught.value.problems:
        for secret in (TOKEN, SECRET, REFRESH):
            assert secret not in problem
    return caught.value.problems


def test_defaults_point_at_twitch(env: pytest.MonkeyPatch) -> None:
    settings = load(env, TWITCH_SOURCE="eventsub", TWITCH_CLIENT_ID="cid", TWITCH_OAUTH_TOKEN=TOKEN)
    eventsub = configs.eventsub_config(settings)
    assert settings.twitch_source is SourceKind.EVENTSUB
    assert eventsub.eventsub_url == DEFAULT_EVENTSUB_URL == "wss://eventsub.wss.twitch.tv/ws"
    assert eventsub.api_url == DEFAULT_API_URL == "https://api.twitch.tv/helix"
    assert eventsub.auth_url == DEFAULT_AUTH_URL == "https://id.twitch.tv/oauth2"
    assert eventsub.channels == ("forsen",)
    assert eventsub.validate_interval_s == 3600.0


def test_irc_stays_the_default_source(env: pytest.MonkeyPatch) -> None:
    assert load(env).twitch_source is SourceKind.IRC


def test_every_variable_is_carried_into_the_eventsub_settings(env: pytest.MonkeyPatch) -> None:
    settings = load(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=f"oauth:{TOKEN}",
        TWITCH_CLIENT_SECRET=SECRET,
        TWITCH_REFRESH_TOKEN=REFRESH,
        TWITCH_EVENTSUB_URL="ws://127.0.0.1:8080/ws",
        TWITCH_API_URL="http://127.0.0.1:8080/helix/",
        TWITCH_AUTH_URL="http://127.0.0.1:8080/oauth2",
        TWITCH_EVENTSUB_KEEPALIVE_S="30",
        TWITCH_TOKEN_VALIDATE_INTERVAL_S="60",
    )
    eventsub = configs.eventsub_config(settings, ("a", "b"))
    assert (eventsub.client_secret, eventsub.refresh_token) == (SECRET, REFRESH)
    assert eventsub.oauth_token == f"oauth:{TOKEN}"
    assert eventsub.eventsub_url == "ws://127.0.0.1:8080/ws"
    assert eventsub.api_url == "http://127.0.0.1:8080/helix"  # trailing slash dropped
    assert eventsub.keepalive_timeout_s == 30
    assert eventsub.validate_interval_s == 60.0
    assert eventsub.channels == ("a", "b")


def test_secrets_are_masked_in_repr(env: pytest.MonkeyPatch) -> None:
    settings = load(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=TOKEN,
        TWITCH_CLIENT_SECRET=SECRET,
        TWITCH_REFRESH_TOKEN=REFRESH,
    )
    for text in (repr(settings), repr(configs.eventsub_config(settings))):
        for secret in (TOKEN, SECRET, REFRESH):
            assert secret not in text


def test_eventsub_takes_a_token_without_the_oauth_prefix_irc_does_not(
    env: pytest.MonkeyPatch,
) -> None:
    load(env, TWITCH_SOURCE="eventsub", TWITCH_CLIENT_ID="cid", TWITCH_OAUTH_TOKEN=TOKEN)
    env.delenv("TWITCH_CLIENT_ID")
    found = problems(env, TWITCH_SOURCE="irc", TWITCH_USERNAME="bot")
    assert any("TWITCH_OAUTH_TOKEN" in p and "oauth:" in p for p in found)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"TWITCH_OAUTH_TOKEN": TOKEN}, "TWITCH_CLIENT_ID"),
        ({"TWITCH_CLIENT_ID": "cid"}, "TWITCH_OAUTH_TOKEN"),
        ({"TWITCH_CLIENT_ID": "cid", "TWITCH_OAUTH_TOKEN": "oauth:"}, "TWITCH_OAUTH_TOKEN"),
        ({"TWITCH_CLIENT_ID": "c id", "TWITCH_OAUTH_TOKEN": TOKEN}, "TWITCH_CLIENT_ID"),
        (
            {
                "TWITCH_CLIENT_ID": "cid",
                "TWITCH_OAUTH_TOKEN": TOKEN,
                "TWITCH_CLIENT_SECRET": SECRET,
            },
            "TWITCH_REFRESH_TOKEN",
        ),
        (
            {
                "TWITCH_CLIENT_ID": "cid",
                "TWITCH_OAUTH_TOKEN": TOKEN,
                "TWITCH_REFRESH_TOKEN": REFRESH,
            },
            "TWITCH_CLIENT_SECRET",
        ),
        (
            {
                "TWITCH_CLIENT_ID": "cid",
                "TWITCH_OAUTH_TOKEN": TOKEN,
                "TWITCH_EVENTSUB_URL": "https://eventsub.wss.twitch.tv/ws",
            },
            "TWITCH_EVENTSUB_URL",
        ),
        (
            {"TWITCH_CLIENT_ID": "cid", "TWITCH_OAUTH_TOKEN": TOKEN, "TWITCH_API_URL": "wss://x"},
            "TWITCH_API_URL",
        ),
        (
            {"TWITCH_CLIENT_ID": "cid", "TWITCH_OAUTH_TOKEN": TOKEN, "TWITCH_AUTH_URL": "ftp://x"},
            "TWITCH_AUTH_URL",
        ),
    ],
)
def test_bad_settings_name_the_variable_and_never_the_token(
    env: pytest.MonkeyPatch, values: dict[str, str], variable: str
) -> None:
    found = problems(env, TWITCH_SOURCE="eventsub", **values)
    assert len(found) == 1, found
    assert found[0].startswith(variable) or f"{variable}:" in found[0] or variable in found[0]
    assert "\n" not in found[0]


def test_every_problem_is_reported_at_once(env: pytest.MonkeyPatch) -> None:
    found = problems(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_SECRET=SECRET,
        TWITCH_AUTH_URL="ftp://x",
    )
    named = " ".join(found)
    for variable in (
        "TWITCH_CLIENT_ID",
        "TWITCH_OAUTH_TOKEN",
        "TWITCH_REFRESH_TOKEN",
        "TWITCH_AUTH_URL",
    ):
        assert variable in named


def test_a_fleet_member_may_read_over_eventsub(env: pytest.MonkeyPatch) -> None:
    env.delenv("TWITCH_CHANNEL")
    settings = load(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=TOKEN,
        CHANNEL_SOURCE="kafka",
    )
    eventsub = configs.eventsub_config(settings, (), dynamic_channels=True)
    assert (eventsub.channels, eventsub.dynamic_channels) == ((), True)


# -- issue 19: the validation interval's cap, public clients, the new tunables ------------


@pytest.mark.parametrize("source", ["eventsub", "irc"])
def test_a_validate_interval_above_one_hour_is_a_config_error_naming_it(
    env: pytest.MonkeyPatch, source: str
) -> None:
    found = problems(
        env,
        TWITCH_SOURCE=source,
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=TOKEN if source == "eventsub" else f"oauth:{TOKEN}",
        TWITCH_USERNAME="bot",
        TWITCH_TOKEN_VALIDATE_INTERVAL_S="3601",
    )
    assert len(found) == 1, found
    assert found[0].startswith("TWITCH_TOKEN_VALIDATE_INTERVAL_S:")
    assert "hourly" in found[0]
    settings = load(env, TWITCH_TOKEN_VALIDATE_INTERVAL_S="3600")
    assert settings.twitch_token_validate_interval_s == 3600.0


def test_eventsub_settings_refuse_an_interval_above_one_hour_too() -> None:
    with pytest.raises(SettingsError) as caught:
        EventSubConfig("cid", TOKEN, validate_interval_s=3601.0)
    assert caught.value.variable == "TWITCH_TOKEN_VALIDATE_INTERVAL_S"


def test_a_public_client_refreshes_with_the_refresh_token_alone(env: pytest.MonkeyPatch) -> None:
    settings = load(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=TOKEN,
        TWITCH_CLIENT_TYPE="public",
        TWITCH_REFRESH_TOKEN=REFRESH,
    )
    assert settings.twitch_client_type is ClientType.PUBLIC
    eventsub = configs.eventsub_config(settings)
    assert (eventsub.public_client, eventsub.client_secret, eventsub.refresh_token) == (
        True,
        "",
        REFRESH,
    )


def test_a_public_client_with_a_secret_is_a_config_error(env: pytest.MonkeyPatch) -> None:
    found = problems(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=TOKEN,
        TWITCH_CLIENT_TYPE="public",
        TWITCH_CLIENT_SECRET=SECRET,
        TWITCH_REFRESH_TOKEN=REFRESH,
    )
    assert len(found) == 1, found
    assert "TWITCH_CLIENT_TYPE=public" in found[0]
    assert "TWITCH_CLIENT_SECRET" in found[0]


def test_a_refresh_token_without_a_secret_points_to_the_public_client_type(
    env: pytest.MonkeyPatch,
) -> None:
    found = problems(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=TOKEN,
        TWITCH_REFRESH_TOKEN=REFRESH,
    )
    assert "TWITCH_CLIENT_TYPE=public" in found[0]


def test_outage_tunables_reach_the_eventsub_client(env: pytest.MonkeyPatch) -> None:
    settings = load(
        env,
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="cid",
        TWITCH_OAUTH_TOKEN=TOKEN,
        TWITCH_MAX_RECONNECT_ATTEMPTS="7",
        TWITCH_JOIN_RETRY_INTERVAL_S="120",
        TWITCH_EVENTSUB_CHECK_INTERVAL_S="30",
    )
    eventsub = configs.eventsub_config(settings)
    assert eventsub.max_unproductive_sessions == 7
    assert eventsub.recheck_interval_s == 120.0
    assert eventsub.check_interval_s == 30.0
    unlimited = configs.eventsub_config(load_settings(TWITCH_MAX_RECONNECT_ATTEMPTS=None))
    assert unlimited.max_unproductive_sessions is None
