"""`EventSubSettings`: the issue-11 variables, checked at construction, secrets hidden."""

from __future__ import annotations

import pytest

from twitch_ingestion.sources.eventsub.client import (
    DEFAULT_API_URL,
    DEFAULT_AUTH_URL,
    DEFAULT_EVENTSUB_URL,
    EventSubSettings,
    SettingsError,
)

TOKEN = "abcdefghijklmnopqrstuvwxyz0123"
SECRET = "s3cr3t-client-secret"
REFRESH = "r3fr3sh-token-value"


def test_defaults_point_at_twitch() -> None:
    settings = EventSubSettings.from_env(
        {"TWITCH_CLIENT_ID": "cid", "TWITCH_OAUTH_TOKEN": TOKEN}, ("forsen",)
    )
    assert settings.eventsub_url == DEFAULT_EVENTSUB_URL == "wss://eventsub.wss.twitch.tv/ws"
    assert settings.api_url == DEFAULT_API_URL == "https://api.twitch.tv/helix"
    assert settings.auth_url == DEFAULT_AUTH_URL == "https://id.twitch.tv/oauth2"
    assert settings.channels == ("forsen",)


def test_every_variable_is_read_from_the_environment() -> None:
    settings = EventSubSettings.from_env(
        {
            "TWITCH_CLIENT_ID": "cid",
            "TWITCH_OAUTH_TOKEN": f"oauth:{TOKEN}",
            "TWITCH_CLIENT_SECRET": SECRET,
            "TWITCH_REFRESH_TOKEN": REFRESH,
            "TWITCH_EVENTSUB_URL": "ws://127.0.0.1:8080/ws",
            "TWITCH_API_URL": "http://127.0.0.1:8080/helix",
            "TWITCH_AUTH_URL": "http://127.0.0.1:8080/oauth2",
        },
        keepalive_timeout_s=30,
    )
    assert (settings.client_secret, settings.refresh_token) == (SECRET, REFRESH)
    assert settings.eventsub_url == "ws://127.0.0.1:8080/ws"
    assert settings.keepalive_timeout_s == 30


def test_repr_shows_no_secret() -> None:
    settings = EventSubSettings(
        "cid", f"oauth:{TOKEN}", client_secret=SECRET, refresh_token=REFRESH
    )
    text = repr(settings)
    for secret in (TOKEN, SECRET, REFRESH):
        assert secret not in text


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TWITCH_OAUTH_TOKEN": TOKEN}, "TWITCH_CLIENT_ID"),
        ({"TWITCH_CLIENT_ID": "cid"}, "TWITCH_OAUTH_TOKEN"),
        ({"TWITCH_CLIENT_ID": "cid", "TWITCH_OAUTH_TOKEN": "oauth:"}, "TWITCH_OAUTH_TOKEN"),
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
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        EventSubSettings.from_env(env)
    assert caught.value.variable == variable
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message
    for secret in (TOKEN, SECRET, REFRESH):
        assert secret not in message
