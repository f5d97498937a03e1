"""The service's one `Source`: chosen by TWITCH_SOURCE, fed by the one `RecordBuilder`,
and ending with a `SourceStopped` the service turns into one line and an exit code."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from tests.support.record_sinks import RecordingSink
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import load_settings
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.service import ExitCode, _exit_code_for, source_from_settings
from twitch_ingestion.sources.common.source import SourceStopped
from twitch_ingestion.sources.eventsub.messages import DeadLetter
from twitch_ingestion.sources.eventsub.output import SourceFailure
from twitch_ingestion.sources.eventsub.service_source import EventSubFailed, EventSubSource
from twitch_ingestion.sources.eventsub.tokens import TokenError
from twitch_ingestion.sources.irc.pool import TwitchAuthenticationError
from twitch_ingestion.sources.irc.source import IrcSource
from twitch_ingestion.sources.token_guard import TokenRejected

TOKEN = "oauth:abcdefghijklmnopqrstuvwxyz0123"


def test_irc_is_a_source_with_its_token_guard_beside_it() -> None:
    settings = load_settings(
        require_channels=False,
        twitch_channel="alpha",
        twitch_username="reader",
        twitch_oauth_token=TOKEN,
    )
    source = source_from_settings(
        settings, RecordBuilder(configs.topics(settings)), RecordingSink(), in_fleet=False
    )
    assert isinstance(source, IrcSource)
    assert source.channels == ["alpha"]
    assert source.endpoint == (f"{settings.twitch_irc_host}:{settings.twitch_irc_port}", True)
    [token_task] = source.side_tasks()
    assert token_task.name == "twitch-token"
    with capture_logs() as logs:
        token_task.crashed(error="boom")  # what the service calls when it ends with a bug
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("twitch token check failed", "error")
    ]
    anonymous = load_settings(require_channels=False, twitch_channel="alpha")
    assert (
        source_from_settings(
            anonymous, RecordBuilder(configs.topics(anonymous)), RecordingSink(), in_fleet=True
        ).side_tasks()
        == ()
    )


def test_eventsub_is_a_source_that_hands_its_dead_letters_to_the_shared_builder() -> None:
    settings = load_settings(
        require_channels=False,
        twitch_source="eventsub",
        twitch_channel="alpha",
        twitch_client_id="cid",
        twitch_oauth_token=TOKEN,
    )
    records = RecordBuilder(configs.topics(settings))
    source = source_from_settings(settings, records, RecordingSink(), in_fleet=True)
    assert isinstance(source, EventSubSource)
    assert source.channels == []  # a fleet member starts with none
    assert source.side_tasks() == ()
    assert source.endpoint == (settings.twitch_eventsub_url, True)
    source.output.dead_letter(DeadLetter("invalid-json", "line 1", b"{"))
    assert records.dead_lettered == 1


async def _raising(error: BaseException) -> asyncio.Task[None]:
    async def fail() -> None:
        raise error

    task = asyncio.create_task(fail())
    with pytest.raises(type(error)):
        await task
    return task


@pytest.mark.parametrize(
    ("error", "code", "logged"),
    [
        (
            TokenRejected(TokenError("token-invalid", "TWITCH_OAUTH_TOKEN", "token invalid")),
            ExitCode.TWITCH_AUTH,
            {
                "event": "twitch authentication failed",
                "variable": "TWITCH_OAUTH_TOKEN",
                "error": "token invalid",
            },
        ),
        (
            EventSubFailed(SourceFailure("wrong-client-id", "TWITCH_CLIENT_ID", "not its app")),
            ExitCode.TWITCH_AUTH,
            {
                "event": "twitch authentication failed",
                "variable": "TWITCH_CLIENT_ID",
                "error": "not its app",
            },
        ),
        (
            EventSubFailed(SourceFailure("no-channel", "TWITCH_CHANNEL", "no channel can be read")),
            ExitCode.TWITCH_GAVE_UP,
            {
                "event": "twitch source gave up",
                "reason": "no-channel",
                "variable": "TWITCH_CHANNEL",
                "error": "no channel can be read",
            },
        ),
        (
            TwitchAuthenticationError("reader", "Login authentication failed"),
            ExitCode.TWITCH_AUTH,
            {"event": "twitch authentication failed"},
        ),
    ],
    ids=["token-rejected", "eventsub-credentials", "eventsub-gave-up", "irc-login-refused"],
)
async def test_each_way_a_source_stops_is_one_line_and_its_exit_code(
    error: SourceStopped, code: ExitCode, logged: dict[str, object]
) -> None:
    task = await _raising(error)
    with capture_logs() as logs:
        assert _exit_code_for(task) is code
    [line] = logs
    assert line["log_level"] == "error"
    assert {key: line[key] for key in logged} == logged
    assert line["error"] == str(error)
