"""The command line as a user meets it: the real `twitch-ingestion` entry point, run as a
subprocess. A mistake is one line on stderr naming what to fix, with its own exit code;
stdout carries only what the command is for; a traceback means a bug.

Offline: every Kafka address here is a closed port, so nothing is ever reached.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from twitch_ingestion import __version__, cli
from twitch_ingestion.service import ExitCode

_ENTRY_POINT = Path(sys.executable).with_name("twitch-ingestion")
_COMMAND = (
    [str(_ENTRY_POINT)] if _ENTRY_POINT.exists() else [sys.executable, "-m", "twitch_ingestion"]
)
# Nothing listens on port 1: a Kafka client pointed there is refused at once.
_NO_KAFKA = "127.0.0.1:1"
# Variables of the developer's shell that must not leak into a case.
_OWN_PREFIXES = (
    "TWITCH_",
    "KAFKA_",
    "BUFFER_",
    "LOG_",
    "HEALTH_",
    "SHUTDOWN_",
    "STATS_",
    "CHANNEL_SOURCE",
    "INSTANCE_ID",
)


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update({"PYTHONUNBUFFERED": "1", "KAFKA_BROKERS": _NO_KAFKA, "HEALTH_PORT": "0"})
    env.update(settings)
    return env


def twitch_ingestion(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    # cwd is an empty folder, so no developer's .env is read.
    # The default BUFFER_DIR is under the XDG state directory: the test's own, never the
    # developer's (nor shared between tests).
    return subprocess.run(
        [*_COMMAND, *args],
        cwd=cwd,
        env={
            **_env(**settings),
            "XDG_STATE_HOME": settings.get("XDG_STATE_HOME", str(cwd / "state")),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- configuration ------------------------------------------------------------------


def test_check_config_refuses_an_unknown_compression_in_one_line(tmp_path: Path) -> None:
    result = twitch_ingestion(
        tmp_path, "check-config", TWITCH_CHANNEL="forsen", KAFKA_COMPRESSION="brotli"
    )
    assert result.returncode == ExitCode.CONFIG
    assert result.stdout == ""
    [line] = error_lines(result)
    assert "KAFKA_COMPRESSION" in line
    assert "brotli" in line
    assert_no_traceback(result)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KAFKA_COMPRESSION", "brotli"),
        ("KAFKA_BROKERS", ""),
        ("KAFKA_ACKS", "2"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("KAFKA_LINGER_MS", "1000000"),
    ],
)
def test_run_refuses_what_librdkafka_would_refuse_before_starting(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = twitch_ingestion(
        tmp_path,
        "run",
        TWITCH_CHANNEL="forsen",
        BUFFER_DIR=str(tmp_path / "buffer"),
        **{variable: value},
    )
    assert result.returncode == ExitCode.CONFIG
    assert result.stdout == ""
    [line] = error_lines(result)
    assert variable in line
    assert_no_traceback(result)
    # Refused before anything started: no buffer was created.
    assert not (tmp_path / "buffer").exists()


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    bad = {
        "KAFKA_COMPRESSION": "brotli",
        "KAFKA_ACKS": "most",
        "LOG_LEVEL": "loud",
        "HEALTH_PORT": "99999",
        "BUFFER_MODE": "tape",
    }
    result = twitch_ingestion(
        tmp_path, "check-config", TWITCH_CHANNEL="forsen", TWITCH_USERNAME="bot", **bad
    )
    assert result.returncode == ExitCode.CONFIG
    lines = error_lines(result)
    # One line per problem: the five values, and the username without its token.
    assert len(lines) == len(bad) + 1, lines
    for variable in [*bad, "TWITCH_OAUTH_TOKEN"]:
        assert sum(variable in line for line in lines) >= 1, (variable, lines)
    assert result.stdout == ""
    assert_no_traceback(result)


def test_check_config_prints_settings_on_stdout_and_nothing_else(tmp_path: Path) -> None:
    result = twitch_ingestion(tmp_path, "check-config", TWITCH_CHANNEL="forsen", LOG_LEVEL="debug")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "KAFKA_BROKERS=127.0.0.1:1" in lines
    assert all(line.startswith("# ") or "=" in line for line in lines), lines
    assert "exiting" not in result.stdout
    assert_no_traceback(result)


def test_version(tmp_path: Path) -> None:
    result = twitch_ingestion(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"twitch-ingestion {__version__} (Python ")
    assert "librdkafka" in result.stdout


# --- start-up failures ----------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_busy_health_port_is_one_line_naming_health_port(tmp_path: Path, busy_port: int) -> None:
    result = twitch_ingestion(
        tmp_path,
        "run",
        TWITCH_CHANNEL="forsen",
        HEALTH_PORT=str(busy_port),
        BUFFER_DIR=str(tmp_path / "buffer"),
        LOG_FORMAT="json",
        LOG_LEVEL="warning",
    )
    assert result.returncode == ExitCode.HEALTH_SERVER
    assert result.stdout == ""
    [line] = error_lines(result)
    event = json.loads(line)
    assert event["level"] == "error"
    assert event["event"] == "health server cannot start"
    assert f"HEALTH_PORT={busy_port}" in event["problem"]
    assert "in use" in event["problem"]
    assert_no_traceback(result)


def test_an_unusable_buffer_dir_is_one_line_naming_buffer_dir(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = twitch_ingestion(
        tmp_path,
        "run",
        TWITCH_CHANNEL="forsen",
        BUFFER_DIR=str(tmp_path / "a-file" / "buffer"),
        LOG_FORMAT="json",
        LOG_LEVEL="warning",
    )
    assert result.returncode == ExitCode.BUFFER
    assert result.stdout == ""
    [line] = error_lines(result)
    event = json.loads(line)
    assert event["event"] == "buffer dir unusable"
    assert "BUFFER_DIR" in event["problem"]
    assert_no_traceback(result)


def test_twitch_giving_up_is_logged_once_and_every_log_line_is_json(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        twitch_port = closed.getsockname()[1]
    result = twitch_ingestion(
        tmp_path,
        "run",
        TWITCH_CHANNEL="forsen",
        TWITCH_IRC_HOST="127.0.0.1",
        TWITCH_IRC_PORT=str(twitch_port),
        TWITCH_IRC_TLS="false",
        TWITCH_MAX_RECONNECT_ATTEMPTS="2",
        TWITCH_RECONNECT_BASE_S="0.01",
        TWITCH_RECONNECT_MAX_S="0.02",
        BUFFER_DIR=str(tmp_path / "buffer"),
        SHUTDOWN_TIMEOUT_S="1",
        LOG_FORMAT="json",
    )
    assert result.returncode == ExitCode.TWITCH_GAVE_UP, result.stderr
    assert result.stdout == ""
    events = [json.loads(line) for line in error_lines(result)]  # raw lines would not parse
    gave_up = [e for e in events if "gave up" in e["event"] or "gave up" in e.get("error", "")]
    assert len(gave_up) == 1, gave_up
    assert_no_traceback(result)


# --- stdout carries only a command's output --------------------------------------------


def test_channels_usage_error_is_one_line_and_stdout_stays_empty(tmp_path: Path) -> None:
    result = twitch_ingestion(tmp_path, "channels", "add")
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = error_lines(result)
    assert "no channels given" in line


def test_simulate_writes_nothing_to_stdout(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*_COMMAND, "simulate", "--port", "0", "--stats-interval-s", "0"],
        cwd=tmp_path,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        # Wait for the line the simulator prints once it listens, then stop it.
        for line in process.stderr:
            if "simulator listening" in line:
                break
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    # It logs as the service does: off a terminal, JSON lines with an event and a level.
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in logged]
    assert "simulator stats" in events
    assert events[-1] == "simulator stopped"
    assert all({"event", "level", "timestamp"} <= entry.keys() for entry in logged)
    plain = [line for line in stderr.splitlines() if line and not line.startswith("{")]
    assert all(line.startswith("point the service at it") for line in plain), plain


# --- the top-level guard (in-process: a bug cannot be provoked from outside) ------------


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


def test_an_unexpected_error_is_logged_once_with_its_traceback_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_structlog: None
) -> None:
    def broken(_args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_cmd_check_config", broken)
    assert cli.main(["check-config"]) == ExitCode.FAILURE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("Traceback") == 1
    assert err.count("unexpected error") == 1
    assert "RuntimeError: a bug" in err


def test_ctrl_c_is_quiet(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_structlog: None
) -> None:
    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_check_config", interrupted)
    assert cli.main(["check-config"]) == 130
    assert capsys.readouterr() == ("", "")


def test_tail_says_in_one_line_that_kafka_is_unreachable(tmp_path: Path) -> None:
    # librdkafka retries the closed port several times a second while tail asks for
    # metadata: none of that may reach stderr as raw `%3|…` lines.
    result = twitch_ingestion(tmp_path, "tail", "--idle-timeout-s", "1", LOG_FORMAT="json")
    assert result.returncode == ExitCode.FAILURE
    assert result.stdout == ""
    [line] = error_lines(result)
    assert line.startswith(f"twitch-ingestion tail: Kafka at {_NO_KAFKA}")
    assert_no_traceback(result)


def test_tail_refuses_a_topic_name_kafka_would_refuse(tmp_path: Path) -> None:
    result = twitch_ingestion(tmp_path, "tail", "--topic", "chat messages")
    assert result.returncode == ExitCode.CONFIG
    assert result.stdout == ""
    [line] = error_lines(result)
    assert "--topic 'chat messages' is not a Kafka topic name" in line


# --- unknown settings ----------------------------------------------------------------


def test_a_misspelled_setting_is_a_warning_naming_the_closest_setting(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KAFKA_BROKER=localhost:9\nTWITCH_CHANNEL=forsen\n")
    result = twitch_ingestion(tmp_path, "check-config", TWITCH_CHANEL="xqc")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in error_lines(result) if "warning" in line]
    assert warnings == [
        "twitch-ingestion: warning: TWITCH_CHANEL (in the environment) is not a setting: "
        "did you mean TWITCH_CHANNEL? (ignored)",
        "twitch-ingestion: warning: KAFKA_BROKER (in .env) is not a setting: "
        "did you mean KAFKA_BROKERS? (ignored)",
    ]
    assert "KAFKA_BROKER" not in result.stdout.replace("KAFKA_BROKERS=", "")


def test_check_config_strict_makes_an_unknown_setting_an_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KAFKA_BROKER=localhost:9\nTWITCH_CHANNEL=forsen\n")
    result = twitch_ingestion(tmp_path, "check-config", "--strict")
    assert result.returncode == ExitCode.CONFIG
    assert result.stdout == ""
    assert error_lines(result) == [
        "twitch-ingestion: KAFKA_BROKER (in .env) is not a setting: did you mean KAFKA_BROKERS?"
    ]


def test_variables_of_the_projects_own_tools_are_not_taken_for_typos(tmp_path: Path) -> None:
    result = twitch_ingestion(
        tmp_path,
        "check-config",
        "--strict",
        TWITCH_CHANNEL="forsen",
        KAFKA_LOCAL_PORT="19092",  # scripts/kafka-local
        KAFKA_HEAP_OPTS="-Xmx1g",  # Apache Kafka's launch scripts
        TEST_KAFKA_BROKERS="127.0.0.1:9092",  # the integration tests
        LOGNAME="user",
    )
    assert result.returncode == 0, result.stderr
    assert not [line for line in error_lines(result) if "warning" in line]


# --- the first run --------------------------------------------------------------------


def test_a_first_run_without_a_channel_says_to_copy_env_example(tmp_path: Path) -> None:
    result = twitch_ingestion(tmp_path, "run")
    assert result.returncode == ExitCode.CONFIG
    [line] = error_lines(result)
    assert line.startswith("twitch-ingestion: TWITCH_CHANNEL is not set")
    assert "cp .env.example .env" in line


def test_env_example_copied_unchanged_reads_no_ones_channel(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    result = twitch_ingestion(tmp_path, "check-config", "--strict")
    assert result.returncode == ExitCode.CONFIG
    # Only the channel is missing: every other line of the example is a setting, as is.
    [line] = error_lines(result)
    assert "TWITCH_CHANNEL is not set" in line


# --- check-config's output is .env ----------------------------------------------------


def test_check_config_output_saved_as_env_reads_back_to_the_same_settings(
    tmp_path: Path,
) -> None:
    first = twitch_ingestion(
        tmp_path,
        "check-config",
        TWITCH_CHANNEL="forsen,#XQC",
        TWITCH_IRC_TLS="false",
        TWITCH_RECONNECT_MAX_S="12.5",
        KAFKA_TOPIC_DLQ="",  # no dead-letter topic: None, written as an empty value
        KAFKA_COMPRESSION="ZSTD",
        BUFFER_DIR=str(tmp_path / "a buffer #1 $HOME"),
        LOG_FORMAT="json",
    )
    assert first.returncode == 0, first.stderr
    assert "TWITCH_CHANNEL=forsen,xqc" in first.stdout.splitlines()
    for python_spelling in ("None", "True", "False", "["):
        assert python_spelling not in first.stdout
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    (again_dir / ".env").write_text(first.stdout, encoding="utf-8")
    env = {k: v for k, v in _env().items() if k not in {"KAFKA_BROKERS", "HEALTH_PORT"}}
    again = subprocess.run(
        [*_COMMAND, "check-config", "--strict"],
        cwd=again_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_check_config_shows_no_irc_login_for_eventsub(tmp_path: Path) -> None:
    result = twitch_ingestion(
        tmp_path,
        "check-config",
        TWITCH_CHANNEL="forsen",
        TWITCH_SOURCE="eventsub",
        TWITCH_CLIENT_ID="abc123",
        TWITCH_OAUTH_TOKEN="abc123def456",
    )
    assert result.returncode == 0, result.stderr
    assert "justinfan" not in result.stdout
    assert not [line for line in result.stdout.splitlines() if "login:" in line]
    assert "# TWITCH_OAUTH_TOKEN is set (a secret: not shown)" in result.stdout.splitlines()
    assert "abc123def456" not in result.stdout
