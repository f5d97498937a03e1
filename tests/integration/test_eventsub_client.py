"""The EventSub source's asyncio shell against the EventSub simulator, over real sockets.

No Kafka here: the client hands its records to a collecting output, and the tests count
the simulator's numbered messages (`seq <channel> <n>`) in what arrived. Every fault is
injected through the simulator; timeouts are shortened through `EventSubConfig`
(keepalive 2 s, backoff 50 ms), and every wait is a bounded condition wait.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.eventsub_helpers import (
    CHANNELS,
    Collector,
    Running,
    exactly_once,
    settings_for,
    subscribed,
)
from tests.support.waiting import eventually
from twitch_ingestion.models import ChatMessage
from twitch_ingestion.records import Destination
from twitch_ingestion.simulator.eventsub_server import (
    EventSubSimulator,
    EventSubSimulatorThread,
)
from twitch_ingestion.sources.eventsub.client import EventSubClient
from twitch_ingestion.sources.eventsub.output import SourceFailure
from twitch_ingestion.sources.eventsub.records import CHAT_SUBSCRIPTION_TYPES
from twitch_ingestion.sources.eventsub.session import CLOSE_CODES, ReconnectKind

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def simulator(eventsub: EventSubSimulatorThread) -> EventSubSimulatorThread:
    """Here the EventSub simulator is the only simulator (conftest's is IRC)."""
    return eventsub


def raise_helix_bucket(sim: EventSubSimulatorThread) -> None:
    """Twitch's 800 points a minute would make a 900-subscription test wait a minute."""
    sim.call(lambda simulator: setattr(simulator.config, "rate_limit_points", 10_000))


def sessions_holding(sim: EventSubSimulatorThread, sizes: list[int]) -> Callable[[], bool]:
    """True once the live sessions hold exactly `sizes` subscriptions (in any order)."""

    def check() -> bool:
        def count(simulator: EventSubSimulator) -> list[int]:
            per_session = collections.Counter(s for s, _, _ in simulator.subscriptions())
            return sorted(per_session.values())

        return sim.call(count) == sorted(sizes)

    return check


def assert_exactly_once(output: Collector, per_channel: int) -> None:
    numbers = output.numbers()
    expected = {(channel, n) for channel in CHANNELS for n in range(1, per_channel + 1)}
    assert set(numbers) == expected
    repeated = {key: count for key, count in numbers.items() if count != 1}
    assert not repeated, f"delivered more than once: {sorted(repeated)[:10]}"
    assert not output.dead_letters


# ---------------------------------------------------------------------------------------
# Exactly once through the three ways a session ends


@pytest.mark.parametrize("fault", ["session_reconnect", "keepalive_loss", "token_expiry"])
async def test_numbered_chat_over_three_channels_arrives_exactly_once_through(
    simulator: EventSubSimulatorThread, fault: str
) -> None:
    token = simulator.issue_token()
    async with Running(settings_for(simulator, token)) as running:
        client, output = running.client, running.output
        await eventually(subscribed(simulator, 3), "the first subscriptions")
        simulator.start_numbered(CHANNELS, count=150)
        await eventually(lambda: exactly_once(output, 150), "the first 150 per channel")

        if fault == "session_reconnect":
            simulator.call(lambda sim: sim.send_reconnect())
        elif fault == "keepalive_loss":
            simulator.call(lambda sim: sim.go_silent())
        else:
            # The token dies under the running client; the next Helix call answers 401
            # and the client must refresh and carry on with the new pair.
            simulator.call(lambda sim: sim.expire_token(token.access_token))
            simulator.call(lambda sim: sim.close(4000))
        # Chat keeps coming while the client recovers.
        simulator.start_numbered(CHANNELS, count=150, rate=600)
        await eventually(lambda: exactly_once(output, 300), "all 300 per channel")
        await eventually(subscribed(simulator, 3), "the subscriptions after the fault")

        stats = simulator.stats()
        if fault == "session_reconnect":
            assert client.stats.migrations == 1
            assert stats.reconnect_welcomes == 1
            assert client.stats.reconnects == []  # subscriptions carried over
            assert stats.sessions_with_subscriptions == 1  # none re-created
        elif fault == "keepalive_loss":
            assert client.stats.reconnects == [("keepalive-timeout", ReconnectKind.IMMEDIATE)]
            assert stats.sessions_with_subscriptions == 2
        else:
            assert client.keeper is not None
            assert client.keeper.refreshes == 1
            assert client.stats.reconnects == [("close-4000", ReconnectKind.BACKOFF)]
            assert stats.helix_unauthorized >= 1
            # Every subscription after the fault was made with the refreshed token.
            assert stats.subscribe_tokens[-len(CHANNELS) * len(CHAT_SUBSCRIPTION_TYPES) :] == (
                ["1"] * (len(CHANNELS) * len(CHAT_SUBSCRIPTION_TYPES))
            )
        # The simulator re-sent recent notifications after the move; none got through twice.
        assert stats.redelivered > 0
        assert client.duplicates_dropped == stats.redelivered
    assert_exactly_once(output, 300)


async def test_token_is_refreshed_before_it_expires_and_validated_again(
    simulator: EventSubSimulatorThread,
) -> None:
    token = simulator.issue_token(lifetime_s=3.0)
    settings = settings_for(simulator, token, refresh_margin_s=2.0)
    async with Running(settings) as running:
        await eventually(subscribed(simulator, 3), "the subscriptions")
        keeper = running.client.keeper
        assert keeper is not None
        await eventually(lambda: keeper.refreshes == 1, "a refresh before expiry")
        await eventually(lambda: keeper.validations >= 2, "a validation of the new token")
        assert keeper.access_token != token.access_token
        simulator.start_numbered(CHANNELS, count=50)
        await eventually(lambda: exactly_once(running.output, 50), "chat after the refresh")
        assert repr(keeper).count(keeper.access_token) == 0


# ---------------------------------------------------------------------------------------
# Tokens that cannot work end the source with one line naming the setting


@pytest.mark.parametrize(
    ("problem", "variable"),
    [
        ("missing_scope", "TWITCH_OAUTH_TOKEN"),
        ("wrong_client_id", "TWITCH_CLIENT_ID"),
        ("expired_without_refresh", "TWITCH_OAUTH_TOKEN"),
        ("expires_while_running_without_refresh", "TWITCH_OAUTH_TOKEN"),
    ],
)
async def test_unusable_token_ends_the_source_with_one_line_naming_the_variable(
    simulator: EventSubSimulatorThread,
    capsys: pytest.CaptureFixture[str],
    problem: str,
    variable: str,
) -> None:
    if problem == "missing_scope":
        token = simulator.issue_token(scopes=("chat:read", "chat:edit"))
    elif problem == "wrong_client_id":
        token = simulator.issue_token(client_id="someoneelsesclientid000000000")
    elif problem == "expired_without_refresh":
        token = simulator.issue_token(lifetime_s=0)
    else:
        token = simulator.issue_token(lifetime_s=2.0)
    settings = settings_for(simulator, token, refresh=False)
    output = Collector()
    client = EventSubClient(settings, output)
    async with asyncio.timeout(15):
        failure = await client.run()

    assert isinstance(failure, SourceFailure)
    assert failure.variable == variable
    assert variable in failure.message
    assert "\n" not in failure.message
    assert token.access_token not in failure.message
    assert token.access_token not in repr(failure)
    assert token.access_token not in repr(settings)
    printed = capsys.readouterr()
    assert token.access_token not in printed.out + printed.err
    if problem == "expires_while_running_without_refresh":
        assert "twitch token valid" in printed.out + printed.err  # the logs were captured
        assert failure.reason == "token-expired"
        assert client.stats.subscriptions_created == len(CHANNELS) * len(CHAT_SUBSCRIPTION_TYPES)


# ---------------------------------------------------------------------------------------
# Channels that cannot be read are reported; the others flow


async def test_unknown_login_cost_refusal_and_429_are_reported_and_the_rest_flows(
    simulator: EventSubSimulatorThread,
) -> None:
    simulator.call(lambda sim: sim.unknown_logins.add("nosuchuser"))
    simulator.call(lambda sim: sim.set_cost("expensive", 100))
    simulator.call(lambda sim: sim.rate_limit_next(2))
    token = simulator.issue_token()
    settings = settings_for(simulator, token, [*CHANNELS, "nosuchuser", "expensive"])
    async with Running(settings) as running:
        output = running.output
        await eventually(subscribed(simulator, 3), "the readable channels' subscriptions")
        await eventually(lambda: len(output.problems) == 2, "two channel reports")
        simulator.start_numbered(CHANNELS, count=100)
        await eventually(lambda: exactly_once(output, 100), "chat on the readable channels")

        problems = {problem.channel: problem for problem in output.problems}
        assert problems["nosuchuser"].reason == "unknown-login"
        assert problems["expensive"].reason == "limit-exceeded"
        assert "429" in problems["expensive"].message
        assert "max_total_cost" in problems["expensive"].message
        assert running.client.stats.rate_limited == 2
        assert simulator.stats().rate_limited == 2
    assert_exactly_once(output, 100)


async def test_channels_are_resolved_100_per_call_and_spread_over_three_connections(
    simulator: EventSubSimulatorThread,
) -> None:
    channels = [f"chan{index}" for index in range(200)]
    raise_helix_bucket(simulator)
    token = simulator.issue_token()
    async with Running(settings_for(simulator, token, channels)) as running:
        # 3 connections x 300 subscriptions = 60 channels each; the last 20 do not fit.
        await eventually(sessions_holding(simulator, [300, 300, 300]), "three full connections")
        await eventually(lambda: len(running.output.problems) == 20, "20 channels reported")
        assert {p.reason for p in running.output.problems} == {"connection-limit"}
        assert {p.channel for p in running.output.problems} == set(channels[180:])
        simulator.start_numbered(channels[:180:30], count=10)
        await eventually(lambda: len(running.output.numbers()) == 60, "chat on every connection")
    stats = simulator.stats()
    assert stats.users_calls == 2
    assert stats.users_logins_max == 100


async def test_a_connection_twitch_refuses_is_reported_and_the_others_keep_flowing(
    simulator: EventSubSimulatorThread,
) -> None:
    # Misconfigured for 4 connections: Twitch (the simulator) refuses the 4th with 429.
    channels = [f"chan{index}" for index in range(240)]
    raise_helix_bucket(simulator)
    token = simulator.issue_token()
    settings = settings_for(simulator, token, channels, max_connections=4)
    async with Running(settings) as running:
        await eventually(sessions_holding(simulator, [300, 300, 300]), "three full connections")
        await eventually(lambda: len(running.output.problems) == 60, "60 channels reported")
        assert {p.reason for p in running.output.problems} == {"limit-exceeded"}
        assert all("connections" in p.message for p in running.output.problems)
        simulator.start_numbered(channels[:180:30], count=10)
        await eventually(lambda: len(running.output.numbers()) == 60, "chat on three connections")
        assert not running.task.done()  # type: ignore[union-attr]


async def test_a_connection_opens_only_when_the_helix_bucket_can_take_its_subscriptions(
    simulator: EventSubSimulatorThread,
) -> None:
    # 350 points per 2 s: the first connection's 250 subscriptions fit, the second's do
    # not fit in what is left, so it must wait for the refill instead of opening a
    # socket it could not subscribe in time (and running into 429s).
    def small_bucket(sim: EventSubSimulator) -> None:
        sim.config.rate_limit_points = 350
        sim.config.rate_limit_window_s = 2.0

    simulator.call(small_bucket)
    channels = [f"chan{index}" for index in range(100)]
    token = simulator.issue_token()
    async with Running(settings_for(simulator, token, channels)) as running:
        await eventually(sessions_holding(simulator, [250, 250]), "two connections of 50")
        simulator.start_numbered(channels[::25], count=10)
        await eventually(lambda: len(running.output.numbers()) == 40, "chat on both")
    assert simulator.stats().rate_limited == 0
    assert running.client.stats.rate_limited == 0


async def test_twitchs_300_subscriptions_per_connection_are_enforced_and_reported(
    simulator: EventSubSimulatorThread,
) -> None:
    # Misconfigured for 310 per connection: one connection gets 62 channels (310
    # subscriptions); Twitch (the simulator) refuses the 301st onwards with 429.
    raise_helix_bucket(simulator)
    channels = [f"chan{index}" for index in range(62)]
    token = simulator.issue_token()
    settings = settings_for(
        simulator, token, channels, subscriptions_per_connection=310, subscribe_concurrency=1
    )
    async with Running(settings) as running:
        await eventually(sessions_holding(simulator, [300]), "one full connection")
        await eventually(lambda: len(running.output.problems) == 2, "two channels reported")
        assert {p.reason for p in running.output.problems} == {"limit-exceeded"}
        assert all("per connection" in p.message for p in running.output.problems)
        assert {p.channel for p in running.output.problems} == {"chan60", "chan61"}


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 (not trusted)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_https_certificates_are_verified(self_signed: ssl.SSLContext) -> None:
    with EventSubSimulatorThread(ssl_context=self_signed) as simulator:
        token = simulator.issue_token()
        settings = settings_for(simulator, token)
        assert settings.auth_url.startswith("https://")
        client = EventSubClient(settings, Collector())
        task = asyncio.create_task(client.run())
        await eventually(
            lambda: client.keeper is not None and client.keeper.validations >= 2,
            "validation attempts",
        )
        client.stop()
        async with asyncio.timeout(10):
            assert await task is None
        # The self-signed certificate was refused: no request got through the handshake.
        assert simulator.stats().validate_calls == 0


async def test_wss_certificates_are_verified(
    simulator: EventSubSimulatorThread, self_signed: ssl.SSLContext
) -> None:
    token = simulator.issue_token()
    with EventSubSimulatorThread(ssl_context=self_signed) as untrusted:
        eventsub_url = untrusted.urls["TWITCH_EVENTSUB_URL"]
        assert eventsub_url.startswith("wss://")
        settings = settings_for(simulator, token, eventsub_url=eventsub_url)
        async with Running(settings) as running:
            await eventually(lambda: len(running.client.stats.reconnects) >= 2, "failed connects")
            assert {reason for reason, _ in running.client.stats.reconnects} == {"closed"}
        assert untrusted.stats().welcomes == 0


# ---------------------------------------------------------------------------------------
# Close codes


@pytest.mark.parametrize("code", sorted(CLOSE_CODES))
async def test_each_close_code_is_handled_as_the_session_decides(
    simulator: EventSubSimulatorThread, code: int
) -> None:
    token = simulator.issue_token()
    async with Running(settings_for(simulator, token)) as running:
        client, output = running.client, running.output
        await eventually(subscribed(simulator, 3), "the first subscriptions")
        simulator.start_numbered(CHANNELS, count=20)
        await eventually(lambda: exactly_once(output, 20), "chat before the close")

        if code == 4007:
            # Twitch closes the *reconnect* socket with 4007 when its URL is not valid.
            simulator.call(lambda sim: sim.send_reconnect(invalid=True))
        else:
            simulator.call(lambda sim: sim.close(code))
        await eventually(lambda: len(client.stats.reconnects) == 1, f"the reconnect after {code}")
        assert client.stats.reconnects == [(f"close-{code}", CLOSE_CODES[code].kind)]

        await eventually(subscribed(simulator, 3), "the new session's subscriptions")
        simulator.start_numbered(CHANNELS, count=20)
        await eventually(lambda: exactly_once(output, 40), "chat after the close")
        assert simulator.stats().closes_sent == {code: 1}
    assert_exactly_once(output, 40)


# ---------------------------------------------------------------------------------------
# Content and revocations


async def test_generated_chat_becomes_chat_records_without_dead_letters(
    simulator: EventSubSimulatorThread,
) -> None:
    token = simulator.issue_token()
    async with Running(settings_for(simulator, token)) as running:
        await eventually(subscribed(simulator, 3), "the subscriptions")
        simulator.call(lambda sim: sim.start_generated(CHANNELS, count=300, seed=11))
        await eventually(lambda: len(running.output.records) == 300, "300 generated messages")
        assert not running.output.dead_letters
        assert all(r.destination is Destination.CHAT for r in running.output.records)
        emotes = sum(
            len(r.record.emotes)
            for r in running.output.records
            if isinstance(r.record, ChatMessage)
        )
        assert emotes > 0


async def test_revocations_are_retried_when_the_reason_allows_and_reported_otherwise(
    simulator: EventSubSimulatorThread,
) -> None:
    token = simulator.issue_token()
    async with Running(settings_for(simulator, token)) as running:
        await eventually(subscribed(simulator, 3), "the subscriptions")
        simulator.call(lambda sim: sim.revoke("alpha", "channel.chat.clear", "beta_maintenance"))
        await eventually(lambda: running.client.stats.revocations == 1, "the first revocation")
        await eventually(subscribed(simulator, 3), "the retried subscription")

        simulator.call(
            lambda sim: sim.revoke("bravo", "channel.chat.message", "authorization_revoked")
        )
        await eventually(lambda: len(running.output.problems) == 1, "the report")
        problem = running.output.problems[0]
        assert (problem.channel, problem.reason) == ("bravo", "revoked-authorization_revoked")
        simulator.start_numbered(["alpha", "charlie"], count=30)
        await eventually(
            lambda: len(running.output.numbers()) == 60, "chat on the channels still read"
        )


async def test_unusable_frames_are_dead_lettered_byte_for_byte_and_chat_goes_on(
    simulator: EventSubSimulatorThread,
) -> None:
    token = simulator.issue_token()
    broken = b'{"metadata": {"message_type": "notification"}, "payload": "\xc3\xa9t\xc3\xa9"}'
    async with Running(settings_for(simulator, token)) as running:
        output = running.output
        await eventually(subscribed(simulator, 3), "the subscriptions")
        simulator.call(lambda sim: sim.send_raw(b"not json at all"))
        simulator.call(lambda sim: sim.send_raw(broken))
        # A chat event without the chatter: a valid frame whose event cannot be a record.
        simulator.call(
            lambda sim: sim.queue_event(
                "alpha", "channel.chat.message", {"message_id": "x", "message": {"text": "hi"}}
            )
        )
        simulator.start_numbered(CHANNELS, count=20)
        await eventually(lambda: exactly_once(output, 20), "chat around the broken frames")
        await eventually(lambda: len(output.dead_letters) == 3, "three dead letters")
        frames = [letter.frame for letter in output.dead_letters]
        assert frames[:2] == [b"not json at all", broken]
        assert output.dead_letters[2].reason == "missing-field"
        assert b'"message_id":"x"' in frames[2]
        assert running.client.stats.reconnects == []
