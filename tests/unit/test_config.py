"""Settings: the seed's names and defaults, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import ConfigError, ConfigProblem, LogFormat, Settings, load_settings
from twitch_ingestion.fleet.config import ControlTopicsConfig, FleetConfig
from twitch_ingestion.health import HealthConfig
from twitch_ingestion.kafka.producer_config import librdkafka_problems

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


# --- every setting is checked when it is loaded ----------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KAFKA_COMPRESSION", "brotli"),
        ("KAFKA_ACKS", "2"),
        ("KAFKA_ACKS", "most"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("KAFKA_SASL_MECHANISM", "KERBEROS"),
        ("LOG_FORMAT", "xml"),
        ("KAFKA_BROKERS", ""),
        ("KAFKA_BROKERS", " , "),
        ("KAFKA_BROKERS", "localhost"),
        ("KAFKA_BROKERS", "localhost:9092,kafka:99999"),
        ("KAFKA_BROKERS", "kafka 1:9092"),
        ("KAFKA_BROKERS", "[not-ipv6]:9092"),
        ("KAFKA_TOPIC_CHAT_MESSAGES", "chat messages"),
        ("KAFKA_TOPIC_CHAT_EVENTS", ".."),
        ("KAFKA_TOPIC_DLQ", "x" * 250),
        ("KAFKA_TOPIC_CHANNELS", "a/b"),
        ("KAFKA_CLIENT_ID", " "),
        ("KAFKA_CHANNELS_GROUP", ""),
        ("KAFKA_TOPIC_REPLICATION_FACTOR", "0"),
        ("KAFKA_TOPIC_REPLICATION_FACTOR", "-2"),
        ("KAFKA_LINGER_MS", "900001"),
        ("KAFKA_REQUEST_TIMEOUT_MS", "900001"),
        ("KAFKA_RETRY_BACKOFF_MS", "300001"),
        ("KAFKA_RECONNECT_BACKOFF_MAX_MS", "3600001"),
        ("KAFKA_BATCH_SIZE", "2147483648"),
        ("KAFKA_CHANNELS_SESSION_TIMEOUT_MS", "3600001"),
        ("KAFKA_CHANNELS_REPLICAS", "0"),
        ("KAFKA_CHANNELS_REPLICAS", "3"),
        ("KAFKA_CHANNELS_STANDBY_WINDOW_S", "0"),
        ("KAFKA_CHANNELS_STANDBY_WINDOW_BYTES", "100"),
        ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
        ("TWITCH_IRC_HOST", ""),
        ("TWITCH_IRC_HOST", "irc.chat.twitch.tv:6697"),
        ("TWITCH_IRC_HOST", "irc://irc.chat.twitch.tv"),
        ("HEALTH_HOST", ""),
        ("TWITCH_USERNAME", "my bot"),
    ],
)
def test_a_value_librdkafka_or_the_service_cannot_use_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    [problem] = raised.value.problems
    assert problem.startswith(f"{variable}: ") or problem.startswith(f"{variable} "), problem


def test_a_buffer_dir_that_is_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("BUFFER_DIR", str(tmp_path / "file"))
    with pytest.raises(ConfigError, match="BUFFER_DIR"):
        load_settings()


def test_enumerations_are_case_insensitive_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("KAFKA_COMPRESSION", "ZSTD")
    monkeypatch.setenv("KAFKA_ACKS", "ALL")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "scram-sha-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "user")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "secret")
    monkeypatch.setenv("LOG_LEVEL", "Debug")
    settings = load_settings()
    assert settings.kafka_compression == "zstd"
    assert settings.kafka_acks == "all"
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("brokers", "normalised"),
    [
        ("kafka:9092", "kafka:9092"),
        (" a:1 , b.example.com:9093 ,", "a:1,b.example.com:9093"),
        ("[::1]:9092", "[::1]:9092"),
        ("SASL_SSL://broker-1:9094", "SASL_SSL://broker-1:9094"),
        ("10.0.0.1:65535", "10.0.0.1:65535"),
    ],
)
def test_broker_lists_accept_host_port_forms(
    monkeypatch: pytest.MonkeyPatch, brokers: str, normalised: str
) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("KAFKA_BROKERS", brokers)
    assert load_settings().kafka_brokers == normalised


def test_empty_optional_settings_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    for name in (
        "TWITCH_USERNAME",
        "TWITCH_OAUTH_TOKEN",
        "TWITCH_MAX_RECONNECT_ATTEMPTS",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CA_LOCATION",
    ):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert settings.is_anonymous
    assert settings.twitch_max_reconnect_attempts is None
    assert settings.kafka_sasl_mechanism is None
    assert settings.kafka_ssl_ca_location is None


@pytest.mark.parametrize(
    ("env", "variables"),
    [
        ({"KAFKA_ACKS": "1"}, ["KAFKA_ACKS", "KAFKA_ENABLE_IDEMPOTENCE"]),
        ({"KAFKA_RETRY_BACKOFF_MS": "500", "KAFKA_RETRY_BACKOFF_MAX_MS": "100"}, ["RETRY"]),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, ["KAFKA_SASL_MECHANISM"]),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"},
            ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"],
        ),
        ({"KAFKA_SASL_USERNAME": "user"}, ["KAFKA_SASL_USERNAME", "KAFKA_SECURITY_PROTOCOL"]),
    ],
)
def test_combinations_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variables: list[str]
) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    [problem] = raised.value.problems
    for variable in variables:
        assert variable in problem


def test_acks_1_is_fine_without_idempotence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("KAFKA_ACKS", "1")
    monkeypatch.setenv("KAFKA_ENABLE_IDEMPOTENCE", "false")
    assert load_settings().kafka_acks == "1"


def test_every_problem_is_reported_at_once_with_the_combinations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = {
        "KAFKA_COMPRESSION": "brotli",
        "KAFKA_BROKERS": "",
        "LOG_LEVEL": "loud",
        "HEALTH_PORT": "99999",
        "BUFFER_MODE": "tape",
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    # Two combinations, checked although fields failed: a username without its token,
    # and TWITCH_CHANNEL missing.
    monkeypatch.setenv("TWITCH_USERNAME", "bot")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    problems = raised.value.problems
    assert len(problems) == len(bad) + 2, problems
    for variable in [*bad, "TWITCH_OAUTH_TOKEN", "TWITCH_CHANNEL"]:
        assert any(variable in problem for problem in problems), (variable, problems)


def test_a_combination_involving_a_failed_field_is_not_reported_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The max fails on its own; comparing its default (60) with the base would be noise.
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("TWITCH_RECONNECT_MAX_S", "soon")
    monkeypatch.setenv("TWITCH_RECONNECT_BASE_S", "100")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    [problem] = raised.value.problems
    assert problem.startswith("TWITCH_RECONNECT_MAX_S: ")


def test_settings_built_directly_still_refuse_bad_combinations() -> None:
    with pytest.raises(ValueError, match="TWITCH_OAUTH_TOKEN"):
        Settings(_env_file=None, twitch_username="bot")  # type: ignore[call-arg]


def test_extra_checks_run_on_loaded_settings_and_skip_failed_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("KAFKA_LINGER_MS", "-1")
    seen: list[Settings] = []

    def check(settings: Settings) -> list[ConfigProblem]:
        seen.append(settings)
        return [
            ConfigProblem(("KAFKA_LINGER_MS",), "KAFKA_LINGER_MS: said twice"),
            ConfigProblem(("KAFKA_BATCH_SIZE",), "KAFKA_BATCH_SIZE: from the check"),
        ]

    with pytest.raises(ConfigError) as raised:
        load_settings((check,))
    assert [p.split(":")[0] for p in raised.value.problems] == [
        "KAFKA_LINGER_MS",
        "KAFKA_BATCH_SIZE",
    ]
    assert "said twice" not in str(raised.value)
    # The check saw the failed field at its default.
    assert seen[0].kafka_linger_ms == Settings.model_fields["kafka_linger_ms"].default


def test_librdkafka_check_names_the_variable_of_what_it_refuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Exists (so the field check passes) but is no certificate: only librdkafka can tell.
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("not a certificate\n")
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", str(not_a_ca))
    load_settings()  # fine for the field checks
    with pytest.raises(ConfigError) as raised:
        load_settings((_librdkafka_problems,))
    [problem] = raised.value.problems  # producer, admin and consumer agree: said once
    assert problem.startswith("KAFKA_SSL_CA_LOCATION: librdkafka refuses it: ")


def _librdkafka_problems(settings: Settings) -> list[ConfigProblem]:
    return librdkafka_problems(
        configs.kafka_connection(settings), configs.producer_tuning(settings)
    )


def test_librdkafka_check_accepts_the_defaults() -> None:
    load_settings((_librdkafka_problems,), require_channels=False)


def test_librdkafka_refusals_never_show_the_sasl_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from twitch_ingestion.kafka.producer_config import _describe_refusal

    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "user")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-secret")
    settings = load_settings()
    error = KafkaError(
        KafkaError._INVALID_ARG, 'Invalid value "hunter2-secret" for "sasl.password"'
    )
    problem = _describe_refusal(KafkaException(error), settings.kafka_sasl_password)
    assert problem.variables == ("KAFKA_SASL_PASSWORD",)
    assert "hunter2-secret" not in problem.message


# --- .env.example ------------------------------------------------------------------------


def test_env_example_reads_chat_anonymously(tmp_path: Path) -> None:
    # As a newcomer uses it: copied, with the channel filled in (it ships empty, so that
    # an unedited copy reads nobody's channel: tests/component/test_cli.py).
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    assert "\nTWITCH_CHANNEL=\n" in example
    (tmp_path / ".env").write_text(
        example.replace("\nTWITCH_CHANNEL=\n", "\nTWITCH_CHANNEL=forsen\n")
    )
    settings = load_settings()
    assert settings.is_anonymous
    assert settings.twitch_channel == ["forsen"]


@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("TWITCH_USERNAME", {"TWITCH_USERNAME": "your_bot_username", "TWITCH_OAUTH_TOKEN": TOKEN}),
        (
            "TWITCH_OAUTH_TOKEN",
            {"TWITCH_USERNAME": "bot", "TWITCH_OAUTH_TOKEN": "oauth:your_token_here"},
        ),
    ],
)
def test_the_old_env_example_placeholders_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, env: dict[str, str]
) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    [problem] = raised.value.problems
    assert problem.startswith(f"{variable}: ")
    assert "placeholder" in problem
    assert "anonymously" in problem


# --- the .env file itself ----------------------------------------------------------------


def test_a_dotenv_line_that_cannot_be_parsed_is_a_problem_not_a_silent_default(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text(
        'TWITCH_CHANNEL=c\nKAFKA_BROKERS="kafka:9092\nLOG_LEVEL=loud\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.problems == [
        ".env line 2 is not NAME=value: fix it (close any quote) or remove it",
        "LOG_LEVEL: 'loud' is not one of debug, info, warning, error, critical",
    ]


def test_a_dotenv_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"TWITCH_CHANNEL=c\nKAFKA_CLIENT_ID=caf\xe9\n")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    [problem] = raised.value.problems
    assert problem.startswith(".env is not UTF-8 text")


def test_a_token_pasted_into_twitch_username_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "c")
    monkeypatch.setenv("TWITCH_USERNAME", TOKEN)
    monkeypatch.setenv("TWITCH_OAUTH_TOKEN", TOKEN)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    [problem] = raised.value.problems
    assert problem.startswith("TWITCH_USERNAME: is not a Twitch login")
    assert TOKEN[6:] not in problem


def test_no_client_lets_the_broker_auto_create_a_topic() -> None:
    # librdkafka's producer (and admin client) default to allow.auto.create.topics=true:
    # a record produced before the topic exists would create it with the broker's
    # partition count, not KAFKA_TOPIC_PARTITIONS.
    from twitch_ingestion.fleet.control_reader import group_consumer_config
    from twitch_ingestion.kafka.producer_config import admin_config, producer_config

    settings = Settings(_env_file=None, twitch_channel=["forsen"])  # type: ignore[call-arg]
    for conf in (
        producer_config(configs.kafka_connection(settings), configs.producer_tuning(settings)),
        admin_config(configs.kafka_connection(settings)),
        group_consumer_config(configs.fleet_config(settings)),
    ):
        assert conf["allow.auto.create.topics"] is False
    assert (
        librdkafka_problems(configs.kafka_connection(settings), configs.producer_tuning(settings))
        == []
    )


def test_the_default_buffer_dir_is_the_absolute_xdg_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Records left there are found by a restart from any directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    settings = Settings(_env_file=None, twitch_channel=["forsen"])  # type: ignore[call-arg]
    assert settings.buffer_dir == tmp_path / "state" / "twitch-ingestion" / "buffer"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = Settings(_env_file=None, twitch_channel=["forsen"])  # type: ignore[call-arg]
    assert settings.buffer_dir == tmp_path / "home" / ".local/state/twitch-ingestion/buffer"


def test_a_relative_buffer_dir_is_made_absolute_where_the_settings_are_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None, twitch_channel=["forsen"], buffer_dir=Path("data/buffer"))  # type: ignore[call-arg]
    assert settings.buffer_dir == tmp_path / "data" / "buffer"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, HealthConfig(host="0.0.0.0", port=8080)),
        ("127.0.0.1", "9100", HealthConfig(host="127.0.0.1", port=9100)),
        ("127.0.0.1", "0", HealthConfig(host="127.0.0.1", port=None)),
    ],
)
def test_health_config_is_health_host_and_port_with_zero_meaning_no_server(
    monkeypatch: pytest.MonkeyPatch, host: str | None, port: str | None, expected: HealthConfig
) -> None:
    monkeypatch.setenv("TWITCH_CHANNEL", "somechannel")
    if host is not None:
        monkeypatch.setenv("HEALTH_HOST", host)
    if port is not None:
        monkeypatch.setenv("HEALTH_PORT", port)
    config = configs.health_config(load_settings())
    assert config == expected


def test_irc_source_config_fields_are_the_settings_of_that_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each field of IrcSourceConfig is the setting of the same name, values off the
    defaults so that a field wired to the wrong setting shows."""
    for name, value in {
        "TWITCH_CHANNEL": "alpha,beta",
        "TWITCH_USERNAME": "Bot",
        "TWITCH_OAUTH_TOKEN": TOKEN,
        "TWITCH_IRC_HOST": "irc.example.org",
        "TWITCH_IRC_PORT": "6667",
        "TWITCH_IRC_TLS": "false",
        "TWITCH_CONNECT_TIMEOUT_S": "1.5",
        "TWITCH_LOGIN_TIMEOUT_S": "2.5",
        "TWITCH_RECONNECT_BASE_S": "0.5",
        "TWITCH_RECONNECT_MAX_S": "7",
        "TWITCH_RECONNECT_RESET_AFTER_S": "11",
        "TWITCH_MAX_RECONNECT_ATTEMPTS": "4",
        "TWITCH_PING_INTERVAL_S": "13",
        "TWITCH_PONG_TIMEOUT_S": "3",
        "TWITCH_JOIN_TIMEOUT_S": "9",
        "TWITCH_JOIN_RETRY_INTERVAL_S": "120",
        "TWITCH_JOIN_RATE_LIMIT": "33",
        "TWITCH_JOIN_RATE_WINDOW_S": "12",
        "TWITCH_CHANNELS_PER_CONNECTION": "21",
        "TWITCH_CONNECTION_OPEN_INTERVAL_S": "0.25",
        "TWITCH_RECONNECT_OVERLAP_S": "6",
        "TWITCH_READ_BUFFER_BYTES": "65536",
        "HOT_PATH": "python",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    config = configs.irc_source_config(settings)
    for field in dataclasses.fields(config):
        expected = getattr(settings, field.name)
        actual = getattr(config, field.name)
        assert actual == (tuple(expected) if isinstance(expected, list) else expected), field.name
    assert (config.twitch_login, config.is_anonymous) == ("bot", False)


def test_fleet_config_is_the_fleet_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field of the fleet's configs from its setting, each value off its default
    so that a field wired to the wrong setting shows."""
    for name, value in {
        "CHANNEL_SOURCE": "kafka",
        "TWITCH_USERNAME": "Bot",
        "TWITCH_OAUTH_TOKEN": TOKEN,
        "KAFKA_BROKERS": "kafka-1:9093",
        "KAFKA_TOPIC_CHANNELS": "control",
        "KAFKA_TOPIC_INSTANCES": "reports",
        "KAFKA_CHANNELS_GROUP": "readers",
        "KAFKA_CHANNELS_PARTITIONS": "12",
        "KAFKA_TOPIC_REPLICATION_FACTOR": "3",
        "KAFKA_CREATE_TOPICS": "false",
        "INSTANCE_ID": "reader-7",
        "KAFKA_CHANNELS_SESSION_TIMEOUT_MS": "9000",
        "KAFKA_CHANNELS_HANDOVER_TIMEOUT_S": "42",
        "KAFKA_CHANNELS_REPLICAS": "2",
        "KAFKA_TOPIC_CHAT_MESSAGES": "chat",
        "KAFKA_TOPIC_CHAT_EVENTS": "events",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    control = ControlTopicsConfig(
        connection=configs.kafka_connection(settings),
        channels_topic="control",
        instances_topic="reports",
        group="readers",
        channels_partitions=12,
        replication_factor=3,
        create_topics=False,
    )
    assert control.connection.brokers == "kafka-1:9093"
    assert configs.control_topics_config(settings) == control
    assert configs.fleet_config(settings) == FleetConfig(
        control=control,
        instance_id="reader-7",
        login="bot",
        session_timeout_ms=9000,
        handover_timeout_s=42.0,
        standby=configs.standby_config(settings),
        tail_topics=("chat", "events"),
    )
    assert configs.standby_config(settings).replicas == 2
