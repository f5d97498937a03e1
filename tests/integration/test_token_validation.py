"""The IRC source's token is validated too (issue 11): at start-up and hourly against
`{TWITCH_AUTH_URL}/validate` — here the EventSub simulator's OAuth endpoint — while the
IRC simulator serves chat. An explicit "no" ends the service with exit 3; an unreachable
endpoint leaves the decision to the IRC login."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.conftest import twitch_env
from tests.integration.kafka_helpers import collect_records
from tests.integration.service_process import StartService
from twitch_ingestion.simulator import SimulatorConfig, SimulatorThread
from twitch_ingestion.simulator.eventsub_server import (
    EventSubSimulatorConfig,
    EventSubSimulatorThread,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

USERNAME = "sim_bot"


@pytest.fixture
def oauth() -> Iterator[EventSubSimulatorThread]:
    with EventSubSimulatorThread(EventSubSimulatorConfig()) as running:
        yield running


def irc_env(
    simulator: SimulatorThread, oauth: EventSubSimulatorThread, token: str, channels: list[str]
) -> dict[str, str]:
    return {
        **twitch_env(simulator, channels),
        "TWITCH_USERNAME": USERNAME,
        "TWITCH_OAUTH_TOKEN": f"oauth:{token}",
        "TWITCH_AUTH_URL": oauth.urls["TWITCH_AUTH_URL"],
    }


@pytest.mark.parametrize("problem", ["not_issued", "missing_chat_read", "expired"])
def test_a_token_validate_refuses_ends_the_irc_service_with_exit_3(
    simulator: SimulatorThread,
    oauth: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    problem: str,
) -> None:
    if problem == "not_issued":
        token = "notissued0000aaaabbbbccccdddd"
    elif problem == "missing_chat_read":
        token = oauth.issue_token(scopes=("user:read:chat",)).access_token
    else:
        token = oauth.issue_token(scopes=("chat:read",), lifetime_s=0).access_token
    service = start_service({**irc_env(simulator, oauth, token, ["alpha"]), **topics})

    assert service.wait_exit(timeout_s=30) == 3, service.logs()
    failures = [e for e in service.log_events() if e["event"] == "twitch authentication failed"]
    assert len(failures) == 1, service.logs()
    assert failures[0]["variable"] == "TWITCH_OAUTH_TOKEN"
    assert "TWITCH_OAUTH_TOKEN" in failures[0]["error"]
    assert "Traceback" not in service.logs()
    assert token not in service.logs()


def test_a_valid_irc_token_is_validated_and_chat_flows(
    simulator: SimulatorThread,
    oauth: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    token = oauth.issue_token(scopes=("chat:read",)).access_token
    service = start_service({**irc_env(simulator, oauth, token, ["alpha"]), **topics})
    valid = service.wait_for_log("twitch token valid")
    assert "expires in" in valid["status"]
    simulator.wait_for_joined(["alpha"], timeout=30)
    simulator.start_numbered(["alpha"], rate=0, count=100).wait(timeout=30)
    records = collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=100)
    assert len(records) == 100
    assert service.stop() == 0
    assert token not in service.logs()


def test_an_irc_token_is_refreshed_before_it_expires_and_the_service_runs_on(
    simulator: SimulatorThread,
    oauth: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
) -> None:
    # The 4 s count from the service's first /validate, not from now: however slowly the
    # service starts, it sees a token with ~3 s left, due for refresh 1 s later.
    issued = oauth.issue_token(scopes=("chat:read",), lifetime_s=4.0, from_first_use=True)
    env = {
        **irc_env(simulator, oauth, issued.access_token, ["alpha"]),
        **topics,
        "TWITCH_CLIENT_ID": oauth.config.client_id,
        "TWITCH_CLIENT_SECRET": oauth.config.client_secret,
        "TWITCH_REFRESH_TOKEN": issued.refresh_token,
        "TWITCH_TOKEN_REFRESH_MARGIN_S": "2",
    }
    service = start_service(env)
    service.wait_for_log("twitch token refreshed")
    simulator.wait_for_joined(["alpha"], timeout=30)
    first = service.wait_for_log("twitch token valid")
    assert "will be refreshed" in first["status"], first  # not "does not expire"
    # Refreshed on schedule, not after /validate had found the old token dead.
    assert "twitch token validate failed" not in service.logs()
    # Past the old token's expiry the service is still running (it would exit 3
    # without the refresh), and the new token was validated.
    expires_at = oauth.call(lambda _: issued.expires_at)
    assert expires_at is not None
    oauth.wait_until(
        lambda sim: time.monotonic() > expires_at + 1.0 and sim.stats.validate_calls >= 2,
        timeout=30,
    )
    assert oauth.stats().refresh_calls >= 1
    assert service.process.poll() is None
    assert service.stop() == 0
    logs = service.logs()
    assert issued.access_token not in logs
    assert issued.refresh_token not in logs


def test_an_unreachable_validate_endpoint_leaves_the_decision_to_the_irc_login(
    simulator: SimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    env = {
        **twitch_env(simulator, ["alpha"]),
        **topics,
        "TWITCH_USERNAME": USERNAME,
        "TWITCH_OAUTH_TOKEN": "oauth:anytoken0000aaaabbbbcccc",
        "TWITCH_AUTH_URL": "http://127.0.0.1:9/oauth2",  # refuses at once
    }
    service = start_service(env)
    warning = service.wait_for_log("twitch token validate failed")
    assert "network error" in warning["detail"]
    simulator.wait_for_joined(["alpha"], timeout=30)
    simulator.start_numbered(["alpha"], rate=0, count=50).wait(timeout=30)
    records = collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=50)
    assert len(records) == 50
    assert service.stop() == 0


def test_the_oauth_simulator_never_reports_an_expiring_token_as_one_that_does_not_expire(
    oauth: EventSubSimulatorThread,
) -> None:
    # Twitch's `expires_in: 0` means "does not expire": a token validated in its last
    # second must not say 0, or the service would never refresh it.
    token = oauth.issue_token(scopes=("chat:read",), lifetime_s=0.5, from_first_use=True)
    request = urllib.request.Request(
        oauth.urls["TWITCH_AUTH_URL"] + "/validate",
        headers={"Authorization": f"OAuth {token.access_token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response)["expires_in"] == 1


def test_a_dead_irc_token_with_a_refresh_token_is_refreshed_before_the_irc_login(
    oauth: EventSubSimulatorThread,
    start_service: StartService,
    topics: dict[str, str],
    kafka_brokers: str,
) -> None:
    # Twitch's IRC login refuses a dead token ("Login authentication failed", exit 3);
    # the service must refresh it first, not race the refresh against the login.
    issued = oauth.issue_token(scopes=("chat:read",), lifetime_s=0)
    with SimulatorThread(SimulatorConfig(seed=7, token_check=oauth.token_is_live)) as irc:
        env = {
            **irc_env(irc, oauth, issued.access_token, ["alpha"]),
            **topics,
            "TWITCH_CLIENT_ID": oauth.config.client_id,
            "TWITCH_CLIENT_SECRET": oauth.config.client_secret,
            "TWITCH_REFRESH_TOKEN": issued.refresh_token,
        }
        service = start_service(env)
        service.wait_for_log("twitch token refreshed")
        irc.wait_for_joined(["alpha"], timeout=30)
        irc.start_numbered(["alpha"], rate=0, count=20).wait(timeout=30)
        records = collect_records(kafka_brokers, topics["KAFKA_TOPIC_CHAT_MESSAGES"], expected=20)
        assert len(records) == 20
        assert service.stop() == 0
    logs = service.logs()
    assert "twitch authentication failed" not in logs
    assert issued.access_token not in logs
    assert issued.refresh_token not in logs
